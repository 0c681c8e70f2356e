"""Read a dataset by name of split: manifest, split, shard URLs and decoded samples.

Training and evaluation ask for ``split_urls(dataset, "train")`` (or ``val`` / ``heldout`` /
``all``), never for a list of tar paths.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cryofm.data import format as fmt
from cryofm.errors import InputError

SPLIT_NAMES = (*fmt.SPLITS, "all")


def load_manifest(dataset: str | Path) -> dict[str, Any]:
    """``<dataset>/manifest.json`` as a dict; InputError when it is absent or unreadable."""
    path = Path(dataset) / fmt.MANIFEST
    if not path.is_file():
        raise InputError(path, "no manifest: not a cryofm dataset (run `cryofm ingest` first)")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({getattr(exc, 'msg', None) or exc.reason})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("experiments"), dict) \
            or not isinstance(obj.get("shards"), list):
        raise InputError(path, "not a cryofm manifest (no experiments / shards)")
    for sh in obj["shards"]:
        check_shard_path(sh.get("path") if isinstance(sh, dict) else None, path)
    return obj


def check_shard_path(rel: Any, manifest: str | Path) -> str:
    """A shard path from a manifest: relative, inside the dataset (no ``..``, not absolute).

    A manifest is data, so a hostile or hand-edited one must not make cryofm read (or hash, or
    stream) a file outside the dataset folder.
    """
    if not isinstance(rel, str) or not rel:
        raise InputError(manifest, f"not a cryofm manifest (shard path {rel!r})")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or "\\" in rel or not rel.startswith(f"{fmt.SHARDS_DIR}/"):
        raise InputError(manifest, f"shard path {rel!r} leads outside the dataset's {fmt.SHARDS_DIR}/ "
                                   "folder: refused")
    return rel


def experiments(dataset: str | Path) -> list[str]:
    """Experiment ids in the dataset, sorted."""
    return sorted(load_manifest(dataset)["experiments"])


def load_split(dataset: str | Path) -> dict[str, str]:
    """``{experiment: "train" | "val" | "heldout"}`` from ``<dataset>/split.json``."""
    path = Path(dataset) / fmt.SPLIT
    if not path.is_file():
        raise InputError(path, "no split (run `cryofm split dataset=...` first)")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({getattr(exc, 'msg', None) or exc.reason})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("assignment"), dict):
        raise InputError(path, "not a cryofm split (no assignment)")
    bad = {str(k): v for k, v in obj["assignment"].items() if v not in fmt.SPLITS}
    if bad:
        k, v = next(iter(bad.items()))
        raise InputError(path, f"assignment of {k!r} is {v!r}, not one of {', '.join(fmt.SPLITS)}")
    return {str(k): str(v) for k, v in obj["assignment"].items()}


def split_experiments(dataset: str | Path, split: str) -> list[str]:
    """Experiments on one side of the split (``all``: every experiment, no split file needed)."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r} (one of {', '.join(SPLIT_NAMES)})")
    if split == "all":
        return experiments(dataset)
    assignment = load_split(dataset)
    ghosts = sorted(set(assignment) - set(experiments(dataset)))
    if ghosts:  # an experiment removed since the split was made (or a hand-edited split)
        raise InputError(Path(dataset) / fmt.SPLIT, f"names experiment(s) {ghosts[:3]} the dataset does not "
                                                    "have: run cryofm split again")
    return sorted(e for e, side in assignment.items() if side == split)


def split_urls(dataset: str | Path, split: str, exclude: Iterable[str] = ()) -> list[str]:
    """Absolute shard paths of the experiments on ``split`` (train | val | heldout | all), leaving
    out the experiments named in ``exclude``."""
    root = Path(dataset).resolve()
    manifest = load_manifest(root)
    keep = set(split_experiments(root, split)) - set(exclude)
    return [str(root / s["path"]) for s in manifest["shards"] if s["experiment"] in keep]


def split_counts(dataset: str | Path, split: str) -> int:
    """Number of particles on ``split``."""
    manifest = load_manifest(dataset)
    return sum(manifest["experiments"][e]["n"] for e in split_experiments(dataset, split))


def iter_raw(urls: Iterable[str | Path]) -> Iterator[dict[str, bytes]]:
    """Raw WebDataset samples (``__key__`` + extension → bytes) from tar shards, in order."""
    for url in urls:
        sample: dict[str, Any] = {}
        with tarfile.open(url, "r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if sample and key != sample["__key__"]:
                    yield sample
                    sample = {}
                sample["__key__"] = key
                sample[ext] = tar.extractfile(member).read()
        if sample:
            yield sample


def iter_samples(dataset: str | Path, split: str = "all") -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Decoded ``(float32 image, record)`` pairs of ``split`` in shard order (no shuffling)."""
    for sample in iter_raw(split_urls(dataset, split)):
        yield fmt.decode_sample(sample)
