"""How the field scores pickers: one-to-one matching within 0.5 × diameter, P/R/F1, PR curves, AP.

* :func:`match` pairs picks with expert picks one to one (Hungarian assignment on centre distance)
  and keeps pairs closer than ``radius`` (0.5 × particle diameter by convention); it maximises the
  number of pairs first, then minimises their total distance.
* :func:`score_micrographs` sums true positives, picks and expert picks over micrographs (pooled,
  micro-averaged) and also reports each micrograph.
* :func:`pr_curve` sweeps one score threshold over all micrographs (Hungarian matching at each
  threshold), so its best F1 and its area (AP, precision interpolated as the running maximum from
  high recall down, as in PASCAL/COCO) use exactly the matching of the reported F1.
* :func:`mask_metrics` is CryoSegNet's pixel score: picks drawn as disks of the particle diameter
  against the expert mask, precision = |P ∩ G| / |P|, recall = |P ∩ G| / |G|, Dice = 2|P ∩ G| / (|P| + |G|).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


def match(picks: np.ndarray, truth: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (pick_idx, truth_idx) of one-to-one pairs closer than ``radius`` px (≤ counts)."""
    picks = np.asarray(picks, float).reshape(-1, 2)
    truth = np.asarray(truth, float).reshape(-1, 2)
    if len(picks) == 0 or len(truth) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    # only pairs within the radius can match: build the cost on those (sparse in practice)
    tree = cKDTree(truth)
    near = tree.query_ball_point(picks, r=radius)
    rows = [i for i, js in enumerate(near) if js]
    cols = sorted({j for js in near for j in js})
    if not rows:
        return np.zeros(0, int), np.zeros(0, int)
    col_of = {j: k for k, j in enumerate(cols)}
    big = 1e6 * (radius + 1.0)  # any feasible pair beats every infeasible one: maximum cardinality first
    cost = np.full((len(rows), len(cols)), big)
    for r, i in enumerate(rows):
        for j in near[i]:
            cost[r, col_of[j]] = np.hypot(*(picks[i] - truth[j]))
    ri, ci = linear_sum_assignment(cost)
    ok = cost[ri, ci] <= radius
    return np.asarray(rows)[ri[ok]], np.asarray(cols)[ci[ok]]


def prf(tp: int, n_picks: int, n_truth: int) -> dict[str, float]:
    """Precision, recall, F1 from counts (0 where undefined, e.g. no picks)."""
    p = tp / n_picks if n_picks else 0.0
    r = tp / n_truth if n_truth else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": int(tp), "n_picks": int(n_picks),
            "n_truth": int(n_truth)}


def score_micrographs(picks: Sequence[np.ndarray], truths: Sequence[np.ndarray], radius: float,
                      names: Sequence[str] | None = None) -> dict:
    """Pooled (sums over micrographs) and per-micrograph precision / recall / F1."""
    names = list(names) if names is not None else [str(i) for i in range(len(picks))]
    per, tp, npk, ntr = {}, 0, 0, 0
    for name, p, t in zip(names, picks, truths, strict=True):
        i, _ = match(p, t, radius)
        per[name] = prf(len(i), len(p), len(t))
        tp, npk, ntr = tp + len(i), npk + len(p), ntr + len(t)
    return {"pooled": prf(tp, npk, ntr), "per_micrograph": per}


def pr_curve(picks: Sequence[np.ndarray], scores: Sequence[np.ndarray], truths: Sequence[np.ndarray],
             radius: float, n_thresholds: int = 100, extra_thresholds: Sequence[float] = ()) -> dict:
    """Pooled precision-recall over a score threshold shared by all micrographs.

    Thresholds are the ``n_thresholds`` quantiles of all pick scores (plus every distinct score when
    there are fewer) and the finite ``extra_thresholds`` (e.g. the picker's own). Returns arrays
    ``threshold``, ``precision``, ``recall``, ``f1`` (threshold ascending = recall descending),
    ``ap`` (area under the interpolated curve) and ``best`` (F1, precision, recall and threshold of
    the best F1).
    """
    all_s = np.concatenate([np.asarray(s, float).reshape(-1) for s in scores]) if scores else np.zeros(0)
    n_truth = int(sum(len(t) for t in truths))
    if all_s.size == 0:
        z = np.zeros(0)
        return {"threshold": z, "precision": z, "recall": z, "f1": z, "ap": 0.0,
                "best": {"f1": 0.0, "precision": 0.0, "recall": 0.0, "threshold": None}}
    uniq = np.unique(all_s)
    if len(uniq) > n_thresholds:
        uniq = np.unique(np.quantile(all_s, np.linspace(0, 1, n_thresholds)))
    extra = np.asarray([t for t in extra_thresholds if np.isfinite(t)], float)
    ths = np.unique(np.concatenate([uniq, extra])) if extra.size else uniq
    prec, rec = np.zeros(len(ths)), np.zeros(len(ths))
    for k, th in enumerate(ths):
        tp = npk = 0
        for p, s, t in zip(picks, scores, truths, strict=True):
            keep = np.asarray(s, float) >= th
            npk += int(keep.sum())
            tp += len(match(np.asarray(p).reshape(-1, 2)[keep], t, radius)[0])
        prec[k] = tp / npk if npk else 1.0
        rec[k] = tp / n_truth if n_truth else 0.0
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    b = int(np.argmax(f1))
    return {"threshold": ths, "precision": prec, "recall": rec, "f1": f1, "ap": average_precision(prec, rec),
            "best": {"f1": float(f1[b]), "precision": float(prec[b]), "recall": float(rec[b]),
                     "threshold": float(ths[b])}}


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under a PR curve with precision interpolated to its running maximum toward low recall."""
    order = np.argsort(recall)
    r = np.concatenate([[0.0], np.asarray(recall, float)[order]])
    p = np.concatenate([[precision[order][0] if len(order) else 0.0], np.asarray(precision, float)[order]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: best precision at this recall or higher
    return float(np.sum(np.diff(r) * p[1:]))


def disk_mask(xy: np.ndarray, shape: tuple[int, int], diameter: float) -> np.ndarray:
    """Boolean [H, W] mask of disks of ``diameter`` px centred on ``xy`` (x = column, y = row)."""
    h, w = shape
    m = np.zeros((h, w), bool)
    r = diameter / 2.0
    ri = int(np.ceil(r))
    oy, ox = np.mgrid[-ri:ri + 1, -ri:ri + 1]
    fp = ox ** 2 + oy ** 2 <= r * r
    for x, y in np.asarray(xy, float).reshape(-1, 2):
        cx, cy = int(round(x)), int(round(y))
        y0, y1, x0, x1 = cy - ri, cy + ri + 1, cx - ri, cx + ri + 1
        sy0, sx0 = max(0, -y0), max(0, -x0)
        sy1, sx1 = fp.shape[0] - max(0, y1 - h), fp.shape[1] - max(0, x1 - w)
        if sy1 <= sy0 or sx1 <= sx0:
            continue
        m[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] |= fp[sy0:sy1, sx0:sx1]
    return m


def mask_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """CryoSegNet pixel precision / recall / Dice of two boolean masks of one micrograph."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    inter, npred, ntruth = int((pred & truth).sum()), int(pred.sum()), int(truth.sum())
    return {"precision": inter / npred if npred else 0.0, "recall": inter / ntruth if ntruth else 0.0,
            "dice": 2 * inter / (npred + ntruth) if npred + ntruth else 0.0,
            "intersection": inter, "pred_pixels": npred, "truth_pixels": ntruth}
