"""RELION's background normalisation: background outside a circle, ramp removed, zero mean, unit std."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.extract.normalise import background_mask, default_radius, normalise


def test_background_is_strictly_outside_the_circle_around_pixel_n_over_2():
    # n = 4: logical coordinates -2..1; i² + j² <= 1 holds for the centre and its 4 neighbours
    m = background_mask(4, 1)
    assert m.sum() == 11 and not m[2, 2] and not m[1, 2] and not m[3, 2] and not m[2, 1] and not m[2, 3]
    assert m[1, 1]  # (-1, -1): 2 > 1
    assert default_radius(64) == 24  # RELION: 75 % of the box diameter
    with pytest.raises(ValueError):
        background_mask(10, 6)


def test_ramp_removed_then_background_zero_mean_unit_std():
    rng = np.random.default_rng(0)
    n, r = 32, 10
    i, j = np.mgrid[:n, :n] - n // 2
    noise = rng.standard_normal((n, n))
    disk = (i**2 + j**2 <= r * r) * 5.0
    box = 3.0 * j - 2.0 * i + 7.0 + 0.5 * noise + disk
    out = normalise(box, r, ramp=True)
    bg = background_mask(n, r)
    assert abs(out[bg].mean()) < 1e-5 and abs(out[bg].std() - 1.0) < 1e-5
    # by hand: the least-squares plane over the background, then its residual's stats
    design = np.stack([j[bg], i[bg], np.ones(bg.sum())], 1)
    coef, *_ = np.linalg.lstsq(design, box[bg], rcond=None)
    assert np.allclose(coef, [3.0, -2.0, 7.0], atol=0.05)  # the planted ramp is found
    resid = box - (coef[0] * j + coef[1] * i + coef[2])
    np.testing.assert_allclose(out, (resid - resid[bg].mean()) / resid[bg].std(), atol=1e-4)
    # the particle stands out by 5 / (0.5 * noise std) = ~10 background std
    assert 8 < out[~bg].mean() - out[bg].mean() < 12


def test_without_ramp_only_mean_and_std_and_batches_match_singles():
    rng = np.random.default_rng(1)
    boxes = rng.standard_normal((3, 16, 16)) * 4 + 2 + np.arange(16)[None, None, :]
    out = normalise(boxes, 5, ramp=False)
    bg = background_mask(16, 5)
    for k in range(3):
        b = boxes[k]
        np.testing.assert_allclose(out[k], (b - b[bg].mean()) / b[bg].std(), atol=1e-5)
        np.testing.assert_allclose(normalise(b, 5, ramp=False), out[k], atol=1e-6)
    # zero background std: not divided (RELION warns and skips); the ramp (here the constant) is gone
    flat = normalise(np.full((8, 8), 3.0), 2)
    assert np.isfinite(flat).all() and np.abs(flat).max() < 1e-6
    np.testing.assert_array_equal(normalise(np.full((8, 8), 3.0), 2, ramp=False), np.full((8, 8), 3.0))
