"""Training curves of a run as a PNG: ``<run>/curves.png`` from ``<run>/metrics.jsonl``.

Panels: losses (total, DINO, iBOT, KoLeo), learning rates (backbone and last layer), weight decay,
teacher EMA momentum and teacher temperature, each against the step, and the DINO loss, the entropy
of the teacher's targets and the iBOT cross-entropy per masked image against ln(prototypes), the
value of a uniform guess (from the run's ``config.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cryofm.report.runlog import read_metrics  # noqa: E402
from cryofm.utils import atomic  # noqa: E402

PANELS = (
    ("loss", ("loss", "dino_loss", "ibot_loss", "koleo_loss")),
    ("learning rate", ("lr", "last_layer_lr")),
    ("weight decay", ("wd",)),
    ("teacher momentum", ("momentum",)),
    ("teacher temperature", ("teacher_temp",)),
)


def plot_curves(run_dir: str | Path, out: str | Path | None = None):
    """Draw the curves of ``run_dir``; write ``out`` (default ``<run>/curves.png``); return the figure."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    fig, grid = plt.subplots(2, 3, figsize=(12, 6.4), constrained_layout=True)
    axes = grid.reshape(-1)
    steps = [r["step"] for r in rows]
    for ax, (title, keys) in zip(axes, PANELS, strict=False):
        for k in keys:
            if rows and k in rows[0]:
                ax.plot(steps, [r[k] for r in rows], label=k, lw=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    ax = axes[len(PANELS)]
    if rows and "dino_loss" in rows[0]:
        for i, (key, label) in enumerate((("dino_loss", "dino_loss"),
                                          ("dino_target_entropy", "teacher target entropy"),
                                          ("ibot_ce", "ibot CE per masked image"))):
            if key in rows[0]:
                ax.plot(steps, [r[key] for r in rows], lw=1, color=f"C{i + 1}", label=label)
        cfg_file = run_dir / "config.yaml"
        if cfg_file.is_file():
            import math

            import yaml

            k = (yaml.safe_load(cfg_file.read_text()) or {}).get("ssl", {}).get("dino", {}).get("head", {})
            if k.get("n_prototypes"):
                ax.axhline(math.log(k["n_prototypes"]), ls="--", color="k", lw=0.8,
                           label=f"ln K (K = {k['n_prototypes']}): uniform guess")
        ax.legend(fontsize=7)
    ax.set_title("DINO / iBOT against a uniform guess")
    ax.set_xlabel("step")
    with atomic.atomic_path(Path(out) if out else run_dir / "curves.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return fig
