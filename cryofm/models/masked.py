"""The student backbone of iBOT/DINOv2: timm's ViT plus a learnable mask token.

The mask token replaces masked patch embeddings right after timm's ``patch_embed`` and before the
position encoding and the blocks. It is added with a forward hook on ``patch_embed`` so the same
wrapper serves timm's ``Eva`` (DINOv3-style, RoPE) and ``VisionTransformer`` classes without forking
timm, and ``backbone.state_dict()`` keeps timm's key names (the exported file loads into timm as is).
"""

from __future__ import annotations

import torch
from torch import nn

from cryofm.models.backbone import embed_dim, num_prefix_tokens, patch_size


class MaskedBackbone(nn.Module):
    """``backbone`` (a timm ViT) with an iBOT mask token.

    ``forward(x, masks)`` takes images [B, C, H, W] and optional boolean ``masks`` [B, (H/p)·(W/p)]
    (True = masked patch, row-major over the patch grid) and returns the normed last-block tokens
    split into ``cls`` [B, D] and ``patch`` [B, N, D].
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim(backbone)))
        self.n_prefix = num_prefix_tokens(backbone)
        self.patch = patch_size(backbone)
        self._masks: torch.Tensor | None = None
        backbone.patch_embed.register_forward_hook(self._insert_mask_token)

    def _insert_mask_token(self, module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        masks = self._masks
        if masks is None:
            return out
        # patch_embed returns [B, H, W, D] (dynamic size, NHWC) or [B, N, D]; masks are [B, N]
        m = masks.reshape(out.shape[:-1]).unsqueeze(-1)
        return torch.where(m, self.mask_token.to(out.dtype).view(*([1] * (out.dim() - 1)), -1), out)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if masks is not None:
            n = (x.shape[-2] // self.patch) * (x.shape[-1] // self.patch)
            if masks.shape != (x.shape[0], n):
                raise ValueError(f"masks must be [{x.shape[0]}, {n}], got {list(masks.shape)}")
        self._masks = masks
        try:
            tokens = self.backbone.forward_features(x)
        finally:
            self._masks = None
        return {"cls": tokens[:, 0], "patch": tokens[:, self.n_prefix :]}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing of the blocks (timm's own switch)."""
        self.backbone.set_grad_checkpointing(enable)
