"""Loader throughput: cryofm's tensor multi-crop vs a DINOv2-style torchvision/PIL pipeline.

Both read the same real particles from WebDataset shards (EMPIAR-10076 50S ribosome 320 px, RELION 3.1
256 px and TRPV1 48 px stacks from ``../shared/data``, ingested at 224 px) and produce, per particle,
2 global crops (224 px, scale 0.32-1) + 8 local crops (96 px, scale 0.05-0.32) with flips, jitter,
blur at the same probabilities, plus the iBOT masks of each batch, in one process with one torch
thread (= one CPU core). The baseline is DINOv2's ``DataAugmentationDINO`` on a uint8 'L' PIL image
(bicubic RandomResizedCrop, ColorJitter, GaussianBlur(9), ToTensor, Normalize).

    .venv/bin/python bench/bench_loader.py             # ~1 min on a 2-core CPU
    .venv/bin/python bench/bench_loader.py --particles 512 --batch 64
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def real_stacks() -> dict[str, np.ndarray]:
    """The real particle stacks of the shared folder, by name (empty when the folder is absent)."""
    import mrcfile

    files = [
        "relion_cryosparc_formats/empiar_10076_7.mrc",
        "relion_cryosparc_formats/relion31.mrcs",
        "trpv1_particles/trpv1_small_stack.mrcs",
    ]
    import warnings

    warnings.filterwarnings("ignore", module="mrcfile")  # the cryoDRGN test stack has a bare header
    out = {}
    for f in files:
        p = SHARED / f
        if p.is_file():
            with mrcfile.open(p, permissive=True) as m:
                out[p.stem.replace(".", "_")] = np.asarray(m.data, np.float32).reshape(-1, *m.data.shape[-2:])
    return out


def build(root: Path, size: int, copies: int = 8) -> int:
    """Ingest each real stack (repeated ``copies`` times) at ``size`` px; returns the particle count."""
    from cryofm.data.ingest import ingest_arrays
    from cryofm.data.split import make_split
    from cryofm.train.toydata import make_toy_dataset

    stacks = real_stacks()
    if not stacks:
        make_toy_dataset(root, n_experiments=2, n_per=64, box=size, shard_size=32)
        return 0
    n = 0
    for name, arr in stacks.items():
        items = [(im, {"ImagePixelSize": 1.0}) for _ in range(copies) for im in arr]
        ingest_arrays(root, name, items, n=len(items), box=size, shard_size=32, source=name, progress=False)
        n += len(arr)
    make_split(root, seed=0, fractions=(1.0, 0.0, 0.0))
    return n


def baseline_transform(image_size: int, gsize: int, lsize: int):
    """DINOv2's DataAugmentationDINO for one-channel uint8 PIL images (probabilities as stated)."""
    from torchvision import transforms as T

    def common(size, scale, blur_p):
        return T.Compose(
            [
                T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
                T.RandomHorizontalFlip(p=0.5),
                T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
                T.RandomApply([T.GaussianBlur(9, sigma=(0.1, 2.0))], p=blur_p),
                T.ToTensor(),
                T.Normalize(mean=[0.5], std=[0.25]),
            ]
        )

    g1, g2 = common(gsize, (0.32, 1.0), 1.0), common(gsize, (0.32, 1.0), 0.1)
    loc = common(lsize, (0.05, 0.32), 0.5)

    def apply(img):
        return {"global_crops": [g1(img), g2(img)], "local_crops": [loc(img) for _ in range(8)]}

    return apply


def run_baseline(urls, n: int, batch: int, gsize: int, lsize: int) -> float:
    import torch
    from PIL import Image

    from cryofm.data.dataset import iter_raw
    from cryofm.data.format import decode_sample
    from cryofm.data.masking import sample_masks

    aug = baseline_transform(gsize, gsize, lsize)
    rng = np.random.default_rng(0)
    raw = iter_raw(urls * 1000)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        items = []
        for _ in range(batch):
            img, _ = decode_sample(next(raw))
            lo, hi = float(img.min()), float(img.max())
            u8 = np.round((img - lo) / (hi - lo + 1e-12) * 255).astype(np.uint8)  # the precision loss
            items.append(aug(Image.fromarray(u8, mode="L")))
        g = torch.stack([torch.stack(c["global_crops"]) for c in items]).transpose(0, 1).flatten(0, 1)
        loc = torch.stack([torch.stack(c["local_crops"]) for c in items]).transpose(0, 1).flatten(0, 1)
        grid = gsize // 16
        _ = sample_masks(g.shape[0], grid, grid, (0.1, 0.5), 0.5, rng), loc
        done += batch
    return done / (time.perf_counter() - t0)


def run_ours(urls, n: int, batch: int, gsize: int) -> float:
    from cryofm.data.augment import CropSpec, MultiCropConfig
    from cryofm.data.pipeline import ParticleStream

    crops = MultiCropConfig(
        CropSpec(2, gsize, (0.32, 1.0), [1.0, 0.1]), CropSpec(8, round(gsize * 96 / 224), (0.05, 0.32), 0.5)
    )
    s = ParticleStream(urls, batch, gsize, crops, (0.1, 0.5), 0.5, 16, shuffle_buffer=64)
    it = iter(s)
    next(it)  # fill the shuffle buffer outside the timing
    t0 = time.perf_counter()
    done = 0
    while done < n:
        b = next(it)
        done += b["global_crops"].shape[0] // 2
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=192, help="particles timed per pipeline")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224, help="global crop / stored box (px)")
    ap.add_argument("--target", type=float, default=300.0, help="samples/s one GPU needs")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from cryofm.data.pipeline import train_urls

    with tempfile.TemporaryDirectory() as tmp:
        n_real = build(Path(tmp), args.size)
        src = "real particles from ../shared/data" if n_real else "synthetic particles (shared data absent)"
        urls = train_urls(tmp)
        base = run_baseline(urls, args.particles, args.batch, args.size, round(args.size * 96 / 224))
        ours = run_ours(urls, args.particles, args.batch, args.size)
    lsize = round(args.size * 96 / 224)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} 2-core CPU shared with other jobs; "
        f"torch {torch.__version__}, 1 thread per pipeline (= one core)"
    )
    print(f"data: {n_real} {src}, ingested at {args.size} px; {args.particles} particles timed")
    print(
        f"crops per particle: 2 x {args.size} px global + 8 x {lsize} px local, iBOT masks, "
        f"batch {args.batch}"
    )
    print(f"DINOv2-style torchvision/PIL (uint8): {base:8.1f} particles/s per core")
    print(f"cryofm tensor multi-crop (float32):   {ours:8.1f} particles/s per core")
    print(f"speed-up: {ours / base:.2f}x (target >= 3x)")
    print(
        f"cores for {args.target:.0f} particles/s per GPU: {args.target / ours:.1f} "
        f"(with 16 cores: {16 * ours:.0f} particles/s per GPU)"
    )


if __name__ == "__main__":
    main()
