"""Process-group setup under ``torchrun`` (DDP with gloo on CPU / NCCL on GPU) and model wrapping.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) a SLURM task per GPU (``srun`` or the
submitit launcher) takes its rank from ``SLURM_PROCID`` / ``SLURM_NTASKS``; otherwise everything runs
in one process and no process group is created. ``wrap_student`` returns DDP, FSDP2 (``fully_shard``
per transformer block, bf16 parameters with fp32 reductions on CUDA) or the plain module.
"""

from __future__ import annotations

import datetime
import inspect
import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    """Where this process sits: global rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(backend: str = "auto", device: str = "auto", timeout_s: int = 1800) -> DistInfo:
    """Initialise the process group from torchrun's environment; choose the device.

    ``backend``: ``auto`` (NCCL when the device is CUDA, else gloo), ``gloo`` or ``nccl``.
    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """
    from cryofm.utils.slurm import torch_env_from_slurm

    os.environ.update(torch_env_from_slurm(os.environ))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        be = ("nccl" if use_cuda else "gloo") if backend == "auto" else backend
        dist.init_process_group(
            be, timeout=datetime.timedelta(seconds=timeout_s), device_id=dev if be == "nccl" else None
        )
    return DistInfo(rank, world, local, dev)


def cleanup() -> None:
    """Destroy the process group if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj):
    """``obj`` of rank 0 on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def apply_fsdp(branch: nn.Module, bf16: bool, reshard_root: bool = False) -> nn.Module:
    """Shard a student/teacher ``Branch`` with FSDP2: each ViT block, then the whole branch.

    ``reshard_root=True`` for the teacher: FSDP2 keeps a root module's parameters unsharded after its
    forward until the backward, and the teacher has no backward — its heads, tokens and patch
    embedding would stay the all-gathered copy of step 0 while the EMA updates the shards (measured:
    with momentum 0 the FSDP run's second loss differed from the plain module's by 1.4e-3).
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
    for blk in branch.backbone.backbone.blocks:
        fully_shard(blk, mp_policy=mp)
    fully_shard(branch, mp_policy=mp, reshard_after_forward=True if reshard_root else None)
    return branch


def wrap_student(student: nn.Module, info: DistInfo, strategy: str = "ddp", bf16: bool = False) -> nn.Module:
    """The module the loop calls for the student: DDP, FSDP2 (in place) or ``student`` itself."""
    if not info.enabled or strategy == "none":
        return student
    if strategy == "ddp":
        ids = [info.device.index] if info.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        # no buffer sync each forward (the student has none that ranks must share); torch 2.14 renamed
        # broadcast_buffers (deprecated, warns) to forward_sync_buffers
        sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
                else "broadcast_buffers")
        return ddp(student, device_ids=ids, **{sync: False})
    if strategy == "fsdp":
        return apply_fsdp(student, bf16)
    raise ValueError(f"unknown parallel strategy {strategy!r} (ddp, fsdp or none)")


def preemption_signal() -> signal.Signals | None:
    """The signal submitit sends before a timeout or on preemption (``SUBMITIT_PREEMPT_SIGNAL``,
    USR2 by default) when this process is a submitit job, else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


class StopSignals:
    """SIGTERM / SIGUSR1 (preemption, SLURM's pre-timeout signal) and, in a submitit job, submitit's
    preemption signal (USR2) → stop after the current step.

    :meth:`should_stop` is collective (all ranks agree, so they all save the same checkpoint); it
    costs one tiny all-reduce per step under torchrun. The handlers displaced here are kept: once the
    checkpoint is on disk, :meth:`forward` gives each received signal to its previous Python handler,
    so submitit still requeues the job (its handler requeues and exits) — without this, submitit's
    handler would have run mid-step and the work since the last periodic checkpoint would be lost.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, info: DistInfo, enabled: bool = True):
        self.info, self.enabled, self.flag = info, enabled, False
        self.received: list[int] = []
        self._old: dict = {}  # signal -> the handler ours displaced
        self._installed = enabled
        if enabled:
            extra = preemption_signal()
            for sig in dict.fromkeys((*self.SIGNALS, *((extra,) if extra else ()))):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.flag = True
        self.received.append(signum)

    def should_stop(self) -> bool:
        if not self.enabled:
            return False
        if not self.info.enabled:
            return self.flag
        t = torch.tensor([1.0 if self.flag else 0.0], device=self.info.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def restore(self) -> None:
        """Put the previous handlers back."""
        if self._installed:
            for sig, old in self._old.items():
                signal.signal(sig, old)
            self._installed = False

    def forward(self) -> None:
        """Hand each signal received to the Python handler it displaced (e.g. submitit's
        checkpoint-and-requeue, which exits); default and ignore dispositions are not re-raised."""
        self.restore()
        for sig in dict.fromkeys(self.received):
            old = self._old.get(sig)
            if callable(old):
                old(sig, None)
