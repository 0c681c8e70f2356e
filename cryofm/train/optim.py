"""AdamW parameter groups of the student (DINOv2 rules) and their per-step lr / weight decay.

* layer-wise lr decay: ``lr_mult = decay ** (L + 1 - layer_id)``; tokens and patch embedding are
  layer 0, block ``i`` is layer ``i + 1``, final norm and heads are layer ``L + 1`` (mult 1);
* patch embedding lr × ``patch_embed_lr_mult`` (0.2 in cryoPANDA);
* no weight decay on biases, norms, LayerScale gammas and tokens;
* the heads' last (prototype) layer follows ``last_layer_lr`` (0 during the first epoch: frozen).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_LAYER0 = ("cls_token", "reg_token", "pos_embed", "mask_token", "patch_embed")


def layer_id(name: str, n_blocks: int) -> int:
    """Layer index of a student parameter name for layer-wise lr decay."""
    if not name.startswith("backbone."):
        return n_blocks + 1  # heads
    m = _BLOCK.search(name)
    if m:
        return int(m.group(1)) + 1
    if any(k in name for k in _LAYER0):
        return 0
    return n_blocks + 1


def no_weight_decay(name: str, p: torch.Tensor) -> bool:
    """True for biases, norms, LayerScale gammas and tokens."""
    return (
        p.ndim <= 1
        or name.endswith(".bias")
        or "norm" in name
        or "gamma" in name
        or any(k in name for k in ("cls_token", "reg_token", "pos_embed", "mask_token"))
    )


def param_groups(
    student: nn.Module, layer_decay: float = 0.9, patch_embed_lr_mult: float = 0.2
) -> list[dict[str, Any]]:
    """AdamW groups with ``lr_multiplier``, ``wd_multiplier`` and ``is_last_layer`` keys."""
    n_blocks = len(student.backbone.backbone.blocks)
    groups: dict[tuple, dict[str, Any]] = {}
    for name, p in student.named_parameters():
        if not p.requires_grad:
            continue
        lr_mult = layer_decay ** (n_blocks + 1 - layer_id(name, n_blocks))
        if "patch_embed" in name:
            lr_mult *= patch_embed_lr_mult
        wd_mult = 0.0 if no_weight_decay(name, p) else 1.0
        last = "last_layer" in name
        key = (round(lr_mult, 12), wd_mult, last)
        g = groups.setdefault(
            key,
            {
                "params": [],
                "names": [],
                "lr_multiplier": lr_mult,
                "wd_multiplier": wd_mult,
                "is_last_layer": last,
            },
        )
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def make_optimizer(student: nn.Module, optim_cfg, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW over :func:`param_groups` (betas from the config; lr / wd set every step).

    ``fused`` uses the single-kernel AdamW (CPU and CUDA; several times faster than the per-tensor
    loop); otherwise the ``foreach`` implementation (used with FSDP's sharded parameters).
    """
    groups = param_groups(student, float(optim_cfg.layer_decay), float(optim_cfg.patch_embed_lr_mult))
    for g in groups:
        g.pop("names")
    impl = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, betas=tuple(optim_cfg.betas), **impl)


def apply_schedule(optimizer: torch.optim.Optimizer, lr: float, wd: float, last_layer_lr: float) -> None:
    """Set every group's lr and weight decay for this step."""
    for g in optimizer.param_groups:
        g["lr"] = (last_layer_lr if g["is_last_layer"] else lr) * g["lr_multiplier"]
        g["weight_decay"] = wd * g["wd_multiplier"]


def clip_gradients(student: nn.Module, max_norm: float) -> float:
    """Clip the gradient norm of each part of the student (backbone, DINO head, iBOT head) to
    ``max_norm`` separately, as DINOv2 does (``for v in student.values(): v.clip_grad_norm_``); returns
    the norm of all gradients together before clipping (what the log shows)."""
    sq = 0.0
    for part in student.children():
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        if not grads:
            continue
        if any(type(g) is not torch.Tensor for g in grads):  # FSDP2's DTensor shards: torch's own
            sq += float(torch.nn.utils.clip_grad_norm_(list(part.parameters()), max_norm, foreach=True)) ** 2
            continue
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        total = float(norm)
        if total > max_norm:  # clip_grad_norm_'s float32 coefficient (bitwise the same result), but
            torch._foreach_mul_(grads, max_norm / (norm + 1e-6))  # no multiply by 1.0 within the bound
        sq += total ** 2
    return sq ** 0.5
