"""`cryofm ingest | merge | split | inspect` end to end, and every bad-input case of issue 2.

Each bad input must give exit status 2, one stderr line naming the file and the problem, and leave no
shard (and no manifest) behind.
"""

from __future__ import annotations

import json
import shutil

import mrcfile
import numpy as np
import pytest
from PIL import Image

from cryofm.cli import main
from tests.conftest import shared_file

FORMATS = "relion_cryosparc_formats"


def _run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_clean_error(rc, err, out_dir, path, problem):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cryofm ingest: error: {path}: {problem}"), lines[0]
    assert list(out_dir.rglob("*.tar")) == [] and not (out_dir / "manifest.json").exists()


def test_ingest_split_inspect_merge(tmp_path, capsys, shared_data):
    out = tmp_path / "ds"
    facts = tmp_path / "facts.csv"
    facts.write_text("experiment,ProteinClass,SequenceCluster\nr31,ribosome,c1\ntrpv1,channel,c2\n"
                     "e10076,ribosome,c1\n")
    rc, o, _ = _run(capsys, "ingest", f"input=[{shared_file(FORMATS, 'relion31.star')},"
                    f"{shared_file(FORMATS, 'empiar_10076_7.cs')}]", "experiment=[r31,e10076]", f"out={out}",
                    "box=32", f"facts={facts}", "progress=false")
    assert rc == 0 and "r31: 5 particles" in o and "e10076: 7 particles" in o
    rc, o, _ = _run(capsys, "ingest", f"input={shared_file('trpv1_particles', 'trpv1_small_stack.star')}",
                    f"stack={shared_file('trpv1_particles', 'trpv1_small_stack.mrcs')}", "experiment=trpv1",
                    f"out={out}", "box=32", f"facts={facts}", "progress=false")
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    assert {e: v["n"] for e, v in man["experiments"].items()} == {"e10076": 7, "r31": 5, "trpv1": 10}
    assert man["config"]["ingest"]["experiment"] == "trpv1" and man["config"]["ingest"]["box"] == 32
    assert man["experiments"]["r31"]["settings"]["box"] == 32
    # re-running a finished ingest writes nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    rc, _, _ = _run(capsys, "ingest", f"input={shared_file('trpv1_particles', 'trpv1_small_stack.star')}",
                    f"stack={shared_file('trpv1_particles', 'trpv1_small_stack.mrcs')}", "experiment=trpv1",
                    f"out={out}", "box=32", f"facts={facts}", "progress=false")
    assert rc == 0 and {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    rc, o, _ = _run(capsys, "split", f"dataset={out}", "group_key=SequenceCluster", "fractions=[0.5,0.5,0]")
    split = json.loads((out / "split.json").read_text())["assignment"]
    assert rc == 0 and split["r31"] == split["e10076"] != split["trpv1"]
    assert "heldout" in o and "particles" in o

    png = tmp_path / "m.png"
    rc, o, _ = _run(capsys, "inspect", f"dataset={out}", f"montage={png}", "per_experiment=4", "verify=true")
    assert rc == 0
    assert "22 particles, 3 experiments" in o
    row = next(line for line in o.splitlines() if line.startswith("r31 "))
    assert row.split()[1:3] == [split["r31"], "5"]
    cov = next(line for line in o.splitlines() if line.startswith("AngleRot "))
    assert cov.split()[2] == "15"  # r31 (5) + trpv1 (10) have poses, e10076 (7) has none
    assert "checksums: all shards match" in o
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200

    rc, o, _ = _run(capsys, "merge", f"dataset={out}", "verify=true")
    assert rc == 0 and "22 particles" in o and "all shards match" in o


def test_cfg_and_missing_args(capsys):
    rc, o, _ = _run(capsys, "ingest", "out=/x", "input=a.star", "experiment=E1", "--cfg")
    assert rc == 0 and "experiment: E1" in o and "box: 224" in o
    rc, _, err = _run(capsys, "ingest", "out=/x")
    assert rc == 2
    assert err.strip() == "cryofm ingest: error: input: required (input=<file.star|file.cs>, or table=<csv>)"


def _copy(tmp_path, *names):
    for n in names:
        shutil.copy(shared_file(FORMATS, n), tmp_path / n)
    return [tmp_path / n for n in names]


def test_truncated_mrc(tmp_path, capsys, shared_data):
    star, stack = _copy(tmp_path, "relion31.star", "relion31.mrcs")
    data = stack.read_bytes()
    stack.write_bytes(data[: len(data) // 2])
    rc, _, err = _run(capsys, "ingest", f"input={star}", "experiment=e", f"out={tmp_path / 'ds'}")
    _assert_clean_error(rc, err, tmp_path / "ds", stack, "truncated or corrupt MRC")


def test_index_past_end(tmp_path, capsys, shared_data):
    star = shared_file("trpv1_particles", "trpv1_small_stack.star")  # 10 rows
    stack = shared_file(FORMATS, "relion31.mrcs")  # 5 images
    rc, _, err = _run(capsys, "ingest", f"input={star}", f"stack={stack}", "experiment=e", f"out={tmp_path}")
    _assert_clean_error(rc, err, tmp_path, star,
                        "row 10 (10@relion31.mrcs): image index 10 (1-based; cryoSPARC blob/idx 9) is past "
                        f"the end of {stack.resolve()} (5 images)")


def test_mismatched_image_size(tmp_path, capsys, shared_data):
    star = shared_file(FORMATS, "relion31.star")  # optics: 256 px
    stack = shared_file("trpv1_particles", "trpv1_small_stack.mrcs")  # 48 px
    rc, _, err = _run(capsys, "ingest", f"input={star}", f"stack={stack}", "experiment=e", f"out={tmp_path}")
    _assert_clean_error(rc, err, tmp_path, star, "1@trpv1_small_stack.mrcs: metadata ImageSize 256 but the "
                                                 "stack holds 48x48 images")


def test_star_without_required_column(tmp_path, capsys):
    star = tmp_path / "p.star"
    star.write_text("data_particles\n\nloop_\n_rlnDefocusU #1\n_rlnMicrographName #2\n1e4 m.mrc\n")
    rc, _, err = _run(capsys, "ingest", f"input={star}", "experiment=e", f"out={tmp_path}")
    _assert_clean_error(rc, err, tmp_path, star, "STAR particle block lacks required column(s) rlnImageName")


def test_cs_without_images(tmp_path, capsys):
    cs = tmp_path / "x.cs"
    arr = np.zeros(3, dtype=[("uid", "<u8"), ("ctf/df1_A", "<f4")])
    with open(cs, "wb") as fh:
        np.save(fh, arr)
    rc, _, err = _run(capsys, "ingest", f"input={cs}", "experiment=e", f"out={tmp_path}")
    _assert_clean_error(rc, err, tmp_path, cs, ".cs file has no image paths")


def test_cs_with_absent_stacks(tmp_path, capsys, shared_data):
    cs = shared_file(FORMATS, "cryosparc_P12_J24_001_particles.cs")  # metadata only, no stacks shipped
    rows = np.load(cs)
    first = rows["blob/path"][0].decode().lstrip(">")
    rc, _, err = _run(capsys, "ingest", f"input={cs}", "experiment=e", f"out={tmp_path}")
    # the metadata file and the row's image are named, and the folders searched (no project dir here)
    name = f"{rows['blob/idx'][0] + 1}@{first}"
    _assert_clean_error(rc, err, tmp_path, cs, f"{name}: particle stack not found (searched: {cs.parent})")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_pixels(tmp_path, capsys, monkeypatch, bad):
    from cryofm.data import ingest
    monkeypatch.setattr(ingest, "BATCH", 2)  # shards of particles 1-4 are written before the bad one
    stack = tmp_path / "s.mrcs"
    imgs = np.random.default_rng(0).normal(size=(6, 32, 32)).astype(np.float32)
    imgs[4, 10, 10] = bad
    with mrcfile.new(stack) as m:
        m.set_data(imgs)
    star = tmp_path / "p.star"
    star.write_text("data_particles\n\nloop_\n_rlnImageName #1\n_rlnImagePixelSize #2\n"
                    + "".join(f"{i}@s.mrcs 1.5\n" for i in range(1, 7)))
    out = tmp_path / "ds"
    rc, _, err = _run(capsys, "ingest", f"input={star}", "experiment=e", f"out={out}", "shard_size=1",
                      "progress=false")
    _assert_clean_error(rc, err, out, stack, "particle 5@s.mrcs: NaN or Inf pixels")
    assert not (out / "experiments" / "e.json").exists() and not list(out.rglob(".*progress*"))


def test_unknown_experiment_id(tmp_path, capsys, shared_data):
    facts = tmp_path / "facts.csv"
    facts.write_text("experiment,ProteinClass\nother,channel\n")
    rc, _, err = _run(capsys, "ingest", f"input={shared_file(FORMATS, 'relion31.star')}", "experiment=r31",
                      f"out={tmp_path / 'ds'}", f"facts={facts}")
    _assert_clean_error(rc, err, tmp_path / "ds", facts, "unknown experiment id 'r31'")


def test_bad_second_experiment_writes_nothing(tmp_path, capsys, shared_data):
    star = tmp_path / "p.star"
    star.write_text("data_particles\n\nloop_\n_rlnImageName #1\n1@missing.mrcs\n")
    rc, _, err = _run(capsys, "ingest", f"input=[{shared_file(FORMATS, 'relion31.star')},{star}]",
                      "experiment=[a,b]", f"out={tmp_path / 'ds'}")
    _assert_clean_error(rc, err, tmp_path / "ds", star,
                        f"1@missing.mrcs: particle stack not found (searched: {tmp_path})")


def _nan_experiment(tmp_path):
    stack = tmp_path / "bad.mrcs"
    imgs = np.random.default_rng(1).normal(size=(3, 32, 32)).astype(np.float32)
    imgs[2, 0, 0] = np.nan
    with mrcfile.new(stack) as m:
        m.set_data(imgs)
    star = tmp_path / "bad.star"
    rows = "".join(f"{i}@bad.mrcs\n" for i in (1, 2, 3))
    star.write_text("data_particles\n\nloop_\n_rlnImageName #1\n" + rows)
    return star, stack


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_worker_error_reaches_the_user(tmp_path, capsys, shared_data):
    star, stack = _nan_experiment(tmp_path)
    table = tmp_path / "exps.csv"
    table.write_text(f"experiment,input\ngood,{shared_file(FORMATS, 'relion31.star')}\nbad,{star}\n")
    out = tmp_path / "ds"
    rc, _, err = _run(capsys, "ingest", f"table={table}", f"out={out}", "workers=2", "box=32",
                      "progress=false")
    assert rc == 2 and err.strip() == f"cryofm ingest: error: {stack}: particle 3@bad.mrcs: NaN or Inf pixels"
    assert not (out / "shards" / "bad").exists() and not (out / "manifest.json").exists()


def test_slurm_style_tasks_then_merge_and_verify(tmp_path, capsys, shared_data):
    out = tmp_path / "ds"
    for exp, name in (("a", "relion31.star"), ("b", "empiar_10076_7.star")):
        rc, _, _ = _run(capsys, "ingest", f"input={shared_file(FORMATS, name)}", f"experiment={exp}",
                        f"out={out}", "merge=false", "box=32", "progress=false")
        assert rc == 0
    assert not (out / "manifest.json").exists() and len(list((out / "experiments").glob("*.json"))) == 2
    rc, o, _ = _run(capsys, "merge", f"dataset={out}", "verify=true")
    assert rc == 0 and "12 particles, 2 experiments" in o
    shard = next((out / "shards" / "b").glob("*.tar"))
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF  # one flipped byte inside an image
    shard.write_bytes(bytes(data))
    rc, _, err = _run(capsys, "merge", f"dataset={out}", "verify=true")
    assert rc == 2 and err.strip().startswith(f"cryofm merge: error: {shard}: checksum mismatch")



def test_closed_stdout_pipe_is_not_an_error(monkeypatch, capsys):
    """`cryofm inspect ... | head`: when the reader leaves, the command stops with status 0, no traceback."""
    import os

    import cryofm.cli as cli

    def leaves(cfg):
        print("first line")
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_resolve", lambda target: leaves)
    saved = os.dup(1)  # main() points fd 1 at /dev/null after a broken pipe: restore it
    try:
        assert cli.main(["inspect", "dataset=/nowhere"]) == 0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert "Traceback" not in capsys.readouterr().err
