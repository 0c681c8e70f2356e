"""Sub-cubes into WebDataset shards, and the split by map stratified by resolution."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest

from cryofm.maps.cubes import cube_starts, iter_cubes, normalize_map, read_cube, write_cube_shards
from cryofm.maps.split import resolution_split


def _read_tar(path):
    """Samples of a WebDataset shard read with tarfile: [{__key__, ext: bytes}] in stored order."""
    samples: dict[str, dict] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(member).read()
    return list(samples.values())


def test_cube_starts_cover_the_axis_with_overlap():
    assert cube_starts(64, 64, 16) == [0]
    assert cube_starts(100, 64, 16) == [0, 36]  # stride 48 would overrun: last cube ends at 100
    assert cube_starts(160, 64, 16) == [0, 48, 96]
    assert cube_starts(30, 64, 16) == [0]  # smaller than a cube: padded
    with pytest.raises(ValueError):
        cube_starts(100, 64, 64)


def test_cubes_tile_every_voxel_and_pad_small_maps():
    a = np.arange(20 * 9 * 13, dtype=np.float32).reshape(20, 9, 13)
    seen = np.zeros(a.shape, dtype=int)
    for (z, y, x), c in iter_cubes({"a": a}, 8, 2):
        cube = c["a"]
        assert cube.shape == (8, 8, 8)
        part = a[z:z + 8, y:y + 8, x:x + 8]
        np.testing.assert_array_equal(cube[: part.shape[0], : part.shape[1], : part.shape[2]], part)
        seen[z:z + 8, y:y + 8, x:x + 8] += 1
    assert seen.min() >= 1
    small = list(iter_cubes({"a": np.ones((3, 4, 5), np.float32)}, 8, 2))
    assert len(small) == 1 and small[0][1]["a"].sum() == 60  # zero-padded beyond the map


def test_shards_hold_cubes_equal_to_map_slices(tmp_path):
    rng = np.random.default_rng(0)
    shape = (24, 20, 16)
    cls = np.zeros(shape, np.uint8)
    cls[2:6, 2:6, 1:4] = 2
    cls[3, 3, 3] = 1
    arrays = {"input": rng.random(shape).astype(np.float32),
              "regression": rng.random(shape).astype(np.float32), "classification": cls,
              "types": (cls == 1).astype(np.uint8) * 4}
    res = write_cube_shards(tmp_path, "m1", arrays, {"resolution": 3.2}, origin=np.array([1.0, 2.0, 3.0]),
                            voxel_size=1.0, size=12, overlap=4, keep_empty=False, shard_size=1)
    # Starts z: 0, 8, 12; y: 0, 8; x: 0, 4. Only the cube holding the labelled block survives.
    assert res["n_cubes"] == 1 and res["shards"] == ["m1-000000.tar"]
    samples = _read_tar(tmp_path / "m1-000000.tar")
    assert [s["__key__"] for s in samples] == ["m1_0_0_0"]
    cube = read_cube(samples[0])
    np.testing.assert_array_equal(cube["classification"], cls[:12, :12, :12])
    np.testing.assert_allclose(cube["input"], arrays["input"][:12, :12, :12], atol=1e-3)  # float16
    assert cube["types"][3, 3, 3] == 4 and cube["json"]["resolution"] == 3.2
    assert cube["json"]["origin_xyz"] == [1.0, 2.0, 3.0]
    every = write_cube_shards(tmp_path / "all", "m1", arrays, {}, np.zeros(3), 1.0, size=12, overlap=4,
                              keep_empty=True, shard_size=5)
    assert every["n_cubes"] == 3 * 2 * 2
    assert every["shards"] == ["m1-000000.tar", "m1-000001.tar", "m1-000002.tar"]
    last = _read_tar(tmp_path / "all" / "m1-000002.tar")
    assert len(last) == 2 and last[-1]["__key__"] == "m1_12_8_4"


def test_normalisation_modes():
    x = np.linspace(-1, 9, 1001, dtype=np.float32)
    y, info = normalize_map(x, "percentile", 90.0)
    assert info["scale"] == pytest.approx(8.0, rel=1e-4)  # 90th percentile of max(x, 0)
    assert y.min() == 0 and y.max() == 1 and y[np.argmin(np.abs(x - 4))] == pytest.approx(0.5, abs=1e-3)
    z, _ = normalize_map(x, "zscore")
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, rel=1e-5)


def test_split_is_by_map_and_stratified_by_resolution():
    rng = np.random.default_rng(0)
    res = {f"emd_{i}": float(r) for i, r in enumerate(rng.uniform(1.0, 4.0, 40))}
    split = resolution_split(res, {"train": 0.8, "val": 0.1, "heldout": 0.1}, seed=0)
    assert set(split) == set(res)
    counts = {s: list(split.values()).count(s) for s in ("train", "val", "heldout")}
    assert counts == {"train": 32, "val": 4, "heldout": 4}
    ordered = sorted(res, key=res.get)
    for start in range(0, 40, 10):  # every tenth of the resolution range gives 8 / 1 / 1 maps
        block = [split[m] for m in ordered[start:start + 10]]
        assert block.count("train") == 8 and block.count("val") == 1 and block.count("heldout") == 1
    assert resolution_split(res, seed=0) == split  # deterministic
    assert resolution_split(res, seed=1) != split
