"""Resumable stages: each stage is one command a user could type; a finished stage is skipped.

A stage is finished when ``<out>/.stages/<name>.json`` exists (written atomically after the command
exits 0, with the command line and its wall time). ``redo=[names]`` or ``redo=all`` runs them again;
once a stage runs, every later stage runs too (they read its outputs). A finished stage that runs
again starts from nothing: its ``outputs`` are deleted first (a retraining must not resume the old
run). An unfinished stage keeps them, so an interrupted one resumes.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryofm.utils import atomic


@dataclass
class Stage:
    """One step of the demo.

    Attributes:
        name: short id (also the marker file's name).
        title: what it does, for the console and the report.
        argv: the command (a list), built when the stage runs (it may read earlier outputs).
        outputs: files or folders the stage writes (deleted before a finished stage runs again).
    """

    name: str
    title: str
    argv: Callable[[], Sequence[str]]
    outputs: Sequence[Path] = ()


def marker(out: Path, name: str) -> Path:
    """Marker file of a finished stage."""
    return out / ".stages" / f"{name}.json"


def run_stages(stages: Sequence[Stage], out: Path, redo: Sequence[str] = (), env: dict | None = None,
               cwd: Path | None = None) -> list[dict]:
    """Run ``stages`` in order; returns one record per stage (name, title, command, seconds, status)."""
    records, ran = [], False
    for i, st in enumerate(stages, 1):
        m = marker(out, st.name)
        head = f"[{i}/{len(stages)}] {st.title}"
        if m.is_file() and not ran and st.name not in redo and "all" not in redo:
            rec = json.loads(m.read_text())
            print(f"{head}: done already ({rec['seconds']:.0f} s; redo={st.name} to run again)", flush=True)
            records.append({**rec, "status": "reused"})
            continue
        ran = True
        if m.is_file():  # finished before: run again from scratch
            m.unlink()
            for p in st.outputs:
                if Path(p).is_dir():
                    shutil.rmtree(p)
                elif Path(p).exists():
                    Path(p).unlink()
        argv = [str(a) for a in st.argv()]
        print(f"\n{head}\n$ {shlex.join(argv)}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=cwd)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"cryofm demo: stage {st.name!r} failed (exit {proc.returncode}): {shlex.join(argv)}",
                  file=sys.stderr)
            raise SystemExit(proc.returncode)
        rec = {"name": st.name, "title": st.title, "command": shlex.join(argv), "seconds": dt,
               "status": "ran"}
        atomic.write_json(m, rec)
        records.append(rec)
    return records
