"""Probe costs: cached vs uncached features, probe and erasure fit times, BLAS threads on small fits.

Builds a small dataset (``--experiments`` × ``--per-exp`` particles of ``--box`` px, ingested with
:func:`cryofm.data.ingest.ingest_arrays`) and a random ViT backbone of ``--model`` at ``--box`` px, then
times, in one run on this machine:

* feature extraction from shards (uncached, first call) vs reading the same features back from the
  cache (second call), and their ratio;
* a logistic probe (``--classes`` classes, the config's C grid) and a ridge probe (the alpha grid)
  on the extracted features; regress-out and LEACE fits;
* the logistic grid as independent fits with BLAS at its default thread count vs one thread (what
  ``cryofm.probe.linear`` does below 2M matrix entries), and the warm-started path the probes use.

    .venv/bin/python bench/bench_probe.py                  # ~1-2 min on a 2-core CPU
    .venv/bin/python bench/bench_probe.py --per-exp 500 --model vit_base_patch16_224
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_dataset(root: Path, n_exp: int, per_exp: int, box: int, seed: int = 0) -> None:
    from cryofm.data.ingest import ingest_arrays

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:box, :box] - (box - 1) / 2
    r = np.hypot(yy, xx)
    for e in range(n_exp):
        radius = box * (0.15 + 0.2 * e / max(1, n_exp - 1))
        items = [
            (
                (r < radius) + 0.5 * rng.normal(size=(box, box)),
                {"DefocusU": rng.uniform(5000, 30000), "DefocusV": rng.uniform(5000, 30000)},
            )
            for _ in range(per_exp)
        ]
        ingest_arrays(
            root,
            f"ex{e:03d}",
            items,
            n=per_exp,
            box=box,
            progress=False,
            facts={"ProteinClass": f"c{e % 4}", "MolecularWeight": 100.0 + 50 * e},
        )


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=8)
    ap.add_argument("--per-exp", type=int, default=100)
    ap.add_argument("--box", type=int, default=64)
    ap.add_argument("--model", default="vit_small_patch16_224")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=4)
    args = ap.parse_args()

    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from cryofm.data.dataset import split_urls
    from cryofm.features.cache import FeatureCache
    from cryofm.features.particles import BackboneFeaturizer
    from cryofm.models.backbone import create_backbone
    from cryofm.probe.erase import AcquisitionScaler, LeaceEraser, RegressOut, acquisition_matrix
    from cryofm.probe.linear import LOGISTIC_C, RIDGE_ALPHA, fit_logistic, fit_ridge, logistic_path

    tmp = Path(tempfile.mkdtemp(prefix="bench_probe_"))
    n = args.experiments * args.per_exp
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores "
        f"(shared), torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"cuda {torch.cuda.is_available()}"
    )
    print(
        f"data: {args.experiments} experiments x {args.per_exp} particles = {n}, box {args.box} px; "
        f"model {args.model}"
    )
    build_dataset(tmp / "data", args.experiments, args.per_exp, args.box)
    urls = split_urls(tmp / "data", "all")

    torch.manual_seed(0)
    model = create_backbone(args.model, img_size=args.box)
    fz = BackboneFeaturizer(
        model,
        {"model_name": args.model, "image_size": args.box},
        {"weights": "bench"},
        last_blocks=1,
        device="auto",
    )
    cache = FeatureCache(tmp / "cache")
    get = dict(
        featurizer=fz,
        identity=fz.identity,
        urls=urls,
        split="all",
        dataset=tmp / "data",
        batch_size=args.batch,
        progress=False,
    )
    first, t_uncached = timed(cache.get, **get)
    second, t_cached = timed(cache.get, **get)
    assert first.computed and not second.computed and np.array_equal(first.x, second.x)
    print(
        f"features [{first.x.shape[0]} x {first.x.shape[1]}]: uncached {t_uncached:.2f} s "
        f"({n / t_uncached:.0f} particles/s), cached {t_cached:.3f} s -> cached is "
        f"{t_uncached / t_cached:.0f}x faster"
    )

    x = first.x
    rng = np.random.default_rng(0)
    y = np.array([int(u[2:5]) % args.classes for u in first.uids])
    idx = rng.permutation(n)
    tr, va, te = idx[: n // 2], idx[n // 2 : 3 * n // 4], idx[3 * n // 4 :]
    res, t_log = timed(fit_logistic, x[tr], y[tr], x[va], y[va], {"t": (x[te], y[te])})
    print(
        f"logistic probe ({len(LOGISTIC_C)} C values, {len(tr)} x {x.shape[1]}): {t_log:.2f} s, "
        f"test acc {res.test['t']['accuracy']:.3f}"
    )
    target = first.records["MolecularWeight"]
    res, t_ridge = timed(fit_ridge, x[tr], target[tr], x[va], target[va], {"t": (x[te], target[te])})
    print(f"ridge probe ({len(RIDGE_ALPHA)} alphas): {t_ridge:.2f} s, test R2 {res.test['t']['r2']:.3f}")
    recs = {k: v.tolist() for k, v in first.records.items()}
    acq, names = acquisition_matrix(recs)
    _, t_ro = timed(lambda: RegressOut().fit(x[tr], acq[tr], names))
    z = AcquisitionScaler().fit(acq[tr], names).transform(acq[tr])
    _, t_le = timed(lambda: LeaceEraser().fit(x[tr], z))
    print(f"regress-out fit: {t_ro * 1000:.1f} ms; LEACE fit: {t_le * 1000:.1f} ms (1 BLAS thread)")

    # BLAS threads on a small logistic grid: default vs 1 (the library's choice below 2M entries)
    from sklearn.linear_model import LogisticRegression

    xs = (x[tr] - x[tr].mean(0)) / (x[tr].std(0) + 1e-6)

    def grid():
        for c in LOGISTIC_C:
            LogisticRegression(C=c, max_iter=300).fit(xs, y[tr])

    n_blas = max((i.get("num_threads", 1) for i in threadpool_info()), default=1)
    _, t_default = timed(grid)
    with threadpool_limits(limits=1):
        _, t_one = timed(grid)
    _, t_path = timed(logistic_path, x[tr], y[tr], LOGISTIC_C)  # what the probes run (1 thread, warm start)
    print(
        f"logistic grid, independent fits: {n_blas} BLAS threads {t_default:.2f} s, 1 thread {t_one:.2f} s "
        f"-> 1 thread is {t_default / t_one:.2f}x faster"
    )
    print(
        f"logistic grid, warm-started path (cryofm.probe.linear.logistic_path): {t_path:.2f} s -> "
        f"{t_default / t_path:.2f}x faster than independent fits with default threads"
    )


if __name__ == "__main__":
    main()
