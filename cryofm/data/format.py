"""The on-disk layout of a cryofm dataset and the encoding of one WebDataset sample.

A dataset is a folder::

    <dataset>/manifest.json                      shards, counts, checksums, schema version, config
    <dataset>/split.json                         experiment -> "train" | "val" | "heldout"
    <dataset>/experiments/<exp>.json             per-experiment manifest (merged into manifest.json)
    <dataset>/shards/<exp>/<exp>-000000.tar      WebDataset shards, one experiment per shard

Shard paths in manifests are relative to the dataset root so that a dataset can be moved.

A sample holds ``image.npy`` (a 2D array, float16 per-particle normalised, or uint8 with
``ImageScale``/``ImageOffset`` in the JSON) and ``json`` (the schema record, NaN written as null).
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np

from cryofm import schema

MANIFEST = "manifest.json"
SPLIT = "split.json"
EXPERIMENTS_DIR = "experiments"
SHARDS_DIR = "shards"
IMAGE_KEY = "image.npy"
JSON_KEY = "json"
SPLITS = ("train", "val", "heldout")

_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-]")


def sample_key(uid: str) -> str:
    """WebDataset ``__key__`` for a particle uid (no dots or slashes: WebDataset splits on them)."""
    return _KEY_BAD.sub("_", uid)


def shard_relpath(experiment: str, index: int) -> str:
    """Relative path of shard ``index`` of ``experiment``."""
    return f"{SHARDS_DIR}/{experiment}/{experiment}-{index:06d}.tar"


def encode_image(image: np.ndarray, dtype: str = "float16") -> tuple[bytes, float, float]:
    """Encode a normalised 2D image as ``.npy`` bytes.

    Returns (bytes, scale, offset): for uint8, ``value = stored * scale + offset``; for float16 both
    are NaN (stored values are the values).
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    scale = offset = float("nan")
    if dtype == "float16":
        arr = np.clip(image, -6.0e4, 6.0e4).astype(np.float16)
    elif dtype == "uint8":
        lo, hi = float(image.min()), float(image.max())
        scale = (hi - lo) / 255.0 if hi > lo else 1.0
        offset = lo
        arr = np.round((image - lo) / scale).clip(0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown image dtype {dtype!r} (float16 or uint8)")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue(), scale, offset


def encode_sample(uid: str, image: np.ndarray, record: dict[str, Any], dtype: str = "float16") -> dict:
    """One WebDataset sample dict for ``webdataset.TarWriter``."""
    data, scale, offset = encode_image(image, dtype)
    rec = dict(record)
    rec["uid"] = uid
    rec["ImageScale"], rec["ImageOffset"] = scale, offset
    rec["EffectiveImageSize"] = int(image.shape[-1])
    body = json.dumps(schema.to_json_record(rec), allow_nan=False).encode("utf-8")
    return {"__key__": sample_key(uid), IMAGE_KEY: data, JSON_KEY: body}


def decode_image(data: bytes, record: dict[str, Any]) -> np.ndarray:
    """``.npy`` bytes → float32 image, undoing uint8 scaling when recorded."""
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    if arr.dtype == np.uint8:
        scale, offset = record.get("ImageScale"), record.get("ImageOffset")
        scale = 1.0 if schema.is_missing(scale) else float(scale)
        offset = 0.0 if schema.is_missing(offset) else float(offset)
        return arr.astype(np.float32) * scale + offset
    return arr.astype(np.float32)


def decode_sample(sample: dict) -> tuple[np.ndarray, dict[str, Any]]:
    """Raw WebDataset sample (bytes values) → (float32 image, record with NaN for missing)."""
    obj = sample[JSON_KEY]
    if isinstance(obj, (bytes, bytearray)):
        obj = json.loads(obj.decode("utf-8"))
    record = schema.from_json_record(obj)
    return decode_image(sample[IMAGE_KEY], record), record
