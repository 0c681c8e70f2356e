"""BEiT-style block masking of patch grids for iBOT, and the per-batch mask sampling of DINOv2.

A fraction ``mask_probability`` of the images in a batch get a mask; their mask ratios are spread
over ``[ratio_min, ratio_max]`` (one stratum of ``linspace`` each, as DINOv2's collate does), and each
mask is built from random rectangles of aspect ratio in ``[0.3, 1/0.3]`` until it holds exactly
``round(ratio × N)`` patches (the last ones filled at random, DINOv2's ``complete_mask_randomly``).
"""

from __future__ import annotations

import math

import numpy as np


class BlockMasking:
    """Block masks on an ``h`` × ``w`` patch grid (BEiT's ``MaskingGenerator``)."""

    def __init__(
        self,
        h: int,
        w: int,
        min_block: int = 4,
        max_block: int | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
    ):
        self.h, self.w = int(h), int(w)
        self.n = self.h * self.w
        self.min_block = int(min_block)
        self.max_block = max_block
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect))

    def _block(self, mask: np.ndarray, max_patches: int, rng: np.random.Generator) -> int:
        delta = 0
        for _ in range(10):
            area = rng.uniform(self.min_block, max(max_patches, self.min_block))
            aspect = math.exp(rng.uniform(*self.log_aspect))
            bh = int(round(math.sqrt(area * aspect)))
            bw = int(round(math.sqrt(area / aspect)))
            if 0 < bw < self.w and 0 < bh < self.h:
                top = int(rng.integers(0, self.h - bh + 1))
                left = int(rng.integers(0, self.w - bw + 1))
                region = mask[top : top + bh, left : left + bw]
                new = bh * bw - int(region.sum())
                if 0 < new <= max_patches:
                    region[:] = True
                    delta = new
                if delta > 0:
                    break
        return delta

    def __call__(self, n_masked: int, rng: np.random.Generator) -> np.ndarray:
        """Boolean mask [h, w] with exactly ``n_masked`` True patches."""
        n_masked = int(min(max(n_masked, 0), self.n))
        mask = np.zeros((self.h, self.w), dtype=bool)
        count = 0
        max_block = self.max_block or n_masked
        while count < n_masked:
            delta = self._block(mask, min(n_masked - count, max_block), rng)
            if delta == 0:
                break
            count += delta
        if count < n_masked:  # complete at random
            free = np.flatnonzero(~mask.ravel())
            pick = rng.choice(free, size=n_masked - count, replace=False)
            mask.ravel()[pick] = True
        return mask


def sample_masks(
    batch: int, h: int, w: int, ratio: tuple[float, float], probability: float, rng: np.random.Generator
) -> np.ndarray:
    """Masks [batch, h·w] for the global crops of a batch (row-major patch order).

    ``int(batch × probability)`` images are masked; image i of them gets ratio
    ``U(p_i, p_{i+1})`` with ``p = linspace(ratio_min, ratio_max, n_masked + 1)``; the others get
    none; the order is shuffled.
    """
    gen = BlockMasking(h, w)
    n_img = int(batch * probability)
    probs = np.linspace(ratio[0], ratio[1], n_img + 1)
    out = np.zeros((batch, h * w), dtype=bool)
    for i in range(n_img):
        r = rng.uniform(probs[i], probs[i + 1])
        out[i] = gen(int(round(h * w * r)), rng).ravel()
    return out[rng.permutation(batch)]
