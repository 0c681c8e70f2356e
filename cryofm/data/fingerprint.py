"""Cheap content digests of an ingest's input files, so resume and rerun notice changed inputs.

A file's digest is its size, its modification time (ns) and a SHA-256 of its content: the whole file
for metadata (``.star`` / ``.cs`` / class tables: small next to the stacks), and for image stacks the
first :data:`HEAD` bytes (the MRC header and extended header, and the start of the first image) plus
:data:`SAMPLES` blocks of :data:`BLOCK` bytes spread evenly over the rest, ending with the last block.
A rewritten stack changes its mtime (and almost always its size or sampled bytes); ``touch`` alone
also counts as a change, which errs on the safe side. Cost per stack: one ``stat`` and six 4-64 KiB
reads, whatever the stack's size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from cryofm.errors import InputError

HEAD = 64 << 10  # bytes hashed from the start of a stack
BLOCK = 4 << 10  # bytes of each sampled block
SAMPLES = 5  # blocks sampled after the head (the last one ends at the end of the file)


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror})") from None


def file_digest(path: str | Path) -> str:
    """``size:mtime_ns:sha256`` of a whole (small) file."""
    path = Path(path)
    st = _stat(path)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror})") from None
    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()[:32]}"


def stack_digest(path: str | Path) -> str:
    """``size:mtime_ns:sha256`` of a stack's head and sampled blocks (see the module doc)."""
    path = Path(path)
    st = _stat(path)
    size = st.st_size
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            h.update(os.pread(fh.fileno(), min(HEAD, size), 0))
            if size > HEAD:
                span = size - HEAD - BLOCK
                for k in range(1, SAMPLES + 1):
                    off = HEAD + max(0, span) * k // SAMPLES
                    h.update(os.pread(fh.fileno(), BLOCK, off))
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror})") from None
    return f"{size}:{st.st_mtime_ns}:{h.hexdigest()[:32]}"


def input_digests(metadata: Iterable[str | Path], stacks: Iterable[str | Path]) -> dict[str, str]:
    """``{absolute path: digest}`` of the metadata files (whole) and the stacks (sampled)."""
    out: dict[str, str] = {}
    for p in metadata:
        out[str(Path(p).resolve())] = file_digest(p)
    for p in stacks:
        out.setdefault(str(Path(p).resolve()), stack_digest(p))
    return dict(sorted(out.items()))


def changed_inputs(before: dict[str, str] | None, now: dict[str, str] | None) -> list[str]:
    """Files whose digest differs between two runs (or that one run has and the other lacks)."""
    before, now = before or {}, now or {}
    if not before or not now:  # a run that recorded no digests (arrays, or an older cryofm): unknown
        return []
    return sorted(p for p in set(before) | set(now) if before.get(p) != now.get(p))
