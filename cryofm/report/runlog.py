"""Reading a training run's log: ``<run>/metrics.jsonl`` (one JSON line per step, written by
:class:`cryofm.train.runlog.RunLogger`) and the final numbers that ``<run>/metrics.json`` holds.

It lives in ``report`` because both sides read it: the trainer (``metrics.json`` at the end of a run)
and the evaluations (the demo report, sweep summaries, the learning-curve bench).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``<run>/metrics.jsonl``."""
    p = Path(run_dir) / METRICS
    out = []
    for line in p.read_text().splitlines() if p.is_file() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def summarize_metrics(rows: list[dict[str, Any]], tail: float = 0.1) -> dict[str, Any]:
    """Final numbers of a run for ``<run>/metrics.json`` (what sweep summaries tabulate).

    Losses are the mean over the last ``tail`` fraction of the logged steps (at least one);
    ``samples_per_s`` is the median over the steps after the first (which includes start-up).
    """
    if not rows:
        return {}
    n = max(1, int(round(len(rows) * tail)))
    last = rows[-n:]
    out: dict[str, Any] = {"steps": int(rows[-1]["step"]) + 1}
    for k in ("loss", "dino_loss", "ibot_loss", "koleo_loss", "ibot_ce", "dino_target_entropy"):
        if k in rows[-1]:
            out[k] = {"first": float(rows[0][k]), "final": sum(float(r[k]) for r in last) / n}
    speeds = sorted(float(r["samples_per_s"]) for r in rows[1:] if "samples_per_s" in r)
    if speeds:
        out["samples_per_s"] = speeds[len(speeds) // 2]
    out["seconds"] = sum(float(r.get("step_time", 0.0)) for r in rows)
    return out
