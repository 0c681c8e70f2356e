"""One DINOv2 training iteration: schedules → losses → backward → per-part clipping → AdamW → EMA.

The loop (``cryofm.train.loop``) and the overhead benchmark (``bench/bench_trainer.py``) both call
:func:`train_step`, so the benchmark times the code that trains.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import nn

from cryofm.ssl.ema import ema_update
from cryofm.ssl.meta_arch import SSLMetaArch
from cryofm.train.optim import apply_schedule, clip_gradients


def train_step(
    arch: SSLMetaArch,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    values: dict[str, float],
    clip_grad: float,
    ema_pairs: tuple[list[torch.Tensor], list[torch.Tensor]],
    student: nn.Module | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, dict[str, float], float]:
    """Run one iteration in place; returns (loss, its logged parts, gradient norm before clipping).

    Raises FloatingPointError (before any update) when the loss is not finite.

    ``values`` holds this step's schedule values (``lr``, ``wd``, ``last_layer_lr``,
    ``teacher_temp``, ``momentum``); ``ema_pairs`` is :func:`cryofm.ssl.ema.paired_params` of the
    student and teacher; ``student`` the (possibly DDP/FSDP-wrapped or compiled) student to call.
    """
    apply_schedule(optimizer, values["lr"], values["wd"], values["last_layer_lr"])
    with autocast or contextlib.nullcontext():
        loss, parts = arch(batch, values["teacher_temp"], student)
    if not math.isfinite(loss.detach().item()):
        raise FloatingPointError(f"non-finite loss: {parts}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = clip_gradients(arch.student, clip_grad)
    optimizer.step()
    ema_update(*ema_pairs, values["momentum"])
    return loss, parts, gnorm
