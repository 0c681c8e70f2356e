"""Training step time on a shared machine: quiet, and under a synthetic load of busy processes.

The demo's pretraining (``experiment=demo``: 4-block ViT, batch 32, one data worker) ran at 14–18 s
per step under a background load of ~3 on a 2-core box against 1.3 s quiet: torch's default of one
intra-op thread per core oversubscribes the cores when other processes want them too.
``train.threads=auto`` (cryofm/utils/threads.py) takes the CPUs this process may use, less its data
workers and the cores other tasks keep busy. This bench runs the same short training quiet and with
``--load`` processes spinning, for ``train.threads=auto`` and for a fixed count (torch's default on
this machine: every core), and prints each loaded step time over the quiet one (target for auto:
<= 2.5x). Medians of the logged ``step_time`` after the first steps; writes bench/results/threads.txt.

    .venv/bin/python bench/bench_threads.py              # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def step_time(dataset: Path, out: Path, threads: str, steps: int, experiment: str) -> float:
    """Median step time (s) of a ``steps``-step run, skipping the first three steps."""
    from cryofm.cli import compose
    from cryofm.report.runlog import read_metrics
    from cryofm.train.loop import train

    cfg = compose("train", [f"experiment={experiment}", f"data.path={dataset}", f"out={out}",
                            f"train.max_steps={steps}", f"train.checkpoint_every={10 * steps}",
                            f"train.threads={threads}", "train.progress=false", "train.resume=false"])
    train(cfg)
    rows = read_metrics(out)
    return statistics.median(float(r["step_time"]) for r in rows[3:])


def spin(n: int) -> list[subprocess.Popen]:
    """``n`` processes that keep one core each busy."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--load", type=int, default=2, help="busy processes during the loaded runs")
    ap.add_argument("--experiment", default="demo")
    ap.add_argument("--fixed", default=str(os.cpu_count() or 2), help="the fixed thread count compared")
    args = ap.parse_args()

    import torch

    from cryofm.train.toydata import make_toy_dataset
    from cryofm.utils.threads import auto_threads

    work = Path(tempfile.mkdtemp(prefix="cryofm_threads_"))
    ds = make_toy_dataset(work / "ds", n_experiments=2, n_per=128, box=64, shard_size=64)
    res: dict[tuple[str, str], float] = {}
    chosen: dict[str, int] = {}
    for cond in ("quiet", "loaded"):
        procs = spin(args.load) if cond == "loaded" else []
        try:
            if procs:
                time.sleep(2.0)  # let the load start
            chosen[cond] = auto_threads(1)
            for threads in ("auto", args.fixed):
                res[(cond, threads)] = step_time(ds, work / f"{cond}_{threads}", threads, args.steps,
                                                 args.experiment)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
             f"experiment={args.experiment} on a toy dataset, {args.steps} steps, median step time "
             f"after step 3; load = {args.load} spinning processes",
             f"train.threads=auto chose {chosen['quiet']} thread(s) quiet, {chosen['loaded']} loaded"]
    for threads in ("auto", args.fixed):
        q, ld = res[("quiet", threads)], res[("loaded", threads)]
        lines.append(f"threads={threads:<5} quiet {q:6.2f} s/step   loaded {ld:6.2f} s/step   "
                     f"loaded / quiet {ld / q:5.2f}")
    best_quiet = min(res[("quiet", t)] for t in ("auto", args.fixed))
    ratio = res[("loaded", "auto")] / best_quiet
    verdict = "MET" if ratio <= 2.5 else "NOT MET"
    lines.append(f"auto loaded / best quiet: {ratio:.2f} (target <= 2.5: {verdict})")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results" / "threads.txt"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
