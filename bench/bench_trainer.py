"""Trainer overhead: a full DINOv2 step ÷ the bare backbone forward+backward+AdamW on the same crops,
for cryofm and, side by side in the same run, lightly's DINOv2 (the peer).

The peer's configuration: timm's ViT-S/16 (learned position embeddings, LayerScale 1e-5, drop path
0.1) with one input channel; batch 16 of 2 × 64 px global + 8 × 32 px local crops; DINO/iBOT heads
of 2,048 hidden, 256 bottleneck and 65,536 or 4,096 prototypes, the iBOT head shared with the DINO
head (lightly's example; DINOv2's ``ibot.separate_head: false``); 2 torch threads.

* **bare**: the backbone alone — forward on the global and the local crops, backward from the sum of
  the CLS tokens, one fused AdamW step over the backbone (the fastest plain step; the denominator
  of both ratios).
* **floor**: the bare step plus the teacher backbone's forward on the global crops (no gradient):
  work every DINOv2 step does, so no implementation's ratio can be below it (heads, losses,
  clipping and EMA come on top).
* **floor + heads**: the floor plus the projection head's own compute on the step's rows — the
  student head's forward and backward (input gradient included) on every crop's CLS and the masked
  patches, the teacher head's forward on the global CLS and the masked patches (cryofm's
  :class:`~cryofm.models.heads.DINOHead`, the shared-head layout). What is left between it and a
  full step is losses, Sinkhorn-Knopp, clipping, AdamW over the heads and EMA.
* **cryofm**: :func:`cryofm.train.step.train_step`, what the training loop runs: teacher forward,
  Sinkhorn-Knopp, student forward (masked globals + locals), heads, DINO + iBOT + KoLeo, backward,
  per-part clipping, AdamW with per-group lr/wd, foreach EMA. Also with a separate iBOT head
  (cryofm's default, cryoPANDA's recipe).
* **lightly**: the training step of lightly's ``examples/pytorch/dinov2.py`` (lightly 1.6: its
  masked ViT, projection heads, DINO / iBOT / KoLeo losses with softmax centering, torch AdamW over
  all parameters, ``update_momentum``), with cryofm's masks. Runs when ``import lightly`` works:
  ``pip install --no-deps lightly==1.6.0`` (it is not a cryofm dependency).

Steps interleaved in rounds; times are medians over rounds, ratios the median of each round's step ÷
that round's bare step (a slow spell of the shared host hits both alike); run on a quiet machine.
As in ``train()``, glibc keeps freed large buffers (:mod:`cryofm.utils.malloc`; ``--glibc-default``
measures without).

    .venv/bin/python bench/bench_trainer.py          # ~10 min on a 2-core CPU (--runs 1: ~3)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VIT = "vit_small_patch16_224"
VIT_KW = {"in_chans": 1, "num_classes": 0, "dynamic_img_size": True, "init_values": 1e-5}
VIT_DIM = 384  # ViT-S/16 width
HEAD = {"hidden_dim": 2048, "bottleneck_dim": 256, "nlayers": 3}  # lightly's DINOv2ProjectionHead too


def make_batch(batch: int, size: int, local: int, n_local: int, seed: int = 0, patch: int = 16,
               device: str = "cpu") -> dict:
    """Random crops and cryofm's iBOT masks (half the global crops masked, 10–50 % of patches) on
    ``device``; ``patch`` is the backbone's patch size (px)."""
    import numpy as np
    import torch

    from cryofm.data.masking import sample_masks

    g = torch.Generator().manual_seed(seed)
    grid = size // patch
    out = {
        "global_crops": torch.randn(2 * batch, 1, size, size, generator=g),
        "local_crops": torch.randn(n_local * batch, 1, local, local, generator=g),
        "masks": torch.from_numpy(
            sample_masks(2 * batch, grid, grid, (0.1, 0.5), 0.5, np.random.default_rng(seed))
        ),
    }
    return {k: v.to(device) for k, v in out.items()}


def bare_step(batch: dict, size: int) -> Callable[[], None]:
    """Backbone forward + backward + fused AdamW."""
    import timm
    import torch

    vit = timm.create_model(VIT, pretrained=False, img_size=size, drop_path_rate=0.1, **VIT_KW)
    vit.train()
    opt = torch.optim.AdamW(vit.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        out = vit.forward_features(batch["global_crops"])[:, 0].sum()
        out = out + vit.forward_features(batch["local_crops"])[:, 0].sum()
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()

    return step


def floor_step(batch: dict, size: int) -> Callable[[], None]:
    """The bare step plus the one piece of work no DINOv2 step can skip: the teacher backbone's
    forward (no gradient, no drop path) on the global crops. Its ratio is the floor of every
    implementation's ratio, before any head, loss, clipping or EMA."""
    import timm
    import torch

    bare = bare_step(batch, size)
    teacher = timm.create_model(VIT, pretrained=False, img_size=size, drop_path_rate=0.0, **VIT_KW)
    teacher.eval().requires_grad_(False)

    def step() -> None:
        with torch.no_grad():
            teacher.forward_features(batch["global_crops"])
        bare()

    return step


def heads_floor_step(batch: dict, size: int, prototypes: int) -> Callable[[], None]:
    """The floor step plus the shared projection head's forward + backward on the student's rows
    (all CLS tokens and the masked patches) and its forward on the teacher's (global CLS and masked
    patches), on random features of the backbone's width."""
    import torch

    from cryofm.models.heads import DINOHead

    floor = floor_step(batch, size)
    n_masked = int(batch["masks"].sum())
    n_global, n_local = batch["global_crops"].shape[0], batch["local_crops"].shape[0]
    student = DINOHead(VIT_DIM, prototypes, **HEAD)
    teacher = DINOHead(VIT_DIM, prototypes, **HEAD).requires_grad_(False)
    x_s = torch.randn(n_global + n_local + n_masked, VIT_DIM, requires_grad=True)
    x_t = torch.randn(n_global + n_masked, VIT_DIM)

    def step() -> None:
        floor()
        with torch.no_grad():
            teacher(x_t, 0.04)
        student(x_s, 0.1).sum().backward()

    return step


def cryofm_step(batch: dict, size: int, prototypes: int, separate_head: bool) -> Callable[[], None]:
    """cryofm's training iteration (:func:`cryofm.train.step.train_step`)."""
    from omegaconf import OmegaConf

    from cryofm.ssl.ema import paired_params
    from cryofm.ssl.meta_arch import SSLMetaArch
    from cryofm.train.optim import make_optimizer
    from cryofm.train.step import train_step

    model = OmegaConf.create(
        {"name": VIT, "in_chans": 1, "drop_path_rate": 0.1, "kwargs": {"init_values": 1e-5}}
    )
    ssl = OmegaConf.load(ROOT / "configs/ssl/dinov2.yaml")
    head = {"n_prototypes": prototypes, **HEAD}
    ssl.dino.head = head
    ssl.ibot.head = head
    ssl.ibot.separate_head = separate_head
    arch = SSLMetaArch(model, ssl, size)
    arch.train()
    opt = make_optimizer(arch.student, OmegaConf.load(ROOT / "configs/optim/adamw.yaml"))
    pairs = paired_params(arch.student, arch.teacher)
    values = {"lr": 1e-4, "wd": 0.04, "last_layer_lr": 1e-4, "teacher_temp": 0.04, "momentum": 0.996}

    def step() -> None:
        train_step(arch, opt, batch, values, 3.0, pairs)

    return step


def lightly_step(batch: dict, size: int, prototypes: int) -> Callable[[], None] | None:
    """The step of lightly's DINOv2 example, or None when lightly is not installed."""
    try:
        from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss
        from lightly.models.modules import DINOv2ProjectionHead, MaskedVisionTransformerTIMM
        from lightly.models.utils import update_drop_path_rate, update_momentum
    except ImportError:
        return None
    import copy

    import timm
    import torch
    from torch import nn

    vit = timm.create_model(VIT, pretrained=False, img_size=size, pos_embed="learn", **VIT_KW)
    teacher_bb = MaskedVisionTransformerTIMM(vit=vit, antialias=False, pos_embed_initialization="skip")
    student_bb = copy.deepcopy(teacher_bb)
    update_drop_path_rate(student_bb.vit, drop_path_rate=0.1, mode="uniform")
    t_head = DINOv2ProjectionHead(input_dim=VIT_DIM, output_dim=prototypes)
    s_head = DINOv2ProjectionHead(input_dim=VIT_DIM, output_dim=prototypes)
    for m in (teacher_bb, t_head):
        m.requires_grad_(False)
        m.eval()
    model = nn.ModuleDict({"tb": teacher_bb, "sb": student_bb, "th": t_head, "sh": s_head})
    student_bb.train()
    s_head.train()
    dino, ibot, koleo = DINOLoss(output_dim=prototypes), IBOTPatchLoss(output_dim=prototypes), KoLeoLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g, loc = batch["global_crops"], batch["local_crops"]
    block_mask = batch["masks"].reshape(g.shape[0], size // 16, size // 16)
    mask = torch.zeros(g.shape[0], teacher_bb.sequence_length, dtype=torch.bool)
    mask[:, 1:] = block_mask.flatten(1)
    n_views = 2 + loc.shape[0] // (g.shape[0] // 2)

    def step() -> None:
        with torch.no_grad():
            t_feat = teacher_bb.encode(g)
            t_cls = t_head(t_feat[:, 0])
            t_masked = t_head(t_feat[mask])
        s_feat = student_bb.encode(g, mask=mask)
        s_cls_g = s_head(s_feat[:, 0])
        s_masked = s_head(s_feat[mask])
        s_cls_l = s_head(student_bb.encode(loc, mask=None)[:, 0])
        s_cls = torch.cat([s_cls_g, s_cls_l])
        loss = dino(teacher_out=t_cls.chunk(2), student_out=s_cls.chunk(n_views), teacher_temp=0.04)
        loss = loss + ibot(teacher_out=t_masked, student_out=s_masked, mask=block_mask, teacher_temp=0.04)
        loss = loss + 0.1 * sum(koleo(t) for t in s_feat[:, 0].chunk(2))
        loss.backward()
        opt.step()
        opt.zero_grad()
        update_momentum(student_bb, teacher_bb, m=0.996)
        update_momentum(s_head, t_head, m=0.996)

    return step


def measure(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds per step of each of ``repeats`` rounds, the steps interleaved within a round."""
    for fn in steps.values():  # warm-up (allocator, lazy inits)
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def ratio(times: dict[str, list[float]], name: str) -> float:
    """Median over rounds of ``name``'s step ÷ the bare step of the same round: a slow spell of the
    shared host hits both steps of a round alike (the ratio of two medians mixes rounds)."""
    return statistics.median(t / b for t, b in zip(times[name], times["bare"], strict=True))


def child_times(batch: dict, size: int, k: int, repeats: int) -> dict[str, list[float]]:
    """Per-round step times of the bare, floor, floor + heads, cryofm (shared and separate iBOT head)
    and lightly steps."""
    steps = {"bare": bare_step(batch, size), "floor": floor_step(batch, size),
             "floor_heads": heads_floor_step(batch, size, k)}
    steps["cryofm"] = cryofm_step(batch, size, k, separate_head=False)
    steps["cryofm_separate"] = cryofm_step(batch, size, k, separate_head=True)
    peer_step = lightly_step(batch, size, k)
    if peer_step is not None:
        steps["lightly"] = peer_step
    return measure(steps, repeats)


def row(k: int, runs: list[dict[str, list[float]]]) -> str:
    """One table row: median step times and ratios over the runs (each run: its per-round median)."""
    med = {n: statistics.median(statistics.median(r[n]) for r in runs) for n in runs[0]}
    rat = {n: [ratio(r, n) for r in runs] for n in runs[0] if n != "bare"}

    def cell(n: str) -> str:
        v = rat[n]
        spread = f" [{min(v):.2f}-{max(v):.2f}]" if len(v) > 1 else ""
        return f"ratio {statistics.median(v):.2f}{spread}"

    out = [f"K {k:6d}: bare {1000 * med['bare']:6.0f} ms | cryofm {1000 * med['cryofm']:6.0f} ms, "
           f"{cell('cryofm')} (target <= {1.5 if k > 10000 else 1.2})"]
    if "lightly" in rat:
        out.append(f"lightly {1000 * med['lightly']:6.0f} ms, {cell('lightly')}")
    out.append(f"cryofm, separate iBOT head: {cell('cryofm_separate')}")
    out.append(f"floor (bare + teacher forward): {cell('floor')}")
    out.append(f"floor + heads' compute: {cell('floor_heads')}")
    return " | ".join(out)


def _passthrough(args) -> list[str]:
    keys = ("size", "local_size", "locals", "batch", "threads", "repeats")
    out = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys]
    return out + (["--glibc-default"] if args.glibc_default else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prototypes", type=int, nargs="+", default=[65536, 4096])
    ap.add_argument("--size", type=int, default=64, help="global crop px")
    ap.add_argument("--local-size", type=int, default=32, help="local crop px")
    ap.add_argument("--locals", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=8, help="interleaved rounds per process")
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    ap.add_argument("--runs", type=int, default=3, help="fresh processes per K (ratio: their median)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--glibc-default", action="store_true",
                    help="leave glibc's malloc thresholds (train.keep_freed_memory=false)")
    args = ap.parse_args()

    import torch

    from cryofm.utils.malloc import keep_freed_memory

    kept = not args.glibc_default and keep_freed_memory()  # what train() does (all three steps alike)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = make_batch(args.batch, args.size, args.local_size, args.locals)
    try:
        import lightly

        peer = f"lightly {lightly.__version__}"
    except ImportError:
        peer = "lightly not installed (pip install --no-deps lightly==1.6.0)"
    lines = [
        f"machine: {platform.machine()} CPU, {args.threads} torch threads; torch {torch.__version__}; "
        f"peer: {peer}",
        f"model: timm {VIT}, 1 channel; batch {args.batch}: 2 x {args.size} px + {args.locals} x "
        f"{args.local_size} px crops; heads {HEAD['hidden_dim']} hidden / {HEAD['bottleneck_dim']} "
        f"bottleneck; {args.runs} fresh processes x "
        f"{args.repeats} rounds (ratio: median over processes [range] of each one's median per-round ratio)",
        "malloc: " + ("freed memory kept (train.keep_freed_memory, all steps alike)" if kept
                      else "glibc's default thresholds"),
    ]
    print(*lines, sep="\n", flush=True)
    if args.child:
        times = child_times(batch, args.size, args.prototypes[0], args.repeats)
        print("TIMES " + json.dumps(times), flush=True)
        return
    for k in args.prototypes:
        runs = []
        for _ in range(args.runs):  # a fresh process each: heap and cache state of one run leak into the next
            cmd = [sys.executable, __file__, "--child", "--prototypes", str(k), *_passthrough(args)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs.append(json.loads(out.split("TIMES ", 1)[1]))
        lines.append(row(k, runs))
        print(lines[-1], flush=True)
    if args.out:
        from cryofm.utils.atomic import write_text

        write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
