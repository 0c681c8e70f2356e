"""Scoring a picking run against expert picks: ``metrics.json`` and the HTML / Markdown report.

For every picker computed (the chosen one and the DoG baseline): pooled and per-micrograph
precision / recall / F1 at the picker's **own** threshold (labelled ``operating``), the pooled PR
curve over a shared score threshold with its AP and **best** F1 (labelled ``best``, an oracle
threshold, reported for comparison only; the sweep includes the picker's own thresholds, so it is
never below the own-threshold F1), and CryoSegNet's pixel precision / recall / Dice of picks
drawn as disks against the expert mask (or expert disks when the truth is coordinates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cryofm.io.micrograph import read_micrograph
from cryofm.picking.figures import grid_to_image, overlay_figure, pr_figure
from cryofm.picking.metrics import disk_mask, mask_metrics, pr_curve, score_micrographs
from cryofm.picking.truth import Truth
from cryofm.utils import atomic


def _pixel_metrics(names: list[str], results: dict, truths: dict[str, Truth], picker: str,
                   d: float) -> dict[str, Any]:
    per, inter, npred, ntruth = {}, 0, 0, 0
    for n in names:
        shape = tuple(int(v) for v in results[n]["shape"])
        t = truths[n]
        gt = t.mask if t.mask is not None and t.mask.shape == shape else disk_mask(t.xy, shape, d)
        m = mask_metrics(disk_mask(results[n][f"{picker}_xy"], shape, d), gt)
        per[n] = {k: m[k] for k in ("precision", "recall", "dice")}
        inter, npred, ntruth = inter + m["intersection"], npred + m["pred_pixels"], ntruth + m["truth_pixels"]
    pooled = {"precision": inter / npred if npred else 0.0, "recall": inter / ntruth if ntruth else 0.0,
              "dice": 2 * inter / (npred + ntruth) if npred + ntruth else 0.0}
    return {"pooled": pooled, "per_micrograph": per}


def score_picker(names: list[str], results: dict, truths: dict[str, Truth], picker: str, d: float,
                 radius: float) -> tuple[dict[str, Any], dict]:
    """Metrics of one picker (JSON-ready) and its PR curve (arrays, for the figure)."""
    picks = [results[n][f"{picker}_xy"] for n in names]
    gts = [truths[n].xy for n in names]
    op = score_micrographs(picks, gts, radius, names)
    own = [float(results[n][f"{picker}_threshold"]) for n in names]
    curve = pr_curve([results[n][f"{picker}_cand_xy"] for n in names],
                     [results[n][f"{picker}_cand_scores"] for n in names], gts, radius, extra_thresholds=own)
    best_note = ("best F1 over one score threshold shared by all micrographs, the picker's own among them "
                 "(chosen with the ground truth: an upper bound)")
    if op["pooled"]["f1"] > curve["best"]["f1"]:  # per-micrograph own thresholds beat every shared one
        p = op["pooled"]
        curve["best"] = {"f1": p["f1"], "precision": p["precision"], "recall": p["recall"], "threshold": None}
        best_note = ("the picker's own per-micrograph thresholds: better than any one shared threshold "
                     "(the oracle sweep includes them, so best F1 >= own-threshold F1)")
    seconds = float(sum(float(results[n][f"{picker}_seconds"]) for n in names))
    return {
        "operating": {**op, "thresholds": {n: float(results[n][f"{picker}_threshold"]) for n in names},
                      "note": "the threshold the picker chose by itself (Otsu on its own candidate scores)"},
        "best": {**curve["best"], "note": best_note},
        "ap": curve["ap"],
        "pixel": _pixel_metrics(names, results, truths, picker, d),
        "seconds_per_micrograph": seconds / max(len(names), 1),
    }, curve


def score_and_report(cfg: DictConfig, mics: list[Path], results: dict, truths: dict[str, Truth], d: float,
                     out: Path, picker: str, meta: dict | None) -> dict:
    """Write ``out/metrics.json`` and ``out/report.{html,md}``; returns the metrics."""
    names = [m.stem for m in mics if m.stem in truths]
    radius = float(cfg.scoring.radius) * d
    pickers = [picker] + [p for p in ("features", "dog") if p != picker and f"{p}_xy" in results[names[0]]]
    scored, curves = {}, {}
    for p in pickers:
        scored[p], curves[p] = score_picker(names, results, truths, p, d, radius)
    metrics = {
        "picker": picker, "diameter_px": d, "match_radius_px": radius, "n_micrographs": len(names),
        "unscored_micrographs": [m.stem for m in mics if m.stem not in truths],
        "pooled": scored[picker]["operating"]["pooled"],
        "per_micrograph": scored[picker]["operating"]["per_micrograph"],
        "pickers": scored,
        "checkpoint": str(cfg.get("checkpoint")), "model": (meta or {}).get("model_name"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    atomic.write_json(out / "metrics.json", metrics)
    if cfg.get("report", True):
        _report(mics, names, results, truths, d, radius, out, scored, curves, cfg)
    return metrics


def report_unscored(cfg: DictConfig, mics: list[Path], results: dict, d: float, out: Path,
                    picker: str) -> None:
    """Without ground truth: ``out/report.{html,md}`` with the picks per micrograph and overlays."""
    from cryofm.report import Report

    first = results[mics[0].stem] if mics else {}
    pickers = [picker] + [p for p in ("features", "dog") if p != picker and f"{p}_xy" in first]
    rep = Report("Particle picking (no ground truth)",
                 f"{len(mics)} micrographs, particle diameter {d:g} px, checkpoint {cfg.get('checkpoint')}")
    rep.table([{"micrograph": m.stem, **{f"{p} picks": len(results[m.stem][f"{p}_xy"]) for p in pickers}}
               for m in mics], caption="picks at each picker's own threshold (exported: " + picker + ")")
    rep.heading("Overlays")
    for m in mics[: int(cfg.get("max_overlays", 12))]:
        res = results[m.stem]
        img = read_micrograph(m)
        rgb = None
        if "rgb" in res:
            x0, y0, step = (float(v) for v in res["grid"])
            rgb = grid_to_image(res["rgb"], x0, y0, step, img.shape, order=0)
        fig = overlay_figure(img, {p: res[f"{p}_xy"] for p in pickers}, None, d, 0.0, rgb)
        rep.figure(fig, f"overlay_{m.stem}", caption=f"{m.stem}: picks (blue) at the picker's own threshold")
    rep.write(out)


def _report(mics, names, results, truths, d, radius, out, scored, curves, cfg) -> None:
    from cryofm.report import Report

    rep = Report("Particle picking", f"{len(names)} micrographs, particle diameter {d:g} px, "
                                     f"match radius {radius:g} px, checkpoint {cfg.get('checkpoint')}")
    rows = []
    for p, s in scored.items():
        op, b = s["operating"]["pooled"], s["best"]
        rows.append({"picker": p, "picks": op["n_picks"], "expert": op["n_truth"],
                     "precision (own thr.)": op["precision"], "recall (own thr.)": op["recall"],
                     "F1 (own thr.)": op["f1"], "best F1 (oracle thr.)": b["f1"], "AP": s["ap"],
                     "pixel Dice": s["pixel"]["pooled"]["dice"],
                     "s / micrograph": s["seconds_per_micrograph"]})
    rep.heading("Pooled metrics: features vs. DoG baseline")
    rep.table(rows, caption="one-to-one (Hungarian) matching within 0.5 × diameter; 'own thr.' = "
                            "the threshold each picker chose by itself, 'best' = best shared threshold "
                            "in hindsight")
    rep.figure(pr_figure(curves, {p: s["operating"]["pooled"] for p, s in scored.items()}), "pr_curves",
               caption="pooled precision-recall over a shared score threshold")
    per = []
    for n in names:
        row = {"micrograph": n}
        for p, s in scored.items():
            m = s["operating"]["per_micrograph"][n]
            row.update({f"{p} P": m["precision"], f"{p} R": m["recall"], f"{p} F1": m["f1"]})
        per.append(row)
    rep.heading("Per micrograph")
    rep.table(per, caption="precision / recall / F1 at each picker's own threshold")
    rep.heading("Overlays")
    by_stem = {m.stem: m for m in mics}
    for n in names[: int(cfg.get("max_overlays", 12))]:
        img = read_micrograph(by_stem[n])
        res = results[n]
        rgb = None
        if "rgb" in res:
            x0, y0, step = (float(v) for v in res["grid"])
            rgb = grid_to_image(res["rgb"], x0, y0, step, img.shape, order=0)
        fig = overlay_figure(img, {p: res[f"{p}_xy"] for p in scored}, truths[n].xy, d, radius, rgb)
        rep.figure(fig, f"overlay_{n}", caption=n)  # closes the figure
    rep.write(out)
