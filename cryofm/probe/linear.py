"""Linear probes on frozen features: logistic regression (classes) and ridge regression (values).

Features are standardised with statistics of the probe-train set only. The regularisation strength
is chosen on a validation set that is never the reported test set; the probe trained on the
probe-train set with that strength is then scored on each test set.
"""

from __future__ import annotations

import copy
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


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, train_classes: Sequence
) -> dict[str, float]:
    """Accuracy, balanced accuracy, the chance levels of each (uniform guess over train classes;
    majority-class frequency of the test set) and ``in_train_classes``, the fraction of test
    particles whose class occurs in probe-train (the most a probe can get right out of distribution)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "n": 0}
    _, counts = np.unique(y_true.astype(str), return_counts=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes predicted but absent from y_true
        bacc = balanced_accuracy_score(y_true.astype(str), y_pred.astype(str))
    return {
        "accuracy": float(np.mean(y_true.astype(str) == y_pred.astype(str))),
        "balanced_accuracy": float(bacc),
        "chance_balanced_accuracy": 1.0 / max(1, len(train_classes)),
        "chance_accuracy": float(counts.max() / counts.sum()),
        "in_train_classes": float(np.isin(y_true.astype(str), np.asarray(train_classes, str)).mean()),
        "n": int(len(y_true)),
    }


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, train_mean: float | None = None
) -> dict[str, float]:
    """R², MAE in the target's unit and, given ``train_mean``, ``r2_vs_train_mean``.

    Standard R² compares with predicting the *test* mean, which no probe can know out of
    distribution (a held-out experiment whose mean differs makes every constant score ≪ 0).
    ``r2_vs_train_mean = 1 − SSE / Σ(y − mean of probe-train)²`` is 0 for the best constant a probe
    could know and 1 for a perfect one: the chance level of both protocols.
    """
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    out: dict[str, float] = {"n": int(len(y_true))}
    if len(y_true) < 2:
        return {**out, "r2": float("nan"), "mae": float("nan"), "r2_vs_train_mean": float("nan")}
    out.update(r2=float(r2_score(y_true, y_pred)), mae=float(mean_absolute_error(y_true, y_pred)))
    if train_mean is not None:
        ref = float(np.sum((y_true - train_mean) ** 2))
        sse = float(np.sum((y_true - y_pred) ** 2))
        out["r2_vs_train_mean"] = 1.0 - sse / ref if ref > 0 else float("nan")
    return out


@dataclass
class ProbePath:
    """Probes fitted on one probe-train set for every strength of a grid (one fit serves every
    protocol; each picks its strength on its own validation set)."""

    kind: str  # "logistic" | "ridge"
    grid: list[float]
    models: list[Any]
    scaler: Standardizer
    classes: np.ndarray | None = None  # logistic
    mu: float = 0.0  # ridge target mean (probe-train), unit of the target
    sd: float = 1.0  # ridge target std

    def predict(self, i: int, x: np.ndarray) -> np.ndarray:
        """Predictions of the ``i``-th strength: labels (str) or values in the target's unit."""
        if len(x) == 0:
            return np.array([], dtype=str if self.kind == "logistic" else float)
        xs = self.scaler.transform(x)
        if self.kind == "logistic":
            return self.models[i].predict(xs)
        return self.models[i].predict(xs) * self.sd + self.mu

    def metrics(self, i: int, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        if self.kind == "logistic":
            return classification_metrics(np.asarray(y).astype(str), self.predict(i, x), self.classes)
        return regression_metrics(y, self.predict(i, x), train_mean=self.mu)

    def select(self, x_val: np.ndarray, y_val: np.ndarray) -> tuple[int, dict[float, float]]:
        """Index of the strength with the best validation score (balanced accuracy, or R² vs the
        probe-train mean; ties go to the earlier grid entry) and every score."""
        scores: dict[float, float] = {}
        for i, g in enumerate(self.grid):
            if len(y_val) == 0:
                s = 0.0
            elif self.kind == "logistic":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a validation set holding a single class
                    s = float(balanced_accuracy_score(np.asarray(y_val).astype(str), self.predict(i, x_val)))
            else:
                s = self.metrics(i, x_val, y_val).get("r2_vs_train_mean", float("nan"))
            scores[g] = s if np.isfinite(s) else -np.inf
        best = max(range(len(self.grid)), key=lambda i: (scores[self.grid[i]], -i))
        return best, scores


def logistic_path(
    x_tr: np.ndarray, y_tr: np.ndarray, grid: Sequence[float] = LOGISTIC_C, max_iter: int = 300, seed: int = 0
) -> ProbePath:
    """Multinomial logistic probes (L2, lbfgs) for each ``C`` (inverse strength), warm-started from
    the next stronger one. Labels are any hashable values (strings or bin indices)."""
    y = np.asarray(y_tr).astype(str)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"a classification probe needs ≥ 2 classes in probe-train, got {list(classes)}")
    scaler = Standardizer().fit(x_tr)
    xs = scaler.transform(x_tr)
    order = sorted(float(c) for c in grid)
    clf = LogisticRegression(C=order[0], max_iter=max_iter, random_state=seed, warm_start=True)
    models = []
    with warnings.catch_warnings(), blas_threads(xs):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in order:
            clf.set_params(C=c)
            clf.fit(xs, y)
            models.append(copy.deepcopy(clf))
    return ProbePath("logistic", order, models, scaler, classes=classes)


def ridge_path(x_tr: np.ndarray, y_tr: np.ndarray, grid: Sequence[float] = RIDGE_ALPHA) -> ProbePath:
    """Ridge probes on a standardised target for each ``alpha``."""
    scaler = Standardizer().fit(x_tr)
    xs = scaler.transform(x_tr).astype(np.float64)
    y = np.asarray(y_tr, float)
    mu, sd = float(y.mean()), float(y.std()) or 1.0
    order = sorted(float(a) for a in grid)
    with blas_threads(xs):
        models = [Ridge(alpha=a).fit(xs, (y - mu) / sd) for a in order]
    return ProbePath("ridge", order, models, scaler, mu=mu, sd=sd)


@dataclass
class ProbeResult:
    """A probe with its strength chosen on validation, and its metrics on each test set."""

    kind: str
    chosen: float
    val_scores: dict[float, float]
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    path: ProbePath | None = None


def _fit(
    path: ProbePath, x_val: np.ndarray, y_val: np.ndarray, tests: dict[str, tuple[np.ndarray, np.ndarray]]
) -> ProbeResult:
    i, scores = path.select(x_val, y_val)
    res = ProbeResult(path.kind, path.grid[i], scores, path=path)
    for name, (x, y) in tests.items():
        res.test[name] = path.metrics(i, x, y)
    return res


def fit_logistic(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    tests: dict[str, tuple[np.ndarray, np.ndarray]],
    grid: Sequence[float] = LOGISTIC_C,
    max_iter: int = 300,
    seed: int = 0,
) -> ProbeResult:
    """Logistic probe with ``C`` chosen by validation balanced accuracy; ``tests`` maps a test-set
    name to ``(x, y)``, each scored by :func:`classification_metrics`."""
    return _fit(logistic_path(x_tr, y_tr, grid, max_iter, seed), x_val, y_val, tests)


def fit_ridge(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    tests: dict[str, tuple[np.ndarray, np.ndarray]],
    grid: Sequence[float] = RIDGE_ALPHA,
) -> ProbeResult:
    """Ridge probe with ``alpha`` chosen by validation R² (vs the probe-train mean); test metrics
    by :func:`regression_metrics` (MAE in the target's unit)."""
    return _fit(ridge_path(x_tr, y_tr, grid), x_val, y_val, tests)
