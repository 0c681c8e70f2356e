"""Simulation presets: ``configs/simulate/<name>.yaml`` merged with the command's overrides.

A preset holds the experiment list (real maps / models with procedural fall-backs, and procedural
shapes) and the sizes; ``configs/simulate.yaml`` keys left ``null`` take the preset's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryofm.errors import InputError

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "simulate"
DEFAULT_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# command key -> (preset key path)
OVERRIDES = {
    "n_particles": ("n_particles",), "box": ("box",), "image_size": ("image_size",), "snr": ("snr",),
    "dtype": ("dtype",), "split": ("split",), "confound": ("confound",), "phase_flip": ("phase_flip",),
    "n_micrographs": ("micrographs", "n"), "micrograph_size": ("micrographs", "size"),
    "micrograph_pixel_size": ("micrographs", "pixel_size"),
    "particles_per_micrograph": ("micrographs", "particles"), "micrograph_snr": ("micrographs", "snr"),
    "background_boxes": ("background", "per_micrograph"),
}


def available() -> list[str]:
    """Names of the presets shipped in ``configs/simulate``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset as a plain dict (InputError naming the file when it is absent or malformed)."""
    from omegaconf import OmegaConf

    path = Path(name) if str(name).endswith(".yaml") else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise InputError(path, f"unknown simulation preset {name!r} (available: {', '.join(available())})")
    try:
        preset = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # YAML / interpolation errors
        raise InputError(path, f"cannot read preset: {str(exc).splitlines()[0]}") from exc
    if not isinstance(preset, dict) or not preset.get("experiments"):
        raise InputError(path, "a preset needs a non-empty 'experiments' list")
    return preset


def resolve(cfg: Any) -> dict[str, Any]:
    """The preset named by ``cfg.preset`` with the command's non-null overrides applied."""
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    preset = load_preset(str(c.get("preset") or "demo"))
    for key, path in OVERRIDES.items():
        if c.get(key) is not None:
            node = preset
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = c[key]
    if c.get("experiments"):
        wanted = list(c["experiments"])
        names = [e["name"] for e in preset["experiments"]]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise InputError(PRESET_DIR / f"{c.get('preset')}.yaml",
                             f"unknown experiment(s) {unknown} (preset has {names})")
        preset["experiments"] = [e for e in preset["experiments"] if e["name"] in wanted]
    preset["seed"] = int(c.get("seed") or 0)
    preset["shared_data"] = str(c.get("shared_data") or DEFAULT_SHARED)
    preset["overwrite"] = bool(c.get("overwrite", False))
    preset["preset"] = str(c.get("preset") or "demo")
    return preset
