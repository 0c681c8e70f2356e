"""Removing acquisition parameters from features: regress-out and LEACE-style concept erasure.

Both are fitted on probe-train data only and then applied unchanged to every other split.

* **Regress-out**: a least-squares linear map from standardised acquisition parameters ``Z`` to the
  features ``X``; the probe sees the residuals ``X − Z·W``. It needs each particle's acquisition
  parameters at test time (they are in the metadata).
* **LEACE** (Belrose et al. 2023, "LEACE: Perfect linear concept erasure in closed form"): the
  smallest (in the whitened metric) affine edit of ``X`` after which ``Cov(X', Z) = 0``, so that no
  linear predictor of ``Z`` from ``X'`` beats a constant on the fit data. It needs only ``X``.

Acquisition parameters are the schema's :data:`cryofm.schema.ACQUISITION_FIELDS`. The astigmatism
angle is defined modulo 180°, so it enters as ``cos 2θ`` and ``sin 2θ``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cryofm import schema
from cryofm.probe.linear import blas_threads

ANGLE_FIELDS = ("DefocusAngle",)


def acquisition_matrix(
    records: Mapping[str, Sequence[Any]], fields: Sequence[str] = schema.ACQUISITION_FIELDS
) -> tuple[np.ndarray, list[str]]:
    """[N, K] float64 matrix of acquisition parameters (NaN where missing) and its column names.

    Units are the schema's (Å, degrees, kV, mm, e⁻/Å², Å/px); angles become ``<name>_cos2`` and
    ``<name>_sin2``.
    """
    n = len(records["uid"])
    cols, names = [], []
    for name in fields:
        raw = records.get(name, [None] * n)
        v = np.array([np.nan if schema.is_missing(x) else float(x) for x in raw], dtype=np.float64)
        if name in ANGLE_FIELDS:
            t = np.deg2rad(v) * 2.0
            cols += [np.cos(t), np.sin(t)]
            names += [f"{name}_cos2", f"{name}_sin2"]
        else:
            cols.append(v)
            names.append(name)
    return (np.stack(cols, 1) if cols else np.zeros((n, 0))), names


class AcquisitionScaler:
    """Standardise acquisition columns with probe-train statistics; missing values → 0 (the train
    mean). Columns that are constant or entirely missing on probe-train are dropped (they carry no
    variation to remove)."""

    def fit(self, a: np.ndarray, names: Sequence[str]) -> AcquisitionScaler:
        finite = np.isfinite(a)
        cnt = finite.sum(0)
        mean = np.where(cnt > 0, np.nansum(np.where(finite, a, 0), 0) / np.maximum(cnt, 1), 0.0)
        var = np.where(cnt > 1, np.nansum(np.where(finite, (a - mean) ** 2, 0), 0) / np.maximum(cnt, 1), 0.0)
        std = np.sqrt(var)
        self.keep = np.flatnonzero((cnt > 1) & (std > 1e-9 * np.maximum(1.0, np.abs(mean))))
        self.mean, self.std = mean[self.keep], std[self.keep]
        self.names = [names[i] for i in self.keep]
        return self

    def transform(self, a: np.ndarray) -> np.ndarray:
        z = (a[:, self.keep] - self.mean) / self.std
        return np.where(np.isfinite(z), z, 0.0)


class RegressOut:
    """Residualise features on acquisition parameters (least squares, fitted on probe-train)."""

    def fit(self, x: np.ndarray, a: np.ndarray, names: Sequence[str]) -> RegressOut:
        """``x`` [N, D] features, ``a`` [N, K] raw acquisition matrix (NaN = missing)."""
        self.scaler = AcquisitionScaler().fit(a, names)
        z = self.scaler.transform(a)
        design = np.concatenate([z, np.ones((len(z), 1))], 1)
        with blas_threads(x):
            coef, *_ = np.linalg.lstsq(design, np.asarray(x, np.float64), rcond=None)
        self.weight = coef[:-1]  # [K', D]; the intercept stays in the features
        return self

    def transform(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        z = self.scaler.transform(a)
        return (np.asarray(x, np.float64) - z @ self.weight).astype(x.dtype)


class LeaceEraser:
    """LEACE: ``x' = x − W⁺ P W (x − μ)`` with ``W = Σ_xx^{-1/2}`` and ``P`` the orthogonal projection
    onto the column space of ``W Σ_xz`` (pseudo-inverses over the non-null eigen-space of ``Σ_xx``)."""

    def fit(self, x: np.ndarray, z: np.ndarray, rel_tol: float = 1e-8) -> LeaceEraser:
        """``x`` [N, D] features, ``z`` [N, K] concept (standardised, no NaN)."""
        with blas_threads(x):
            return self._fit(np.asarray(x, np.float64), z, rel_tol)

    def _fit(self, x: np.ndarray, z: np.ndarray, rel_tol: float) -> LeaceEraser:
        z = np.asarray(z, np.float64)
        self.mean = x.mean(0)
        xc, zc = x - self.mean, z - z.mean(0)
        n = len(x)
        sxx = xc.T @ xc / n
        sxz = xc.T @ zc / n
        lam, vec = np.linalg.eigh(sxx)
        ok = lam > rel_tol * max(float(lam.max(initial=0.0)), 1e-300)
        v, lam = vec[:, ok], lam[ok]
        whiten = (v / np.sqrt(lam)) @ v.T  # W
        unwhiten = (v * np.sqrt(lam)) @ v.T  # W⁺
        m = whiten @ sxz
        u, s, _ = np.linalg.svd(m, full_matrices=False)
        q = u[:, s > 1e-10 * max(float(s.max(initial=0.0)), 1e-300)]
        self.left = whiten @ q  # [D, r]
        self.right = q.T @ unwhiten  # [r, D]
        self.rank = q.shape[1]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        xd = np.asarray(x, np.float64)
        return (xd - ((xd - self.mean) @ self.left) @ self.right).astype(x.dtype)
