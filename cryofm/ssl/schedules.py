"""Per-iteration schedules (DINOv2's ``CosineScheduler``): warm-up, cosine, freeze; and the lr rule.

A schedule is a NumPy array indexed by iteration; past its end the last value holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class CosineScheduler:
    """``freeze_iters`` at 0, then linear warm-up from ``start_warmup`` to ``base`` over
    ``warmup_iters``, then cosine from ``base`` to ``final`` over the remaining iterations."""

    def __init__(
        self,
        base: float,
        final: float,
        total_iters: int,
        warmup_iters: int = 0,
        start_warmup: float = 0.0,
        freeze_iters: int = 0,
    ):
        freeze = np.zeros(int(freeze_iters))
        warm = np.linspace(start_warmup, base, int(warmup_iters), endpoint=False)
        n_cos = max(int(total_iters) - int(warmup_iters) - int(freeze_iters), 0)
        it = np.arange(n_cos)
        cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * it / max(n_cos, 1)))
        self.values = np.concatenate([freeze, warm, cos]).astype(np.float64)
        self.final = float(final)

    def __getitem__(self, it: int) -> float:
        if it >= len(self.values):
            return self.final
        return float(self.values[it])

    def __len__(self) -> int:
        return len(self.values)


class LinearWarmup:
    """Linear from ``start`` to ``peak`` over ``warmup_iters``, then constant (teacher temperature)."""

    def __init__(self, start: float, peak: float, warmup_iters: int):
        self.start, self.peak, self.n = float(start), float(peak), int(warmup_iters)

    def __getitem__(self, it: int) -> float:
        if it >= self.n:
            return self.peak
        return self.start + (self.peak - self.start) * it / self.n


def scaled_lr(base_lr: float, global_batch: int, rule: str = "sqrt", ref_batch: int = 1024) -> float:
    """lr for ``global_batch``: ``base_lr * sqrt(B / ref)`` (DINOv2) or ``* B / ref`` (linear) or as is."""
    if rule == "sqrt":
        return base_lr * math.sqrt(global_batch / ref_batch)
    if rule == "linear":
        return base_lr * global_batch / ref_batch
    if rule == "none":
        return base_lr
    raise ValueError(f"unknown lr scaling rule {rule!r} (sqrt, linear or none)")


@dataclass
class Schedules:
    """All per-iteration schedules of a run."""

    lr: CosineScheduler
    wd: CosineScheduler
    momentum: CosineScheduler
    teacher_temp: LinearWarmup
    last_layer_lr: CosineScheduler

    def at(self, it: int) -> dict[str, float]:
        """The scheduled values at iteration ``it``."""
        return {
            "lr": self.lr[it],
            "wd": self.wd[it],
            "momentum": self.momentum[it],
            "teacher_temp": self.teacher_temp[it],
            "last_layer_lr": self.last_layer_lr[it],
        }


def make_schedules(optim, ssl, epoch_length: int, global_batch: int) -> Schedules:
    """Schedules from the ``optim`` and ``ssl`` config groups (lengths in epochs × ``epoch_length``)."""
    total = int(optim.epochs * epoch_length)
    lr = scaled_lr(float(optim.base_lr), global_batch, optim.lr_scaling, int(optim.lr_ref_batch))
    warm = int(optim.warmup_epochs * epoch_length)
    kw = dict(total_iters=total, warmup_iters=warm, start_warmup=0.0)
    lr_s = CosineScheduler(lr, float(optim.min_lr), **kw)
    freeze = int(optim.freeze_last_layer_epochs * epoch_length)
    last = CosineScheduler(lr, float(optim.min_lr), **kw)
    last.values[:freeze] = 0.0
    wd_s = CosineScheduler(float(optim.weight_decay), float(optim.weight_decay_end), total)
    mom = CosineScheduler(float(ssl.teacher.momentum), float(ssl.teacher.momentum_end), total)
    temp = LinearWarmup(
        float(ssl.teacher.temp_warmup),
        float(ssl.teacher.temp),
        int(ssl.teacher.temp_warmup_epochs * epoch_length),
    )
    return Schedules(lr_s, wd_s, mom, temp, last)
