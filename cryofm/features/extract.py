"""Frozen-feature extraction from a ViT backbone: CLS token, mean patch token, patch-token grid.

The particle descriptor of cryoPANDA's probes is ``CLS ⊕ mean(patch tokens)`` of the last block
(after the final norm); :func:`image_features` also offers the concatenation over the last 4 blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from cryofm.models.backbone import num_prefix_tokens, patch_size


def _split(tokens: torch.Tensor, n_prefix: int, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    cls = tokens[:, 0]
    patch = tokens[:, n_prefix:]
    return {"cls": cls, "patch_mean": patch.mean(1), "patch": patch.reshape(tokens.shape[0], *grid, -1)}


@torch.no_grad()
def backbone_tokens(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``x`` [B, 1, H, W]; returns ``cls`` [B, D], ``patch_mean`` [B, D] and
    ``patch`` [B, H/p, W/p, D] from the normed last-block tokens."""
    p = patch_size(model)
    grid = (x.shape[-2] // p, x.shape[-1] // p)
    tokens = model.forward_features(x)
    return _split(tokens, num_prefix_tokens(model), grid)


@torch.no_grad()
def image_features(model: nn.Module, x: torch.Tensor, last_blocks: int = 1) -> torch.Tensor:
    """Particle descriptor [B, 2·D·last_blocks]: ``CLS ⊕ mean patch`` of each of the last blocks
    (normed with the model's final norm), concatenated from the earliest to the last."""
    if last_blocks == 1:
        out = backbone_tokens(model, x)
        return torch.cat([out["cls"], out["patch_mean"]], dim=-1)
    n_prefix = num_prefix_tokens(model)
    inter = model.forward_intermediates(x, indices=last_blocks, norm=True, output_fmt="NLC",
                                        intermediates_only=True, return_prefix_tokens=True)
    feats = []
    for item in inter:
        patch, prefix = item if isinstance(item, tuple) else (item[:, n_prefix:], item[:, :n_prefix])
        feats += [prefix[:, 0], patch.mean(1)]
    return torch.cat(feats, dim=-1)
