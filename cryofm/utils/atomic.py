"""Atomic writes: write to a temporary file in the target's folder, fsync, then rename over it.

A reader never sees a half-written file, and a killed job leaves at most a ``.tmp-*`` file that
the next run ignores and overwrites.

Files get the mode ``open()`` would give them: ``0666`` minus the umask (0644 under umask 022,
0600 under 077), folders ``0777`` minus the umask. (``tempfile.mkstemp`` / ``mkdtemp`` create
owner-only 0600 / 0700 files whatever the umask, and ``os.replace`` keeps that mode, so a dataset
written by one user could not be read by the group; :func:`create_temp` and :func:`temp_dir` create
the temporary with the normal mode instead and let the kernel apply the umask.)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TRIES = 100


def create_temp(path: str | Path) -> tuple[int, Path]:
    """A new, empty file ``.tmp-<name>.<random>`` beside ``path``, opened read-write (like
    ``tempfile.mkstemp``, but with mode 0666 minus the umask); returns ``(fd, temp path)``."""
    path = Path(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(_TRIES):
        tmp = path.parent / f".tmp-{path.name}.{secrets.token_hex(4)}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def temp_dir(prefix: str, parent: str | Path) -> Path:
    """A new folder ``<prefix><random>`` in ``parent`` (like ``tempfile.mkdtemp``, mode 0777 minus
    the umask)."""
    for _ in range(_TRIES):
        d = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(d, 0o777)
            return d
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary folder name in {parent}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = create_temp(path)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)  # 0666 minus the umask, applied by the kernel
    os.close(fd)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
            if stat.S_IMODE(os.fstat(fh.fileno()).st_mode) != mode:  # a writer that recreated the
                os.chmod(tmp_path, mode)  # file owner-only (safetensors' save_file does)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """Atomically write ``obj`` as JSON (NaN is not allowed: write None for missing values)."""
    write_text(path, json.dumps(obj, indent=indent, allow_nan=False, default=str) + "\n")
