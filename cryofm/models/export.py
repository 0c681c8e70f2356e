"""Export and load the teacher backbone: ``<run>/backbone.safetensors`` + ``<run>/backbone.json``.

``backbone.json`` names the timm model, the kwargs to create it and what a user needs to feed it
(image size, pixel normalisation, effective pixel size of training). The weights load into timm
with no cryofm code::

    meta = json.load(open("backbone.json"))
    model = timm.create_model(meta["model_name"], pretrained=True,
                              pretrained_cfg_overlay={"file": "backbone.safetensors",
                                                      "num_classes": 0},
                              **meta["kwargs"])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file
from torch import nn

from cryofm.errors import InputError
from cryofm.utils import atomic

WEIGHTS = "backbone.safetensors"
META = "backbone.json"


def export_backbone(model: nn.Module, model_name: str, kwargs: dict[str, Any], out_dir: str | Path,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``backbone.safetensors`` and ``backbone.json`` atomically into ``out_dir``.

    ``extra`` goes into the JSON beside model name and kwargs (e.g. ``pixel_mean``, ``pixel_std``,
    ``image_size``, ``effective_pixel_size`` in Å/px, training step).
    """
    out_dir = Path(out_dir)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic.atomic_path(out_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"model_name": model_name})
    meta = {"model_name": model_name, "kwargs": dict(kwargs), **(extra or {})}
    atomic.write_json(out_dir / META, meta)
    return out_dir / WEIGHTS


def resolve_backbone_file(path: str | Path) -> Path:
    """A run dir or a ``backbone.safetensors`` path → the safetensors file (InputError if absent)."""
    p = Path(path)
    f = p / WEIGHTS if p.is_dir() else p
    if not f.is_file():
        raise InputError(p, f"no {WEIGHTS} here (pass a training run dir or the backbone file)")
    if not (f.parent / META).is_file():
        raise InputError(f.parent, f"{META} missing beside {f.name}")
    return f


def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load an exported backbone (run dir or file) through timm; returns (eval-mode model, meta)."""
    f = resolve_backbone_file(path)
    meta = json.loads((f.parent / META).read_text())
    try:
        model = timm.create_model(meta["model_name"], pretrained=True,
                                  pretrained_cfg_overlay={"file": str(f), "num_classes": 0},
                                  **meta["kwargs"])
    except Exception as exc:  # shape mismatch, unknown model, corrupt file
        raise InputError(f, f"cannot load backbone: {str(exc).splitlines()[0]}") from exc
    return model.to(device).eval(), meta
