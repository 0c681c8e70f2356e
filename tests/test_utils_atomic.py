"""Atomic writes respect the umask: shards, manifests, checkpoints, backbones and reports are
0666 minus the umask (0644 under 022, 0600 under 077), folders 0777 minus it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cryofm.utils import atomic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(saved)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_get_0666_minus_the_umask(tmp_path, umask, mask, want):
    umask(mask)
    atomic.write_text(tmp_path / "a.txt", "x")
    atomic.write_json(tmp_path / "sub" / "b.json", {"a": 1})
    with atomic.atomic_path(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"\0")
    fd, t = atomic.create_temp(tmp_path / "d")
    os.close(fd)
    d = atomic.temp_dir(".tmp-x.", tmp_path)
    assert [_mode(tmp_path / n) for n in ("a.txt", "sub/b.json", "c.bin")] == [want] * 3
    assert _mode(t) == want and _mode(d) == 0o777 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-c")) == []  # renamed


def test_atomic_write_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o077, 0o600)])
def test_dataset_shards_and_manifests_follow_the_umask(tmp_path, umask, mask, want):
    from cryofm.train.toydata import make_toy_dataset

    umask(mask)
    root = make_toy_dataset(tmp_path / "ds", n_experiments=2, n_per=4, box=16, shard_size=2)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".tar" for p in files) and (root / "manifest.json") in files
    modes = {str(p.relative_to(root)): _mode(p) for p in files}
    assert modes == dict.fromkeys(modes, want)
    dirs = [p for p in root.rglob("*") if p.is_dir()]
    assert {_mode(p) for p in dirs} == {0o777 & ~mask}


def test_training_outputs_and_reports_follow_the_umask(tmp_path, umask, one_thread):
    """A tiny run under umask 027: checkpoints, RNG files, backbone, metrics, curves = 0640."""
    from hydra import compose, initialize_config_dir

    from cryofm.report import Report
    from cryofm.train.loop import train
    from cryofm.train.toydata import make_toy_dataset

    data = make_toy_dataset(tmp_path / "toy", n_experiments=2, n_per=8, box=32, shard_size=8)
    umask(0o027)
    out = tmp_path / "run"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "experiment=tiny", "data.image_size=32", "train.batch_size_per_gpu=4", "train.progress=false",
            "model.kwargs.embed_dim=48", "model.kwargs.num_heads=2", "train.max_steps=2",
            "train.checkpoint_every=2", f"data.path={data}", f"out={out}"])
    train(cfg)
    rep = Report("modes", "a report")
    rep.table([{"a": 1}])
    rep.write(out / "report")
    ck = "checkpoints/ckpt-00000002"
    names = [f"{ck}.pt", f"{ck}.rng0.pt", f"{ck}.yaml", "backbone.safetensors", "backbone.json",
             "metrics.json", "metrics.jsonl", "config.yaml",
             "curves.png", "report/report.html", "report/report.md"]
    assert {n: oct(_mode(out / n)) for n in names} == {n: oct(0o640) for n in names}
