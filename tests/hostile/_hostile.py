"""Shared checks of the hostile-input tests of train.py, eval/*.py and the cryofm tools.

A failed command must give: its exit status (2 for bad input), exactly one non-empty stderr line
``<prog>: error: <file or key>: <problem>`` that names the file or key, no traceback, and the
output folder exactly as it was before (absent if it was absent)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tree(folder: Path) -> dict[str, tuple[int, int]] | None:
    """Everything under ``folder`` (relative path -> size, mtime ns; folders -> (-1, 0)), or None
    when it is absent. A folder's own mtime is left out: a write check that creates and removes a
    probe file changes it without leaving anything behind."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if folder.is_file():
        st = folder.stat()
        return {".": (st.st_size, st.st_mtime_ns)}
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns) if p.is_file() else (-1, 0)
    return out


def load_script(rel: str):
    """``train.py`` / ``eval/<name>.py`` as a module (they are scripts, not package modules)."""
    name = "hostile_" + rel.replace("/", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def check_failure(capsys, run: Callable[[], int], prog: str, names: str | list[str],
                  outputs: list[Path], status: int = 2, problem: str | None = None) -> str:
    """Run ``run()`` (returns the exit status) and check the failure contract; returns the line."""
    before = {str(p): tree(p) for p in outputs}
    capsys.readouterr()
    rc = run()
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert rc == status, (rc, err)
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"{prog}: error: "), line
    for name in [names] if isinstance(names, str) else names:
        assert str(name) in line, (name, line)
    if problem is not None:
        assert problem in line, (problem, line)
    for p in outputs:
        assert tree(p) == before[str(p)], f"{p} changed: {before[str(p)]} -> {tree(p)}"
    return line
