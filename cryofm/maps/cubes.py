"""Training-ready sub-cubes: the input map and its labels cut into overlapping cubes, in WebDataset shards.

Cubes of ``size`` voxels per side start every ``size - overlap`` voxels along each axis; the last
cube on an axis is moved back to end at the map's edge, and a map smaller than a cube is zero-padded
at its far end. One sample per cube::

    __key__              <id>_<z>_<y>_<x>          (start voxel of the cube, z/y/x order)
    input.npy            float16 [size]^3          experimental map, normalised (see normalize_map)
    regression.npy       float16 [size]^3          regression label (e/Å^3)
    classification.npy   uint8 [size]^3            0 background, 1 atom voxel, 2 neighbour
    types.npy            uint8 [size]^3            atom type codes at atom voxels
    json                 map id, start voxel, world origin of the cube (Å), voxel size, resolution

Each map gets its own shards (``<id>-NNNNNN.tar``), so the split by map is a list of shards.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cryofm.utils.atomic import atomic_path

ARRAY_KEYS = {"input": np.float16, "regression": np.float16, "classification": np.uint8, "types": np.uint8}


def normalize_map(data: np.ndarray, mode: str = "percentile", percentile: float = 99.9) -> tuple:
    """Normalise a map for training; returns (array float32, description dict).

    ``percentile``: negative densities set to 0, then divided by the map's ``percentile``-th
    percentile and clipped to [0, 1] (as map-enhancement networks commonly do); ``zscore``: zero mean,
    unit standard deviation; ``none``: unchanged.
    """
    data = data.astype(np.float32, copy=False)
    if mode == "none":
        return data.copy(), {"mode": "none"}
    if mode == "zscore":
        mean, std = float(data.mean()), float(data.std())
        return (data - mean) / (std if std > 0 else 1.0), {"mode": "zscore", "mean": mean, "std": std}
    if mode == "percentile":
        pos = np.maximum(data, 0)
        top = float(np.percentile(pos, percentile))
        scale = top if top > 0 else 1.0
        info = {"mode": "percentile", "percentile": percentile, "scale": scale}
        return np.clip(pos / scale, 0.0, 1.0), info
    raise ValueError(f"unknown normalisation {mode!r} (percentile, zscore or none)")


def cube_starts(n: int, size: int, overlap: int) -> list[int]:
    """Start indices along an axis of ``n`` voxels: every ``size - overlap``, the last ending at ``n``."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need size > 0 and 0 <= overlap < size, got size={size} overlap={overlap}")
    if n <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, n - size + 1, stride))
    if starts[-1] != n - size:
        starts.append(n - size)
    return starts


def iter_cubes(arrays: dict[str, np.ndarray], size: int, overlap: int) -> Iterator[tuple]:
    """Yield ``((z, y, x) start, {name: cube})`` over same-shape 3D arrays, zero-padding small maps."""
    shape = next(iter(arrays.values())).shape
    grids = [cube_starts(n, size, overlap) for n in shape]
    for z in grids[0]:
        for y in grids[1]:
            for x in grids[2]:
                cubes = {}
                for name, arr in arrays.items():
                    c = arr[z:z + size, y:y + size, x:x + size]
                    if c.shape != (size, size, size):
                        c = np.pad(c, [(0, size - s) for s in c.shape])
                    cubes[name] = c
                yield (z, y, x), cubes


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_cube_shards(out_dir: str | Path, map_id: str, arrays: dict[str, np.ndarray], meta: dict,
                      origin: np.ndarray, voxel_size: float, size: int = 64, overlap: int = 16,
                      keep_empty: bool = False, shard_size: int = 256) -> dict:
    """Write the cubes of one map to ``out_dir/<id>-NNNNNN.tar``; returns {shards, n_cubes}.

    ``arrays`` holds the keys of :data:`ARRAY_KEYS` on one grid; ``origin`` is the world position
    (Å, x/y/z) of voxel [0, 0, 0]. Cubes without a labelled voxel are skipped unless ``keep_empty``.
    """
    import webdataset as wds  # imports torch: only when cubes are written

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def samples() -> Iterator[dict]:
        for (z, y, x), cubes in iter_cubes(arrays, size, overlap):
            if not keep_empty and not cubes["classification"].any():
                continue
            rec = dict(meta, map_id=map_id, start_zyx=[z, y, x], size=size,
                       origin_xyz=(np.asarray(origin) + np.array([x, y, z]) * voxel_size).tolist(),
                       voxel_size=voxel_size)
            sample = {"__key__": f"{map_id}_{z}_{y}_{x}", "json": json.dumps(rec).encode("utf-8")}
            for key, dtype in ARRAY_KEYS.items():
                sample[f"{key}.npy"] = _npy(cubes[key].astype(dtype))
            yield sample

    shards: list[str] = []
    n_cubes = 0
    it = samples()
    while (first := next(it, None)) is not None:
        name = f"{map_id}-{len(shards):06d}.tar"
        with atomic_path(out_dir / name) as tmp, wds.TarWriter(str(tmp)) as writer:
            for sample in itertools.chain([first], itertools.islice(it, shard_size - 1)):
                writer.write(sample)
                n_cubes += 1
        shards.append(name)
    return {"shards": shards, "n_cubes": n_cubes}


def read_cube(sample: dict) -> dict:
    """Decode one raw WebDataset sample (bytes values) into arrays and its JSON record."""
    out = {k: np.load(io.BytesIO(sample[f"{k}.npy"]), allow_pickle=False) for k in ARRAY_KEYS}
    out["json"] = json.loads(sample["json"])
    return out
