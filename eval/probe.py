"""Linear probes on frozen features of a checkpoint (cryoPANDA's evaluation).

    python eval/probe.py checkpoint=<run dir or backbone.safetensors> data=<dataset dir> out=<dir>

Writes ``out/report.html``, ``out/report.md`` and ``out/metrics.json``; see ``configs/probe/probe.yaml``.
Bad input stops with one line ``eval/probe.py: error: <file or key>: <problem>``, exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without install

from cryofm.probe.inputs import check_probe  # noqa: E402
from cryofm.utils import hydra_app  # noqa: E402

PROG = "eval/probe.py"


def _run(cfg: DictConfig) -> None:
    from cryofm.probe.run import run_probe  # the heavy imports, after the checks

    run_probe(cfg)


@hydra.main(config_path="../configs/probe", config_name="probe", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    hydra_app.guarded_job(PROG, cfg, _run, validate=check_probe)


def main(argv: list[str] | None = None) -> int:
    """``python eval/probe.py [overrides] [--debug]``; returns the exit status."""
    return hydra_app.run(PROG, ROOT / "configs" / "probe", "probe", _run, argv, validate=check_probe,
                         hydra_main=hydra_main)


if __name__ == "__main__":
    raise SystemExit(main())
