"""Ingest throughput and peak memory vs merely reading the same bytes from disk.

Generates ``--n`` particles of ``--size``² float32 as RELION ``.mrcs`` stacks (``--per-stack`` images
each) plus one ``.star`` per experiment, then times, on the same files:

* raw read: every stack file read start to end into a reused buffer (cold: the files' pages are first
  dropped from the page cache with ``posix_fadvise(DONTNEED)``; warm: read again right after),
* ingest: ``cryofm.data.ingest_files.ingest_many`` (checks, Fourier resize to ``--box``, per-particle
  normalisation, float16 shards, checksums), one experiment per worker process, from a cold cache,

and prints particles/s of each and their ratio. Peak memory (max RSS of a child process that ingests
one stack) is measured for two stack lengths to show it does not grow with the stack.

    .venv/bin/python bench/bench_ingest.py                       # 10,000 particles (about a minute here)
    .venv/bin/python bench/bench_ingest.py --n 50000 --workers 2 # the issue's size
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_stack(path: Path, block: np.ndarray, count: int, seed: int) -> None:
    """An MRC stack of ``count`` images: ``block`` tiled, each image offset so images differ."""
    import mrcfile

    with mrcfile.new(path, overwrite=True) as m:  # header for the full stack, data written below
        m.set_data(np.zeros((1, *block.shape[1:]), np.float32))
        m.header.nz = count
        m.header.mz = count
        m.set_image_stack()
        m.voxel_size = 1.0
    hdr = path.read_bytes()[:1024]
    with open(path, "wb") as fh:
        fh.write(hdr)
        done = 0
        while done < count:
            k = min(len(block), count - done)
            (block[:k] + np.float32(seed + done)).tofile(fh)
            done += k


def write_star(path: Path, stacks: list[tuple[str, int]], psize: float, size: int) -> None:
    lines = ["data_optics", "loop_", "_rlnOpticsGroup", "_rlnImagePixelSize", "_rlnImageSize",
             "_rlnVoltage", f"1 {psize} {size} 300.0", "", "data_particles", "loop_", "_rlnImageName",
             "_rlnOpticsGroup", "_rlnDefocusU", "_rlnDefocusV", "_rlnDefocusAngle"]
    rng = np.random.default_rng(len(stacks))
    for name, count in stacks:
        for i in range(count):
            d = rng.uniform(8000, 30000)
            lines.append(f"{i + 1:06d}@{name} 1 {d:.1f} {d + 300:.1f} {rng.uniform(-180, 180):.2f}")
    path.write_text("\n".join(lines) + "\n")


def generate(folder: Path, n: int, size: int, per_stack: int, experiments: int) -> list[Path]:
    """Stacks + one STAR per experiment; returns the STAR paths."""
    folder.mkdir(parents=True, exist_ok=True)
    block = np.random.default_rng(0).standard_normal((min(per_stack, 256), size, size), dtype=np.float32)
    stacks: list[list[tuple[str, int]]] = [[] for _ in range(experiments)]
    written = 0
    i = 0
    while written < n:
        count = min(per_stack, n - written)
        name = f"stack_{i:05d}.mrcs"
        write_stack(folder / name, block, count, seed=i)
        stacks[i % experiments].append((name, count))
        written += count
        i += 1
    stars = []
    for e, st in enumerate(stacks):
        p = folder / f"exp{e}.star"
        write_star(p, st, psize=1.1, size=size)
        stars.append(p)
    return stars


def drop_cache(files: list[Path]) -> None:
    """Evict these files' pages from the page cache (only these files)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def raw_read(files: list[Path]) -> tuple[float, int]:
    """Seconds to read every file start to end (64 MiB reused buffer), and bytes read."""
    buf = bytearray(64 << 20)
    view = memoryview(buf)
    total = 0
    t = time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while (k := fh.readinto(view)) > 0:
                total += k
    return time.perf_counter() - t, total


def child_ingest(star: str, out: str, box: int) -> None:
    """Ingest one STAR in this process and print its peak RSS (MiB)."""
    from cryofm.data.ingest_files import IngestOptions, Job, ingest_file

    t = time.perf_counter()
    man = ingest_file(out, Job("mem", star), {}, IngestOptions(box=box, progress=False))
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{man['n']} {dt:.3f} {rss:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="particles in the throughput run")
    ap.add_argument("--size", type=int, default=256, help="particle box (px)")
    ap.add_argument("--box", type=int, default=224, help="stored box (px)")
    ap.add_argument("--per-stack", type=int, default=1000, help="images per .mrcs stack")
    ap.add_argument("--workers", type=int, default=2, help="ingest processes (one experiment each)")
    ap.add_argument("--mem-lengths", type=int, nargs=2, default=[1000, 5000],
                    help="two stack lengths for the peak-memory check")
    ap.add_argument("--dir", default="/tmp/cryofm_bench_ingest", help="scratch folder (deleted after)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_ingest(args.child[0], args.child[1], int(args.child[2]))
        return

    from cryofm.data.ingest_files import IngestOptions, Job, ingest_many

    scratch = Path(args.dir)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
          f"Python {platform.python_version()}")
    print(f"data: {args.n} particles of {args.size}x{args.size} float32 in stacks of {args.per_stack}, "
          f"{args.workers} experiments; ingest to box {args.box} float16 with {args.workers} worker(s)")
    t = time.perf_counter()
    stars = generate(scratch / "in", args.n, args.size, args.per_stack, args.workers)
    stacks = sorted((scratch / "in").glob("*.mrcs"))
    print(f"generated {len(stacks)} stacks in {time.perf_counter() - t:.1f} s")

    drop_cache(stacks)
    cold_s, nbytes = raw_read(stacks)
    warm_s, _ = raw_read(stacks)
    drop_cache(stacks)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    opts = IngestOptions(box=args.box, progress=False)
    done = ingest_many(scratch / "out", [Job(f"exp{i}", str(s)) for i, s in enumerate(stars)], None, opts,
                       workers=args.workers)
    ing_s = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    user_s = sum(b.ru_utime - a.ru_utime for a, b in zip(cpu0, cpu1, strict=True))
    sys_s = sum(b.ru_stime - a.ru_stime for a, b in zip(cpu0, cpu1, strict=True))
    main_s = (cpu1[0].ru_utime + cpu1[0].ru_stime) - (cpu0[0].ru_utime + cpu0[0].ru_stime)
    cpu_s = user_s + sys_s
    assert sum(m["n"] for m in done.values()) == args.n
    n = args.n
    gib = nbytes / 2**30
    print(f"\nraw read, cold cache : {n / cold_s:9.0f} particles/s  ({gib / cold_s:.2f} GiB/s, "
          f"{cold_s:.1f} s)")
    print(f"raw read, warm cache : {n / warm_s:9.0f} particles/s  ({gib / warm_s:.2f} GiB/s, "
          f"{warm_s:.1f} s)")
    print(f"ingest (cold cache)  : {n / ing_s:9.0f} particles/s  ({ing_s:.1f} s)")
    print(f"ratio ingest / raw read cold = {cold_s / ing_s:.3f}   (target >= 0.5)")
    print(f"ratio ingest / raw read warm = {warm_s / ing_s:.3f}")
    per = cpu_s / n
    print(f"ingest CPU time: {1e3 * per:.2f} ms per particle (all processes: user {1e3 * user_s / n:.2f}, "
          f"kernel {1e3 * sys_s / n:.2f}; the main process reading metadata {1e3 * main_s / n:.2f}); "
          f"wall x workers / CPU = {ing_s * args.workers / cpu_s:.2f} (>1: cores idle or shared)")
    print(f"cores needed for ratio 0.5 vs the cold read: {0.5 * (n / cold_s) * per:.1f}")

    print("\npeak memory, one experiment ingested in a fresh process:")
    rows = []
    for length in args.mem_lengths:
        folder = scratch / f"mem{length}"
        star = generate(folder, length, args.size, length, 1)[0]  # ONE stack of `length` images
        cmd = [sys.executable, __file__, "--child", str(star), str(folder / "out"), str(args.box)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        k, dt, rss = res.stdout.split()[-3:]
        stack_mib = (folder / "stack_00000.mrcs").stat().st_size / 2**20
        rows.append(float(rss))
        print(f"  stack of {int(k):6d} images ({stack_mib:7.0f} MiB): peak RSS {float(rss):7.1f} MiB, "
              f"{int(k) / float(dt):.0f} particles/s")
    growth = rows[1] / rows[0]
    ratio = args.mem_lengths[1] / args.mem_lengths[0]
    print(f"  stack {ratio:.0f}x longer -> peak RSS x{growth:.2f} (flat = 1.0)")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
