"""A ViT whose 16 × 16 patch projection is a convolutional stem ("Early convolutions help
transformers see better", Xiao et al. 2021), registered with timm as ``convstem_vit``.

Why cryofm has it: particles are normalised per image (zero mean), and a linear patch projection
averaged by the near-uniform attention of a randomly initialised ViT cancels out, so the CLS token
of a fresh ViT carries almost no information about the particle and DINO's self-distillation has no
signal to bootstrap from (docs/training.md, "Why a fresh ViT does not learn here"). A stack of
stride-2 3 × 3 convolutions with GroupNorm and GELU between them is non-linear before any pooling
and gives the tokens local-contrast features from the first step.

It is built from timm's own parts: any timm ViT by name (``base``, e.g. the DINOv3-style
``vit_small_patch16_dinov3_qkvb`` or a classic ``vit_small_patch16_224``) whose ``patch_embed`` is
replaced by :class:`timm.layers.HybridEmbed` over :class:`timm.models.vision_transformer_hybrid.ConvStem`.
Parameter names are timm's (``patch_embed.backbone.<i>.conv.weight``, ...), so an exported backbone
loads with ``timm.create_model("convstem_vit", base=..., stem_channels=..., pretrained=True,
pretrained_cfg_overlay={"file": ...})`` once ``cryofm.models`` has been imported (which registers it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import timm
from safetensors.torch import load_file
from timm.layers import GroupNormAct, HybridEmbed
from timm.models import register_model
from timm.models.vision_transformer_hybrid import ConvStem
from torch import nn

NAME = "convstem_vit"


def conv_stem_embed(in_chans: int, embed_dim: int, img_size: int, channels: Sequence[int],
                    groups: int = 8, dynamic: bool = True) -> HybridEmbed:
    """HybridEmbed over a ConvStem: ``len(channels) + 1`` stride-2 3 × 3 convolutions
    (``in_chans → channels… → embed_dim``; GroupNorm with ``groups`` groups + GELU after each but the
    last), i.e. a total stride of ``2 ** (len(channels) + 1)`` px per token."""
    chans = (*[int(c) for c in channels], int(embed_dim))
    depth = len(chans)
    stem = ConvStem(in_chans=in_chans, depth=depth, channels=chans, kernel_size=3, stride=(2,) * depth,
                    padding=1, norm_layer=partial(GroupNormAct, num_groups=groups), act_layer=nn.GELU)
    fmt = {"strict_img_size": False, "output_fmt": "NHWC"} if dynamic else {}
    return HybridEmbed(stem, img_size=img_size, patch_size=1, in_chans=in_chans, embed_dim=embed_dim,
                       proj=False, **fmt)


def _groupnorm_groups(channels: Sequence[int], groups: int) -> int:
    g = int(groups)
    for c in channels:
        if int(c) % g:
            raise ValueError(f"stem channel count {c} is not a multiple of {g} GroupNorm groups")
    return g


@register_model
def convstem_vit(pretrained: bool = False, base: str = "vit_small_patch16_dinov3_qkvb",
                 stem_channels: Sequence[int] = (24, 48, 96), stem_groups: int = 8, **kwargs) -> nn.Module:
    """timm ViT ``base`` with a convolutional stem of total stride = its patch size.

    ``stem_channels``: widths of the hidden stem convolutions (the last one outputs ``embed_dim``);
    their number fixes the stride, which must equal ``base``'s patch size (3 → 16 px).
    """
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    cfg = kwargs.pop("pretrained_cfg", None)
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {})
    model = timm.create_model(base, pretrained=False, **kwargs)
    # timm's save_for_hf / "local-dir:" loading name the architecture from pretrained_cfg
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), "architecture": NAME}
    model.default_cfg = model.pretrained_cfg
    pe = model.patch_embed
    ps = pe.patch_size[0] if isinstance(pe.patch_size, (tuple, list)) else int(pe.patch_size)
    stride = 2 ** (len(stem_channels) + 1)
    if stride != ps:
        raise ValueError(f"a stem of {len(stem_channels)} hidden convolutions has stride {stride}, "
                         f"but {base} uses {ps} px patches")
    groups = _groupnorm_groups(stem_channels, stem_groups)
    img = pe.img_size[0] if isinstance(pe.img_size, (tuple, list)) else int(pe.img_size)
    dynamic = getattr(pe, "output_fmt", None) is not None and str(pe.output_fmt.value) == "NHWC"
    model.patch_embed = conv_stem_embed(int(kwargs.get("in_chans", 3)), int(model.embed_dim), img,
                                        stem_channels, groups, dynamic)
    if pretrained:
        file = overlay.get("file") or cfg.get("file")
        if not file:
            raise ValueError("convstem_vit has no hub weights: pass pretrained_cfg_overlay={'file': ...} "
                             "or create it from a 'local-dir:' folder")
        if Path(file).is_dir():  # timm "local-dir:" — the folder's safetensors file, as timm picks it
            from timm.models._hub import load_state_dict_from_path

            model.load_state_dict(load_state_dict_from_path(file), strict=True)
        else:
            model.load_state_dict(load_file(str(file)), strict=True)
    return model


def stride(model: nn.Module) -> int | None:
    """Pixels per token of a ``HybridEmbed`` patch embedding (None for a plain ``PatchEmbed``)."""
    pe = getattr(model, "patch_embed", None)
    if isinstance(pe, HybridEmbed):
        return int(pe.feat_ratio())
    return None
