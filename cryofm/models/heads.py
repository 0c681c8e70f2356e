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
        self.use_bn = bool(use_bn)
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

    def forward(self, x: torch.Tensor, temp: float = 1.0) -> torch.Tensor:
        """Logits [..., K] divided by ``temp`` (folded into the prototype scale: no extra pass)."""
        if x.shape[0] == 0:  # no masked patches in this batch: BatchNorm cannot run on zero rows
            return x.new_zeros(0, self.last_layer.out_features)
        z = self.mlp(x)
        z = F.normalize(z, dim=-1, p=2, eps=1e-6 if z.dtype == torch.float16 else 1e-12)
        return self.prototypes(z, 1.0 / temp)

    def prototypes(self, z: torch.Tensor, mult: float = 1.0) -> torch.Tensor:
        """``mult · last_layer(z)``, the weight-normalised prototypes, without building their weight."""
        p = self.last_layer.parametrizations.weight
        return WeightNormedLinear.apply(z, p.original0, p.original1, float(mult))


class WeightNormedLinear(torch.autograd.Function):
    """``m · z · Wᵀ`` for the weight-normalised ``W = g · v / ‖v‖`` (row norms) and a constant ``m``
    (e.g. 1 / temperature), as ``(z · vᵀ) · s`` with the K-vector ``s = m · g / ‖v‖``, and a backward
    written out by hand.

    Measured reason (bench/bench_trainer.py, K = 65,536, ~250 rows, 2 CPU threads): building ``W``
    writes the K × bottleneck matrix every forward, and autograd's backward through the row norm
    makes five more passes over it (div, mul, masked_fill, add, add_); the heads' backward took
    534 ms, 385 ms with this. Here the backward is two matmuls and one pass over ``v``:
    ``∂L/∂v = (G·s)ᵀ z − ((Σ_n G ⊙ out) / ‖v‖²) ⊙ v``, ``∂L/∂g = Σ_n G ⊙ out / g`` (g is frozen at 1 in
    DINOv2's recipe). Inputs: ``z`` [N, D], ``g`` [K, 1], ``v`` [K, D]; any dtype (bf16 under autocast);
    the norms and the per-prototype sums are float32.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, g: torch.Tensor, v: torch.Tensor, mult: float = 1.0) -> torch.Tensor:
        inv = torch.linalg.vector_norm(v.float(), dim=1).reciprocal()  # [K]
        scale = g.squeeze(1).float() * inv * mult
        if torch.is_autocast_enabled(z.device.type):
            z = z.to(torch.get_autocast_dtype(z.device.type))
        out = F.linear(z, v.to(z.dtype)).mul_(scale.to(z.dtype))
        ctx.save_for_backward(z, g, v, inv, out)
        ctx.mult = mult
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        z, g, v, inv, out = ctx.saved_tensors
        scale = g.squeeze(1).float() * inv * ctx.mult
        grad_raw = grad_out * scale.to(grad_out.dtype)  # ∂L/∂(z · vᵀ)
        gz = grad_raw @ v.to(grad_raw.dtype) if ctx.needs_input_grad[0] else None
        gg = gv = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gs_s = (grad_out.float() * out.float()).sum(0)  # (∂L/∂s_k) · s_k
            if ctx.needs_input_grad[2]:
                gv = (grad_raw.t() @ z.to(grad_raw.dtype)).float()
                gv.addcmul_(v.float(), (-gs_s * inv * inv).unsqueeze(1))
                gv = gv.to(v.dtype)
            if ctx.needs_input_grad[1]:
                gg = (gs_s / g.squeeze(1).float()).unsqueeze(1).to(g.dtype)
        return gz, gg, gv, None
