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
from cryofm.probe.linear import LOGISTIC_C, RIDGE_ALPHA, logistic_path, ridge_path
from cryofm.probe.tasks import Task, cap_per_class, labels

PROTOCOLS = ("id", "ood")
PROTOCOL_SETS = {"id": ("val_id", "test_id"), "ood": ("val_ood", "test_ood")}  # (validation, test)
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


def make_sets(
    sides: np.ndarray, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> dict[str, np.ndarray]:
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
    sets = {
        "train": np.sort(perm[:n1]),
        "val_id": np.sort(perm[n1:n2]),
        "test_id": np.sort(perm[n2:]),
        "val_ood": np.flatnonzero(sides == "val"),
        "test_ood": np.flatnonzero(sides == "heldout"),
    }
    if len(sets["val_ood"]) == 0:
        sets["val_ood"] = sets["val_id"]
    return sets


def erased_variants(
    x: np.ndarray, acq: np.ndarray, acq_names: Sequence[str], train: np.ndarray, methods: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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


def probe_task(
    task: Task,
    x: np.ndarray,
    records: Mapping[str, Sequence[Any]],
    sets: Mapping[str, np.ndarray],
    settings: Settings,
) -> dict[str, Any]:
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
    if cls:
        path = logistic_path(x[s["train"]], ytr, settings.logistic_c, settings.max_iter, settings.seed)
    else:
        path = ridge_path(x[s["train"]], ytr, settings.ridge_alpha)
    for proto, (vname, tname) in PROTOCOL_SETS.items():
        i, _ = path.select(x[s[vname]], y[s[vname]])
        out["chosen"][proto] = path.grid[i]
        out[proto] = path.metrics(i, x[s[tname]], y[s[tname]]) if len(s[tname]) else {"n": 0}
    return out


def acquisition_predictability(
    x: np.ndarray, acq: np.ndarray, names: Sequence[str], sets: Mapping[str, np.ndarray], settings: Settings
) -> dict[str, dict[str, float]]:
    """How well each acquisition column can be predicted from ``x``: ridge fitted on probe-train,
    strength chosen on the protocol's validation set, R² vs the probe-train mean on its test set
    (chance 0), ``{name: {"id": r2, "ood": r2}}``."""
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        a = acq[:, j]
        ok = np.isfinite(a)
        tr = sets["train"][ok[sets["train"]]]
        if len(tr) < settings.min_train or np.ptp(a[tr]) == 0:
            continue
        path = ridge_path(x[tr], a[tr], settings.ridge_alpha)
        out[name] = {}
        for proto, (vname, tname) in PROTOCOL_SETS.items():
            va, te = sets[vname][ok[sets[vname]]], sets[tname][ok[sets[tname]]]
            if len(te) < 2:
                continue
            i, _ = path.select(x[va], a[va])
            out[name][proto] = path.metrics(i, x[te], a[te])["r2_vs_train_mean"]
    return out
