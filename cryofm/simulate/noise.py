"""Noise models: white Gaussian noise at a chosen SNR, shot noise at a chosen dose, coloured noise.

SNR is the ratio of the variance of the noise-free image (over the whole box) to the variance of the
added noise, per particle. ``snr_spread`` draws each particle's SNR from a log-normal around the
target, the particle-to-particle variation of real data (ice thickness, dose, drift).
"""

from __future__ import annotations

import numpy as np


def particle_snr(n: int, snr: float, spread: float, rng: np.random.Generator) -> np.ndarray:
    """[n] per-particle SNRs: log-normal with median ``snr`` and log-standard deviation ``spread``."""
    if snr <= 0:
        raise ValueError(f"snr must be > 0, got {snr}")
    return snr * np.exp(spread * rng.standard_normal(n)) if spread > 0 else np.full(n, float(snr))


def add_gaussian_noise(images: np.ndarray, snr: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``images`` [B, H, W] + white Gaussian noise of variance ``var(image) / snr`` (per image)."""
    x = np.asarray(images, dtype=np.float32)
    snr = np.broadcast_to(np.asarray(snr, dtype=np.float64), x.shape[:1])
    sigma = np.sqrt(x.reshape(len(x), -1).var(axis=1) / snr).astype(np.float32)
    return x + sigma[:, None, None] * rng.standard_normal(x.shape, dtype=np.float32)


def shot_noise(images: np.ndarray, dose: float | np.ndarray, pixel_size: float | np.ndarray,
               contrast: float, rng: np.random.Generator) -> np.ndarray:
    """Electron counts: Poisson with mean ``dose × pixel_size² × (1 − contrast × image / max|image|)``.

    Args:
        images: [B, H, W] noise-free (CTF-modulated) images, any units.
        dose: exposure in e⁻/Å² (scalar or [B]).
        pixel_size: Å/px (scalar or [B]).
        contrast: fractional modulation of the beam by the strongest feature (≈ 0.1 for ice).
    Returns float32 counts with the same shape (dark = more scattering, as in raw micrographs).
    """
    x = np.asarray(images, dtype=np.float32)
    b = len(x)
    mean_counts = (np.broadcast_to(np.asarray(dose, dtype=np.float64), (b,))
                   * np.broadcast_to(np.asarray(pixel_size, dtype=np.float64), (b,)) ** 2)
    peak = np.abs(x).reshape(b, -1).max(axis=1)
    rel = x / np.where(peak > 0, peak, 1.0)[:, None, None]
    lam = mean_counts[:, None, None] * np.clip(1.0 - contrast * rel, 0.0, None)
    return rng.poisson(lam).astype(np.float32)


def coloured_noise(shape: tuple[int, ...], exponent: float, rng: np.random.Generator,
                   cutoff: float = 0.0) -> np.ndarray:
    """Unit-variance Gaussian noise with power spectrum ∝ 1 / f^exponent (0 white, 2 ~ ice / drift).

    ``cutoff`` (cycles/px) sets a low-frequency floor so the spectrum stays finite at f = 0.
    """
    h, w = shape[-2:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    amp = 1.0 / np.maximum(f, max(cutoff, 1.0 / max(h, w))) ** (exponent / 2.0)
    spec = (rng.standard_normal(shape[:-2] + f.shape) + 1j * rng.standard_normal(shape[:-2] + f.shape)) * amp
    out = np.fft.irfft2(spec, s=(h, w))
    out -= out.mean(axis=(-2, -1), keepdims=True)
    return (out / out.std(axis=(-2, -1), keepdims=True)).astype(np.float32)
