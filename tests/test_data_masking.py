"""BEiT block masking: exact counts, blocks, the fraction of masked images and the ratio range."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryofm.data.masking import BlockMasking, sample_masks


def test_block_mask_exact_count_and_blocky():
    rng = np.random.default_rng(0)
    gen = BlockMasking(14, 14)
    comps = []
    for n in (0, 1, 20, 50, 98, 196):
        m = gen(n, rng)
        assert m.shape == (14, 14) and m.sum() == n
        if n >= 20:
            comps.append(ndimage.label(m)[1])
    # patches come in blocks: far fewer connected components than masked patches
    assert max(comps) <= 10


def test_sample_masks_fraction_and_ratios():
    rng = np.random.default_rng(1)
    m = sample_masks(16, 14, 14, (0.1, 0.5), 0.5, rng)
    counts = m.sum(1)
    assert m.shape == (16, 196)
    assert (counts > 0).sum() == 8  # half of the images
    masked = np.sort(counts[counts > 0]) / 196
    assert masked.min() >= 0.1 - 1 / 196 and masked.max() <= 0.5 + 1 / 196
    # strata of linspace(0.1, 0.5, 9): one ratio per stratum, so they spread over the range
    assert masked[0] < 0.16 and masked[-1] > 0.44
    assert sample_masks(4, 4, 4, (0.1, 0.5), 0.0, rng).sum() == 0
