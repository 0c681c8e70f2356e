"""The training stream: disjoint samples across ranks/workers per pass, exact resume, corrupt samples."""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cryofm.data.augment import CropSpec, MultiCropConfig
from cryofm.data.dataset import iter_samples
from cryofm.data.format import sample_key
from cryofm.data.pipeline import ParticleStream, make_loader, pixel_stats, train_urls
from cryofm.errors import InputError
from cryofm.train.toydata import make_toy_dataset

CROPS = MultiCropConfig(CropSpec(2, 32, (0.32, 1.0), [1.0, 0.1]), CropSpec(2, 16, (0.05, 0.32), 0.5))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    # 3 experiments x 12 particles of 32 px, 6 per shard; one experiment held out of training
    root = tmp_path_factory.mktemp("toy")
    return make_toy_dataset(
        root, n_experiments=3, n_per=12, box=32, shard_size=6, fractions=(0.67, 0.33, 0.0)
    )


def _stream(urls, **kw) -> ParticleStream:
    base = dict(
        batch_size=4,
        image_size=32,
        crops=CROPS,
        mask_ratio=(0.1, 0.5),
        mask_probability=0.5,
        patch=16,
        shuffle_buffer=1,
    )
    base.update(kw)
    return ParticleStream(urls, **base)


def _keys(stream: ParticleStream, n_batches: int, num_workers: int = 0) -> list[str]:
    it = iter(make_loader(stream, num_workers))
    return [k for _ in range(n_batches) for k in next(it)["keys"]]


def test_train_split_only(toy):
    urls = train_urls(toy)
    train_keys = {sample_key(s[1]["uid"]) for s in iter_samples(toy, "train")}
    assert len(urls) == 4 and len(train_keys) == 24  # 2 experiments x 2 shards
    assert all("toy" in u for u in urls)
    keys = _keys(_stream(urls), 6)
    assert set(keys) == train_keys  # one pass: every training particle once, none from the other split


def test_url_template_streams_through_pipe(toy):
    urls = train_urls(toy, template=f"pipe:cat {toy.resolve()}/{{path}}")
    assert urls[0].startswith("pipe:cat ") and urls[0].endswith(".tar") and "/shards/" in urls[0]
    keys = _keys(_stream(urls), 6)  # read through a shell pipe: the same particles as the local files
    assert set(keys) == set(_keys(_stream(train_urls(toy)), 6))


@pytest.mark.parametrize(("world", "workers"), [(2, 1), (2, 4)])  # split by shard / by sample
def test_ranks_and_workers_read_disjoint_samples(toy, world, workers):
    urls = train_urls(toy)
    per_rank = 24 // world  # one pass
    seen = []
    for rank in range(world):
        s = _stream(urls, batch_size=per_rank // workers, rank=rank, world_size=world, num_workers=workers)
        seen.append(_keys(s, workers, num_workers=workers))
    assert all(len(k) == len(set(k)) for k in seen)
    assert set(seen[0]).isdisjoint(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == 24


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_reproduces_the_same_batches(toy, workers):
    urls = train_urls(toy)
    kw = dict(num_workers=workers, shuffle_buffer=8, seed=3)
    it = iter(make_loader(_stream(urls, **kw), workers))
    full = [next(it) for _ in range(7)]
    it = iter(make_loader(_stream(urls, start_batch=3, **kw), workers))  # 3: not a multiple of workers
    resumed = [next(it) for _ in range(4)]
    for a, b in zip(full[3:], resumed, strict=True):
        assert a["batch_index"] == b["batch_index"] and a["keys"] == b["keys"]
        for k in ("global_crops", "local_crops", "masks"):
            assert torch.equal(a[k], b[k])
    assert full[0]["global_crops"].shape == (8, 1, 32, 32) and full[0]["local_crops"].shape == (8, 1, 16, 16)
    assert full[0]["masks"].shape == (8, 4) and (full[0]["masks"].sum(1) > 0).sum() == 4


def test_dataset_mean_std_applied(toy):
    urls = train_urls(toy)
    mean, std = pixel_stats(toy)
    assert abs(mean) < 0.05 and abs(std - 1) < 0.05  # per-particle normalised at ingest
    raw = next(iter(_stream(urls)._raw(0)))
    s = _stream(urls, pixel_mean=1.0, pixel_std=2.0)
    img = iter_samples(toy, "train")
    want = {sample_key(r["uid"]): im for im, r in img}[raw["__key__"]]
    assert torch.allclose(s._decode(raw), torch.from_numpy((want - 1.0) / 2.0))


def _corrupt_shard(path, good_sample: dict):
    with tarfile.open(path, "w") as tar:
        for key, data in ((good_sample["__key__"], good_sample["image.npy"]), ("bad", b"not a npy file")):
            for ext, body in (("image.npy", data), ("json", good_sample["json"])):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))


def test_corrupt_samples_skipped_and_counted(toy, tmp_path):
    urls = train_urls(toy)
    good = next(iter(_stream(urls)._raw(0)))
    bad = tmp_path / "bad.tar"
    _corrupt_shard(bad, good)
    s = _stream([str(bad)], batch_size=2)
    b = next(iter(s))
    assert b["keys"] == [good["__key__"]] * 2 and b["n_corrupt"] >= 1
    with pytest.raises(InputError, match="corrupt sample bad"):
        next(iter(_stream([str(bad)], batch_size=2, strict=True)))
    with pytest.raises(InputError):
        train_urls(tmp_path)
    assert np.isfinite(b["global_crops"].numpy()).all()


def _break_member_header(path, sample: int) -> None:
    """Overwrite the tar header of sample ``sample``'s first member (``tarfile`` then stops there
    without an error: it takes the bad header for the end of the archive)."""
    with tarfile.open(path) as tar:
        offsets = [m.offset for m in tar]
    data = bytearray(path.read_bytes())
    o = offsets[2 * sample]  # two members (image.npy, json) per sample
    data[o:o + 512] = b"\x13" * 512
    path.write_bytes(bytes(data))


def test_short_shard_is_counted_against_the_manifest(tmp_path, caplog):
    from cryofm.data import ingest
    from cryofm.data.dataset import split_urls

    rng = np.random.default_rng(0)
    items = [(rng.normal(size=(32, 32)).astype(np.float32), {}) for _ in range(24)]
    ingest.ingest_arrays(tmp_path, "e", items, box=32, shard_size=12, progress=False)
    urls = split_urls(tmp_path, "all")
    assert len(urls) == 2
    _break_member_header(Path(urls[0]), 5)  # shard 0 now reads as 5 samples of 12
    s = _stream(urls, batch_size=4, shuffle_buffer=1)
    assert s.expected == {urls[0]: 12, urls[1]: 12}
    with caplog.at_level(logging.WARNING, logger="cryofm.data.pipeline"):
        keys = _keys(s, 7)  # 28 samples: one pass (17 readable) and part of the next
    distinct = set(keys)
    assert len(distinct) == 17
    assert s.n_corrupt >= 7 and s.n_short >= 1
    assert f"{urls[0]}: shard gave 5 of the 12 samples its manifest lists" in caplog.text
    # counted once per pass: after two full passes 14 samples are missing
    s2 = _stream(urls, batch_size=17, shuffle_buffer=1)
    it = iter(s2)
    first, second = next(it), next(it)
    assert (first["n_corrupt"], second["n_corrupt"]) == (7, 14)
    with pytest.raises(InputError, match="shard gave 5 of the 12 samples"):
        next(iter(_stream(urls, batch_size=17, shuffle_buffer=1, strict=True)))
    # a missing shard: every sample it should hold is counted
    Path(urls[1]).unlink()
    s3 = _stream(urls, batch_size=5, shuffle_buffer=1)
    b = next(iter(s3))
    assert b["n_corrupt"] == 7 + 12


def test_counts_for_streamed_urls(toy):
    from cryofm.data.pipeline import shard_counts, split_counts_by_url

    template = f"pipe:cat {toy.resolve()}/{{path}}"
    urls = train_urls(toy, template=template)
    assert shard_counts(urls) == {}  # a pipe: has no manifest to look in
    counts = split_counts_by_url(toy, "train", template)
    assert sorted(counts) == sorted(urls) and set(counts.values()) == {6}
    assert split_counts_by_url(toy, "train") == shard_counts(train_urls(toy))


def test_damaged_data_smaller_than_a_batch_raises(tmp_path):
    """A pass that lost samples and kept fewer than one batch stops with the shard named (it used to
    spin through one-sample passes: training hung)."""
    from cryofm.data import ingest
    from cryofm.data.dataset import split_urls

    rng = np.random.default_rng(0)
    items = [(rng.normal(size=(32, 32)).astype(np.float32), {}) for _ in range(12)]
    ingest.ingest_arrays(tmp_path, "e", items, box=32, shard_size=12, progress=False)
    urls = split_urls(tmp_path, "all")
    _break_member_header(Path(urls[0]), 2)  # 2 readable samples of 12
    with pytest.raises(InputError, match=r"only 2 readable samples of the 12 .* a batch needs 4") as exc:
        next(iter(_stream(urls, batch_size=4, shuffle_buffer=1)))
    assert exc.value.path == urls[0]
    # a batch fits: goes on
    assert next(iter(_stream(urls, batch_size=2, shuffle_buffer=1)))["n_corrupt"] == 10
