"""Linear probes on frozen features: logistic regression (classes) and ridge regression (values).

Features are standardised with statistics of the probe-train set only. The regularisation strength
is chosen on a validation set that is never the reported test set; the probe trained on the
probe-train set with that strength is then scored on each test set.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, r2_score
from threadpoolctl import threadpool_limits

LOGISTIC_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
RIDGE_ALPHA = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
# Below this many matrix entries, BLAS threads cost more than they bring (and oversubscribe a shared
# machine 5-8x in our measurements): fit single-threaded.
SMALL = 2_000_000


def blas_threads(x: np.ndarray):
    """threadpoolctl context: one BLAS thread for a small matrix ``x``, the default otherwise."""
    return threadpool_limits(limits=1 if x.size < SMALL else None)


class Standardizer:
    """Zero-mean, unit-variance columns from the fit set's statistics (constant columns kept at 0)."""

    def fit(self, x: np.ndarray) -> Standardizer:
        self.mean = x.mean(0)
        std = x.std(0)
        self.scale = np.where(std > 1e-12, std, np.inf)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32 if x.dtype == np.float32 else np.float64)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           train_classes: Sequence) -> dict[str, float]:
    """Accuracy, balanced accuracy and the chance levels of each (uniform guess over train classes;
    majority-class frequency of the test set)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "n": 0}
    _, counts = np.unique(y_true.astype(str), return_counts=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes predicted but absent from y_true
        bacc = balanced_accuracy_score(y_true.astype(str), y_pred.astype(str))
    return {"accuracy": float(np.mean(y_true.astype(str) == y_pred.astype(str))),
            "balanced_accuracy": float(bacc),
            "chance_balanced_accuracy": 1.0 / max(1, len(train_classes)),
            "chance_accuracy": float(counts.max() / counts.sum()),
            "n": int(len(y_true))}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R² (chance = 0: predicting the test mean) and MAE in the target's unit."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) < 2:
        return {"r2": float("nan"), "mae": float("nan"), "n": int(len(y_true))}
    return {"r2": float(r2_score(y_true, y_pred)), "mae": float(mean_absolute_error(y_true, y_pred)),
            "n": int(len(y_true))}


@dataclass
class ProbeResult:
    """A fitted probe: chosen strength, validation score per strength, test metrics per test set."""

    kind: str
    chosen: float
    val_scores: dict[float, float]
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    model: Any = None
    scaler: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chosen": self.chosen,
                "val_scores": {f"{k:g}": v for k, v in self.val_scores.items()}, "test": self.test}


def _fit_logistic(x: np.ndarray, y: np.ndarray, c: float, max_iter: int, seed: int) -> LogisticRegression:
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(), blas_threads(x):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def fit_logistic(x_tr: np.ndarray, y_tr: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 tests: dict[str, tuple[np.ndarray, np.ndarray]], grid: Sequence[float] = LOGISTIC_C,
                 max_iter: int = 300, seed: int = 0) -> ProbeResult:
    """Multinomial logistic probe; ``C`` (inverse L2 strength) chosen by validation balanced accuracy.

    Labels are any hashable values (strings or bin indices). ``tests`` maps a test-set name to
    ``(x, y)``; each gets :func:`classification_metrics`.
    """
    y_tr = np.asarray(y_tr).astype(str)
    scaler = Standardizer().fit(x_tr)
    xs = scaler.transform(x_tr)
    classes = np.unique(y_tr)
    if len(classes) < 2:
        raise ValueError(f"a classification probe needs ≥ 2 classes in probe-train, got {list(classes)}")
    xv = scaler.transform(x_val)
    yv = np.asarray(y_val).astype(str)
    scores: dict[float, float] = {}
    best: tuple[float, float, LogisticRegression | None] = (-np.inf, float(grid[0]), None)
    for c in grid:
        clf = _fit_logistic(xs, y_tr, float(c), max_iter, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a validation set holding a single class
            s = float(balanced_accuracy_score(yv, clf.predict(xv))) if len(yv) else 0.0
        scores[float(c)] = s
        if s > best[0] + 1e-12:
            best = (s, float(c), clf)
    res = ProbeResult("logistic", best[1], scores, model=best[2], scaler=scaler)
    for name, (x, y) in tests.items():
        pred = best[2].predict(scaler.transform(x)) if len(x) else np.array([], dtype=str)
        res.test[name] = classification_metrics(np.asarray(y).astype(str), pred, classes)
    return res


def fit_ridge(x_tr: np.ndarray, y_tr: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              tests: dict[str, tuple[np.ndarray, np.ndarray]],
              grid: Sequence[float] = RIDGE_ALPHA) -> ProbeResult:
    """Ridge probe on a standardised target; ``alpha`` chosen by validation R². Test MAE is in the
    target's own unit."""
    scaler = Standardizer().fit(x_tr)
    xs = scaler.transform(x_tr).astype(np.float64)
    y_tr = np.asarray(y_tr, float)
    mu, sd = float(y_tr.mean()), float(y_tr.std()) or 1.0
    yt = (y_tr - mu) / sd
    xv = scaler.transform(x_val)
    scores: dict[float, float] = {}
    best: tuple[float, float, Ridge | None] = (-np.inf, float(grid[0]), None)
    for a in grid:
        with blas_threads(xs):
            reg = Ridge(alpha=float(a)).fit(xs, yt)
        s = regression_metrics(y_val, reg.predict(xv) * sd + mu)["r2"] if len(y_val) > 1 else 0.0
        s = -np.inf if not np.isfinite(s) else s
        scores[float(a)] = float(s)
        if s > best[0] + 1e-12 or best[2] is None:
            best = (s, float(a), reg)
    model = best[2]
    res = ProbeResult("ridge", best[1], scores, model=(model, mu, sd), scaler=scaler)
    for name, (x, y) in tests.items():
        pred = model.predict(scaler.transform(x)) * sd + mu if len(x) else np.array([])
        res.test[name] = regression_metrics(y, pred)
    return res
