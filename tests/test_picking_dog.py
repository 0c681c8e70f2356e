"""The DoG baseline and the shared peak machinery on planted particles."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.picking.dog import bin_image, dog_score_map
from cryofm.picking.metrics import score_micrographs
from cryofm.picking.peaks import ScoreMap, candidates, otsu_threshold
from cryofm.picking.picker import pick
from tests.picking_synth import planted_micrograph


def test_dog_finds_planted_particles():
    img, truth = planted_micrograph(size=512, diameter=32, n=40, noise=1.0, seed=1)
    picks = pick(dog_score_map(img, 32, particle_contrast="dark"), 32)
    m = score_micrographs([picks.xy], [truth], radius=16)["pooled"]
    assert m["f1"] > 0.9, m
    # centres are refined to within a few px of the planted ones
    d = np.hypot(*(picks.xy[:, None] - truth[None]).transpose(2, 0, 1)).min(axis=1)
    assert np.median(d) < 3.0


def test_dog_with_binning_and_wrong_contrast():
    img, truth = planted_micrograph(size=768, diameter=60, n=30, noise=1.0, seed=2)
    smap = dog_score_map(img, 60)  # bins by 2: grid step 2 px, cell centres at 0.5 + 2 i
    assert smap.step == 2 and smap.x0 == 0.5
    m = score_micrographs([pick(smap, 60).xy], [truth], radius=30)["pooled"]
    assert m["f1"] > 0.9, m
    wrong = pick(dog_score_map(img, 60, particle_contrast="bright"), 60).xy
    assert score_micrographs([wrong], [truth], radius=30)["pooled"]["f1"] < 0.3


def test_bin_image_block_means():
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(bin_image(a, 2), [[2.5, 4.5], [10.5, 12.5]])


def test_nms_edge_and_grid_alignment():
    v = np.zeros((50, 50), np.float32)
    v[10, 10] = 5.0
    v[10, 12] = 4.0  # 2 cells = 8 px from the first: suppressed with d = 20, nms 0.7
    v[30, 30] = 3.0
    v[1, 40] = 6.0  # 4 px from the top edge: excluded by edge = 0.5 d = 10 px
    smap = ScoreMap(v, x0=2.0, y0=1.0, step=4.0, shape=(200, 200))
    xy, s = candidates(smap, diameter=20, nms=0.7, edge=0.5, refine=0)
    np.testing.assert_allclose(xy, [[2 + 40, 1 + 40], [2 + 120, 1 + 120]])
    np.testing.assert_allclose(s, [5.0, 3.0])


def test_otsu_splits_two_modes():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0, 1, 500), rng.normal(8, 1, 100)])
    assert 2.5 < otsu_threshold(v) < 5.5
    assert otsu_threshold(np.array([3.0])) == pytest.approx(3.0)
