"""Checkpoints load with weights_only=True: a planted file runs no code; a truncated one falls back."""

from __future__ import annotations

import logging
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from cryofm.errors import InputError
from cryofm.report.runlog import read_metrics
from cryofm.train import checkpoint as ck
from cryofm.train.loop import train
from cryofm.train.toydata import make_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["experiment=tiny", "data.image_size=32", "train.batch_size_per_gpu=4", "train.progress=false",
         "model.kwargs.embed_dim=48", "model.kwargs.num_heads=2", "train.checkpoint_every=4",
         "train.keep_last=3"]

pytestmark = pytest.mark.usefixtures("one_thread")


class _Plant:
    """Unpickling this calls open(marker, "w"): it creates the marker file if code runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # a plain pickle, as torch.load(weights_only=False) would run it
        pickle.dump({"model": _Plant(marker), "step": 99}, fh)


def _cfg(data: Path, out: Path, steps: int):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="train",
                       overrides=[*SMALL, f"data.path={data}", f"out={out}", f"train.max_steps={steps}"])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n_experiments=2, n_per=12, box=32, shard_size=6)


def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    random.seed(3)
    np.random.seed(4)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's legacy state
    torch.manual_seed(5)
    ck.save_rng(tmp_path, 7, 0)
    want = (random.random(), np.random.standard_normal(), float(torch.rand(1)))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    assert ck.load_rng(tmp_path, 7, 0)
    assert (random.random(), np.random.standard_normal(), float(torch.rand(1))) == want
    # the file itself holds only tensors and plain values
    raw = torch.load(tmp_path / "ckpt-00000007.rng0.pt", weights_only=True)
    assert isinstance(raw["python"]["state"], list) and torch.is_tensor(raw["numpy"]["keys"])


def test_rng_file_of_an_older_cryofm_still_restores(tmp_path):
    """RNG files written before the states became tensors (NumPy's array, Python's tuple) load with
    only NumPy's array reconstruction allowed."""
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
               tmp_path / "ckpt-00000005.rng0.pt")
    want = (random.random(), float(np.random.random()), float(torch.rand(1)))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    assert ck.load_rng(tmp_path, 5, 0)
    assert (random.random(), float(np.random.random()), float(torch.rand(1))) == want


@pytest.mark.parametrize("name", ["ckpt-00000099.pt", "ckpt-00000004.rng0.pt"])
def test_planted_pickle_is_refused_and_runs_no_code(tmp_path, name):
    marker = tmp_path / "pwned"
    _plant(tmp_path / "checkpoints" / name, marker)
    with pytest.raises(InputError, match="refused"):
        if name.endswith(".rng0.pt"):
            ck.load_rng(tmp_path / "checkpoints", 4, 0)
        else:
            ck.load_latest(tmp_path / "checkpoints")
    assert not marker.exists()


def test_planted_checkpoint_in_a_run_dir_stops_training_with_one_line(toy, tmp_path, capsys):
    import train as train_entry

    out = tmp_path / "run"
    marker = tmp_path / "pwned"
    _plant(out / "checkpoints" / "ckpt-00000099.pt", marker)
    rc = train_entry.main(["experiment=tiny", f"data={toy}", f"out={out}", "train.progress=false"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and not marker.exists()
    planted = out / "checkpoints" / "ckpt-00000099.pt"
    assert len(err) == 1 and err[0].startswith(f"train.py: error: {planted}: refused")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # what existed before, untouched
    assert not (out / "metrics.jsonl").exists() and not (out / "config.yaml").exists()


def test_truncated_latest_checkpoint_falls_back_to_the_previous(toy, tmp_path, caplog):
    ref, run = tmp_path / "ref", tmp_path / "run"
    train(_cfg(toy, ref, 12))
    train(_cfg(toy, run, 8))  # checkpoints at 4 and 8
    newest = run / "checkpoints" / "ckpt-00000008.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.INFO, logger="cryofm.train"):
        train(_cfg(toy, run, 12))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ckpt-00000008.pt cannot be read" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    assert any("(step 4)" in r.getMessage() for r in caplog.records)  # resumed from the intact one
    a, b = read_metrics(ref), read_metrics(run)
    assert [r["step"] for r in b] == list(range(12))
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5, atol=1e-6)
    # the truncated file was replaced by a good one when the run passed step 8 again
    assert ck.load_checkpoint(newest)["step"] == 8
    assert os.path.getsize(newest) > len(data) // 2


def test_no_readable_checkpoint_starts_fresh(tmp_path):
    d = tmp_path / "checkpoints"
    d.mkdir()
    (d / "ckpt-00000004.pt").write_bytes(b"PK\x03\x04 truncated")
    assert ck.load_latest(d) == (None, None)


def test_random_bytes_are_a_corrupt_checkpoint_never_an_internal_error(tmp_path):
    """Garbage reaches the unpickler's internals (IndexError, KeyError, struct.error …): every such
    file is refused or reported corrupt, with its name."""
    rng = random.Random(0)
    path = tmp_path / "ckpt-00000002.rng0.pt"
    for _ in range(40):
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 100, 600]))))
        with pytest.raises((InputError, ck.CorruptCheckpointError), match=str(path)):
            ck.safe_load(path)
