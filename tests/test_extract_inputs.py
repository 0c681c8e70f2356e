"""Micrographs, picks matched by name as RELION does, crYOLO .cbox, and per-micrograph CTF tables."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryofm.errors import InputError
from cryofm.extract.ctf import read_ctf
from cryofm.extract.inputs import list_inputs, match_picks, micrograph_shape, mrc_pixel_size, read_cbox
from cryofm.io.coords import write_picks


def _mic(path, shape=(64, 80), apix=1.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.zeros(shape, np.float32))
        m.voxel_size = apix
    return path


def test_picks_match_by_name_with_relion_suffixes_longest_stem_first(tmp_path):
    for s in ("mic_1", "mic_1_2", "mic_3"):
        _mic(tmp_path / "mics" / f"{s}.mrc")
    mics, _ = list_inputs(str(tmp_path / "mics"))
    assert [m.stem for m in mics] == ["mic_1", "mic_1_2", "mic_3"]
    c = tmp_path / "coords"
    write_picks(c / "mic_1_autopick.star", np.array([[10.0, 20.0]]), scores=np.array([0.9]))
    write_picks(c / "mic_1_2.box", np.array([[30.0, 40.0], [50.0, 30.0]]), diameter=10)
    write_picks(c / "other.csv", np.array([[1.0, 2.0]]), diameter=10)
    picks, unmatched = match_picks(mics, str(c))
    assert sorted(picks) == ["mic_1", "mic_1_2"]  # mic_1_2.box is mic_1_2's, not mic_1's "_2" file
    np.testing.assert_allclose(picks["mic_1"].xy, [[10, 20]])
    assert picks["mic_1"].scores.tolist() == [0.9]
    np.testing.assert_allclose(picks["mic_1_2"].xy, [[30, 40], [50, 30]])  # .box corners -> centres
    assert [p.name for p in unmatched] == ["other.csv"]
    write_picks(c / "mic_1.star", np.array([[1.0, 1.0]]))
    with pytest.raises(InputError, match="second pick file for micrograph 'mic_1'"):
        match_picks(mics, str(c))
    picks, _ = match_picks(mics, str(c / "*_autopick.star"))  # a glob picks one flavour
    assert list(picks) == ["mic_1"]


def test_one_star_file_with_micrograph_names_feeds_several_micrographs(tmp_path):
    for s in ("a", "b"):
        _mic(tmp_path / "mics" / f"{s}.mrc")
    mics, _ = list_inputs(str(tmp_path / "mics" / "*.mrc"))
    df = pd.DataFrame({"rlnMicrographName": ["MotionCorr/job002/a.mrc", "MotionCorr/job002/b.mrc",
                                             "MotionCorr/job002/b.mrc"],
                       "rlnCoordinateX": [1.0, 2.0, 3.0], "rlnCoordinateY": [4.0, 5.0, 6.0]})
    starfile.write({"": df}, tmp_path / "all_picks.star")
    picks, unmatched = match_picks(mics, str(tmp_path / "all_picks.star"))
    assert len(picks["a"].xy) == 1 and picks["b"].xy[:, 0].tolist() == [2.0, 3.0] and not unmatched


def test_cbox_centre_is_corner_plus_half_the_box(tmp_path):
    text = ("\ndata_cryolo\n\nloop_\n_CoordinateX #1\n_CoordinateY #2\n_CoordinateZ #3\n_Width #4\n"
            "_Height #5\n_Depth #6\n_EstWidth #7\n_EstHeight #8\n_Confidence #9\n_NumBoxes #10\n_Angle #11\n"
            "100.0 200.0 <NA> 64 64 <NA> 60 61 0.83 <NA> <NA>\n"
            "10.5 20.0 <NA> 32 32 <NA> 30 30 0.41 <NA> <NA>\n")
    (tmp_path / "m.cbox").write_text(text)
    xy, s = read_cbox(tmp_path / "m.cbox")
    np.testing.assert_allclose(xy, [[132.0, 232.0], [26.5, 36.0]])
    np.testing.assert_allclose(s, [0.83, 0.41])
    _mic(tmp_path / "m.mrc")
    mics, _ = list_inputs(str(tmp_path / "m.mrc"))
    picks, _ = match_picks(mics, str(tmp_path / "m.cbox"))
    np.testing.assert_allclose(picks["m"].xy, xy)


def test_micrographs_star_optics_and_ctf_and_headers(tmp_path):
    _mic(tmp_path / "MotionCorr" / "job002" / "Movies" / "m1.mrc", apix=0.0)
    _mic(tmp_path / "MotionCorr" / "job002" / "Movies" / "m2.mrc", shape=(70, 90), apix=0.0)
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1", "g2"], "rlnOpticsGroup": [1, 2],
                           "rlnMicrographOriginalPixelSize": [0.5, 0.6], "rlnVoltage": [300.0, 200.0],
                           "rlnSphericalAberration": [2.7, 2.0], "rlnAmplitudeContrast": [0.1, 0.07],
                           "rlnMicrographPixelSize": [1.0, 1.2]})
    mics = pd.DataFrame({"rlnMicrographName": ["MotionCorr/job002/Movies/m1.mrc",
                                               "MotionCorr/job002/Movies/m2.mrc"],
                         "rlnOpticsGroup": [1, 2], "rlnDefocusU": [12000.0, 15000.0],
                         "rlnDefocusV": [11500.0, 14000.0], "rlnDefocusAngle": [30.0, -45.0],
                         "rlnCtfMaxResolution": [4.1, 3.9], "rlnCtfFigureOfMerit": [0.2, 0.3]})
    star = tmp_path / "CtfFind" / "job003" / "micrographs_ctf.star"
    star.parent.mkdir(parents=True)
    starfile.write({"optics": optics, "micrographs": mics}, star)
    got, groups = list_inputs(str(star))  # names relative to the project, two levels up
    assert [m.path for m in got] == [tmp_path / "MotionCorr/job002/Movies/m1.mrc",
                                    tmp_path / "MotionCorr/job002/Movies/m2.mrc"]
    assert got[1].optics_group == 2 and got[1].ctf["rlnDefocusU"] == 15000.0
    assert groups[2]["pixel_size"] == 1.2 and groups[2]["voltage"] == 200.0 and groups[2]["name"] == "g2"
    assert micrograph_shape(got[1].path) == (70, 90) and mrc_pixel_size(got[0].path) is None
    table = read_ctf(star)
    assert table.ctf[table.key_for("m2")]["rlnDefocusAngle"] == -45.0 and table.optics["m1"]["cs"] == 2.7


def test_cryosparc_exposures_cs_ctf_in_relion_units(tmp_path):
    dt = [("micrograph_blob/path", "S80"), ("micrograph_blob/psize_A", "f4"), ("ctf/df1_A", "f4"),
          ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"), ("ctf/phase_shift_rad", "f4"),
          ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"), ("ctf/amp_contrast", "f4"), ("ctf/ctf_fit_to_A", "f4")]
    cs = np.zeros(2, dtype=dt)
    cs["micrograph_blob/path"] = [b"J3/motioncorrected/01234_mic_a_patch_aligned_doseweighted.mrc",
                                  b"J3/motioncorrected/05678_mic_b_patch_aligned_doseweighted.mrc"]
    cs["ctf/df1_A"], cs["ctf/df2_A"] = [10000, 20000], [9000, 19000]
    cs["ctf/df_angle_rad"] = [np.pi / 2, -np.pi / 4]
    cs["ctf/accel_kv"], cs["ctf/cs_mm"], cs["ctf/amp_contrast"] = 300, 2.7, 0.07
    cs["micrograph_blob/psize_A"] = 0.83
    with open(tmp_path / "exposures.cs", "wb") as fh:
        np.save(fh, cs)
    t = read_ctf(tmp_path / "exposures.cs")
    k = t.key_for("mic_b")  # cryoSPARC's uid prefix and suffix: matched by containment
    assert t.ctf[k]["rlnDefocusU"] == 20000 and t.ctf[k]["rlnDefocusAngle"] == pytest.approx(-45.0)
    assert t.optics[k]["pixel_size"] == pytest.approx(0.83) and t.optics[k]["amplitude_contrast"] == \
        pytest.approx(0.07)
    with pytest.raises(InputError, match="no CTF entry for micrograph 'mic_c'"):
        t.key_for("mic_c")
    with pytest.raises(InputError, match="several CTF entries"):
        t.key_for("mic")


@pytest.mark.parametrize("name", ["../../outside.mrc", "ABSOLUTE"])
def test_micrograph_names_outside_root_are_refused_unopened(tmp_path, name):
    outside = _mic(tmp_path / "outside.mrc")
    name = str(outside) if name == "ABSOLUTE" else name
    proj = tmp_path / "proj"
    _mic(proj / "Micrographs" / "m1.mrc")
    star = proj / "sub" / "mics.star"
    star.parent.mkdir(parents=True)
    starfile.write({"micrographs": pd.DataFrame({"rlnMicrographName": ["Micrographs/m1.mrc", name]})}, star)
    with pytest.raises(InputError, match=r"leads outside .*proj \(root=\); not opened") as exc:
        list_inputs(str(star), root=proj)
    assert exc.value.path == str(star) and repr(name) in str(exc.value)
    # a name that climbs from the STAR file's folder but stays inside root is found
    starfile.write({"micrographs": pd.DataFrame({"rlnMicrographName": ["../Micrographs/m1.mrc"]})}, star)
    got, _ = list_inputs(str(star), root=proj)
    assert [m.path for m in got] == [(proj / "Micrographs" / "m1.mrc").resolve()]
