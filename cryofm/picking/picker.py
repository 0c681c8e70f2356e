"""One picking step shared by every score map: candidates, the picker's own threshold, picks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryofm.picking.peaks import ScoreMap, candidates, choose_threshold


@dataclass
class Picks:
    """Picks of one micrograph. ``xy`` [N, 2] centres (x = column, y = row, px), ``scores`` [N].

    ``candidates_xy`` / ``candidates_scores`` hold every peak before the threshold (for PR curves);
    ``threshold`` is the operating threshold the picker chose.
    """

    xy: np.ndarray
    scores: np.ndarray
    candidates_xy: np.ndarray
    candidates_scores: np.ndarray
    threshold: float


def pick(smap: ScoreMap, diameter: float, threshold: str | float = "otsu", nms: float = 0.7,
         edge: float = 0.5, refine: float = 0.25) -> Picks:
    """Candidates of ``smap`` (see :func:`cryofm.picking.peaks.candidates`) kept above ``threshold``
    (``otsu`` on the candidate scores of this micrograph, or a number in score units)."""
    xy, sc = candidates(smap, diameter, nms=nms, edge=edge, refine=refine)
    th = choose_threshold(sc, threshold) if len(sc) else float("inf")
    keep = sc >= th
    return Picks(xy[keep], sc[keep], xy, sc, th)
