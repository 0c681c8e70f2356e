"""Boxes cut from a (binned) micrograph at picks, and background windows away from every pick.

A pick at micrograph pixel ``(x, y)`` (x = column, y = row, RELION's ``rlnCoordinateX/Y``) lies at
``(x / b, y / b)`` in the micrograph binned by ``b`` (see :mod:`cryofm.extract.binning`). Its box of
``n`` px is centred the RELION way: the pick, rounded to the nearest binned pixel ``(cx, cy)``,
becomes box pixel ``(n/2, n/2)``, so the box spans rows ``cy - n/2 .. cy + n/2 - 1``.

Boxes that cross the micrograph edge are **skipped and counted** by default (as cryoSPARC does).
``edge="pad"`` keeps them and fills the missing pixels with the nearest pixel inside the
micrograph, which is what RELION's Extract does ("fill pixels outside the boundary with the nearest
ones inside"). A pick whose box lies wholly outside the micrograph is always dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

EDGES = ("skip", "pad")


@dataclass
class Placement:
    """Where the boxes of one micrograph go.

    Attributes:
        centre: [N, 2] int box centres (cx, cy) in binned micrograph pixels.
        keep: [N] bool, the boxes that are cut.
        crossing: [N] bool, boxes that cross the edge (cut only with ``edge="pad"``).
        outside: [N] bool, boxes with no pixel on the micrograph (never cut).
    """

    centre: np.ndarray
    keep: np.ndarray
    crossing: np.ndarray
    outside: np.ndarray


def place(xy: np.ndarray, shape: tuple[int, int], n: int, factor: int, edge: str = "skip") -> Placement:
    """Box centres and which boxes are cut, for picks ``xy`` [N, 2] (original micrograph px).

    Args:
        xy: pick centres, x = column, y = row, in pixels of the unbinned micrograph.
        shape: (rows, columns) of the binned micrograph.
        n: box edge in binned pixels.
        factor: binning factor.
        edge: ``skip`` or ``pad`` (see the module docstring).
    """
    if edge not in EDGES:
        raise ValueError(f"edge must be one of {EDGES}, got {edge!r}")
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    c = np.floor(xy / factor + 0.5).astype(np.int64)  # round half up, the same for every pick
    h, w = shape
    lo = c - n // 2
    hi = lo + n - 1
    outside = (hi[:, 0] < 0) | (hi[:, 1] < 0) | (lo[:, 0] >= w) | (lo[:, 1] >= h)
    crossing = ~outside & ((lo[:, 0] < 0) | (lo[:, 1] < 0) | (hi[:, 0] >= w) | (hi[:, 1] >= h))
    keep = ~outside & (~crossing if edge == "skip" else np.ones(len(c), bool))
    return Placement(c, keep, crossing, outside)


def cut(image: np.ndarray, centres: np.ndarray, n: int) -> np.ndarray:
    """Boxes [K, n, n] at ``centres`` [K, 2] (cx, cy); pixels beyond the edge take the nearest
    pixel inside (RELION's fill)."""
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 2)
    h, w = image.shape
    out = np.empty((len(centres), n, n), dtype=np.float32)
    off = np.arange(n) - n // 2
    for k, (cx, cy) in enumerate(centres):
        x0, y0 = cx - n // 2, cy - n // 2
        if x0 >= 0 and y0 >= 0 and x0 + n <= w and y0 + n <= h:
            out[k] = image[y0:y0 + n, x0:x0 + n]  # a plain copy: most boxes
        else:
            rows = np.clip(cy + off, 0, h - 1)
            cols = np.clip(cx + off, 0, w - 1)
            out[k] = image[rows[:, None], cols[None, :]]
    return out


def background_windows(xy: np.ndarray, shape: tuple[int, int], n: int, factor: int, diameter: float,
                       count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` window centres [K, 2] (original micrograph px) away from every particle.

    Every window lies wholly inside the micrograph, its centre at least ``diameter`` (original px)
    from every pick and from every other window. Centres are drawn uniformly from the allowed
    binned pixels, then thinned greedily in drawing order (at most ``max(1000, 100 · count)``
    draws); fewer come back when the field is full.
    """
    h, w = shape
    d = float(diameter) / factor  # binned px
    allowed = np.zeros((h, w), bool)
    half = n // 2
    allowed[half:h - (n - half) + 1, half:w - (n - half) + 1] = True
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2) / factor
    if len(xy):
        seeds = np.ones((h, w), bool)
        ij = np.floor(xy + 0.5).astype(np.int64)
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
        seeds[ij[inside, 1], ij[inside, 0]] = False
        dist = ndi.distance_transform_edt(seeds)
        allowed &= dist >= d - 1.0  # a pre-filter on rounded picks; the exact test is below
    cand = np.flatnonzero(allowed)
    if count <= 0 or cand.size == 0:
        return np.zeros((0, 2))
    order = rng.permutation(cand)[: max(1000, 100 * count)]  # bounded work on a crowded field
    chosen = np.zeros((0, 2))
    for k in order:
        p = np.array([k % w, k // w], dtype=np.float64)
        if len(xy) and (np.hypot(*(xy - p).T) < d).any():
            continue
        if not len(chosen) or (np.hypot(*(chosen - p).T) >= d).all():
            chosen = np.vstack([chosen, p])
            if len(chosen) == count:
                break
    return chosen * factor
