"""``eval/micrograph_pca.py``: PCA images of sliding-window features of whole micrographs.

For each micrograph ``out/<stem>.png`` shows micrograph | PCA RGB | 2-cluster k-means side by side,
and ``out/pca/<stem>.png`` is the PCA RGB image alone at micrograph size (to lay over the
micrograph in other tools). Micrographs already done are skipped (resume).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from tqdm.auto import tqdm

from cryofm.errors import InputError
from cryofm.features.sliding import micrograph_features
from cryofm.io.micrograph import read_micrograph
from cryofm.picking.figures import grid_to_image, pca_panel
from cryofm.picking.pca import fit_pca, kmeans_map, pca_rgb
from cryofm.picking.run import check_common, feature_kwargs, load_model, weights_identity
from cryofm.picking.validate import check_fits
from cryofm.utils import atomic


def _png(array_or_fig) -> bytes:
    buf = io.BytesIO()
    if isinstance(array_or_fig, np.ndarray):
        Image.fromarray(array_or_fig).save(buf, format="PNG")
    else:
        import matplotlib.pyplot as plt

        array_or_fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(array_or_fig)
    return buf.getvalue()


def run_micrograph_pca(cfg: DictConfig) -> list[str]:
    """The app (see module docstring); returns the written panel paths."""
    mics, d, out = check_common(cfg)
    if not cfg.get("checkpoint"):
        raise InputError(None, "checkpoint=<run dir or backbone file> is required")
    torch.manual_seed(int(cfg.seed))
    model, meta = load_model(cfg.checkpoint, str(cfg.device))
    kw = feature_kwargs(cfg, meta)
    written = []
    # a panel is reused only if it was made from these weights (a retrained run is redone)
    stamp, weights = out / ".weights", weights_identity(cfg.checkpoint)
    if not (stamp.is_file() and stamp.read_text() == weights):
        for old in out.glob("*.png"):
            old.unlink()
        atomic.write_text(stamp, weights)
    for path in tqdm(mics, desc="micrographs", disable=not cfg.get("progress", True)):
        panel = out / f"{path.stem}.png"
        written.append(str(panel))
        if panel.is_file() and cfg.get("resume", True):
            continue
        img = read_micrograph(path)
        check_fits(path, img.shape, d, kw["box_factor"])
        grid = micrograph_features(model, meta, img, d, **kw)
        rgb = pca_rgb(grid.features, fit_pca(grid.features, 3, seed=int(cfg.seed)))
        full = grid_to_image(rgb, grid.x0, grid.y0, grid.step, img.shape, order=1)
        rgb8 = (np.clip(full, 0, 1) * 255).astype(np.uint8)
        atomic.write_bytes(out / "pca" / f"{path.stem}.png", _png(rgb8))
        clusters = None
        if cfg.get("kmeans", True):
            lab = kmeans_map(grid.features, 2, seed=int(cfg.seed))
            clusters = grid_to_image(lab.astype(np.float32), grid.x0, grid.y0, grid.step, img.shape, order=0)
        atomic.write_bytes(panel, _png(pca_panel(img, full, clusters)))
    return written
