"""Label-free views of a feature grid: whitened PCA → RGB, 2-cluster k-means, particle score map.

The score of unsupervised picking is the first principal component of the window descriptors. Its
sign is arbitrary; it is chosen without labels so that particles score high, from a prior the field
already relies on: windows centred on a particle carry the particle's contrast, so the component
must correlate positively with the classical blob response (DoG) at the window centres
(``sign="dog"``). ``sign="skew"`` uses the other prior (particles are the minority: the long tail
is positive), ``+1`` / ``-1`` force it.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from cryofm.features.sliding import FeatureGrid
from cryofm.picking.peaks import ScoreMap, robust_z


def fit_pca(features: np.ndarray, n_components: int = 3, max_fit: int = 20000, seed: int = 0) -> PCA:
    """Whitened PCA fitted on at most ``max_fit`` randomly chosen rows of ``features`` [..., D]."""
    x = features.reshape(-1, features.shape[-1]).astype(np.float32)
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= max_fit else x[rng.choice(len(x), max_fit, replace=False)]
    n = int(min(n_components, fit.shape[0], fit.shape[1]))
    return PCA(n_components=n, whiten=True, random_state=seed).fit(fit)


def project(features: np.ndarray, pca: PCA) -> np.ndarray:
    """Whitened components [..., k] of ``features`` [..., D]."""
    x = features.reshape(-1, features.shape[-1]).astype(np.float32)
    return pca.transform(x).reshape(*features.shape[:-1], -1).astype(np.float32)


def pca_rgb(features: np.ndarray, pca: PCA | None = None, clip: float = 1.0) -> np.ndarray:
    """RGB [gh, gw, 3] in [0, 1]: the first 3 whitened components, each stretched between its
    ``clip`` and ``100 − clip`` percentiles (missing components are black)."""
    pca = pca or fit_pca(features, 3)
    z = project(features, pca)
    rgb = np.zeros(z.shape[:-1] + (3,), np.float32)
    for c in range(min(3, z.shape[-1])):
        lo, hi = np.percentile(z[..., c], [clip, 100 - clip])
        rgb[..., c] = np.clip((z[..., c] - lo) / max(hi - lo, 1e-6), 0, 1)
    return rgb


def kmeans_map(features: np.ndarray, k: int = 2, n_pca: int = 16, seed: int = 0) -> np.ndarray:
    """K-means labels [gh, gw] on the first ``n_pca`` whitened components, label 0 = largest cluster."""
    z = project(features, fit_pca(features, n_pca, seed=seed)).reshape(-1, min(n_pca, features.shape[-1]))
    lab = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(z)
    order = np.argsort(-np.bincount(lab, minlength=k))  # relabel by decreasing size
    remap = np.empty(k, int)
    remap[order] = np.arange(k)
    return remap[lab].reshape(features.shape[:-1])


def sample_map(smap: ScoreMap, xy: np.ndarray) -> np.ndarray:
    """Nearest-cell values of ``smap`` at micrograph points xy [N, 2]."""
    gh, gw = smap.values.shape
    j = np.clip(np.round((xy[:, 0] - smap.x0) / smap.step).astype(int), 0, gw - 1)
    i = np.clip(np.round((xy[:, 1] - smap.y0) / smap.step).astype(int), 0, gh - 1)
    return smap.values[i, j]


def choose_sign(pc1: np.ndarray, grid: FeatureGrid, sign: str | int = "dog",
                prior: ScoreMap | None = None) -> int:
    """+1 or −1 so that particles score high on ``pc1`` [gh, gw] (see module docstring)."""
    if sign in (1, -1, "+1", "-1", "+", "-"):
        return -1 if str(sign).startswith("-") else 1
    if sign == "skew":
        v = pc1.reshape(-1) - np.median(pc1)
        return 1 if np.mean(v ** 3) >= 0 else -1
    if sign == "dog":
        if prior is None:
            raise ValueError("sign='dog' needs the DoG score map as prior")
        ref = sample_map(prior, grid.centres().reshape(-1, 2))
        c = np.corrcoef(pc1.reshape(-1), ref)[0, 1]
        return 1 if not np.isfinite(c) or c >= 0 else -1
    raise ValueError(f"unknown sign rule {sign!r} (dog, skew, +1, -1)")


def feature_score_map(grid: FeatureGrid, sign: str | int = "dog", prior: ScoreMap | None = None,
                      pca: PCA | None = None) -> tuple[ScoreMap, PCA, int]:
    """Robust-z score map from the first whitened principal component of ``grid`` (sign chosen by
    :func:`choose_sign`); returns (score map, the PCA, the sign)."""
    pca = pca or fit_pca(grid.features, 3)
    pc1 = project(grid.features, pca)[..., 0]
    s = choose_sign(pc1, grid, sign, prior)
    return ScoreMap(robust_z(s * pc1), grid.x0, grid.y0, grid.step, grid.shape), pca, s
