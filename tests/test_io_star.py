"""RELION STAR readers on every real STAR file in ../shared/data, checked against starfile directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile

from cryofm.errors import InputError
from cryofm.io.particles import parse_image_name, read_particles
from cryofm.io.star import read_star_blocks
from tests.conftest import shared_file

FORMATS = "relion_cryosparc_formats"
STARS = [
    (FORMATS, "FinalRefinement-OriginalParticles-PfCRT.star"),
    (FORMATS, "empiar_10076_7.star"),
    (FORMATS, "relion31.6opticsgroups.star"),
    (FORMATS, "relion31.star"),
    (FORMATS, "relion31.v2.star"),
    (FORMATS, "relion5.star"),
    (FORMATS, "sta_testing.star"),
    (FORMATS, "sta_testing_bin8.star"),
    ("trpv1_particles", "trpv1_small_stack.star"),
]


def _independent(path: Path):
    """(particles, optics or None) read with starfile, no cryofm code."""
    blocks = starfile.read(path, always_dict=True)
    optics = blocks.get("optics")
    parts = blocks["particles"] if "particles" in blocks else next(
        b for k, b in blocks.items() if "rlnImageName" in b.columns)
    return parts.reset_index(drop=True), optics


def _expected_pixel_size(parts, optics) -> np.ndarray:
    if optics is not None and "rlnImagePixelSize" in optics:
        by_group = dict(zip(optics["rlnOpticsGroup"], optics["rlnImagePixelSize"], strict=True))
        return np.array([by_group[g] for g in parts["rlnOpticsGroup"]], dtype=float)
    return parts["rlnDetectorPixelSize"].to_numpy(float) * 1e4 / parts["rlnMagnification"].to_numpy(float)


@pytest.mark.parametrize(("folder", "name"), STARS)
def test_every_real_star_file(shared_data, folder, name):
    path = shared_file(folder, name)
    parts, optics = _independent(path)
    # sta_testing.star names ../tilts/...: outside its folder, so only read with root= above it
    df = read_particles(path, root=path.parents[1] if name == "sta_testing.star" else None)
    assert len(df) == len(parts)
    np.testing.assert_allclose(df["ImagePixelSize"], _expected_pixel_size(parts, optics), rtol=1e-9)
    for col in ("DefocusU", "DefocusV", "DefocusAngle", "AngleRot", "AngleTilt", "AnglePsi",
                "CoordinateX", "CoordinateY"):
        if f"rln{col}" in parts:
            np.testing.assert_allclose(df[col], parts[f"rln{col}"].to_numpy(float), err_msg=col)
        else:
            assert col not in df or df[col].isna().all(), col
    for axis in ("X", "Y"):
        if f"rlnOrigin{axis}Angst" in parts:
            np.testing.assert_allclose(df[f"Origin{axis}Angst"], parts[f"rlnOrigin{axis}Angst"])
        elif f"rlnOrigin{axis}" in parts:  # RELION 3.0: pixels -> Å
            want = parts[f"rlnOrigin{axis}"].to_numpy(float) * _expected_pixel_size(parts, optics)
            np.testing.assert_allclose(df[f"Origin{axis}Angst"], want)
    # rlnImageName: 1-based index @ stack, resolved next to the STAR file
    first = str(parts["rlnImageName"].iloc[0])
    k, stack = first.split("@")
    assert df["_index"].iloc[0] == int(k) - 1
    assert Path(df["_stack"].iloc[0]).name == Path(stack).name
    assert (df["ImageName"] == parts["rlnImageName"].astype(str)).all()


def test_relion31_optics_groups_merged_per_particle(shared_data):
    path = shared_file(FORMATS, "relion31.6opticsgroups.star")
    df = read_particles(path)
    parts, optics = _independent(path)
    opt = optics.set_index("rlnOpticsGroup")
    for i in range(0, len(df), 17):
        g = parts["rlnOpticsGroup"].iloc[i]
        assert df["Voltage"].iloc[i] == opt.loc[g, "rlnVoltage"]
        assert df["SphericalAberration"].iloc[i] == opt.loc[g, "rlnSphericalAberration"]
        assert df["AmplitudeContrast"].iloc[i] == opt.loc[g, "rlnAmplitudeContrast"]
        assert df["ImageSize"].iloc[i] == opt.loc[g, "rlnImageSize"] == 196
    assert set(df["ImagePixelSize"]) <= {1.25, 1.24, 1.035}
    assert len(set(parts["rlnOpticsGroup"])) > 1


def test_relion30_pixel_size_from_detector_and_magnification(shared_data):
    df = read_particles(shared_file(FORMATS, "empiar_10076_7.star"))
    # 5 µm detector pixel at 38168x: 1.31 Å/px, as the data README says
    assert df["ImagePixelSize"].iloc[0] == pytest.approx(1.31, abs=1e-3)
    assert df["Voltage"].tolist() == [300.0] * 7 and df["AmplitudeContrast"].iloc[0] == 0.07


def test_stack_override_maps_by_index(shared_data):
    star = shared_file("trpv1_particles", "trpv1_small_stack.star")
    stack = shared_file("trpv1_particles", "trpv1_small_stack.mrcs")
    df = read_particles(star, stack=stack)
    assert set(df["_stack"]) == {str(stack.resolve())}
    assert df["_index"].tolist() == list(range(10))


def test_root_resolves_stacks(tmp_path, shared_data):
    star_text = shared_file(FORMATS, "relion31.star").read_text()
    star = tmp_path / "moved.star"
    star.write_text(star_text)
    df = read_particles(star, root=shared_file(FORMATS))
    assert Path(df["_stack"].iloc[0]) == shared_file(FORMATS, "relion31.mrcs").resolve()


def test_image_name_parsing():
    assert parse_image_name("000012@Extract/job1/a.mrcs", "x") == (11, "Extract/job1/a.mrcs")
    assert parse_image_name("single.mrc", "x") == (0, "single.mrc")
    with pytest.raises(InputError, match="1-based"):
        parse_image_name("0@a.mrcs", "x")


def test_star_without_image_name(tmp_path):
    p = tmp_path / "bad.star"
    p.write_text("data_particles\n\nloop_\n_rlnDefocusU #1\n_rlnDefocusV #2\n10000 11000\n")
    with pytest.raises(InputError) as exc:
        read_particles(p)
    assert str(exc.value) == f"{p}: STAR particle block lacks required column(s) rlnImageName"


def test_star_optics_group_absent(tmp_path):
    p = tmp_path / "bad.star"
    p.write_text("data_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n1 1.5\n\n"
                 "data_particles\n\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n1@a.mrcs 2\n")
    with pytest.raises(InputError, match=r"optics group\(s\) \[2\] absent from data_optics"):
        read_particles(p)


def test_star_without_particle_block(tmp_path):
    p = tmp_path / "mics.star"
    p.write_text("data_micrographs\n\nloop_\n_rlnMicrographName #1\na.mrc\n")
    with pytest.raises(InputError) as exc:
        read_particles(p)
    assert str(exc.value) == f"{p}: no particle block with rlnImageName (blocks: data_micrographs)"


def test_zero_means_missing_where_zero_is_impossible(shared_data):
    path = shared_file(FORMATS, "FinalRefinement-OriginalParticles-PfCRT.star")
    parts, _ = _independent(path)
    assert (parts["rlnCtfMaxResolution"] == 0).all()  # RELION wrote 0.0: "not estimated"
    df = read_particles(path)
    assert df["CtfMaxResolution"].isna().all()
    assert (df["PhaseShift"] == 0).all()  # a real zero stays zero


def test_stack_path_leaving_the_folder_is_refused_unopened(shared_data):
    path = shared_file(FORMATS, "sta_testing.star")
    with pytest.raises(InputError) as exc:
        read_particles(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: row 1 (000001@../tilts/particleseries/")
    assert f"leads outside {path.parent} (the metadata file's folder)" in msg and "root=" in msg
    df = read_particles(path, root=path.parents[1])
    assert Path(df["_stack"].iloc[0]) == path.parents[1] / "tilts" / "particleseries" / \
        "ay19102021_L3_position6_ribo_it09_bin1_1.82A.mrcs"


def test_star_cut_mid_row_names_the_last_row(tmp_path):
    """A file cut in its last row (a half-written or truncated copy): the parser fills the row with
    NaN; the error says so instead of a missing optics group [nan]."""
    rows = "".join(f"{i:06d}@stack.mrcs 1 {10.0 * i} {20.0 * i}\n" for i in range(1, 4))
    head = ("data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n1 1.5\n\n"
            "data_particles\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n_rlnCoordinateX #3\n"
            "_rlnCoordinateY #4\n")
    whole = tmp_path / "whole.star"
    whole.write_text(head + rows)
    assert len(read_star_blocks(whole)["particles"]) == 3
    cut = tmp_path / "cut.star"
    cut.write_text(head + rows + "000004@stack.mrcs 1\n")
    with pytest.raises(InputError, match=r"data_particles: the last row \(row 4\) stops before "
                                         r"rlnCoordinateX \(2 of 4 values missing\): truncated"):
        read_star_blocks(cut)
