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


def _split_fields(cs: np.ndarray, keep) -> dict:
    return {k: cs[k] for k in cs.dtype.names if keep(k)}


def test_real_cs_split_into_particles_and_passthrough_reads_the_same(tmp_path, shared_data):
    """The real J24 refinement output split as cryoSPARC writes it: the job's own fields (blob,
    alignments3D) in J24_001_particles.cs, the passed-through CTF in J24_passthrough_particles.cs in
    another row order; joined on uid they give the table of the unsplit file."""
    src = shared_file(FORMATS, "cryosparc_P12_J24_001_particles.cs")
    cs = np.load(src)
    job = tmp_path / "P12" / "J24"
    job.mkdir(parents=True)
    (tmp_path / "P12" / "project.json").write_text("{}")
    _write_cs(job / "J24_001_particles.cs", _split_fields(cs, lambda k: not k.startswith("ctf/")))
    perm = np.random.default_rng(0).permutation(len(cs))
    passed = _split_fields(cs, lambda k: k == "uid" or k.startswith("ctf/"))
    _write_cs(job / "J24_passthrough_particles.cs", {k: v[perm] for k, v in passed.items()})
    whole = read_particles(src)
    joined = read_particles(job / "J24_001_particles.cs")
    assert joined.attrs["passthrough"] == str(job / "J24_passthrough_particles.cs")
    for col in ("DefocusU", "DefocusV", "DefocusAngle", "Voltage", "SphericalAberration", "OpticsGroup",
                "AngleRot", "AngleTilt", "AnglePsi", "ImageName", "ImagePixelSize", "_index", "_sign"):
        np.testing.assert_array_equal(joined[col].to_numpy(), whole[col].to_numpy(), err_msg=col)
    np.testing.assert_array_equal(joined["OpticsGroup"], cs["ctf/exp_group_id"])
    # blob paths are project-relative (J19/extract/...): resolved under the project dir P12
    assert joined["_stack"].iloc[0] == str(tmp_path / "P12" / cs["blob/path"][0].decode())
    # without its passthrough the particles file has no CTF
    (job / "J24_passthrough_particles.cs").unlink()
    assert "DefocusU" not in read_particles(job / "J24_001_particles.cs")


def test_passthrough_of_other_particles_is_refused(tmp_path):
    job = tmp_path / "J7"
    job.mkdir()
    _write_cs(job / "J7_particles_selected.cs", {
        "uid": np.array([11, 12, 13], dtype=np.uint64), "blob/path": np.array([b"J5/s.mrc"] * 3),
        "blob/idx": np.arange(3, dtype=np.uint32)})
    _write_cs(job / "J7_passthrough_particles_selected.cs", {
        "uid": np.array([11, 99, 13], dtype=np.uint64), "ctf/df1_A": np.ones(3, np.float32)})
    with pytest.raises(InputError) as exc:
        read_particles(job / "J7_particles_selected.cs")
    assert str(exc.value) == (f"{job / 'J7_passthrough_particles_selected.cs'}: 1 of 3 particles of "
                              "J7_particles_selected.cs (by uid) are not in this passthrough file: not its "
                              "passthrough")


def test_passthrough_names():
    from cryofm.io.cryosparc import _PARTICLES

    for stem, job, group in (("J24_001_particles", "J24", "particles"),
                             ("P12_J24_001_particles", "P12_J24", "particles"),
                             ("J30_particles_selected", "J30", "particles_selected"),
                             ("extracted_particles", None, None)):
        m = _PARTICLES.match(stem)
        assert (m["job"], m["group"]) == (job, group) if job else m is None


def test_passthrough_ingest_applies_blob_sign_per_particle(tmp_path):
    """Generated cryoSPARC job: CTF and exposure groups only in the passthrough; blob/sign -1 on some
    particles: those are stored negated (protein-bright) and flagged, the others as they are."""
    from cryofm.data import dataset
    from cryofm.data.ingest_files import IngestOptions, Job, ingest_file
    from cryofm.data.normalize import normalize
    from cryofm.io.mrc import write_stack

    proj = tmp_path / "P3"
    (proj / "J5" / "extract").mkdir(parents=True)
    (proj / "J9").mkdir()
    (proj / "project.json").write_text("{}")
    imgs = np.random.default_rng(1).normal(size=(4, 16, 16)).astype(np.float32)
    write_stack(proj / "J5" / "extract" / "m1_particles.mrc", imgs)
    uid = np.array([501, 502, 503, 504], dtype=np.uint64)
    sign = np.array([-1, -1, 1, -1], dtype=np.float32)
    _write_cs(proj / "J9" / "J9_002_particles.cs", {
        "uid": uid, "blob/path": np.array([b"J5/extract/m1_particles.mrc"] * 4),
        "blob/idx": np.arange(4, dtype=np.uint32), "blob/shape": np.full((4, 2), 16, np.uint32),
        "blob/psize_A": np.full(4, 1.5, np.float32), "blob/sign": sign})
    order = [2, 0, 3, 1]
    _write_cs(proj / "J9" / "J9_passthrough_particles.cs", {
        "uid": uid[order], "ctf/df1_A": np.array([1e4, 2e4, 3e4, 4e4], np.float32)[order],
        "ctf/exp_group_id": np.array([1, 1, 2, 2], np.uint32)[order]})
    man = ingest_file(tmp_path / "ds", Job("cs", str(proj / "J9" / "J9_002_particles.cs")), {},
                      IngestOptions(box=16, progress=False))
    assert man["n"] == 4
    assert man["settings"]["passthrough"] == str(proj / "J9" / "J9_passthrough_particles.cs")
    got = list(dataset.iter_samples(tmp_path / "ds"))
    assert [r["DefocusU"] for _, r in got] == [1e4, 2e4, 3e4, 4e4]
    assert [r["OpticsGroup"] for _, r in got] == [1, 1, 2, 2]
    assert [r["ImageInverted"] for _, r in got] == [True, True, False, True]
    for (img, _), raw, sg in zip(got, imgs, sign, strict=True):
        np.testing.assert_allclose(img, normalize(sg * raw), atol=3e-3)
    # the passthrough is an input: its content is part of the fingerprint
    assert str(proj / "J9" / "J9_passthrough_particles.cs") in man["inputs"]
