"""Trainer overhead: a full DINOv2 step ÷ the bare backbone forward+backward on the same crops.

The full step is what ``cryofm.train.loop`` runs per iteration: teacher forward on the global crops,
Sinkhorn-Knopp centering, student forward (masked globals + locals), DINO/iBOT heads, DINO + iBOT +
KoLeo losses, backward, gradient clipping, AdamW with per-group lr/wd and the foreach EMA of the
teacher. The bare step is the student backbone alone: forward on the same crops and backward from
the sum of its CLS tokens. Tiny model on CPU, one thread, medians over interleaved repeats.

    .venv/bin/python bench/bench_trainer.py                    # ~1 min on a 2-core CPU
    .venv/bin/python bench/bench_trainer.py --dim 384 --depth 12 --size 224 --prototypes 65536
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_small_patch16_dinov3_qkvb")
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--size", type=int, default=112, help="global crop px (locals: 96/224 of it)")
    ap.add_argument("--locals", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    # heads scaled down with the backbone: head/backbone MACs per token ~11% here, ~8% for the
    # ViT-L/16 recipe's 65,536 / 2,048 / 256 heads on a 1024-wide, 24-block backbone
    ap.add_argument("--prototypes", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--bottleneck", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()

    import torch
    from omegaconf import OmegaConf

    from cryofm.data.masking import sample_masks
    from cryofm.ssl.ema import ema_update, paired_params
    from cryofm.ssl.meta_arch import SSLMetaArch
    from cryofm.train.optim import apply_schedule, make_optimizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = OmegaConf.create(
        {
            "name": args.model,
            "in_chans": 1,
            "drop_path_rate": 0.0,
            "kwargs": {"depth": args.depth, "embed_dim": args.dim, "num_heads": args.heads},
        }
    )
    ssl = OmegaConf.load(ROOT / "configs/ssl/dinov2.yaml")
    head = {
        "n_prototypes": args.prototypes,
        "hidden_dim": args.hidden,
        "bottleneck_dim": args.bottleneck,
        "nlayers": 3,
    }
    ssl.dino.head = head
    ssl.ibot.head = head
    optim = OmegaConf.load(ROOT / "configs/optim/adamw.yaml")
    arch = SSLMetaArch(model, ssl, args.size)
    opt = make_optimizer(arch.student, optim)
    s_params, t_params = paired_params(arch.student, arch.teacher)
    B, G, L = args.batch, args.size, max(16, round(args.size * 96 / 224 / 16) * 16)
    import numpy as np

    grid = G // 16
    batch = {
        "global_crops": torch.randn(2 * B, 1, G, G),
        "local_crops": torch.randn(args.locals * B, 1, L, L),
        "masks": torch.from_numpy(sample_masks(2 * B, grid, grid, (0.1, 0.5), 0.5, np.random.default_rng(0))),
    }
    bb = arch.student.backbone

    def full() -> None:
        apply_schedule(opt, 1e-4, 0.04, 1e-4)
        loss, _ = arch(batch, 0.04)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(arch.student.parameters(), 3.0)
        opt.step()
        ema_update(s_params, t_params, 0.996)

    def bare() -> None:
        out = bb(batch["global_crops"])["cls"].sum() + bb(batch["local_crops"])["cls"].sum()
        arch.student.zero_grad(set_to_none=True)
        out.backward()

    def teacher_only() -> None:
        with torch.no_grad():
            arch.teacher(batch["global_crops"], None, batch["masks"], mask_input=False)

    def timed(fn) -> float:
        # CPU time of this (single-threaded) process: other jobs on a shared machine barely move it
        t0 = time.process_time()
        fn()
        return time.process_time() - t0

    for fn in (full, bare, teacher_only):  # warm-up
        fn()
    tf, tb, tt = [], [], []
    for _ in range(args.repeats):  # interleaved: machine load hits all three alike
        tf.append(timed(full))
        tb.append(timed(bare))
        tt.append(timed(teacher_only))
    # the minimum is the least disturbed by other jobs on a shared machine; the median is printed too
    f, b, t = min(tf), min(tb), min(tt)
    fm, bm = statistics.median(tf), statistics.median(tb)
    print(
        f"machine: {platform.machine()} 2-core CPU shared with other jobs; "
        f"torch {torch.__version__}, 1 thread"
    )
    print(
        f"model: {args.model} dim {args.dim} depth {args.depth}; "
        f"batch {B}: 2 x {G} px + {args.locals} x {L} px "
        f"crops; heads {args.prototypes} prototypes / hidden {args.hidden} / bottleneck {args.bottleneck}"
    )
    d, p_, h_, k_ = args.dim, args.prototypes, args.hidden, args.bottleneck
    head_macs = d * h_ + h_ * h_ + h_ * k_ + k_ * p_
    print(f"head / backbone MACs per token: {head_macs / (args.depth * 12 * d * d):.2f}")
    print(f"bare backbone forward+backward: {1000 * b:8.1f} ms CPU")
    print(f"full DINOv2 step:               {1000 * f:8.1f} ms CPU")
    print(f"  of which teacher forward:     {1000 * t:8.1f} ms CPU ({t / b:.2f} of the bare step)")
    print(f"overhead ratio full / bare: {f / b:.2f} (target <= 1.3); with medians: {fm / bm:.2f}")
    print(f"overhead beyond the teacher's forward (heads, losses, optimiser, EMA): {(f - t) / b:.2f}")


if __name__ == "__main__":
    main()
