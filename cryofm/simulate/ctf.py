"""Contrast transfer function as in RELION / CTFFIND, vectorised over particles.

RELION's ``CTF::getCTF`` computes ``-sin(χ)`` with::

    χ = -π λ Δf s² + (π/2) Cs λ³ s⁴ - φ - arctan(w / √(1 - w²))
    Δf(α) = (U + V)/2 + (U - V)/2 · cos(2 (α - α_ast))      (U, V > 0 is underfocus)

that is ``CTF = sin(π λ Δf s² - (π/2) Cs λ³ s⁴ + φ + arctan(w/√(1-w²)))``, positive at low frequency
(protein white, RELION's image convention), times the envelope ``exp(-B s² / 4)``. ``s`` is the
spatial frequency in 1/Å, λ the relativistic electron wavelength in Å, Cs in Å (given in mm),
``w`` the amplitude contrast and φ the phase-plate shift.

Frequency grids are *centred* (``fftshift`` layout, zero frequency at index ``N // 2``) or *half*
(the ``rfft2`` layout the projector works in).
"""

from __future__ import annotations

import functools

import numpy as np
import torch


def wavelength(voltage_kv: float | np.ndarray) -> np.ndarray:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV (300 kV → 0.01969 Å)."""
    v = np.asarray(voltage_kv, dtype=np.float64) * 1e3
    return 12.2642598 / np.sqrt(v * (1.0 + 0.978475e-6 * v))


def frequency_grid(size: int, pixel_size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Centred 2D frequency grid (fx = columns, fy = rows) in 1/Å for a ``size``² image."""
    f = (np.arange(size) - size // 2) / (size * pixel_size)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    return fx, fy


def _col(v, n: int, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy(), dtype=dtype)
    return t[:, None, None]


def _grid(size: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer frequency indices (kx, ky) of a ``centred`` [size, size] or ``half`` (rfft2) grid."""
    if layout == "centred":
        k = torch.arange(size, dtype=torch.float64) - size // 2
        ky, kx = torch.meshgrid(k, k, indexing="ij")
    elif layout == "half":
        ky, kx = torch.meshgrid(torch.fft.fftfreq(size, 1.0 / size, dtype=torch.float64),
                                torch.arange(size // 2 + 1, dtype=torch.float64), indexing="ij")
    else:
        raise ValueError(f"unknown layout {layout!r} (centred or half)")
    return kx, ky


@functools.lru_cache(maxsize=8)
def _polar_grid(size: int, layout: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k², cos 2α, sin 2α) [1, H, W] float32 of a frequency grid (k in cycles per box)."""
    kx, ky = _grid(size, layout)
    ang = torch.atan2(ky, kx)
    k2 = kx * kx + ky * ky
    return tuple(t.to(torch.float32)[None] for t in (k2, torch.cos(2 * ang), torch.sin(2 * ang)))


def ctf_2d(size: int, pixel_size: float | np.ndarray, defocus_u: np.ndarray, defocus_v: np.ndarray,
           defocus_angle: np.ndarray, voltage: float | np.ndarray = 300.0, cs: float | np.ndarray = 2.7,
           amplitude_contrast: float | np.ndarray = 0.1, bfactor: float | np.ndarray = 0.0,
           phase_shift: float | np.ndarray = 0.0, layout: str = "centred") -> torch.Tensor:
    """CTFs of ``B`` particles on a ``size``² frequency grid → float32 tensor [B, size, size]
    (``layout="centred"``, zero frequency at ``size // 2``) or [B, size, size // 2 + 1]
    (``layout="half"``, the ``rfft2`` layout the projector uses).

    Args:
        size: image edge in px.
        pixel_size: Å/px (scalar or [B]).
        defocus_u, defocus_v: defocus in Å, positive = underfocus ([B] or scalars).
        defocus_angle: astigmatism angle in degrees, from the x axis (RELION's rlnDefocusAngle).
        voltage: kV. cs: spherical aberration in mm. amplitude_contrast: fraction (0.07–0.1).
        bfactor: envelope B-factor in Å² (0 = none). phase_shift: phase-plate shift in degrees.
    """
    n = max(np.size(v) for v in (pixel_size, defocus_u, defocus_v, defocus_angle, voltage, cs,
                                  amplitude_contrast, bfactor, phase_shift))
    k2, cos2, sin2 = _polar_grid(size, layout)
    f32 = torch.float32
    s2 = k2 * (1.0 / (size * _col(pixel_size, n, f32)) ** 2)  # spatial frequency² in 1/Å²
    lam = wavelength(np.asarray(voltage, dtype=np.float64))
    u, v = _col(defocus_u, n, f32), _col(defocus_v, n, f32)
    az = 2.0 * np.deg2rad(np.asarray(defocus_angle, dtype=np.float64))
    # Δf = (U+V)/2 + (U−V)/2 cos(2(α − α_ast)), with cos(2α − 2α_ast) expanded on cached grids;
    # in-place steps keep the temporaries few (this runs on every batch of particles)
    dfz = (cos2 * _col(np.cos(az), n, f32)).addcmul_(sin2, _col(np.sin(az), n, f32))
    dfz.mul_(0.5 * (u - v)).add_(0.5 * (u + v))
    w = np.asarray(amplitude_contrast, dtype=np.float64)
    a1 = _col(np.pi * lam, n, f32)  # π λ
    a2 = _col(0.5 * np.pi * np.asarray(cs, dtype=np.float64) * 1e7 * lam**3, n, f32)  # π/2 Cs λ³
    a0 = _col(np.deg2rad(np.asarray(phase_shift, dtype=np.float64)) + np.arctan(w / np.sqrt(1.0 - w * w)),
              n, f32)
    out = dfz.mul_(a1).sub_(s2 * a2).mul_(s2).add_(a0).sin_()  # sin((πλΔf − π/2 Cs λ³ s²) s² + a0)
    b = np.asarray(bfactor, dtype=np.float64)
    if np.any(b != 0):
        out.mul_(torch.exp(s2.mul_(-0.25 * _col(b, n, f32))))
    return out


def ctf_1d(freq: np.ndarray, defocus: float, voltage: float = 300.0, cs: float = 2.7,
           amplitude_contrast: float = 0.1, bfactor: float = 0.0, phase_shift: float = 0.0) -> np.ndarray:
    """Rotationally averaged CTF (no astigmatism) at spatial frequencies ``freq`` in 1/Å."""
    s2 = np.asarray(freq, dtype=np.float64) ** 2
    lam = wavelength(voltage)
    w = amplitude_contrast
    phase = (np.pi * lam * defocus * s2 - 0.5 * np.pi * cs * 1e7 * lam**3 * s2 * s2
             + np.deg2rad(phase_shift) + np.arctan(w / np.sqrt(1.0 - w * w)))
    return np.sin(phase) * np.exp(-bfactor * s2 / 4.0)


def apply_ctf(images_ft: torch.Tensor, ctf: torch.Tensor, phase_flip: bool = False) -> torch.Tensor:
    """Multiply image spectra by CTFs of the same layout; ``phase_flip`` keeps only |CTF| (images
    as after phase-flipping correction: no contrast reversals, the amplitude modulation stays)."""
    return images_ft * (ctf.abs() if phase_flip else ctf)
