"""Particle extraction speed: `cryofm extract` particles/s against just reading the micrographs, and
where the time goes, measured in one run on the same files.

Data: ``--n`` synthetic float32 MRC micrographs of ``--size``² px (a K2/Falcon-sized 4096² by
default) with ``--picks`` picks each, written to a temporary folder. Measured:

* reading alone (``cryofm.io.micrograph.read_micrograph``), page cache dropped for each file
  (``posix_fadvise(DONTNEED)``) and warm;
* the whole extraction (``cryofm.extract.run.extract``: read, Fourier bin, cut, RELION normalise,
  invert, write the stacks and STAR files), cold, at ``--bin`` and at bin 1;
* the time of each step on one micrograph, to say what bounds the extraction.

    .venv/bin/python bench/bench_extract.py                      # 6 x 4096², 300 picks, box 256, bin 2
    .venv/bin/python bench/bench_extract.py --n 4 --size 2048 --box 128
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import mrcfile
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryofm.extract.binning import fourier_bin  # noqa: E402
from cryofm.extract.normalise import normalise  # noqa: E402
from cryofm.extract.run import ExtractOptions, extract  # noqa: E402
from cryofm.extract.stacks import write_stack  # noqa: E402
from cryofm.extract.windows import cut, place  # noqa: E402
from cryofm.io.coords import write_picks  # noqa: E402
from cryofm.io.micrograph import read_micrograph  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "extract.txt"


def _drop(paths) -> None:
    """Evict the files from the page cache (clean pages only; no root needed)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _make(folder: Path, n: int, size: int, picks: int, box: int) -> list[Path]:
    rng = np.random.default_rng(0)
    mics = []
    for k in range(n):
        img = rng.standard_normal((size, size), dtype=np.float32)
        p = folder / "mics" / f"mic_{k:03d}.mrc"
        p.parent.mkdir(parents=True, exist_ok=True)
        with mrcfile.new(p, overwrite=True) as m:
            m.set_data(img)
            m.voxel_size = 1.0
        xy = rng.uniform(box / 2 + 1, size - box / 2 - 1, (picks, 2))
        write_picks(folder / "picks" / f"mic_{k:03d}.star", xy)
        mics.append(p)
    return mics


def _extract(folder: Path, out: str, box: int, factor: int, threads: int) -> tuple[float, int, float]:
    mics = sorted((folder / "mics").glob("*.mrc"))
    _drop(mics)
    t0, c0 = time.perf_counter(), time.process_time()
    s = extract(str(folder / "mics"), str(folder / "picks"), folder / out,
                ExtractOptions(box=box, bin=factor, invert="false", progress=False, threads=threads))
    return time.perf_counter() - t0, s["n_particles"], time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--picks", type=int, default=300)
    ap.add_argument("--box", type=int, default=256)
    ap.add_argument("--bin", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="FFT threads (0: all cores)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    lines = [f"# .venv/bin/python bench/bench_extract.py {' '.join(sys.argv[1:])}  "
             f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f})",
             f"machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
             f"Python {platform.python_version()}"]
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        folder = Path(tmp)
        mics = _make(folder, args.n, args.size, args.picks, args.box)
        mib = args.size * args.size * 4 / 2**20
        lines.append(f"data: {args.n} micrographs of {args.size}² float32 MRC ({mib:.0f} MiB each), "
                     f"{args.picks} picks each, box {args.box} px, bin {args.bin}")
        # reading alone, cold and warm
        _drop(mics)
        t0 = time.perf_counter()
        for p in mics:
            read_micrograph(p)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p in mics:
            read_micrograph(p)
        warm = time.perf_counter() - t0
        n_part = args.n * args.picks
        lines.append("")
        lines.append(f"read only, cold cache : {n_part / cold:7.0f} particles/s  ({args.n / cold:.2f} "
                     f"micrographs/s, {args.n * mib / cold / 1024:.2f} GiB/s)")
        lines.append(f"read only, warm cache : {n_part / warm:7.0f} particles/s  ({args.n / warm:.2f} "
                     "micrographs/s)")
        runs = {}
        for factor in dict.fromkeys([args.bin, 1]):
            wall, n, cpu = _extract(folder, f"ext_bin{factor}", args.box, factor, args.threads)
            runs[factor] = (wall, n, cpu)
            lines.append(f"extract bin {factor}, cold: {n / wall:7.0f} particles/s  ({args.n / wall:.2f} "
                         f"micrographs/s, {wall:.1f} s, CPU {cpu / wall:.2f} cores busy)  ratio to the cold "
                         f"read {(n / wall) / (n_part / cold):.2f}")
        # one micrograph, step by step
        p = mics[0]
        xy = np.random.default_rng(1).uniform(args.box / 2 + 1, args.size - args.box / 2 - 1, (args.picks, 2))
        threads = args.threads or os.cpu_count() or 1
        steps = {}
        _drop([p])
        t = time.perf_counter()
        img = read_micrograph(p)
        steps["read (cold)"] = time.perf_counter() - t
        t = time.perf_counter()
        b = fourier_bin(img, args.bin, workers=threads)
        steps[f"Fourier bin {args.bin}"] = time.perf_counter() - t
        n = args.box // args.bin
        t = time.perf_counter()
        pl = place(xy, b.shape, n, args.bin)
        boxes = cut(b, pl.centre[pl.keep], n)
        steps["cut boxes"] = time.perf_counter() - t
        t = time.perf_counter()
        boxes = normalise(boxes, int(round(0.375 * n)), inplace=True)
        steps["normalise (ramp + bg stats)"] = time.perf_counter() - t
        t = time.perf_counter()
        write_stack(folder / "one.mrcs", boxes, 2.0)
        steps["write stack (fsync)"] = time.perf_counter() - t
        total = sum(steps.values())
        lines.append("")
        lines.append(f"one micrograph, {len(boxes)} particles of {n}² (bin {args.bin}), step by step:")
        for k, v in steps.items():
            lines.append(f"  {k:<28} {v * 1000:8.1f} ms  {100 * v / total:5.1f} %")
        lines.append(f"  {'total':<28} {total * 1000:8.1f} ms  -> {len(boxes) / total:.0f} particles/s")
        top = max(steps, key=steps.get)
        wall, n_ex, _ = runs[args.bin]
        lines.append("")
        compute = sum(v for k, v in steps.items() if not k.startswith(("read", "write")))
        lines.append(f"bound: CPU, not I/O — computing takes {100 * compute / total:.0f} % of a micrograph's "
                     f"time (the largest step: {top}, {100 * steps[top] / total:.0f} %), reading "
                     f"{100 * steps['read (cold)'] / total:.0f} %; the whole extraction runs at "
                     f"{(n_ex / wall) / (n_part / cold):.2f} x the speed of reading alone")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
