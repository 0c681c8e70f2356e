"""Run logging: ``<run>/metrics.jsonl`` (one JSON line per step), wandb, and a console progress bar.

Reading a run's log back (reports, sweeps, benches) is :mod:`cryofm.report.runlog`.

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

from cryofm.report.runlog import METRICS
from cryofm.utils import atomic

log = logging.getLogger(__name__)


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
