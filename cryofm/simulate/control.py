"""The learning-curve control set: a few distinct 2-D shapes seen in random poses, with noise.

Any working self-distillation objective must learn to tell these classes apart within minutes
(``bench/bench_learning.py``, ``tests/test_learning_guard.py``): each class is a fixed arrangement
of Gaussian blobs (one large disk, a dumbbell, a triangle, a ring, a rod, an L, a cross, a square),
drawn at a random in-plane rotation, a random shift and a slightly random size, plus white noise,
then normalised per particle (zero mean, unit std) as cryofm's shards are. Nothing in the raw
pixels is aligned: a linear classifier on pixels does poorly, a rotation-invariant feature well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofm.data.ingest import ingest_arrays
from cryofm.data.normalize import normalize
from cryofm.data.split import make_split

# blob centres (units of the particle radius, before rotation) and relative blob sizes, per class
SHAPES: dict[str, tuple[list[tuple[float, float]], float]] = {
    "disk": ([(0.0, 0.0)], 0.55),
    "dumbbell": ([(-0.55, 0.0), (0.55, 0.0)], 0.3),
    "triangle": ([(0.6 * np.cos(a), 0.6 * np.sin(a)) for a in np.deg2rad([90, 210, 330])], 0.25),
    "ring": ([(0.7 * np.cos(a), 0.7 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)],
             0.14),
    "rod": ([(x, 0.0) for x in np.linspace(-0.8, 0.8, 5)], 0.15),
    "ell": ([(-0.5, y) for y in np.linspace(-0.6, 0.6, 4)] + [(x, -0.6) for x in (-0.1, 0.3, 0.7)], 0.14),
    "cross": ([(0.0, 0.0)] + [(r * c, r * s) for r in (0.4, 0.8)
                              for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1))], 0.13),
    "square": ([(sx * 0.5, sy * 0.5) for sx in (-1, 1) for sy in (-1, 1)], 0.22),
}


def control_particles(n_per_class: int, box: int = 64, noise: float = 1.0, seed: int = 0,
                      classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, box, box] float32 (per-particle normalised) and integer labels [N].

    Args:
        n_per_class: particles per class.
        box: image edge (px); the particle radius is ~0.3 × box.
        noise: white-noise std relative to the clean image's std (1.0: SNR 1 by variance).
        seed: the random poses, sizes, shifts and noise.
        classes: a subset of :data:`SHAPES` (default: all eight, in their order).
    """
    names = list(classes or SHAPES)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:box, :box].astype(np.float32) - (box - 1) / 2
    images, labels = [], []
    for label, name in enumerate(names):
        centres, size = SHAPES[name]
        c = np.asarray(centres, np.float32)
        for _ in range(n_per_class):
            radius = 0.3 * box * rng.uniform(0.9, 1.1)
            a = rng.uniform(0, 2 * np.pi)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
            pts = c @ rot.T * radius + rng.uniform(-0.06, 0.06, 2).astype(np.float32) * box
            s = size * radius
            img = np.zeros((box, box), np.float32)
            for px, py in pts:
                img += np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * s * s))
            img = (img - img.mean()) / max(float(img.std()), 1e-6)
            img += noise * rng.standard_normal((box, box)).astype(np.float32)
            images.append(img)
            labels.append(label)
    order = rng.permutation(len(images))
    return normalize(np.stack(images)[order]), np.asarray(labels)[order]


def write_control_dataset(root: str | Path, n_per_class: int = 256, box: int = 64, noise: float = 1.0,
                          seed: int = 0, shard_size: int = 256) -> Path:
    """The control set as a cryofm dataset (one experiment, every shard on the training side);
    the class name is each particle's ``ProteinClass``. Returns ``root``."""
    images, labels = control_particles(n_per_class, box, noise, seed)
    names = list(SHAPES)
    items = [(img, {"ImagePixelSize": 2.0, "ParticleIndex": i, "ProteinClass": names[int(y)]})
             for i, (img, y) in enumerate(zip(images, labels, strict=True))]
    ingest_arrays(root, "control", items, n=len(items), box=box, shard_size=shard_size, source="control",
                  progress=False)
    make_split(root, seed=seed, fractions=(1.0, 0.0, 0.0))
    return Path(root)
