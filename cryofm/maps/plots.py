"""Pictures of one labelled map: the FSC curves and central slices of the map and its labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofm.utils.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fsc(path: str | Path, curves: dict[str, np.ndarray], title: str,
             thresholds: tuple[float, ...] = (0.5, 0.143)) -> None:
    """FSC against spatial frequency (1/Å) for every curve in ``curves`` (key ``frequency`` = x axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key, fsc in curves.items():
        if key != "frequency":
            ax.plot(curves["frequency"], fsc, label=key.replace("_", ", "))
    for t in thresholds:
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="spatial frequency (1/Å)", ylabel="map-model FSC", title=title, ylim=(-0.1, 1.05))
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_slices(path: str | Path, maps: dict[str, np.ndarray], title: str) -> None:
    """One row per view (central z, y and x slices), one column per map in ``maps`` ([z, y, x])."""
    plt = _pyplot()
    names = list(maps)
    fig, axes = plt.subplots(3, len(names), figsize=(2.6 * len(names), 7.5), dpi=90, squeeze=False)
    for col, name in enumerate(names):
        vol = maps[name]
        label_map = np.issubdtype(vol.dtype, np.integer)
        for row, (axis, view) in enumerate(((0, "z"), (1, "y"), (2, "x"))):
            sl = np.take(vol, vol.shape[axis] // 2, axis=axis)
            ax = axes[row, col]
            if label_map:
                ax.imshow(sl, cmap="tab10", vmin=0, vmax=9, interpolation="nearest", origin="lower")
            else:
                ax.imshow(sl, cmap="gray", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"central {view} slice", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
