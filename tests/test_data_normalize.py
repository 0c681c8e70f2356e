"""Per-particle normalisation and Fourier resizing against direct definitions."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.data.normalize import crop_or_pad, fourier_resize, normalize


def _reference_resize(x, size):
    """The definition: keep frequencies -size/2..size/2-1 of the centred complex FFT, real part."""
    n = x.shape[-1]
    f = np.fft.fftshift(np.fft.fft2(x.astype(np.float64)), axes=(-2, -1))
    out = np.zeros(x.shape[:-2] + (size, size), complex)
    m = min(n, size)
    a, b = n // 2 - m // 2, size // 2 - m // 2
    out[..., b:b + m, b:b + m] = f[..., a:a + m, a:a + m]
    return np.fft.ifft2(np.fft.ifftshift(out, axes=(-2, -1))).real * size * size / (n * n)


@pytest.mark.parametrize(("n", "size"), [(256, 224), (64, 32), (48, 30), (33, 20), (32, 45), (40, 64)])
def test_resize_equals_definition(n, size):
    x = np.random.default_rng(n + size).normal(size=(3, n, n)).astype(np.float32)
    got = fourier_resize(x, size)
    assert got.shape == (3, size, size) and got.dtype == np.float32
    np.testing.assert_allclose(got, _reference_resize(x, size), atol=2e-5)


def test_band_limited_cosine_is_resampled_exactly():
    n, size, k = 64, 48, 5  # 5 cycles per box, well below both Nyquists
    t = np.arange(n) / n
    img = 2.0 + np.cos(2 * np.pi * k * t)[None, :] * np.ones((n, 1))
    got = fourier_resize(img, size)
    t2 = np.arange(size) / size
    want = 2.0 + np.cos(2 * np.pi * k * t2)[None, :] * np.ones((size, 1))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.mean() == pytest.approx(2.0, abs=1e-6)  # mean kept


def test_normalize_whole_and_background():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(4, 32, 32))
    z = normalize(x)
    np.testing.assert_allclose(z.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(1, 2)), 1, atol=1e-5)
    img = np.zeros((32, 32))
    img[12:20, 12:20] = 100.0  # a bright particle in the centre
    img += rng.normal(0, 2.0, size=img.shape)
    zb = normalize(img, "background")
    yy, xx = np.mgrid[:32, :32]
    bg = np.hypot(yy - 15.5, xx - 15.5) > 0.45 * 32
    assert zb[bg].mean() == pytest.approx(0, abs=1e-5) and zb[bg].std() == pytest.approx(1, abs=1e-5)


def test_crop_or_pad():
    a = np.arange(16.0).reshape(4, 4)
    assert crop_or_pad(a, 2).tolist() == [[5.0, 6.0], [9.0, 10.0]]
    p = crop_or_pad(a, 6)
    assert p.shape == (6, 6) and p[1:5, 1:5].tolist() == a.tolist() and p.sum() == a.sum()
