"""Resample a density map to isotropic voxels (1 Å by default) in the same world frame.

The new grid starts at the same world position as the old one (voxel ``[0, 0, 0]`` keeps its
centre, so the origin is unchanged) and covers the old box: ``n_new = floor((n - 1) * v / v_new) + 1``
voxels per axis. Values are interpolated with cubic B-splines (``scipy.ndimage`` prefilter, then one
separable 1D pass per axis, as ``ndimage.affine_transform`` would do in 4^3 taps), so a feature at
world position ``p`` stays at ``p`` whatever the voxel sizes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryofm.io.mapio import DensityMap


def resampled_shape(shape_xyz: tuple[int, int, int], voxel_size: np.ndarray, new_voxel: float) -> tuple:
    """Voxel counts (x, y, z) of the resampled grid covering the old box."""
    old = np.asarray(voxel_size, dtype=np.float64)
    n = np.floor((np.asarray(shape_xyz) - 1) * old / new_voxel + 1e-6).astype(int) + 1
    return tuple(int(v) for v in n)


def _resample_axis(arr: np.ndarray, axis: int, n_out: int, scale: float, order: int) -> np.ndarray:
    """Interpolate ``arr`` along ``axis`` at input positions ``i * scale``, i < n_out (B-spline)."""
    x = np.arange(n_out) * scale
    n = arr.shape[axis]
    i0 = np.floor(x).astype(np.int64)
    t = (x - i0).astype(np.float32)
    if order == 1:
        taps, weights = [i0, i0 + 1], [1 - t, t]
    elif order == 3:
        arr = ndimage.spline_filter1d(arr, order=3, axis=axis, mode="nearest", output=np.float32)
        taps = [i0 - 1, i0, i0 + 1, i0 + 2]
        weights = [(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
                   t**3 / 6]
    else:
        raise ValueError(f"interpolation order must be 1 or 3, got {order}")
    shape = [1, 1, 1]
    shape[axis] = n_out
    out = None
    for idx, w in zip(taps, weights, strict=True):
        term = np.take(arr, np.clip(idx, 0, n - 1), axis=axis) * w.reshape(shape)
        out = term if out is None else out + term
    return out.astype(np.float32, copy=False)


def resample(dmap: DensityMap, voxel: float = 1.0, order: int = 3) -> DensityMap:
    """Return ``dmap`` on an isotropic grid of ``voxel`` Å (same origin, same axis order).

    ``order`` is the spline order (1 = trilinear, 3 = cubic). A map already at ``voxel`` Å is
    returned as a copy without interpolation.
    """
    if voxel <= 0:
        raise ValueError(f"voxel size must be positive, got {voxel}")
    if np.allclose(dmap.voxel_size, voxel, rtol=0, atol=1e-6):
        return DensityMap(dmap.data.astype(np.float32, copy=True), np.full(3, float(voxel)), dmap.origin)
    n_new = resampled_shape(dmap.shape_xyz, dmap.voxel_size, voxel)[::-1]  # (z, y, x)
    out = dmap.data.astype(np.float32, copy=True)
    for axis in range(3):  # separable: one 1D spline pass per axis (4 taps, not 4^3)
        out = _resample_axis(out, axis, n_new[axis], voxel / dmap.voxel_size[2 - axis], order)
    return DensityMap(out, np.full(3, float(voxel)), dmap.origin.copy())
