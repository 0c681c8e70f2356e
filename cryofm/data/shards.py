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
from pathlib import Path
from typing import Any

from cryofm.data import format as fmt
from cryofm.utils.atomic import create_temp, write_json


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


def read_progress(root: Path, experiment: str) -> dict[str, Any] | None:
    """The saved progress file of an interrupted ingest, whatever its fingerprint (None if absent or
    unreadable)."""
    p = progress_path(root, experiment)
    if not p.is_file():
        return None
    try:
        state = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) else None


def load_progress(root: Path, experiment: str, fingerprint: str) -> dict[str, Any] | None:
    """The saved progress of an interrupted ingest with the same fingerprint, else None."""
    state = read_progress(root, experiment)
    if state is None:
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


_UNAME = "cryofm"
_MODE = 0o444


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = _MODE
    info.uname = info.gname = _UNAME
    return info


def _ustar_header(name: str, size: int) -> bytes:
    """The 512-byte header ``tarfile`` (PAX format) writes for a regular file member of ours.

    Built directly (``TarInfo.tobuf`` costs ~40 µs a member, a quarter of a particle's write time);
    names that do not fit the 100-byte name field go through ``tarfile`` itself (a PAX extended header
    holds them). Byte-identical to ``tarfile`` output (tested).
    """
    raw = name.encode("utf-8")
    if len(raw) >= 100 or size >= 8**11:
        return _tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    h = bytearray(512)
    h[0:len(raw)] = raw
    h[100:108] = b"%07o\0" % _MODE
    h[108:116] = h[116:124] = b"0000000\0"  # uid, gid
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"00000000000\0"  # mtime 0: shards are byte-reproducible
    h[148:156] = b" " * 8  # checksum field counts as spaces while summing
    h[156:157] = tarfile.REGTYPE
    h[257:265] = tarfile.POSIX_MAGIC
    h[265:265 + len(_UNAME)] = h[297:297 + len(_UNAME)] = _UNAME.encode()
    # devmajor, devminor (329:345) stay NUL, as tarfile's PAX format leaves them for regular files
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def tar_members(sample: dict) -> bytes:
    """One sample as WebDataset tar members ``<__key__>.<ext>`` (header, data, padding), in the
    sample's field order: the bytes ``tarfile`` writes for them (see :func:`write_tar`)."""
    key = sample["__key__"]
    out = []
    for ext, data in sample.items():
        if ext.startswith("__"):
            continue
        out.append(_ustar_header(f"{key}.{ext}", len(data)))
        out.append(data)
        if pad := -len(data) % tarfile.BLOCKSIZE:
            out.append(bytes(pad))
    return b"".join(out)


def tar_end(size: int) -> bytes:
    """What ``tarfile`` appends on close to an archive of ``size`` bytes: two zero blocks, then zeros
    up to a whole record (20 blocks)."""
    size += 2 * tarfile.BLOCKSIZE
    return bytes(2 * tarfile.BLOCKSIZE + (-size % tarfile.RECORDSIZE))


def _add(tar: tarfile.TarFile, sample: dict) -> None:
    """Append one sample as WebDataset members ``<__key__>.<ext>``, in the sample's field order.

    The layout is ``webdataset.TarWriter``'s, written with the standard ``tarfile`` module; fixed
    member metadata (mtime 0) makes shards byte-reproducible. :class:`ShardWriter` writes the same
    bytes through :func:`tar_members`.
    """
    key = sample["__key__"]
    for ext, data in sample.items():
        if ext.startswith("__"):
            continue
        tar.addfile(_tarinfo(f"{key}.{ext}", len(data)), io.BytesIO(data))


def write_tar(path: str | Path, samples: list[dict]) -> None:
    """Write samples as one WebDataset tar with ``tarfile`` (non-atomic helper for tests and tools)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
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

    BUFFER = 8 << 20  # bytes of tar members gathered before a write

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
        self._open: tuple[Path, Any, _HashingFile] | None = None
        self._buf = bytearray()
        self._count = 0
        self.inputs: dict[str, str] = {}  # input digests, kept in the progress file (names what changed)
        if not self.shards:
            clear_experiment(self.root, experiment)
        folder = self.root / fmt.SHARDS_DIR / experiment
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-*"):  # a killed run's half-written shard
            stale.unlink(missing_ok=True)

    def add(self, sample: dict, stats: dict[str, Any]) -> None:
        """Append one encoded sample to the open shard; ``stats`` is the running statistics after it.

        Members are gathered in a buffer of at most ``BUFFER`` bytes and streamed to a temporary file,
        so memory does not depend on the shard size.
        """
        if self._open is None:
            path = self.root / fmt.shard_relpath(self.experiment, len(self.shards))
            fd, tmp = create_temp(path)  # mode 0666 minus the umask, as the final shard
            # stays open across add() calls until the shard is full: closed in _close_shard / abort
            fh = os.fdopen(fd, "wb")
            self._open = (Path(tmp), fh, _HashingFile(fh))
            self._count = 0
        self._buf += tar_members(sample)
        if len(self._buf) >= self.BUFFER:
            self._drain()
        self._count += 1
        if self._count >= self.shard_size:
            self._close_shard(stats)

    def _drain(self) -> None:
        self._open[2].write(self._buf)
        self._buf = bytearray()

    def finish(self, stats: dict[str, Any]) -> list[dict[str, Any]]:
        """Close the last (partial) shard; return the list of shard records."""
        if self._open is not None:
            self._close_shard(stats)
        return self.shards

    def abort(self) -> None:
        """Drop the shard being written (its temporary file); finished shards stay for a resume."""
        self._buf = bytearray()
        if self._open is not None:
            tmp, fh, _ = self._open
            self._open = None
            fh.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _close_shard(self, stats: dict[str, Any]) -> None:
        tmp, fh, hf = self._open
        index = len(self.shards)
        rel = fmt.shard_relpath(self.experiment, index)
        try:
            self._drain()
            hf.write(tar_end(hf.size))
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
                   {"fingerprint": self.fingerprint, "shards": self.shards, "stats": stats,
                    "inputs": self.inputs}, indent=None)
        self.on_shard(index)

    def on_shard(self, index: int) -> None:
        """Hook called after shard ``index`` is safely on disk (tests use it to simulate a crash)."""
