"""Versions of everything a result depends on, for the "environment" table of every report."""

from __future__ import annotations

import importlib.metadata as md
import platform
import subprocess
from pathlib import Path

PACKAGES = ("cryofm", "torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "webdataset",
            "mrcfile", "starfile", "gemmi", "hydra-core", "wandb", "xformers", "safetensors")


def git_commit(path: str | Path = ".") -> str | None:
    """Short commit hash of the checkout holding ``path`` (None outside git)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Python, platform, CPU/GPU and installed package versions ("–" where absent)."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            info[name] = md.version(name)
        except md.PackageNotFoundError:
            info[name] = "–"
    try:
        import torch

        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (
            f"CPU ({torch.get_num_threads()} threads)")
    except ImportError:
        pass
    info["git"] = git_commit(Path(__file__).parent) or "–"
    return info
