"""The two probe protocols, with and without acquisition parameters removed.

Particles of the dataset's *training* experiments are divided at random (seeded) into probe-train,
ID-validation and ID-test. Then:

* **ID** (in distribution): probe fitted on probe-train, strength chosen on ID-validation, reported
  on ID-test — other particles of the same experiments.
* **OOD** (out of distribution): the same probe-train set, strength chosen on the dataset's *val*
  experiments (ID-validation when there are none), reported on the *held-out* experiments.

Each feature matrix is also probed after removing acquisition parameters (:mod:`cryofm.probe.erase`,
fitted on probe-train only), and the erasure is checked by how well each acquisition parameter can
still be predicted from the features (ridge, R² on the test sets; chance is 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryofm.probe.erase import AcquisitionScaler, LeaceEraser, RegressOut
from cryofm.probe.linear import (
    LOGISTIC_C,
    RIDGE_ALPHA,
    classification_metrics,
    fit_logistic,
    fit_ridge,
    regression_metrics,
)
from cryofm.probe.tasks import Task, cap_per_class, labels

PROTOCOLS = ("id", "ood")
ERASURES = ("none", "regress_out", "leace")


@dataclass
class Settings:
    """Probe settings (see ``configs/probe.yaml``)."""

    fractions: Sequence[float] = (0.6, 0.2, 0.2)
    seed: int = 0
    cap: int = 0
    logistic_c: Sequence[float] = LOGISTIC_C
    ridge_alpha: Sequence[float] = RIDGE_ALPHA
    max_iter: int = 300
    min_train: int = 10


def make_sets(sides: np.ndarray, fractions: Sequence[float] = (0.6, 0.2, 0.2),
              seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of each probe set from each row's split side (``train`` / ``val`` / ``heldout``).

    Returns ``train``, ``val_id``, ``test_id`` (a random division of the training experiments'
    particles by ``fractions``), ``val_ood`` (the val experiments, or ``val_id`` when there are none)
    and ``test_ood`` (the held-out experiments).
    """
    sides = np.asarray(sides).astype(str)
    tr_rows = np.flatnonzero(sides == "train")
    f = np.asarray(fractions, float) / np.sum(fractions)
    perm = np.random.default_rng(seed).permutation(tr_rows)
    n1 = int(round(f[0] * len(perm)))
    n2 = n1 + int(round(f[1] * len(perm)))
    sets = {"train": np.sort(perm[:n1]), "val_id": np.sort(perm[n1:n2]), "test_id": np.sort(perm[n2:]),
            "val_ood": np.flatnonzero(sides == "val"), "test_ood": np.flatnonzero(sides == "heldout")}
    if len(sets["val_ood"]) == 0:
        sets["val_ood"] = sets["val_id"]
    return sets


def erased_variants(x: np.ndarray, acq: np.ndarray, acq_names: Sequence[str], train: np.ndarray,
                    methods: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``{"none": x, "regress_out": ..., "leace": ...}`` over all rows, each eraser fitted on the
    ``train`` rows only; plus a description (parameters used, LEACE rank)."""
    out = {"none": x}
    info: dict[str, Any] = {}
    scaler = AcquisitionScaler().fit(acq[train], acq_names)
    info["parameters"] = list(scaler.names)
    if not scaler.names:
        info["note"] = "no acquisition parameter varies on probe-train: nothing to remove"
    if "regress_out" in methods:
        ro = RegressOut().fit(x[train], acq[train], acq_names)
        out["regress_out"] = ro.transform(x, acq)
    if "leace" in methods:
        le = LeaceEraser().fit(x[train], scaler.transform(acq[train]))
        out["leace"] = le.transform(x)
        info["leace_rank"] = int(le.rank)
    return out, info


def _subset(idx: np.ndarray, y: np.ndarray, valid: np.ndarray, cap: int, seed: int, classify: bool):
    idx = idx[valid[idx]]
    if classify and cap > 0:
        idx = idx[cap_per_class(y[idx], cap, seed)]
    return idx


def probe_task(task: Task, x: np.ndarray, records: Mapping[str, Sequence[Any]],
               sets: Mapping[str, np.ndarray], settings: Settings) -> dict[str, Any]:
    """Fit ``task``'s probe on probe-train and score both protocols.

    Returns ``{"id": metrics, "ood": metrics, "chosen": {...}, "n_train": n}`` or
    ``{"skipped": reason}``.
    """
    y, valid = labels(records, task)
    cls = task.is_classification
    cap = task.cap or settings.cap
    s = {k: _subset(v, y, valid, cap, settings.seed, cls) for k, v in sets.items()}
    if len(s["train"]) < settings.min_train:
        return {"skipped": f"{len(s['train'])} labelled probe-train particles (< {settings.min_train})"}
    ytr = y[s["train"]]
    if cls and len(np.unique(ytr.astype(str))) < 2:
        return {"skipped": "fewer than 2 classes among probe-train particles"}
    if not cls and np.ptp(ytr.astype(float)) == 0:
        return {"skipped": "constant target on probe-train"}
    out: dict[str, Any] = {"n_train": int(len(s["train"])), "chosen": {}}
    groups = {"id": ("val_id", "test_id"), "ood": ("val_ood", "test_ood")}
    fitted: dict[str, Any] = {}
    for proto, (vname, tname) in groups.items():
        if len(s[tname]) == 0:
            out[proto] = {"n": 0}
            continue
        tests = {proto: (x[s[tname]], y[s[tname]])}
        vkey = s[vname].tobytes()
        if vkey in fitted:  # same validation set as the other protocol: reuse the fitted probe
            res = fitted[vkey]
            out[proto] = _score(res, tests, cls)[proto]
        else:
            xv, yv = x[s[vname]], y[s[vname]]
            if cls:
                res = fit_logistic(x[s["train"]], ytr, xv, yv, tests, settings.logistic_c, settings.max_iter,
                                   settings.seed)
            else:
                res = fit_ridge(x[s["train"]], ytr, xv, yv, tests, settings.ridge_alpha)
            fitted[vkey] = res
            out[proto] = res.test[proto]
        out["chosen"][proto] = res.chosen
    return out


def _score(res, tests, cls: bool) -> dict[str, dict[str, float]]:
    scores = {}
    for name, (x, y) in tests.items():
        xs = res.scaler.transform(x)
        if cls:
            scores[name] = classification_metrics(np.asarray(y).astype(str), res.model.predict(xs),
                                                  res.model.classes_)
        else:
            model, mu, sd = res.model
            scores[name] = regression_metrics(y, model.predict(xs) * sd + mu)
    return scores


def acquisition_predictability(x: np.ndarray, acq: np.ndarray, names: Sequence[str],
                               sets: Mapping[str, np.ndarray],
                               settings: Settings) -> dict[str, dict[str, float]]:
    """Ridge R² of each acquisition column predicted from ``x`` (fit on probe-train, strength chosen
    on the matching validation set), per protocol: ``{name: {"id": r2, "ood": r2}}``."""
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        a = acq[:, j]
        ok = np.isfinite(a)
        tr = sets["train"][ok[sets["train"]]]
        if len(tr) < settings.min_train or np.ptp(a[tr]) == 0:
            continue
        out[name] = {}
        for proto, (vname, tname) in {"id": ("val_id", "test_id"), "ood": ("val_ood", "test_ood")}.items():
            va, te = sets[vname][ok[sets[vname]]], sets[tname][ok[sets[tname]]]
            if len(te) < 2:
                continue
            res = fit_ridge(x[tr], a[tr], x[va], a[va], {"t": (x[te], a[te])}, settings.ridge_alpha)
            out[name][proto] = res.test["t"]["r2"]
    return out
