"""Sliding-window PCA images of whole micrographs from a frozen backbone.

    python eval/micrograph_pca.py micrographs=<dir or glob> diameter=<px> \
        checkpoint=<run dir or backbone file> out=<dir>

Writes ``out/<stem>.png`` (micrograph | PCA RGB | k-means) and ``out/pca/<stem>.png`` per micrograph.
See ``configs/micrograph_pca.yaml`` and ``docs/picking.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from cryofm.errors import InputError  # noqa: E402
from cryofm.picking.micrograph_pca import run_micrograph_pca  # noqa: E402


@hydra.main(config_path="../configs", config_name="micrograph_pca", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        written = run_micrograph_pca(cfg)
    except InputError as exc:
        print(f"eval/micrograph_pca.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{len(written)} PCA images -> {cfg.out}")


if __name__ == "__main__":
    main()
