"""Fourier shell correlation: 1 for a map with itself, ~0 for independent noise, known cut-offs."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.io.mapio import read_map
from cryofm.maps.fsc import fsc_curve, resolution_at, soft_mask
from tests.conftest import shared_file


def test_real_map_with_itself_is_one_at_every_shell():
    dmap = read_map(shared_file("emd1997_groel", "1997.map"))
    freq, fsc = fsc_curve(dmap.data, dmap.data, 2.02)
    assert len(freq) == 50  # shells 1..50 of width 1 / (100 * 2.02) Å^-1, up to Nyquist 1 / 4.04
    np.testing.assert_allclose(freq[-1], 0.5 / 2.02, rtol=1e-9)
    np.testing.assert_allclose(fsc, 1.0, atol=1e-6)
    assert resolution_at(freq, fsc, 0.143) == pytest.approx(4.04)  # never falls: Nyquist
    # Scaling one map (a per-shell factor) leaves the correlation unchanged.
    _, fsc2 = fsc_curve(dmap.data, 3.0 * dmap.data + 0.0, 2.02)
    np.testing.assert_allclose(fsc2, 1.0, atol=1e-6)


def test_independent_noise_gives_near_zero():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 48, 48, 48))
    freq, fsc = fsc_curve(a, b, 1.0)
    assert abs(fsc.mean()) < 0.02
    assert np.all(np.abs(fsc[3:]) < 0.15)  # shells beyond the first few hold hundreds of voxels


def test_shared_low_frequencies_give_the_cutoff_resolution():
    rng = np.random.default_rng(1)
    n, voxel, cutoff = 64, 1.5, 0.1  # shared signal below 0.1 / Å, independent above: 10 Å
    k = np.sqrt(sum(f**2 for f in np.meshgrid(*[np.fft.fftfreq(n, voxel)] * 2, np.fft.rfftfreq(n, voxel),
                                              indexing="ij")))
    shared = np.fft.rfftn(rng.normal(size=(n, n, n)))
    own1, own2 = np.fft.rfftn(rng.normal(size=(2, n, n, n)), axes=(1, 2, 3))
    m1 = np.fft.irfftn(np.where(k < cutoff, shared, own1), s=(n, n, n), axes=(0, 1, 2))
    m2 = np.fft.irfftn(np.where(k < cutoff, shared, own2), s=(n, n, n), axes=(0, 1, 2))
    freq, fsc = fsc_curve(m1, m2, voxel)
    assert np.all(fsc[freq < cutoff - 0.02] > 0.99)
    assert np.all(np.abs(fsc[freq > cutoff + 0.02]) < 0.2)
    assert resolution_at(freq, fsc, 0.5) == pytest.approx(1 / cutoff, rel=0.05)
    assert resolution_at(freq, fsc, 0.143) == pytest.approx(1 / cutoff, rel=0.05)


def test_resolution_interpolates_between_shells():
    freq = np.array([0.1, 0.2, 0.3, 0.4])
    fsc = np.array([0.9, 0.7, 0.3, 0.1])
    # 0.5 is crossed half-way between 0.2 and 0.3 / Å: 0.25 / Å = 4 Å.
    assert resolution_at(freq, fsc, 0.5) == pytest.approx(4.0)
    assert resolution_at(freq, fsc, 0.95) == pytest.approx(10.0)  # below at the first shell


def test_soft_mask_profile():
    d = np.array([0.0, 3.0, 4.5, 6.0, 9.0, np.inf])
    np.testing.assert_allclose(soft_mask(d, 3.0, 3.0), [1, 1, 0.5, 0, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(soft_mask(d, 3.0, 0.0), [1, 1, 0, 0, 0, 0])
