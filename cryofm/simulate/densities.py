"""3D densities to simulate from: MRC maps, atomic models (Gaussian atoms), procedural shapes.

Every density is returned as a :class:`Density`: a cubic float32 volume indexed ``[z, y, x]`` with
its centre of mass at voxel ``N // 2``, non-negative, with its voxel size in Å and the facts the
simulation knows about it (molecular weight estimate in kDa, maximum diameter in Å, symmetry).

Procedural shapes (``blob``, ``ring``, ``rod``) are sums of Gaussian pseudo-domains whose asymmetric
unit is copied by the operators of a ``Cn`` / ``Dn`` group (:mod:`cryofm.simulate.symmetry`), so
they have that symmetry exactly (up to rasterisation). Atomic models become sums of Gaussian atoms
weighted by atomic number with σ = 0.225 × resolution (Chimera ``molmap``'s σ = res / (π √2)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
from scipy import ndimage as ndi

from cryofm.errors import InputError
from cryofm.simulate import symmetry as sym
from cryofm.simulate.projection import pad_to_cube

PROTEIN_DA_PER_A3 = 0.81  # 1.35 g/cm³ protein density → Da per Å³
SIGMA_PER_RESOLUTION = 0.225
CONTOUR_FRACTION = 0.15  # default contour (fraction of the maximum) for masks, weight and diameter


@dataclass
class Density:
    """A centred cubic density and what is known about it.

    Attributes:
        volume: [N, N, N] float32, [z, y, x], ≥ 0, centre of mass at voxel N // 2.
        pixel_size: voxel size in Å.
        symmetry: point group ("C1", "C4", "D7", ...).
        mass_kda: molecular weight in kDa (exact for atomic models, estimated from the enclosed
            volume at ``contour`` for maps and procedural shapes).
        max_diameter: largest extent in Å (atoms, or voxels above ``contour``).
        resolution: resolution of the density in Å (NaN when unknown).
        contour: density level used for the volume-based estimates.
        meta: free-form extras (source file, number of chains...).
    """

    volume: np.ndarray
    pixel_size: float
    symmetry: str = "C1"
    mass_kda: float = float("nan")
    max_diameter: float = float("nan")
    resolution: float = float("nan")
    contour: float = float("nan")
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def box(self) -> int:
        """Edge of the cubic volume in voxels."""
        return int(self.volume.shape[0])


def gaussian_volume(points: np.ndarray, weights: np.ndarray, sigma: float, box: int,
                    pixel_size: float, chunk: int = 4096) -> np.ndarray:
    """Sum of isotropic 3D Gaussians (σ in Å) centred at ``points`` [N, 3] (x, y, z in Å from the box
    centre), each integrating to ``weights`` [N], evaluated exactly at voxel centres within 3.5 σ.

    Returns [box, box, box] float32 ([z, y, x]) in weight per Å³.
    """
    pts = np.asarray(points, dtype=np.float64) / pixel_size + box // 2  # voxel coords (x, y, z)
    w = np.asarray(weights, dtype=np.float64)
    s = sigma / pixel_size
    half = int(np.ceil(3.5 * s))
    off = np.arange(-half, half + 1)
    oz, oy, ox = (a.ravel() for a in np.meshgrid(off, off, off, indexing="ij"))
    norm = 1.0 / ((2 * np.pi) ** 1.5 * sigma**3)
    flat = np.zeros(box**3, dtype=np.float64)
    for st in range(0, len(pts), chunk):
        p, ww = pts[st:st + chunk], w[st:st + chunk]
        base = np.rint(p).astype(np.int64)
        ix = base[:, 0:1] + ox[None]
        iy = base[:, 1:2] + oy[None]
        iz = base[:, 2:3] + oz[None]
        d2 = (ix - p[:, 0:1]) ** 2 + (iy - p[:, 1:2]) ** 2 + (iz - p[:, 2:3]) ** 2
        val = ww[:, None] * norm * np.exp(-d2 / (2 * s * s))
        ok = (ix >= 0) & (ix < box) & (iy >= 0) & (iy < box) & (iz >= 0) & (iz < box)
        idx = (iz * box + iy) * box + ix
        flat += np.bincount(idx[ok], weights=val[ok], minlength=box**3)
    return flat.reshape(box, box, box).astype(np.float32)


def centre(volume: np.ndarray) -> np.ndarray:
    """Shift a non-negative volume so its centre of mass sits at voxel N // 2 (Fourier shift)."""
    n = volume.shape[0]
    com = np.array(ndi.center_of_mass(np.clip(volume, 0, None)))
    shift = n // 2 - com
    out = np.fft.ifftn(ndi.fourier_shift(np.fft.fftn(volume), shift)).real
    return np.clip(out, 0, None).astype(np.float32)


def _contour(volume: np.ndarray, fraction: float | None = None) -> float:
    """Default contour: ``CONTOUR_FRACTION`` (or ``fraction``) of the maximum."""
    fraction = CONTOUR_FRACTION if fraction is None else fraction
    return float(fraction * volume.max())


def object_mask(volume: np.ndarray, level: float, dilate: int = 2) -> np.ndarray:
    """Soft mask [0, 1] of the largest connected region above ``level`` (after a 1-voxel Gaussian
    smoothing), dilated by ``dilate`` voxels: drops the detached noise and halos of real maps."""
    region = ndi.gaussian_filter(volume, 1.0) > level
    lab, k = ndi.label(region)
    if k == 0:
        return np.ones_like(volume, dtype=np.float32)
    sizes = np.bincount(lab.ravel())[1:]
    keep = lab == (1 + int(np.argmax(sizes)))
    keep = ndi.binary_dilation(keep, iterations=dilate)
    return np.clip(ndi.gaussian_filter(keep.astype(np.float32), 1.0), 0, 1)


def volume_facts(volume: np.ndarray, pixel_size: float, contour: float) -> tuple[float, float]:
    """(molecular weight estimate in kDa, max diameter in Å) of the region above ``contour``.

    The weight assumes protein density, 0.81 Da/Å³; the diameter is the largest distance between
    two voxel centres of the region (from its convex hull).
    """
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist

    inside = volume > contour
    mass = inside.sum() * pixel_size**3 * PROTEIN_DA_PER_A3 / 1000.0
    pts = np.argwhere(inside).astype(np.float64)
    if len(pts) > 4:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # flat regions: fall back to a subsample
            pts = pts[:: max(1, len(pts) // 2000)]
    diam = float(pdist(pts).max()) * pixel_size if len(pts) > 1 else 0.0
    return float(mass), diam


def fourier_resample(volume: np.ndarray, box: int) -> np.ndarray:
    """Resize a cubic volume to ``box``³ by 3D Fourier cropping / zero-padding (voxel size × N / box).

    Values are kept (not summed): a density in units per Å³ stays in those units.
    """
    n = volume.shape[0]
    if n == box:
        return volume.astype(np.float32)
    f = np.fft.fftshift(np.fft.fftn(volume))
    m = min(n, box)
    out = np.zeros((box, box, box), dtype=np.complex128)
    s, d = n // 2 - m // 2, box // 2 - m // 2
    out[d:d + m, d:d + m, d:d + m] = f[s:s + m, s:s + m, s:s + m]
    return (np.fft.ifftn(np.fft.ifftshift(out)).real * (box / n) ** 3).astype(np.float32)


def stretch_to_cube(data: np.ndarray) -> np.ndarray:
    """Resample each axis of a non-cubic [z, y, x] array to the longest edge (linear), for maps whose
    short axes are stored subsampled (the cryoDRGN test volumes); the longest axis' voxel size holds."""
    n = max(data.shape)
    return ndi.zoom(data, [n / s for s in data.shape], order=1).astype(np.float32)


def from_map(path: str | Path, symmetry: str = "C1", resolution: float = float("nan"),
             contour: float | None = None, mask_radius: float = 0.48, pixel_size: float | None = None,
             non_cubic: str = "stretch", max_box: int | None = None,
             contour_fraction: float | None = None) -> Density:
    """A density from an MRC map: background (median of the outer shell) subtracted, soft spherical
    mask of ``mask_radius`` × box, masked to its largest connected region above the contour
    (:func:`object_mask`), negatives clipped, centred.

    Args:
        contour: level (map units before background subtraction) for the mask and the weight /
            diameter estimates; default ``contour_fraction`` × the maximum after background
            subtraction.
        pixel_size: voxel size in Å overriding the header's (for maps with a wrong header).
        non_cubic: ``stretch`` (resample short axes to the longest: :func:`stretch_to_cube`) or
            ``pad`` (zero-pad to a cube, header voxel sizes kept).
        max_box: Fourier-crop larger volumes to this edge (voxel size grows accordingly).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "map not found")
    try:
        with mrcfile.open(path, permissive=True) as m:
            data = np.asarray(m.data, dtype=np.float32)
            apix = float(m.voxel_size.x)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read MRC map: {exc}") from exc
    if data is None or data.ndim != 3 or not np.isfinite(data).all() or apix <= 0:
        raise InputError(path, "not a 3D map with finite values and a positive voxel size")
    if pixel_size:
        apix = float(pixel_size)
    cubic = len(set(data.shape)) == 1
    vol = data if cubic else (stretch_to_cube(data) if non_cubic == "stretch" else pad_to_cube(data))
    n = vol.shape[0]
    r = np.arange(n) - n // 2
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    rad = np.sqrt(x * x + y * y + z * z) / n
    bg = float(np.median(vol[rad > mask_radius]))
    level = (contour - bg) if contour is not None else None
    mask = np.clip((mask_radius + 0.04 - rad) / 0.04, 0, 1)
    vol = np.clip((vol - bg) * mask, 0, None)
    if max_box and n > max_box:  # shrink first: the masking and centring below then cost less
        vol = np.clip(fourier_resample(vol, max_box), 0, None)
        apix *= n / max_box
    vol = vol * object_mask(vol, level if level is not None else _contour(vol, contour_fraction))
    vol = centre(vol)
    level = _contour(vol, contour_fraction) if level is None else level
    mass, diam = volume_facts(vol, apix, level)
    return Density(vol, apix, symmetry, mass, diam, resolution, level, {"source": str(path)})


def from_model(path: str | Path, pixel_size: float, resolution: float, symmetry: str = "C1",
               assembly: bool = True, margin: float = 1.3, max_box: int | None = None) -> Density:
    """A density from an atomic model: Gaussian atoms (weight = atomic number, σ = 0.225 ×
    ``resolution``) on a cubic grid of ``pixel_size`` Å whose edge is ``margin`` × max diameter,
    centred on the mass-weighted centre. Mass and diameter are the model's own. With ``max_box`` the
    voxel size grows so that the box fits in that many voxels."""
    from cryofm.io.atomic import read_model

    model = read_model(path, assembly=assembly)
    z = model.atomic_number.astype(np.float64)
    xyz = model.xyz - (model.xyz * z[:, None]).sum(0) / z.sum()
    diam = model.max_diameter()
    if max_box:
        pixel_size = max(pixel_size, margin * diam / (max_box - 2))
    box = int(np.ceil(margin * diam / pixel_size / 2) * 2)
    vol = gaussian_volume(xyz, z, SIGMA_PER_RESOLUTION * resolution, box, pixel_size)
    vol = centre(vol)
    return Density(vol, pixel_size, symmetry, model.mass_kda(), diam, resolution, _contour(vol),
                   {"source": str(path), "chains": model.n_chains, "atoms": len(model)})


def _unit_points(kind: str, n_sym: int, radius: float, rng: np.random.Generator,
                 n_domains: int) -> np.ndarray:
    """Asymmetric-unit pseudo-domain centres (Å) for a shape of overall radius ``radius``."""
    if kind == "blob":  # compact random-walk chain off the symmetry axis
        start = np.array([0.35 * radius if n_sym > 1 else 0.0, 0.0, 0.15 * radius])
        steps = rng.normal(0, 0.22 * radius, (n_domains, 3))
        pts = start + np.cumsum(steps, axis=0)
        lim = 0.7 * radius
        nrm = np.linalg.norm(pts, axis=1, keepdims=True)
        return np.where(nrm > lim, pts * lim / nrm, pts)
    if kind == "ring":  # a cluster on the ring at radius 0.6 R, lifted off the equator
        ang = rng.uniform(-np.pi / max(n_sym, 2), np.pi / max(n_sym, 2), n_domains) * 0.8
        rr = 0.6 * radius + rng.normal(0, 0.08 * radius, n_domains)
        zz = 0.2 * radius + rng.normal(0, 0.1 * radius, n_domains)
        return np.stack([rr * np.cos(ang), rr * np.sin(ang), zz], 1)
    if kind == "rod":  # elongated along z, near the axis
        zz = rng.uniform(0.05, 0.85, n_domains) * radius
        rr = 0.15 * radius + rng.normal(0, 0.03 * radius, n_domains)
        ang = 2 * np.pi * zz / radius + rng.normal(0, 0.2, n_domains)
        return np.stack([rr * np.cos(ang), rr * np.sin(ang), zz], 1)
    raise ValueError(f"unknown procedural shape {kind!r} (blob, ring, rod)")


def procedural(kind: str, symmetry: str = "C1", diameter: float = 150.0, pixel_size: float = 3.0,
               resolution: float = 8.0, seed: int = 0, n_domains: int = 12,
               domain_size: float | None = None, margin: float = 1.1) -> Density:
    """A procedural density: ``kind`` = blob, ring or rod with ``Cn`` / ``Dn`` symmetry.

    Args:
        diameter: nominal size in Å (the measured ``max_diameter`` is reported in the facts).
        pixel_size: voxel size in Å.
        resolution: Å; pseudo-domains are Gaussians of σ = √(d² + (0.225 res)²) with d =
            ``domain_size`` (default diameter / 14).
        seed: shape seed (same seed, same shape).
        n_domains: Gaussians per asymmetric unit.
        margin: box edge = 2 × margin × (furthest Gaussian centre + 4 σ).
    """
    kind_, n = sym.parse(symmetry)
    if kind_ not in ("C", "D"):
        raise ValueError("procedural shapes take Cn or Dn symmetry")
    rng = np.random.default_rng(seed)
    radius = diameter / 2
    unit = _unit_points(kind, n, radius, rng, n_domains)
    pts = sym.symmetrize_points(unit, symmetry)
    pts -= pts.mean(0)  # on the symmetry axis for Cn / Dn: centring keeps the symmetry exact
    d = domain_size or diameter / 14
    sigma = float(np.hypot(d, SIGMA_PER_RESOLUTION * resolution))
    reach = float(np.abs(pts).max()) + 4 * sigma  # furthest density along any axis, Å
    box = 2 * int(np.ceil(margin * reach / pixel_size)) + 2
    vol = gaussian_volume(pts, np.ones(len(pts)), sigma, box, pixel_size)
    level = _contour(vol)
    mass, diam = volume_facts(vol, pixel_size, level)
    return Density(vol, pixel_size, symmetry, mass, diam, resolution, level,
                   {"source": f"procedural:{kind}", "seed": seed, "subunits": sym.order(symmetry),
                    "points": pts})
