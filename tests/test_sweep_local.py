"""Hydra sweeps of train.py on this machine: one metrics.json per run, then `cryofm summarize`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cryofm.cli import main as cli_main
from cryofm.report.sweep import collect
from cryofm.train.toydata import make_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = ["experiment=tiny", "data.image_size=32", "train.batch_size_per_gpu=4", "train.progress=false",
        "model.kwargs.embed_dim=48", "model.kwargs.num_heads=2", "train.max_steps=2",
        "train.checkpoint_every=100"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n_experiments=2, n_per=8, box=32, shard_size=8)


def _sweep(toy: Path, out: Path, extra: list[str]) -> None:
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"data={toy}", f"out={out}", *TINY,
           "optim.base_lr=1e-3,4e-3", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _check(out: Path) -> None:
    rows = collect(out)
    assert sorted(float(r["optim.base_lr"]) for r in rows) == [1e-3, 4e-3]
    for r in rows:
        m = json.loads((out / r["run"] / "metrics.json").read_text())
        lines = [json.loads(x) for x in (out / r["run"] / "metrics.jsonl").read_text().splitlines()]
        assert m["steps"] == 2 and m["complete"] is True and len(lines) == 2
        # the run's own lr: peak base_lr (experiment=tiny scales no lr), warm-up of 25 steps -> step 1 at 1/25
        assert lines[1]["lr"] == pytest.approx(float(r["optim.base_lr"]) / 25)
        # final loss: mean over the last 10 % of steps (one step here)
        assert m["loss"]["final"] == pytest.approx(lines[-1]["loss"])
        assert (out / r["run"] / "backbone.safetensors").is_file()
    assert cli_main(["summarize", f"sweep={out}", "sort_by=loss.final"]) == 0
    table = (out / "summary.md").read_text()
    assert "optim.base_lr" in table and "0.001" in table and "0.004" in table
    assert len((out / "summary.csv").read_text().splitlines()) == 3  # header + 2 runs


def test_basic_launcher_sweep_writes_metrics_and_summary(toy, tmp_path):
    _sweep(toy, tmp_path / "sweep", [])
    _check(tmp_path / "sweep")


def test_submitit_local_launcher_sweep(toy, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    _sweep(toy, tmp_path / "sweep", ["hydra/launcher=local", "hydra.launcher.timeout_min=10"])
    _check(tmp_path / "sweep")
