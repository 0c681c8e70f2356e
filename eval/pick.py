"""Unsupervised particle picking with frozen features (or the DoG baseline), scored against experts.

    python eval/pick.py micrographs=<dir or glob> diameter=<px> picker=features|dog \
        checkpoint=<run dir or backbone file> out=<dir> [ground_truth=<dir or file>]

Writes ``out/picks/<stem>.{star,box,csv,txt,cbox}``, RELION's ``out/coordinate_files.star`` +
``Movies/`` tree, and ``out/report.{html,md}``; with ground truth ``out/metrics.json``. See
``configs/pick.yaml`` and ``docs/picking.md``. Bad input stops with one line
``eval/pick.py: error: <file or key>: <problem>``, exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without install

from cryofm.picking.validate import check_pick  # noqa: E402
from cryofm.utils import hydra_app  # noqa: E402

PROG = "eval/pick.py"


def _run(cfg: DictConfig) -> None:
    from cryofm.picking.run import run_pick

    m = run_pick(cfg)
    if "pooled" in m:
        p = m["pooled"]
        print(f"{m['picker']}: precision {p['precision']:.3f} recall {p['recall']:.3f} F1 {p['f1']:.3f} "
              f"({p['n_picks']} picks, {p['n_truth']} expert) -> {cfg.out}/metrics.json")
    else:
        print(f"{m['picker']}: {m['n_picks']} picks on {m['n_micrographs']} micrographs -> {cfg.out}/picks")


@hydra.main(config_path="../configs", config_name="pick", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    hydra_app.guarded_job(PROG, cfg, _run, validate=check_pick)


def main(argv: list[str] | None = None) -> int:
    """``python eval/pick.py [overrides] [--debug]``; returns the exit status."""
    return hydra_app.run(PROG, ROOT / "configs", "pick", _run, argv, validate=check_pick,
                         hydra_main=hydra_main)


if __name__ == "__main__":
    raise SystemExit(main())
