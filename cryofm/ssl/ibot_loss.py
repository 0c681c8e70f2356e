"""iBOT masked-patch loss: student predictions at masked patches against the teacher's targets there.

Each masked patch contributes ``-Σ p_t · log softmax(z_s / τ_s)`` weighted by 1 / (number of masked
patches of its image), so every masked image weighs the same; the sum is divided by the number of
images (masked or not), as in DINOv2.
"""

from __future__ import annotations

import torch

from cryofm.ssl.dino_loss import cross_entropy


def patch_weights(masks: torch.Tensor) -> torch.Tensor:
    """Weights [M] of the masked patches of ``masks`` [B, N] (row-major order of ``masks[masks]``)."""
    per_image = 1.0 / masks.sum(dim=-1).clamp_min(1).float()
    return per_image.unsqueeze(-1).expand_as(masks)[masks]


def ibot_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor, student_temp: float = 0.1
) -> torch.Tensor:
    """iBOT loss.

    Args:
        student_logits: [M, K] logits of the M masked patches (``tokens[masks]`` order).
        teacher_probs: [M, K] teacher targets at the same patches.
        masks: [B, N] boolean patch masks of the B images.
        student_temp: student temperature.
    """
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    ce = cross_entropy(teacher_probs, student_logits, student_temp)
    return (ce * patch_weights(masks)).sum() / masks.shape[0]
