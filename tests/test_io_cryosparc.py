"""cryoSPARC .cs reader on every real .cs file, checked against numpy reads and pyem's conventions."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.errors import InputError
from cryofm.io.cryosparc import rotvec_to_relion
from cryofm.io.particles import read_particles
from tests.conftest import shared_file

FORMATS = "relion_cryosparc_formats"
CS = ["cryosparc_J2_particles_exported.cs", "cryosparc_P12_J24_001_particles.cs", "empiar_10076_7.cs"]


def _relion_matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix (degrees), written out element by element."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, cb, cg, sa, sb, sg = np.cos(a), np.cos(b), np.cos(g), np.sin(a), np.sin(b), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                     [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                     [sc, ss, cb]])


def _csparc_matrix(v):
    """cryoSPARC pose (axis-angle) as the RELION-convention matrix (pyem's expmap: Rodrigues, transposed)."""
    theta = np.linalg.norm(v)
    if theta == 0:
        return np.eye(3)
    w = v / theta
    k = np.array([[0, w[2], -w[1]], [-w[2], 0, w[0]], [w[1], -w[0], 0]])
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


@pytest.mark.parametrize("name", CS)
def test_every_real_cs_file(shared_data, name):
    path = shared_file(FORMATS, name)
    cs = np.load(path)
    df = read_particles(path)
    assert len(df) == len(cs)
    np.testing.assert_allclose(df["ImagePixelSize"], cs["blob/psize_A"], rtol=1e-6)
    np.testing.assert_allclose(df["DefocusU"], cs["ctf/df1_A"], rtol=1e-6)
    np.testing.assert_allclose(df["DefocusV"], cs["ctf/df2_A"], rtol=1e-6)
    np.testing.assert_allclose(df["DefocusAngle"], cs["ctf/df_angle_rad"] * 180 / np.pi, rtol=1e-6)
    np.testing.assert_allclose(df["Voltage"], cs["ctf/accel_kv"])
    np.testing.assert_allclose(df["SphericalAberration"], cs["ctf/cs_mm"], rtol=1e-6)
    assert (df["ImageSize"] == cs["blob/shape"][:, 0]).all()
    assert (df["_index"] == cs["blob/idx"]).all()
    names = cs.dtype.names
    if "alignments3D/pose" in names:
        for i in range(0, len(cs), max(1, len(cs) // 25)):
            got = _relion_matrix(df["AngleRot"][i], df["AngleTilt"][i], df["AnglePsi"][i])
            np.testing.assert_allclose(got, _csparc_matrix(cs["alignments3D/pose"][i].astype(float)),
                                       atol=1e-9)
        assert ((df["AngleTilt"] >= 0) & (df["AngleTilt"] <= 180)).all()
        want = cs["alignments3D/shift"] * cs["alignments3D/psize_A"][:, None]
        np.testing.assert_allclose(df[["OriginXAngst", "OriginYAngst"]], want, rtol=1e-6)
        np.testing.assert_allclose(df["AlignmentError3D"], cs["alignments3D/error"], rtol=1e-6)
    if "alignments2D/class" in names:
        assert (df["ClassNumber"] == cs["alignments2D/class"] + 1).all()  # 1-based like RELION
        np.testing.assert_allclose(df["ClassESS"], cs["alignments2D/class_ess"])
        for k in np.unique(cs["alignments2D/class"]):  # ECA: mean class ESS over the class's particles
            mine = cs["alignments2D/class"] == k
            np.testing.assert_allclose(df["ClassECA"][mine], cs["alignments2D/class_ess"][mine].mean(),
                                       rtol=1e-6)
        psi = np.rad2deg(cs["alignments2D/pose"].astype(float))
        np.testing.assert_allclose(np.cos(np.deg2rad(df["AnglePsi"] - psi)), 1.0, atol=1e-9)
        want = cs["alignments2D/shift"] * cs["alignments2D/psize_A"][:, None]
        np.testing.assert_allclose(df[["OriginXAngst", "OriginYAngst"]], want, rtol=1e-6)


def test_cs_and_star_of_the_same_particles_agree(shared_data):
    a = read_particles(shared_file(FORMATS, "empiar_10076_7.cs"))
    b = read_particles(shared_file(FORMATS, "empiar_10076_7.star"))
    np.testing.assert_allclose(a["DefocusU"], b["DefocusU"], rtol=1e-6)
    np.testing.assert_allclose(a["DefocusAngle"], b["DefocusAngle"], atol=1e-4)
    np.testing.assert_allclose(a["ImagePixelSize"], b["ImagePixelSize"], rtol=1e-5)
    assert a["_stack"].tolist() == b["_stack"].tolist() and a["_index"].tolist() == b["_index"].tolist()


def test_known_rotations():
    # identity; 90° about z is rot+psi = 90 with tilt 0; 180° about y is tilt 180
    e = rotvec_to_relion(np.array([[0, 0, 0], [0, 0, np.pi / 2], [0, np.pi, 0]], dtype=float))
    assert e[0, 1] == pytest.approx(0) and (e[0, 0] + e[0, 2]) % 360 == pytest.approx(0)
    assert e[1, 1] == pytest.approx(0) and (e[1, 0] + e[1, 2]) % 360 == pytest.approx(90)
    assert e[2, 1] == pytest.approx(180)


def _write_cs(path, fields):
    dtype = [(k, v.dtype, v.shape[1:]) for k, v in fields.items()]
    n = len(next(iter(fields.values())))
    arr = np.zeros(n, dtype=dtype)
    for k, v in fields.items():
        arr[k] = v
    with open(path, "wb") as fh:
        np.save(fh, arr)


def test_location_fractions_to_pixels(tmp_path):
    p = tmp_path / "picked.cs"
    _write_cs(p, {
        "blob/path": np.array([b">J3/extract/m1.mrc", b">J3/extract/m1.mrc"]),
        "blob/idx": np.array([0, 1], dtype=np.uint32),
        "blob/psize_A": np.array([1.1, 1.1], dtype=np.float32),
        "location/micrograph_path": np.array([b"J2/m1.mrc", b"J2/m1.mrc"]),
        "location/micrograph_shape": np.array([[4096, 5760], [4096, 5760]], dtype=np.uint32),
        "location/center_x_frac": np.array([0.25, 0.5], dtype=np.float32),
        "location/center_y_frac": np.array([0.5, 0.125], dtype=np.float32),
    })
    df = read_particles(p)
    assert df["CoordinateX"].tolist() == [0.25 * 5760, 0.5 * 5760]  # x: columns = shape[1]
    assert df["CoordinateY"].tolist() == [0.5 * 4096, 0.125 * 4096]  # y: rows = shape[0]
    assert df["MicrographShapeX"].tolist() == [5760, 5760] and df["MicrographName"].iloc[0] == "J2/m1.mrc"
    assert df["ImageName"].tolist() == ["1@J3/extract/m1.mrc", "2@J3/extract/m1.mrc"]  # '>' dropped


def test_cs_without_image_paths(tmp_path):
    p = tmp_path / "passthrough.cs"
    _write_cs(p, {"uid": np.array([1, 2], dtype=np.uint64), "ctf/df1_A": np.array([1e4, 2e4], np.float32)})
    with pytest.raises(InputError) as exc:
        read_particles(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: .cs file has no image paths (blob/path, blob/idx)") and "\n" not in msg


def test_not_a_cs_file(tmp_path):
    p = tmp_path / "junk.cs"
    p.write_bytes(b"not numpy at all")
    with pytest.raises(InputError, match="not a cryoSPARC .cs file"):
        read_particles(p)


def test_class_eca_by_hand():
    import pandas as pd

    from cryofm.io.particles import class_eca

    classes = pd.Series([1, 1, 2, 2, 2, None, 3], dtype="Int64")
    ess = pd.Series([1.0, 2.0, 1.0, 1.5, np.nan, 1.2, 3.0])
    got = class_eca(classes, ess)
    # class 1: (1 + 2) / 2; class 2: (1 + 1.5) / 2 (the missing ESS is left out and stays missing);
    # no class: missing
    np.testing.assert_allclose(got.to_numpy(), [1.5, 1.5, 1.25, 1.25, np.nan, np.nan, 3.0])
