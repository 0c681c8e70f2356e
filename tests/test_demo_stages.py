"""The demo's stage runner: finished stages are reused, redo cascades, a failure leaves no marker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cryofm.demo.stages import Stage, marker, run_stages


def _append(log: Path, word: str) -> list[str]:
    return [sys.executable, "-c", f"open({str(log)!r}, 'a').write({word!r} + '\\n')"]


def _stages(log: Path) -> list[Stage]:
    return [Stage(n, f"stage {n}", lambda n=n: _append(log, n)) for n in ("a", "b", "c")]


def _ran(log: Path) -> list[str]:
    return log.read_text().split() if log.is_file() else []


def test_second_run_reuses_every_finished_stage(tmp_path):
    log = tmp_path / "log.txt"
    first = run_stages(_stages(log), tmp_path)
    assert [r["status"] for r in first] == ["ran"] * 3 and _ran(log) == ["a", "b", "c"]
    second = run_stages(_stages(log), tmp_path)
    assert [r["status"] for r in second] == ["reused"] * 3 and _ran(log) == ["a", "b", "c"]
    assert second[0]["seconds"] == first[0]["seconds"]  # the record of when it ran


def test_redo_runs_that_stage_and_every_later_one(tmp_path):
    log = tmp_path / "log.txt"
    run_stages(_stages(log), tmp_path)
    recs = run_stages(_stages(log), tmp_path, redo=["b"])
    assert [r["status"] for r in recs] == ["reused", "ran", "ran"]
    assert _ran(log) == ["a", "b", "c", "b", "c"]
    run_stages(_stages(log), tmp_path, redo=["all"])
    assert _ran(log)[-3:] == ["a", "b", "c"]


def test_failed_stage_stops_the_run_and_is_not_marked_done(tmp_path, capsys):
    log = tmp_path / "log.txt"
    stages = _stages(log)
    stages[1] = Stage("b", "fails", lambda: [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(SystemExit) as exc:
        run_stages(stages, tmp_path)
    assert exc.value.code == 3 and "stage 'b' failed (exit 3)" in capsys.readouterr().err
    assert marker(tmp_path, "a").is_file() and not marker(tmp_path, "b").exists()
    assert _ran(log) == ["a"]  # c never started
    recs = run_stages(_stages(log), tmp_path)  # fixed: resumes at b
    assert [r["status"] for r in recs] == ["reused", "ran", "ran"]


def test_a_finished_stage_run_again_starts_from_nothing_an_unfinished_one_resumes(tmp_path):
    log, produced = tmp_path / "log.txt", tmp_path / "run"

    def stages() -> list[Stage]:
        # the command appends to run/steps.txt: what it finds there is what a resume would see
        code = (f"import pathlib; p = pathlib.Path({str(produced)!r}); p.mkdir(exist_ok=True); "
                f"f = p / 'steps.txt'; f.write_text((f.read_text() if f.exists() else '') + 'x')")
        return [Stage("train", "train", lambda: [sys.executable, "-c", code], outputs=[produced]),
                *_stages(log)[1:]]

    produced.mkdir()
    (produced / "steps.txt").write_text("partial-")  # an interrupted, unfinished run: kept, resumed
    run_stages(stages(), tmp_path)
    assert (produced / "steps.txt").read_text() == "partial-x"
    run_stages(stages(), tmp_path, redo=["train"])  # finished: redone from scratch
    assert (produced / "steps.txt").read_text() == "x"
