"""The demo's one report: every stage's results read back from its output folder.

Nothing here computes a result: the tables and figures come from the files the stages wrote
(``dataset/simulation.json``, ``run/metrics.jsonl``, ``probe/metrics.json``, ``pca/*.png``,
``pick*/metrics.json`` ...), so the report shows exactly what that run produced. Each section says
which detailed report it summarises.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cryofm.report import Report
from cryofm.report.versions import versions


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _stage_table(rep: Report, records: list[dict]) -> None:
    rows = [{"stage": r["name"], "what": r["title"], "status": r["status"],
             "seconds": None if r.get("seconds") is None else round(float(r["seconds"]), 1)} for r in records]
    total = sum(float(r["seconds"]) for r in records if r.get("seconds") is not None)
    rows.append({"stage": "total", "what": "", "status": "", "seconds": round(total, 1)})
    rep.table(rows, caption="wall time of each stage when it ran ('reused': finished by an earlier run; "
                            "`python -m cryofm.demo redo=<stage>` runs it again)", floatfmt=".1f")
    rep.code("\n".join(f"$ {r['command']}" for r in records if r.get("command")))


def _dataset(rep: Report, out: Path) -> None:
    sim = _json(out / "dataset" / "simulation.json")
    if sim is None:
        return
    rep.heading("1. Dataset")
    acq = "confounded with" if sim["confound"] else "independent of"
    n_bg = sum(1 for e in sim["experiments"].values() if "acquisition" not in e)
    bg = (" plus an experiment of background boxes (windows of simulated micrographs away from every "
          "particle: training only, never probed)") if n_bg else ""
    rep.text(f"{len(sim['experiments']) - n_bg} simulated experiments of {sim['image_size']} px particles "
             f"(preset '{sim['preset']}'){bg}; acquisition {acq} the experiment. The split is by "
             "experiment: no held-out experiment contributes a particle "
             "to training.")
    rows = []
    for name, e in sim["experiments"].items():
        if "acquisition" not in e:  # background boxes (cryofm.simulate.background): no density
            rows.append({"experiment": name, "split": sim["split"].get(name, ""), "particles": e["n"],
                         "density": f"windows of {e.get('micrographs', '?')} micrographs"})
            continue
        f, a = e["facts"], e["acquisition"]
        rows.append({"experiment": name, "split": sim["split"].get(name, ""), "particles": e["n"],
                     "density": e["density"]["kind"], "symmetry": f.get("Symmetry"),
                     "MW (kDa)": f.get("MolecularWeight"), "max diam. (Å)": f.get("MaxDiameter"),
                     "pixel (Å)": a["pixel_size"], "kV": a["voltage"], "dose (e/Å²)": a["dose"],
                     "defocus (Å)": a["defocus_centre"]})
    rows.sort(key=lambda r: ({"train": 0, "val": 1, "heldout": 2}.get(r["split"], 3), r["experiment"]))
    rep.table(rows, caption="experiments (MW: stated by the preset where known, else from the atomic model "
                                "or estimated from the density volume; defocus: centre of the range)",
              floatfmt=".4g")
    figs = [(p, stem, cap) for p, stem, cap in (
        (out / "dataset" / "simulation.png", "dataset_simulation", "one projection per experiment"),
        (out / "dataset" / "inspect_montage.png", "dataset_montage",
         "particles as stored in the shards (`cryofm inspect`)")) if p.is_file()]
    rep.figures(figs, photo_px=1000)


def _training(rep: Report, out: Path) -> None:
    from cryofm.report.curves import plot_curves
    from cryofm.report.runlog import read_metrics

    run = out / "run"
    rows = read_metrics(run) if (run / "metrics.jsonl").is_file() else []
    if not rows:
        return
    cfg = OmegaConf.load(run / "config.yaml") if (run / "config.yaml").is_file() else None
    rep.heading("2. Pretraining (DINOv2: DINO + iBOT + KoLeo, Sinkhorn-Knopp, EMA teacher)")
    last, first = rows[-1], rows[0]
    step_times = [r["step_time"] for r in rows[1:] if "step_time" in r]
    sec = sum(step_times) / max(len(step_times), 1)
    facts: dict[str, Any] = {"steps": last["step"] + 1}
    if cfg is not None:
        world = int((_json(run / "metrics.json") or {}).get("world_size", 1))
        batch = int(cfg.train.batch_size_per_gpu) * world
        facts.update({
            "backbone": f"{cfg.model.name} {dict(cfg.model.kwargs or {})}",
            "image size (px)": cfg.data.image_size,
            "crops": f"{cfg.augment.global_crops.n} global + {cfg.augment.local_crops.n} local",
            "global batch": batch, "processes": world,
            "prototypes (DINO / iBOT)": f"{cfg.ssl.dino.head.n_prototypes} / "
                                        f"{cfg.ssl.ibot.head.n_prototypes}",
            "throughput (images/s)": round(batch / sec, 1) if sec else None,
        })
    facts.update({"seconds per step": round(sec, 3),
                  "DINO loss first → last": f"{first['dino_loss']:.3f} → {last['dino_loss']:.3f}",
                  "iBOT loss first → last": f"{first['ibot_loss']:.3f} → {last['ibot_loss']:.3f}",
                  "KoLeo first → last": f"{first['koleo_loss']:.3f} → {last['koleo_loss']:.3f}"})
    if cfg is not None:
        k = int(cfg.ssl.dino.head.n_prototypes)
        facts["ln(DINO prototypes)"] = round(math.log(k), 3)
    rep.kv(facts, caption="run (full config: run/config.yaml)")
    rep.text("A DINO loss below ln(prototypes) means the student predicts the teacher's (Sinkhorn-"
             "balanced) assignments better than a uniform guess; a falling KoLeo term means the CLS "
             "features of a batch spread apart.")
    rep.figure(plot_curves(run, run / "curves.png"), "train_curves",
               "losses and schedules against the step (run/metrics.jsonl)")


def _probes(rep: Report, out: Path) -> None:
    from cryofm.probe.report import build_report
    from cryofm.probe.tasks import Task

    metrics = _json(out / "probe" / "metrics.json")
    if metrics is None:
        return
    rep.heading("3. Linear probes of the frozen features")
    sub = build_report(metrics, [Task(**t) for t in metrics["tasks"]])
    keep = {"Overview", "Bar charts", "Does the erasure work?"}
    section, blocks = None, []
    for kind, payload in sub.blocks:
        if kind == "heading":  # per-task (level 3) sections stay in probe/report.html
            section = payload[1]
        if section is None and kind in ("text", "table") or section in keep:
            if kind == "heading":
                payload = (3, payload[1])
            if kind == "table":  # the per-task details are in the probe's own report
                cols, rows, caption, ff = payload
                payload = (cols, rows, caption.replace("below", "in probe/report.html"), ff)
            blocks.append((kind, payload))
    rep.blocks += blocks
    rep.text("Per-task tables: probe/report.html.")


def _pca(rep: Report, out: Path, limit: int = 3) -> None:
    panels = sorted(p for p in (out / "pca").glob("*.png"))
    if not panels:
        return
    rep.heading("4. Micrograph features as PCA images")
    rep.text("Sliding-window CLS features of each simulated micrograph, first three principal components "
             "as RGB (middle) and a 2-cluster k-means of the features (right), next to the micrograph.")
    for p in panels[:limit]:
        rep.figure(p, f"pca_{p.stem}", p.stem, photo_px=1500)


def _picking(rep: Report, out: Path, name: str, title: str, ref: str) -> None:
    m = _json(out / name / "metrics.json")
    if m is None:
        return
    rep.heading(title, 3)
    rows = []
    for picker, s in m["pickers"].items():
        op = s["operating"]["pooled"]
        rows.append({"picker": "frozen features (PC1)" if picker == "features" else "DoG baseline",
                     "picks": op["n_picks"], "reference": op["n_truth"], "precision": op["precision"],
                     "recall": op["recall"], "F1": op["f1"], "best F1": s["best"]["f1"], "AP": s["ap"],
                     "s / micrograph": s["seconds_per_micrograph"]})
    rep.table(rows, caption=f"{m['n_micrographs']} micrographs (reference: {ref}), diameter "
                            f"{m['diameter_px']:g} px, a pick "
                            f"matches within {m['match_radius_px']:g} px (one to one); precision / recall / "
                            "F1 at the picker's own threshold, best F1 over a shared threshold in hindsight",
              floatfmt=".3f")
    figs = [(out / name / "figures" / "pr_curves.png", f"{name}_pr", "precision-recall (pooled)")]
    overlays = sorted((out / name / "figures").glob("overlay_*.png"))[:1]
    figs += [(p, f"{name}_{p.stem}", p.stem.removeprefix("overlay_") + ": picks vs reference circles")
             for p in overlays]
    rep.figures([f for f in figs if Path(f[0]).is_file()], photo_px=1100)
    rep.text(f"All micrographs: {name}/report.html.")


def _probe_wins(summary: dict[str, Any], proto: str, margin: float = 0.02) -> dict[str, list[str]]:
    """Tasks where the trained model beats random init / raw pixels by more than ``margin`` (and where
    it does not), at protocol ``proto`` (``id`` or ``ood``), from ``probe/metrics.json``'s summary."""
    out: dict[str, list[str]] = {"beats random init": [], "not above random init": [], "beats pixels": []}
    for task, by_source in summary.items():
        model = (by_source.get("model") or {}).get(proto) if isinstance(by_source, dict) else None
        if task == "acquisition_r2" or model is None:
            continue
        rand = (by_source.get("random_init") or {}).get(proto)
        pix = (by_source.get("pixels") or {}).get(proto)
        if rand is not None:
            out["beats random init" if model > rand + margin else "not above random init"].append(
                f"{task} ({model:.2f} vs {rand:.2f})")
        if pix is not None and model > pix + margin:
            out["beats pixels"].append(f"{task} ({model:.2f} vs {pix:.2f})")
    return out


def _verdict(rep: Report, out: Path) -> None:
    """Where the trained model wins and where not, in words, from the stages' metrics."""
    lines = []
    rows = []
    run = out / "run"
    if (run / "metrics.jsonl").is_file() and (run / "config.yaml").is_file():
        from cryofm.report.runlog import read_metrics

        rows = read_metrics(run)
    if rows:
        k = int(OmegaConf.load(run / "config.yaml").ssl.dino.head.n_prototypes)
        tail = rows[-max(1, len(rows) // 10):]
        dino = sum(r["dino_loss"] for r in tail) / len(tail) / math.log(k)
        lines.append(f"Pretraining: the DINO loss ends at {dino:.2f} × ln K "
                     + ("(below a uniform guess: the objective learned)." if dino < 0.97 else
                        "(at a uniform guess: the cross-view objective did not learn in this run)."))
    probe = _json(out / "probe" / "metrics.json")
    if probe is not None:
        for proto, label in (("id", "in-distribution"), ("ood", "held-out experiments")):
            w = _probe_wins(probe["summary"], proto)
            lines.append(f"Probes, {label}: better than random init (by > 0.02) on "
                         f"{', '.join(w['beats random init']) or 'no task'}; not on "
                         f"{', '.join(w['not above random init']) or 'any other'}; better than raw pixels on "
                         f"{', '.join(w['beats pixels']) or 'no task'}.")
    for name, what in (("pick", "simulated micrographs"), ("real_pick", "real micrographs")):
        m = _json(out / name / "metrics.json")
        if m is None or "dog" not in m["pickers"]:
            continue
        f, d = (m["pickers"][p]["operating"]["pooled"]["f1"] for p in ("features", "dog"))
        lines.append(f"Picking on {what}: features F1 {f:.2f} vs DoG {d:.2f} at each picker's own threshold "
                     f"({'features ahead' if f > d else 'DoG ahead'}).")
    if lines:
        rep.heading("What this run shows")
        rep.text(" ".join(f"{i + 1}. {t}" for i, t in enumerate(lines)))


def write_report(cfg: DictConfig, out: Path, records: list[dict]) -> tuple[Path, Path]:
    """Write ``<out>/report.html`` and ``<out>/report.md`` from the stages' outputs."""
    out = Path(out)
    rep = Report("cryofm demo: a DINOv2 foundation model for cryo-EM, end to end",
                 f"output folder {out} · every number and figure below was produced by this run")
    _verdict(rep, out)
    rep.heading("Stages")
    _stage_table(rep, records)
    _dataset(rep, out)
    _training(rep, out)
    _probes(rep, out)
    _pca(rep, out)
    if (out / "pick" / "metrics.json").is_file() or (out / "real_pick" / "metrics.json").is_file():
        rep.heading("5. Unsupervised particle picking")
        rep.text("PC1 of the frozen window features, thresholded by Otsu and non-maximum suppressed, against "
                 "a difference-of-Gaussians blob picker on the same micrographs.")
        _picking(rep, out, "pick", "Simulated micrographs (known particle centres)", "the planted particles")
        _picking(rep, out, "real_pick", "Real micrographs with expert picks", "the expert picks")
    rep.heading("Configuration and versions")
    rep.code(OmegaConf.to_yaml(cfg))
    rep.kv(versions())
    return rep.write(out)
