"""Per-particle normalisation and box resizing, shared by ingest, training and micrograph windows.

Both work on one image [H, W] or a batch [..., H, W] (NumPy, float32 out).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft


def normalize(images: np.ndarray, mode: str = "whole", bg_radius: float = 0.45,
              eps: float = 1e-6) -> np.ndarray:
    """Zero mean, unit standard deviation per image.

    Args:
        images: [..., H, W] array.
        mode: ``whole`` uses every pixel; ``background`` uses pixels outside a circle of
            ``bg_radius`` × box edge (RELION's convention: the particle does not bias the stats).
        bg_radius: radius of the particle circle as a fraction of the box edge.
        eps: floor of the standard deviation (a constant image stays finite).
    """
    x = np.asarray(images, dtype=np.float32)
    if mode == "whole":  # two passes over the pixels: the mean, then the centred sum of squares
        y = x - x.mean(axis=(-2, -1), keepdims=True)
        std = np.sqrt(np.einsum("...ij,...ij->...", y, y) / (x.shape[-2] * x.shape[-1]))
        y *= (1.0 / np.maximum(std, eps))[..., None, None]
        return y
    if mode == "background":
        h, w = x.shape[-2:]
        yy, xx = np.mgrid[:h, :w]
        r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
        bg = r > bg_radius * min(h, w)
        vals = x[..., bg]
        mean = vals.mean(axis=-1)[..., None, None]
        std = vals.std(axis=-1)[..., None, None]
    else:
        raise ValueError(f"unknown normalisation mode {mode!r} (whole or background)")
    return (x - mean) / np.maximum(std, eps)


def fourier_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize square images [..., N, N] to [..., size, size] by Fourier cropping or zero-padding.

    This is the cryo-EM way (RELION/cryoSPARC downsampling): no aliasing when shrinking, band-limited
    interpolation when growing; the pixel size changes by N / size and the real-space mean and
    contrast are kept. The kept frequencies are -size/2 .. size/2-1 per axis (the real part of the
    centred complex crop); shrinking between even sizes uses real FFTs (about 4x faster), with the
    output Nyquist row / column symmetrised so the result equals the complex-crop definition.
    """
    x = np.asarray(images, dtype=np.float32)
    n = x.shape[-1]
    if x.shape[-2] != n:
        raise ValueError(f"expected square images, got {x.shape[-2:]}")
    if n == size:
        return x.copy()
    if size < n and n % 2 == 0 and size % 2 == 0:
        return _crop_even_rfft(x, size)
    f = np.fft.fftshift(np.fft.fft2(x), axes=(-2, -1))
    out = np.zeros(x.shape[:-2] + (size, size), dtype=np.complex64)
    m = min(n, size)
    src0, dst0 = n // 2 - m // 2, size // 2 - m // 2
    out[..., dst0:dst0 + m, dst0:dst0 + m] = f[..., src0:src0 + m, src0:src0 + m]
    res = np.fft.ifft2(np.fft.ifftshift(out, axes=(-2, -1))).real
    return (res * (size * size) / (n * n)).astype(np.float32)


def _crop_even_rfft(x: np.ndarray, size: int) -> np.ndarray:
    """Fourier crop N -> size (both even, size < N) with real FFTs; equals the complex-crop result.

    The N² → size² scale is folded into the transforms (``norm="forward"`` scales the forward
    transform by 1/N² and leaves the inverse unscaled), so no extra pass over the images is made.
    """
    n, h = x.shape[-1], size // 2
    f = sfft.rfft2(x, norm="forward")  # [..., n, n//2+1]: rows are frequencies 0..n/2, -n/2+1..-1
    z = np.empty(x.shape[:-2] + (size, h + 1), dtype=f.dtype)
    z[..., :h, :h] = f[..., :h, :h]
    z[..., h:, :h] = f[..., n - h:, :h]
    # Output column h is the Nyquist: the complex crop holds X[k, -h] there; Re(ifft) symmetrises it
    # with X[k, +h], and X[k, -h] = conj(X[-k, h]).
    col = f[..., :, h]
    col = 0.5 * (col + np.conj(np.roll(col[..., ::-1], 1, axis=-1)))
    z[..., :h, h] = col[..., :h]
    z[..., h:, h] = col[..., n - h:]
    # Output row h (frequency -h) likewise: average of X[-h, c] and X[h, c]; the corner is real.
    z[..., h, :h] = 0.5 * (f[..., n - h, :h] + f[..., h, :h])
    z[..., h, h] = f[..., h, h].real
    return sfft.irfft2(z, s=(size, size), norm="forward").astype(np.float32, copy=False)


def crop_or_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or zero-pad the last two axes to ``size`` × ``size``."""
    h, w = image.shape[-2:]
    out = np.zeros(image.shape[:-2] + (size, size), dtype=image.dtype)
    sh, sw = min(h, size), min(w, size)
    ys, xs = (h - sh) // 2, (w - sw) // 2
    yd, xd = (size - sh) // 2, (size - sw) // 2
    out[..., yd:yd + sh, xd:xd + sw] = image[..., ys:ys + sh, xs:xs + sw]
    return out
