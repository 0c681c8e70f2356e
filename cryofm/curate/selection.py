"""Representatives per cluster: up to ``max_per_cluster`` experiments ranked by ``prefer`` columns.

``prefer`` is a list of table columns, best first; a column ranks ascending (smaller is better,
e.g. ``EMDBResolution``) unless written with a leading ``-`` (larger is better, e.g.
``-Particles``). Numbers compare as numbers when every filled cell of the column is one, otherwise
as text. An empty cell ranks after every value; remaining ties go to the experiment id, so the
choice is reproducible. Every experiment gets its rank in its cluster and a sentence saying why it
was or was not selected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from cryofm.errors import InputError


@dataclass(frozen=True)
class Key:
    """One preference: a column and its direction."""

    column: str
    descending: bool

    def __str__(self) -> str:
        return f"{self.column} {'descending' if self.descending else 'ascending'}"


def parse_prefer(prefer: Sequence[str], columns: Sequence[str]) -> list[Key]:
    """Keys from ``["EMDBResolution", "-Particles"]`` (InputError keyed ``prefer`` on unknown columns)."""
    keys = []
    for item in prefer:
        s = str(item).strip()
        desc = s.startswith("-")
        col = s.lstrip("+-").strip()
        if col not in columns:
            raise InputError("prefer", f"no column {col!r} in the experiments table (columns: "
                                       f"{', '.join(columns)})")
        keys.append(Key(col, desc))
    return keys


def _sortable(series: pd.Series) -> pd.Series:
    filled = series[series.astype(str).str.strip() != ""]
    num = pd.to_numeric(filled, errors="coerce")
    if len(filled) and num.notna().all():
        return pd.to_numeric(series.where(series.astype(str).str.strip() != ""), errors="coerce")
    return series.where(series.astype(str).str.strip() != "")


def select(table: pd.DataFrame, clusters: dict[str, str], keys: Sequence[Key],
           max_per_cluster: int) -> pd.DataFrame:
    """Per experiment: SequenceCluster, Rank (1 = best), Selected, Reason (in table order)."""
    if max_per_cluster < 1:
        raise InputError("max_per_cluster", f"must be >= 1, got {max_per_cluster}")
    t = table[["experiment"] + [k.column for k in keys]].copy()
    t["SequenceCluster"] = t["experiment"].map(clusters)
    values = {k.column: _sortable(table[k.column]) for k in keys}
    rank: dict[str, int] = {}
    size: dict[str, int] = {}
    for cl, members in t.groupby("SequenceCluster", sort=False):
        order = list(members.index)
        # stable sorts from the last key to the first, after the tie-break on the id
        order.sort(key=lambda i: t.at[i, "experiment"])
        for k in reversed(keys):
            v = values[k.column]
            known = [i for i in order if pd.notna(v[i])]
            known.sort(key=lambda i, v=v: v[i], reverse=k.descending)
            order = known + [i for i in order if pd.isna(v[i])]
        for r, i in enumerate(order, start=1):
            rank[t.at[i, "experiment"]] = r
        size[cl] = len(order)
    out = t[["experiment", "SequenceCluster"]].copy()
    out["Rank"] = out["experiment"].map(rank)
    out["Selected"] = out["Rank"] <= max_per_cluster
    by = ", ".join(str(k) for k in keys) or "experiment id (no prefer= columns)"
    reasons = []
    cells = table.set_index("experiment")
    for row in out.itertuples(index=False):
        vals = "; ".join(f"{k.column}={cells.at[row.experiment, k.column] or '–'}" for k in keys)
        n = size[row.SequenceCluster]
        head = f"rank {row.Rank} of {n} in {row.SequenceCluster} by {by}" + (f" ({vals})" if vals else "")
        if n == 1:
            reasons.append(f"selected: the only member of {row.SequenceCluster}")
        elif row.Selected:
            reasons.append(f"selected: {head}, within max_per_cluster={max_per_cluster}")
        else:
            reasons.append(f"not selected: {head}, beyond max_per_cluster={max_per_cluster}")
    out["Reason"] = reasons
    return out
