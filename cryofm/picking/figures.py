"""Pictures of picking: overlays (true positive / false positive / missed), PCA panels, PR curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from cryofm.picking.metrics import match  # noqa: E402

COLOURS = {"tp": "#1a9850", "fp": "#d73027", "missed": "#fee08b", "pick": "#4575b4"}


def display(image: np.ndarray) -> np.ndarray:
    """A micrograph stretched between its 1st and 99th percentiles to [0, 1] (for display)."""
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)


def grid_to_image(values: np.ndarray, x0: float, y0: float, step: float, shape: tuple[int, int],
                  order: int = 1) -> np.ndarray:
    """Resample a grid [gh, gw(, C)] whose cell (i, j) sits at (x0 + j·step, y0 + i·step) to
    micrograph size [H, W(, C)] (``order`` 0 nearest, 1 bilinear; edges held)."""
    h, w = shape
    rows = np.clip((np.arange(h) - y0) / step, 0, values.shape[0] - 1)
    cols = np.clip((np.arange(w) - x0) / step, 0, values.shape[1] - 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    if values.ndim == 2:
        return ndi.map_coordinates(values.astype(np.float32), [rr, cc], order=order)
    return np.stack([ndi.map_coordinates(values[..., c].astype(np.float32), [rr, cc], order=order)
                     for c in range(values.shape[-1])], axis=-1)


def overlay(ax, image: np.ndarray, picks: np.ndarray, truth: np.ndarray | None, diameter: float,
            radius: float, title: str = "") -> None:
    """Micrograph with circles of ``diameter``: TP green, FP red, missed yellow (or picks in blue
    when there is no ground truth)."""
    ax.imshow(display(image), cmap="gray", interpolation="nearest")
    r = diameter / 2
    if truth is None:
        groups = {"pick": picks}
    else:
        i, j = match(picks, truth, radius)
        tp = np.zeros(len(picks), bool)
        tp[i] = True
        hit = np.zeros(len(truth), bool)
        hit[j] = True
        groups = {"tp": picks[tp], "fp": picks[~tp], "missed": truth[~hit]}
    for kind, pts in groups.items():
        for x, y in np.asarray(pts).reshape(-1, 2):
            ax.add_patch(Circle((x, y), r, fill=False, lw=1.0, ec=COLOURS[kind],
                                ls="--" if kind == "missed" else "-"))
    counts = ", ".join(f"{k} {len(v)}" for k, v in groups.items())
    ax.set_title(f"{title} ({counts})" if title else counts, fontsize=9)
    ax.set_axis_off()


def overlay_figure(image: np.ndarray, results: dict[str, np.ndarray], truth: np.ndarray | None,
                   diameter: float, radius: float, pca_rgb: np.ndarray | None = None) -> Figure:
    """One row: an overlay per picker (name → picks) and, if given, the PCA image."""
    n = len(results) + (pca_rgb is not None)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.8), squeeze=False)
    for ax, (name, picks) in zip(axes[0], results.items(), strict=False):
        overlay(ax, image, picks, truth, diameter, radius, title=name)
    if pca_rgb is not None:
        axes[0, -1].imshow(pca_rgb, interpolation="nearest")
        axes[0, -1].set_title("features: PCA (RGB = PC1..3)", fontsize=9)
        axes[0, -1].set_axis_off()
    if truth is not None:
        fig.text(0.01, 0.01, "green: true positive   red: false positive   yellow dashed: missed",
                 fontsize=8)
    fig.tight_layout()
    return fig


def pca_panel(image: np.ndarray, rgb: np.ndarray, clusters: np.ndarray | None = None) -> Figure:
    """Micrograph | PCA RGB | 2-cluster k-means, side by side, all at micrograph size."""
    n = 2 + (clusters is not None)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.8))
    axes[0].imshow(display(image), cmap="gray")
    axes[0].set_title("micrograph", fontsize=9)
    axes[1].imshow(rgb, interpolation="nearest")
    axes[1].set_title("PCA of window features (RGB = PC1, PC2, PC3, whitened)", fontsize=9)
    if clusters is not None:
        axes[2].imshow(clusters, cmap="viridis", interpolation="nearest")
        axes[2].set_title("k-means, 2 clusters (0 = larger)", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def pr_figure(curves: dict[str, dict], operating: dict[str, dict]) -> Figure:
    """Pooled PR curves, one per picker, with its own operating point (dot) and best F1 (cross)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for k, (name, c) in enumerate(curves.items()):
        col = f"C{k}"
        ax.plot(c["recall"], c["precision"], color=col, label=f"{name} (AP {c['ap']:.3f})")
        op = operating[name]
        ax.plot(op["recall"], op["precision"], "o", color=col, ms=7,
                label=f"{name} own threshold: F1 {op['f1']:.3f}")
        b = c["best"]
        ax.plot(b["recall"], b["precision"], "x", color=col, ms=9, mew=2,
                label=f"{name} best F1 {b['f1']:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
