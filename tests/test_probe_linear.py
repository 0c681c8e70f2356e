"""Linear probes on synthetic features whose answer is known."""

from __future__ import annotations

import numpy as np

from cryofm.probe.linear import RIDGE_ALPHA, fit_logistic, fit_ridge


def _split(n, rng):
    idx = rng.permutation(n)
    return idx[: n // 2], idx[n // 2: 3 * n // 4], idx[3 * n // 4:]


def test_feature_that_encodes_the_label_scores_100_percent():
    rng = np.random.default_rng(0)
    n, k = 600, 4
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x[:, :k] += 6.0 * np.eye(k)[y]  # one-hot label planted in 4 of 16 dims
    tr, va, te = _split(n, rng)
    res = fit_logistic(x[tr], y[tr], x[va], y[va], {"test": (x[te], y[te])})
    assert res.test["test"]["accuracy"] > 0.99
    assert res.test["test"]["chance_balanced_accuracy"] == 0.25


def test_noise_features_score_near_chance():
    rng = np.random.default_rng(1)
    n = 800
    y = rng.integers(0, 4, n)
    x = rng.normal(size=(n, 8))
    tr, va, te = _split(n, rng)
    res = fit_logistic(x[tr], y[tr], x[va], y[va], {"test": (x[te], y[te])})
    assert abs(res.test["test"]["balanced_accuracy"] - 0.25) < 0.1


def test_ridge_recovers_a_linear_target_in_its_units():
    rng = np.random.default_rng(2)
    n = 400
    x = rng.normal(size=(n, 10))
    y = 300.0 + 50.0 * x[:, 0] - 20.0 * x[:, 3]  # e.g. kDa
    tr, va, te = _split(n, rng)
    res = fit_ridge(x[tr], y[tr], x[va], y[va], {"test": (x[te], y[te])})
    assert res.test["test"]["r2"] > 0.999
    assert res.test["test"]["mae"] < 2.0  # kDa, against a target std of ~54 kDa
    assert res.chosen == min(RIDGE_ALPHA)


def test_regularisation_is_chosen_on_validation_not_test():
    # Pure-noise target with many features: the strongest shrinkage predicts best on validation.
    rng = np.random.default_rng(3)
    n, d = 120, 100
    x = rng.normal(size=(n, d))
    y = rng.normal(size=n)
    tr, va, te = _split(n, rng)
    res = fit_ridge(x[tr], y[tr], x[va], y[va], {"test": (x[te], y[te])})
    assert res.chosen == max(RIDGE_ALPHA)
    assert res.chosen == max(res.val_scores, key=res.val_scores.get)
    # the reported test score never influenced the choice: scrambling the test targets keeps it
    res2 = fit_ridge(x[tr], y[tr], x[va], y[va], {"test": (x[te], rng.permutation(y[te]) * 100)})
    assert res2.chosen == res.chosen
