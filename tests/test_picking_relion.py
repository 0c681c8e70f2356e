"""Picks where RELION 5 and crYOLO read them: crYOLO .cbox, RELION's coordinate list and Movies/
tree (checked file by file and against RELION's own lookup rules), RELION names and lists as ground
truth, the output coordinate scale, the oracle sweep and the report without ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from PIL import Image

from cryofm.cli import compose
from cryofm.errors import InputError
from cryofm.io.coords import read_picks, write_picks
from cryofm.io.relion_coords import (
    coordinate_file,
    read_coordinate_list,
    relion_post,
    write_relion_coordinates,
)
from cryofm.picking.report import score_picker
from cryofm.picking.run import run_pick
from cryofm.picking.truth import Truth, load_ground_truth
from tests.picking_synth import planted_micrograph

XY = np.array([[100.0, 40.0], [12.5, 300.25], [511.0, 7.0]])
SCORES = np.array([0.9, 0.3, 0.25])


# -- crYOLO .cbox ----------------------------------------------------------------------------------
def test_cbox_round_trip_and_lower_left_corner(tmp_path):
    p = write_picks(tmp_path / "mic01.cbox", XY, scores=SCORES, diameter=60)
    text = p.read_text()
    assert "data_global" in text and "_cbox_format_version 1.0" in text and "data_cryolo" in text
    rows = [line.split() for line in text.splitlines() if line and line[0].isdigit() or line.startswith("-")]
    # centre (100, 40), box 60: corner (70, 10); Z / Depth / NumBoxes / Angle are <NA> for 2-D picks
    assert rows[0] == ["70", "10", "<NA>", "60", "60", "<NA>", "60", "60", "0.9", "<NA>", "<NA>"]
    assert float(rows[1][0]) == pytest.approx(12.5 - 30) and float(rows[1][1]) == pytest.approx(270.25)
    xy, s = read_picks(p)
    np.testing.assert_allclose(xy, XY, atol=1e-3)
    np.testing.assert_allclose(s, SCORES, rtol=1e-5)


def test_cbox_as_cryolo_writes_it(tmp_path):
    """A crYOLO 1.8 file (its column order, box 220 and an estimated size of 180 that must not move
    the centre): centres are corner + box / 2."""
    p = tmp_path / "mic.cbox"
    p.write_text("\ndata_global\n\n_cbox_format_version 1.0\n\ndata_cryolo\n\nloop_\n"
                 "_CoordinateX #1\n_CoordinateY #2\n_CoordinateZ #3\n_Width #4\n_Height #5\n_Depth #6\n"
                 "_EstWidth #7\n_EstHeight #8\n_Confidence #9\n_NumBoxes #10\n_Angle #11\n"
                 "1234.0 567.0 <NA> 220 220 <NA> 180 175 0.85 <NA> <NA>\n"
                 "10.0 20.0 <NA> 220 220 <NA> 170 190 0.31 <NA> <NA>\n")
    xy, s = read_picks(p)
    np.testing.assert_allclose(xy, [[1344, 677], [120, 130]])
    np.testing.assert_allclose(s, [0.85, 0.31])


def test_cbox_without_cryolo_table_is_named(tmp_path):
    p = tmp_path / "bad.cbox"
    p.write_text("data_other\n\nloop_\n_x\n1\n")
    with pytest.raises(InputError, match="data_cryolo"):
        read_picks(p)


# -- RELION's layout -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, post", [
    ("MotionCorr/job002/Movies/mic1.mrc", "Movies/mic1.mrc"),
    ("MotionCorr/job002/Movies/day1/mic1.mrc", "Movies/day1/mic1.mrc"),
    ("/data/proj/CtfFind/job0123/Movies/m.mrc", "Movies/m.mrc"),
    ("Micrographs/mic1.mrc", "Micrographs/mic1.mrc"),  # not in a job folder: mirrored whole
    ("job002/mic1.mrc", "job002/mic1.mrc"),  # RELION looks for the job folder after the first slash
])
def test_relion_post_follows_decompose_pipeline_file_name(name, post):
    assert relion_post(name) == post


@pytest.fixture
def project(tmp_path):
    """A RELION project: default_pipeline.star and two motion-corrected micrographs."""
    proj = tmp_path / "proj"
    movies = proj / "MotionCorr" / "job002" / "Movies"
    movies.mkdir(parents=True)
    (proj / "default_pipeline.star").write_text("data_pipeline_general\n\n_rlnPipeLineJobCounter 101\n")
    for n in ("mic1", "mic2"):
        (movies / f"{n}.mrc").write_bytes(b"")
    return proj


def test_relion5_layout_file_by_file(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the project dir: the project is found above the micrographs
    mics = sorted((project / "MotionCorr" / "job002" / "Movies").glob("*.mrc"))
    picks = {mics[0]: (XY, SCORES), mics[1]: (XY[:1] + 5, None)}
    out = project / "External" / "job100"
    listing = write_relion_coordinates(out, picks)
    assert listing == out / "coordinate_files.star"
    # the list: data_coordinate_files, names relative to the project dir (Extract's --coord_list)
    text = listing.read_text()
    assert "data_coordinate_files" in text and "_rlnMicrographName" in text
    assert "_rlnMicrographCoordinates" in text
    table = starfile.read(listing, always_dict=True)["coordinate_files"]
    assert table.to_dict("list") == {
        "rlnMicrographName": ["MotionCorr/job002/Movies/mic1.mrc", "MotionCorr/job002/Movies/mic2.mrc"],
        "rlnMicrographCoordinates": ["External/job100/Movies/mic1_autopick.star",
                                     "External/job100/Movies/mic2_autopick.star"]}
    # the tree: exactly the list file and one coordinate file per micrograph under Movies/
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "Movies/mic1_autopick.star", "Movies/mic2_autopick.star", "coordinate_files.star"]
    # each coordinate file: data_ with centres in micrograph px (and the figure of merit when given)
    one = starfile.read(out / "Movies" / "mic1_autopick.star", always_dict=True)
    assert list(one) == [""] or list(one) == ["0"]
    df = next(iter(one.values()))
    np.testing.assert_allclose(df[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(), XY, atol=1e-3)
    np.testing.assert_allclose(df["rlnAutopickFigureOfMerit"], SCORES, atol=1e-3)
    two = next(iter(starfile.read(out / "Movies" / "mic2_autopick.star", always_dict=True).values()))
    assert list(two.columns) == ["rlnCoordinateX", "rlnCoordinateY"]
    # RELION's Import route: Import copies External/job100/Movies/ into Import/jobNNN/Movies/, and
    # Extract then finds coord_dir + post(micrograph without extension) + suffix (preprocessing.cpp)
    for name in table["rlnMicrographName"]:
        assert (out / (Path(relion_post(name)).with_suffix("").as_posix() + "_autopick.star")).is_file()
    # read back from anywhere: the files are found through the project dir
    back = read_coordinate_list(listing)
    np.testing.assert_allclose(back["mic1"][0], XY, atol=1e-3)
    np.testing.assert_allclose(back["mic2"][0], XY[:1] + 5, atol=1e-3)


def test_outside_a_relion_project_the_files_lie_flat(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mic = tmp_path / "data" / "day1" / "a.mrc"
    mic.parent.mkdir(parents=True)
    listing = write_relion_coordinates(tmp_path / "out", {mic: (XY, SCORES)})
    table = starfile.read(listing, always_dict=True)["coordinate_files"]
    assert table.to_dict("list") == {"rlnMicrographName": ["data/day1/a.mrc"],
                                     "rlnMicrographCoordinates": ["out/a_autopick.star"]}
    np.testing.assert_allclose(read_coordinate_list(listing)["a"][0], XY, atol=1e-3)


def test_absolute_micrographs_outside_the_project_keep_only_their_name(tmp_path):
    mic = tmp_path / "elsewhere" / "a.mrc"
    assert coordinate_file(tmp_path / "out", str(mic), "manualpick") == tmp_path / "out" / "a_manualpick.star"


def test_coordinate_list_with_a_missing_file_names_the_row_and_roots(project, tmp_path):
    listing = project / "AutoPick" / "job006" / "autopick.star"
    listing.parent.mkdir(parents=True)
    starfile.write({"coordinate_files": pd.DataFrame(
        {"rlnMicrographName": ["MotionCorr/job002/Movies/mic1.mrc"],
         "rlnMicrographCoordinates": ["AutoPick/job006/Movies/mic1_autopick.star"]})}, listing)
    with pytest.raises(InputError, match=r"row 1: coordinate file AutoPick/job006/Movies/mic1_autopick.star "
                                         r"not found \(looked in .*proj"):
        read_coordinate_list(listing)


def test_relion_outputs_are_ground_truth(project, tmp_path):
    """RELION's own coordinate list, and a folder of <mic>_autopick.star / <mic>_manualpick.star."""
    mics = sorted((project / "MotionCorr" / "job002" / "Movies").glob("*.mrc"))
    out = project / "AutoPick" / "job006"
    listing = write_relion_coordinates(out, {mics[0]: (XY, SCORES), mics[1]: (XY[:2], SCORES[:2])})
    gt = load_ground_truth(listing, ["mic1", "mic2"], 60)
    np.testing.assert_allclose(gt["mic1"].xy, XY, atol=1e-3)
    assert len(gt["mic2"].xy) == 2
    folder = tmp_path / "manual"
    folder.mkdir()
    write_picks(folder / "mic1_manualpick.star", XY[:1])
    write_picks(folder / "mic2_autopick.star", XY[1:])
    gt = load_ground_truth(folder, ["mic1", "mic2"], 60)
    np.testing.assert_allclose(gt["mic1"].xy, XY[:1], atol=1e-3)
    np.testing.assert_allclose(gt["mic2"].xy, XY[1:], atol=1e-3)


# -- eval/pick.py exports, coordinate scale, report without ground truth -------------------------------
def test_pick_exports_at_full_size_for_relion_and_cryolo_without_ground_truth(tmp_path):
    """Picks made on a 2x-binned micrograph, written at full size (coord_scale=2) in every format,
    RELION's list among them; with no ground truth the report still has the overlays."""
    mdir = tmp_path / "mics"
    mdir.mkdir()
    img, _ = planted_micrograph(size=256, diameter=24, n=10, noise=0.5, seed=3)
    u8 = ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)
    Image.fromarray(u8).save(mdir / "m0.png")
    out = tmp_path / "out"
    cfg = compose("pick", [f"micrographs={mdir}", "diameter=24", "picker=dog", f"out={out}", "progress=false",
                           "coord_scale=2", f"relion.project_dir={tmp_path}"])
    summary = run_pick(cfg)
    with np.load(out / "cache" / "m0.npz") as z:
        binned = z["dog_xy"]
    assert summary["n_picks"] == len(binned) > 3 and summary["coord_scale"] == 2.0
    for suffix in (".star", ".box", ".csv", ".txt", ".cbox"):
        np.testing.assert_allclose(read_picks(out / "picks" / f"m0{suffix}")[0], 2 * binned, atol=1e-3)
    box = np.loadtxt(out / "picks" / "m0.box", ndmin=2)
    assert (box[:, 2] == 48).all()  # the box edge is scaled too
    table = starfile.read(out / "coordinate_files.star", always_dict=True)["coordinate_files"]
    assert list(table["rlnMicrographName"]) == ["mics/m0.png"]
    assert list(table["rlnMicrographCoordinates"]) == ["out/mics/m0_autopick.star"]
    np.testing.assert_allclose(read_picks(out / "mics" / "m0_autopick.star")[0], 2 * binned, atol=1e-3)
    assert (out / "report.html").is_file() and (out / "figures" / "overlay_m0.png").is_file()
    assert "no ground truth" in (out / "report.md").read_text()
    assert json.loads((out / "summary.json").read_text())["n_picks"] == len(binned)


# -- the oracle sweep ------------------------------------------------------------------------------
def _result(xy_true, xy_false, s_true, s_false, own):
    cand = np.vstack([xy_true, xy_false])
    sc = np.concatenate([s_true, s_false])
    keep = sc >= own
    return {"dog_xy": cand[keep], "dog_scores": sc[keep], "dog_cand_xy": cand, "dog_cand_scores": sc,
            "dog_threshold": np.asarray(own), "dog_seconds": np.asarray(0.0), "shape": np.asarray([200, 200])}


def test_best_f1_is_never_below_the_own_threshold_f1():
    """Two micrographs whose scores live on different scales: each picker's own per-micrograph
    threshold separates true from false picks (F1 1.0), no single shared threshold does; the
    oracle must still report at least the own-threshold F1."""
    t_a, f_a = np.array([[20.0, 20], [60, 60]]), np.array([[120.0, 120], [160, 160]])
    t_b, f_b = np.array([[30.0, 150], [150, 30]]), np.array([[100.0, 100]])
    results = {"a": _result(t_a, f_a, np.array([10.0, 11]), np.array([5.0, 5.5]), own=7.0),
               "b": _result(t_b, f_b, np.array([3.0, 3.2]), np.array([1.0]), own=2.0)}
    truths = {"a": Truth(t_a), "b": Truth(t_b)}
    scored, curve = score_picker(["a", "b"], results, truths, "dog", 20.0, 10.0)
    assert scored["operating"]["pooled"]["f1"] == pytest.approx(1.0)
    shared_best = float(np.max(curve["f1"]))
    assert shared_best < 1.0  # no shared threshold reaches it ...
    assert scored["best"]["f1"] == pytest.approx(1.0)  # ... but the oracle includes the own thresholds
    assert "own" in scored["best"]["note"]


def test_own_shared_threshold_is_in_the_sweep():
    """A numeric own threshold (shared by every micrograph) that falls between the sweep's quantiles
    is swept too: best F1 equals the own-threshold F1 when that is the optimum."""
    rng = np.random.default_rng(0)
    t = rng.uniform(10, 190, (150, 2))
    t = t[np.argsort(t[:, 0])]
    # true picks score 5.00..5.99, false ones 0..4.99: the optimum is any threshold in (4.99, 5.00]
    f = rng.uniform(10, 190, (150, 2)) + 1000
    res = {"a": _result(t, f, np.linspace(5.0, 5.99, 150), np.linspace(0, 4.99, 150), own=4.995)}
    scored, _ = score_picker(["a"], res, {"a": Truth(t)}, "dog", 20.0, 10.0)
    assert scored["operating"]["pooled"]["f1"] == pytest.approx(1.0)
    assert scored["best"]["f1"] == pytest.approx(1.0)  # quantile thresholds alone reach 0.993
