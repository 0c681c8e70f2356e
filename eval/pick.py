"""Unsupervised particle picking with frozen features (or the DoG baseline), scored against experts.

    python eval/pick.py micrographs=<dir or glob> diameter=<px> picker=features|dog \
        checkpoint=<run dir or backbone file> out=<dir> [ground_truth=<dir or file>]

Writes ``out/picks/<stem>.{star,box,csv,txt}``; with ground truth ``out/metrics.json`` and
``out/report.{html,md}``. See ``configs/pick.yaml`` and ``docs/picking.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from cryofm.errors import InputError  # noqa: E402
from cryofm.picking.run import run_pick  # noqa: E402


@hydra.main(config_path="../configs", config_name="pick", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        m = run_pick(cfg)
    except InputError as exc:
        print(f"eval/pick.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if "pooled" in m:
        p = m["pooled"]
        print(f"{m['picker']}: precision {p['precision']:.3f} recall {p['recall']:.3f} F1 {p['f1']:.3f} "
              f"({p['n_picks']} picks, {p['n_truth']} expert) -> {cfg.out}/metrics.json")
    else:
        print(f"{m['picker']}: {m['n_picks']} picks on {m['n_micrographs']} micrographs -> {cfg.out}/picks")


if __name__ == "__main__":
    main()
