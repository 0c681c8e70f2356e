"""Export and load the teacher backbone: ``<run>/backbone.safetensors`` + ``<run>/backbone.json``.

``backbone.json`` names the timm model, the kwargs to create it and what a user needs to feed it:
image size, the particle contrast the model saw (``particle_contrast``: ``bright`` = protein bright,
RELION's convention for extracted particles; pickers compare it with their micrographs'
``contrast``), the normalisation (``normalization``: each particle to zero mean / unit std, then
``(x - pixel_mean) / pixel_std`` with the dataset statistics) and the effective pixel size of
training. The weights load into timm with no cryofm code, strictly (every key must match)::

    meta = json.load(open("backbone.json"))
    model = timm.create_model(meta["model_name"], pretrained=False, **{**meta["kwargs"], "num_classes": 0})
    model.load_state_dict(safetensors.torch.load_file("backbone.safetensors"), strict=True)

``<run>/config.json`` is timm's own description of the model (``timm.models.push_to_hf.save_for_hf``
writes it beside ``model.safetensors``; timm's local-dir loader takes the folder's one
``*.safetensors``), so ``timm.create_model("local-dir:<run>", pretrained=True)`` also works, offline.
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
from cryofm.models import conv_stem  # noqa: F401  (registers timm's "convstem_vit" before create_model)
from cryofm.utils import atomic

WEIGHTS = "backbone.safetensors"
META = "backbone.json"
TIMM_CONFIG = "config.json"  # timm's save_for_hf layout: makes the folder a timm "local-dir:" model
# what the model was trained on (pickers and feature extraction read these from backbone.json)
PARTICLE_CONTRAST = "bright"  # protein bright, as RELION extracts particles (pick.yaml: contrast dark|bright)
NORMALIZATION = {"per_particle": "zero_mean_unit_std", "then": "(x - pixel_mean) / pixel_std",
                 "note": "each particle box to zero mean, unit std; then the dataset pixel_mean / pixel_std"}


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
    meta = {"model_name": model_name, "kwargs": dict(kwargs), "particle_contrast": PARTICLE_CONTRAST,
            "normalization": NORMALIZATION, **(extra or {})}
    atomic.write_json(out_dir / META, meta)
    write_timm_config(model, kwargs, out_dir, meta)
    return out_dir / WEIGHTS


def write_timm_config(model: nn.Module, kwargs: dict[str, Any], out_dir: str | Path,
                      meta: dict[str, Any]) -> Path:
    """``<out>/config.json`` in timm's ``save_for_hf`` format (architecture, model_args, pretrained_cfg
    with this backbone's input size and normalisation, not the architecture's ImageNet defaults)."""
    from timm.models._hub import save_config_for_hf

    size = int(meta.get("image_size") or 224)
    in_chans = int(kwargs.get("in_chans", 1))
    mean, std = float(meta.get("pixel_mean") or 0.0), float(meta.get("pixel_std") or 1.0)
    pretrained_cfg = {"tag": "cryofm", "license": None, "hf_hub_id": None, "url": None}
    data = {"input_size": (in_chans, size, size), "mean": (mean,) * in_chans, "std": (std,) * in_chans,
            "crop_pct": 1.0, "interpolation": "bicubic"}
    path = Path(out_dir) / TIMM_CONFIG
    with atomic.atomic_path(path) as tmp:
        save_config_for_hf(model, str(tmp), model_config={"pretrained_cfg": pretrained_cfg},
                           model_args=dict(kwargs), data_config=data)
    return path


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
    """Load an exported backbone (run dir or file) through timm, strictly; returns (eval-mode model, meta).

    The model is created from ``backbone.json`` without a classifier (``num_classes=0``) and every
    tensor of the safetensors file must match a parameter (``strict=True``): a file from another
    architecture or size is an error, never a partly random model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    f = resolve_backbone_file(path)
    try:
        meta = json.loads((f.parent / META).read_text())
        name, kwargs = str(meta["model_name"]), {**dict(meta.get("kwargs") or {}), "num_classes": 0}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise InputError(f.parent / META, f"not a backbone description ({why})") from None
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except Exception as exc:  # unknown model, bad kwargs
        numeric = ("embed_dim", "depth", "num_heads", "patch_size", "img_size", "mlp_ratio", "init_values",
                   "in_chans", "drop_path_rate", "reg_tokens")
        bad = sorted(k for k, v in kwargs.items() if k in numeric and isinstance(v, str))
        hint = f" (text values for {', '.join(bad)}?)" if bad else ""
        raise InputError(f.parent / META, f"cannot create {name} with its kwargs{hint}: "
                                          f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    try:
        state = load_file(str(f))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:  # corrupt file, key / shape mismatch
        why = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise InputError(f, f"cannot load backbone: {why[:300]}") from None
    return model.to(device).eval(), meta
