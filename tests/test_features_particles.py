"""Particle feature extraction and its on-disk cache, on tiny hand-made shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import webdataset as wds

from cryofm.data.format import encode_sample
from cryofm.errors import InputError
from cryofm.features.cache import FEATURES, FeatureCache
from cryofm.features.extract import image_features
from cryofm.features.particles import BackboneFeaturizer, PixelFeaturizer
from cryofm.models.backbone import create_backbone

TINY = {"depth": 4, "embed_dim": 48, "num_heads": 3}


def _shards(tmp_path, n_per=(5, 3), size=16):
    """Shards whose particle i is the constant image i/10 (+ a small pattern); uid 'eK/s/i'."""
    urls, k = [], 0
    yy, xx = np.mgrid[:size, :size]
    for e, n in enumerate(n_per):
        url = tmp_path / f"e{e}-000000.tar"
        with wds.TarWriter(str(url)) as w:
            for _ in range(n):
                img = np.full((size, size), k / 10.0, np.float32) + 0.01 * np.sin(xx + k)
                w.write(encode_sample(f"e{e}/s/{k}", img, {"experiment": f"e{e}", "DefocusU": 1000.0 * k}))
                k += 1
        urls.append(str(url))
    return urls


class Counting:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x):
        self.calls += len(x)
        return self.f(x)


def test_pixel_features_map_back_to_uids_and_records(tmp_path):
    urls = _shards(tmp_path)
    feats = FeatureCache(tmp_path / "cache").get(
        PixelFeaturizer(4), {"kind": "pixels", "size": 4}, urls, "train", batch_size=3, progress=False
    )
    assert feats.x.shape == (8, 16)
    assert feats.uids.tolist() == [f"e0/s/{i}" for i in range(5)] + [f"e1/s/{i}" for i in range(5, 8)]
    # Fourier downsampling keeps the mean: row k is ~k/10 everywhere (float16 storage: 1e-3)
    k = np.array([int(u.split("/")[-1]) for u in feats.uids])
    np.testing.assert_allclose(feats.x.mean(1), k / 10.0, atol=2e-3)
    np.testing.assert_array_equal(feats.records["DefocusU"], 1000.0 * k)
    assert feats.records["experiment"].tolist() == ["e0"] * 5 + ["e1"] * 3


def test_backbone_features_equal_direct_extraction(tmp_path):
    urls = _shards(tmp_path, size=32)
    torch.manual_seed(0)
    model = create_backbone("vit_small_patch16_224", img_size=32, **TINY)
    meta = {"model_name": "vit_small_patch16_224", "image_size": 32, "pixel_mean": 0.1, "pixel_std": 2.0}
    fz = BackboneFeaturizer(model, meta, {"weights": "test"}, last_blocks=1, device="cpu")
    feats = FeatureCache(tmp_path / "c").get(fz, fz.identity, urls, "train", batch_size=4, progress=False)
    assert feats.x.shape == (8, 96)  # CLS ⊕ mean patch, 2 × 48
    # particle 6 by itself, through the model directly
    img = np.full((32, 32), 0.6, np.float32) + 0.01 * np.sin(np.mgrid[:32, :32][1] + 6)
    img = img.astype(np.float16).astype(np.float32)
    x = torch.from_numpy((img - 0.1) / 2.0)[None, None]
    want = image_features(model.eval(), x).numpy()[0]
    row = feats.uids.tolist().index("e1/s/6")
    np.testing.assert_allclose(feats.x[row], want, rtol=1e-4, atol=1e-5)


def test_cache_hits_and_keys_separate_settings(tmp_path):
    urls = _shards(tmp_path)
    cache = FeatureCache(tmp_path / "cache")
    fz = Counting(PixelFeaturizer(4))
    a = cache.get(fz, {"kind": "pixels", "size": 4}, urls, "train", progress=False)
    assert a.computed and fz.calls == 8
    b = cache.get(fz, {"kind": "pixels", "size": 4}, urls, "train", progress=False)
    assert not b.computed and fz.calls == 8 and b.key == a.key
    np.testing.assert_array_equal(a.x, b.x)
    # another layer variant / split / cap is another key
    c = cache.get(fz, {"kind": "pixels", "size": 4, "last_blocks": 4}, urls, "train", progress=False)
    d = cache.get(fz, {"kind": "pixels", "size": 4}, urls, "val", progress=False)
    e = cache.get(fz, {"kind": "pixels", "size": 4}, urls, "train", per_experiment=2, progress=False)
    assert len({a.key, c.key, d.key, e.key}) == 4
    assert e.uids.tolist() == ["e0/s/0", "e0/s/1", "e1/s/5", "e1/s/6"]
    assert fz.calls == 8 + 8 + 8 + 4


def test_killed_extraction_resumes_at_the_next_shard(tmp_path):
    urls = _shards(tmp_path)
    cache = FeatureCache(tmp_path / "cache")
    good = PixelFeaturizer(4)

    class Crash:
        def __init__(self):
            self.n = 0

        def __call__(self, x):
            self.n += 1
            if self.n > 1:
                raise KeyboardInterrupt
            return good(x)

    ident = {"kind": "pixels", "size": 4}
    with pytest.raises(KeyboardInterrupt):
        cache.get(Crash(), ident, urls, "train", batch_size=8, progress=False)
    assert not list((tmp_path / "cache").rglob(FEATURES))
    fz = Counting(good)
    feats = cache.get(fz, ident, urls, "train", batch_size=8, progress=False)
    assert fz.calls == 3  # only the second shard's 3 particles
    assert feats.x.shape == (8, 16)


def test_unreadable_shard_is_an_input_error_naming_it(tmp_path):
    urls = _shards(tmp_path)
    bad = tmp_path / "bad-000000.tar"
    bad.write_bytes(b"this is not a tar file" * 10)
    with pytest.raises(InputError, match="bad-000000.tar"):
        FeatureCache(tmp_path / "cache").get(
            PixelFeaturizer(4), {"k": 1}, [urls[0], str(bad)], "train", progress=False
        )
    assert not list((tmp_path / "cache").rglob(FEATURES))


def test_a_full_experiment_stops_reading(tmp_path):
    """Under a per-experiment cap the rest of that experiment is not read: its second shard is
    garbage, yet the capped extraction succeeds (and the uncapped one names the bad shard)."""
    exp_dir = tmp_path / "shards" / "e0"
    exp_dir.mkdir(parents=True)
    first = exp_dir / "e0-000000.tar"
    with wds.TarWriter(str(first)) as w:
        for k in range(4):
            w.write(encode_sample(f"e0/s/{k}", np.full((8, 8), k, np.float32), {"experiment": "e0"}))
    second = exp_dir / "e0-000001.tar"
    second.write_bytes(b"garbage" * 50)
    urls = [str(first), str(second)]
    feats = FeatureCache(tmp_path / "c").get(
        PixelFeaturizer(4), {"k": 1}, urls, "train", per_experiment=3, progress=False
    )
    assert feats.uids.tolist() == ["e0/s/0", "e0/s/1", "e0/s/2"]
    with pytest.raises(InputError, match="e0-000001.tar"):
        FeatureCache(tmp_path / "c").get(PixelFeaturizer(4), {"k": 1}, urls, "train", progress=False)


def test_last_blocks_beyond_the_backbone_depth_names_the_key():
    model = create_backbone("vit_small_patch16_224", img_size=32, **TINY)
    meta = {"model_name": "vit_small_patch16_224", "image_size": 32, "pixel_mean": 0.0, "pixel_std": 1.0}
    depth = len(model.blocks)
    with pytest.raises(InputError, match=rf"99, but the backbone has {depth} blocks") as exc:
        BackboneFeaturizer(model, meta, {"weights": "test"}, last_blocks=99, device="cpu")
    assert exc.value.path == "features.last_blocks"
    fz = BackboneFeaturizer(model, meta, {"weights": "t"}, last_blocks=depth, device="cpu")
    assert fz.last_blocks == depth
