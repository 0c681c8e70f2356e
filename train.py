"""DINOv2 pretraining of a cryo-EM foundation model.

    python train.py experiment=tiny data=<dataset dir> out=<run dir>
    torchrun --nproc_per_node=8 train.py experiment=cryopanda_vitl16 data=<dataset dir> out=<run dir>
    python train.py -m experiment=tiny data=<dir> out=<sweep dir> optim.base_lr=1e-3,2e-3

``data=<dir>`` names the dataset folder (it becomes ``data.path``; ``data=<preset>`` still selects a
``configs/data`` preset). Everything else is in ``configs/train.yaml`` and its groups.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

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


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from cryofm.errors import InputError
    from cryofm.train.loop import train
    from cryofm.utils.atomic import write_text

    hc = HydraConfig.get()
    if hc.mode.name == "MULTIRUN":  # each sweep job gets its own run dir, with its overrides beside it
        with open_dict(cfg):
            cfg.out = hc.runtime.output_dir
        if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
            write_text(Path(cfg.out) / ".hydra" / "overrides.yaml",
                       OmegaConf.to_yaml(OmegaConf.create(list(hc.overrides.task))))
    try:
        train(cfg)
    except InputError as exc:
        out = Path(cfg.out)
        if out.is_dir() and not any(out.iterdir()):  # leave nothing behind on bad input
            out.rmdir()
        print(f"train.py: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.argv = _rewrite_data_arg(sys.argv)
    main()
