"""Learning curves: does cryofm's DINOv2 pretraining produce features that beat random init?

Trains with the project's own ``train()`` (Hydra config ``configs/train.yaml`` + an experiment) and
evaluates the teacher's frozen CLS features at every checkpoint (5 points + step 0 = the run's random
init) with a kNN and a linear probe, next to raw pixels on the same particles. Prints the DINO loss
and the teacher's target entropy over ln K, the probe accuracies, and whether the targets are met;
writes ``bench/results/learning.txt`` (one section per dataset) and ``bench/results/learning_<set>.png``.

* ``control``: the synthetic control set (:mod:`cryofm.simulate.control`: 8 shapes in random poses,
  noise std 0.5 of the signal, per-particle normalised), ``experiment=tiny`` for ``--steps`` steps.
  Targets (2-core CPU): within 10 minutes, DINO loss <= 0.8 ln K, linear probe >= random init + 0.30.
* ``demo``: ``cryofm simulate preset=demo`` (10 simulated experiments, 2 held out) and
  ``experiment=demo``. The curve's probe is ProteinClass on particles of the training experiments;
  at the end cryofm's full probes (``eval/probe.py``: every task, ID and held-out experiments, with
  the random-init and pixel baselines) and the features picker against DoG on simulated micrographs
  (``eval/pick.py``). Targets: within 15 minutes, DINO loss <= 0.9 ln K, mean probe gain over random
  init >= 0.05 on ID tasks and >= 0.02 on the held-out experiments, features F1 >= DoG's, each at its
  own threshold.

    .venv/bin/python bench/bench_learning.py                   # control, ~5 min on 2 cores (2,000 steps)
    .venv/bin/python bench/bench_learning.py --part demo       # demo, ~15 min
    .venv/bin/python bench/bench_learning.py --steps 300       # a shorter look
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def write_section(name: str, text: str, path: Path = RESULTS / "learning.txt") -> None:
    """Replace (or add) the ``## <name>`` section of the results file, keeping the others."""
    sections: dict[str, str] = {}
    if path.is_file():
        cur = None
        for line in path.read_text().splitlines(keepends=True):
            if line.startswith("## "):
                cur = line[3:].strip()
                sections[cur] = ""
            elif cur is not None:
                sections[cur] += line
    sections[name] = text.rstrip() + "\n\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"## {k}\n{v}" for k, v in sections.items()))


def curve_figure(rows: list[dict], pixels: dict[str, float], metrics: list[dict], ln_k: float, title: str,
                 out: Path) -> None:
    """Two panels: probe accuracies against the step (pixels and random init as lines), and the DINO
    loss / teacher target entropy / iBOT CE over ln K against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    steps = [r["step"] for r in rows]
    for i, key in enumerate(("knn", "linear")):
        a.plot(steps, [r[key] for r in rows], "o-", color=f"C{i}", label=f"teacher CLS, {key}")
        a.axhline(rows[0][key], color=f"C{i}", ls=":", lw=1, label=f"random init, {key}")
        a.axhline(pixels[key], color=f"C{i}", ls="--", lw=1, label=f"raw pixels, {key}")
    a.set_xlabel("step")
    a.set_ylabel("accuracy")
    a.set_title(f"{title}: frozen-feature probes")
    a.legend(fontsize=7)
    s = [m["step"] for m in metrics]
    lines = (("dino_loss", "DINO loss"), ("dino_target_entropy", "teacher target entropy"),
             ("ibot_ce", "iBOT CE per masked image"))
    for i, (key, label) in enumerate(lines):
        if metrics and key in metrics[0]:
            b.plot(s, [m[key] / ln_k for m in metrics], lw=0.8, color=f"C{i + 2}", label=label)
    b.axhline(1.0, color="k", ls="--", lw=0.8, label="ln K (uniform guess)")
    b.set_xlabel("step")
    b.set_ylabel("/ ln K")
    b.set_title(f"{title}: objective")
    b.legend(fontsize=7)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def train_run(out: Path, dataset: Path, experiment: str, steps: int, overrides: list[str]) -> float:
    """``train()`` on ``dataset`` with ``experiment`` for ``steps`` steps, a checkpoint every
    ``steps / 5``, all kept; returns the wall time (s)."""
    from cryofm.cli import compose
    from cryofm.train.loop import train

    base = compose("train", [f"experiment={experiment}"])
    epochs = math.ceil(steps / int(base.train.epoch_length))  # whole epochs (validate.py); stop at steps
    cfg = compose("train", [f"experiment={experiment}", f"data.path={dataset}", f"out={out}",
                            f"optim.epochs={epochs}", f"train.max_steps={steps}",
                            f"train.checkpoint_every={max(1, steps // 5)}", "train.keep_last=0", *overrides])
    t0 = time.perf_counter()
    train(cfg)
    return time.perf_counter() - t0


def report(name: str, rows: list[dict], pixels: dict[str, float], wall: float, ln_k: float,
           header: list[str], targets: list[tuple[str, bool]]) -> str:
    lines = [*header, "",
             f"{'step':>6} {'kNN':>6} {'linear':>7} {'DINO/lnK':>9} {'H(t)/lnK':>9} {'iBOT/lnK':>9}"]
    for r in rows:
        lines.append(f"{r['step']:>6} {r['knn']:>6.3f} {r['linear']:>7.3f} "
                     f"{r.get('dino_loss_over_lnK', math.nan):>9.3f} "
                     f"{r.get('dino_target_entropy_over_lnK', math.nan):>9.3f} "
                     f"{r.get('ibot_ce_over_lnK', math.nan):>9.3f}")
    lines.append(f"{'pixels':>6} {pixels['knn']:>6.3f} {pixels['linear']:>7.3f}")
    lines.append("(step 0 = the run's random init; losses: mean of the 25 steps before each point)")
    lines.append(f"wall time: {wall:.0f} s (data + training + evaluation)")
    lines += [f"target {t}: {'MET' if ok else 'NOT MET'}" for t, ok in targets]
    return "\n".join(lines)


def control(args) -> bool:
    import torch

    from cryofm.probe.curve import learning_curve, pixel_scores
    from cryofm.report.runlog import read_metrics
    from cryofm.simulate.control import control_particles, write_control_dataset

    t0 = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="cryofm_learning_"))
    dataset, run = work / "control", work / "control_run"
    if not (dataset / "split.json").is_file():
        write_control_dataset(dataset, n_per_class=args.per_class, noise=args.noise, seed=0)
    overrides = [f"train.threads={args.threads}", *args.override]
    t_train = train_run(run, dataset, "tiny", args.steps, overrides)
    probe_train = control_particles(args.probe_per_class, noise=args.noise, seed=101)
    probe_test = control_particles(args.probe_per_class, noise=args.noise, seed=202)
    rows = learning_curve(run, probe_train, probe_test)
    pixels = pixel_scores(probe_train, probe_test)
    wall = time.perf_counter() - t0
    from cryofm.probe.curve import run_config

    cfg = run_config(run)
    ln_k = math.log(int(cfg.ssl.dino.head.n_prototypes))
    last, first = rows[-1], rows[0]
    dino = last.get("dino_loss_over_lnK", math.nan)
    gain = last["linear"] - first["linear"]
    targets = [(f"DINO loss <= 0.8 ln K at the end ({dino:.3f})", dino <= 0.8),
               (f"linear probe >= random init + 0.30 ({last['linear']:.3f} vs {first['linear']:.3f}: "
                f"+{gain:.3f})", gain >= 0.30),
               (f"within 10 minutes ({wall:.0f} s)", wall <= 600)]
    header = [f"machine: {platform.machine()} {torch.get_num_threads()}-thread torch {torch.__version__}, "
              f"train.threads={args.threads}",
              f"data: control set, 8 shapes x {args.per_class} particles, 64 px, noise {args.noise} "
              f"(probe-train / test: {8 * args.probe_per_class} / {8 * args.probe_per_class} new particles)",
              f"recipe: experiment=tiny ({cfg.model.name} {dict(cfg.model.kwargs)}), "
              f"K={cfg.ssl.dino.head.n_prototypes}, batch {cfg.train.batch_size_per_gpu}, {args.steps} steps "
              f"in {t_train:.0f} s", *(["overrides: " + " ".join(args.override)] if args.override else [])]
    text = report("control", rows, pixels, wall, ln_k, header, targets)
    print(text)
    if not args.no_write:
        write_section(args.section or "control", text)
        curve_figure(rows, pixels, read_metrics(run), ln_k, "control",
                     RESULTS / f"learning_{args.section or 'control'}.png")
    return all(ok for _, ok in targets)


def id_particles(dataset: Path, label: str = "ProteinClass", per_class: int = 150, seed: int = 0):
    """Particles of the training experiments with their ``label``, at most ``per_class`` of each,
    split half and half (by particle) into probe-train and probe-test."""
    import numpy as np

    from cryofm.data.dataset import split_urls
    from cryofm.features.particles import iter_shard
    from cryofm.simulate.background import NAME

    imgs, labels, count = [], [], {}
    for url in split_urls(dataset, "train", exclude=[NAME]):  # background boxes: no protein class
        for img, rec in iter_shard(url):
            y = rec.get(label)
            if y is None or count.get(y, 0) >= per_class:
                continue
            count[y] = count.get(y, 0) + 1
            imgs.append(img)
            labels.append(str(y))
    x, y = np.stack(imgs).astype(np.float32), np.asarray(labels)
    idx = np.random.default_rng(seed).permutation(len(x))
    tr, te = idx[: len(idx) // 2], idx[len(idx) // 2:]
    return (x[tr], y[tr]), (x[te], y[te])


def probe_gains(summary: dict) -> dict[str, float]:
    """Mean over tasks of (model − random init) probe scores (balanced accuracy / R² vs the
    probe-train mean), for the ID and the held-out (OOD) protocols."""
    import numpy as np

    gains: dict[str, list[float]] = {"id": [], "ood": []}
    for task, by_source in summary.items():
        if task == "acquisition_r2" or "model" not in by_source or "random_init" not in by_source:
            continue
        for proto in gains:
            m, r = by_source["model"].get(proto), by_source["random_init"].get(proto)
            if m is not None and r is not None:
                gains[proto].append(float(m) - float(r))
    return {p: float(np.mean(v)) if v else float("nan") for p, v in gains.items()}


def demo(args) -> bool:
    import torch

    from cryofm.cli import compose
    from cryofm.data.pipeline import pixel_stats
    from cryofm.probe.curve import learning_curve, pixel_scores, run_config
    from cryofm.report.runlog import read_metrics

    t0 = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="cryofm_learning_"))
    dataset, run, mics = work / "demo", work / "demo_run", work / "demo_micrographs"
    sim = ["preset=demo", "seed=0", *args.sim]
    if not (dataset / "split.json").is_file():
        from cryofm.simulate.commands import simulate

        simulate(compose("simulate", [*sim, f"out={dataset}"]))
    overrides = [f"train.threads={args.threads}", *args.override]
    t_train = train_run(run, dataset, "demo", args.steps, overrides)
    mean, std = pixel_stats(dataset)
    probe_train, probe_test = id_particles(dataset)
    rows = learning_curve(run, probe_train, probe_test, mean, std)
    pixels = pixel_scores(probe_train, probe_test)
    t_probe = time.perf_counter()
    from cryofm.probe.run import run_probe

    probe_cfg = compose("probe", [f"checkpoint={run}", f"data={dataset}", f"out={work / 'demo_probe'}",
                                  f"cache_dir={work / 'cache'}", "progress=false", "erasure=[]"])
    gains = probe_gains(run_probe(probe_cfg)["summary"])
    t_pick = time.perf_counter()
    from cryofm.picking.run import run_pick
    from cryofm.simulate.commands import simulate

    if not (mics / "ground_truth.json").is_file():
        simulate(compose("simulate", [*sim, "mode=micrographs", f"out={mics}"]))
    import json

    gt = json.loads((mics / "ground_truth.json").read_text())
    diam = sorted(m["diameter_px"] for m in gt["micrographs"])[len(gt["micrographs"]) // 2]
    from omegaconf import OmegaConf

    demo_pick = list(OmegaConf.load(ROOT / "configs" / "demo.yaml").pick.overrides or [])  # as the demo picks
    pick = run_pick(compose("pick", [f"micrographs={mics / 'micrographs'}", f"diameter={diam}",
                                     "picker=features", f"checkpoint={run}", f"out={work / 'demo_pick'}",
                                     f"ground_truth={mics / 'picks' / 'star'}", "progress=false",
                                     *demo_pick]))
    f1 = {p: pick["pickers"][p]["operating"]["pooled"]["f1"] for p in ("features", "dog")}
    wall = time.perf_counter() - t0
    cfg = run_config(run)
    ln_k = math.log(int(cfg.ssl.dino.head.n_prototypes))
    dino = rows[-1].get("dino_loss_over_lnK", math.nan)
    targets = [(f"DINO loss <= 0.9 ln K at the end ({dino:.3f})", dino <= 0.9),
               (f"mean ID probe gain over random init >= 0.05 ({gains['id']:+.3f})", gains["id"] >= 0.05),
               (f"mean held-out probe gain over random init >= 0.02 ({gains['ood']:+.3f})",
                gains["ood"] >= 0.02),
               (f"features picker F1 >= DoG's at their own thresholds ({f1['features']:.3f} vs "
                f"{f1['dog']:.3f})", f1["features"] >= f1["dog"]),
               (f"within 15 minutes ({wall:.0f} s)", wall <= 900)]
    header = [f"machine: {platform.machine()} torch {torch.__version__}, train.threads={args.threads}",
              f"data: cryofm simulate {' '.join(sim)} (curve probe: ProteinClass on training-experiment "
              f"particles, {len(probe_train[1])} / {len(probe_test[1])})",
              f"recipe: experiment=demo ({cfg.model.name}), K={cfg.ssl.dino.head.n_prototypes}, batch "
              f"{cfg.train.batch_size_per_gpu}, {args.steps} steps in {t_train:.0f} s; probes "
              f"{t_pick - t_probe:.0f} s, picking {time.perf_counter() - t_pick:.0f} s "
              f"({' '.join(demo_pick) or 'pick defaults'}, as configs/demo.yaml)",
              *(["overrides: " + " ".join(args.override)] if args.override else [])]
    text = report("demo", rows, pixels, wall, ln_k, header, targets)
    print(text)
    if not args.no_write:
        write_section(args.section or "demo", text)
        name = args.section or "demo"
        curve_figure(rows, pixels, read_metrics(run), ln_k, "demo", RESULTS / f"learning_{name}.png")
    return all(ok for _, ok in targets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("control", "demo", "both"), default="control")
    ap.add_argument("--steps", type=int, default=None, help="training steps (control 2000, demo 1500)")
    ap.add_argument("--sim", action="append", default=[], help="extra cryofm simulate key=value (demo)")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--per-class", type=int, default=256, help="control: training particles per shape")
    ap.add_argument("--probe-per-class", type=int, default=64, help="control: probe particles per shape")
    ap.add_argument("--threads", default="auto", help="train.threads (auto: cryofm/utils/threads.py)")
    ap.add_argument("--work", default=None, help="folder for the dataset and run (default: a temp dir)")
    ap.add_argument("--section", default=None, help="results section name (default: control)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("override", nargs="*", help="extra train.py key=value overrides")
    args = ap.parse_args()
    ok = True
    for part, steps in (("control", 2000), ("demo", 1500)):
        if args.part in (part, "both"):
            ns = argparse.Namespace(**{**vars(args), "steps": args.steps or steps})
            ok = (control(ns) if part == "control" else demo(ns)) and ok
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
