"""DINO, iBOT and KoLeo losses and the two centerings against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from cryofm.ssl.centering import SoftmaxCenter, sinkhorn_knopp
from cryofm.ssl.dino_loss import dino_loss
from cryofm.ssl.ibot_loss import ibot_loss, patch_weights
from cryofm.ssl.koleo_loss import koleo_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _ce(p: list[float], z: list[float], temp: float) -> float:
    """-Σ p log softmax(z / temp), written out."""
    e = [math.exp(v / temp) for v in z]
    s = sum(e)
    return -sum(pi * math.log(ei / s) for pi, ei in zip(p, e, strict=True))


def test_dino_loss_skips_same_view_and_averages_pairs():
    t = [torch.tensor([[0.9, 0.1]]), torch.tensor([[0.2, 0.8]])]
    s = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]])]
    # pairs (student, teacher): (1,0) (2,0) (0,1) (2,1); the same view (0,0), (1,1) is skipped
    want = (
        _ce([0.9, 0.1], [0.0, 1.0], 0.1)
        + _ce([0.9, 0.1], [0.5, 0.5], 0.1)
        + _ce([0.2, 0.8], [1.0, 0.0], 0.1)
        + _ce([0.2, 0.8], [0.5, 0.5], 0.1)
    ) / 4
    got = dino_loss(s, t, student_temp=0.1)
    assert math.isclose(float(got), want, rel_tol=1e-5)
    # [0.5, 0.5] logits are uniform: -Σ p log(1/2) = log 2 whatever p
    assert math.isclose(_ce([0.9, 0.1], [0.5, 0.5], 0.1), math.log(2), rel_tol=1e-12)


def test_ibot_loss_weights_patches_per_image():
    masks = torch.tensor([[True, False, False], [True, True, False], [False, False, False]])
    assert patch_weights(masks).tolist() == [1.0, 0.5, 0.5]
    s = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    ce = [_ce([1, 0], [2, 0], 0.5), _ce([0.5, 0.5], [0, 0], 0.5), _ce([1, 0], [0, 2], 0.5)]
    want = (1.0 * ce[0] + 0.5 * ce[1] + 0.5 * ce[2]) / 3  # divided by all 3 images
    assert math.isclose(float(ibot_loss(s, t, masks, 0.5)), want, rel_tol=1e-5)
    empty = ibot_loss(torch.zeros(0, 2, requires_grad=True), torch.zeros(0, 2), torch.zeros(2, 3, dtype=bool))
    assert float(empty.detach()) == 0.0


def test_koleo_on_known_points_and_safe_cases():
    # unit vectors at 0°, 90°, 180°: every nearest neighbour is at distance sqrt(2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert math.isclose(float(koleo_loss(x)), -math.log(math.sqrt(2)), rel_tol=1e-5)
    # scale does not matter (features are L2-normalised)
    assert math.isclose(float(koleo_loss(5 * x)), -math.log(math.sqrt(2)), rel_tol=1e-5)
    # duplicated points (collapse) and a batch of one: finite loss and gradient
    d = torch.ones(4, 8, requires_grad=True)
    loss = koleo_loss(d)
    loss.backward()
    loss = loss.item()
    assert math.isfinite(loss) and torch.isfinite(d.grad).all()
    assert math.isclose(loss, -math.log(1e-8 + 1e-8), rel_tol=1e-4)
    one = torch.randn(1, 8, requires_grad=True)
    assert koleo_loss(one).item() == 0.0
    # bf16 input is computed in float32
    assert math.isfinite(float(koleo_loss(torch.ones(3, 8, dtype=torch.bfloat16))))


def test_sinkhorn_two_by_two_by_hand():
    # exp(logits) = [[1, 2], [1, 1]]; one iteration: prototypes then samples normalised (worked by hand:
    # Q = [[.2, .2], [.4, .2]] -> rows /[.4, .6] /2 -> [[.25, .25], [1/3, 1/6]] -> columns normalised)
    logits = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    q = sinkhorn_knopp(logits, temp=1.0, n_iter=1)
    want = torch.tensor([[3 / 7, 4 / 7], [3 / 5, 2 / 5]])
    assert torch.allclose(q, want, atol=1e-6)
    # shifting all logits by a constant changes nothing; many iterations balance the prototypes
    q2 = sinkhorn_knopp(logits + 30.0, temp=1.0, n_iter=1)
    assert torch.allclose(q, q2, atol=1e-6)
    qb = sinkhorn_knopp(torch.randn(64, 8) * 3, temp=0.5, n_iter=50)
    assert torch.allclose(qb.sum(1), torch.ones(64), atol=1e-5)
    assert torch.allclose(qb.sum(0), torch.full((8,), 64 / 8), rtol=1e-3)
    # large logits at a small temperature stay finite
    assert torch.isfinite(sinkhorn_knopp(torch.randn(16, 32) * 50, temp=0.04)).all()


def test_softmax_center_by_hand():
    c = SoftmaxCenter(2, momentum=0.9)
    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    p = c(logits, temp=1.0)  # centre was 0: plain softmax
    assert torch.allclose(p[0], torch.tensor([math.e / (math.e + 1), 1 / (math.e + 1)]), atol=1e-6)
    assert torch.allclose(c.center, torch.tensor([[0.2, 0.1]]))  # 0.9·0 + 0.1·mean([[2, 1]])
    p = c(torch.tensor([[0.2, 0.1]]), temp=0.5)  # logits equal to the centre: uniform
    assert torch.allclose(p, torch.tensor([[0.5, 0.5]]))
