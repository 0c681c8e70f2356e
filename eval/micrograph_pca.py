"""Sliding-window PCA images of whole micrographs from a frozen backbone.

    python eval/micrograph_pca.py micrographs=<dir or glob> diameter=<px> \
        checkpoint=<run dir or backbone file> out=<dir>

Writes ``out/<stem>.png`` (micrograph | PCA RGB | k-means) and ``out/pca/<stem>.png`` per micrograph.
See ``configs/micrograph_pca.yaml`` and ``docs/picking.md``. Bad input stops with one line
``eval/micrograph_pca.py: error: <file or key>: <problem>``, exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without install

from cryofm.picking.validate import check_micrograph_pca  # noqa: E402
from cryofm.utils import hydra_app  # noqa: E402

PROG = "eval/micrograph_pca.py"


def _run(cfg: DictConfig) -> None:
    from cryofm.picking.micrograph_pca import run_micrograph_pca

    written = run_micrograph_pca(cfg)
    print(f"{len(written)} PCA images -> {cfg.out}")


@hydra.main(config_path="../configs", config_name="micrograph_pca", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    hydra_app.guarded_job(PROG, cfg, _run, validate=check_micrograph_pca)


def main(argv: list[str] | None = None) -> int:
    """``python eval/micrograph_pca.py [overrides] [--debug]``; returns the exit status."""
    return hydra_app.run(PROG, ROOT / "configs", "micrograph_pca", _run, argv, validate=check_micrograph_pca,
                         hydra_main=hydra_main)


if __name__ == "__main__":
    raise SystemExit(main())
