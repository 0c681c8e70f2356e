"""Linear probes on synthetic features whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cryofm.probe.linear import (
    RIDGE_ALPHA,
    classification_metrics,
    fit_logistic,
    fit_ridge,
    logistic_path,
    regression_metrics,
)


def _split(n, rng):
    idx = rng.permutation(n)
    return idx[: n // 2], idx[n // 2 : 3 * n // 4], idx[3 * n // 4 :]


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


def test_r2_against_the_probe_train_mean_hand_computed():
    y = np.array([10.0, 12.0, 14.0])
    m = regression_metrics(y, np.full(3, 5.0), train_mean=5.0)  # predicting the train mean: chance
    assert m["r2_vs_train_mean"] == 0.0
    assert m["r2"] == pytest.approx(1 - (25 + 49 + 81) / 8)  # standard R² punishes the shifted mean
    m = regression_metrics(y, np.array([11.0, 12.0, 13.0]), train_mean=5.0)
    assert m["r2_vs_train_mean"] == pytest.approx(1 - 2 / 155)
    assert m["mae"] == pytest.approx(2 / 3)


def test_warm_started_logistic_path_matches_independent_fits():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 6))
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=300) > 0).astype(int)
    path = logistic_path(x, y, grid=(10.0, 0.01, 1.0), max_iter=1000)
    assert path.grid == [0.01, 1.0, 10.0]
    xs = path.scaler.transform(x)
    for c, model in zip(path.grid, path.models, strict=True):
        cold = LogisticRegression(C=c, max_iter=1000).fit(xs, y.astype(str))
        np.testing.assert_allclose(model.coef_, cold.coef_, rtol=1e-2, atol=2e-3)  # lbfgs tol


def test_classification_metrics_count_unseen_classes_and_chance():
    m = classification_metrics(
        np.array(["a", "a", "c", "b"]), np.array(["a", "b", "a", "b"]), train_classes=["a", "b"]
    )
    assert m["accuracy"] == 0.5
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 0) / 3)  # recall of a, b, c
    assert m["in_train_classes"] == 0.75 and m["chance_balanced_accuracy"] == 0.5
    assert m["chance_accuracy"] == 0.5  # majority class 'a' is 2 of 4
