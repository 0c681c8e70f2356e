"""The DINO head's prototype layer: the hand-written weight-norm backward against autograd through
torch's own weight_norm parametrisation, and Sinkhorn-Knopp on scaling vectors against DINOv2's
in-place algorithm written out here."""

from __future__ import annotations

import pytest
import torch

from cryofm.models.heads import DINOHead
from cryofm.ssl.centering import sinkhorn_knopp


@pytest.mark.parametrize("train_g", [False, True])
@pytest.mark.parametrize("mult", [1.0, 10.0])
def test_prototypes_equal_weight_norm_values_and_gradients(train_g, mult):
    torch.manual_seed(0)
    head = DINOHead(16, 300, 32, 8, 3)
    p = head.last_layer.parametrizations.weight
    with torch.no_grad():
        p.original0.mul_(torch.rand_like(p.original0) + 0.5)  # g != 1: the g terms are exercised
    p.original0.requires_grad_(train_g)
    z = torch.nn.functional.normalize(torch.randn(20, 8), dim=1).requires_grad_()
    w = torch.randn(20, 300)

    def grads(fn):
        z.grad = p.original0.grad = p.original1.grad = None
        out = fn()
        (out * w).sum().backward()
        return out.detach(), z.grad.clone(), p.original1.grad.clone(), (
            p.original0.grad.clone() if train_g else None)

    mine = grads(lambda: head.prototypes(z, mult))
    ref = grads(lambda: mult * head.last_layer(z))  # W = g v / |v| built by the parametrisation
    for a, b in zip(mine, ref, strict=True):
        if b is None:
            assert a is None
        else:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


def test_head_divides_by_its_temperature():
    torch.manual_seed(0)
    head = DINOHead(16, 64, 32, 8, 3)
    x = torch.randn(5, 16)
    assert torch.allclose(head(x, 0.1), head(x) / 0.1, rtol=1e-5, atol=1e-6)
    assert torch.allclose(head(x), head.last_layer(torch.nn.functional.normalize(head.mlp(x), dim=-1)),
                          atol=1e-6)


def _dinov2_sinkhorn(logits: torch.Tensor, temp: float, n_iter: int) -> torch.Tensor:
    """DINOv2's SinkhornKnoppTeacher, one process: in-place divisions of the K x B matrix."""
    Q = torch.exp(logits.float() / temp).t()
    B, K = Q.shape[1], Q.shape[0]
    Q /= Q.sum()
    for _ in range(n_iter):
        Q /= Q.sum(dim=1, keepdim=True)
        Q /= K
        Q /= Q.sum(dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def test_sinkhorn_on_scaling_vectors_equals_the_in_place_algorithm():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(32, 16, generator=g), dim=1) @ \
        torch.nn.functional.normalize(torch.randn(512, 16, generator=g), dim=1).t()
    for temp, n in ((0.04, 3), (0.07, 10)):
        ref = _dinov2_sinkhorn(x, temp, n)
        got = sinkhorn_knopp(x, temp, n)
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-6 * float(ref.max()))
        assert torch.allclose(got.sum(1), torch.ones(32), atol=1e-5)


def test_sinkhorn_keeps_an_underflowing_column_and_row_finite():
    x = torch.randn(8, 16)
    x[:, 3] = -1e4  # exp underflows to 0 for a whole prototype and a whole sample
    x[2, :] = -1e4
    q = sinkhorn_knopp(x, 0.1, 5)
    assert torch.isfinite(q).all() and float(q[:, 3].abs().max()) == 0.0 and float(q[2].abs().max()) == 0.0
