"""DINO / iBOT projection head: MLP → L2-normalise → weight-normalised prototypes.

As in DINO/DINOv2: ``nlayers`` linear layers (GELU between, hidden width ``hidden_dim``) down to a
``bottleneck_dim`` embedding, L2-normalised, then a bias-free linear layer onto ``n_prototypes``
whose weight is weight-normalised with the norm fixed at 1 (logits are cosine similarities).
``use_bn`` puts BatchNorm after each hidden linear layer (DINO's ``use_bn`` option): it centres the
head's input over the batch, which matters for per-particle-normalised, noisy cryo-EM images whose
CLS tokens start almost identical (without it the Sinkhorn targets of a short run stay uniform).
cryoPANDA used 65,536 prototypes, hidden 2,048, bottleneck 256, 3 layers, for both heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    """Projection head; ``forward(x [..., in_dim]) -> logits [..., n_prototypes]``."""

    def __init__(
        self,
        in_dim: int,
        n_prototypes: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        use_bn: bool = False,
    ):
        super().__init__()
        nlayers = max(int(nlayers), 1)
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            def hidden(d_in: int) -> list[nn.Module]:
                bn = [nn.BatchNorm1d(hidden_dim)] if use_bn else []
                return [nn.Linear(d_in, hidden_dim), *bn, nn.GELU()]

            layers: list[nn.Module] = hidden(in_dim)
            for _ in range(nlayers - 2):
                layers += hidden(hidden_dim)
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.apply(self._init)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, n_prototypes, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        g.data.fill_(1.0)
        g.requires_grad = False

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:  # no masked patches in this batch: BatchNorm cannot run on zero rows
            return x.new_zeros(0, self.last_layer.out_features)
        z = self.mlp(x)
        z = F.normalize(z, dim=-1, p=2, eps=1e-6 if z.dtype == torch.float16 else 1e-12)
        return self.last_layer(z)
