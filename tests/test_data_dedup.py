"""Duplicate-pick removal on planted picks with known answers."""

from __future__ import annotations

import pandas as pd

from cryofm.data.dedup import duplicate_mask, remove_duplicates


def _picks():
    # diameter 200 Å at 2 Å/px = 100 px; fraction 0.5 -> duplicates closer than 50 px
    return pd.DataFrame({
        "MicrographName": ["m1", "m1", "m1", "m1", "m2", "m2"],
        "CoordinateX": [100.0, 130.0, 400.0, 460.0, 100.0, 120.0],
        "CoordinateY": [100.0, 100.0, 400.0, 400.0, 100.0, 100.0],
        "AutopickFigureOfMerit": [0.2, 0.9, 0.5, 0.4, float("nan"), 0.1],
        "ImagePixelSize": [2.0] * 6,
    })


def test_keeps_better_scored_of_close_pairs():
    df = _picks()
    drop = duplicate_mask(df, diameter_A=200.0, fraction=0.5)
    # m1: (0,1) are 30 px apart -> keep 1 (0.9); (2,3) are 60 px apart -> both kept
    # m2: (4,5) are 20 px apart -> keep 5 (a NaN score ranks last)
    assert drop.tolist() == [True, False, False, False, True, False]
    kept, n = remove_duplicates(df, 200.0, fraction=0.5)
    assert n == 2 and kept["CoordinateX"].tolist() == [130.0, 400.0, 460.0, 120.0]


def test_same_coordinates_on_other_micrographs_are_not_duplicates():
    df = _picks()
    df["MicrographName"] = [f"m{i}" for i in range(6)]
    assert not duplicate_mask(df, 200.0).any()


def test_larger_fraction_and_lower_is_better():
    df = _picks()
    drop = duplicate_mask(df, 200.0, fraction=0.7)  # 70 px: now (2,3) collide too; keep 2 (0.5 > 0.4)
    assert drop.tolist() == [True, False, False, True, True, False]
    drop = duplicate_mask(df, 200.0, fraction=0.5, score="AutopickFigureOfMerit", higher_is_better=False)
    assert drop.tolist() == [False, True, False, False, True, False]


def test_chain_keeps_non_adjacent():
    # three picks in a row 40 px apart (threshold 50): the middle is best -> both ends dropped;
    # if an end is best, the other end survives (it is 80 px away)
    df = pd.DataFrame({"MicrographName": ["m"] * 3, "CoordinateX": [0.0, 40.0, 80.0],
                       "CoordinateY": [0.0] * 3, "AutopickFigureOfMerit": [0.9, 0.5, 0.1]})
    assert duplicate_mask(df, 100.0, micrograph_pixel_size=1.0).tolist() == [False, True, False]
    df["AutopickFigureOfMerit"] = [0.1, 0.9, 0.5]
    assert duplicate_mask(df, 100.0, micrograph_pixel_size=1.0).tolist() == [True, False, True]
