"""Training curves of a run as a PNG: ``<run>/curves.png`` from ``<run>/metrics.jsonl``.

Panels: losses (total, DINO, iBOT, KoLeo), learning rates (backbone and last layer), weight decay,
teacher EMA momentum and teacher temperature, each against the step.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cryofm.train.runlog import read_metrics  # noqa: E402
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
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2), constrained_layout=True)
    steps = [r["step"] for r in rows]
    for ax, (title, keys) in zip(axes, PANELS, strict=True):
        for k in keys:
            if rows and k in rows[0]:
                ax.plot(steps, [r[k] for r in rows], label=k, lw=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    with atomic.atomic_path(Path(out) if out else run_dir / "curves.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return fig
