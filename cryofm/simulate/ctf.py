"""Contrast transfer function as in RELION / CTFFIND, vectorised over particles.

``CTF(s) = -sin(χ(s))`` with (RELION's ``CTF::getCTF``)::

    χ = π λ Δf(α) s² ... written as  χ = -π λ Δf s² + (π/2) Cs λ³ s⁴ - φ - arctan(w / √(1 - w²))
    Δf(α) = (U + V)/2 + (U - V)/2 · cos(2 (α - α_ast))      (U, V > 0 is underfocus)

so ``CTF = sin(π λ Δf s² - (π/2) Cs λ³ s⁴ + φ + arctan(w/√(1-w²)))``, positive at low frequency
(protein white, RELION's image convention), times the envelope ``exp(-B s² / 4)``. ``s`` is the
spatial frequency in 1/Å, λ the relativistic electron wavelength in Å, Cs in Å (given in mm),
``w`` the amplitude contrast and φ the phase-plate shift.

Frequency grids are *centred* (``fftshift`` layout, zero frequency at index ``N // 2``), the layout
the projector works in.
"""

from __future__ import annotations

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


def _col(v, n: int) -> torch.Tensor:
    t = torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy())
    return t[:, None, None]


def ctf_2d(size: int, pixel_size: float | np.ndarray, defocus_u: np.ndarray, defocus_v: np.ndarray,
           defocus_angle: np.ndarray, voltage: float | np.ndarray = 300.0, cs: float | np.ndarray = 2.7,
           amplitude_contrast: float | np.ndarray = 0.1, bfactor: float | np.ndarray = 0.0,
           phase_shift: float | np.ndarray = 0.0) -> torch.Tensor:
    """CTFs of ``B`` particles on a centred ``size``² frequency grid → float32 tensor [B, size, size].

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
    k = torch.arange(size, dtype=torch.float64) - size // 2
    ky, kx = torch.meshgrid(k, k, indexing="ij")
    apix = _col(pixel_size, n)
    fx, fy = kx[None] / (size * apix), ky[None] / (size * apix)
    s2 = fx * fx + fy * fy
    ang = torch.atan2(fy, fx)
    lam = _col(wavelength(voltage), n)
    u, v = _col(defocus_u, n), _col(defocus_v, n)
    az = torch.deg2rad(_col(defocus_angle, n))
    dfz = 0.5 * (u + v) + 0.5 * (u - v) * torch.cos(2.0 * (ang - az))
    cs_a = _col(cs, n) * 1e7
    w = _col(amplitude_contrast, n)
    phase = (np.pi * lam * dfz * s2 - 0.5 * np.pi * cs_a * lam**3 * s2 * s2
             + torch.deg2rad(_col(phase_shift, n)) + torch.atan(w / torch.sqrt(1.0 - w * w)))
    out = torch.sin(phase) * torch.exp(-_col(bfactor, n) * s2 / 4.0)
    return out.to(torch.float32)


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
    """Multiply centred image spectra [B, N, N] by the CTF; ``phase_flip`` keeps only |CTF| (images
    as after phase-flipping correction: no contrast reversals, the amplitude modulation stays)."""
    return images_ft * (ctf.abs() if phase_flip else ctf)
