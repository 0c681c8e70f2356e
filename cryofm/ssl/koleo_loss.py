"""KoLeo regulariser (Sablayrolles et al. 2019): spread features by pushing up nearest-neighbour distances.

``loss = -mean_i log(d(x_i, x_nn(i)) + eps)`` on L2-normalised features, nearest neighbour excluding
itself. Safe at small batch: computed in float32; with fewer than 2 points it is 0; duplicated points
have distance 0 and give ``-log(eps)`` (finite), and the distance ``sqrt(|x-y|² + eps²)`` has a finite
gradient there (DINOv2's ``pairwise_distance`` in bf16 is where users hit NaN/inf).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo loss of features ``x`` [B, D] (scalar)."""
    x = F.normalize(x.float(), dim=-1, eps=1e-8)
    n = x.shape[0]
    if n < 2:
        return x.sum() * 0.0
    with torch.no_grad():
        sim = x @ x.t()
        sim.fill_diagonal_(-3.0)  # below any cosine similarity: never its own neighbour
        nn_idx = sim.argmax(dim=1)
    diff = x - x[nn_idx]
    dist = torch.sqrt(diff.pow(2).sum(dim=-1) + eps * eps)
    return -torch.log(dist + eps).mean()
