"""Probe tasks: what a label is, how it is read from a particle record, and cryoPANDA's binning.

A task is categorical (symmetry, protein class), binned (a continuous field cut into cryoPANDA's
fixed-width bins and probed as a classification) or regression (the same field probed with ridge
regression and scored by R² and MAE in the field's units).

cryoPANDA's bins (left-closed, right-open; values outside the range go into the edge bins):

==================  ========  ==========  ==========
field               from      to          width
==================  ========  ==========  ==========
MolecularWeight     0 kDa     1000 kDa    20 kDa
Defocus             −5000 Å   40000 Å     10000 Å
EMDBResolution      1.25 Å    8 Å         0.5 Å
effective pixel     0.875 Å   3 Å         0.25 Å
==================  ========  ==========  ==========
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cryofm import schema

Kind = Literal["categorical", "binned", "regression"]

# Derived quantities that are not a single schema field.
DERIVED = ("Defocus", "PixelSize224")


@dataclass(frozen=True)
class Task:
    """One probe task.

    Attributes:
        name: unique name in reports and metrics (e.g. ``MolecularWeight_bins``).
        source: schema field or derived quantity (``Defocus`` = mean of DefocusU/V in Å,
            ``PixelSize224`` = ImagePixelSize × ImageSize / 224 in Å/px).
        kind: ``categorical``, ``binned`` or ``regression``.
        lo, hi, width: bin edges for ``binned`` tasks (units of ``source``).
        unit: unit of ``source`` (reported beside MAE).
        cap: at most this many probe-train particles per class / bin (0: no cap).
    """

    name: str
    source: str
    kind: Kind
    lo: float = math.nan
    hi: float = math.nan
    width: float = math.nan
    unit: str = ""
    cap: int = 0

    @property
    def is_classification(self) -> bool:
        return self.kind in ("categorical", "binned")

    def n_bins(self) -> int:
        """Number of bins of a binned task."""
        return int(math.ceil((self.hi - self.lo) / self.width - 1e-9))

    def bin_labels(self) -> list[str]:
        """Human-readable ``[lo, hi)`` label of each bin."""
        edges = [self.lo + i * self.width for i in range(self.n_bins() + 1)]
        return [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:], strict=True)]


def source_unit(source: str) -> str:
    """Unit of a schema field or derived quantity."""
    if source == "Defocus":
        return "Å"
    if source == "PixelSize224":
        return "Å/px"
    return schema.field(source).unit


def make_task(spec: Mapping[str, Any]) -> Task:
    """Build a :class:`Task` from a config mapping (``name``, ``source``, ``kind``, bins, ``cap``)."""
    source = str(spec["source"])
    if source not in DERIVED:
        schema.field(source)  # KeyError names an unknown field
    kind = str(spec["kind"])
    if kind not in ("categorical", "binned", "regression"):
        raise ValueError(f"task {spec.get('name')!r}: unknown kind {kind!r}")
    task = Task(
        name=str(spec.get("name") or f"{source}_{kind}"),
        source=source,
        kind=kind,  # type: ignore[arg-type]
        lo=float(spec.get("lo", math.nan)),
        hi=float(spec.get("hi", math.nan)),
        width=float(spec.get("width", math.nan)),
        unit=source_unit(source),
        cap=int(spec.get("cap", 0) or 0),
    )
    if kind == "binned" and not (task.width > 0 and task.hi > task.lo):
        raise ValueError(f"task {task.name!r}: binned needs lo < hi and width > 0")
    return task


def source_values(records: Mapping[str, Sequence[Any]], source: str) -> np.ndarray:
    """Per-particle values of ``source`` from a column table (``records[field] -> list``).

    Numeric sources give float64 with NaN for missing; string sources give an object array with
    ``None`` for missing.
    """
    n = len(records["uid"])

    def col(name: str) -> np.ndarray:
        if name not in records:
            return np.full(n, np.nan)
        return np.array([np.nan if schema.is_missing(v) else float(v) for v in records[name]])

    if source == "Defocus":
        return 0.5 * (col("DefocusU") + col("DefocusV"))
    if source == "PixelSize224":
        px, size = col("ImagePixelSize"), col("ImageSize")
        eff = px * size / 224.0
        # Fall back on the shard's effective pixel size when the original one is unknown.
        fallback = col("EffectiveImagePixelSize") * col("EffectiveImageSize") / 224.0
        return np.where(np.isfinite(eff), eff, fallback)
    f = schema.field(source)
    if f.dtype in ("float", "int"):
        return col(source)
    vals = records.get(source, [None] * n)
    return np.array([None if schema.is_missing(v) else str(v) for v in vals], dtype=object)


def bin_index(values: np.ndarray, task: Task) -> np.ndarray:
    """Bin of each value (int64; −1 for NaN). Values below/above the range go to the edge bins."""
    v = np.asarray(values, dtype=np.float64)
    idx = np.floor((v - task.lo) / task.width)
    idx = np.clip(idx, 0, task.n_bins() - 1)
    return np.where(np.isfinite(v), idx, -1).astype(np.int64)


def labels(records: Mapping[str, Sequence[Any]], task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(targets, valid mask) of ``task`` for every particle.

    Categorical: the category string (object array). Binned: bin index (int64). Regression: the
    value in the source's unit (float64). ``valid`` is False where the label is missing.
    """
    v = source_values(records, task.source)
    if task.kind == "categorical":
        if v.dtype != object:
            v = np.array([None if not np.isfinite(x) else f"{x:g}" for x in v], dtype=object)
        valid = np.array([x is not None for x in v], dtype=bool)
        return v, valid
    if v.dtype == object:
        raise ValueError(f"task {task.name!r}: {task.source} is not numeric")
    if task.kind == "binned":
        b = bin_index(v, task)
        return b, b >= 0
    return v, np.isfinite(v)


def cap_per_class(y: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """Indices of a subset with at most ``cap`` items of each class (all when ``cap`` ≤ 0), sorted.

    The subset is drawn at random (seeded) within each class, so capping balances the bins.
    """
    idx = np.arange(len(y))
    if cap <= 0:
        return idx
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for cls in np.unique(y.astype(str) if y.dtype == object else y):
        members = idx[(y.astype(str) if y.dtype == object else y) == cls]
        if len(members) > cap:
            members = rng.choice(members, size=cap, replace=False)
        keep.append(members)
    return np.sort(np.concatenate(keep)) if keep else idx[:0]


def default_tasks(cap: int = 0) -> list[Task]:
    """The cryoPANDA task list: categorical, binned and regression versions."""
    specs: list[dict[str, Any]] = [
        {"name": "Symmetry", "source": "Symmetry", "kind": "categorical"},
        {"name": "ProteinClass", "source": "ProteinClass", "kind": "categorical"},
        {
            "name": "MolecularWeight_bins",
            "source": "MolecularWeight",
            "kind": "binned",
            "lo": 0,
            "hi": 1000,
            "width": 20,
        },
        {
            "name": "MaxDiameter_bins",
            "source": "MaxDiameter",
            "kind": "binned",
            "lo": 0,
            "hi": 500,
            "width": 25,
        },
        {
            "name": "EMDBResolution_bins",
            "source": "EMDBResolution",
            "kind": "binned",
            "lo": 1.25,
            "hi": 8,
            "width": 0.5,
        },
        {
            "name": "Defocus_bins",
            "source": "Defocus",
            "kind": "binned",
            "lo": -5000,
            "hi": 40000,
            "width": 10000,
        },
        {
            "name": "PixelSize224_bins",
            "source": "PixelSize224",
            "kind": "binned",
            "lo": 0.875,
            "hi": 3,
            "width": 0.25,
        },
    ]
    for src in ("MolecularWeight", "MaxDiameter", "EMDBResolution", "Defocus", "PixelSize224"):
        specs.append({"name": f"{src}_reg", "source": src, "kind": "regression"})
    return [make_task({**s, "cap": cap}) for s in specs]
