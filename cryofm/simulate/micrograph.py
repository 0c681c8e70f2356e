"""Synthetic micrographs with particles at known coordinates, and their ground-truth pick files.

One micrograph: particles of one density placed by dart throwing (no two centres closer than
``min_distance`` × diameter, none in the carbon or on contamination, none within a radius of the
edge), each a projection at a uniformly random orientation pasted at a sub-pixel position; added to
an ice background (smooth thickness variation, 1/f² texture), an optional carbon film with a curved
edge and optional contamination blobs; the whole field multiplied by one CTF; white noise at the
requested SNR (variance of the CTF-modulated particle signal inside the particle discs over the noise
variance). ``invert`` (default) writes particles dark on a light background, as recorded.

Coordinates are particle centres in micrograph pixels, x = column, y = row (RELION's convention).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cryofm.simulate.ctf import ctf_2d
from cryofm.simulate.densities import Density
from cryofm.simulate.noise import coloured_noise
from cryofm.simulate.projection import Projector
from cryofm.simulate.rotations import matrix_to_euler, random_rotations


@dataclass
class MicrographSpec:
    """Settings of one synthetic micrograph (units in the names' docs).

    Attributes:
        size: edge in px (square micrographs).
        pixel_size: Å/px.
        n_particles: particles to place (fewer when the field is full).
        min_distance: smallest centre distance as a fraction of the particle diameter.
        snr: particle signal variance / noise variance.
        defocus: (min, max) defocus in Å, drawn uniformly per micrograph; astigmatism up to
            ``astigmatism`` Å.
        voltage: kV. cs: mm. amplitude_contrast: fraction. bfactor: Å².
        ice: standard deviation of the ice texture relative to the mean particle peak density.
        carbon: probability that the micrograph shows a carbon edge.
        contamination: mean number of contamination blobs (Poisson).
        invert: write particles dark (raw micrograph contrast).
    """

    size: int = 512
    pixel_size: float = 2.0
    n_particles: int = 40
    min_distance: float = 1.0
    snr: float = 0.1
    defocus: tuple[float, float] = (8000.0, 25000.0)
    astigmatism: float = 500.0
    voltage: float = 300.0
    cs: float = 2.7
    amplitude_contrast: float = 0.1
    bfactor: float = 50.0
    ice: float = 0.3
    carbon: float = 0.0
    contamination: float = 0.0
    invert: bool = True


def particle_box(density: Density, pixel_size: float) -> int:
    """Edge (px, even) of the window a particle is projected into: 1.3 × its diameter + 4."""
    return int(2 * np.ceil(0.65 * density.max_diameter / pixel_size)) + 4


def make_projector(density: Density, pixel_size: float) -> Projector:
    """A projector padded enough for particle windows at ``pixel_size`` Å/px."""
    fov = particle_box(density, pixel_size) * pixel_size
    return Projector(density.volume, density.pixel_size,
                     pad=max(2, int(np.ceil(fov / (density.box * density.pixel_size)))))


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.ogrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def carbon_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of a carbon film bounded by a gently curved edge crossing the micrograph."""
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    u = (xx - size / 2) * np.cos(theta) + (yy - size / 2) * np.sin(theta)
    v = -(xx - size / 2) * np.sin(theta) + (yy - size / 2) * np.cos(theta)
    curve = size * (rng.uniform(0.2, 0.4) + 0.08 * np.sin(2 * np.pi * v / size * rng.uniform(0.5, 1.5)))
    return u > curve


def place_particles(size: int, n: int, diameter: float, min_distance: float, rng: np.random.Generator,
                    forbidden: np.ndarray | None = None, max_tries: int = 200) -> np.ndarray:
    """Dart throwing: up to ``n`` centres [K, 2] (x, y, float px) at least ``min_distance`` × ``diameter``
    apart, ``diameter`` / 2 + 1 px inside the edges, none on ``forbidden`` pixels."""
    margin = diameter / 2 + 1
    dmin2 = (min_distance * diameter) ** 2
    pts: list[np.ndarray] = []
    tries = 0
    while len(pts) < n and tries < max_tries * n:
        tries += 1
        p = rng.uniform(margin, size - 1 - margin, 2)
        if forbidden is not None and forbidden[int(round(p[1])), int(round(p[0]))]:
            continue
        if pts and (((np.asarray(pts) - p) ** 2).sum(1) < dmin2).any():
            continue
        pts.append(p)
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)


def simulate_micrograph(density: Density, spec: MicrographSpec, rng: np.random.Generator,
                        projector: Projector | None = None) -> dict[str, Any]:
    """One micrograph and its ground truth.

    Returns a dict: ``image`` [size, size] float32 (zero mean, unit std), ``clean`` (particles only,
    no CTF, no noise, not inverted), ``xy`` [K, 2] centres (x = column, y = row, px), ``angles``
    [K, 3] RELION (rot, tilt, psi) in degrees, ``ctf`` (defocus_u, defocus_v, defocus_angle in Å / deg),
    ``diameter`` (px), ``carbon`` and ``contamination`` masks.
    """
    size, apix = int(spec.size), float(spec.pixel_size)
    diameter = float(density.max_diameter) / apix
    box = particle_box(density, apix)
    proj = projector or make_projector(density, apix)
    carbon = carbon_mask(size, rng) if rng.random() < spec.carbon else np.zeros((size, size), bool)
    contam = np.zeros((size, size), bool)
    blobs = []
    for _ in range(rng.poisson(spec.contamination)):
        c = rng.uniform(0, size, 2)
        r = rng.uniform(0.4, 1.2) * diameter
        blobs.append((c, r))
        contam |= _disc(size, size, c[0], c[1], r + diameter / 2)
    xy = place_particles(size, spec.n_particles, diameter, spec.min_distance, rng, carbon | contam)
    rots = random_rotations(len(xy), rng)
    ixy = np.rint(xy).astype(int)
    frac = xy - ixy  # drawn at centre − origin: origin = −frac px
    clean = np.zeros((size + box, size + box), dtype=np.float32)  # padded so boxes never clip
    if len(xy):
        imgs = proj.project(rots, size=box, pixel_size=apix, shifts=-frac * apix)
        h = box // 2
        for (x, y), im in zip(ixy, imgs, strict=True):
            clean[y - h + h:y + h + h, x - h + h:x + h + h] += im
    clean = clean[box // 2:box // 2 + size, box // 2:box // 2 + size]
    peak = float(clean.max()) if len(xy) else 1.0
    field = clean.copy()
    field += spec.ice * peak * coloured_noise((size, size), 2.0, rng, cutoff=2.0 / size)
    if carbon.any():
        edge = np.clip(np.asarray(carbon, np.float32), 0, 1)
        field += peak * (0.6 + 0.15 * coloured_noise((size, size), 1.0, rng)) * edge
    for c, r in blobs:
        field += 2.0 * peak * _disc(size, size, c[0], c[1], r).astype(np.float32)
    du = rng.uniform(*spec.defocus)
    dv = du - rng.uniform(0, spec.astigmatism)
    dang = rng.uniform(-180, 180)
    ctf = ctf_2d(size, apix, du, dv, dang, spec.voltage, spec.cs, spec.amplitude_contrast,
                 spec.bfactor, layout="half")[0]

    def modulate(x: np.ndarray) -> np.ndarray:
        return torch.fft.irfft2(torch.fft.rfft2(torch.from_numpy(x)) * ctf, s=(size, size)).numpy()

    signal = modulate(clean)
    inside = np.zeros((size, size), bool)
    for x, y in xy:
        inside |= _disc(size, size, x, y, diameter / 2)
    var = float(signal[inside].var()) if inside.any() else float(signal.var()) or 1.0
    image = modulate(field) + np.sqrt(var / spec.snr) * rng.standard_normal((size, size)).astype(np.float32)
    if spec.invert:
        image = -image
    image = (image - image.mean()) / max(float(image.std()), 1e-6)
    rot, tilt, psi = matrix_to_euler(rots)
    return {"image": image.astype(np.float32), "clean": clean, "xy": xy,
            "angles": np.stack([rot, tilt, psi], 1), "ctf": (du, dv, dang), "diameter": diameter,
            "carbon": carbon, "contamination": contam}


PICK_FORMATS = {"star": ".star", "csv": ".csv", "box": ".box", "topaz": ".txt"}


def write_micrographs(out: str | Path, densities: dict[str, Density], spec: MicrographSpec, n: int,
                      seed: int = 0, preview: bool = True) -> dict[str, Any]:
    """Write ``n`` micrographs (density ``i % len(densities)`` each) and their ground truth.

    Layout under ``out``: ``micrographs/mic_NNNN.mrc`` (float32, voxel size = pixel size),
    ``picks/{star,csv,box,topaz}/mic_NNNN.*`` (centres; EMAN ``.box`` as lower-left corners of a
    box of one diameter), ``particles.star`` (RELION 3.1: optics + every particle's micrograph,
    coordinates, angles and CTF), ``ground_truth.json`` (per micrograph: density, diameter in px,
    CTF, particle count) and ``preview.png``. Each micrograph is seeded by (seed, index): a rerun
    rewrites identical files, and files are written atomically.
    """
    import mrcfile
    import pandas as pd
    import starfile

    from cryofm.io.coords import write_picks
    from cryofm.utils.atomic import atomic_path, write_json

    out = Path(out)
    names = list(densities)
    projectors: dict[str, Projector] = {}
    rows, summary = [], []
    first = None
    for i in tqdm(range(n), desc="micrographs", unit="mic"):
        name = names[i % len(names)]
        dens = densities[name]
        rng = np.random.default_rng([seed, i])
        if name not in projectors:
            projectors[name] = make_projector(dens, spec.pixel_size)
        res = simulate_micrograph(dens, spec, rng, projectors[name])
        stem = f"mic_{i:04d}"
        mic_path = out / "micrographs" / f"{stem}.mrc"
        with atomic_path(mic_path) as tmp, mrcfile.new(tmp, overwrite=True) as m:
            m.set_data(res["image"])
            m.voxel_size = spec.pixel_size
        d = float(np.round(res["diameter"]))
        for fmt, suffix in PICK_FORMATS.items():
            write_picks(out / "picks" / fmt / f"{stem}{suffix}", res["xy"], fmt, diameter=d,
                        micrograph=f"micrographs/{stem}.mrc")
        du, dv, dang = res["ctf"]
        for (x, y), (rot, tilt, psi) in zip(res["xy"], res["angles"], strict=True):
            rows.append({"rlnMicrographName": f"micrographs/{stem}.mrc", "rlnCoordinateX": x,
                         "rlnCoordinateY": y, "rlnAngleRot": rot, "rlnAngleTilt": tilt,
                         "rlnAnglePsi": psi, "rlnDefocusU": du, "rlnDefocusV": dv,
                         "rlnDefocusAngle": dang, "rlnOpticsGroup": 1, "cryofmDensity": name})
        summary.append({"micrograph": f"micrographs/{stem}.mrc", "density": name,
                        "particles": int(len(res["xy"])), "diameter_px": res["diameter"],
                        "defocus_u": du, "defocus_v": dv, "defocus_angle": dang,
                        "carbon": bool(res["carbon"].any()),
                        "contamination_fraction": float(res["contamination"].mean())})
        if first is None:
            first = res
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                           "rlnMicrographPixelSize": [spec.pixel_size], "rlnVoltage": [spec.voltage],
                           "rlnSphericalAberration": [spec.cs],
                           "rlnAmplitudeContrast": [spec.amplitude_contrast]})
    parts = pd.DataFrame(rows) if rows else pd.DataFrame({"rlnMicrographName": []})
    with atomic_path(out / "particles.star") as tmp:
        starfile.write({"optics": optics, "particles": parts}, tmp, float_format="%.4f")
    if preview and first is not None:
        _preview(out / "preview.png", first)
    info = {"micrographs": summary, "pixel_size": spec.pixel_size, "size": spec.size,
            "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(spec).items()},
            "seed": seed, "n_particles": len(rows)}
    write_json(out / "ground_truth.json", info)
    return info


def _preview(path: Path, res: dict[str, Any]) -> None:
    """The first micrograph with its ground-truth centres circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryofm.utils.atomic import atomic_path

    fig, ax = plt.subplots(1, 2, figsize=(10, 5))
    ax[0].imshow(res["image"], cmap="gray")
    ax[1].imshow(res["clean"], cmap="gray")
    for a, title in zip(ax, ("micrograph", "particles only (no CTF, no noise)"), strict=True):
        for x, y in res["xy"]:
            a.add_patch(plt.Circle((x, y), res["diameter"] / 2, fill=False, color="tab:red", lw=0.8))
        a.set_title(title)
        a.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def median_diameter(mics: str | Path) -> float:
    """Median particle diameter (px, 0.1 px) of micrographs simulated into ``mics``, from their
    ``ground_truth.json``."""
    gt = json.loads((Path(mics) / "ground_truth.json").read_text())
    ds = sorted(m["diameter_px"] for m in gt["micrographs"])
    return round(float(ds[len(ds) // 2]), 1)
