"""Speed of map labelling: vectorised neighbour labelling vs a per-atom loop, and the other steps.

The model is PDB 1OEL expanded to the GroEL 14-mer (53,858 atoms) when ``../shared/data`` is
present, otherwise random atoms in a protein-like blob; it sits in the middle of a ``--box``^3 grid
of 1 Å voxels (300^3 = 27 M voxels by default). Both labelling methods must give identical maps.

    .venv/bin/python bench/bench_maplabels.py [--box 300] [--radius 6]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from cryofm.io.mapio import DensityMap, read_map
from cryofm.maps.fsc import fsc_curve
from cryofm.maps.labels import atom_voxels, make_labels, voxel_distance
from cryofm.maps.resample import resample
from cryofm.maps.simulate_map import simulate_map

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "emd1997_groel"


def naive_classification(grid: DensityMap, xyz: np.ndarray, radius: float) -> np.ndarray:
    """Baseline: loop over atoms, paint the ball of neighbours around each atom voxel (numpy slices)."""
    n = np.array(grid.shape_xyz)
    cls = np.zeros(grid.data.shape, np.int8)
    p = int(np.ceil(radius))
    off = np.arange(-p, p + 1)
    ball = (off[:, None, None] ** 2 + off[None, :, None] ** 2 + off[None, None, :] ** 2) <= radius**2 + 1e-6
    vox = atom_voxels(grid, xyz)
    for x, y, z in vox:
        if not (-p <= x < n[0] + p and -p <= y < n[1] + p and -p <= z < n[2] + p):
            continue
        z0, y0, x0 = max(z - p, 0), max(y - p, 0), max(x - p, 0)
        z1, y1, x1 = min(z + p + 1, n[2]), min(y + p + 1, n[1]), min(x + p + 1, n[0])
        b = ball[z0 - z + p:z1 - z + p, y0 - y + p:y1 - y + p, x0 - x + p:x1 - x + p]
        region = cls[z0:z1, y0:y1, x0:x1]
        region[b & (region == 0)] = 2
    inside = np.all((vox >= 0) & (vox < n), axis=1)
    v = vox[inside]
    cls[v[:, 2], v[:, 1], v[:, 0]] = 1
    return cls


def python_loop_classification(grid: DensityMap, xyz: np.ndarray, radius: float) -> np.ndarray:
    """Baseline as labelling scripts are often written: Python loops over atoms and their neighbours."""
    n = grid.shape_xyz
    cls = np.zeros(grid.data.shape, np.int8)
    p = int(np.ceil(radius))
    r2 = radius * radius + 1e-6
    for x, y, z in atom_voxels(grid, xyz).tolist():
        for dz in range(-p, p + 1):
            for dy in range(-p, p + 1):
                for dx in range(-p, p + 1):
                    if dx * dx + dy * dy + dz * dz <= r2:
                        i, j, k = x + dx, y + dy, z + dz
                        if 0 <= i < n[0] and 0 <= j < n[1] and 0 <= k < n[2] and cls[k, j, i] == 0:
                            cls[k, j, i] = 2
        if 0 <= x < n[0] and 0 <= y < n[1] and 0 <= z < n[2]:
            cls[z, y, x] = 1
    return cls


def ours_classification(grid: DensityMap, xyz: np.ndarray, radius: float) -> np.ndarray:
    """Classification only, the vectorised way (bounded distance transform + two thresholds)."""
    dist, _ = voxel_distance(grid, atom_voxels(grid, xyz), radius)
    cls = np.zeros(grid.data.shape, np.int8)
    cls[dist <= radius + 1e-6] = 2
    cls[dist == 0] = 1
    return cls


def load_atoms(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    if (SHARED / "1oel.pdb").is_file():
        from cryofm.io.atomic import read_model

        m = read_model(SHARED / "1oel.pdb")
        return m.xyz - m.xyz.mean(axis=0), m.atom_name, m.element, "PDB 1OEL 14-mer"
    n = 50000
    xyz = rng.normal(0, 35, (n, 3))
    return xyz, np.array(["CA"] * n), np.array(["C"] * n), "random blob"


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--box", type=int, default=300, help="grid side in 1 Å voxels")
    ap.add_argument("--radius", type=float, default=6.0, help="neighbour radius (Å)")
    ap.add_argument("--python-atoms", type=int, default=300, help="atoms timed in the pure-Python loop")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    xyz, names, elements, what = load_atoms(rng)
    b = args.box
    grid = DensityMap(np.zeros((b, b, b), np.float32), [1.0] * 3, [-b / 2] * 3)
    print(f"machine: {platform.machine()} CPU, {__import__('os').cpu_count()} cores (shared), "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"model: {what}, {len(xyz)} atoms; grid {b}^3 = {b**3 / 1e6:.1f} M voxels of 1 A; "
          f"radius {args.radius} A")

    sim, t_sim = timed(simulate_map, grid, xyz, elements, 2.0)
    print(f"simulate_map (2 A, voxel-averaged Gaussians): {t_sim:.2f} s")
    cls, t_cls = timed(ours_classification, grid, xyz, args.radius)
    print(f"classification, vectorised (bounded distance transform): {t_cls:.2f} s")
    lab, t_all = timed(make_labels, grid, sim, xyz, names, elements, None, args.radius)
    print(f"all three label maps, vectorised (+ atom types + regression): {t_all:.2f} s")
    naive, t_naive = timed(naive_classification, grid, xyz, args.radius)
    print(f"classification, per-atom loop painting a ball with numpy slices: {t_naive:.2f} s")
    sub = np.random.default_rng(1).choice(len(xyz), size=min(args.python_atoms, len(xyz)), replace=False)
    slow, t_py = timed(python_loop_classification, grid, xyz[sub], args.radius)
    t_py_all = t_py * len(xyz) / len(sub)
    print(f"classification, pure-Python neighbour loops: {t_py:.2f} s for {len(sub)} atoms "
          f"-> {t_py_all:.0f} s extrapolated to {len(xyz)} atoms")
    same = (np.array_equal(naive, cls) and np.array_equal(cls, lab.classification)
            and np.array_equal(slow, ours_classification(grid, xyz[sub], args.radius)))
    print(f"identical classification maps (all methods): {same}")
    print(f"speed-up, classification: {t_naive / t_cls:.1f}x vs the numpy per-atom loop, "
          f"{t_py_all / t_cls:.0f}x vs the pure-Python loop")
    _, t_fsc = timed(fsc_curve, sim, lab.regression, 1.0)
    print(f"FSC of two {b}^3 maps: {t_fsc:.2f} s")
    if (SHARED / "1997.map").is_file():
        raw = read_map(SHARED / "1997.map")
        out, t_res = timed(resample, raw, 1.0)
        print(f"resample EMD-1997 100^3 at 2.02 A -> {out.data.shape[0]}^3 at 1 A (cubic): {t_res:.2f} s")
    if not same:
        raise SystemExit("classification maps differ")


if __name__ == "__main__":
    main()
