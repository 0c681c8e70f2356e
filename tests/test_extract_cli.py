"""`cryofm extract` as a command: one-line errors, nothing left behind, resume per micrograph."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest

from cryofm.cli import main as cli_main
from cryofm.io.coords import write_picks
from tests.picking_synth import planted_micrograph


@pytest.fixture
def data(tmp_path):
    """Three 192² MRC micrographs (1.2 Å/px) with dark disks of 24 px and their picks as .box files."""
    for k in range(3):
        img, xy = planted_micrograph(size=192, diameter=24.0, n=8, seed=k)
        (tmp_path / "mics").mkdir(exist_ok=True)
        with mrcfile.new(tmp_path / "mics" / f"m{k}.mrc", overwrite=True) as m:
            m.set_data(img)
            m.voxel_size = 1.2
        write_picks(tmp_path / "picks" / f"m{k}.box", xy, diameter=24)
    return tmp_path


def _run(capsys, *args):
    rc = cli_main(["extract", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _args(d, out, *extra):
    return [f"micrographs={d / 'mics'}", f"coords={d / 'picks'}", "box=32", f"out={out}", "progress=false",
            *extra]


@pytest.mark.parametrize(("extra", "message"), [
    (["bin=3"], "box: box=32 / bin=3 must be an even whole number"),
    (["invert=maybe"], "invert: must be auto, true or false"),
    (["diameter=40"], "diameter: 40.0 px must be positive and fit in box=32"),
    (["negatives=3"], "negatives: background windows need diameter="),
    (["edge=wrap"], "edge: must be one of"),
])
def test_bad_options_one_line_exit_2_nothing_written(data, capsys, extra, message):
    rc, _, err = _run(capsys, *_args(data, data / "out", *extra))
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"cryofm extract: error: {message}")
    assert not (data / "out").exists()


@pytest.mark.parametrize("invert", ["false", "auto"])
def test_box_larger_than_the_micrographs_names_one(data, capsys, invert):
    """box=256 on 192 px micrographs: every box would leave the micrograph (was: exit 0 and an empty
    particles.star; with invert=auto the error blamed invert)."""
    args = [a for a in _args(data, data / "out", f"invert={invert}") if a != "box=32"]
    rc, _, err = _run(capsys, *args, "box=256")
    assert rc == 2 and err.count("\n") == 1 and not (data / "out").exists()
    assert err.startswith(f"cryofm extract: error: {data / 'mics' / 'm0.mrc'}: 192 x 192 px is smaller "
                          "than box=256 (and 2 more micrographs)"), err


def test_bad_files_name_the_file(data, capsys):
    (data / "picks" / "m1.box").write_text("12 x 24 24\n")
    rc, _, err = _run(capsys, *_args(data, data / "out"))
    assert rc == 2 and err.startswith(f"cryofm extract: error: {data / 'picks' / 'm1.box'}: ")
    assert err.count("\n") == 1 and not (data / "out").exists()
    rc, _, err = _run(capsys, f"micrographs={data / 'mics'}", f"coords={data / 'mics'}", "box=32",
                      f"out={data / 'out'}")
    assert rc == 2 and "no pick files here" in err
    png = data / "png"
    png.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png / "m0.png")
    out = f"out={data / 'out'}"
    rc, _, err = _run(capsys, f"micrographs={png}", f"coords={data / 'picks'}", "box=32", out)
    assert rc == 2 and err.startswith("cryofm extract: error: pixel_size: the micrographs carry no pixel")
    rc, _, err = _run(capsys, f"micrographs={png}", f"coords={data / 'mics'}", "box=32", out, "pixel_size=1")
    assert rc == 2 and "no pick files here" in err and not (data / "out").exists()


def test_a_corrupt_micrograph_mid_run_leaves_nothing_behind(data, capsys):
    raw = (data / "mics" / "m2.mrc").read_bytes()
    (data / "mics" / "m2.mrc").write_bytes(raw[: len(raw) // 2])  # header intact, data cut short
    rc, _, err = _run(capsys, *_args(data, data / "out", "invert=true"))
    assert rc == 2 and err.startswith(f"cryofm extract: error: {data / 'mics' / 'm2.mrc'}: ")
    assert not (data / "out").exists()  # m0 and m1 were extracted, then removed with the folder


def test_resume_redoes_only_what_changed(data, capsys):
    out = data / "out"
    rc, o, _ = _run(capsys, *_args(data, out, "diameter=24"))
    assert rc == 0 and "0 reused from an earlier run" in o
    first = {p.name: p.stat().st_mtime_ns for p in (out / "Particles").iterdir()}
    s1 = json.loads((out / "extract.json").read_text())
    rc, o, _ = _run(capsys, *_args(data, out, "diameter=24"))
    assert rc == 0 and "3 reused from an earlier run" in o
    assert {p.name: p.stat().st_mtime_ns for p in (out / "Particles").iterdir()} == first
    # new picks on one micrograph: that one is redone, the particles.star follows
    img, xy = planted_micrograph(size=192, diameter=24.0, n=8, seed=1)
    write_picks(data / "picks" / "m1.box", xy[:5], diameter=24)
    rc, o, _ = _run(capsys, *_args(data, out, "diameter=24"))
    s2 = json.loads((out / "extract.json").read_text())
    assert rc == 0 and s2["n_redone"] == 1 and "2 reused" in o
    assert s2["per_micrograph"]["m1"]["n_picks"] == 5 and s2["invert"] == s1["invert"]
    assert s2["n_particles"] == s1["n_particles"] - s1["per_micrograph"]["m1"]["n_extracted"] + \
        s2["per_micrograph"]["m1"]["n_extracted"]
    # other settings on the same folder: refused unless overwrite=true
    rc, _, err = _run(capsys, *_args(data, out, "diameter=20"))
    assert rc == 2 and "holds an extraction with other settings" in err
    rc, o, _ = _run(capsys, *_args(data, out, "diameter=20", "overwrite=true"))
    assert rc == 0 and "0 reused" in o
    # a killed run leaves at most .tmp files, which a rerun ignores
    (out / "Particles" / ".tmp-m0.mrcs.x").write_bytes(b"partial")
    rc, o, _ = _run(capsys, *_args(data, out, "diameter=20", "overwrite=true"))
    assert rc == 0 and "3 reused" in o


def test_ctf_from_a_cryosparc_exposures_file_reaches_each_particle(data, capsys):
    import starfile

    dt = [("micrograph_blob/path", "S64"), ("ctf/df1_A", "f4"), ("ctf/df2_A", "f4"),
          ("ctf/df_angle_rad", "f4"), ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"), ("ctf/amp_contrast", "f4")]
    cs = np.zeros(3, dtype=dt)
    cs["micrograph_blob/path"] = [f"J2/motioncorrected/0{k}_m{k}_patch_aligned_doseweighted.mrc".encode()
                                  for k in range(3)]
    cs["ctf/df1_A"] = [11000, 12000, 13000]
    cs["ctf/df2_A"] = [10500, 11500, 12500]
    cs["ctf/df_angle_rad"] = np.pi / 6
    cs["ctf/accel_kv"], cs["ctf/cs_mm"], cs["ctf/amp_contrast"] = 200, 2.7, 0.07
    with open(data / "exposures.cs", "wb") as fh:
        np.save(fh, cs)
    rc, _, err = _run(capsys, *_args(data, data / "out", f"ctf={data / 'exposures.cs'}"))
    assert rc == 0, err
    star = starfile.read(data / "out" / "particles.star")
    p, o = star["particles"], star["optics"]
    for k in range(3):
        mine = p[p["rlnMicrographName"].str.endswith(f"m{k}.mrc")]
        assert len(mine) and (mine["rlnDefocusU"] == 11000 + 1000 * k).all()
        assert np.allclose(mine["rlnDefocusAngle"], 30.0)
    assert o["rlnVoltage"].tolist() == [200.0] and o["rlnAmplitudeContrast"].tolist() == [pytest.approx(0.07)]
    assert o["rlnImagePixelSize"].tolist() == [pytest.approx(1.2)]  # the MRC header's, not the .cs's (absent)
