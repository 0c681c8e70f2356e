"""ingest_arrays: round trip, resume after a crash, idempotent re-run, bad input leaves nothing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cryofm.data import dataset, ingest, manifest
from cryofm.data import shards as sh
from cryofm.data.normalize import fourier_resize, normalize
from cryofm.errors import InputError


def _items(n: int, size: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.normal(3.0, 2.0, size=(size, size)).astype(np.float32)
        out.append((img, {"ImagePixelSize": 1.5, "DefocusU": 10000.0 + i, "ImageName": f"{i + 1}@s.mrcs"}))
    return out


def test_round_trip_images_records_and_manifest(tmp_path):
    items = _items(21)
    m = ingest.ingest_arrays(tmp_path, "exp1", items, n=21, box=32, shard_size=8,
                             facts={"ProteinClass": "channel", "MolecularWeight": 400.0}, progress=False)
    assert [s["n"] for s in m["shards"]] == [8, 8, 5]
    got = list(dataset.iter_samples(tmp_path))
    assert len(got) == 21
    for i, (img, rec) in enumerate(got):
        want = normalize(fourier_resize(items[i][0], 32))
        assert img.shape == (32, 32)
        np.testing.assert_allclose(img, want, atol=2e-3)  # float16 storage
        assert rec["uid"] == f"exp1/arrays/{i}"
        assert rec["DefocusU"] == 10000.0 + i
        assert rec["ImageSize"] == 40 and rec["EffectiveImageSize"] == 32
        assert rec["EffectiveImagePixelSize"] == pytest.approx(1.5 * 40 / 32)
        assert rec["ProteinClass"] == "channel" and rec["MolecularWeight"] == 400.0
        assert math.isnan(rec["AngleRot"])  # missing stays missing, not 0
    man = dataset.load_manifest(tmp_path)
    assert man["n_particles"] == 21 and man["experiments"]["exp1"]["n"] == 21
    assert man["coverage"]["DefocusU"] == 21 and man["coverage"]["AngleRot"] == 0
    assert abs(man["pixel_stats"]["mean"]) < 1e-6 and man["pixel_stats"]["std"] == pytest.approx(1, abs=1e-4)
    assert manifest.verify(tmp_path) == []
    # the shards are plain WebDataset: webdataset's own reader gives the same samples in order
    import webdataset as wds

    from cryofm.data.format import decode_sample
    ds = wds.WebDataset(dataset.split_urls(tmp_path, "all"), shardshuffle=False, empty_check=False)
    assert [decode_sample(s)[1]["uid"] for s in ds] == [f"exp1/arrays/{i}" for i in range(21)]


def test_uint8_records_scale(tmp_path):
    items = _items(3)
    ingest.ingest_arrays(tmp_path, "e", items, box=40, dtype="uint8", progress=False)
    for (img, rec), (raw, _) in zip(dataset.iter_samples(tmp_path), items, strict=True):
        want = normalize(raw)
        assert rec["ImageScale"] == pytest.approx((want.max() - want.min()) / 255, rel=1e-5)
        assert np.abs(img - want).max() <= rec["ImageScale"] / 2 + 1e-5


def test_interrupted_ingest_resumes_without_loss_or_duplicates(tmp_path, monkeypatch):
    items = _items(50)

    class CrashError(RuntimeError):
        pass

    real = ingest.make_writer

    def crashing(*args, **kwargs):
        w = real(*args, **kwargs)

        def boom(index):
            if index == 2:
                raise CrashError("killed after 3 shards")
        w.on_shard = boom
        return w

    monkeypatch.setattr(ingest, "make_writer", crashing)
    with pytest.raises(CrashError):
        ingest.ingest_arrays(tmp_path, "e", items, n=50, box=32, shard_size=7, progress=False)
    assert len(list((tmp_path / "shards" / "e").glob("*.tar"))) == 3
    assert not (tmp_path / "experiments" / "e.json").exists()
    monkeypatch.setattr(ingest, "make_writer", real)

    asked = []

    def producer(start):  # a resumed ingest asks only for what is left
        asked.append(start)
        return iter(items[start:])

    m = ingest.ingest_arrays(tmp_path, "e", producer, n=50, box=32, shard_size=7, progress=False)
    assert asked == [21]
    uids = [rec["uid"] for _, rec in dataset.iter_samples(tmp_path)]
    assert uids == [f"e/arrays/{i}" for i in range(50)]
    assert m["n"] == 50 and sum(s["n"] for s in m["shards"]) == 50
    assert not sh.progress_path(tmp_path, "e").exists()
    # the resumed run's statistics cover all 50 particles exactly once
    assert m["coverage"]["DefocusU"] == 50 and m["pixel_stats"]["count"] == 50 * 32 * 32


def test_rerun_on_finished_output_does_nothing(tmp_path):
    items = _items(10)
    ingest.ingest_arrays(tmp_path, "e", items, box=32, shard_size=4, progress=False)
    files = sorted(tmp_path.rglob("*"))
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    calls = []
    ingest.ingest_arrays(tmp_path, "e", lambda s: calls.append(s) or iter(items), box=32, shard_size=4,
                         progress=False)
    assert calls == []
    assert sorted(tmp_path.rglob("*")) == files
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    with pytest.raises(InputError, match="already ingested with other settings"):
        ingest.ingest_arrays(tmp_path, "e", items, box=24, shard_size=4, progress=False)


@pytest.mark.parametrize("bad", ["nan", "inf", "shape"])
def test_bad_pixels_leave_no_shard(tmp_path, bad):
    items = _items(20)
    img = items[13][0].copy()
    if bad == "nan":
        img[3, 4] = np.nan
    elif bad == "inf":
        img[0, 0] = np.inf
    else:
        img = img[:30, :30]
    items[13] = (img, {**items[13][1], "_path": "/data/stack.mrcs"})
    with pytest.raises(InputError) as exc:
        ingest.ingest_arrays(tmp_path, "e", items, box=32, shard_size=4, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("/data/stack.mrcs: particle 14@s.mrcs")
    assert ("NaN or Inf" in msg) if bad != "shape" else ("shape" in msg)
    assert list(tmp_path.rglob("*.tar")) == []
    assert not (tmp_path / "manifest.json").exists()


def test_count_mismatch_and_bad_id(tmp_path):
    with pytest.raises(InputError, match="expected 12 particles, the input gave 10"):
        ingest.ingest_arrays(tmp_path, "e", _items(10), n=12, box=32, progress=False)
    assert list(tmp_path.rglob("*.tar")) == []
    with pytest.raises(InputError, match="bad experiment id"):
        ingest.ingest_arrays(tmp_path, "a/b", _items(2), box=32, progress=False)


def test_two_experiments_merge(tmp_path):
    ingest.ingest_arrays(tmp_path, "a", _items(5), box=32, merge=False, progress=False)
    ingest.ingest_arrays(tmp_path, "b", _items(7, seed=1), box=32, merge=False, progress=False)
    assert not (tmp_path / "manifest.json").exists()
    man = manifest.merge_manifests(tmp_path)
    assert {e: v["n"] for e, v in man["experiments"].items()} == {"a": 5, "b": 7}
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["n_particles"] == 12 and len(on_disk["shards"]) == 2
    assert len(dataset.split_urls(tmp_path, "all")) == 2


def test_interrupt_inside_a_shard_drops_only_the_open_shard(tmp_path, monkeypatch):
    items = _items(30)
    monkeypatch.setattr(ingest, "BATCH", 3)

    def dying(start):
        for i in range(start, 30):
            if i == 14:  # mid-way through shard 3 (shard_size 4): shards 0-2 are done
                raise KeyboardInterrupt
            yield items[i]

    with pytest.raises(KeyboardInterrupt):
        ingest.ingest_arrays(tmp_path, "e", dying, n=30, box=32, shard_size=4, progress=False)
    folder = tmp_path / "shards" / "e"
    assert sorted(p.name for p in folder.iterdir()) == [f"e-{i:06d}.tar" for i in range(3)]  # no .tmp-*
    (folder / ".tmp-e-000003.tar.x").write_bytes(b"half a shard from a killed process")
    m = ingest.ingest_arrays(tmp_path, "e", lambda s: iter(items[s:]), n=30, box=32, shard_size=4,
                             progress=False)
    assert [rec["uid"] for _, rec in dataset.iter_samples(tmp_path)] == [f"e/arrays/{i}" for i in range(30)]
    assert m["n"] == 30 and not list(folder.glob(".tmp-*"))
