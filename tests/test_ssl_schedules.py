"""Schedules (warm-up, cosine, freeze, teacher temperature, lr scaling), EMA and optimiser groups."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from cryofm.ssl.ema import ema_update, paired_params
from cryofm.ssl.schedules import CosineScheduler, LinearWarmup, make_schedules, scaled_lr


def test_cosine_with_warmup_and_freeze():
    s = CosineScheduler(base=1.0, final=0.0, total_iters=10, warmup_iters=2, start_warmup=0.0, freeze_iters=2)
    assert s[0] == 0.0 and s[1] == 0.0  # frozen
    assert s[2] == 0.0 and s[3] == 0.5  # warm-up 0 -> 1 over 2 iterations
    assert s[4] == 1.0  # cosine starts at base
    # 6 cosine iterations: value at i = 0.5 (1 + cos(pi i / 6))
    assert math.isclose(s[7], 0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert s[100] == 0.0 and len(s) == 10


def test_teacher_temp_and_lr_rule():
    t = LinearWarmup(0.04, 0.07, 30)
    assert t[0] == 0.04 and math.isclose(t[15], 0.055) and t[30] == 0.07 and t[1000] == 0.07
    assert math.isclose(scaled_lr(5e-4, 2048), 5e-4 * math.sqrt(2.0))
    assert math.isclose(scaled_lr(5e-4, 256, "linear"), 1.25e-4)
    with pytest.raises(ValueError):
        scaled_lr(1.0, 1, "cubic")


def test_make_schedules_follows_recipe():
    optim = OmegaConf.load("configs/optim/adamw.yaml")
    ssl = OmegaConf.load("configs/ssl/dinov2.yaml")
    s = make_schedules(optim, ssl, epoch_length=10, global_batch=2048)
    peak = 5e-4 * math.sqrt(2)
    assert s.lr[0] == 0.0 and math.isclose(s.lr[130], peak)  # warm-up 13 epochs
    assert all(s.last_layer_lr[i] == 0.0 for i in range(10))  # frozen for the first epoch
    assert math.isclose(s.last_layer_lr[130], peak)
    assert math.isclose(s.wd[0], 0.04) and math.isclose(s.wd[1299], 0.4, rel_tol=1e-3)
    assert math.isclose(s.momentum[0], 0.992) and s.momentum[10**6] == 1.0
    assert s.teacher_temp[0] == 0.04 and s.teacher_temp[300] == 0.07
    assert math.isclose(s.lr[1299], 1e-6, rel_tol=1e-2)


def test_ema_foreach_matches_formula():
    torch.manual_seed(0)
    st, te = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in te.parameters()]
    s, t = paired_params(st, te)
    ema_update(s, t, 0.9)
    for (n, p), b in zip(te.named_parameters(), before, strict=True):
        assert torch.allclose(p, 0.9 * b + 0.1 * dict(st.named_parameters())[n])
    with pytest.raises(ValueError):
        paired_params(st, torch.nn.Linear(3, 2, bias=False))
