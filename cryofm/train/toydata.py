"""A small synthetic particle dataset in the real on-disk layout, for tests, benches and demos.

Particles are random sums of Gaussian blobs (a few "molecules" seen in random in-plane rotations)
plus white noise; they are written through :func:`cryofm.data.ingest.ingest_arrays` and split with
every experiment on the ``train`` side unless ``fractions`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofm.data.ingest import ingest_arrays
from cryofm.data.split import make_split


def toy_particle(rng: np.random.Generator, box: int, n_blobs: int = 6, noise: float = 0.5) -> np.ndarray:
    """One [box, box] float32 particle: Gaussian blobs inside the central disk plus white noise."""
    yy, xx = np.mgrid[:box, :box].astype(np.float32)
    img = np.zeros((box, box), np.float32)
    for _ in range(n_blobs):
        r, a = rng.uniform(0, 0.3 * box), rng.uniform(0, 2 * np.pi)
        cy, cx = box / 2 + r * np.sin(a), box / 2 + r * np.cos(a)
        s = rng.uniform(0.04, 0.1) * box
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)).astype(np.float32)
    return img + noise * rng.standard_normal((box, box)).astype(np.float32)


def make_toy_dataset(
    root: str | Path,
    n_experiments: int = 2,
    n_per: int = 32,
    box: int = 64,
    shard_size: int = 16,
    seed: int = 0,
    fractions=(1.0, 0.0, 0.0),
    pixel_size: float = 2.0,
    images: np.ndarray | None = None,
) -> Path:
    """Write ``n_experiments`` × ``n_per`` particles of ``box`` px to ``root``; returns ``root``.

    ``images`` [M, H, W] replaces the synthetic particles (cycled) when given (e.g. real particles).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    k = 0
    for e in range(n_experiments):
        items = []
        for i in range(n_per):
            img = images[k % len(images)] if images is not None else toy_particle(rng, box)
            k += 1
            items.append((np.asarray(img, np.float32), {"ImagePixelSize": pixel_size, "ParticleIndex": i}))
        ingest_arrays(
            root, f"toy{e:02d}", items, n=n_per, box=box, shard_size=shard_size, source="toy", progress=False
        )
    make_split(root, seed=seed, fractions=fractions)
    return root
