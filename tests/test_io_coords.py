"""Pick-file round trips, on-disk conventions (EMAN lower-left corner), and mask → centres."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
from PIL import Image

from cryofm.errors import InputError
from cryofm.io.coords import mask_centres, read_picks, read_picks_by_micrograph, write_picks
from tests.conftest import shared_file

XY = np.array([[100.0, 40.0], [12.5, 300.25], [511.0, 7.0]])
SCORES = np.array([0.9, -1.5, 0.25])


@pytest.mark.parametrize("suffix", [".star", ".box", ".csv", ".txt"])
def test_round_trip_every_format(tmp_path, suffix):
    p = write_picks(tmp_path / f"mic01{suffix}", XY, scores=SCORES, diameter=60, micrograph="mic01.mrc")
    xy, s = read_picks(p)
    np.testing.assert_allclose(xy, XY, atol=1e-3)
    if suffix == ".box":  # EMAN boxes carry no score
        assert np.isnan(s).all()
    else:
        np.testing.assert_allclose(s, SCORES, rtol=1e-5)


def test_box_is_lower_left_corner(tmp_path):
    p = write_picks(tmp_path / "a.box", XY, diameter=60)
    rows = [line.split("\t") for line in p.read_text().splitlines()]
    assert rows[0] == ["70", "10", "60", "60"]  # 100 - 30, 40 - 30, box 60 x 60
    assert float(rows[1][0]) == pytest.approx(12.5 - 30) and float(rows[1][1]) == pytest.approx(270.25)


def test_box_written_by_hand_read_as_centres(tmp_path):
    p = tmp_path / "hand.box"
    p.write_text("10 20 64 64\n0\t0\t32\t32\t-3\n")  # EMAN2 may add a 5th column
    xy, _ = read_picks(p)
    np.testing.assert_allclose(xy, [[42, 52], [16, 16]])


def test_star_columns_follow_relion(tmp_path):
    p = write_picks(tmp_path / "m.star", XY, scores=SCORES, micrograph="Micrographs/m.mrc")
    df = starfile.read(p)
    np.testing.assert_allclose(df["rlnCoordinateX"], XY[:, 0])  # x = column
    np.testing.assert_allclose(df["rlnCoordinateY"], XY[:, 1])
    np.testing.assert_allclose(df["rlnAutopickFigureOfMerit"], SCORES)
    assert set(df["rlnMicrographName"]) == {"Micrographs/m.mrc"}


def test_csv_header_is_cryoppp(tmp_path):
    p = write_picks(tmp_path / "m.csv", XY, diameter=224)
    df = pd.read_csv(p)
    assert list(df.columns) == ["X-Coordinate", "Y-Coordinate", "Diameter"]
    assert (df["Diameter"] == 224).all()


def test_topaz_multi_micrograph_grouping(tmp_path):
    p = tmp_path / "all.txt"
    p.write_text("image_name\tx_coord\ty_coord\tscore\na\t1\t2\t0.5\nb\t3\t4\t-2\na\t5\t6\t1\n")
    groups = read_picks_by_micrograph(p)
    assert sorted(groups) == ["a", "b"]
    np.testing.assert_allclose(groups["a"][0], [[1, 2], [5, 6]])
    np.testing.assert_allclose(groups["b"][1], [-2])
    xy, _ = read_picks(p, micrograph="b.mrc")
    np.testing.assert_allclose(xy, [[3, 4]])


def test_empty_picks_round_trip(tmp_path):
    for suffix in (".star", ".box", ".csv", ".txt"):
        p = write_picks(tmp_path / f"e{suffix}", np.zeros((0, 2)), diameter=10)
        xy, s = read_picks(p)
        assert xy.shape == (0, 2) and s.shape == (0,)


def test_bad_input_names_the_file(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="bad.csv"):
        read_picks(p)
    with pytest.raises(InputError, match="suffix"):
        read_picks(tmp_path / "x.foo")
    with pytest.raises(InputError, match="no such file"):
        read_picks(tmp_path / "missing.star")


def _disks(shape, centres, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    m = np.zeros(shape, bool)
    for x, y in centres:
        m |= (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    return m


def test_mask_centres_split_merged_disks(tmp_path):
    # lone disks (the most common case), a pair overlapping by a quarter diameter, a triple 0.9 d apart
    centres = [(50, 50), (40, 200), (220, 200), (150, 60), (180, 60), (100, 155), (100, 191), (131, 173)]
    m = _disks((240, 260), centres, 20)
    xy = mask_centres(m.astype(np.uint8) * 255, diameter=40)
    assert len(xy) == len(centres)
    d = np.hypot(*(xy[:, None, :] - np.asarray(centres, float)[None]).transpose(2, 0, 1))
    assert d.min(axis=0).max() < 3.0  # every planted centre found within 3 px
    # same through the file reader, with the diameter estimated from the median component area
    Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    xy2, _ = read_picks(tmp_path / "mask.png")
    assert len(xy2) == len(centres)


def test_mask_centres_on_real_cryoppp(shared_data):
    from scipy import ndimage as ndi

    f = shared_file("cryoppp_10028", "train", "labels", "061_10028.png")
    m = np.asarray(Image.open(f)) > 127
    labels, n = ndi.label(m)
    areas = ndi.sum(m, labels, range(1, n + 1))
    disk = np.median(areas)
    expected = int(np.round(areas / disk).sum())  # merged components hold ~area/disk particles
    xy, _ = read_picks(f, diameter=56)
    assert abs(len(xy) - expected) <= 2
    assert m[np.round(xy[:, 1]).astype(int), np.round(xy[:, 0]).astype(int)].all()


def test_real_relion31_particles_star_grouped_by_micrograph(shared_data):
    f = shared_file("relion_cryosparc_formats", "relion31.star")
    parts = starfile.read(f, always_dict=True)["particles"]  # read independently of cryofm
    groups = read_picks_by_micrograph(f)
    assert sum(len(xy) for xy, _ in groups.values()) == len(parts)
    for name, rows in parts.groupby("rlnMicrographName"):
        xy, s = groups[name.rsplit("/", 1)[-1].rsplit(".", 1)[0]]
        np.testing.assert_allclose(xy, rows[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float))
        assert np.isnan(s).all()  # no rlnAutopickFigureOfMerit in a refinement STAR
