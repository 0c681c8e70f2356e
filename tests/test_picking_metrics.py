"""Scoring on hand-made cases whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.picking.metrics import (
    average_precision,
    disk_mask,
    mask_metrics,
    match,
    pr_curve,
    score_micrographs,
)

TRUTH = np.array([[100.0, 100.0], [200.0, 100.0], [100.0, 250.0], [300.0, 300.0]])
D = 60.0  # diameter: match radius 30 px


def test_perfect_picks_f1_one():
    m = score_micrographs([TRUTH + 3.0], [TRUTH], radius=D / 2)
    assert m["pooled"]["f1"] == 1.0 and m["pooled"]["tp"] == 4


def test_shift_beyond_radius_scores_zero():
    m = score_micrographs([TRUTH + np.array([31.0, 0.0])], [TRUTH], radius=D / 2)
    assert m["pooled"]["tp"] == 0 and m["pooled"]["f1"] == 0.0
    m = score_micrographs([TRUTH + np.array([29.0, 0.0])], [TRUTH], radius=D / 2)
    assert m["pooled"]["f1"] == 1.0


def test_duplicates_give_one_true_positive():
    picks = np.array([[100.0, 100.0], [105.0, 102.0], [98.0, 97.0]])  # three picks on one particle
    m = score_micrographs([picks], [TRUTH[:1]], radius=D / 2)["pooled"]
    assert m["tp"] == 1 and m["precision"] == pytest.approx(1 / 3) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))


def test_hungarian_beats_greedy_nearest():
    # pick a sits between t0 and t1, nearer t0; pick b reaches only t0. Greedy nearest matches a-t0
    # and leaves b unmatched (1 TP); the one-to-one optimum is a-t1, b-t0 (2 TP).
    truth = np.array([[0.0, 0.0], [40.0, 0.0]])
    picks = np.array([[18.0, 0.0], [-25.0, 0.0]])
    i, j = match(picks, truth, radius=30)
    assert len(i) == 2 and dict(zip(i, j, strict=True)) == {0: 1, 1: 0}


def test_pooled_sums_counts_and_per_micrograph():
    m = score_micrographs([TRUTH, np.zeros((0, 2))], [TRUTH, TRUTH[:2]], radius=30, names=["a", "b"])
    assert m["per_micrograph"]["a"]["f1"] == 1.0 and m["per_micrograph"]["b"]["recall"] == 0.0
    assert m["pooled"]["recall"] == pytest.approx(4 / 6) and m["pooled"]["precision"] == 1.0


def test_pr_curve_and_ap_on_ranked_picks():
    # 4 true picks scored 4,3,2,1 and 4 false picks scored 3.5, 2.5, 1.5, 0.5 (interleaved)
    false = np.array([[500.0, 500.0], [600.0, 500.0], [500.0, 600.0], [700.0, 700.0]])
    picks = np.concatenate([TRUTH, false])
    scores = np.array([4, 3, 2, 1, 3.5, 2.5, 1.5, 0.5])
    c = pr_curve([picks], [scores], [TRUTH], radius=30)
    # at threshold 4: P=1, R=.25; 3: P=2/3, R=.5; 2: P=3/5, R=.75; 1: P=4/7, R=1
    got = {float(t): (p, r) for t, p, r in zip(c["threshold"], c["precision"], c["recall"], strict=True)}
    assert got[3.0] == pytest.approx((2 / 3, 0.5)) and got[1.0] == pytest.approx((4 / 7, 1.0))
    # interpolated AP: recall steps of .25 at precisions 1, 2/3, 3/5, 4/7
    assert c["ap"] == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 5 + 4 / 7))
    f1_at_1 = 2 * (4 / 7) / (4 / 7 + 1)
    assert c["best"]["f1"] == pytest.approx(f1_at_1) and c["best"]["threshold"] == 1.0


def test_average_precision_perfect_ranking_is_one():
    assert average_precision(np.array([1.0, 1.0, 1.0]), np.array([0.2, 0.6, 1.0])) == pytest.approx(1.0)


def test_mask_metrics_disk_overlap():
    shape = (200, 200)
    gt = disk_mask(np.array([[100.0, 100.0]]), shape, 40)
    assert gt.sum() == pytest.approx(np.pi * 20 ** 2, rel=0.03)
    same = mask_metrics(disk_mask(np.array([[100.0, 100.0]]), shape, 40), gt)
    assert same["dice"] == 1.0 and same["precision"] == 1.0
    far = mask_metrics(disk_mask(np.array([[20.0, 20.0]]), shape, 30), gt)
    assert far["dice"] == 0.0 and far["recall"] == 0.0
    # half-size disk inside: precision 1, recall 1/4, Dice 2·(1/4)/(1 + 1/4) = 0.4
    small = mask_metrics(disk_mask(np.array([[100.0, 100.0]]), shape, 20), gt)
    assert small["precision"] == 1.0 and small["recall"] == pytest.approx(0.25, abs=0.02)
    assert small["dice"] == pytest.approx(0.4, abs=0.02)
