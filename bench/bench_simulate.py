"""Benchmark: vectorised Fourier-slice simulation vs a naive per-particle real-space loop.

Simulates ``--n`` particles of ``--size``² (projection + shift + CTF + noise) from a ``--size``³
procedural density with :class:`cryofm.simulate.projection.Projector`, and times two baselines on
fewer particles (per-particle time × n): the naive loop (SciPy ``map_coordinates`` trilinear rotation
of the volume, sum along z, NumPy FFT CTF, one particle at a time) and the batched real-space
projector (``project_real``). Prints the ratios, the agreement of the two projectors, and
optionally (``--demo``) the wall time of ``cryofm simulate preset=demo``.

    .venv/bin/python bench/bench_simulate.py [--n 10000] [--size 128] [--n-naive 10] [--demo]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch
from scipy import ndimage as ndi

from cryofm.simulate import densities as D
from cryofm.simulate.ctf import ctf_2d
from cryofm.simulate.noise import add_gaussian_noise
from cryofm.simulate.projection import Projector, project_real
from cryofm.simulate.rotations import random_rotations


def naive_particle(vol: np.ndarray, A: np.ndarray, ctf: np.ndarray, shift_px: np.ndarray,
                   snr: float, rng: np.random.Generator) -> np.ndarray:
    """One particle the straightforward way: rotate the volume, sum along z, CTF, shift, noise."""
    n = vol.shape[0]
    r = np.arange(n) - n // 2
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1) @ A  # Aᵀ p as rows
    smp = ndi.map_coordinates(vol, [pts[:, 2] + n // 2, pts[:, 1] + n // 2, pts[:, 0] + n // 2],
                              order=1, mode="constant").reshape(n, n, n)
    img = smp.sum(0)
    f = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img)))
    k = np.arange(n) - n // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    f *= ctf * np.exp(2j * np.pi * (kx * shift_px[0] + ky * shift_px[1]) / n)
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(f))).real
    return img + np.sqrt(img.var() / snr) * rng.standard_normal(img.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="particles simulated by the vectorised path")
    ap.add_argument("--size", type=int, default=128, help="image and volume edge (px)")
    ap.add_argument("--n-naive", type=int, default=10, help="particles timed for the naive loop")
    ap.add_argument("--n-real", type=int, default=32, help="particles timed for project_real")
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--demo", action="store_true", help="also time `cryofm simulate preset=demo`")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, size, apix = args.n, args.size, 2.0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores "
          f"(shared), torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    dens = D.procedural("ring", "D7", diameter=0.5 * size * apix, pixel_size=apix, resolution=6.0, seed=1)
    vol = np.zeros((size,) * 3, np.float32)
    o = (size - dens.box) // 2
    vol[o:o + dens.box, o:o + dens.box, o:o + dens.box] = dens.volume
    rots = random_rotations(n, rng)
    du = rng.uniform(8000, 25000, n)
    params = {"defocus_u": du, "defocus_v": du - 300.0, "defocus_angle": rng.uniform(-180, 180, n),
              "voltage": 300.0, "cs": 2.7, "amplitude_contrast": 0.1, "bfactor": 50.0}
    shifts = rng.normal(0, 4.0, (n, 2))

    t0 = time.perf_counter()
    proj = Projector(vol, apix)
    t_init = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    imgs = proj.project(rots, shifts=shifts, ctf=params, chunk=args.chunk)
    imgs = add_gaussian_noise(imgs, 0.1, rng)
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    print(f"vectorised Fourier-slice: {n} particles of {size}^2 (projection+shift+CTF+noise) in "
          f"{t_ours:.1f} s wall ({c_ours:.1f} CPU-s) + {t_init:.1f} s volume FFT = "
          f"{n / t_ours:.0f} particles/s")

    m = args.n_naive
    ctfs = ctf_2d(size, apix, du[:m], du[:m] - 300.0, params["defocus_angle"][:m], 300.0, 2.7, 0.1,
                  50.0).numpy()
    t0 = time.perf_counter()
    for i in range(m):
        naive_particle(vol, rots[i], ctfs[i], shifts[i] / apix, 0.1, rng)
    t_naive = (time.perf_counter() - t0) / m
    print(f"naive per-particle loop (map_coordinates, {m} particles timed): {t_naive * 1e3:.0f} ms/particle "
          f"-> {t_naive * n:.0f} s for {n}; speed-up x{t_naive * n / t_ours:.0f}")

    k = args.n_real
    t0 = time.perf_counter()
    real = project_real(vol, rots[:k])
    t_real = (time.perf_counter() - t0) / k
    print(f"batched real-space projector (project_real, {k} timed): {t_real * 1e3:.0f} ms/particle -> "
          f"{t_real * n:.0f} s for {n}; speed-up x{t_real * n / t_ours:.0f}")
    fourier = proj.project(rots[:k])
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(fourier, real, strict=True)]
    print(f"agreement Fourier-slice vs real-space projections: min correlation {min(corr):.4f}")

    if args.demo:
        from cryofm.cli import main as cli

        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            cli(["simulate", "preset=demo", f"out={tmp}/demo"])
            print(f"cryofm simulate preset=demo (10 experiments, 64^2, shards + manifest + split): "
                  f"{time.perf_counter() - t0:.1f} s wall ({time.process_time() - c0:.1f} CPU-s), "
                  f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
