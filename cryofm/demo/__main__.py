"""``python -m cryofm.demo [key=value ...]``: the whole mission end to end (what ``make demo`` runs).

Stages, each a command a user could type (shown as it runs), each skipped when already finished:

1. simulate a multi-experiment dataset (real maps / models from ``../shared/data`` when present,
   procedural densities otherwise; acquisition confounded with experiment) into shards + split;
2. inspect it (counts, coverage, montage);
3. pretrain a small ViT with the full DINOv2 objective (``train.py``);
4. linear probes ID / OOD / regressed-out with baselines (``eval/probe.py``);
5. simulate micrographs with known particle positions;
6. micrograph PCA images (``eval/micrograph_pca.py``);
7. unsupervised picking with the features and the DoG baseline, scored (``eval/pick.py``);
8. the same on real CryoPPP micrographs with expert picks, when present (or your own:
   ``real.micrographs=... real.ground_truth=...``);
9. one report: ``<out>/report.html`` and ``<out>/report.md``.
"""

from __future__ import annotations

import sys

from cryofm.demo.pipeline import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
