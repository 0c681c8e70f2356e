"""Checks of config values at the entry points: each raises InputError naming the key.

``cfg`` is an OmegaConf config; ``key`` a dotted path (``train.batch_size_per_gpu``). Values come
from the command line through Hydra, so ``4`` is already an int, ``abc`` a string, ``true`` a bool.
The message is ``<key>: <problem> (got <value>)``, printed as ``<prog>: error: <key>: ...``.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cryofm.errors import InputError

_MISSING = object()


def value(cfg: Any, key: str, default: Any = _MISSING) -> Any:
    """``cfg.<key>`` (dotted); ``???`` → InputError "a value is required"; absent → ``default``
    (InputError when no default is given)."""
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        v = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=True)
    except MissingMandatoryValue:
        raise InputError(key, f"a value is required ({key}=...)") from None
    except OmegaConfBaseException as exc:  # e.g. an interpolation to a key that does not exist
        raise InputError(key, f"cannot resolve: {str(exc).splitlines()[0]}") from None
    if v is _MISSING:
        if default is _MISSING:
            raise InputError(key, "missing from the config")
        return default
    return v


def _got(v: Any) -> str:
    return f"(got {v!r})"


def required(cfg: Any, key: str) -> Any:
    """A value that must be given (not ``???``, null or empty)."""
    v = value(cfg, key, None)
    if v is None or (isinstance(v, str) and not v.strip()):
        raise InputError(key, f"a value is required ({key}=...)")
    return v


def integer(cfg: Any, key: str, lo: int | None = None, hi: int | None = None,
            none_ok: bool = False) -> int | None:
    """An int in [lo, hi] (a float with an integer value is accepted; bools and strings are not)."""
    v = value(cfg, key, None)
    if v is None and none_ok:
        return None
    ok = isinstance(v, int) and not isinstance(v, bool)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        ok, v = True, int(v)
    rng = _range_text(lo, hi)
    if not ok:
        raise InputError(key, f"must be an integer{rng} {_got(v)}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(key, f"must be an integer{rng} {_got(v)}")
    return int(v)


def number(cfg: Any, key: str, lo: float | None = None, hi: float | None = None, none_ok: bool = False,
           lo_open: bool = False) -> float | None:
    """A finite number in [lo, hi] (``lo_open``: strictly above lo)."""
    v = value(cfg, key, None)
    if v is None and none_ok:
        return None
    return _number(key, v, lo, hi, lo_open)


def _number(key: str, v: Any, lo: float | None, hi: float | None, lo_open: bool = False) -> float:
    rng = _range_text(lo, hi, lo_open)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise InputError(key, f"must be a number{rng} {_got(v)}")
    x = float(v)
    if (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and x > hi):
        raise InputError(key, f"must be a number{rng} {_got(v)}")
    return x


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" <= {hi:g}"
    return ""


def numbers(cfg: Any, key: str, length: int | None = None, lo: float | None = None, hi: float | None = None,
            none_ok: bool = False, increasing: bool = False) -> list[float] | None:
    """A list of numbers (``length`` of them if given), each in [lo, hi]."""
    v = value(cfg, key, None)
    if v is None and none_ok:
        return None
    if OmegaConf.is_list(v):
        v = list(v)
    if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length) or not v:
        n = f"{length} " if length is not None else ""
        example = ", ".join(["0.5"] * (length or 2))
        raise InputError(key, f"must be a list of {n}numbers, e.g. [{example}] {_got(v)}")
    out = [_number(f"{key}[{i}]", x, lo, hi) for i, x in enumerate(v)]
    if increasing and any(b < a for a, b in zip(out, out[1:], strict=False)):
        raise InputError(key, f"must be in increasing order {_got(out)}")
    return out


def choice(cfg: Any, key: str, options: Iterable[Any], none_ok: bool = False) -> Any:
    """One of ``options``."""
    v = value(cfg, key, None)
    if v is None and none_ok:
        return None
    opts = list(options)
    if v not in opts or isinstance(v, bool) != any(isinstance(o, bool) and o == v for o in opts):
        raise InputError(key, f"must be one of {', '.join(str(o) for o in opts)} {_got(v)}")
    return v


def boolean(cfg: Any, key: str) -> bool:
    """``true`` / ``false``."""
    v = value(cfg, key, None)
    if not isinstance(v, bool):
        raise InputError(key, f"must be true or false {_got(v)}")
    return v


def text(cfg: Any, key: str, none_ok: bool = True) -> str | None:
    """A string (numbers are accepted and turned into text, e.g. an experiment id ``10028``)."""
    v = value(cfg, key, None)
    if v is None and none_ok:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise InputError(key, f"must be a text value {_got(v)}")
    return str(v)


def existing_dir(cfg: Any, key: str, what: str = "folder") -> Path:
    """A folder that exists."""
    p = Path(str(required(cfg, key))).expanduser()
    if not p.exists():
        raise InputError(p, f"{what} not found ({key}=)")
    if not p.is_dir():
        raise InputError(p, f"not a folder ({key}= names a {what})")
    return p


def existing_file(cfg: Any, key: str, what: str = "file", suffixes: Sequence[str] = ()) -> Path:
    """A file that exists (with one of ``suffixes`` when given)."""
    p = Path(str(required(cfg, key))).expanduser()
    if not p.exists():
        raise InputError(p, f"{what} not found ({key}=)")
    if p.is_dir():
        raise InputError(p, f"is a folder, not a {what} ({key}=)")
    if suffixes and p.suffix.lower() not in suffixes:
        raise InputError(p, f"{what} must end in {' or '.join(suffixes)} ({key}=)")
    return p


def writable_output(cfg: Any, key: str = "out", file: bool = False) -> Path:
    """An output folder (or file) that can be created or written.

    Checked with ``os.access`` and, for root (whom ``access`` always allows), by creating and
    deleting a probe file in the nearest folder that exists, so that a read-only file system, a
    missing permission or an ACL fail here, before any work.
    """
    p = Path(str(required(cfg, key))).expanduser()
    if p.exists() and (p.is_dir() if file else not p.is_dir()):
        raise InputError(p, f"exists and is {'a folder' if file else 'not a folder'} ({key}=)")
    anc = p.parent if file else p
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(p, f"cannot be created: {anc} is not a folder ({key}=)")
    where = "is not writable" if anc == p else f"cannot be created: {anc} is not writable"
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(p, f"{where} (Permission denied; {key}=)")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            fd, probe = tempfile.mkstemp(prefix=".cryofm-write-test-", dir=anc)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise InputError(p, f"{where} ({exc.strerror or exc}; {key}=)") from None
    return p
