"""Run logging: ``<run>/metrics.jsonl`` (one JSON line per step), wandb, and a console progress bar.

wandb's ``mode`` comes from the config: ``online``, ``offline`` (files under ``<run>/wandb``, no
network) or ``disabled``. A wandb failure (not installed, no network, no login) falls back to
``disabled`` with a warning: logging never stops training. Only rank 0 logs.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cryofm.utils import atomic

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"


def truncate_metrics(run_dir: Path, start_step: int) -> None:
    """Keep only lines with ``step < start_step`` (a resumed run rewrites what it redoes)."""
    p = Path(run_dir) / METRICS
    if not p.is_file():
        return
    keep = []
    for line in p.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) < start_step:
                keep.append(line)
        except json.JSONDecodeError:  # a line torn by a kill
            continue
    atomic.write_text(p, "".join(k + "\n" for k in keep))


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
    for k in ("loss", "dino_loss", "ibot_loss", "koleo_loss"):
        if k in rows[-1]:
            out[k] = {"first": float(rows[0][k]), "final": sum(float(r[k]) for r in last) / n}
    speeds = sorted(float(r["samples_per_s"]) for r in rows[1:] if "samples_per_s" in r)
    if speeds:
        out["samples_per_s"] = speeds[len(speeds) // 2]
    out["seconds"] = sum(float(r.get("step_time", 0.0)) for r in rows)
    return out


class RunLogger:
    """Rank-0 logger of per-step metrics to JSONL, wandb and a tqdm bar."""

    def __init__(
        self,
        run_dir: str | Path,
        wandb_cfg,
        config: dict[str, Any],
        start_step: int,
        total_steps: int,
        enabled: bool = True,
        progress: bool = True,
    ):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.wandb = None
        self.bar = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.run_dir, start_step)
        self.fh = open(self.run_dir / METRICS, "a", buffering=1)  # noqa: SIM115 (open for the run)
        mode = str(wandb_cfg.mode)
        if mode != "disabled":
            self.wandb = self._init_wandb(wandb_cfg, config, mode)
        if progress:
            self.bar = tqdm(
                total=total_steps, initial=start_step, desc="train", dynamic_ncols=True, mininterval=1.0
            )

    def _init_wandb(self, cfg, config: dict[str, Any], mode: str):
        try:
            import wandb

            id_file = self.run_dir / "wandb_id.txt"
            run_id = id_file.read_text().strip() if id_file.is_file() else None
            if run_id is None:
                run_id = uuid.uuid4().hex[:8]
                atomic.write_text(id_file, run_id)
            os.environ.setdefault("WANDB_SILENT", "true")
            return wandb.init(
                project=cfg.project,
                entity=cfg.get("entity"),
                name=cfg.get("name"),
                mode=mode,
                dir=str(self.run_dir),
                id=run_id,
                resume="allow",
                config=config,
            )
        except Exception as exc:  # no network / not logged in: keep training
            log.warning("wandb disabled (%s)", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` of ``step`` (0-based)."""
        if not self.enabled:
            return
        rec = {
            "step": step,
            **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()},
        }
        self.fh.write(json.dumps(rec) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                loss=f"{metrics.get('loss', float('nan')):.4f}",
                lr=f"{metrics.get('lr', 0):.2e}",
                refresh=False,
            )

    def close(self) -> None:
        if not self.enabled:
            return
        self.fh.close()
        if self.bar is not None:
            self.bar.close()
        if self.wandb is not None:
            self.wandb.finish()
