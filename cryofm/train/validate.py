"""Checks of a composed ``train.py`` config before training starts (nothing is written until they pass).

Types, ranges and choices of every key the loop reads (``configs/train.yaml`` and its groups), the
config-group choices (``experiment=`` is an *optional* group in Hydra, so a misspelt name would
silently compose nothing), the dataset, the output folder and the timm model name. Each failure is
an :class:`~cryofm.errors.InputError` naming the key or file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryofm.errors import InputError
from cryofm.utils import checks as c

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

ATTENTION = ("sdpa", "xformers", "auto")
BACKENDS = ("auto", "gloo", "nccl")
DEVICES = ("auto", "cpu", "cuda")
STRATEGIES = ("ddp", "fsdp", "none")
WANDB_MODES = ("online", "offline", "disabled")
CENTERING = ("sinkhorn_knopp", "softmax")
LR_SCALING = ("sqrt", "linear", "none")


def check_choices(choices: dict[str, str], groups: tuple[str, ...] = ("experiment",)) -> None:
    """An optional config group (``experiment``) names a file that exists."""
    for group in groups:
        name = choices.get(group)
        if name in (None, "None", "null"):
            continue
        if not (CONFIG_DIR / group / f"{name}.yaml").is_file():
            avail = ", ".join(sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")))
            raise InputError(f"{group}={name}", f"no such option (available: {avail})")


def _train(cfg: Any) -> None:
    c.integer(cfg, "seed", 0)
    c.integer(cfg, "train.batch_size_per_gpu", 1)
    c.integer(cfg, "train.epoch_length", 1)
    c.integer(cfg, "train.max_steps", 1, none_ok=True)
    c.integer(cfg, "train.checkpoint_every", 1)
    c.integer(cfg, "train.keep_last", 0)
    for key in ("resume", "save_on_signal", "bf16", "compile", "activation_checkpointing", "progress",
                "debug_dump"):
        c.boolean(cfg, f"train.{key}")
    c.choice(cfg, "train.attention", ATTENTION)
    if c.value(cfg, "train.keep_freed_memory", None) is not None:  # absent in older configs: on
        c.boolean(cfg, "train.keep_freed_memory")
    if c.value(cfg, "train.threads", None) != "auto":  # auto: the CPUs this process may use
        c.integer(cfg, "train.threads", 1, none_ok=True)
    c.integer(cfg, "train.debug_preempt_at", 1, none_ok=True)
    c.choice(cfg, "dist.backend", BACKENDS)
    c.choice(cfg, "dist.device", DEVICES)
    c.choice(cfg, "dist.strategy", STRATEGIES)
    c.choice(cfg, "wandb.mode", WANDB_MODES)
    for key in ("project", "entity", "name"):
        c.text(cfg, f"wandb.{key}")


def _optim(cfg: Any) -> None:
    c.integer(cfg, "optim.epochs", 1)
    c.number(cfg, "optim.base_lr", 0, lo_open=True)
    c.choice(cfg, "optim.lr_scaling", LR_SCALING)
    c.integer(cfg, "optim.lr_ref_batch", 1)
    c.number(cfg, "optim.min_lr", 0)
    c.number(cfg, "optim.warmup_epochs", 0)
    c.number(cfg, "optim.weight_decay", 0)
    c.number(cfg, "optim.weight_decay_end", 0)
    c.number(cfg, "optim.layer_decay", 0, 1, lo_open=True)
    c.number(cfg, "optim.patch_embed_lr_mult", 0)
    c.number(cfg, "optim.freeze_last_layer_epochs", 0)
    c.number(cfg, "optim.clip_grad", 0, lo_open=True)
    c.numbers(cfg, "optim.betas", 2, 0, 0.999999)


def _ssl(cfg: Any) -> None:
    n_g = c.integer(cfg, "ssl.n_global_crops", 1)
    if n_g != c.integer(cfg, "augment.global_crops.n", 1):
        raise InputError("ssl.n_global_crops", f"must equal augment.global_crops.n "
                                               f"({n_g} vs {c.value(cfg, 'augment.global_crops.n')})")
    c.number(cfg, "ssl.student_temp", 0, lo_open=True)
    c.choice(cfg, "ssl.centering", CENTERING)
    c.integer(cfg, "ssl.sinkhorn_iters", 1)
    c.number(cfg, "ssl.center_momentum", 0, 1)
    c.number(cfg, "ssl.teacher.temp", 0, lo_open=True)
    c.number(cfg, "ssl.teacher.temp_warmup", 0, lo_open=True)
    c.number(cfg, "ssl.teacher.temp_warmup_epochs", 0)
    c.number(cfg, "ssl.teacher.momentum", 0, 1)
    c.number(cfg, "ssl.teacher.momentum_end", 0, 1)
    for head in ("dino", "ibot"):
        c.number(cfg, f"ssl.{head}.loss_weight", 0)
        for key in ("n_prototypes", "hidden_dim", "bottleneck_dim", "nlayers"):
            c.integer(cfg, f"ssl.{head}.head.{key}", 1)
        if c.value(cfg, f"ssl.{head}.head.use_bn", None) is not None:
            c.boolean(cfg, f"ssl.{head}.head.use_bn")
    c.numbers(cfg, "ssl.ibot.mask_ratio", 2, 0, 1, increasing=True)
    c.number(cfg, "ssl.ibot.mask_probability", 0, 1)
    if c.value(cfg, "ssl.ibot.separate_head", None) is not None:
        c.boolean(cfg, "ssl.ibot.separate_head")
    c.number(cfg, "ssl.koleo.loss_weight", 0)


MAX_SIZE = 4096  # px: particle boxes and crops (a larger edge is a typo, and memory the step cannot have)


def _augment(cfg: Any) -> None:
    for crops in ("global_crops", "local_crops"):
        k = f"augment.{crops}"
        c.integer(cfg, f"{k}.n", 1 if crops == "global_crops" else 0)
        c.number(cfg, f"{k}.size_fraction", 0, 1, lo_open=True)
        c.integer(cfg, f"{k}.size", 0, MAX_SIZE)
        c.numbers(cfg, f"{k}.scale", 2, 0, 1, increasing=True)
        blur = c.value(cfg, f"{k}.blur_p")
        if isinstance(blur, (int, float)) and not isinstance(blur, bool):
            c.number(cfg, f"{k}.blur_p", 0, 1)
        else:
            n = int(c.value(cfg, f"{k}.n"))
            if len(c.numbers(cfg, f"{k}.blur_p", None, 0, 1)) != n:
                raise InputError(f"{k}.blur_p", f"needs one probability per crop ({k}.n = {n}) or one "
                                                f"for all, got {list(blur)}")
        c.number(cfg, f"{k}.noise_p", 0, 1)
    c.boolean(cfg, "augment.flip")
    c.boolean(cfg, "augment.rot90")
    c.number(cfg, "augment.jitter_p", 0, 1)
    c.number(cfg, "augment.brightness", 0)
    c.number(cfg, "augment.contrast", 0, 1)
    c.numbers(cfg, "augment.blur_sigma", 2, 0, increasing=True)
    c.number(cfg, "augment.noise_std", 0)


def _model(cfg: Any) -> None:
    import difflib

    import timm
    import torch

    from cryofm.models.backbone import create_backbone

    name = c.text(cfg, "model.name", none_ok=False)
    if not timm.is_model(name):
        family = timm.list_models(f"{name.split('_')[0][:3]}*") or timm.list_models()  # difflib is O(n)
        close = difflib.get_close_matches(name, family, n=4, cutoff=0.6)
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise InputError("model.name", f"unknown timm model {name!r}{hint}")
    in_chans = c.integer(cfg, "model.in_chans", 1)
    dpr = c.number(cfg, "model.drop_path_rate", 0, 1)
    kw = c.value(cfg, "model.kwargs", None)
    if kw is not None and not hasattr(kw, "items"):
        raise InputError("model.kwargs", f"must be a mapping of timm.create_model arguments (got {kw!r})")
    extra = {str(k): v for k, v in (kw or {}).items()}
    try:  # on the meta device: no memory, no time, but every argument is checked by timm itself
        size = int(c.value(cfg, "data.image_size"))
        with torch.device("meta"):
            model = create_backbone(name, size, in_chans, dpr, **extra)
            model.forward_features(torch.empty(1, in_chans, size, size))
    except Exception as exc:  # unknown kwarg, embed_dim not divisible by num_heads, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "divisible by patch size" in msg:
            raise InputError("data.image_size", msg) from None
        raise InputError("model.kwargs", f"timm cannot create {name} with these arguments: {msg}") from None
    _crops_fit_patches(cfg, model, size)
    if c.value(cfg, "dist.device") == "cuda" and not torch.cuda.is_available():
        raise InputError("dist.device", "cuda, but torch sees no GPU here (dist.device=auto picks the CPU)")


def _crops_fit_patches(cfg: Any, model: Any, image_size: int) -> None:
    """The global crops are masked on the backbone's patch grid: their edge (px) must be a whole
    number of patches."""
    from cryofm.data.augment import multicrop_config
    from cryofm.models.backbone import patch_size

    patch = patch_size(model)
    size = multicrop_config(cfg.augment, image_size).global_crops.size
    if size % patch:
        raise InputError("augment.global_crops.size", f"{size} px is not a whole number of the model's "
                                                      f"{patch} px patches (the iBOT masks are per patch)")


def _data(cfg: Any) -> None:
    c.integer(cfg, "data.image_size", 16, MAX_SIZE)
    c.integer(cfg, "data.num_workers", 0)
    c.integer(cfg, "data.shuffle_buffer", 0)
    c.boolean(cfg, "data.strict")
    mean = c.number(cfg, "data.pixel_mean", none_ok=True)
    std = c.number(cfg, "data.pixel_std", 0, none_ok=True, lo_open=True)
    if (mean is None) != (std is None):
        raise InputError("data.pixel_mean" if mean is None else "data.pixel_std",
                         "give data.pixel_mean and data.pixel_std together")
    urls = c.value(cfg, "data.urls", None)
    template = c.text(cfg, "data.url_template")
    if template and "{path}" not in template:  # every shard would map to the same URL
        raise InputError("data.url_template", f"must contain {{path}} (each shard's path in the manifest), "
                                              f"got {template!r}")
    if urls:
        if isinstance(urls, str) or not all(isinstance(u, str) and u for u in urls):
            raise InputError("data.urls", f"must be a list of shard URLs (got {urls!r})")
        return
    path = c.value(cfg, "data.path", None)
    if path in (None, ""):
        raise InputError("data", "a dataset is required: data=<dataset dir> (or data.urls=[...])")
    from cryofm.data.pipeline import train_urls

    train_urls(str(path), template=template)  # InputError naming the manifest / split when absent


RUN_MARKERS = ("checkpoints", "config.yaml", "metrics.jsonl", "backbone.safetensors", ".hydra")


def _run_folder(out: Path) -> None:
    """``out`` is new, empty, or a training run (resumed): never a folder of other files, which the run
    would be written in among."""
    if not out.is_dir() or any((out / m).exists() for m in RUN_MARKERS):
        return
    others = sorted(p.name for p in out.iterdir() if not p.name.startswith(".cryofm-write-test-"))
    if others:
        raise InputError(out, f"holds files that are not a cryofm training run ({', '.join(others[:3])}"
                              f"{', ...' if len(others) > 3 else ''}): pick a new or empty out=")


def validate_train(cfg: Any, choices: dict[str, str] | None = None) -> None:
    """InputError naming the first wrong key, option, dataset file or output path of ``cfg``."""
    check_choices(choices or {})
    _train(cfg)
    _optim(cfg)
    _ssl(cfg)
    _augment(cfg)
    _data(cfg)
    _run_folder(c.writable_output(cfg, "out"))
    _model(cfg)  # last: importing timm takes a few seconds
