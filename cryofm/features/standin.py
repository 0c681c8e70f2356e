"""A stand-in backbone whose tokens are known: local pixel means.

Each patch token is the mean of its p × p pixels, the CLS token the mean of the window's central
half; features of a window then peak where a bright blob sits at its centre. It has the interface the
sliding-window code uses (``patch_embed.patch_size``, ``num_prefix_tokens``, ``forward_features``),
so tests and benchmarks can check the micrograph pipeline on features that carry the particle signal
without a trained network.
"""

from __future__ import annotations

import torch
from torch import nn


class LocalMeanBackbone(nn.Module):
    """Tokens = local means (2 identical channels), patch ``p`` px; ``forward_features(x [B,1,H,W])``."""

    def __init__(self, p: int = 8):
        super().__init__()
        self.patch_embed = type("PatchEmbed", (), {"patch_size": (p, p)})()
        self.num_prefix_tokens = 1
        self.w = nn.Parameter(torch.zeros(1))  # a parameter, so device / dtype queries work
        self.p = p

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        patches = nn.functional.avg_pool2d(x, self.p).flatten(2).transpose(1, 2)  # [B, N, 1]
        c = x[:, :, h // 4:h - h // 4, w // 4:w - w // 4].mean((-2, -1))[:, :, None]
        return torch.cat([c.transpose(1, 2), patches], 1).expand(-1, -1, 2) + self.w
