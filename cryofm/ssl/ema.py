"""Teacher = exponential moving average of the student, updated with ``torch._foreach`` ops."""

from __future__ import annotations

import torch
from torch import nn


def paired_params(student: nn.Module, teacher: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Matching (student, teacher) parameter lists, by name (raises on a mismatch)."""
    s = dict(student.named_parameters())
    t = dict(teacher.named_parameters())
    if s.keys() != t.keys():
        raise ValueError(f"student/teacher parameters differ: {sorted(set(s) ^ set(t))[:5]}")
    names = sorted(s)
    return [s[n] for n in names], [t[n] for n in names]


@torch.no_grad()
def ema_update(
    student_params: list[torch.Tensor], teacher_params: list[torch.Tensor], momentum: float
) -> None:
    """``teacher = momentum · teacher + (1 - momentum) · student`` for every pair, in place."""
    s = [p.detach() for p in student_params]
    t = [p.data for p in teacher_params]
    # FSDP shards or mixed dtypes: fall back to a per-tensor loop when the lists cannot fuse
    if any(a.dtype != b.dtype or a.device != b.device for a, b in zip(s, t, strict=True)):
        for a, b in zip(s, t, strict=True):
            b.mul_(momentum).add_(a.to(b.dtype), alpha=1.0 - momentum)
        return
    torch._foreach_lerp_(t, s, 1.0 - momentum)  # one pass over the teacher (mul + add: two)
