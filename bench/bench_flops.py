"""FLOPs per training sample of the cryoPANDA ViT-L/16 recipe and projected throughput per H100.

Counts, with ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device (nothing is
computed, so it runs on any laptop), the matmul / attention / convolution FLOPs of one DINOv2 step:
student forward + backward on 2 global (224 px) + 8 local (96 px) crops with iBOT masks on half the
global crops (ratio 0.1-0.5), both 65,536-prototype heads, and the teacher forward on the global
crops. The projected rate assumes a given model-FLOPs utilisation (MFU) of the GPU's dense bf16 peak.

    .venv/bin/python bench/bench_flops.py                         # a few seconds
    .venv/bin/python bench/bench_flops.py --experiment tiny --mfu 0.3 --peak-tflops 989
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="cryopanda_vitl16")
    ap.add_argument("--batch", type=int, default=16, help="samples counted (masks average over them)")
    ap.add_argument("--peak-tflops", type=float, default=989.4, help="H100 SXM dense bf16 peak")
    ap.add_argument("--mfu", type=float, default=0.40)
    ap.add_argument("--gpus", type=int, default=8)
    args = ap.parse_args()

    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir
    from torch.utils.flop_counter import FlopCounterMode

    from cryofm.data.augment import multicrop_config
    from cryofm.data.masking import sample_masks
    from cryofm.models.backbone import count_params
    from cryofm.ssl.meta_arch import SSLMetaArch

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={args.experiment}"])
    size = int(cfg.data.image_size)
    crops = multicrop_config(cfg.augment, size)
    with torch.device("meta"):
        arch = SSLMetaArch(cfg.model, cfg.ssl, size)
    B, G, L = args.batch, crops.global_crops.size, crops.local_crops.size
    ng, nl = crops.global_crops.n, crops.local_crops.n
    grid = G // arch.student.backbone.patch
    masks = sample_masks(
        ng * B,
        grid,
        grid,
        tuple(cfg.ssl.ibot.mask_ratio),
        float(cfg.ssl.ibot.mask_probability),
        np.random.default_rng(0),
    )
    n_masked = int(masks.sum())  # boolean indexing has no meta kernel: count the heads apart
    masks = torch.from_numpy(masks).to("meta")
    g = torch.empty(ng * B, 1, G, G, device="meta")
    loc = torch.empty(nl * B, 1, L, L, device="meta")

    def flops(fn) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return counter.get_total_flops()

    def teacher_step() -> None:
        br = arch.teacher
        with torch.no_grad():
            out = br.backbone(g)
            br.dino_head(out["cls"])
            d = out["patch"].shape[-1]
            br.ibot_head(out["patch"].reshape(-1, d)[:1].expand(n_masked, d))

    def student_step() -> None:
        br = arch.student
        og, ol = br.backbone(g, masks), br.backbone(loc)
        d = og["cls"].shape[-1]
        cls_logits = br.dino_head(torch.cat([og["cls"], ol["cls"]]))
        patch_logits = br.ibot_head(og["patch"].reshape(-1, d)[:1].expand(n_masked, d) + 0)
        (cls_logits.sum() + patch_logits.sum() + og["patch"].sum()).backward()

    teacher = flops(teacher_step)
    student = flops(student_step)
    bb_global_fwd = flops(lambda: arch.teacher.backbone(g))

    per_sample = (teacher + student) / B
    rate = args.mfu * args.peak_tflops * 1e12 / per_sample
    n_bb = count_params(arch.student.backbone.backbone)
    n_heads = count_params(arch.student.dino_head) + count_params(arch.student.ibot_head)
    tokens = ng * ((G // 16) ** 2 + arch.student.backbone.n_prefix) + nl * (
        (L // 16) ** 2 + arch.student.backbone.n_prefix
    )
    total_iters = int(cfg.optim.epochs) * int(cfg.train.epoch_length)
    global_batch = int(cfg.train.batch_size_per_gpu) * args.gpus
    hours = total_iters * global_batch / (rate * args.gpus) / 3600
    per_gpu = int(cfg.train.batch_size_per_gpu)
    lines = [
        f"recipe: experiment={args.experiment}: {cfg.model.name}, {ng} x {G} px + {nl} x {L} px crops, "
        f"heads {cfg.ssl.dino.head.n_prototypes} prototypes",
        f"parameters: backbone {n_bb / 1e6:.1f} M, DINO + iBOT heads {n_heads / 1e6:.1f} M "
        "(student; the teacher the same)",
        f"tokens per sample through the student backbone: {tokens}; "
        f"masked patches per sample: {n_masked / B:.1f}",
        f"FLOPs per sample (counted, {B} samples): student fwd+bwd {student / B / 1e9:.1f} G, "
        f"teacher fwd {teacher / B / 1e9:.1f} G, total {per_sample / 1e9:.1f} GFLOP",
        f"  check: 6 x backbone params x tokens (fwd+bwd, no attention) = {6 * n_bb * tokens / 1e9:.1f} G; "
        f"teacher backbone fwd on the globals alone {bb_global_fwd / B / 1e9:.1f} G",
        f"projected per H100 at {args.mfu:.0%} MFU of {args.peak_tflops:.0f} TFLOPS bf16: "
        f"{rate:.0f} samples/s ({rate / per_gpu:.2f} it/s at {per_gpu} per GPU)",
        f"full run: {total_iters} iterations x {global_batch} samples on {args.gpus} GPUs ~ {hours:.1f} h "
        f"({hours * args.gpus:.0f} GPU-hours)",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
