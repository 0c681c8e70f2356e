"""Hostile and malformed input for ``train.py``: wrong option values and types, unknown keys and
config-group options, bad override syntax, missing or damaged datasets, unusable output folders,
planted checkpoints and OS errors during the run.

Each case runs ``train.main(argv)`` in-process (the same function ``python train.py`` runs; the
config is composed and checked before torch is used, so no subprocess is needed) and checks the
contract of :func:`tests.hostile._hostile.check_failure`: exit status 2, one line
``train.py: error: <file or key>: <problem>``, no traceback, nothing created or changed.
"""

from __future__ import annotations

import errno
import json
import pickle
import shutil
from pathlib import Path

import pytest

from cryofm.train.toydata import make_toy_dataset
from tests.hostile._hostile import check_failure, load_script

PROG = "train.py"
SMALL = ["experiment=tiny", "train.progress=false", "data.image_size=32", "model.kwargs.embed_dim=48",
         "model.kwargs.num_heads=2", "train.max_steps=2"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n_experiments=2, n_per=8, box=32, shard_size=8)


@pytest.fixture(scope="module")
def train_main():
    return load_script("train.py").main


def _fail(capsys, train_main, toy, tmp_path, extra, names, problem=None, out=None, data=None):
    out = out or tmp_path / "run"
    argv = [*SMALL, f"data={data or toy}", f"out={out}", *extra]
    return check_failure(capsys, lambda: train_main(argv), PROG, names, [tmp_path, toy], problem=problem)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


BAD_OPTIONS = [
    (["train.batch_size_per_gpu=0"], "train.batch_size_per_gpu", "integer >= 1"),
    (["train.batch_size_per_gpu=abc"], "train.batch_size_per_gpu", "integer"),
    (["train.batch_size_per_gpu=2.5"], "train.batch_size_per_gpu", "integer"),
    (["optim.base_lr=abc"], "optim.base_lr", "number > 0"),
    (["optim.base_lr=-1e-3"], "optim.base_lr", "number > 0"),
    (["optim.epochs=0"], "optim.epochs", ">= 1"),
    (["optim.lr_scaling=cubic"], "optim.lr_scaling", "sqrt, linear, none"),
    (["optim.betas=[0.9]"], "optim.betas", "list of 2 numbers"),
    (["optim.layer_decay=1.5"], "optim.layer_decay", "(0, 1]"),
    (["model.name=vit_smal_patch16_224"], "model.name", "unknown timm model"),
    (["+model.kwargs.bogus=1"], "model.kwargs", "bogus"),
    (["model.kwargs.num_heads=5"], "model.kwargs", "timm cannot create"),
    (["model.name=vit_small_patch16_dinov3_qkvb", "~model.kwargs.stem_channels", "~model.kwargs.base",
      "data.image_size=40"], "data.image_size", "divisible by patch size"),
    (["data.image_size=8"], "data.image_size", "in [16, 4096]"),
    (["data.image_size=100000"], "data.image_size", "got 100000"),
    (["data.url_template=/tmp/x.tar"], "data.url_template", "must contain {path}"),
    (["augment.global_crops.size=1000"], "augment.global_crops.size", "whole number of the model's"),
    (["augment.global_crops.size=21"], "augment.global_crops.size", "16 px patches"),
    (["augment.global_crops.blur_p=[1.0,0.1,0.5]"], "augment.global_crops.blur_p", "one probability"),
    (["ssl.centering=foo"], "ssl.centering", "sinkhorn_knopp, softmax"),
    (["ssl.n_global_crops=3"], "ssl.n_global_crops", "augment.global_crops.n"),
    (["ssl.ibot.mask_ratio=[0.5,0.1]"], "ssl.ibot.mask_ratio", "increasing"),
    (["ssl.teacher.momentum=1.5"], "ssl.teacher.momentum", "[0, 1]"),
    (["augment.local_crops.scale=[0.1]"], "augment.local_crops.scale", "list of 2"),
    (["augment.jitter_p=yes"], "augment.jitter_p", "number"),
    (["dist.strategy=foo"], "dist.strategy", "ddp, fsdp, none"),
    pytest.param(["dist.device=cuda"], "dist.device", "torch sees no GPU",
                 marks=pytest.mark.skipif(_has_gpu(), reason="a GPU is visible")),
    (["dist.backend=mpi"], "dist.backend", "auto, gloo, nccl"),
    (["train.threads=-1"], "train.threads", ">= 1"),
    (["train.threads=all"], "train.threads", "integer"),
    (["train.checkpoint_every=0"], "train.checkpoint_every", ">= 1"),
    (["train.max_steps=0"], "train.max_steps", ">= 1"),
    (["train.keep_last=-2"], "train.keep_last", ">= 0"),
    (["train.resume=maybe"], "train.resume", "true or false"),
    (["train.keep_freed_memory=1"], "train.keep_freed_memory", "true or false"),
    (["train.attention=flash"], "train.attention", "sdpa, xformers, auto"),
    (["wandb.mode=on"], "wandb.mode", "online, offline, disabled"),
    (["data.pixel_mean=0.5"], "data.pixel_std", "together"),
    (["data.num_workers=-1"], "data.num_workers", ">= 0"),
    (["seed=abc"], "seed", "integer"),
    (["data.image_size=${nope}"], "data.image_size", "cannot resolve"),
]


@pytest.mark.parametrize("extra, key, problem", BAD_OPTIONS, ids=[b[0][-1] for b in BAD_OPTIONS])
def test_bad_option_value(capsys, train_main, toy, tmp_path, extra, key, problem):
    line = _fail(capsys, train_main, toy, tmp_path, extra, f"{key}: ", problem)
    assert line.startswith(f"train.py: error: {key}: ")


CONFIG_ERRORS = [
    (["model=nope"], "model=nope: no such option", "vit_small_dinov3"),
    (["foo.bar=1"], "foo.bar: no such key", "+foo.bar="),
    (["train.bogus=1"], "train.bogus: no such key", "+train.bogus="),
    (["a=b=c"], "a=b=c: bad override syntax", "key=value"),
    (["optim.base_lr=["], "optim.base_lr=[: bad override syntax", None),
]


@pytest.mark.parametrize("extra, head, hint", CONFIG_ERRORS, ids=[c[0][0] for c in CONFIG_ERRORS])
def test_config_composition_error(capsys, train_main, toy, tmp_path, extra, head, hint):
    line = _fail(capsys, train_main, toy, tmp_path, extra, head)
    if hint:
        assert hint in line


def test_unknown_experiment_is_not_silently_ignored(capsys, train_main, toy, tmp_path):
    """``experiment`` is an optional config group: Hydra composes nothing for a misspelt name."""
    argv = ["experiment=tinny", f"data={toy}", f"out={tmp_path / 'run'}"]
    line = check_failure(capsys, lambda: train_main(argv), PROG, "experiment=tinny: no such option",
                         [tmp_path, toy])
    assert "tiny" in line


def test_missing_dataset_folder(capsys, train_main, toy, tmp_path):
    _fail(capsys, train_main, toy, tmp_path, [], str(tmp_path / "nope" / "manifest.json"), "no manifest",
          data=tmp_path / "nope")


def test_dataset_with_garbage_manifest(capsys, train_main, toy, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(toy, bad)
    (bad / "manifest.json").write_text("{not json")
    _fail(capsys, train_main, toy, tmp_path, [], str(bad / "manifest.json"), "JSON", data=bad)


def test_dataset_without_train_shards(capsys, train_main, toy, tmp_path):
    bad = tmp_path / "nosplit"
    shutil.copytree(toy, bad)
    split = json.loads((bad / "split.json").read_text())
    split["assignment"] = {k: "heldout" for k in split["assignment"]}
    (bad / "split.json").write_text(json.dumps(split))
    _fail(capsys, train_main, toy, tmp_path, [], str(bad), "'train' split has no shards", data=bad)


def test_data_urls_not_a_list(capsys, train_main, toy, tmp_path):
    _fail(capsys, train_main, toy, tmp_path, ["data.urls=shard.tar"], "data.urls", "list of shard URLs")


def test_out_is_an_existing_file(capsys, train_main, toy, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    _fail(capsys, train_main, toy, tmp_path, [], str(f), "exists and is not a folder", out=f)


def test_out_below_a_file(capsys, train_main, toy, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    _fail(capsys, train_main, toy, tmp_path, [], str(f / "run"), f"{f} is not a folder", out=f / "run")


def test_out_on_a_read_only_file_system(capsys, train_main, toy, tmp_path):
    """/sys refuses new files even to root, where a chmod 0500 folder would not."""
    ro = Path("/sys/cryofm-test")
    if not Path("/sys").is_dir() or ro.exists():
        pytest.skip("no /sys")
    _fail(capsys, train_main, toy, tmp_path, [], f"{ro / 'run'}: cannot be created", "not writable",
          out=ro / "run")


def test_planted_checkpoint_runs_no_code(capsys, train_main, toy, tmp_path):
    class Plant:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    ck = tmp_path / "run" / "checkpoints" / "ckpt-00000010.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(pickle.dumps({"model": Plant(), "step": 10}))
    _fail(capsys, train_main, toy, tmp_path, [], f"{ck}: refused")
    assert not (tmp_path / "pwned").exists()


def test_disk_full_during_the_run_removes_what_it_wrote(capsys, train_main, toy, tmp_path, monkeypatch):
    """No space left while writing the run's config: one line naming the file, and no
    metrics.jsonl / config.yaml / run dir left behind (the run had saved no checkpoint)."""
    import cryofm.utils.atomic as atomic

    real = atomic.write_text

    def full(path, text):
        if Path(path).name == "config.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(atomic, "write_text", full)
    _fail(capsys, train_main, toy, tmp_path, [], str(tmp_path / "run" / "config.yaml"),
          "No space left on device")
    assert not (tmp_path / "run").exists()


def test_failure_in_an_existing_run_dir_keeps_what_was_there(capsys, train_main, toy, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("my notes")
    _fail(capsys, train_main, toy, tmp_path, ["optim.base_lr=abc"], "optim.base_lr")
    assert (run / "notes.txt").read_text() == "my notes"


def test_debug_flag_raises_the_original_error(train_main, toy, tmp_path):
    from cryofm.errors import InputError

    with pytest.raises(InputError, match="train.batch_size_per_gpu"):
        train_main([*SMALL, f"data={toy}", f"out={tmp_path / 'run'}", "train.batch_size_per_gpu=0",
                    "--debug"])
    assert not (tmp_path / "run").exists()


def test_resume_with_another_model_names_the_checkpoint(capsys, train_main, toy, tmp_path):
    """A run dir resumed with a wider model: one line naming the checkpoint, the run left as it was
    (was: 'internal error: RuntimeError: Error(s) in loading state_dict')."""
    out = tmp_path / "run"
    assert train_main([*SMALL, "train.batch_size_per_gpu=4", f"data={toy}", f"out={out}"]) == 0
    capsys.readouterr()
    ckpt = sorted((out / "checkpoints").glob("ckpt-????????.pt"))[-1]
    argv = [*SMALL, "train.batch_size_per_gpu=4", f"data={toy}", f"out={out}", "model.kwargs.embed_dim=96",
            "model.kwargs.num_heads=3", "train.max_steps=4"]
    check_failure(capsys, lambda: train_main(argv), PROG, str(ckpt), [tmp_path, toy],
                  problem="does not fit the configured model")


def test_out_that_holds_other_files_is_refused(capsys, train_main, toy, tmp_path):
    """out= naming a folder of the user's own files: the run would be written in among them."""
    out = tmp_path / "notes"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    _fail(capsys, train_main, toy, tmp_path, [], str(out), "holds files that are not a cryofm training run "
          "(precious.txt)", out=out)

