"""The probe report: a table and a bar chart per task, and the erasure check, from ``metrics.json``.

Classification tasks are scored by balanced accuracy (%; chance = 100 / number of probe-train
classes), regression tasks by R² against the probe-train mean (chance = 0, see
:func:`cryofm.probe.linear.regression_metrics`) and MAE in the field's unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cryofm.probe.tasks import Task  # noqa: E402
from cryofm.report import Report, versions  # noqa: E402

SOURCE_LABEL = {
    "model": "checkpoint",
    "random_init": "random-init (same architecture)",
    "pixels": "raw pixels (downsampled)",
}
ERASURE_LABEL = {"none": "", "regress_out": " regress-out", "leace": " LEACE"}
COLUMNS = [
    ("id", "none"),
    ("ood", "none"),
    ("id", "regress_out"),
    ("ood", "regress_out"),
    ("id", "leace"),
    ("ood", "leace"),
]


def _col_name(proto: str, erasure: str) -> str:
    return f"{proto.upper()}{ERASURE_LABEL[erasure]}"


def _score(row: dict[str, Any], classify: bool) -> float | None:
    v = row.get("balanced_accuracy") if classify else row.get("r2_vs_train_mean")
    if v is None:
        return None
    return 100.0 * v if classify else v


def _chance(rows: Sequence[dict[str, Any]]) -> float | None:
    return next((r["chance_balanced_accuracy"] for r in rows if r.get("chance_balanced_accuracy")), None)


def task_table(rows: Sequence[dict[str, Any]], task: Task) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows = feature sources, columns = protocol × erasure; cells are the primary score (as text)."""
    classify = task.is_classification
    have = [(p, e) for p, e in COLUMNS if any(r["protocol"] == p and r["erasure"] == e for r in rows)]
    table = []
    for src in dict.fromkeys(r["source"] for r in rows):
        line: dict[str, Any] = {"features": SOURCE_LABEL.get(src, src)}
        for p, e in have:
            hit = [r for r in rows if r["source"] == src and r["protocol"] == p and r["erasure"] == e]
            if not hit or hit[0].get("n", 0) == 0:
                line[_col_name(p, e)] = "–"
                continue
            r = hit[0]
            s = _score(r, classify)
            if classify:
                line[_col_name(p, e)] = f"{s:.1f}" if s is not None else "–"
            else:
                mae = r.get("mae")
                line[_col_name(p, e)] = f"{s:.3f} / {mae:.4g}" if s is not None and mae is not None else "–"
        table.append(line)
    if classify:
        chance = _chance(rows)
        table.append(
            {
                "features": "chance",
                **{_col_name(p, e): (f"{100 * chance:.1f}" if chance else "–") for p, e in have},
            }
        )
    return table, [_col_name(p, e) for p, e in have]


def task_figure(rows: Sequence[dict[str, Any]], task: Task):
    """Grouped bars: one group per feature source, one bar per protocol × erasure."""
    classify = task.is_classification
    sources = list(dict.fromkeys(r["source"] for r in rows))
    have = [(p, e) for p, e in COLUMNS if any(r["protocol"] == p and r["erasure"] == e for r in rows)]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(sources), 3.0))
    width = 0.8 / max(1, len(have))
    colors = plt.get_cmap("tab20")  # one hue per erasure: light = ID, dark = OOD
    hue = {"none": 0, "regress_out": 2, "leace": 4}
    for j, (p, e) in enumerate(have):
        vals = []
        for src in sources:
            hit = [r for r in rows if r["source"] == src and r["protocol"] == p and r["erasure"] == e]
            s = _score(hit[0], classify) if hit and hit[0].get("n", 0) else None
            vals.append(np.nan if s is None else s)
        ax.bar(
            np.arange(len(sources)) + (j - (len(have) - 1) / 2) * width,
            vals,
            width,
            label=_col_name(p, e),
            color=colors(hue[e] + (1 if p == "id" else 0)),
        )
    if classify:
        chance = _chance(rows)
        if chance:
            ax.axhline(100 * chance, color="k", ls="--", lw=0.8, label="chance")
        ax.set_ylabel("balanced accuracy (%)")
        ax.set_ylim(0, 100)
    else:
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("R² vs train mean")
    ax.set_xticks(np.arange(len(sources)))
    ax.set_xticklabels([s.replace("_", "-") for s in sources], fontsize=8)
    ax.set_title(task.name, fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


ERASE_COL = {"none": "features", "regress_out": "after regress-out", "leace": "after LEACE"}


def erasure_table(pred: Sequence[dict[str, Any]], source: str = "model") -> list[dict[str, Any]]:
    """R² (vs the probe-train mean) of each acquisition parameter predicted from ``source``'s
    features, before and after removal, on ID-test and on the held-out experiments."""
    params = list(dict.fromkeys(r["parameter"] for r in pred if r["source"] == source))
    out = []
    for prm in params:
        line: dict[str, Any] = {"parameter": prm}
        for proto in ("id", "ood"):
            for e, col in ERASE_COL.items():
                hit = [
                    r
                    for r in pred
                    if r["source"] == source
                    and r["parameter"] == prm
                    and r["erasure"] == e
                    and r["protocol"] == proto
                ]
                if hit:
                    line[f"{proto.upper()} {col}"] = hit[0]["r2"]
        out.append(line)
    return out


def overview_table(results: Sequence[dict[str, Any]], tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """One row per task: the checkpoint's ID / OOD / OOD-after-removal scores beside the baselines'
    OOD scores (balanced accuracy % or R² vs the probe-train mean)."""

    def cell(task: Task, src: str, proto: str, erasure: str) -> str:
        hit = [
            r
            for r in results
            if r["task"] == task.name
            and r["source"] == src
            and r["protocol"] == proto
            and r["erasure"] == erasure
            and r.get("n")
        ]
        v = _score(hit[0], task.is_classification) if hit else None
        return "–" if v is None else (f"{v:.1f}" if task.is_classification else f"{v:.3f}")

    rows = []
    for t in tasks:
        if not any(r["task"] == t.name for r in results):
            continue
        rows.append(
            {
                "task": t.name,
                "score": "bal. acc. %" if t.is_classification else "R²",
                "ID": cell(t, "model", "id", "none"),
                "OOD": cell(t, "model", "ood", "none"),
                "OOD regress-out": cell(t, "model", "ood", "regress_out"),
                "OOD LEACE": cell(t, "model", "ood", "leace"),
                "random-init OOD": cell(t, "random_init", "ood", "none"),
                "pixels OOD": cell(t, "pixels", "ood", "none"),
            }
        )
    return rows


def erasure_figure(table: Sequence[dict[str, Any]]):
    """One panel per protocol: bars per parameter, before / after each removal."""
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 0.8 * len(table) + 3.0), 3.0), sharey=True)
    lo = -0.2
    for ax, proto in zip(axes, ("ID", "OOD"), strict=True):
        cols = [f"{proto} {c}" for c in ERASE_COL.values() if any(f"{proto} {c}" in r for r in table)]
        width = 0.8 / max(1, len(cols))
        for j, c in enumerate(cols):
            vals = np.array([np.nan if r.get(c) is None else r[c] for r in table], float)
            lo = min(lo, float(np.nanmin(vals, initial=0.0)))
            ax.bar(
                np.arange(len(table)) + (j - (len(cols) - 1) / 2) * width,
                vals,
                width,
                label=c.split(" ", 1)[1],
            )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(table)))
        ax.set_xticklabels([r["parameter"] for r in table], rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{proto} test", fontsize=9)
    axes[0].set_ylabel("R² vs train mean (chance 0)")
    axes[0].set_ylim(max(lo, -1.0) - 0.05, 1.0)
    axes[1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("acquisition parameters predicted from the features", fontsize=10)
    fig.tight_layout()
    return fig


def build_report(metrics: dict[str, Any], tasks: Sequence[Task]) -> Report:
    """The probe report from the metrics dict written by :func:`cryofm.probe.run.run_probe`."""
    rep = Report(
        "Linear probes on frozen features", f"checkpoint {metrics['checkpoint']} · data {metrics['data']}"
    )
    rep.text(
        "ID: probe trained and tested on different particles of the training experiments. "
        "OOD: trained on the training experiments, tested on held-out experiments. "
        "Regularisation is chosen on a validation set that is never the reported one. "
        "Regress-out / LEACE: acquisition parameters removed from the features (fitted on "
        "probe-train only). Classification cells: balanced accuracy (%); regression cells: R² / MAE "
        "(field unit), where R² compares with predicting the probe-train mean (0 = no better "
        "than that constant, the chance level of both protocols; standard R² is in metrics.json)."
    )
    sets = metrics["sets"]
    rep.kv(
        {
            **{f"particles {k}": v for k, v in sets.items()},
            **{f"experiments {k}": len(v) for k, v in metrics["experiments"].items()},
            **{f"feature dim {k}": v for k, v in metrics["feature_dims"].items()},
            "OOD strength chosen on": metrics.get("ood_validation", ""),
        },
        caption="probe sets",
    )
    if not sets.get("test_ood"):
        rep.text("No held-out experiments in split.json: OOD cells are empty.")
    overview = overview_table(metrics["results"], tasks)
    if overview:
        rep.heading("Overview")
        rep.table(overview, caption="the checkpoint against the baselines (details per task below)")
    figs = []
    for task in tasks:
        rows = [r for r in metrics["results"] if r["task"] == task.name]
        if not rows:
            continue
        rep.heading(f"{task.name} ({task.kind}{', ' + task.unit if task.unit else ''})", 3)
        table, _ = task_table(rows, task)
        rep.table(
            table,
            caption="balanced accuracy (%)"
            if task.is_classification
            else f"R² vs the probe-train mean / MAE ({task.unit})",
        )
        ood = [r for r in rows if (r["source"], r["protocol"], r["erasure"]) == ("model", "ood", "none")]
        if task.is_classification and ood and ood[0].get("in_train_classes") is not None:
            rep.text(
                f"{100 * ood[0]['in_train_classes']:.0f}% of the held-out particles belong to a class "
                "seen in probe-train (no probe can name a class it never saw)."
            )
        figs.append((task_figure(rows, task), f"probe_{task.name}", task.name))
    if figs:
        rep.heading("Bar charts")
        rep.figures(figs)
    pred = metrics.get("acquisition_predictability", [])
    if pred:
        rep.heading("Does the erasure work?")
        rep.text(
            "Ridge R² (vs the probe-train mean) of each acquisition parameter predicted from the "
            "checkpoint's features, on other particles of the training experiments (ID) and on "
            "held-out experiments (OOD); after removal it should be near 0 (chance) or below. "
            "Parameters used: " + ", ".join(metrics["erasure"].get("model", {}).get("parameters", []))
        )
        et = erasure_table(pred)
        rep.table(et, caption="R² vs the probe-train mean", floatfmt=".3f")
        if et:
            rep.figure(erasure_figure(et), "erasure_check", "acquisition-parameter predictability")
    if metrics.get("skipped"):
        rep.heading("Skipped tasks")
        rep.table(metrics["skipped"])
    rep.heading("Environment")
    rep.kv({"seconds": metrics.get("seconds"), **versions()})
    return rep
