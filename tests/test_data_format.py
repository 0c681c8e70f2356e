"""Sample encoding and shard bytes: the fast paths give exactly what NumPy and ``tarfile`` give."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from cryofm.data import format as fmt
from cryofm.data import shards as sh


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 33, 31)) * np.array([1e-6, 1, 1e3, 1e5, 3])[:, None, None]
    x = x.astype(np.float32)
    x[0, 0, 0], x[0, 0, 1], x[1, 0, 0] = 6.0e4 + 17, -1e9, 3e-8  # clipped, clipped, float16 subnormal
    x[4] = 2.5  # constant image
    return x


@pytest.mark.parametrize("batch", [slice(0, 5), slice(2, 4)])  # with and without out-of-range values
def test_float16_encoding_equals_numpy(batch):
    x = _images()[batch]
    for img, (data, scale, offset) in zip(x, fmt.encode_images(x, "float16"), strict=True):
        assert data == _npy(np.clip(img, -6.0e4, 6.0e4).astype(np.float16))
        assert np.isnan(scale) and np.isnan(offset)


def test_uint8_encoding_equals_per_image_definition():
    x = _images()
    for img, (data, scale, offset) in zip(x, fmt.encode_images(x, "uint8"), strict=True):
        lo, hi = float(img.min()), float(img.max())
        want_scale = (hi - lo) / 255.0 if hi > lo else 1.0
        assert scale == want_scale and offset == lo
        assert data == _npy(np.round((img - lo) / want_scale).clip(0, 255).astype(np.uint8))


def _samples(n: int, long_every: int = 0) -> list[dict]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        uid = f"exp/stack/{i}" + ("_" * 150 if long_every and i % long_every == 0 else "")
        img = rng.standard_normal((6 + i % 5, 6 + i % 5)).astype(np.float32)
        out.append(fmt.encode_sample(uid, img, {"experiment": "exp", "DefocusU": 1000.0 + i}))
    return out


def test_shard_writer_bytes_equal_tarfile(tmp_path):
    samples = _samples(23, long_every=4)  # keys of 160+ characters need a PAX header
    sh.write_tar(tmp_path / "ref.tar", samples)
    w = sh.ShardWriter(tmp_path, "exp", shard_size=100, fingerprint="f")
    w.BUFFER = 5000  # several partial drains within the shard
    for s in samples:
        w.add(s, {})
    (rec,) = w.finish({})
    got = (tmp_path / rec["path"]).read_bytes()
    assert got == (tmp_path / "ref.tar").read_bytes()
    assert rec["bytes"] == len(got) and len(got) % tarfile.RECORDSIZE == 0
    with tarfile.open(tmp_path / rec["path"]) as tar:
        names = tar.getnames()
    assert names[0] == samples[0]["__key__"] + ".image.npy" and len(names[0]) > 160
    assert names == [f"{s['__key__']}.{ext}" for s in samples for ext in (fmt.IMAGE_KEY, fmt.JSON_KEY)]


def test_long_keys_read_back_with_webdataset(tmp_path):
    import webdataset as wds

    samples = _samples(6, long_every=2)
    w = sh.ShardWriter(tmp_path, "exp", shard_size=4, fingerprint="f")
    for s in samples:
        w.add(s, {})
    recs = w.finish({})
    got = [fmt.decode_sample(s)[1]["uid"] for s in
           wds.WebDataset([str(tmp_path / r["path"]) for r in recs], shardshuffle=False, empty_check=False)]
    assert [r["n"] for r in recs] == [4, 2]
    assert got == [f"exp/stack/{i}" + ("_" * 150 if i % 2 == 0 else "") for i in range(6)]
