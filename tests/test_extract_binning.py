"""Fourier binning of whole micrographs: exact on band-limited images, no aliasing, pixel k at k·b."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.extract.binning import binned_shape, fourier_bin


def _waves(h: int, w: int, step: float, waves) -> np.ndarray:
    """Sum of cosines sampled every ``step`` original px (waves: (amplitude, ky, kx, phase), cycles/px)."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64) * step
    return sum(a * np.cos(2 * np.pi * (ky * yy + kx * xx) + ph) for a, ky, kx, ph in waves)


@pytest.mark.parametrize(("shape", "factor"), [((240, 320), 2), ((243, 300), 3), ((250, 250), 4)])
def test_band_limited_image_bins_to_its_coarse_samples(shape, factor):
    # frequencies well below the binned Nyquist (0.5 / factor cycles per original px): binning must
    # give exactly the same cosines sampled on the coarse grid k * factor (index 0 stays aligned)
    h, w = shape
    hb, wb = binned_shape(shape, factor)
    # integer cycles over the trimmed extent keep the cosines periodic, as the FFT assumes
    waves = [(1.0, 0, 0, 0.0), (0.7, 3 / (hb * factor), 5 / (wb * factor), 0.4),
             (0.3, -7 / (hb * factor), 2 / (wb * factor), 1.1)]
    img = _waves(h, w, 1.0, waves).astype(np.float32)
    out = fourier_bin(img, factor)
    assert out.shape == (h // factor, w // factor)
    np.testing.assert_allclose(out, _waves(hb, wb, factor, waves), atol=2e-5)


def test_frequencies_above_the_new_nyquist_are_removed_not_aliased():
    # a cosine at 0.4 cycles/px: above the bin-2 Nyquist (0.25). Pixel skipping folds it down to
    # 0.1 cycles/px at full amplitude; Fourier binning removes it and keeps the mean.
    img = (5.0 + np.cos(2 * np.pi * 0.4 * np.arange(200))[None, :] * np.ones((100, 1))).astype(np.float32)
    skipped = img[::2, ::2]
    assert skipped.std() > 0.7  # the alias is there at (nearly) full strength
    out = fourier_bin(img, 2)
    assert abs(out.mean() - 5.0) < 1e-5 and out.std() < 1e-4


def test_a_blob_at_x_y_lands_at_x_over_b():
    yy, xx = np.mgrid[:256, :384]
    x, y = 201.0, 97.0
    img = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 6.0**2)).astype(np.float32)
    out = fourier_bin(img, 4)
    oy, ox = np.mgrid[: out.shape[0], : out.shape[1]]
    wgt = np.clip(out, 0, None)
    cx, cy = (wgt * ox).sum() / wgt.sum(), (wgt * oy).sum() / wgt.sum()
    assert abs(cx - x / 4) < 0.05 and abs(cy - y / 4) < 0.05


def test_factor_one_is_a_copy_and_bad_factors_are_refused():
    img = np.random.default_rng(0).standard_normal((10, 12)).astype(np.float32)
    np.testing.assert_array_equal(fourier_bin(img, 1), img)
    with pytest.raises(ValueError):
        fourier_bin(img, 1.5)
    with pytest.raises(ValueError):
        fourier_bin(img, 0)
