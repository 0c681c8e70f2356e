"""Backbones from timm by name, with one input channel.

Two families are supported:

* DINOv3-style ViTs (``vit_{small,base,large}_patch16_dinov3_qkvb``, timm's ``Eva`` class): RoPE,
  4 register tokens, LayerScale. RoPE lets 224 px global and 96 px local crops share one model.
* Classic ViTs (``vit_*_patch16_224``, timm's ``VisionTransformer``) with learned position
  embeddings, created with ``dynamic_img_size=True`` so that other crop sizes interpolate them.

Attention goes through ``torch.nn.functional.scaled_dot_product_attention`` (timm's fused path);
:func:`cryofm.models.attention.use_xformers` swaps in xFormers on CUDA when it is installed.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from cryofm.models import conv_stem  # registers timm's "convstem_vit"


def is_rope(model_name: str, base: str | None = None) -> bool:
    """True for the RoPE (DINOv3 / Eva) family, whose position encoding needs no interpolation
    (``base``: the ViT inside a ``convstem_vit``)."""
    if model_name == conv_stem.NAME:
        return is_rope(base or "vit_small_patch16_dinov3_qkvb")
    return "dinov3" in model_name or model_name.startswith("eva")


def backbone_kwargs(model_name: str, img_size: int, in_chans: int = 1, drop_path_rate: float = 0.0,
                    **extra: Any) -> dict[str, Any]:
    """The ``timm.create_model`` kwargs cryofm uses (also written to ``backbone.json``)."""
    kw: dict[str, Any] = {"img_size": int(img_size), "in_chans": int(in_chans), "num_classes": 0,
                          "drop_path_rate": float(drop_path_rate)}
    if not is_rope(model_name, extra.get("base")):
        kw["dynamic_img_size"] = True
    kw.update({k: _plain(v) for k, v in extra.items()})
    return kw


def _plain(value: Any) -> Any:
    """Config values as plain Python (a ListConfig from Hydra must reach backbone.json as a list)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return list(value) if isinstance(value, tuple) else value


def create_backbone(model_name: str, img_size: int = 224, in_chans: int = 1, drop_path_rate: float = 0.0,
                    **extra: Any) -> nn.Module:
    """A randomly initialised timm ViT (no download) with ``in_chans`` inputs and no classifier."""
    kw = backbone_kwargs(model_name, img_size, in_chans, drop_path_rate, **extra)
    return timm.create_model(model_name, pretrained=False, **kw)


def random_backbone(model_name: str, kwargs: dict[str, Any], seed: int = 0) -> nn.Module:
    """The random-init baseline of a checkpoint: its architecture (``backbone.json``'s name and
    kwargs) created right after ``torch.manual_seed(seed)``, without drop path."""
    import torch

    torch.manual_seed(int(seed))
    kw = {k: v for k, v in kwargs.items() if k != "drop_path_rate"}
    size, chans = kw.pop("img_size", 224), kw.pop("in_chans", 1)
    return create_backbone(model_name, img_size=size, in_chans=chans, **kw)


def patch_size(model: nn.Module) -> int:
    """Patch edge in pixels (the stem's total stride for a ``convstem_vit``)."""
    s = conv_stem.stride(model)
    if s is not None:
        return s
    ps = model.patch_embed.patch_size
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


def num_prefix_tokens(model: nn.Module) -> int:
    """CLS + register tokens in front of the patch tokens."""
    return int(getattr(model, "num_prefix_tokens", 1))


def embed_dim(model: nn.Module) -> int:
    """Token width."""
    return int(model.embed_dim)


@torch.no_grad()
def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
