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
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from cryofm.data import format as fmt
from cryofm.utils.atomic import write_json


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


class _HashingFile:
    """A write-only file wrapper that hashes (SHA-256) and counts what passes through."""

    def __init__(self, fh):
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.fh.flush()


def _add(tar: tarfile.TarFile, sample: dict) -> None:
    """Append one sample as WebDataset members ``<__key__>.<ext>``, in the sample's field order.

    The layout is ``webdataset.TarWriter``'s; the standard ``tarfile`` module is used so that ingest
    workers do not import torch, and fixed member metadata (mtime 0) makes shards byte-reproducible.
    """
    key = sample["__key__"]
    for ext, data in sample.items():
        if ext.startswith("__"):
            continue
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size = len(data)
        info.mode = 0o444
        info.uname = info.gname = "cryofm"
        tar.addfile(info, io.BytesIO(data))


def write_tar(path: str | Path, samples: list[dict]) -> None:
    """Write samples as one WebDataset tar (non-atomic helper for tests and tools)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            _add(tar, sample)


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
        self._open: tuple[Path, Any, _HashingFile, tarfile.TarFile] | None = None
        self._count = 0
        if not self.shards:
            clear_experiment(self.root, experiment)
        folder = self.root / fmt.SHARDS_DIR / experiment
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-*"):  # a killed run's half-written shard
            stale.unlink(missing_ok=True)

    def add(self, sample: dict, stats: dict[str, Any]) -> None:
        """Append one encoded sample to the open shard (streamed to a temporary file, so memory does
        not depend on the shard size); ``stats`` is the running statistics after it."""
        if self._open is None:
            path = self.root / fmt.shard_relpath(self.experiment, len(self.shards))
            fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
            fh = os.fdopen(fd, "wb")
            hf = _HashingFile(fh)
            # stays open across add() calls until the shard is full: closed in _close_shard / abort
            tar = tarfile.open(fileobj=hf, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
            self._open = (Path(tmp), fh, hf, tar)
            self._count = 0
        _add(self._open[3], sample)
        self._count += 1
        if self._count >= self.shard_size:
            self._close_shard(stats)

    def finish(self, stats: dict[str, Any]) -> list[dict[str, Any]]:
        """Close the last (partial) shard; return the list of shard records."""
        if self._open is not None:
            self._close_shard(stats)
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (its temporary file); finished shards stay for a resume."""
        if self._open is not None:
            tmp, fh, _, _ = self._open
            self._open = None
            fh.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _close_shard(self, stats: dict[str, Any]) -> None:
        tmp, fh, hf, tar = self._open
        index = len(self.shards)
        rel = fmt.shard_relpath(self.experiment, index)
        try:
            tar.close()
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(tmp, self.root / rel)
        except BaseException:
            self.abort()
            raise
        self._open = None
        self.shards.append({"path": rel, "n": self._count, "bytes": hf.size, "sha256": hf.sha.hexdigest()})
        self.n_done += self._count
        self.stats = stats
        write_json(progress_path(self.root, self.experiment),
                   {"fingerprint": self.fingerprint, "shards": self.shards, "stats": stats}, indent=None)
        self.on_shard(index)

    def on_shard(self, index: int) -> None:
        """Hook called after shard ``index`` is safely on disk (tests use it to simulate a crash)."""
