"""Summary table of a Hydra sweep: one row per run, its overrides and its final metrics.

Each run dir of a sweep (``multirun/<date>/<time>/<job num>/`` or a submitit job dir) holds
``.hydra/overrides.yaml`` and a ``metrics.json`` written by ``train.py`` or an evaluation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from cryofm.errors import InputError
from cryofm.report.document import Report
from cryofm.utils import atomic


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"a.b": value}``."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Rows ``{"run": rel dir, <override key>: value, <metric>: value}`` for every run of the sweep."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise InputError(sweep_dir, "sweep dir not found")
    rows = []
    for metrics_file in sorted(sweep_dir.rglob("metrics.json")):
        run = metrics_file.parent
        row: dict[str, Any] = {"run": str(run.relative_to(sweep_dir)) or "."}
        ov = run / ".hydra" / "overrides.yaml"
        if ov.is_file():
            for item in yaml.safe_load(ov.read_text()) or []:
                key, _, val = str(item).partition("=")
                row[key.lstrip("+~")] = val
        try:
            metrics = json.loads(metrics_file.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(metrics_file, f"not valid JSON: {exc}") from exc
        if not isinstance(metrics, dict):
            raise InputError(metrics_file, f"must hold a JSON object of metrics, got "
                                           f"{type(metrics).__name__}")
        for k, v in _flatten(metrics).items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                row[k] = v
        rows.append(row)
    return rows


def summarize(sweep_dir: str | Path, out: str | Path | None = None, sort_by: str | None = None) -> list[dict]:
    """Write ``summary.csv``, ``summary.md`` and ``summary.html`` into ``out`` (default: the sweep dir)."""
    import pandas as pd

    rows = collect(sweep_dir)
    if not rows:
        raise InputError(sweep_dir, "no metrics.json in any run of this sweep")
    df = pd.DataFrame(rows)
    if sort_by and sort_by not in df:
        metrics = [str(c) for c in df.columns if c != "run"]
        raise InputError("sort_by", f"{sort_by!r} is no column of this sweep (columns: {', '.join(metrics)})")
    if sort_by:
        df = df.sort_values(sort_by, na_position="last")
    out = Path(out or sweep_dir)
    with atomic.atomic_path(out / "summary.csv") as tmp:
        df.to_csv(tmp, index=False)
    rep = Report("Sweep summary", str(sweep_dir))
    rep.table(df.where(df.notna(), math.nan).to_dict(orient="records"), caption=f"{len(df)} runs")
    rep.write(out, stem="summary")
    return df.to_dict(orient="records")


def command(cfg) -> int:
    """``cryofm summarize sweep=<multirun dir> [out=<dir>] [sort_by=<metric>]``."""
    from cryofm.utils import checks as c

    c.existing_dir(cfg, "sweep", "sweep folder")
    if c.value(cfg, "out", None) is not None:
        c.writable_output(cfg, "out")
    c.text(cfg, "sort_by")
    rows = summarize(cfg.sweep, cfg.get("out"), cfg.get("sort_by"))
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))
    return 0
