"""The demo's stages: the commands of the README, run in order on built-in data, then one report."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cryofm.cli import compose
from cryofm.demo.stages import Stage, run_stages

ROOT = Path(__file__).resolve().parents[2]


def _bin(name: str) -> str:
    """A console script installed beside this interpreter (``cryofm``, ``torchrun``)."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def _real_micrographs(cfg: DictConfig) -> tuple[str, str] | None:
    """(micrograph glob, ground-truth glob) of the real set, or None when there is none."""
    if cfg.real.micrographs:
        return str(cfg.real.micrographs), str(cfg.real.ground_truth or "")
    shared = Path(cfg.real.shared_data or ROOT.parent / "shared" / "data") / "cryoppp_10028"
    if not shared.is_dir():
        return None
    return str(shared / "*" / "images" / "*.png"), str(shared / "*" / "labels" / "*.png")


def build_stages(cfg: DictConfig) -> list[Stage]:
    """The demo as a list of commands; paths under ``cfg.out``."""
    from cryofm.simulate.micrograph import median_diameter  # torch: only once the demo runs
    out = Path(cfg.out).resolve()
    py, cryofm = sys.executable, _bin("cryofm")
    dataset, run, mics = out / "dataset", out / "run", out / "micrographs"
    sim = [f"preset={cfg.simulate.preset}", f"confound={str(cfg.simulate.confound).lower()}",
           f"seed={cfg.seed}", *cfg.simulate.overrides]
    train = [py, str(ROOT / "train.py"), f"experiment={cfg.train.experiment}", f"data={dataset}",
             f"out={run}", f"seed={cfg.seed}", *cfg.train.overrides]
    if cfg.train.nproc > 1:
        train = [_bin("torchrun"), "--standalone", f"--nproc_per_node={cfg.train.nproc}", *train[1:]]
    cache = out / "cache"
    real = _real_micrographs(cfg)

    def pick(name: str, micrographs: str, gt: str, diameter: float, extra: list[str]):
        # picker=features also runs and scores the DoG baseline on the same micrographs
        args = [py, str(ROOT / "eval" / "pick.py"), f"micrographs={micrographs}", f"diameter={diameter}",
                "picker=features", f"checkpoint={run}", f"out={out / name}", *extra]
        if gt:
            args.append(f"ground_truth={gt}")
        return args

    stages = [
        Stage("simulate", "simulate a multi-experiment dataset into shards + experiment-level split",
              lambda: [cryofm, "simulate", f"out={dataset}", *sim], outputs=[dataset]),
        Stage("inspect", "inspect the dataset (counts, annotation coverage, montage)",
              lambda: [cryofm, "inspect", f"dataset={dataset}"]),
        Stage("train", "pretrain a ViT with the DINOv2 objective", lambda: train, outputs=[run]),
        Stage("probe", "linear probes: ID / OOD / acquisition regressed out, with baselines",
              lambda: [py, str(ROOT / "eval" / "probe.py"), f"checkpoint={run}", f"data={dataset}",
                       f"out={out / 'probe'}", f"cache_dir={cache}", *cfg.probe.overrides],
              outputs=[out / "probe"]),
        Stage("micrographs", "simulate micrographs with known particle positions",
              lambda: [cryofm, "simulate", "mode=micrographs", f"out={mics}", *sim], outputs=[mics]),
        Stage("pca", "sliding-window features of the micrographs as PCA images",
              lambda: [py, str(ROOT / "eval" / "micrograph_pca.py"), f"micrographs={mics / 'micrographs'}",
                       f"diameter={median_diameter(mics)}", f"checkpoint={run}", f"out={out / 'pca'}"],
              outputs=[out / "pca"]),
        Stage("pick", "unsupervised picking (frozen features, and the DoG baseline) on simulated micrographs",
              lambda: pick("pick", str(mics / "micrographs"), str(mics / "picks" / "star"),
                           median_diameter(mics), list(cfg.pick.overrides)), outputs=[out / "pick"]),
    ]
    if real is not None:
        mic_glob, gt_glob = real
        d = cfg.real.diameter
        stages.append(
            Stage("real_pick", f"the same on real micrographs with expert picks ({mic_glob})",
                  lambda: pick("real_pick", mic_glob, gt_glob, d,
                               [f"contrast={cfg.real.contrast}", *cfg.pick.overrides]),
                  outputs=[out / "real_pick"]))
    return stages


def check_options(cfg: DictConfig, stage_names: list[str]) -> list[str]:
    """The ``redo`` list, after checking it names stages (or ``all``) and that the demo's numeric
    options are in range; raises InputError naming the key."""
    from cryofm.errors import InputError

    redo = [cfg.redo] if isinstance(cfg.redo, str) else list(cfg.redo or [])
    unknown = [str(r) for r in redo if str(r) not in (*stage_names, "all")]
    if unknown:
        raise InputError("redo", f"unknown stage(s) {unknown} (stages: {', '.join(stage_names)}, or all)")
    for key in ("real.diameter", "train.nproc"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InputError(key, f"must be a positive number, got {value!r}")
    return [str(r) for r in redo]


def main(argv: list[str]) -> int:
    """Compose ``configs/demo.yaml`` with ``argv`` overrides, run the stages, write the report."""
    from cryofm.demo.report import write_report

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__ + "\nusage: python -m cryofm.demo [out=<dir>] [redo=all|[stage,...]] [key=value ...]")
        return 0
    from cryofm.utils.errors import debug_requested, guarded

    argv, debug = debug_requested(list(argv))
    try:  # bad options: one line and exit 2, before anything is written
        with guarded("python -m cryofm.demo", debug=debug):
            cfg = compose("demo", argv)
            stages = build_stages(cfg)
            redo = check_options(cfg, [st.name for st in stages])
    except SystemExit as exc:
        return int(exc.code or 0)
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "demo_config.yaml")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CRYOFM_CACHE": str(out / "cache")}
    records = run_stages(stages, out, redo=redo, env=env, cwd=ROOT)
    html, md = write_report(cfg, out, records)
    print(f"\ncryofm demo: report -> {html}\n                       {md}")
    return 0
