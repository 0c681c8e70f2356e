"""train_step's fast paths (one log-softmax per student crop, clipping that skips the ×1 multiply,
lerp EMA) against the plain objective written out pair by pair with torch's own clip and EMA."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from cryofm.ssl.dino_loss import cross_entropy, dino_loss
from cryofm.ssl.ema import paired_params
from cryofm.train.optim import make_optimizer
from cryofm.train.step import train_step
from tests.ssl_tiny import tiny_arch, tiny_batch


def test_dino_loss_equals_the_per_pair_mean():
    g = torch.Generator().manual_seed(0)
    s = [torch.randn(4, 50, generator=g) for _ in range(6)]
    t = [torch.softmax(torch.randn(4, 50, generator=g), -1) for _ in range(2)]
    pairs = [cross_entropy(tt, ss, 0.1).mean()
             for it, tt in enumerate(t) for i, ss in enumerate(s) if i != it]
    assert len(pairs) == 10
    assert abs(float(dino_loss(s, t, 0.1)) - float(sum(pairs) / 10)) < 1e-6


def _plain_step(arch, opt, batch, v, clip, pairs):
    """The objective as the references write it: per-pair DINO, clip_grad_norm_ per part, mul+add EMA."""
    from cryofm.ssl.ibot_loss import ibot_loss
    from cryofm.ssl.koleo_loss import koleo_loss
    from cryofm.train.optim import apply_schedule

    apply_schedule(opt, v["lr"], v["wd"], v["last_layer_lr"])
    g, masks = batch["global_crops"], batch["masks"]
    with torch.no_grad():
        t = arch.teacher(g, None, masks, mask_input=False)
        t_cls = arch._targets(t["cls_logits"], v["teacher_temp"], "dino").chunk(2)
        t_patch = arch._targets(t["patch_logits"], v["teacher_temp"], "ibot")
    s = arch.student(g, batch["local_crops"], masks)
    s_cls = s["cls_logits"].chunk(6)  # 2 global + 4 local crops of 4 images
    dino = sum(cross_entropy(tt, ss, 0.1).mean() for it, tt in enumerate(t_cls)
               for i, ss in enumerate(s_cls) if i != it) / 10
    loss = dino + ibot_loss(s["patch_logits"], t_patch, masks, 0.1)
    loss = loss + 0.1 * sum(koleo_loss(c) for c in s["cls"].chunk(2))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for part in arch.student.children():
        torch.nn.utils.clip_grad_norm_([p for p in part.parameters() if p.grad is not None], clip)
    opt.step()
    with torch.no_grad():
        for a, b in zip(*pairs, strict=True):
            b.mul_(v["momentum"]).add_(a, alpha=1 - v["momentum"])
    return loss


def test_train_step_equals_the_plain_objective_for_three_steps():
    for separate in (True, False):
        fast, plain = tiny_arch(separate), tiny_arch(separate)
        plain.load_state_dict(copy.deepcopy(fast.state_dict()))
        cfg = OmegaConf.load("configs/optim/adamw.yaml")
        o_fast, o_plain = make_optimizer(fast.student, cfg), make_optimizer(plain.student, cfg)
        p_fast = paired_params(fast.student, fast.teacher)
        p_plain = paired_params(plain.student, plain.teacher)
        batch = tiny_batch()
        v = {"lr": 1e-3, "wd": 0.04, "last_layer_lr": 1e-3, "teacher_temp": 0.04, "momentum": 0.9}
        for clip in (3.0, 1e-3):  # within the bound (no multiply) and clipped
            for _ in range(2):
                lf, _, _ = train_step(fast, o_fast, batch, v, clip, p_fast)
                lp = _plain_step(plain, o_plain, batch, v, clip, p_plain)
                assert abs(float(lf) - float(lp)) <= 1e-6 * abs(float(lp))  # float32 rounding
        for (n, a), b in zip(fast.state_dict().items(), plain.state_dict().values(), strict=True):
            # Adam divides by sqrt(v): rounding-level differences of a near-zero gradient (a key
            # bias's is exactly zero) become lr-sized steps; 1 % of the 4 steps' travel bounds them
            assert float((a - b).abs().max()) <= 0.01 * 4 * v["lr"], n
        if not separate:
            assert fast.student.ibot_head is fast.student.dino_head


def test_clip_gradients_is_bitwise_torchs_clip_grad_norm_per_part():
    """Clipped parts get exactly clip_grad_norm_'s gradients (its float32 coefficient: a float64 one
    differed in the last bit, which AdamW's first steps blew up to a 1.4e-3 change of the 4th loss)."""
    from cryofm.train.optim import clip_gradients

    a, b = tiny_arch(True), tiny_arch(True)
    b.load_state_dict(a.state_dict())
    for arch in (a, b):
        loss, _ = arch(tiny_batch(), 0.04)
        (1e4 * loss).backward()  # every part far above the bound
    norm = clip_gradients(a.student, 3.0)
    parts = [torch.nn.utils.clip_grad_norm_([p for p in part.parameters() if p.grad is not None], 3.0)
             for part in b.student.children() if any(p.grad is not None for p in part.parameters())]
    assert norm == pytest.approx(float(torch.stack(parts).norm()), rel=1e-6)  # the logged norm
    for (n, pa), pb in zip(a.student.named_parameters(), b.student.parameters(), strict=True):
        if pa.grad is not None:
            assert torch.equal(pa.grad, pb.grad), n
