"""Real RELION / cryoSPARC particles → shards: pixels and annotations match the source files."""

from __future__ import annotations

import json
import warnings

import mrcfile
import numpy as np
import pytest
import starfile

from cryofm.data import dataset, ingest
from cryofm.data.ingest_files import IngestOptions, Job, ingest_file, ingest_many
from cryofm.data.normalize import fourier_resize, normalize
from tests.conftest import shared_file

FORMATS = "relion_cryosparc_formats"
OPTS = IngestOptions(box=64, shard_size=2, progress=False)


def _raw(path):
    with warnings.catch_warnings():  # RELION stacks lack the MAP id: mrcfile warns, reads fine
        warnings.simplefilter("ignore")
        with mrcfile.open(path, permissive=True) as m:
            return np.array(m.data, dtype=np.float32)


def test_relion31_pixels_and_annotations(tmp_path, shared_data):
    star = shared_file(FORMATS, "relion31.star")
    man = ingest_file(tmp_path, Job("r31", str(star)), {}, OPTS)
    assert man["n"] == 5 and [s["n"] for s in man["shards"]] == [2, 2, 1]
    raw = _raw(shared_file(FORMATS, "relion31.mrcs"))
    parts = starfile.read(star)["particles"]
    got = list(dataset.iter_samples(tmp_path))
    for i, (img, rec) in enumerate(got):
        np.testing.assert_allclose(img, normalize(fourier_resize(raw[i], 64)), atol=3e-3)
        assert rec["DefocusU"] == pytest.approx(parts["rlnDefocusU"][i])
        assert rec["AngleTilt"] == pytest.approx(parts["rlnAngleTilt"][i])
        assert rec["OriginXAngst"] == pytest.approx(parts["rlnOriginXAngst"][i])
        assert rec["ImagePixelSize"] == 2.806 and rec["ImageSize"] == 256
        assert rec["EffectiveImagePixelSize"] == pytest.approx(2.806 * 256 / 64)
        assert rec["ImageName"] == parts["rlnImageName"][i]
        assert rec["Voltage"] == 300.0 and rec["experiment"] == "r31"


def test_trpv1_stack_override_with_facts_no_resize(tmp_path, shared_data):
    star = shared_file("trpv1_particles", "trpv1_small_stack.star")
    stack = shared_file("trpv1_particles", "trpv1_small_stack.mrcs")
    facts = {"EMDB": "EMD-5778", "MolecularWeight": 380.0}
    ingest_file(tmp_path, Job("trpv1", str(star), stack=str(stack)), facts,
                IngestOptions(box=48, shard_size=4, progress=False))
    raw = _raw(stack)
    parts = starfile.read(star)["particles"]
    for i, (img, rec) in enumerate(dataset.iter_samples(tmp_path)):
        np.testing.assert_allclose(img, normalize(raw[i]), atol=3e-3)
        assert rec["AngleRot"] == pytest.approx(parts["rlnAngleRot"][i])
        assert rec["EffectiveImagePixelSize"] == pytest.approx(4.88)
        assert rec["EMDB"] == "EMD-5778" and rec["MolecularWeight"] == 380.0
    assert dataset.load_manifest(tmp_path)["experiments"]["trpv1"]["facts"]["EMDB"] == "EMD-5778"


def test_cs_ingest_matches_star_ingest(tmp_path, shared_data):
    """The same stack through its .cs (blob/sign -1: stored protein-dark) and its .star (RELION: taken
    as stored): the .cs particles are the negated STAR particles, flagged ImageInverted, and an
    experiment-level invert=true on the STAR side gives the .cs side's pixels exactly."""
    cs = np.load(shared_file(FORMATS, "empiar_10076_7.cs"))
    assert set(cs["blob/sign"]) == {-1.0}
    a = ingest_file(tmp_path / "a", Job("e", str(shared_file(FORMATS, "empiar_10076_7.cs"))), {}, OPTS)
    b = ingest_file(tmp_path / "b", Job("e", str(shared_file(FORMATS, "empiar_10076_7.star"))), {}, OPTS)
    c = ingest_file(tmp_path / "c", Job("e", str(shared_file(FORMATS, "empiar_10076_7.star")),
                                        invert=True), {}, OPTS)
    assert a["n"] == b["n"] == c["n"] == 7
    sa, sb, sc = (list(dataset.iter_samples(tmp_path / k)) for k in "abc")
    ia, ib, ic = (np.stack([img for img, _ in s]) for s in (sa, sb, sc))
    np.testing.assert_array_equal(ia, -ib)
    np.testing.assert_array_equal(ia, ic)
    assert [r["ImageInverted"] for _, r in sa] == [True] * 7
    assert [r["ImageInverted"] for _, r in sb] == [False] * 7
    assert [r["ImageInverted"] for _, r in sc] == [True] * 7
    # the cryoSPARC side with invert=true is flipped twice: the file's own pixels, not inverted
    d = ingest_file(tmp_path / "d", Job("e", str(shared_file(FORMATS, "empiar_10076_7.cs")), invert=True),
                    {}, OPTS)
    sd = list(dataset.iter_samples(tmp_path / "d"))
    assert d["n"] == 7 and [r["ImageInverted"] for _, r in sd] == [False] * 7
    np.testing.assert_array_equal(np.stack([img for img, _ in sd]), ib)


def test_real_file_resume_after_crash(tmp_path, shared_data, monkeypatch):
    star = shared_file(FORMATS, "relion31.star")
    real = ingest.make_writer

    def crashing(*a, **k):
        w = real(*a, **k)

        def boom(index):
            if index == 1:
                raise KeyboardInterrupt
        w.on_shard = boom
        return w

    monkeypatch.setattr(ingest, "make_writer", crashing)
    with pytest.raises(KeyboardInterrupt):
        ingest_file(tmp_path, Job("r31", str(star)), {}, OPTS)
    assert len(list(tmp_path.rglob("*.tar"))) == 2 and not (tmp_path / "manifest.json").exists()
    monkeypatch.setattr(ingest, "make_writer", real)
    man = ingest_file(tmp_path, Job("r31", str(star)), {}, OPTS)
    uids = [rec["uid"] for _, rec in dataset.iter_samples(tmp_path)]
    assert uids == [f"r31/relion31/{i}" for i in range(5)] and man["n"] == 5
    # identical bytes to an uninterrupted ingest
    clean = ingest_file(tmp_path / "clean", Job("r31", str(star)), {}, OPTS)
    assert [s["sha256"] for s in man["shards"]] == [s["sha256"] for s in clean["shards"]]


def test_dedup_on_real_picks(tmp_path, shared_data):
    star = shared_file(FORMATS, "relion31.star")
    parts = starfile.read(star)["particles"]
    coords = list(zip(parts["rlnMicrographName"], parts["rlnCoordinateX"], parts["rlnCoordinateY"],
                      strict=True))
    n_unique = len(set(coords))  # rows 1 and 2 are the same pick; the others are far apart
    opts = IngestOptions(box=64, shard_size=8, progress=False, dedup={"enabled": True, "fraction": 0.5})
    man = ingest_file(tmp_path, Job("r31", str(star)), {"MaxDiameter": 100.0}, opts)
    assert n_unique == 4 and man["n"] == 4
    assert man["settings"]["n_input"] == 5 and man["settings"]["n_duplicates"] == 1
    # no score column: the earlier of the two identical picks is kept; uids keep the STAR row number
    uids = [rec["uid"] for _, rec in dataset.iter_samples(tmp_path)]
    assert uids == ["r31/relion31/0", "r31/relion31/2", "r31/relion31/3", "r31/relion31/4"]


def test_parallel_equals_serial(tmp_path, shared_data):
    jobs = [Job("r31", str(shared_file(FORMATS, "relion31.star"))),
            Job("e10076", str(shared_file(FORMATS, "empiar_10076_7.star")))]
    serial = ingest_many(tmp_path / "s", jobs, None, OPTS, workers=1)
    par = ingest_many(tmp_path / "p", jobs, None, OPTS, workers=2)
    counts = {e: m["n"] for e, m in serial.items()}
    assert counts == {e: m["n"] for e, m in par.items()} == {"r31": 5, "e10076": 7}
    ms = json.loads((tmp_path / "s" / "manifest.json").read_text())
    mp_ = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert [s["sha256"] for s in ms["shards"]] == [s["sha256"] for s in mp_["shards"]]
    assert mp_["n_particles"] == 12


def test_class_resolution_joined_at_ingest(tmp_path, shared_data):
    model = tmp_path / "run_it020_model.star"
    model.write_text("data_model_classes\n\nloop_\n_rlnReferenceImage #1\n_rlnEstimatedResolution #2\n"
                     "1@c.mrcs 7.75\n2@c.mrcs 15.0\n")
    star = shared_file(FORMATS, "relion31.star")
    ingest_file(tmp_path, Job("r31", str(star), classes=str(model)), {}, OPTS)
    classes = starfile.read(star)["particles"]["rlnClassNumber"].tolist()
    got = [(rec["ClassNumber"], rec["ClassResolution"]) for _, rec in dataset.iter_samples(tmp_path)]
    assert got == [(c, {1: 7.75, 2: 15.0}[c]) for c in classes]
    assert dataset.load_manifest(tmp_path)["coverage"]["ClassResolution"] == 5


def test_rows_interleaving_stacks(tmp_path, monkeypatch):
    from cryofm.data import sources
    from cryofm.io.mrc import write_stack

    monkeypatch.setattr(sources, "OPEN_STACKS", 2)  # three stacks, two open: exercises eviction
    rng = np.random.default_rng(3)
    raw = {s: rng.normal(size=(4, 16, 16)).astype(np.float32) for s in "abc"}
    for s, imgs in raw.items():
        write_stack(tmp_path / f"{s}.mrcs", imgs)
    order = [("a", 1), ("b", 1), ("c", 4), ("a", 2), ("a", 3), ("b", 2), ("c", 1), ("a", 4)]
    star = tmp_path / "p.star"
    star.write_text("data_particles\n\nloop_\n_rlnImageName #1\n_rlnImagePixelSize #2\n"
                    + "".join(f"{i}@{s}.mrcs 2.0\n" for s, i in order))
    ingest_file(tmp_path / "ds", Job("x", str(star)), {}, IngestOptions(box=16, progress=False))
    got = [(img, rec["ImageName"]) for img, rec in dataset.iter_samples(tmp_path / "ds")]
    assert [name for _, name in got] == [f"{i}@{s}.mrcs" for s, i in order]
    for (img, _), (s, i) in zip(got, order, strict=True):
        np.testing.assert_allclose(img, normalize(raw[s][i - 1]), atol=3e-3)


def test_stack_cut_short_while_reading_raises_through_the_reader_thread(tmp_path, monkeypatch):
    """A stack that loses its tail while it is being streamed: the reader thread's error reaches the
    consumer as the file-naming InputError (and the items before it were right)."""
    from cryofm.data import ingest_files, sources
    from cryofm.errors import InputError
    from cryofm.io.mrc import write_stack

    monkeypatch.setattr(sources, "RUN", 4)  # reads of 4 images: the cut is met on the third read
    stack = tmp_path / "s.mrcs"
    imgs = np.random.default_rng(0).normal(size=(12, 16, 16)).astype(np.float32)
    write_stack(stack, imgs)
    star = tmp_path / "p.star"
    star.write_text("data_particles\n\nloop_\n_rlnImageName #1\n_rlnImagePixelSize #2\n"
                    + "".join(f"{i}@s.mrcs 2.0\n" for i in range(1, 13)))
    df, _ = ingest_files.prepare(Job("x", str(star)), {}, IngestOptions(box=16, progress=False))
    items = sources.table_items(df)
    first, _ = next(items)  # the stack is open and the second run is being read
    with open(stack, "r+b") as fh:  # drop the last two images
        fh.truncate(stack.stat().st_size - 2 * 16 * 16 * 4)
    got = [first]
    with pytest.raises(InputError, match="short read: images 9..12 are cut off") as exc:
        for img, _ in items:
            got.append(img)
    assert str(exc.value).startswith(str(stack))
    np.testing.assert_array_equal(np.stack(got), imgs[:8])
