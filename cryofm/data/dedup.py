"""Duplicate-pick removal: picks on one micrograph closer than a fraction of the particle diameter.

As in cryoPANDA's pipeline, of two picks closer than ``fraction × diameter`` on the same micrograph
the better-scored one is kept (greedy, best score first; ties keep the earlier row).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree


def duplicate_mask(df: pd.DataFrame, diameter_A: float, fraction: float = 0.5,
                   score: str | None = "AutopickFigureOfMerit", higher_is_better: bool = True,
                   micrograph_pixel_size: float | None = None) -> np.ndarray:
    """Boolean mask of the rows to drop.

    Args:
        df: particle table with ``MicrographName``, ``CoordinateX``, ``CoordinateY`` (px).
        diameter_A: particle diameter (Å).
        fraction: picks closer than ``fraction × diameter`` are duplicates.
        score: column ranking picks (missing column or NaN: rank by row order).
        higher_is_better: False for errors (e.g. ``AlignmentError2D``).
        micrograph_pixel_size: Å/px of the coordinates; default the rows' ``ImagePixelSize``.
    """
    need = [c for c in ("MicrographName", "CoordinateX", "CoordinateY") if c not in df]
    if need:
        raise KeyError(f"duplicate removal needs column(s) {need}")
    drop = np.zeros(len(df), dtype=bool)
    if score and score in df:
        s = pd.to_numeric(df[score], errors="coerce").to_numpy(dtype=float)
        s = np.where(np.isnan(s), -np.inf, s if higher_is_better else -s)
    else:
        s = np.zeros(len(df))
    if micrograph_pixel_size:
        psize = np.full(len(df), float(micrograph_pixel_size))
    else:
        psize = pd.to_numeric(df.get("ImagePixelSize", np.nan), errors="coerce")
        psize = np.broadcast_to(np.asarray(psize, dtype=float), (len(df),))
    xy = df[["CoordinateX", "CoordinateY"]].to_numpy(dtype=float)
    for _, rows in df.groupby("MicrographName", sort=False).indices.items():
        if len(rows) < 2:
            continue
        px = np.nanmedian(psize[rows])
        if not np.isfinite(px) or px <= 0:
            raise ValueError("duplicate removal needs the coordinates' pixel size")
        radius = fraction * diameter_A / px
        pairs = cKDTree(xy[rows]).query_pairs(radius, output_type="ndarray")
        if len(pairs) == 0:
            continue
        neighbours: dict[int, list[int]] = {}
        for a, b in pairs:
            neighbours.setdefault(int(a), []).append(int(b))
            neighbours.setdefault(int(b), []).append(int(a))
        order = sorted(neighbours, key=lambda k: (-s[rows[k]], k))
        kept: set[int] = set()
        for k in order:
            if any(n in kept for n in neighbours[k]):
                drop[rows[k]] = True
            else:
                kept.add(k)
    return drop


def remove_duplicates(df: pd.DataFrame, diameter_A: float, **kwargs) -> tuple[pd.DataFrame, int]:
    """(table without duplicate picks, number removed); see :func:`duplicate_mask`."""
    drop = duplicate_mask(df, diameter_A, **kwargs)
    return df.loc[~drop].reset_index(drop=True), int(drop.sum())
