"""Sliding-window micrograph features: dense (one ViT pass per window) vs fast (shift-and-stitch
whole-micrograph passes), speed and agreement, measured in one run on the same micrograph.

* micrographs per minute of each path with a tiny backbone on this CPU (``--checkpoint`` or a
  random-init 2-block ViT of the tiny experiment's shape),
* agreement of the fast path with the dense one: Pearson correlation of the PC1 score maps (fast map
  sampled at the dense window centres) and F1 of fast picks against dense picks (within 0.5 × d),
  and, when the micrograph has expert picks, each path's F1 against them,
* the projected per-micrograph time of the paper's dense setting (ViT-L/16, 224 px windows at stride
  16 on 4096², ~60k windows) and of the fast path on a GPU, from FLOPs counted with
  ``torch.utils.flop_counter`` on the real ViT-L graph (meta tensors, nothing computed) and an
  assumed sustained throughput (``--gpu-tflops``, default 400 TFLOP/s: ~40 % of an H100's bf16 peak).

    .venv/bin/python bench/bench_micrograph.py            # CryoPPP 061 (1024², d 56) if present (~2 min)
    .venv/bin/python bench/bench_micrograph.py --size 512 --diameter 32   # synthetic micrograph
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryofm.features.sliding import dense_features, fast_features  # noqa: E402
from cryofm.io.coords import read_picks  # noqa: E402
from cryofm.io.micrograph import read_micrograph  # noqa: E402
from cryofm.models.backbone import create_backbone  # noqa: E402
from cryofm.picking.dog import dog_score_map  # noqa: E402
from cryofm.picking.metrics import score_micrographs  # noqa: E402
from cryofm.picking.pca import feature_score_map, sample_map  # noqa: E402
from cryofm.picking.picker import pick  # noqa: E402

CRYOPPP = Path(__file__).resolve().parents[2] / "shared" / "data" / "cryoppp_10028" / "train"


def _micrograph(args) -> tuple[np.ndarray, np.ndarray | None, float, str]:
    if args.mrc:
        gt = read_picks(args.truth, diameter=args.diameter)[0] if args.truth else None
        return read_micrograph(args.mrc), gt, args.diameter, f"{Path(args.mrc).name} (d {args.diameter:g})"
    f = CRYOPPP / "images" / "061_10028.png"
    if args.size is None and f.is_file():
        gt, _ = read_picks(CRYOPPP / "labels" / f.name, diameter=56)
        return read_micrograph(f), gt, 56.0, f"CryoPPP EMPIAR-10028 {f.name} (1024², 8-bit PNG)"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from picking_synth import planted_micrograph

    size, d = args.size or 1024, args.diameter
    img, xy = planted_micrograph(size=size, diameter=d, n=int(0.3 * (size / d) ** 2), noise=1.0, seed=0)
    return img, xy, d, f"synthetic planted micrograph {size}², d {d:g}"


def _model(args):
    if args.standin:
        from cryofm.features.standin import LocalMeanBackbone

        return LocalMeanBackbone(8), {"image_size": 64,
                                      "model_name": "stand-in: local pixel means (known signal)"}
    if args.checkpoint:
        from cryofm.models.export import load_backbone

        return load_backbone(args.checkpoint)
    torch.manual_seed(0)
    name = "vit_small_patch16_dinov3_qkvb"
    kw = {"depth": 2, "embed_dim": 96, "num_heads": 3}
    return create_backbone(name, 64, **kw).eval(), {"image_size": 64, "model_name": name + " (2 blocks, 96)"}


def _flops_per_image(name: str, size: int, **kw) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        m = create_backbone(name, size, **kw).eval()
        x = torch.empty(1, 1, size, size)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m.forward_features(x)
    return float(fc.get_total_flops())


def projection(args) -> list[str]:
    """Paper setting on a GPU, from counted FLOPs."""
    name, mic, win, stride = "vit_large_patch16_dinov3_qkvb", 4096, 224, 16
    n_win = ((mic - win) // stride + 1) ** 2
    per_win = _flops_per_image(name, win)
    kept = 4 * win  # fast path default: tiles of 4 windows, half a window of context on each side
    tile = kept + win
    per_tile = _flops_per_image(name, tile)
    n_tiles = int(np.ceil(mic / kept)) ** 2  # upper bound: edge tiles are smaller
    lines = [f"ViT-L/16 (timm {name}): "
             f"{per_win / 1e9:.1f} GFLOP per {win}² window, {per_tile / 1e12:.2f} TFLOP per {tile}² tile"]
    dense = n_win * per_win
    secs = dense / (args.gpu_tflops * 1e12)
    lines.append(f"dense: {n_win} windows × {per_win / 1e9:.1f} GFLOP = {dense / 1e15:.2f} PFLOP per "
                 f"{mic}² micrograph → {secs:.1f} s at {args.gpu_tflops:g} TFLOP/s")
    for s in (1, 2, 4):
        fast = s * s * n_tiles * per_tile
        lines.append(f"fast shifts={s}: {s * s} × {n_tiles} tiles × {per_tile / 1e12:.2f} TFLOP = "
                     f"{fast / 1e15:.3f} PFLOP → {fast / (args.gpu_tflops * 1e12):.2f} s "
                     f"(grid step {16 // s} px; {dense / fast:.0f}× fewer FLOPs than dense)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="run dir or backbone file (default: random tiny)")
    ap.add_argument("--standin", action="store_true",
                    help="features with a known particle signal (local means) instead of a ViT: measures "
                         "how close the fast path's score map and picks are to dense ones")
    ap.add_argument("--size", type=int, default=None, help="synthetic micrograph edge (default: CryoPPP)")
    ap.add_argument("--diameter", type=float, default=56.0)
    ap.add_argument("--box-factor", type=float, default=1.6)
    ap.add_argument("--shifts", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeat", type=int, default=3, help="timings are the best of this many runs")
    ap.add_argument("--tile", type=int, default=None, help="fast tile edge, model px (default 4 windows)")
    ap.add_argument("--mrc", default=None, help="a micrograph file instead (with --truth, --diameter)")
    ap.add_argument("--truth", default=None, help="expert picks of --mrc (any pick format)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpu-tflops", type=float, default=400.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    img, gt, d, what = _micrograph(args)
    model, meta = _model(args)
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} CPU threads "
          f"(2-core shared CPU), torch {torch.__version__}")
    print(f"micrograph: {what}; backbone: {meta.get('model_name')} "
          f"({args.checkpoint or 'random init'}); window {args.box_factor:g} × d; "
          f"s/mic = best of {args.repeat}")
    dog = dog_score_map(img, d)
    kw = {"box_factor": args.box_factor, "invert": True}

    def timed(fn):
        # best of --repeat: the CPU is shared, the minimum is the least disturbed run
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            g = fn()
            best = min(best, time.perf_counter() - t)
        return g, best

    dense, t_dense = timed(lambda: dense_features(model, meta, img, d, stride=d / 4, batch_size=128, **kw))
    dmap, _, _ = feature_score_map(dense, prior=dog)
    dpk = pick(dmap, d)
    rows = [("dense", dense, t_dense, 1.0, 1.0, dpk)]
    for s in args.shifts:
        g, t = timed(lambda s=s: fast_features(model, meta, img, d, shifts=s, tile=args.tile, **kw))
        fmap, _, _ = feature_score_map(g, prior=dog)
        r = np.corrcoef(dmap.values.reshape(-1), sample_map(fmap, dense.centres().reshape(-1, 2)))[0, 1]
        fpk = pick(fmap, d)
        agree = score_micrographs([fpk.xy], [dpk.xy], d / 2)["pooled"]["f1"]
        rows.append((f"fast shifts={s}", g, t, r, agree, fpk))
    print(f"{'path':<16}{'grid':>10}{'step px':>9}{'s/mic':>9}{'mic/min':>9}{'speed-up':>9}"
          f"{'r(PC1)':>8}{'F1 vs dense':>12}" + (f"{'F1 vs expert':>13}" if gt is not None else ""))
    for name, g, t, r, agree, pk in rows:
        line = (f"{name:<16}{'x'.join(map(str, g.features.shape[:2])):>10}{g.step:>9.1f}{t:>9.2f}"
                f"{60 / t:>9.1f}{t_dense / t:>8.1f}×{r:>8.3f}{agree:>12.3f}")
        if gt is not None:
            line += f"{score_micrographs([pk.xy], [gt], d / 2)['pooled']['f1']:>13.3f}"
        print(line)
    if gt is not None:
        f1 = score_micrographs([pick(dog, d).xy], [gt], d / 2)["pooled"]["f1"]
        print(f"DoG baseline F1 vs expert: {f1:.3f}")
    print("projected, ViT-L on a GPU (FLOPs counted, throughput assumed):")
    for line in projection(args):
        print("  " + line)


if __name__ == "__main__":
    main()
