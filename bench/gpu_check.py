"""The GPU check: the code paths a CPU cannot run, each result one line in ``bench/results/gpu.txt``.

Run it with ``bash bench/gpu_check.sh`` (≤ 8 minutes on one H100/H200). Checks, in order:

* ``bf16``: one :func:`cryofm.train.step.train_step` under bf16 autocast (what ``train.bf16`` does)
  — the loss agrees with fp32 on the same weights (relative 3e-2) and every gradient is finite.
* ``ddp``, ``fsdp2``, ``fsdp2_bf16``: three steps with the student wrapped in DDP / sharded with FSDP2
  (teacher too, as ``dist.strategy=fsdp`` does) in a world of size 1, against the plain module on the
  same weights and batch: losses and the gathered teacher weights agree (fp32: 1e-4; bf16 parameters
  with fp32 reductions: 5e-2 on the losses).
* ``attention``: SDPA's flash / memory-efficient kernel against its math kernel, and xFormers (when
  installed) against SDPA, on a timm ViT in bf16 (max |difference| / max |output| ≤ 2e-2).
* ``compile``: the student under ``torch.compile`` (``train.compile``): losses of three steps equal the
  eager ones (1e-3), the graph breaks counted, and the speed-up after compilation.
* ``throughput``: the ``experiment=cryopanda_vitl16`` step (ViT-L/16, 2 × 224 + 8 × 96 px crops, 65,536
  prototypes, bf16 autocast) at the largest per-GPU batch that fits (doubling from 32): samples/s and
  MFU (FLOPs of the step counted by ``torch.utils.flop_counter`` ÷ time ÷ the GPU's dense bf16 peak).
* ``learning``: ``bench/bench_learning.py``'s control curve with a ViT-S/16 (conv stem) backbone and
  the tiny recipe, its steps sized from a pilot run so that training takes ~``--learn-s`` seconds.

``--dry-run`` runs every check on the CPU at tiny sizes (gloo, ``aot_eager`` for compile, a 2-block
model, a 10-step curve) — the CI test ``tests/test_gpu_check.py`` does that — and writes
``bench/results/gpu_dryrun.txt``. Exit status 1 when a check fails.

    .venv/bin/python bench/gpu_check.py --dry-run        # ~1 minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results"

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "GH200": 989.4, "B200": 2250.0, "A100": 312.0,
               "L40S": 362.1, "A10": 125.0, "L4": 121.0}


class Check:
    """Sizes and device of one run: the GPU sizes, or tiny ones on the CPU (``--dry-run``)."""

    def __init__(self, dry_run: bool):
        import torch

        self.dry = dry_run
        # an indexed device: init_process_group(device_id=...) needs one
        self.device = torch.device("cpu") if dry_run else torch.device("cuda", torch.cuda.current_device())
        self.small_model = (["model=convstem_vit_small_dinov3", "model.drop_path_rate=0.0",
                             "++model.kwargs.depth=2", "++model.kwargs.embed_dim=96",
                             "++model.kwargs.num_heads=3", "model.kwargs.stem_channels=[24,48,96]"]
                            if dry_run else ["model=vit_small_dinov3", "model.drop_path_rate=0.0"])
        self.small = {"size": 32 if dry_run else 96, "local": 16 if dry_run else 48, "n_local": 2 if
                      dry_run else 8, "batch": 4 if dry_run else 32, "K": 64 if dry_run else 4096}

    def autocast(self, on: bool = True):
        import torch

        if not on:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()


def compose_train(overrides: list[str]):
    from cryofm.cli import compose

    return compose("train", overrides)


def build(cfg, size: int, device, seed: int = 0, fused: bool = True):
    """SSLMetaArch + AdamW (the loop's groups) on ``device``, weights from ``seed``."""
    import torch

    from cryofm.ssl.meta_arch import SSLMetaArch
    from cryofm.train.optim import make_optimizer

    torch.manual_seed(seed)
    arch = SSLMetaArch(cfg.model, cfg.ssl, size).to(device)
    arch.train()
    return arch, (lambda: make_optimizer(arch.student, cfg.optim, fused=fused and device.type == "cuda"))


def small_cfg(c: Check, extra: list[str] = ()):
    k = c.small["K"]
    return compose_train([*c.small_model, f"ssl.dino.head.n_prototypes={k}",
                          f"ssl.ibot.head.n_prototypes={k}", *extra])


def small_batch(c: Check, arch, seed: int = 0) -> dict:
    from bench_trainer import make_batch

    s = c.small
    return make_batch(s["batch"], s["size"], s["local"], s["n_local"], seed, arch.student.backbone.patch,
                      str(c.device))


VALUES = {"lr": 1e-4, "wd": 0.04, "last_layer_lr": 1e-4, "teacher_temp": 0.04, "momentum": 0.99}


def steps(arch, opt, batch, n: int, student=None, autocast=None) -> list[float]:
    """``n`` training steps on one batch; their losses."""
    from cryofm.ssl.ema import paired_params
    from cryofm.train.step import train_step

    pairs = paired_params(arch.student, arch.teacher)
    return [float(train_step(arch, opt, batch, VALUES, 3.0, pairs, student, autocast)[0].detach())
            for _ in range(n)]


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def fp32_matmuls() -> None:
    """Exact fp32 (no TF32) for the equality checks."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


# ---- checks: each returns (ok | None for skipped, detail) ----


def check_bf16(c: Check) -> tuple[bool | None, str]:
    import torch

    fp32_matmuls()
    cfg = small_cfg(c)
    arch, make_opt = build(cfg, c.small["size"], c.device)
    batch = small_batch(c, arch)
    with torch.no_grad():
        ref = float(arch(batch, 0.04)[0])
    opt = make_opt()
    with c.autocast():
        loss, _ = arch(batch, 0.04)
    loss.backward()
    grads = [p.grad for p in arch.student.parameters() if p.grad is not None]
    finite = all(bool(torch.isfinite(g).all()) for g in grads)
    opt.zero_grad(set_to_none=True)
    after = steps(arch, opt, batch, 2, autocast=c.autocast())
    d = rel(float(loss.detach()), ref)
    ok = finite and d <= 3e-2 and all(math.isfinite(x) for x in after) and loss.dtype == torch.float32
    dtype = str(loss.dtype).removeprefix("torch.")
    return ok, (f"loss bf16 {float(loss.detach()):.5f} vs fp32 {ref:.5f} (rel {d:.1e}, tol 3e-2), loss "
                f"dtype {dtype}, {len(grads)} grads finite: {finite}, next 2 steps {after[0]:.4f} "
                f"{after[1]:.4f}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def world_of_one(c: Check):
    import torch.distributed as dist

    backend = "gloo" if c.device.type == "cpu" else "nccl"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
                            device_id=c.device if backend == "nccl" else None)
    try:
        yield backend
    finally:
        dist.destroy_process_group()


def teacher_state(arch, fsdp: bool) -> dict:
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(arch, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: v for k, v in full.items() if k.startswith("teacher.")}
    return {k: v.detach().cpu() for k, v in arch.state_dict().items() if k.startswith("teacher.")}


def rel_l2(a: dict, b: dict) -> float:
    """||a − b|| / ||b|| over all tensors of ``b`` together (a few elements near zero, which AdamW's
    sign-like first steps move by a whole lr on rounding noise, do not dominate it)."""
    num = sum(float((a[k].float() - v.float()).square().sum()) for k, v in b.items())
    den = sum(float(v.float().square().sum()) for v in b.values())
    return math.sqrt(num / max(den, 1e-30))


def first_grads(arch, batch, student=None) -> dict:
    """Gradients of one backward of the loss (gathered when FSDP shards them), then zeroed."""
    loss, _ = arch(batch, VALUES["teacher_temp"], student)
    loss.backward()
    out = {}
    for n, p in arch.student.named_parameters():
        if p.grad is not None:
            g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            out[n] = g.detach().float().cpu()
            p.grad = None
    return out


def check_parallel(c: Check) -> list[tuple[str, bool | None, str]]:
    """DDP and FSDP2 in a world of one against the plain module: the first gradients (1e-5, fp32),
    then three steps (losses 1e-3, teacher weights 1e-4; bf16 parameters: 5e-2 and 1e-2)."""
    from torch import nn

    from cryofm.train import distributed as du
    from cryofm.train.optim import make_optimizer

    fp32_matmuls()
    cfg = small_cfg(c)
    plain, make_opt = build(cfg, c.small["size"], c.device)
    batch = small_batch(c, plain)
    ref_g = first_grads(plain, batch)
    ref = steps(plain, make_opt(), batch, 3)
    ref_state = teacher_state(plain, False)
    out = []
    with world_of_one(c) as backend:
        for name in ("ddp", "fsdp2", "fsdp2_bf16"):
            bf16 = name == "fsdp2_bf16"
            if bf16 and c.dry:
                continue  # bf16 parameters on the CPU: not what a user runs; the GPU line covers it
            arch, make_opt = build(cfg, c.small["size"], c.device)
            if name == "ddp":
                ids = [c.device.index] if c.device.type == "cuda" else None
                student = nn.parallel.DistributedDataParallel(arch.student, device_ids=ids,
                                                              broadcast_buffers=False)
                opt = make_opt()
            else:
                du.apply_fsdp(arch.teacher, bf16, reshard_root=True)
                student = du.apply_fsdp(arch.student, bf16)
                opt = make_optimizer(arch.student, cfg.optim, fused=False)  # DTensor parameters
            dg = rel_l2(first_grads(arch, batch, student), ref_g)
            got = steps(arch, opt, batch, 3, student=student)
            d = max(rel(a, b) for a, b in zip(got, ref, strict=True))
            w = rel_l2(teacher_state(arch, name != "ddp"), ref_state)
            tol_g, tol_l, tol_w = (5e-2, 5e-2, 1e-2) if bf16 else (1e-5, 1e-3, 1e-4)
            ok = dg <= tol_g and d <= tol_l and w <= tol_w
            out.append((name, ok, f"{backend}, world 1{', bf16 params + fp32 reduce' if bf16 else ''}: "
                        f"first gradients rel L2 {dg:.1e} (tol {tol_g:.0e}); losses "
                        f"{' '.join(f'{x:.5f}' for x in got)}, max rel diff {d:.1e} (tol {tol_l:.0e}); "
                        f"teacher weights after 3 steps rel L2 {w:.1e} (tol {tol_w:.0e})"))
    return out


def check_attention(c: Check) -> tuple[bool | None, str]:
    import timm
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if c.device.type != "cuda":
        return None, "needs CUDA (SDPA flash / memory-efficient kernels, xFormers)"
    from cryofm.models.attention import use_xformers, xformers_available

    torch.manual_seed(0)
    vit = timm.create_model("vit_large_patch16_224", pretrained=False, num_classes=0, in_chans=1,
                            init_values=1e-5).to(c.device).eval()
    x = torch.randn(16, 1, 224, 224, device=c.device)

    def run(backends) -> torch.Tensor:
        with torch.no_grad(), c.autocast(), sdpa_kernel(backends):
            return vit.forward_features(x).float()

    math_out = run([SDPBackend.MATH])
    fast = run([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
    scale = float(math_out.abs().max())
    d_fast = float((fast - math_out).abs().max()) / scale
    parts, ok = [f"ViT-L/16 bf16, 16 x 224 px: SDPA flash/efficient vs math {d_fast:.1e}"], d_fast <= 2e-2
    if xformers_available():
        n = use_xformers(vit, "xformers")
        xf = run([SDPBackend.MATH])  # patched layers call xFormers whatever SDPA's backend
        d_xf = float((xf - fast).abs().max()) / scale
        parts.append(f"xFormers ({n} layers) vs SDPA {d_xf:.1e}")
        ok = ok and n > 0 and d_xf <= 2e-2
    else:
        parts.append("xFormers not installed: SDPA only (train.attention=sdpa, the default)")
    return ok, "; ".join(parts) + " (tol 2e-2 of max |output|)"


def check_compile(c: Check) -> tuple[bool | None, str]:
    import torch
    import torch._dynamo

    fp32_matmuls()
    cfg = small_cfg(c)
    backend = "aot_eager" if c.dry else "inductor"
    eager_arch, make_opt = build(cfg, c.small["size"], c.device)
    batch = small_batch(c, eager_arch)
    eager_opt = make_opt()
    ref = steps(eager_arch, eager_opt, batch, 3)
    arch, make_opt = build(cfg, c.small["size"], c.device)
    opt = make_opt()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(arch.student, backend=backend)
    t0 = time.perf_counter()
    got = steps(arch, opt, batch, 3, student=compiled)
    c.sync()
    t_compile = time.perf_counter() - t0
    gb = torch._dynamo.utils.counters["graph_break"]
    breaks = sum(gb.values())
    why = (" (" + "; ".join(k.splitlines()[0][:80] for k in gb) + ")") if gb else ""
    d = max(rel(a, b) for a, b in zip(got, ref, strict=True))

    def timed(fn: Callable[[], object], n: int = 5) -> float:
        ts = []
        for _ in range(n):
            c.sync()
            t = time.perf_counter()
            fn()
            c.sync()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    t_eager = timed(lambda: steps(eager_arch, eager_opt, batch, 1))
    t_comp = timed(lambda: steps(arch, opt, batch, 1, student=compiled))
    return d <= 1e-3, (f"backend {backend}: losses {' '.join(f'{x:.5f}' for x in got)} vs eager, max rel "
                       f"diff {d:.1e} (tol 1e-3); {breaks} graph breaks{why}; first 3 steps "
                       f"{t_compile:.1f} s; step {1000 * t_comp:.1f} ms vs eager {1000 * t_eager:.1f} ms "
                       f"({t_eager / t_comp:.2f}x)")


def check_throughput(c: Check) -> tuple[bool | None, str]:
    import torch
    from bench_trainer import make_batch
    from torch.utils.flop_counter import FlopCounterMode

    from cryofm.data.augment import multicrop_config

    exp = "tiny" if c.dry else "cryopanda_vitl16"
    cfg = compose_train([f"experiment={exp}"])
    size = int(cfg.data.image_size)
    crops = multicrop_config(cfg.augment, size)
    gsize, lsize, n_local = crops.global_crops.size, crops.local_crops.size, crops.local_crops.n
    torch.backends.cuda.matmul.allow_tf32 = True
    arch, make_opt = build(cfg, size, c.device)
    opt = make_opt()
    patch = arch.student.backbone.patch
    candidates = [2, 4] if c.dry else [32, 64, 128, 256, 512, 1024]
    best, note = None, ""
    for b in candidates:
        try:
            batch = make_batch(b, gsize, lsize, n_local, 0, patch, str(c.device))
            steps(arch, opt, batch, 2, autocast=c.autocast())
            c.sync()
            best = b
        except torch.OutOfMemoryError:
            note = f"; batch {b} ran out of memory"
            break
        finally:
            batch = None
            opt.zero_grad(set_to_none=True)
            if c.device.type == "cuda":
                torch.cuda.empty_cache()
    if best is None:
        return False, f"no batch of {candidates} fits{note}"
    batch = make_batch(best, gsize, lsize, n_local, 0, patch, str(c.device))
    counter = FlopCounterMode(display=False)
    with counter:
        steps(arch, opt, batch, 1, autocast=c.autocast())
    flops = counter.get_total_flops()
    n = 3 if c.dry else 8
    c.sync()
    t0 = time.perf_counter()
    steps(arch, opt, batch, n, autocast=c.autocast())
    c.sync()
    dt = (time.perf_counter() - t0) / n
    mem = torch.cuda.max_memory_allocated() / 2**30 if c.device.type == "cuda" else float("nan")
    name = torch.cuda.get_device_name() if c.device.type == "cuda" else platform.processor() or "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    mfu = (f"MFU {flops / dt / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s bf16 dense" if peak
           else "MFU: no peak known for this device")
    return True, (f"experiment={exp} ({cfg.model.name}, 2 x {gsize} + {n_local} x {lsize} px, K "
                  f"{cfg.ssl.dino.head.n_prototypes}), bf16 autocast, largest batch tried that fits {best}"
                  f"{note}: {1000 * dt:.0f} ms/step, {best / dt:.1f} samples/s, {flops / best / 1e9:.2f} "
                  f"GFLOP/sample, {flops / dt / 1e12:.2f} TFLOP/s, {mfu}, peak memory {mem:.1f} GiB")


def check_learning(c: Check, learn_s: float) -> tuple[bool | None, str]:
    import bench_learning

    from cryofm.report.runlog import read_metrics

    vit_s = ["++model.kwargs.depth=12", "++model.kwargs.embed_dim=384", "++model.kwargs.num_heads=6",
             "model.kwargs.stem_channels=[48,96,192]", "train.bf16=true", "data.num_workers=4"]
    model = ["train.progress=false"] + ([] if c.dry else vit_s)
    work = Path(tempfile.mkdtemp(prefix="cryofm_gpucheck_"))
    ns = dict(noise=0.5, threads="auto", work=str(work), override=model, section="gpu_vits_control",
              no_write=c.dry, per_class=32 if c.dry else 256, probe_per_class=8 if c.dry else 64)
    if c.dry:
        n = 10
    else:  # pilot: 30 steps, then size the run from the median step time
        from cryofm.simulate.control import write_control_dataset

        write_control_dataset(work / "control", n_per_class=256, noise=0.5, seed=0)
        bench_learning.train_run(work / "pilot", work / "control", "tiny", 30, model)
        st = statistics.median(m["step_time"] for m in read_metrics(work / "pilot")[10:])
        n = int(min(max(learn_s / st, 200), 20000)) // 5 * 5
    t0 = time.perf_counter()
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        met = bench_learning.control(argparse.Namespace(**ns, steps=n))
    text = buf.getvalue()
    pick = [ln.strip() for ln in text.splitlines()
            if ln.startswith("target") or ln.strip().startswith((f"{n} ", "0 ", "pixels"))]
    ok = met if not c.dry else len(pick) == 6  # a dry run is too short to learn: the curve must exist
    return ok, (f"control, ViT-S/16 conv stem ({'dry-run: 2 blocks' if c.dry else '12 blocks'}), {n} steps, "
                f"{time.perf_counter() - t0:.0f} s: " + " | ".join(pick))


def header(c: Check) -> list[str]:
    import torch

    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    dev = torch.cuda.get_device_name() if c.device.type == "cuda" else f"CPU ({platform.machine()}), dry run"
    return [f"# cryofm GPU check, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {rev}",
            f"# device: {dev}; torch {torch.__version__}, CUDA {torch.version.cuda}, python "
            f"{platform.python_version()}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what CI runs)")
    ap.add_argument("--only", nargs="+", default=None,
                    choices=["bf16", "parallel", "attention", "compile", "throughput", "learning"])
    ap.add_argument("--learn-s", type=float, default=150.0, help="training seconds of the learning curve")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default bench/results/gpu.txt, gpu_dryrun.txt with --dry-run)")
    args = ap.parse_args()

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --dry-run on a CPU", file=sys.stderr)
        raise SystemExit(2)
    c = Check(args.dry_run)
    if c.dry:
        torch.set_num_threads(2)
    out = args.out or RESULTS / ("gpu_dryrun.txt" if c.dry else "gpu.txt")
    lines = header(c)
    print(*lines, sep="\n", flush=True)
    failed = False

    def record(name: str, ok: bool | None, detail: str, t: float) -> None:
        nonlocal failed
        failed = failed or ok is False
        word = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        lines.append(f"{name:<11} {word}  {detail} [{t:.0f} s]")
        print(lines[-1], flush=True)

    checks: list[tuple[str, Callable[[], object]]] = [
        ("bf16", lambda: check_bf16(c)),
        ("parallel", lambda: check_parallel(c)),
        ("attention", lambda: check_attention(c)),
        ("compile", lambda: check_compile(c)),
        ("throughput", lambda: check_throughput(c)),
        ("learning", lambda: check_learning(c, args.learn_s)),
    ]
    for name, fn in checks:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            res = fn()
        except Exception as e:  # one broken path must not hide the others' results
            tb = traceback.extract_tb(e.__traceback__)[-1]
            res = (False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                          f"({Path(tb.filename).name}:{tb.lineno})")
        for row in res if isinstance(res, list) else [(name, *res)]:
            record(*row, time.perf_counter() - t0)
    from cryofm.utils.atomic import write_text

    write_text(out, "\n".join(lines) + "\n")
    print(f"wrote {out}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
