"""The DINOv2 training loop, top to bottom: data → teacher/student forward → loss → step → EMA.

``train(cfg)`` is what ``train.py`` calls (also under ``torchrun``). It resumes from the newest
checkpoint in ``<out>/checkpoints`` when there is one, logs every step to ``<out>/metrics.jsonl``
(and wandb), saves checkpoints every ``train.checkpoint_every`` steps and exports the teacher
backbone (``<out>/backbone.safetensors`` + ``backbone.json``) with each checkpoint and at the end.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from cryofm.data.augment import multicrop_config
from cryofm.data.pipeline import ParticleStream, make_loader, pixel_stats, train_urls
from cryofm.errors import InputError
from cryofm.models.attention import use_xformers
from cryofm.models.export import export_backbone
from cryofm.report.curves import plot_curves
from cryofm.report.runlog import read_metrics, summarize_metrics
from cryofm.ssl.ema import paired_params
from cryofm.ssl.meta_arch import SSLMetaArch
from cryofm.ssl.schedules import make_schedules
from cryofm.train import checkpoint as ck
from cryofm.train import distributed as du
from cryofm.train.optim import make_optimizer
from cryofm.train.runlog import RunLogger
from cryofm.train.step import train_step
from cryofm.utils import atomic
from cryofm.utils.malloc import keep_freed_memory
from cryofm.utils.threads import resolve_threads

log = logging.getLogger(__name__)


def median_pixel_size(urls: list[str], n: int = 256) -> float | None:
    """Median ``EffectiveImagePixelSize`` (Å/px) of the first ``n`` training particles, or None."""
    from cryofm.data.dataset import iter_raw
    from cryofm.data.format import decode_sample

    vals = []
    try:
        for i, s in enumerate(iter_raw(urls[:4])):
            if i >= n:
                break
            v = decode_sample(s)[1].get("EffectiveImagePixelSize")
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                vals.append(float(v))
    except Exception:  # remote URLs (pipe:, http) are not read here
        return None
    return float(np.median(vals)) if vals else None


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _state(arch: SSLMetaArch, optimizer, fsdp: bool) -> tuple[dict, dict]:
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(
            arch, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return arch.state_dict(), optimizer.state_dict()


def _load_state(arch: SSLMetaArch, optimizer, payload: dict, fsdp: bool) -> None:
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(
            arch,
            optimizer,
            model_state_dict=payload["model"],
            optim_state_dict=payload["optimizer"],
            options=StateDictOptions(full_state_dict=True),
        )
        return
    arch.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])


def export_teacher(
    arch: SSLMetaArch,
    model_state: dict | None,
    cfg: DictConfig,
    out: Path,
    step: int,
    mean: float,
    std: float,
    pixel_size: float | None,
) -> None:
    """Write the teacher backbone as ``<out>/backbone.safetensors`` + ``backbone.json`` (timm names)."""
    bb = arch.teacher.backbone.backbone
    if model_state is not None:  # FSDP: rebuild a plain CPU copy from the gathered full state
        import timm

        bb = timm.create_model(cfg.model.name, pretrained=False, **arch.backbone_kwargs)
        prefix = "teacher.backbone.backbone."
        bb.load_state_dict({k[len(prefix) :]: v for k, v in model_state.items() if k.startswith(prefix)})
    extra = {
        "image_size": int(cfg.data.image_size),
        "pixel_mean": mean,
        "pixel_std": std,
        "effective_pixel_size": pixel_size,
        "step": int(step),
        "patch_size": int(arch.student.backbone.patch),
    }
    export_backbone(bb, cfg.model.name, arch.backbone_kwargs, out, extra)


def _debug_dump(out: Path, rank: int, keys: list[str], arch: SSLMetaArch) -> None:
    from cryofm.utils.atomic import write_json

    def full(p: torch.Tensor) -> torch.Tensor:  # FSDP: gather the DTensor shards
        return p.full_tensor() if hasattr(p, "full_tensor") else p

    sums = {n: float(full(p.detach()).double().sum()) for n, p in arch.student.named_parameters()}
    write_json(out / "debug" / f"rank{rank}.json", {"keys": keys, "param_sums": sums})


def train(cfg: DictConfig) -> Path:
    """Run (or resume) pretraining described by ``cfg``; returns the run dir."""
    info = du.setup(cfg.dist.backend, cfg.dist.device)
    threads = resolve_threads(cfg.train.get("threads"), int(cfg.data.num_workers))
    if threads:
        torch.set_num_threads(threads)
    if cfg.train.get("keep_freed_memory", True):
        keep_freed_memory()
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    torch.manual_seed(int(cfg.seed) + info.rank)
    np.random.seed((int(cfg.seed) + info.rank) % 2**32)
    cuda = info.device.type == "cuda"
    bf16 = cuda and bool(cfg.train.bf16)
    fsdp = info.enabled and cfg.dist.strategy == "fsdp"

    urls = (
        list(cfg.data.urls)
        if cfg.data.get("urls")
        else train_urls(cfg.data.path, template=cfg.data.get("url_template"))
    )
    mean, std = pixel_stats(cfg.data.path) if cfg.data.get("path") else (0.0, 1.0)
    if cfg.data.get("pixel_mean") is not None:
        mean, std = float(cfg.data.pixel_mean), float(cfg.data.pixel_std)

    arch = SSLMetaArch(cfg.model, cfg.ssl, int(cfg.data.image_size)).to(info.device)
    if cfg.train.attention != "sdpa":
        use_xformers(arch, cfg.train.attention)
    if cfg.train.activation_checkpointing:
        arch.student.backbone.set_grad_checkpointing(True)
    if fsdp:
        du.apply_fsdp(arch.teacher, bf16, reshard_root=True)
    student = du.wrap_student(arch.student, info, cfg.dist.strategy, bf16)
    optimizer = make_optimizer(arch.student, cfg.optim, fused=not fsdp)

    epoch_len = int(cfg.train.epoch_length)
    global_batch = int(cfg.train.batch_size_per_gpu) * info.world_size
    sched = make_schedules(cfg.optim, cfg.ssl, epoch_len, global_batch)
    total = int(cfg.optim.epochs) * epoch_len
    if cfg.train.get("max_steps"):
        total = min(total, int(cfg.train.max_steps))

    start = 0
    latest, payload = ck.load_latest(ckpt_dir) if cfg.train.resume else (None, None)
    if latest is not None:
        try:
            _load_state(arch, optimizer, payload, fsdp)
        except (RuntimeError, ValueError, KeyError) as exc:  # another model, heads or optimiser groups
            first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc)[:200])
            raise InputError(latest, f"this run's checkpoint does not fit the configured model ({first}); "
                                     "resume with the run's own settings (its config.yaml) or pick a new "
                                     "out=") from None
        start = int(payload["step"])
        if int(payload.get("num_workers", cfg.data.num_workers)) != int(cfg.data.num_workers):
            log.warning("resuming with a different data.num_workers: the data order will differ")
        if info.is_main:
            log.info("resumed from %s (step %d)", latest, start)

    s_params, t_params = paired_params(arch.student, arch.teacher)
    run_student = torch.compile(student) if cfg.train.compile else student
    patch = arch.student.backbone.patch
    stream = ParticleStream(
        urls,
        int(cfg.train.batch_size_per_gpu),
        int(cfg.data.image_size),
        multicrop_config(cfg.augment, int(cfg.data.image_size)),
        tuple(cfg.ssl.ibot.mask_ratio),
        float(cfg.ssl.ibot.mask_probability),
        patch,
        mean,
        std,
        int(cfg.seed),
        info.rank,
        info.world_size,
        int(cfg.data.num_workers),
        int(cfg.data.shuffle_buffer),
        start,
        bool(cfg.data.strict),
    )
    loader = iter(make_loader(stream, int(cfg.data.num_workers), pin_memory=cuda))
    # restore the RNG only now: creating the loader iterator draws from torch's generator
    if latest is not None and not ck.load_rng(ckpt_dir, start, info.rank):
        torch.manual_seed(int(cfg.seed) * 1000003 + start * 131 + info.rank)
    pixel_size = median_pixel_size(urls) if info.is_main else None
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    cfg_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    logger = RunLogger(
        out, cfg.wandb, cfg_dict, start, total, enabled=info.is_main, progress=bool(cfg.train.progress)
    )
    if info.is_main:
        (out / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
        from cryofm.utils.atomic import write_text

        write_text(out / "config.yaml", cfg_yaml)

    def save(step: int) -> None:
        ck.save_rng(ckpt_dir, step, info.rank)
        du.barrier()
        model_state, optim_state = _state(arch, optimizer, fsdp)
        if info.is_main:
            ck.save_checkpoint(
                ckpt_dir,
                step,
                {
                    "model": model_state,
                    "optimizer": optim_state,
                    "num_workers": int(cfg.data.num_workers),
                    "world_size": info.world_size,
                    "config": cfg_dict,
                },
                cfg_yaml,
                int(cfg.train.keep_last),
            )
            export_teacher(arch, model_state if fsdp else None, cfg, out, step, mean, std, pixel_size)
            plot_curves(out)
        du.barrier()

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and not fsdp else contextlib.nullcontext()
    signals = du.StopSignals(info, bool(cfg.train.get("save_on_signal", True)))
    arch.train()
    step = start
    seen_keys: list[str] = []
    t_end = time.perf_counter()
    try:
        for step in range(start, total):
            batch = _to(next(loader), info.device)
            t_data = time.perf_counter() - t_end
            v = sched.at(step)
            try:
                loss, parts, gnorm = train_step(arch, optimizer, batch, v, float(cfg.optim.clip_grad),
                                                (s_params, t_params), run_student, autocast)
            except FloatingPointError as e:
                raise FloatingPointError(f"step {step}: {e}") from None
            dt = time.perf_counter() - t_end
            t_end = time.perf_counter()
            logger.log(
                step,
                {
                    "loss": loss.detach().item(),
                    **parts,
                    **v,
                    "grad_norm": float(gnorm),
                    "epoch": step / epoch_len,
                    "data_time": t_data,
                    "step_time": dt,
                    "samples_per_s": global_batch / max(dt, 1e-9),
                    "n_corrupt": int(batch.get("n_corrupt", 0)),
                },
            )
            if cfg.train.get("debug_dump"):
                seen_keys.extend(batch["keys"])
            done = step + 1
            if cfg.train.get("debug_preempt_at") == done:  # tests: be preempted after this step
                os.kill(os.getpid(), du.preemption_signal() or signal.SIGUSR1)
            stopping = signals.should_stop()
            if done % int(cfg.train.checkpoint_every) == 0 or done == total or stopping:
                save(done)
            if stopping:
                log.warning("stop requested by a signal: checkpoint saved at step %d, exiting", done)
                break
    finally:
        logger.close()
        signals.restore()
    if info.is_main:
        summary = {**summarize_metrics(read_metrics(out)), "complete": step + 1 >= total,
                   "world_size": info.world_size}
        atomic.write_json(out / "metrics.json", summary)
    if cfg.train.get("debug_dump"):  # for tests: what this rank read and a digest of its weights
        _debug_dump(out, info.rank, seen_keys, arch)
    du.barrier()
    du.cleanup()
    signals.forward()  # e.g. submitit's requeue (which exits), now that the checkpoint is saved
    return out
