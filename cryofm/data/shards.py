"""Resumable, atomic writing of one experiment's WebDataset shards.

Samples arrive in a fixed order; shard ``k`` holds samples ``k*shard_size .. (k+1)*shard_size-1``.
Each shard is written to a temporary file and renamed into place only when complete, and after each
rename a small progress file (``experiments/.<exp>.progress.json``) records the finished shards, how
many samples they hold and the running pixel / coverage statistics. A killed job therefore leaves
only whole shards plus a progress file; the next run skips the samples already written and goes on
from the next shard, so no particle is lost or written twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

from cryofm.data import format as fmt
from cryofm.utils.atomic import atomic_path, write_json


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def progress_path(root: Path, experiment: str) -> Path:
    """Where the in-progress state of ``experiment`` lives (hidden; removed when the ingest ends)."""
    return root / fmt.EXPERIMENTS_DIR / f".{experiment}.progress.json"


def experiment_path(root: Path, experiment: str) -> Path:
    """The finished per-experiment manifest."""
    return root / fmt.EXPERIMENTS_DIR / f"{experiment}.json"


def load_progress(root: Path, experiment: str, fingerprint: str) -> dict[str, Any] | None:
    """The saved progress of an interrupted ingest with the same fingerprint, else None."""
    p = progress_path(root, experiment)
    if not p.is_file():
        return None
    try:
        state = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if state.get("fingerprint") != fingerprint:
        return None
    # every recorded shard must still be there, whole
    for sh in state.get("shards", []):
        f = root / sh["path"]
        if not f.is_file() or f.stat().st_size != sh["bytes"]:
            return None
    return state


def clear_experiment(root: Path, experiment: str) -> None:
    """Remove every shard and state file of ``experiment`` (start over, or undo after bad input)."""
    shutil.rmtree(root / fmt.SHARDS_DIR / experiment, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        progress_path(root, experiment).unlink()


def write_tar(path: str | Path, samples: list[dict]) -> None:
    """Write samples as a WebDataset tar: member ``<__key__>.<ext>`` per field, in sample order.

    The layout is ``webdataset.TarWriter``'s; the standard ``tarfile`` module is used so that ingest
    workers do not import torch, and fixed member metadata (mtime 0) makes shards byte-reproducible.
    """
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            key = sample["__key__"]
            for ext, data in sample.items():
                if ext.startswith("__"):
                    continue
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mode = 0o444
                info.uname = info.gname = "cryofm"
                tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """Write samples into ``shards/<exp>/<exp>-NNNNNN.tar``, ``shard_size`` samples per shard.

    Args:
        root: dataset folder.
        experiment: experiment id.
        shard_size: samples per shard (the last shard may hold fewer).
        fingerprint: hash of everything that determines the shards' content (resume only matches it).
        state: progress of an interrupted run (from :func:`load_progress`), or None to start fresh.
    """

    def __init__(self, root: str | Path, experiment: str, shard_size: int, fingerprint: str,
                 state: dict[str, Any] | None = None):
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.root = Path(root)
        self.experiment = experiment
        self.shard_size = int(shard_size)
        self.fingerprint = fingerprint
        state = state or {}
        self.shards: list[dict[str, Any]] = list(state.get("shards", []))
        self.stats: dict[str, Any] = dict(state.get("stats", {}))
        self.n_done = sum(s["n"] for s in self.shards)
        self._pending: list[dict] = []
        if not self.shards:
            clear_experiment(self.root, experiment)
        (self.root / fmt.SHARDS_DIR / experiment).mkdir(parents=True, exist_ok=True)

    def add(self, sample: dict, stats: dict[str, Any]) -> None:
        """Queue one encoded sample; ``stats`` is the running statistics after it (saved per shard)."""
        self._pending.append(sample)
        if len(self._pending) >= self.shard_size:
            self._flush(stats)

    def finish(self, stats: dict[str, Any]) -> list[dict[str, Any]]:
        """Write the last partial shard; return the list of shard records."""
        if self._pending:
            self._flush(stats)
        return self.shards

    def _flush(self, stats: dict[str, Any]) -> None:
        index = len(self.shards)
        rel = fmt.shard_relpath(self.experiment, index)
        path = self.root / rel
        with atomic_path(path) as tmp:
            write_tar(tmp, self._pending)
            digest = sha256_file(tmp)
            size = tmp.stat().st_size
        self.shards.append({"path": rel, "n": len(self._pending), "bytes": size, "sha256": digest})
        self.n_done += len(self._pending)
        self._pending = []
        self.stats = stats
        write_json(progress_path(self.root, self.experiment),
                   {"fingerprint": self.fingerprint, "shards": self.shards, "stats": stats}, indent=None)
        self.on_shard(index)

    def on_shard(self, index: int) -> None:
        """Hook called after shard ``index`` is safely on disk (tests use it to simulate a crash)."""
