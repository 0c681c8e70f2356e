"""Fourier shell correlation between two maps on the same grid, and the resolution at a threshold.

``FSC(k) = Re sum F1 F2* / sqrt(sum |F1|^2 sum |F2|^2)`` over each shell of spatial frequency
``k`` (1/Å). Shells are ``1 / (n_max * voxel)`` wide, from the first non-zero shell up to Nyquist.
Maps are real, so sums run over the half-space of ``rfftn`` (Friedel mates give equal terms).
A masked FSC multiplies both maps by the same (soft) mask first.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft


def fsc_curve(map1: np.ndarray, map2: np.ndarray,
              voxel_size: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (frequency in 1/Å at each shell centre, FSC per shell) of two same-shape maps.

    ``voxel_size`` is in Å (scalar or per axis (x, y, z)). Shells with no Fourier voxels are dropped.
    """
    if map1.shape != map2.shape:
        raise ValueError(f"maps differ in shape: {map1.shape} vs {map2.shape}")
    v = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))[::-1]  # (z, y, x)
    f1 = sp_fft.rfftn(map1.astype(np.float32), workers=-1)
    f2 = sp_fft.rfftn(map2.astype(np.float32), workers=-1)
    shape = map1.shape
    freqs = [np.fft.fftfreq(shape[0], v[0]), np.fft.fftfreq(shape[1], v[1]), np.fft.rfftfreq(shape[2], v[2])]
    kz, ky, kx = np.meshgrid(*freqs, indexing="ij", sparse=True)
    k = np.sqrt(kz**2 + ky**2 + kx**2)
    step = 1.0 / max(n * vi for n, vi in zip(shape, v, strict=True))
    nyquist = 0.5 / float(v.max())
    shell = np.rint(k / step).astype(np.int64).ravel()
    n_shells = int(np.floor(nyquist / step + 1e-9)) + 1
    keep = shell < n_shells
    shell = shell[keep]
    f1, f2 = f1.ravel()[keep], f2.ravel()[keep]
    cross = np.bincount(shell, f1.real * f2.real + f1.imag * f2.imag, n_shells)
    p1 = np.bincount(shell, f1.real**2 + f1.imag**2, n_shells)
    p2 = np.bincount(shell, f2.real**2 + f2.imag**2, n_shells)
    count = np.bincount(shell, minlength=n_shells)
    denom = np.sqrt(p1 * p2)
    with np.errstate(invalid="ignore", divide="ignore"):
        fsc = np.where(denom > 0, cross / denom, 0.0)
    idx = np.arange(n_shells)
    sel = (idx > 0) & (count > 0)
    return idx[sel] * step, fsc[sel]


def resolution_at(freq: np.ndarray, fsc: np.ndarray, threshold: float) -> float:
    """Resolution in Å where the FSC first falls below ``threshold`` (linear interpolation).

    When the curve never falls below it, the resolution of the last shell (Nyquist) is returned;
    when the first shell is already below it, that shell's resolution.
    """
    below = np.flatnonzero(fsc < threshold)
    if len(below) == 0:
        return float(1.0 / freq[-1])
    i = int(below[0])
    if i == 0:
        return float(1.0 / freq[0])
    f0, f1, c0, c1 = freq[i - 1], freq[i], fsc[i - 1], fsc[i]
    f = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
    return float(1.0 / f)


def soft_mask(distance: np.ndarray, radius: float, edge: float) -> np.ndarray:
    """1 within ``radius`` Å of the model, a raised-cosine fall to 0 over ``edge`` Å, then 0."""
    d = np.asarray(distance, dtype=np.float32)
    if edge <= 0:
        return (d <= radius).astype(np.float32)
    t = np.clip((d - radius) / edge, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)
