"""DINOv2 pretraining of a cryo-EM foundation model.

    python train.py experiment=tiny data=<dataset dir> out=<run dir>
    torchrun --nproc_per_node=8 train.py experiment=cryopanda_vitl16 data=<dataset dir> out=<run dir>
    python train.py -m experiment=tiny data=<dir> out=<sweep dir> optim.base_lr=1e-3,2e-3

``data=<dir>`` names the dataset folder (it becomes ``data.path``; ``data=<preset>`` still selects a
``configs/data`` preset). Everything else is in ``configs/train.yaml`` and its groups. The config is
checked before anything is written (:mod:`cryofm.train.validate`); bad input stops with one line
``train.py: error: <file or key>: <problem>`` and exit status 2 (``--debug``: the traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run from a checkout without install

from cryofm.utils import hydra_app  # noqa: E402

PROG = "train.py"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _rewrite_data_arg(argv: list[str]) -> list[str]:
    """``data=<dataset dir>`` → ``data.path=<dataset dir>`` unless it names a data preset."""
    presets = {p.stem for p in (CONFIG_DIR / "data").glob("*.yaml")}
    out = []
    for a in argv:
        if a.startswith("data=") and a[5:] not in presets:
            a = "data.path=" + a[5:]
        out.append(a)
    return out


def _validate(cfg: DictConfig, choices: dict[str, str]) -> None:
    from cryofm.train.validate import validate_train

    validate_train(cfg, choices)


def _keep(cfg: DictConfig):
    """On failure keep the run dir once this run saved a checkpoint (a rerun resumes from it)."""
    ckpts = Path(str(cfg.out)) / "checkpoints"
    before = set(ckpts.glob("ckpt-*.pt"))
    return lambda: bool(set(ckpts.glob("ckpt-*.pt")) - before)


def _run(cfg: DictConfig) -> None:
    from cryofm.train.loop import train

    train(cfg)


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def hydra_main(cfg: DictConfig) -> None:
    """Sweeps (``-m``) and Hydra's own flags: one guarded job per sweep point."""
    from hydra.core.hydra_config import HydraConfig

    from cryofm.utils.atomic import write_text

    hc = HydraConfig.get()
    multirun = hc.mode.name == "MULTIRUN"
    if multirun:  # each sweep job gets its own run dir, with its overrides beside it
        with open_dict(cfg):
            cfg.out = hc.runtime.output_dir

    def job(cfg: DictConfig) -> None:
        if multirun and int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
            write_text(Path(cfg.out) / ".hydra" / "overrides.yaml",
                       OmegaConf.to_yaml(OmegaConf.create(list(hc.overrides.task))))
        _run(cfg)

    hydra_app.guarded_job(PROG, cfg, job, validate=_validate, keep=_keep)


def main(argv: list[str] | None = None) -> int:
    """``python train.py [overrides] [--debug] [-m] [Hydra flags]``; returns the exit status."""
    argv = _rewrite_data_arg(list(sys.argv[1:] if argv is None else argv))
    return hydra_app.run(PROG, CONFIG_DIR, "train", _run, argv, validate=_validate, keep=_keep,
                         hydra_main=hydra_main)


if __name__ == "__main__":
    raise SystemExit(main())
