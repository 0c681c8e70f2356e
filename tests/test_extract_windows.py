"""Boxes at picks: RELION centring, edge boxes skipped or padded, background windows away from picks."""

from __future__ import annotations

import numpy as np

from cryofm.extract.windows import background_windows, cut, place


def test_pick_becomes_box_pixel_n_over_2_and_edges_are_counted():
    img = np.arange(100 * 120, dtype=np.float32).reshape(100, 120)  # value = row * 120 + col
    xy = np.array([[50.4, 60.6],    # inside: centre (50, 61)
                   [3.0, 50.0],     # box 0-... crosses the left edge (needs x >= 4 for n = 8)
                   [4.0, 50.0],     # just fits: columns 0..7
                   [116.5, 96.5],   # rounds to (117, 97): columns 113..120, rows 93..100 cross
                   [500.0, 50.0]])  # wholly outside
    pl = place(xy, img.shape, 8, 1, "skip")
    assert pl.centre[0].tolist() == [50, 61]
    assert pl.keep.tolist() == [True, False, True, False, False]
    assert pl.crossing.tolist() == [False, True, False, True, False]
    assert pl.outside.tolist() == [False, False, False, False, True]
    boxes = cut(img, pl.centre[pl.keep], 8)
    assert boxes[0][4, 4] == 61 * 120 + 50  # the pick is box pixel (n/2, n/2)
    assert boxes[0][0, 0] == (61 - 4) * 120 + (50 - 4)
    assert boxes[1][:, 0].tolist() == [(50 - 4 + r) * 120 + 0 for r in range(8)]
    # binned by 2: the same pick is at (x / 2, y / 2)
    assert place(xy[:1], (50, 60), 8, 2).centre[0].tolist() == [25, 30]


def test_pad_fills_with_the_nearest_pixel_inside_as_relion_does():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((40, 50)).astype(np.float32)
    pl = place(np.array([[1.0, 38.0]]), img.shape, 10, 1, "pad")
    assert pl.keep.all() and pl.crossing.all()
    box = cut(img, pl.centre, 10)[0]
    ref = np.pad(img, 10, mode="edge")[38 - 5 + 10:38 + 5 + 10, 1 - 5 + 10:1 + 5 + 10]
    np.testing.assert_array_equal(box, ref)


def test_background_windows_keep_a_diameter_from_picks_and_each_other():
    rng = np.random.default_rng(3)
    picks = rng.uniform(0, 400, (30, 2))
    d, n = 30.0, 32
    for factor in (1, 2):
        w = background_windows(picks, (400 // factor, 400 // factor), n // factor, factor, d, 25,
                               np.random.default_rng(1))
        assert len(w) == 25
        to_picks = np.hypot(*(w[:, None] - picks[None]).transpose(2, 0, 1))
        assert to_picks.min() >= d
        between = np.hypot(*(w[:, None] - w[None]).transpose(2, 0, 1)) + np.eye(len(w)) * 1e9
        assert between.min() >= d
        # every window lies wholly inside: no edge crossing at its own box size
        pl = place(w, (400 // factor, 400 // factor), n // factor, factor, "skip")
        assert pl.keep.all()
    # a crowded field gives fewer than asked, never a window on a particle
    dense = np.stack(np.meshgrid(np.arange(0, 200, 20.0), np.arange(0, 200, 20.0)), -1).reshape(-1, 2)
    assert len(background_windows(dense, (200, 200), 16, 1, 30.0, 5, np.random.default_rng(0))) == 0
