"""From a score map to picks: robust scaling, local maxima, NMS, centre refinement, edge exclusion,
and a threshold the picker chooses by itself (Otsu on the candidate peak scores).

A :class:`ScoreMap` is a grid of scores whose cell ``(i, j)`` sits at micrograph pixel
``x = x0 + j·step``, ``y = y0 + i·step`` (x = column, y = row, pixel centres at integers), so
every picker (DoG on a downsampled image, sliding-window features on a window grid) shares this code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree


@dataclass
class ScoreMap:
    """Scores on a regular grid aligned to micrograph pixels (see module docstring)."""

    values: np.ndarray  # [gh, gw], higher = more particle-like
    x0: float  # micrograph x (px) of column 0
    y0: float  # micrograph y (px) of row 0
    step: float  # micrograph px per grid cell
    shape: tuple[int, int]  # micrograph (H, W) px

    def to_micrograph(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Grid (row, col) → micrograph centres [N, 2] (x, y)."""
        return np.stack([self.x0 + np.asarray(cols, float) * self.step,
                         self.y0 + np.asarray(rows, float) * self.step], axis=-1)

    def upsampled(self) -> np.ndarray:
        """The map resampled to micrograph size [H, W] (bilinear, edges held), for display."""
        h, w = self.shape
        rows = (np.arange(h) - self.y0) / self.step
        cols = (np.arange(w) - self.x0) / self.step
        rr, cc = np.meshgrid(np.clip(rows, 0, self.values.shape[0] - 1),
                             np.clip(cols, 0, self.values.shape[1] - 1), indexing="ij")
        return ndi.map_coordinates(self.values.astype(np.float32), [rr, cc], order=1)


def robust_z(values: np.ndarray) -> np.ndarray:
    """(v − median) / (1.4826 · MAD): scores comparable across micrographs, robust to the particles."""
    v = np.asarray(values, np.float64)
    if v.size == 0:  # no candidates (e.g. everything in the edge margin)
        return v.astype(np.float32)
    med = np.median(v)
    mad = 1.4826 * np.median(np.abs(v - med))
    if mad <= 0:
        mad = v.std() or 1.0
    return ((v - med) / mad).astype(np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of a 1-D sample (maximises between-class variance); the median if degenerate."""
    v = np.asarray(values, float).reshape(-1)
    if v.size < 2 or v.max() <= v.min():
        return float(v.max()) if v.size else 0.0
    hist, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:][int(np.argmax(between[:-1]))])


def _disk(radius: float) -> np.ndarray:
    r = max(int(np.floor(radius)), 1)
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= radius * radius + 1e-9


def candidates(smap: ScoreMap, diameter: float, nms: float = 0.7, edge: float = 0.5,
               refine: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """All candidate picks of a score map, before any threshold.

    Args:
        smap: the score map.
        diameter: particle diameter (micrograph px).
        nms: non-maximum suppression distance as a fraction of the diameter: no two picks closer.
        edge: drop picks closer than ``edge`` × diameter to the micrograph border.
        refine: radius (fraction of the diameter) of the score-weighted centroid that refines each
            peak (0 = keep the grid peak).

    Returns:
        centres [N, 2] (x, y micrograph px) and scores [N], highest score first.
    """
    v = np.asarray(smap.values, np.float32)
    r_cells = nms * diameter / smap.step
    fp = _disk(max(r_cells / 2, 1.0))
    # a maximum of its neighbourhood that is not flat (flat = constant padding, no signal)
    local_max = (v == ndi.maximum_filter(v, footprint=fp, mode="nearest")) & (
        v > ndi.minimum_filter(v, footprint=fp, mode="nearest"))
    rows, cols = np.nonzero(local_max & np.isfinite(v))
    scores = v[rows, cols]
    order = np.argsort(-scores, kind="stable")
    rows, cols, scores = rows[order], cols[order], scores[order]
    xy = smap.to_micrograph(rows, cols)
    if refine > 0 and len(xy):
        xy = _refine(v, rows, cols, smap, refine * diameter / smap.step)
    keep = _greedy_nms(xy, nms * diameter)
    xy, scores = xy[keep], scores[keep]
    h, w = smap.shape
    e = edge * diameter
    inside = (xy[:, 0] >= e) & (xy[:, 0] <= w - 1 - e) & (xy[:, 1] >= e) & (xy[:, 1] <= h - 1 - e)
    return xy[inside], scores[inside].astype(np.float64)


def _refine(v: np.ndarray, rows: np.ndarray, cols: np.ndarray, smap: ScoreMap, radius: float) -> np.ndarray:
    """Score-weighted centroid over the upper half of each peak within ``radius`` cells."""
    r = max(int(np.ceil(radius)), 1)
    oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
    inside = ox ** 2 + oy ** 2 <= max(radius, 1.0) ** 2
    oy, ox = oy[inside], ox[inside]
    gh, gw = v.shape
    out = np.empty((len(rows), 2))
    for k, (i, j) in enumerate(zip(rows, cols, strict=True)):
        yy, xx = i + oy, j + ox
        ok = (yy >= 0) & (yy < gh) & (xx >= 0) & (xx < gw)
        yy, xx = yy[ok], xx[ok]
        vals = v[yy, xx]
        base = 0.5 * (v[i, j] + np.median(vals))
        wts = np.clip(vals - base, 0, None)
        if wts.sum() <= 0:
            out[k] = (j, i)
        else:
            out[k] = ((wts * xx).sum() / wts.sum(), (wts * yy).sum() / wts.sum())
    return smap.to_micrograph(out[:, 1], out[:, 0])


def _greedy_nms(xy: np.ndarray, min_dist: float) -> np.ndarray:
    """Indices kept by greedy suppression in the given (score-descending) order."""
    if len(xy) == 0:
        return np.zeros(0, int)
    tree = cKDTree(xy)
    suppressed = np.zeros(len(xy), bool)
    keep = []
    for i in range(len(xy)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed[tree.query_ball_point(xy[i], r=min_dist - 1e-9)] = True
    return np.asarray(keep, int)


def choose_threshold(scores: np.ndarray, method: str | float = "otsu") -> float:
    """The picker's own operating threshold on candidate scores: ``otsu`` or a number."""
    if isinstance(method, (int, float)):
        return float(method)
    if method == "otsu":
        return otsu_threshold(scores)
    raise ValueError(f"unknown threshold method {method!r} (otsu or a number)")
