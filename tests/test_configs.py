"""Every shipped config composes: each command, each training experiment, model and launcher."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cryofm.cli import CONFIG_DIR
from cryofm.cli import compose as compose_command

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {"augment", "data", "experiment", "hydra", "model", "optim", "ssl", "probe", "simulate"}
COMMANDS = sorted({p.stem for p in CONFIG_DIR.glob("*.yaml")} - {"train"}
                  | {p.name for p in CONFIG_DIR.iterdir() if (p / f"{p.name}.yaml").is_file()})


def _names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _train(overrides: list[str], hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=hydra_cfg)


def _resolved(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def test_every_config_file_is_covered_below():
    """A new config file without a test here fails this test."""
    for p in CONFIG_DIR.rglob("*.yaml"):
        top = p.relative_to(CONFIG_DIR).parts[0]
        assert top.removesuffix(".yaml") in GROUPS | set(COMMANDS) | {"train"}, p


@pytest.mark.parametrize("command", COMMANDS)
def test_command_config_composes(command):
    cfg = _resolved(compose_command(command, []))
    assert cfg, command


@pytest.mark.parametrize("experiment", _names("experiment"))
def test_experiment_composes_and_crops_match_the_objective(experiment):
    cfg = _train([f"experiment={experiment}"])
    r = _resolved(cfg)
    assert r["ssl"]["n_global_crops"] == r["augment"]["global_crops"]["n"] == 2
    assert r["data"]["image_size"] % int(r["model"]["kwargs"].get("patch_size", 16)) == 0


@pytest.mark.parametrize("model", _names("model"))
def test_model_composes_and_builds_its_backbone_name(model):
    import timm

    cfg = _train([f"model={model}"])
    assert cfg.model.name in timm.list_models(cfg.model.name)


@pytest.mark.parametrize("launcher", _names("hydra/launcher"))
def test_launcher_composes_to_a_submitit_launcher(launcher):
    cfg = _train([f"hydra/launcher={launcher}"], hydra_cfg=True)
    target = cfg.hydra.launcher._target_
    assert target.startswith("hydra_plugins.hydra_submitit_launcher.submitit_launcher.")
    assert ("Slurm" in target) == (launcher == "slurm")


@pytest.mark.parametrize("preset", _names("simulate"))
def test_simulate_preset_composes(preset):
    cfg = compose_command("simulate", [f"preset={preset}"])
    assert cfg.preset == preset and (CONFIG_DIR / "simulate" / f"{preset}.yaml").is_file()


@pytest.mark.parametrize("tasks", _names("probe/tasks"))
def test_probe_task_list_composes(tasks):
    from cryofm.probe.tasks import make_task

    cfg = compose_command("probe", [f"tasks={tasks}"])
    made = [make_task(t) for t in OmegaConf.to_container(cfg.tasks, resolve=True)]
    assert made and len({t.name for t in made}) == len(made)
