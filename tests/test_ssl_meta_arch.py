"""The full DINOv2 step: overfitting one fixed batch lowers the loss, nothing turns NaN."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from cryofm.ssl.ema import ema_update, paired_params
from cryofm.ssl.meta_arch import SSLMetaArch
from cryofm.train.optim import apply_schedule, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfgs(centering: str):
    model = OmegaConf.create(
        {
            "name": "vit_small_patch16_dinov3_qkvb",
            "in_chans": 1,
            "drop_path_rate": 0.0,
            "kwargs": {"depth": 2, "embed_dim": 48, "num_heads": 2},
        }
    )
    ssl = OmegaConf.load("configs/ssl/dinov2.yaml")
    ssl.centering = centering
    for h in ("dino", "ibot"):
        ssl[h].head = {"n_prototypes": 64, "hidden_dim": 64, "bottleneck_dim": 32, "nlayers": 3}
    optim = OmegaConf.load("configs/optim/adamw.yaml")
    return model, ssl, optim


def _batch(B: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(2 * B, 4, dtype=torch.bool)
    masks[::2, :2] = True
    return {
        "global_crops": torch.randn(2 * B, 1, 32, 32, generator=g),
        "local_crops": torch.randn(4 * B, 1, 16, 16, generator=g),
        "masks": masks,
    }


@pytest.mark.parametrize("centering", ["sinkhorn_knopp", "softmax"])
def test_overfit_one_batch(centering):
    torch.manual_seed(0)
    model, ssl, optim = _cfgs(centering)
    arch = SSLMetaArch(model, ssl, 32)
    opt = make_optimizer(arch.student, optim)
    s, t = paired_params(arch.student, arch.teacher)
    batch = _batch()
    losses = []
    for _ in range(25):
        apply_schedule(opt, lr=2e-3, wd=0.04, last_layer_lr=2e-3)
        loss, parts = arch(batch, teacher_temp=0.04)
        assert all(math.isfinite(v) for v in parts.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(arch.student.parameters(), 3.0)
        opt.step()
        ema_update(s, t, 0.9)
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    # softmax centering oscillates on one batch (the centre chases the teacher's mean: 6.7 → 1.5 →
    # 4.3 → 2.1 …), so the claim is the best loss of the later steps, not the last ones
    # (measured: Sinkhorn 10.6 → 6.2, softmax 6.7 → 1.5 by step 13)
    assert min(losses[5:]) < 0.8 * losses[0]
    assert all(torch.isfinite(p).all() for p in arch.parameters())
    # the teacher moved towards the student but is not the student
    a = dict(arch.student.named_parameters())["backbone.backbone.blocks.0.mlp.fc1.weight"]
    b = dict(arch.teacher.named_parameters())["backbone.backbone.blocks.0.mlp.fc1.weight"]
    assert not torch.equal(a, b) and not b.requires_grad


def test_koleo_weight_and_parts_add_up():
    torch.manual_seed(1)
    model, ssl, _ = _cfgs("sinkhorn_knopp")
    arch = SSLMetaArch(model, ssl, 32)
    with torch.no_grad():
        loss, parts = arch(_batch(4), teacher_temp=0.04)
    want = parts["dino_loss"] + parts["ibot_loss"] + 0.1 * parts["koleo_loss"]
    assert math.isclose(loss.item(), want, rel_tol=1e-5)


def test_teacher_stays_in_eval_mode():
    model, ssl, _ = _cfgs("sinkhorn_knopp")
    model.drop_path_rate = 0.5
    arch = SSLMetaArch(model, ssl, 32).train()
    assert arch.student.training and not arch.teacher.training
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():  # no drop path in the teacher: deterministic
        a, b = arch.teacher.backbone(x)["cls"], arch.teacher.backbone(x)["cls"]
    assert torch.equal(a, b)


def test_head_batchnorm_centres_over_the_batch_in_student_and_teacher():
    from cryofm.models.heads import DINOHead

    model, ssl, _ = _cfgs("sinkhorn_knopp")
    for h in ("dino", "ibot"):
        ssl[h].head.use_bn = True
    arch = SSLMetaArch(model, ssl, 32).train()
    bns = [m for m in arch.teacher.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 4 and all(m.training for m in bns)  # 2 hidden layers x 2 heads, batch statistics
    assert not arch.teacher.backbone.training  # ... while the backbone keeps no drop path
    # batch statistics: a constant offset added to every row of the head's input changes nothing
    head = arch.teacher.dino_head
    x = torch.randn(6, 48)
    with torch.no_grad():
        assert torch.allclose(head(x), head(x + 5.0), atol=1e-4)
    # a batch with no masked patch gives an empty iBOT output instead of a BatchNorm error
    assert DINOHead(48, 16, 32, 8, 3, use_bn=True).train()(torch.zeros(0, 48)).shape == (0, 16)
    with torch.no_grad():
        loss, parts = arch(_batch(4), teacher_temp=0.04)
    assert math.isfinite(loss.item())
