"""Fourier binning of a whole micrograph before particles are cut from it.

Binning by an integer factor ``b`` keeps the frequencies below the new Nyquist and drops the rest
(no aliasing, unlike pixel skipping or block averaging, which leaks high frequencies back in).
The micrograph is first trimmed at its right and bottom edges to a multiple of ``b`` (at most
``b - 1`` rows / columns, where no whole box fits anyway), so that binned pixel ``k`` lies exactly
on original pixel ``k · b``: a pick at ``(x, y)`` is at ``(x / b, y / b)`` after binning and the
pixel size is exactly ``b`` times the original one.

The kept frequencies per axis of output length ``m`` are ``-⌊m/2⌋ .. ⌈m/2⌉ - 1``; for even ``m``
the Nyquist row / column (``-m/2``) is set to zero, because it has no unambiguous value in a
cropped spectrum (a small loss at the band edge, no bias). The mean is kept (``norm="forward"``).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft


def binned_shape(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    """(rows, columns) of a micrograph of ``shape`` after binning by ``factor``."""
    return shape[0] // factor, shape[1] // factor


def fourier_bin(image: np.ndarray, factor: int, workers: int = 1) -> np.ndarray:
    """Bin a 2-D micrograph by the integer ``factor`` in Fourier space; float32 out.

    Args:
        image: [H, W] micrograph.
        factor: integer binning factor (1 returns a float32 copy).
        workers: FFT threads (``scipy.fft`` ``workers``).

    Returns:
        [H // factor, W // factor] array; pixel ``k`` sits at original pixel ``k · factor``.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"binning factor must be a whole number >= 1, got {factor}")
    factor = int(factor)
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D micrograph, got shape {a.shape}")
    if factor == 1:
        return a.copy()
    h, w = binned_shape(a.shape, factor)
    if h < 2 or w < 2:
        raise ValueError(f"a {a.shape} micrograph is too small to bin by {factor}")
    a = a[: h * factor, : w * factor]
    f = sfft.rfft2(a, norm="forward", workers=workers)  # [h*b, w*b//2 + 1]
    n_rows = f.shape[0]
    lo, hi = h // 2, h - h // 2  # rows kept: 0..hi-1 and -lo..-1
    z = np.zeros((h, w // 2 + 1), dtype=f.dtype)
    z[:hi] = f[:hi, : w // 2 + 1]
    if lo:
        z[h - lo:] = f[n_rows - lo:, : w // 2 + 1]
    if h % 2 == 0:
        z[h // 2] = 0  # row -h/2: the output Nyquist (see the module docstring)
    if w % 2 == 0:
        z[:, w // 2] = 0
    return sfft.irfft2(z, s=(h, w), norm="forward", workers=workers).astype(np.float32, copy=False)
