"""Checked option values for ``cryofm ingest | split | inspect | merge``, and cleanup after bad input.

Hydra hands the commands whatever the user typed: ``box=abc`` arrives as the string ``'abc'``,
``box=0`` as 0, ``invert=maybe`` as a string that ``bool()`` would call true. Each reader here takes
the composed config and a key and returns the value in its type, or raises
:class:`~cryofm.errors.InputError` naming the key (``cryofm ingest: error: box: ...``), before anything
is read or written.

:func:`writable_dir` checks an output folder by creating it (and a probe file in it), so that
``out=`` on a file, in a read-only folder or under ``/proc`` fails at once, with the folder named.
:class:`Leftovers` removes what a failed run created under an output folder and nothing that was
there before.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cryofm.errors import InputError

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _shown(v: Any) -> Any:
    """A config value as plain Python, for messages."""
    return OmegaConf.to_container(v) if isinstance(v, (DictConfig, ListConfig)) else v


def _get(cfg: DictConfig, key: str) -> Any:
    """The value at dotted ``key`` (None when absent or ``???``)."""
    if OmegaConf.is_missing(cfg, key):
        return None
    return OmegaConf.select(cfg, key, default=None)


def required(cfg: DictConfig, key: str, what: str = "") -> Any:
    """A value that must be given (``key=...``)."""
    v = _get(cfg, key)
    if v is None or (isinstance(v, str) and not v.strip()):
        raise InputError(key, f"required ({key}={what or '...'})")
    return v


def integer(cfg: DictConfig, key: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer in ``[lo, hi]`` (an integral float such as ``1e3`` or a digit string is accepted)."""
    v = _get(cfg, key)
    rng = (f" >= {lo}" if hi is None else f" in [{lo}, {hi}]") if lo is not None else ""
    out: int | None = None
    if isinstance(v, bool):
        out = None
    elif isinstance(v, int):
        out = v
    elif isinstance(v, float) and math.isfinite(v) and v.is_integer():
        out = int(v)
    elif isinstance(v, str):
        with contextlib.suppress(ValueError):
            out = int(v.strip())
    if out is None:
        raise InputError(key, f"must be an integer{rng}, got {v!r}")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise InputError(key, f"must be an integer{rng}, got {out}")
    return out


def number(cfg: DictConfig, key: str, lo: float | None = None, hi: float | None = None,
           optional: bool = False, open_lo: bool = False) -> float | None:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``); None allowed when ``optional``."""
    v = _get(cfg, key)
    if v is None and optional:
        return None
    out: float | None = None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        out = float(v)
    elif isinstance(v, str):
        with contextlib.suppress(ValueError):
            out = float(v.strip())
    bounds = ""
    if lo is not None:
        bounds = f" {'>' if open_lo else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
    if out is None or not math.isfinite(out):
        raise InputError(key, f"must be a number{bounds}, got {v!r}")
    if lo is not None and (out < lo or (open_lo and out == lo)) or hi is not None and out > hi:
        raise InputError(key, f"must be a number{bounds}, got {out:g}")
    return out


def boolean(cfg: DictConfig, key: str) -> bool:
    """``true`` / ``false`` (also yes/no, on/off, 1/0)."""
    v = _get(cfg, key)
    return parse_bool(v, key)


def parse_bool(v: Any, key: str) -> bool:
    """A boolean from a config or table value; InputError naming ``key`` otherwise."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise InputError(key, f"must be true or false, got {v!r}")


def choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    v = _get(cfg, key)
    if not isinstance(v, str) or v not in choices:
        raise InputError(key, f"must be one of {', '.join(choices)}, got {v!r}")
    return v


def text(cfg: DictConfig, key: str, optional: bool = True) -> str | None:
    """A string (a path, an id); None when absent and ``optional``."""
    v = _get(cfg, key)
    if v is None or v == "":
        if optional:
            return None
        raise InputError(key, "required")
    if isinstance(v, (DictConfig, ListConfig, bool)):
        raise InputError(key, f"must be a single value, got {_shown(v)!r}")
    return str(v)


def text_list(cfg: DictConfig, key: str) -> list[str]:
    """A list of strings (a single value is a list of one; absent is empty)."""
    v = _get(cfg, key)
    if v is None:
        return []
    items = list(v) if isinstance(v, (ListConfig, list, tuple)) else [v]
    for x in items:
        if isinstance(x, (DictConfig, ListConfig, dict, list)) or x is None or str(x) == "":
            raise InputError(key, f"must be a list of names, got {_shown(v)!r}")
    return [str(x) for x in items]


def fractions(cfg: DictConfig, key: str = "fractions") -> list[float]:
    """Three non-negative numbers (train, val, heldout) summing to 1 (within 1e-6)."""
    v = _get(cfg, key)
    shown = _shown(v)
    problem = f"must be three non-negative numbers [train,val,heldout] summing to 1, got {shown!r}"
    if not isinstance(v, (ListConfig, list, tuple)) or len(v) != 3:
        raise InputError(key, problem)
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
            raise InputError(key, problem)
        out.append(float(x))
    if abs(sum(out) - 1.0) > 1e-6:
        raise InputError(key, f"{problem} (they sum to {sum(out):g})")
    return out


def existing_dir(cfg: DictConfig, key: str) -> Path:
    """A folder that exists (``dataset=``)."""
    p = Path(str(required(cfg, key, "<dataset folder>")))
    if not p.exists():
        raise InputError(p, "no such folder")
    if not p.is_dir():
        raise InputError(p, "not a folder")
    return p


def existing_file(cfg: DictConfig, key: str, what: str = "file") -> Path | None:
    """A file that exists, or None when the key is not given."""
    v = text(cfg, key)
    if v is None:
        return None
    p = Path(v)
    if not p.is_file():
        raise InputError(p, f"{what} not found" if not p.exists() else f"{what} is not a file")
    return p


def writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) and prove it writable with a probe file.

    InputError naming the folder when it is a file, cannot be created, or is not writable (read-only
    folder or file system, ``/proc``, ...). Run it inside :class:`Leftovers` so that folders it
    created are removed when the run fails later.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(p, "exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(p, f"cannot write here ({exc.strerror or exc})") from None
    return p


def writable_file(path: str | Path) -> Path:
    """``path`` is a file cryofm may write (its folder writable, not an existing folder)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(p, "is a folder, not a file name")
    writable_dir(p.parent)
    return p


def _snapshot(folder: Path) -> set[Path] | None:
    if not folder.exists():
        return None
    out = {folder}
    for base, dirs, files in os.walk(folder):
        b = Path(base)
        out.update(b / d for d in dirs)
        out.update(b / f for f in files)
    return out


class Leftovers:
    """Context manager: on bad input (InputError, OSError) remove what the run created under
    ``folder`` (the folder itself and missing parents too, when the run created them); what existed
    before stays. Interruptions (KeyboardInterrupt) leave everything for a resume.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).absolute()
        # the highest missing folder on the way to ``folder``: all of it is this run's if it fails
        self.first_new: Path | None = None
        p = self.folder
        while not p.exists() and p.parent != p:
            self.first_new, p = p, p.parent
        self.before = _snapshot(self.folder)

    def __enter__(self) -> Leftovers:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None or not issubclass(kind, (InputError, OSError)):
            return
        with contextlib.suppress(OSError):
            self.clean()

    def clean(self) -> None:
        """Remove what was created since the snapshot (deepest first)."""
        if self.first_new is not None:
            if self.first_new.is_dir() and not self.first_new.is_symlink():
                shutil.rmtree(self.first_new, ignore_errors=True)
            elif self.first_new.exists():
                self.first_new.unlink()
            return
        now = _snapshot(self.folder) or set()
        for p in sorted(now - (self.before or set()), key=lambda q: len(q.parts), reverse=True):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


@contextlib.contextmanager
def cleanup_on_error(folder: str | Path) -> Iterator[Leftovers]:
    """``with cleanup_on_error(out): ...`` (see :class:`Leftovers`)."""
    with Leftovers(folder) as lo:
        yield lo
