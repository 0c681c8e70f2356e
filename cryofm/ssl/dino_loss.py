"""DINO cross-entropy between teacher targets and student predictions on the CLS token.

Every student crop is compared with every teacher (global) crop except the same view:
``loss = mean over pairs (s, t), s != t, and samples of  -Σ_k p_t,k · log softmax(z_s / τ_s)_k``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(
    teacher_probs: torch.Tensor, student_logits: torch.Tensor, student_temp: float
) -> torch.Tensor:
    """Per-row ``-Σ p · log softmax(z / τ)`` [...]; computed in float32 (τ = 1: logits already
    divided, e.g. by the head)."""
    z = student_logits.float()
    lsm = F.log_softmax(z / student_temp if student_temp != 1.0 else z, dim=-1)
    return -(teacher_probs.float() * lsm).sum(dim=-1)


def dino_loss(
    student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor], student_temp: float = 0.1
) -> torch.Tensor:
    """DINO loss.

    Args:
        student_logits: one [B, K] tensor per student crop; the first ``len(teacher_probs)`` are the
            global crops in the same order as the teacher's.
        teacher_probs: one [B, K] target distribution per teacher (global) crop.
        student_temp: student softmax temperature τ_s.
    Returns:
        scalar, averaged over the valid (student, teacher) pairs and the batch.
    """
    # Σ_s Σ_{t≠s} mean(-t · lsm_s) = Σ_s mean(-(Σ_{t≠s} t) · lsm_s): one log-softmax and one product
    # per student crop instead of one per pair (bench/bench_trainer.py: K = 65,536, 10 crops)
    n_t = len(teacher_probs)
    t_sum = torch.stack([t.float() for t in teacher_probs]).sum(0)
    total, n_pairs = student_logits[0].new_zeros((), dtype=torch.float32), 0
    for is_, s in enumerate(student_logits):
        target = t_sum - teacher_probs[is_].float() if is_ < n_t else t_sum
        others = n_t - 1 if is_ < n_t else n_t
        if others == 0:
            continue
        total = total + cross_entropy(target, s, student_temp).mean()
        n_pairs += others
    return total / max(n_pairs, 1)
