"""Every entry point's failure path: one line ``<prog>: error: <file or key>: <problem>``, exit 2,
and nothing left behind.

:func:`one_line` turns the errors bad input causes — :class:`~cryofm.errors.InputError`, ``OSError``
(permission denied, is a directory, no such file, disk full, ...), Hydra / OmegaConf config errors
(override syntax, unknown keys and group options, missing values, interpolations) and the
``ValueError`` / ``TypeError`` of parsing an option value — into that line. :class:`OutputGuard`
records the output folders a command names before it runs and, when it fails, removes what the
run created there (never what existed before). :func:`guarded` combines both around a command;
``--debug`` on the command line or ``CRYOFM_DEBUG=1`` re-raises instead, for the full traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from cryofm.errors import InputError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def debug_requested(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether the full traceback is wanted (flag or CRYOFM_DEBUG=1)."""
    debug = "--debug" in argv or os.environ.get("CRYOFM_DEBUG", "") not in ("", "0")
    return [a for a in argv if a != "--debug"], debug


def _first(text: str) -> str:
    lines = [s.strip() for s in str(text).splitlines() if s.strip()]
    return lines[0] if lines else ""


def _omegaconf(exc: BaseException) -> str | None:
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    if not isinstance(exc, OmegaConfBaseException):
        return None
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    msg = _first(getattr(exc, "msg", None) or str(exc))
    if isinstance(exc, MissingMandatoryValue):
        return f"{key}: a value is required ({key}=...)" if key else msg
    if "not in struct" in msg:
        msg = f"no such key (to add one: +{key}=...)"
    return f"{key}: {msg}" if key else msg


def _hydra(exc: BaseException) -> str | None:
    try:
        from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    if isinstance(exc, OverrideParseException):
        why = _first(exc.message)
        return f"{exc.override}: bad override syntax ({why}; key=value, quote values with spaces)"
    if isinstance(exc, MissingConfigException):
        missing = str(exc.missing_cfg_file or "")
        group, _, choice = missing.rpartition("/")
        if exc.options is not None and group:
            opts = ", ".join(exc.options) or "none"
            return f"{group}={choice}: no such option (available: {opts})"
        return _first(str(exc))
    if isinstance(exc, HydraException):
        cause = exc.__cause__
        m = re.match(r"Could not (?:override|append to|delete(?: from config)?) '([^']+)'", str(exc))
        if m and cause is not None:
            key, why = m.group(1), _first(getattr(cause, "msg", None) or str(cause))
            if "not in struct" in why:
                why = f"no such key (to add one: +{key}=...)"
            return f"{key}: {why}"
        inner = _omegaconf(cause) if cause is not None else None
        return inner or _first(str(exc))
    return None


def one_line(exc: BaseException) -> tuple[str, int]:
    """``(message, exit status)`` of an exception: ``<file or key>: <problem>`` on one line.

    Bad input exits 2; an exception that is not one of the known kinds (a bug) exits 1 and says
    how to get its traceback.
    """
    if isinstance(exc, InputError):
        return _first(str(exc)), EXIT_BAD_INPUT
    text = _hydra(exc) or _omegaconf(exc)
    if text is not None:
        return text, EXIT_BAD_INPUT
    if isinstance(exc, OSError):
        problem = exc.strerror or _first(str(exc)) or type(exc).__name__
        where = exc.filename if exc.filename is not None else None
        if exc.filename2 is not None:
            where = f"{exc.filename} -> {exc.filename2}"
        return (f"{where}: {problem}" if where is not None else problem), EXIT_BAD_INPUT
    if isinstance(exc, (ValueError, TypeError)):
        return f"{_first(str(exc)) or type(exc).__name__} (--debug for the traceback)", EXIT_BAD_INPUT
    return (f"internal error: {type(exc).__name__}: {_first(str(exc))} (--debug for the traceback)", 1)


class OutputGuard:
    """Remembers what existed at the output paths a command names; :meth:`cleanup` removes the rest.

    A path that did not exist is removed whole (with the parent folders the run created for it); in
    a folder that existed, only the entries that appeared during the run are removed. ``keep`` is
    asked first: True keeps everything (e.g. a training run that already wrote a checkpoint a rerun
    resumes from).
    """

    def __init__(self, paths: Iterable[str | Path | None] = (), keep: Callable[[], bool] | None = None):
        self.keep = keep
        self._created: list[Path] = []  # top-most folder / file that did not exist before
        self._listed: dict[Path, set[str]] = {}  # existing folder -> its entries before the run
        for p in paths:
            self.watch(p)

    def watch(self, path: str | Path | None) -> None:
        """Record ``path`` (a file or folder the command may create or fill)."""
        if path in (None, "", "???"):
            return
        p = Path(os.path.abspath(os.path.expanduser(str(path))))
        if p.is_dir():
            with contextlib.suppress(OSError):
                self._listed.setdefault(p, set(os.listdir(p)))
            return
        if p.exists() or p.is_symlink():
            return  # an existing file: never removed
        top = p
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        if top not in self._created:
            self._created.append(top)

    def cleanup(self) -> None:
        """Remove what appeared since :meth:`watch` (best effort: a failed removal is left)."""
        if self.keep is not None:
            with contextlib.suppress(Exception):
                if self.keep():
                    return
        for top in self._created:
            _remove(top)
        for folder, before in self._listed.items():
            with contextlib.suppress(OSError):
                for name in set(os.listdir(folder)) - before:
                    _remove(folder / name)


def _remove(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()


@contextlib.contextmanager
def guarded(prog: str, guard: OutputGuard | None = None, debug: bool = False) -> Iterator[OutputGuard]:
    """Run the body as command ``prog``: on an error print one line, clean up, exit.

    Raises ``SystemExit`` with status 2 (bad input) or 1 (unexpected error); 130 on Ctrl-C, which
    leaves the outputs in place (killed and interrupted runs resume). With ``debug`` the original
    exception propagates after cleanup (full traceback).
    """
    guard = guard if guard is not None else OutputGuard()
    try:
        yield guard
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:  # `cryofm inspect ... | head`: the reader left; not an error
        # point stdout at /dev/null so that flushing at exit raises no second error
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
    except SystemExit:
        raise
    except Exception as exc:
        guard.cleanup()
        if debug:
            raise
        msg, status = one_line(exc)
        print(f"{prog}: error: {msg}", file=sys.stderr)
        raise SystemExit(status) from None


def exit_status(func: Callable[[], object]) -> int:
    """Call ``func`` and return its integer result (0 for None), or the status of a SystemExit."""
    try:
        result = func()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0
