"""SIGKILL mid-run, resume, and the loss curve equals an uninterrupted run with the same seed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cryofm.report.runlog import read_metrics
from cryofm.train.checkpoint import list_checkpoints
from cryofm.train.toydata import make_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "experiment=tiny",
    "data.image_size=32",
    "train.batch_size_per_gpu=4",
    "train.progress=false",
    "model.kwargs.embed_dim=48",
    "model.kwargs.num_heads=2",
    "model.drop_path_rate=0.1",
    "train.max_steps=16",
    "train.checkpoint_every=4",
    "train.keep_last=2",
    "train.threads=1",  # bit-equal teachers need the same reduction order in both runs
]


def _cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *ARGS, f"data={data}", f"out={out}"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The toy dataset and an uninterrupted 16-step run on it."""
    tmp = tmp_path_factory.mktemp("resume")
    data = make_toy_dataset(tmp / "toy", n_experiments=2, n_per=12, box=32, shard_size=6)
    subprocess.run(_cmd(data, tmp / "ref"), check=True, env=_env(), cwd=tmp, capture_output=True)
    return data, tmp / "ref"


def _same_curve(a_dir: Path, b_dir: Path) -> None:
    a, b = read_metrics(a_dir), read_metrics(b_dir)
    assert [r["step"] for r in b] == list(range(16))  # resumed steps replace the killed run's lines
    for key in ("loss", "dino_loss", "ibot_loss", "koleo_loss", "lr", "teacher_temp"):
        np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=1e-5, atol=1e-6)
    # the same teacher at the end
    assert (a_dir / "backbone.safetensors").read_bytes() == (b_dir / "backbone.safetensors").read_bytes()


@pytest.mark.timeout(300)
def test_kill_and_resume_matches_uninterrupted(reference, tmp_path):
    data, ref = reference
    run = tmp_path / "run"

    proc = subprocess.Popen(
        _cmd(data, run), env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target = run / "checkpoints" / "ckpt-00000008.pt"
    t0 = time.time()
    while not target.exists() and proc.poll() is None and time.time() - t0 < 200:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed, not finished
    assert not (run / "checkpoints" / "ckpt-00000016.pt").exists()
    killed_at = len(read_metrics(run))
    assert 8 <= killed_at < 16

    subprocess.run(_cmd(data, run), check=True, env=_env(), cwd=tmp_path, capture_output=True)
    _same_curve(ref, run)


@pytest.mark.timeout(300)
def test_sigterm_checkpoints_then_resume_matches(reference, tmp_path):
    data, ref = reference
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _cmd(data, run), env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    t0 = time.time()
    while len(read_metrics(run)) < 5 and proc.poll() is None and time.time() - t0 < 200:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)  # preemption: finish the step, checkpoint, exit cleanly
    assert proc.wait() == 0
    steps = [s for s, _ in list_checkpoints(run / "checkpoints")]
    n = len(read_metrics(run))
    assert steps[-1] == n and 5 <= n < 16  # a checkpoint at the step where it stopped
    subprocess.run(_cmd(data, run), check=True, env=_env(), cwd=tmp_path, capture_output=True)
    _same_curve(ref, run)


@pytest.mark.timeout(420)
def test_submitit_preemption_saves_at_the_step_requeues_and_matches(reference, tmp_path):
    """A job of Hydra's submitit launcher gets submitit's preemption signal (USR2) after step 6: it
    checkpoints at step 6, then submitit's own handler requeues it, and the requeued job resumes there
    and ends with the uninterrupted run's curve and teacher."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    data, ref = reference
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *ARGS, f"data={data}", f"out={sweep}",
           "hydra/launcher=local", "hydra.launcher.timeout_min=10", "train.debug_preempt_at=6"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = "".join(p.read_text() for p in sorted(sweep.glob(".submitit/*/*_log.*")))
    assert "stop requested by a signal: checkpoint saved at step 6" in logs  # not the periodic one (4)
    assert "Requeued job" in logs  # submitit's handler ran, after the save
    assert "(step 6)" in logs  # the requeued job resumed from that checkpoint
    _same_curve(ref, sweep / "0")
