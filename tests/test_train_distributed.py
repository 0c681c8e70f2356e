"""Two CPU processes under torchrun (gloo): disjoint samples, identical weights after the steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryofm.report.runlog import read_metrics
from cryofm.train.toydata import make_toy_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_two_processes_gloo(tmp_path, strategy):
    # 2 experiments x 12 particles, 6 per shard: 4 training shards, 2 per rank
    data = make_toy_dataset(tmp_path / "toy", n_experiments=2, n_per=12, box=32, shard_size=6)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "train.py"),
        "experiment=tiny",
        f"data={data}",
        f"out={out}",
        "data.image_size=32",
        "model.kwargs.embed_dim=48",
        "model.kwargs.num_heads=2",
        "model.drop_path_rate=0.1",
        "train.batch_size_per_gpu=4",
        "train.max_steps=3",
        "train.checkpoint_every=3",
        "train.progress=false",
        "train.debug_dump=true",
        "data.shuffle_buffer=1",
        "dist.backend=gloo",
        "optim.lr_scaling=sqrt",  # tiny scales no lr; the rule must see the global batch
        "optim.base_lr=2e-3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = json.loads((out / "debug" / "rank0.json").read_text())
    r1 = json.loads((out / "debug" / "rank1.json").read_text())
    # 3 steps x 4 particles = one pass over each rank's half of the 24 training particles
    assert len(r0["keys"]) == len(set(r0["keys"])) == 12 and len(set(r1["keys"])) == 12
    assert set(r0["keys"]).isdisjoint(r1["keys"])
    # gradients averaged (DDP) or reduce-scattered (FSDP): the weights stay identical (drop path differs)
    assert r0["param_sums"].keys() == r1["param_sums"].keys()
    for k, v in r0["param_sums"].items():
        assert v == pytest.approx(r1["param_sums"][k], rel=1e-6, abs=1e-7), k
    # rank 0 logs, the global batch sets the lr (sqrt rule on 2 x 4), one checkpoint + export
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[2]["lr"] == pytest.approx(2e-3 * (8 / 1024) ** 0.5 * 2 / 25)
    assert (out / "checkpoints" / "ckpt-00000003.rng1.pt").is_file()
    assert (out / "backbone.safetensors").is_file()


def test_stop_signals_save_first_then_hand_the_signal_on(monkeypatch):
    """In a submitit job USR2 stops the loop after the step (our handler), and forward() then gives it
    to the handler it displaced (submitit's requeue); SIGTERM's default action is not re-raised."""
    import signal

    from cryofm.train.distributed import DistInfo, StopSignals

    calls = []
    old_usr2 = signal.signal(signal.SIGUSR2, lambda s, f: calls.append(s))
    old_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
        stop = StopSignals(DistInfo())
        assert not stop.should_stop()
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.should_stop() and calls == []  # ours caught both: finish the step, save
        stop.restore()
        stop.forward()  # after the save
        assert calls == [signal.SIGUSR2]  # the displaced Python handler ran once; SIG_DFL did not
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR2, old_usr2)
        signal.signal(signal.SIGTERM, old_term)


def test_stop_signals_ignore_usr2_outside_submitit(monkeypatch):
    import signal

    from cryofm.train.distributed import DistInfo, StopSignals, preemption_signal

    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert preemption_signal() is None
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    assert preemption_signal() == signal.SIGUSR1
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    before = signal.getsignal(signal.SIGUSR2)
    stop = StopSignals(DistInfo())
    assert signal.getsignal(signal.SIGUSR2) == before  # not taken over by a plain run
    stop.restore()


def test_fsdp2_teacher_uses_the_ema_weights_world_of_one():
    """FSDP2 keeps a root module's parameters unsharded after a forward until its backward; the
    teacher has none, so without ``reshard_root`` its heads and tokens stayed step 0's all-gathered
    copy while the EMA moved the shards. With momentum 0 (teacher = student after each step) the
    sharded run's losses must be the plain module's, step for step (they differed by 1.4e-3 at step 2)."""
    import socket

    import torch.distributed as dist
    from omegaconf import OmegaConf

    from cryofm.ssl.ema import paired_params
    from cryofm.train.distributed import apply_fsdp
    from cryofm.train.optim import make_optimizer
    from cryofm.train.step import train_step
    from tests.ssl_tiny import tiny_arch, tiny_batch

    optim = OmegaConf.load(ROOT / "configs/optim/adamw.yaml")
    batch = tiny_batch()
    v = {"lr": 1e-3, "wd": 0.04, "last_layer_lr": 1e-3, "teacher_temp": 0.04, "momentum": 0.0}

    def run(shard: bool) -> list[float]:
        arch = tiny_arch()
        arch.train()
        if shard:
            apply_fsdp(arch.teacher, False, reshard_root=True)
            apply_fsdp(arch.student, False)
        opt = make_optimizer(arch.student, optim, fused=False)
        pairs = paired_params(arch.student, arch.teacher)
        return [float(train_step(arch, opt, batch, v, 1e9, pairs)[0]) for _ in range(4)]

    plain = run(False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        sharded = run(True)
    finally:
        dist.destroy_process_group()
    assert sharded == pytest.approx(plain, rel=1e-6)
    assert plain[1] != pytest.approx(plain[0], rel=1e-3)  # the teacher moved: the check can see staleness
