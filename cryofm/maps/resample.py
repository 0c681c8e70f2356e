"""Resample a density map to isotropic voxels (1 Å by default) in the same world frame.

The new grid starts at the same world position as the old one (voxel ``[0, 0, 0]`` keeps its
centre, so the origin is unchanged) and covers the old box: ``n_new = floor((n - 1) * v / v_new) + 1``
voxels per axis. Values are interpolated with cubic B-splines (``scipy.ndimage``), so a feature at
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


def resample(dmap: DensityMap, voxel: float = 1.0, order: int = 3) -> DensityMap:
    """Return ``dmap`` on an isotropic grid of ``voxel`` Å (same origin, same axis order).

    ``order`` is the spline order (1 = trilinear, 3 = cubic). A map already at ``voxel`` Å is
    returned as a copy without interpolation.
    """
    if voxel <= 0:
        raise ValueError(f"voxel size must be positive, got {voxel}")
    if np.allclose(dmap.voxel_size, voxel, rtol=0, atol=1e-6):
        return DensityMap(dmap.data.astype(np.float32, copy=True), np.full(3, float(voxel)), dmap.origin)
    nx, ny, nz = resampled_shape(dmap.shape_xyz, dmap.voxel_size, voxel)
    # Output index along (z, y, x) maps to input index * (voxel / old voxel) on that axis; a 1-D
    # matrix makes scipy use its separable zoom-and-shift path.
    scale = voxel / dmap.voxel_size[::-1]
    out = ndimage.affine_transform(
        dmap.data.astype(np.float32, copy=False),
        matrix=scale,
        offset=0.0,
        output_shape=(nz, ny, nx),
        order=order,
        mode="nearest",
        prefilter=order > 1,
        output=np.float32,
    )
    return DensityMap(out, np.full(3, float(voxel)), dmap.origin.copy())
