"""Ingest notices what its inputs are: changed files, 3-D particles, blank images, bad pixel sizes,
repeated rows."""

from __future__ import annotations

import logging
import os

import mrcfile
import numpy as np
import pytest

from cryofm.data import dataset, ingest
from cryofm.data.ingest_files import IngestOptions, Job, ingest_file
from cryofm.data.normalize import normalize
from cryofm.errors import InputError
from cryofm.io.mrc import write_stack
from tests.conftest import shared_file

BOX = 16
OPTS = IngestOptions(box=BOX, shard_size=2, progress=False)


def _star(path, names, psize="2.0", dim=None):
    """A RELION 3.1 particle STAR: one optics group (pixel size ``psize``, optional
    rlnImageDimensionality ``dim``) and one row per image name."""
    optics = "_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n" + ("_rlnImageDimensionality #3\n" if dim else "")
    path.write_text(f"data_optics\n\nloop_\n{optics}1 {psize} {dim or ''}\n\n"
                    "data_particles\n\nloop_\n_rlnImageName #1\n_rlnOpticsGroup #2\n"
                    + "".join(f"{n} 1\n" for n in names))
    return path


def _setup(tmp_path, n=6, seed=0):
    imgs = np.random.default_rng(seed).normal(size=(n, BOX, BOX)).astype(np.float32)
    write_stack(tmp_path / "s.mrcs", imgs)
    star = _star(tmp_path / "p.star", [f"{i}@s.mrcs" for i in range(1, n + 1)])
    return imgs, star


def _crash_after(monkeypatch, shard_index):
    real = ingest.make_writer

    def crashing(*a, **k):
        w = real(*a, **k)

        def boom(index):
            if index == shard_index:
                raise KeyboardInterrupt
        w.on_shard = boom
        return w

    monkeypatch.setattr(ingest, "make_writer", crashing)
    return real


def test_constant_images_are_dropped_counted_and_resume_exactly(tmp_path, monkeypatch):
    imgs = np.random.default_rng(0).normal(size=(9, BOX, BOX)).astype(np.float32)
    imgs[1] = 0.0  # an empty slot
    imgs[4] = 7.5  # a constant fill
    write_stack(tmp_path / "s.mrcs", imgs)
    star = _star(tmp_path / "p.star", [f"{i}@s.mrcs" for i in range(1, 10)])
    clean = ingest_file(tmp_path / "clean", Job("e", str(star)), {}, OPTS)
    assert clean["n"] == 7 and clean["n_read"] == 9 and clean["n_constant"] == 2
    assert clean["constant"] == ["2@s.mrcs", "5@s.mrcs"]
    got = list(dataset.iter_samples(tmp_path / "clean"))
    keep = [0, 2, 3, 5, 6, 7, 8]
    assert [r["ImageName"] for _, r in got] == [f"{i + 1}@s.mrcs" for i in keep]
    assert [r["uid"] for _, r in got] == [f"e/p/{i}" for i in keep]  # uid: the STAR row
    for (img, _), i in zip(got, keep, strict=True):
        np.testing.assert_allclose(img, normalize(imgs[i]), atol=3e-3)
    assert dataset.load_manifest(tmp_path / "clean")["experiments"]["e"]["n_constant"] == 2
    # killed after 2 shards (4 particles written, 5 rows read), resumed: byte-identical shards
    monkeypatch.setattr(ingest, "BATCH", 2)
    real = _crash_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        ingest_file(tmp_path / "r", Job("e", str(star)), {}, OPTS)
    monkeypatch.setattr(ingest, "make_writer", real)
    resumed = ingest_file(tmp_path / "r", Job("e", str(star)), {}, OPTS)
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in clean["shards"]]
    assert resumed["n_constant"] == 2 and resumed["constant"] == clean["constant"]
    assert resumed["pixel_stats"] == clean["pixel_stats"]


def test_all_constant_is_an_error(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.zeros((3, BOX, BOX), np.float32))
    star = _star(tmp_path / "p.star", ["1@s.mrcs", "2@s.mrcs", "3@s.mrcs"])
    with pytest.raises(InputError, match="no particles: all 3 images are constant"):
        ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    assert not list((tmp_path / "ds").rglob("*.tar"))


def test_stack_rewritten_between_kill_and_resume_starts_over(tmp_path, monkeypatch, caplog):
    imgs, star = _setup(tmp_path)
    real = _crash_after(monkeypatch, 0)
    with pytest.raises(KeyboardInterrupt):
        ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    monkeypatch.setattr(ingest, "make_writer", real)
    new = imgs[::-1].copy()  # same size, same header: only the pixels (and mtime) differ
    write_stack(tmp_path / "s.mrcs", new)
    with caplog.at_level(logging.WARNING, logger="cryofm.data.ingest"):
        man = ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    assert f"{tmp_path / 's.mrcs'}: input changed since the interrupted ingest of 'e': starting over" \
        in caplog.text
    got = np.stack([img for img, _ in dataset.iter_samples(tmp_path / "ds")])
    np.testing.assert_allclose(got, normalize(new), atol=3e-3)  # all new particles, none old
    fresh = ingest_file(tmp_path / "fresh", Job("e", str(star)), {}, OPTS)
    assert [s["sha256"] for s in man["shards"]] == [s["sha256"] for s in fresh["shards"]]


def test_same_size_rewrite_is_seen_even_with_the_old_mtime(tmp_path, monkeypatch):
    """The sampled blocks catch a rewrite that keeps size and mtime (e.g. a copy with -p)."""
    imgs, star = _setup(tmp_path, n=300)  # 300 KiB: sampled, not hashed whole
    st = (tmp_path / "s.mrcs").stat()
    ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    with mrcfile.open(tmp_path / "s.mrcs", "r+") as m:
        m.data[:] = m.data[::-1]
    os.utime(tmp_path / "s.mrcs", ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(InputError) as exc:
        ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    assert str(exc.value).startswith(f"{tmp_path / 's.mrcs'}: changed since experiment 'e' was ingested")


def test_edited_star_after_a_finished_ingest_is_not_served_stale(tmp_path):
    imgs, star = _setup(tmp_path)
    first = ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    again = ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)  # unchanged: nothing redone
    assert again == first
    star.write_text(star.read_text().replace("2@s.mrcs", "6@s.mrcs"))  # same row count, other image
    with pytest.raises(InputError) as exc:
        ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    assert str(exc.value) == (f"{star}: changed since experiment 'e' was ingested (1 input file(s) differ): "
                              "its shards would be stale (pass overwrite=true to redo it)")
    redo = ingest_file(tmp_path / "ds", Job("e", str(star)), {},
                       IngestOptions(box=BOX, shard_size=2, progress=False, overwrite=True))
    assert [r["ImageName"] for _, r in dataset.iter_samples(tmp_path / "ds")][1] == "6@s.mrcs"
    assert redo["fingerprint"] != first["fingerprint"]


def test_3d_particles_refused(tmp_path):
    _, star = _setup(tmp_path)
    star3 = _star(tmp_path / "sub.star", ["1@s.mrcs"], dim="3")
    with pytest.raises(InputError) as exc:
        ingest_file(tmp_path / "ds", Job("e", str(star3)), {}, OPTS)
    assert str(exc.value) == (f"{star3}: rlnImageDimensionality: row 1 (1@s.mrcs): 3-D particles "
                              "(sub-tomograms) are not supported: cryofm ingests 2-D particle images")
    # a sub-tomogram named without an index: one file, a 16^3 volume (it was read as its slice 0)
    write_stack(tmp_path / "subtomo_1.mrc", np.random.default_rng(0).normal(size=(BOX, BOX, BOX)))
    bare = _star(tmp_path / "bare.star", ["subtomo_1.mrc"])
    with pytest.raises(InputError, match=r"subtomo_1.mrc names one image, but the file holds 16 sections"):
        ingest_file(tmp_path / "ds", Job("e", str(bare)), {}, OPTS)
    # a stack of volumes by its header (MRC space group 401)
    with mrcfile.open(tmp_path / "s.mrcs", "r+") as m:
        m.header.ispg = 401
    with pytest.raises(InputError, match="a stack of 3-D volumes"):
        ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    assert not (tmp_path / "ds").exists() or not list((tmp_path / "ds").rglob("*.tar"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # RELION stacks lack the MAP id; mrcfile warns
def test_real_subtilt_stack_is_2d_and_ingested(tmp_path, shared_data):
    """The cryo-ET sub-tilt series (220 64x64 sections, space group 0): tilted 2-D projections, named
    index@stack: ingested image by image (only true 3-D volumes are refused)."""
    star = shared_file("relion_cryosparc_formats", "sta_testing_bin8.star")
    stack = shared_file("relion_cryosparc_formats", "ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs")
    with mrcfile.open(stack, permissive=True, header_only=True) as m:
        assert (int(m.header.nz), int(m.header.ny), int(m.header.ispg)) == (220, 64, 0)
    man = ingest_file(tmp_path, Job("sta", str(star)), {}, IngestOptions(box=64, shard_size=256,
                                                                          progress=False))
    assert man["n"] == 219
    with mrcfile.open(stack, permissive=True) as m:
        raw = np.asarray(m.data, dtype=np.float32)
    got = list(dataset.iter_samples(tmp_path))
    for img, rec in got[::40]:
        k = int(rec["ImageName"].split("@")[0]) - 1
        np.testing.assert_allclose(img, normalize(raw[k]), atol=3e-3)
        assert rec["ImagePixelSize"] == pytest.approx(1.96e4 / 1e4)  # 1.96 µm detector pixel at 10000x


@pytest.mark.parametrize("psize", ["-1.5", "0", "nan", "abc"])
def test_bad_pixel_size_is_an_error_not_the_header_value(tmp_path, psize):
    _setup(tmp_path)
    star = _star(tmp_path / "bad.star", ["1@s.mrcs", "2@s.mrcs"], psize=psize)
    with pytest.raises(InputError) as exc:
        ingest_file(tmp_path / "ds", Job("e", str(star)), {}, OPTS)
    msg = str(exc.value)
    assert msg.startswith(f"{star}: rlnImagePixelSize: row 1 (1@s.mrcs): pixel size ")
    assert msg.endswith("is not a positive number of Å/px")


def test_bad_cs_pixel_size_names_the_field(tmp_path):
    from tests.test_io_cryosparc import _write_cs

    write_stack(tmp_path / "s.mrc", np.ones((2, BOX, BOX), np.float32))
    _write_cs(tmp_path / "p.cs", {"blob/path": np.array([b"s.mrc"] * 2),
                                  "blob/idx": np.arange(2, dtype=np.uint32),
                                  "blob/psize_A": np.array([1.0, -2.0], np.float32)})
    with pytest.raises(InputError, match=r"p.cs: blob/psize_A: row 2 \(2@s.mrc\): pixel size -2.0"):
        ingest_file(tmp_path / "ds", Job("e", str(tmp_path / "p.cs")), {}, OPTS)


def test_duplicate_rows_are_counted_and_reported(tmp_path, capsys):
    from cryofm.cli import main

    _setup(tmp_path)
    star = _star(tmp_path / "dup.star", ["1@s.mrcs", "2@s.mrcs", "1@s.mrcs", "3@s.mrcs", "000002@s.mrcs"])
    rc = main(["ingest", f"input={star}", "experiment=e", f"out={tmp_path / 'ds'}", f"box={BOX}",
               "progress=false"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "e: 5 particles in 1 shard(s) (from 5 in dup.star, 2 rows repeat an image another row names " \
           "(kept))" in out
    man = dataset.load_manifest(tmp_path / "ds")
    assert man["experiments"]["e"]["settings"]["n_duplicate_rows"] == 2
