"""An on-disk cache of particle features, keyed so that probes with other settings never recompute.

Layout under ``cache_dir``::

    features/<key>/key.json          what the key was computed from (human-readable)
    features/<key>/features.npy      [N, F] float32, row i is particle uids[i]
    features/<key>/uids.npy          [N] particle uids (the index back to the dataset)
    features/<key>/parts/*.npz       per-shard pieces while extraction runs (resume point)
    records/<key>/records.npz        the particles' annotation columns (shared by all featurizers)

The feature key is a hash over (featurizer identity — checkpoint SHA-256 or random-init seed or pixel
size, and the layer variant —, dataset identity, split, per-experiment cap). The dataset identity is
the hash of ``manifest.json`` plus the shard names and sizes, so a moved dataset still hits and a
rewritten one misses. Extraction writes one part per shard atomically, so a killed run resumes at
the next shard.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cryofm import schema
from cryofm.data.format import MANIFEST
from cryofm.features.particles import iter_shard
from cryofm.utils import atomic

FEATURES = "features.npy"
UIDS = "uids.npy"
RECORDS = "records.npz"
REC = "rec__"  # prefix of the record columns inside a per-shard part


def digest(obj: Any, n: int = 20) -> str:
    """Short SHA-256 hex of a JSON-serialisable object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def dataset_identity(urls: Sequence[str | Path], dataset: str | Path | None = None) -> str:
    """Hash of the dataset's manifest (when given) and the shards' names and sizes."""
    parts: list[Any] = []
    if dataset is not None and (Path(dataset) / MANIFEST).is_file():
        parts.append(hashlib.sha256((Path(dataset) / MANIFEST).read_bytes()).hexdigest())
    for u in urls:
        p = Path(u)
        parts.append([p.parent.name, p.name, p.stat().st_size if p.exists() else -1])
    return digest(parts)


@dataclass
class Features:
    """Features of one split: ``x`` [N, F] float32, ``uids`` [N], annotation ``records`` (columns)."""

    x: np.ndarray
    uids: np.ndarray
    records: dict[str, np.ndarray]
    key: str
    computed: bool  # False when everything came from the cache


def _records_to_columns(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Schema records → columns: float64 (NaN missing) for numbers, unicode ('' missing) otherwise."""
    cols: dict[str, np.ndarray] = {}
    for f in schema.FIELDS:
        vals = [r.get(f.name) for r in records]
        if f.dtype in ("float", "int"):
            cols[f.name] = np.array([np.nan if schema.is_missing(v) else float(v) for v in vals], np.float64)
        else:
            cols[f.name] = np.array(["" if schema.is_missing(v) else str(v) for v in vals], dtype=str)
    return cols


def columns_to_records(cols: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """Columns as stored → ``field -> list`` with None / NaN for missing (what probes read)."""
    out: dict[str, list[Any]] = {}
    for name, arr in cols.items():
        if arr.dtype.kind in "US":
            out[name] = [None if v == "" else str(v) for v in arr.tolist()]
        else:
            out[name] = arr.tolist()
    return out


class FeatureCache:
    """Features of dataset splits, computed once per key and read back afterwards."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def feature_key(self, identity: dict[str, Any], data_id: str, split: str, per_experiment: int) -> str:
        return digest({"featurizer": identity, "data": data_id, "split": split, "cap": int(per_experiment)})

    def records_key(self, data_id: str, split: str, per_experiment: int) -> str:
        return digest({"data": data_id, "split": split, "cap": int(per_experiment)})

    def get(
        self,
        featurizer: Callable[[np.ndarray], np.ndarray],
        identity: dict[str, Any],
        urls: Sequence[str | Path],
        split: str,
        dataset: str | Path | None = None,
        per_experiment: int = 0,
        batch_size: int = 64,
        progress: bool = True,
    ) -> Features:
        """Features of the particles in ``urls`` (at most ``per_experiment`` per experiment, first in
        shard order; 0 = all), from the cache or computed and stored."""
        data_id = dataset_identity(urls, dataset)
        fkey = self.feature_key(identity, data_id, split, per_experiment)
        rkey = self.records_key(data_id, split, per_experiment)
        fdir, rdir = self.root / "features" / fkey, self.root / "records" / rkey
        have_f = (fdir / FEATURES).is_file() and (fdir / UIDS).is_file()
        have_r = (rdir / RECORDS).is_file()
        computed = False
        if not (have_f and have_r):
            self._extract(
                featurizer,
                identity,
                urls,
                split,
                fdir,
                rdir,
                per_experiment,
                batch_size,
                progress,
                want_features=not have_f,
                want_records=not have_r,
            )
            computed = True
        x = np.load(fdir / FEATURES, allow_pickle=False)
        uids = np.load(fdir / UIDS, allow_pickle=False)
        with np.load(rdir / RECORDS, allow_pickle=False) as z:
            records = {k: z[k] for k in z.files}
        if len(records["uid"]) != len(uids) or not np.array_equal(records["uid"], uids):
            raise RuntimeError(f"{fdir}: cached uids disagree with {rdir} (delete both to recompute)")
        return Features(x=x, uids=uids, records=records, key=fkey, computed=computed)

    def _extract(
        self,
        featurizer,
        identity,
        urls,
        split,
        fdir,
        rdir,
        per_experiment,
        batch_size,
        progress,
        want_features: bool,
        want_records: bool,
    ) -> None:
        parts = fdir / "parts"
        parts.mkdir(parents=True, exist_ok=True)
        atomic.write_json(
            fdir / "key.json",
            {
                "featurizer": identity,
                "split": split,
                "per_experiment": per_experiment,
                "shards": [str(u) for u in urls],
            },
        )
        seen: Counter[str] = Counter()
        pieces: list[dict[str, np.ndarray]] = []
        bar = tqdm(urls, desc=f"features {split}", unit="shard", disable=not progress)
        for i, url in enumerate(bar):
            part = parts / f"{i:06d}.npz"
            if part.is_file():  # resumed: this shard is done
                with np.load(part, allow_pickle=False) as z:
                    piece = {k: z[k] for k in z.files}
                seen.update(piece[REC + "experiment"].tolist())
            else:
                piece = self._shard(url, featurizer, seen, per_experiment, batch_size, want_features)
                with atomic.atomic_path(part) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, **piece)
            pieces.append(piece)
        uids = np.concatenate([p["uids"] for p in pieces]) if pieces else np.array([], dtype=str)
        if want_records:
            cols = {
                f.name: np.concatenate([p[REC + f.name] for p in pieces]) if pieces else np.array([])
                for f in schema.FIELDS
            }
            with atomic.atomic_path(rdir / RECORDS) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **cols)
        if want_features:
            nonempty = [p["x"] for p in pieces if p["x"].size]
            x = np.concatenate(nonempty) if nonempty else np.zeros((0, 0), np.float32)
            with atomic.atomic_path(fdir / UIDS) as tmp, open(tmp, "wb") as fh:
                np.save(fh, uids)
            with atomic.atomic_path(fdir / FEATURES) as tmp, open(tmp, "wb") as fh:
                np.save(fh, x)
        shutil.rmtree(parts, ignore_errors=True)

    @staticmethod
    def _shard(
        url, featurizer, seen: Counter[str], cap: int, batch_size: int, want_features: bool
    ) -> dict[str, np.ndarray]:
        """One shard streamed in batches (memory ~ one batch): features, uids and record columns of
        the particles kept under the per-experiment cap."""
        folder_exp = Path(url).parent.name  # shards/<exp>/<exp>-NNNNNN.tar: one experiment per shard
        feats: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        recs: list[dict[str, Any]] = []

        def flush() -> None:
            if batch and want_features:
                feats.append(np.asarray(featurizer(np.stack(batch)), np.float32))
            batch.clear()

        if not (cap and seen[folder_exp] >= cap):  # a full experiment's shards are not even opened
            for img, rec in iter_shard(url):
                exp = str(rec.get("experiment"))
                if cap and seen[exp] >= cap:
                    if exp == folder_exp:
                        break
                    continue
                seen[exp] += 1
                batch.append(img)
                recs.append(rec)
                if len(batch) == batch_size:
                    flush()
            flush()
        x = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
        piece = {"x": x, "uids": np.array([r["uid"] for r in recs], dtype=str)}
        piece.update({REC + k: v for k, v in _records_to_columns(recs).items()})
        return piece
