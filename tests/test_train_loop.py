"""train(cfg) end to end on a toy dataset: metrics log, schedules, checkpoints, exported teacher."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from safetensors.torch import load_file

from cryofm.models.export import load_backbone
from cryofm.report.curves import plot_curves
from cryofm.report.runlog import read_metrics
from cryofm.train.checkpoint import list_checkpoints, load_checkpoint
from cryofm.train.loop import train
from cryofm.train.toydata import make_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "experiment=tiny",
    "data.image_size=32",
    "train.batch_size_per_gpu=4",
    "train.progress=false",
    "model.kwargs.embed_dim=48",
    "model.kwargs.num_heads=2",
]


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n_experiments=2, n_per=12, box=32, shard_size=6)


def test_configs_compose():
    big = compose_train(["experiment=cryopanda_vitl16"])
    assert big.model.name == "vit_large_patch16_dinov3_qkvb" and big.model.drop_path_rate == 0.3
    assert big.ssl.dino.head.n_prototypes == 65536 and big.ssl.ibot.mask_ratio == [0.1, 0.5]
    assert big.train.batch_size_per_gpu == 256 and big.optim.epochs == 130 and big.dist.strategy == "fsdp"
    assert big.augment.local_crops.n == 8 and big.optim.layer_decay == 0.9
    assert compose_train(["experiment=tiny"]).data.image_size == 64


def test_tiny_run_logs_checkpoints_and_exports(toy, tmp_path):
    out = tmp_path / "run"
    cfg = compose_train(
        [
            *SMALL,
            f"data.path={toy}",
            f"out={out}",
            "train.max_steps=4",
            "train.checkpoint_every=2",
            "train.keep_last=1",
            # the reference's schedules (tiny itself keeps them at their first-iteration values)
            "optim.base_lr=2e-3", "optim.lr_scaling=sqrt", "optim.weight_decay_end=0.4",
            "ssl.teacher.temp=0.07", "ssl.teacher.temp_warmup_epochs=1",
            "ssl.teacher.momentum=0.992", "ssl.teacher.momentum_end=1.0",
        ]
    )
    train(cfg)
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss", "dino_loss", "ibot_loss", "koleo_loss"))
    # schedules by hand: peak lr 2e-3 * sqrt(4 / 1024), linear warm-up over one epoch of 25 steps
    peak = 2e-3 * math.sqrt(4 / 1024)
    assert rows[0]["lr"] == 0.0 and math.isclose(rows[3]["lr"], peak * 3 / 25, rel_tol=1e-9)
    assert math.isclose(rows[0]["wd"], 0.04) and math.isclose(rows[0]["momentum"], 0.992)
    assert math.isclose(rows[1]["teacher_temp"], 0.04 + 0.03 / 25, rel_tol=1e-9)
    # keep last 1: only step 4, with its config and RNG state beside it
    ck = list_checkpoints(out / "checkpoints")
    assert [s for s, _ in ck] == [4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "ckpt-00000004.pt",
        "ckpt-00000004.rng0.pt",
        "ckpt-00000004.yaml",
    ]
    saved_cfg = OmegaConf.load(out / "checkpoints" / "ckpt-00000004.yaml")
    assert saved_cfg.data.path == str(toy) and saved_cfg.train.max_steps == 4
    # the exported teacher: timm names, the teacher's weights, the metadata evaluations need
    state = load_checkpoint(ck[0][1])["model"]
    weights = load_file(out / "backbone.safetensors")
    for k, v in weights.items():
        assert torch.equal(v, state["teacher.backbone.backbone." + k].float())
    model, meta = load_backbone(out)
    meta_file = json.loads((out / "backbone.json").read_text())
    assert meta == meta_file and meta["step"] == 4 and meta["image_size"] == 32
    assert meta["effective_pixel_size"] == 2.0 and abs(meta["pixel_mean"]) < 0.05
    assert model(torch.randn(1, 1, 32, 32)).shape[-1] == 48
    assert meta["model_name"] == "convstem_vit" and "patch_embed.backbone.0.conv.weight" in weights
    # the curves picture: written with the checkpoint, its lines are the logged values
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = plot_curves(out, tmp_path / "c.png")
    assert list(fig.axes[0].lines[0].get_ydata()) == [r["loss"] for r in rows]
    assert list(fig.axes[4].lines[0].get_ydata()) == [r["teacher_temp"] for r in rows]


def test_missing_dataset_is_an_input_error(tmp_path):
    from cryofm.errors import InputError

    cfg = compose_train([*SMALL, f"data.path={tmp_path / 'nope'}", f"out={tmp_path / 'run'}"])
    with pytest.raises(InputError):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_activation_checkpointing_gives_the_same_losses(toy, tmp_path):
    runs = {}
    for ac in ("false", "true"):
        out = tmp_path / f"ac_{ac}"
        train(
            compose_train(
                [
                    *SMALL,
                    f"data.path={toy}",
                    f"out={out}",
                    "train.max_steps=3",
                    f"train.activation_checkpointing={ac}",
                ]
            )
        )
        runs[ac] = [r["loss"] for r in read_metrics(out)]
    assert len(runs["true"]) == 3
    assert runs["true"] == pytest.approx(runs["false"], rel=1e-5)


def test_wandb_offline_needs_no_network(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # any network use would fail
    out = tmp_path / "wb"
    train(
        compose_train([*SMALL, f"data.path={toy}", f"out={out}", "train.max_steps=2", "wandb.mode=offline"])
    )
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert len(read_metrics(out)) == 2


def test_cli_bad_dataset_one_line_exit_2_nothing_left(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "experiment=tiny",
            f"data={tmp_path / 'nope'}",
            f"out={out}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    err = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"train.py: error: {tmp_path / 'nope' / 'manifest.json'}: ")
    assert not out.exists()
