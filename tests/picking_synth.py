"""Planted-particle micrographs for picking tests (known centres, dark soft disks in noise)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def planted_micrograph(size: int = 512, diameter: float = 32.0, n: int = 40, noise: float = 1.0,
                       contrast: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A [size, size] micrograph with ``n`` dark disks of ``diameter`` px (soft edge) on a sloped,
    noisy background; returns (image, centres [n, 2] as x, y). Centres keep 1.3·d apart and d from
    the border."""
    rng = np.random.default_rng(seed)
    centres: list[tuple[float, float]] = []
    tries = 0
    while len(centres) < n and tries < 100000:
        tries += 1
        c = rng.uniform(diameter, size - 1 - diameter, 2)
        if all(np.hypot(*(c - q)) >= 1.3 * diameter for q in centres):
            centres.append((float(c[0]), float(c[1])))
    xy = np.asarray(centres)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    particles = np.zeros((size, size), np.float32)
    for x, y in xy:
        particles += ((xx - x) ** 2 + (yy - y) ** 2 <= (diameter / 2) ** 2)
    particles = ndi.gaussian_filter(particles, 1.5)
    background = 0.5 * (xx / size) + 0.3 * np.sin(yy / size * 3.0)  # ice-thickness gradient
    img = 10.0 + background - contrast * particles + noise * rng.standard_normal((size, size))
    return img.astype(np.float32), xy
