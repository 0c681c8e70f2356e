"""Resampling to 1 Å keeps the world frame: known features stay where they are."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryofm.io.mapio import DensityMap, read_map
from cryofm.maps.resample import resample, resampled_shape
from tests.conftest import shared_file


def _blob_map(center, voxel, origin, shape_zyx, sigma=2.5):
    """A Gaussian blob (sigma in Å) centred at world ``center`` on the given grid."""
    voxel, origin = np.asarray(voxel, float), np.asarray(origin, float)
    k, j, i = np.indices(shape_zyx)
    x, y, z = (origin[0] + i * voxel[0], origin[1] + j * voxel[1], origin[2] + k * voxel[2])
    r2 = (x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2
    return DensityMap(np.exp(-r2 / (2 * sigma**2)).astype(np.float32), voxel, origin)


def _world_centroid(dmap):
    k, j, i = np.indices(dmap.data.shape)
    w = dmap.data / dmap.data.sum()
    ijk = np.array([(i * w).sum(), (j * w).sum(), (k * w).sum()])
    return dmap.origin + ijk * dmap.voxel_size


def test_blob_on_anisotropic_grid_stays_in_place():
    center = np.array([13.37, -4.21, 28.9])
    src = _blob_map(center, voxel=[2.02, 1.7, 1.3], origin=[-5.0, -30.0, 7.5], shape_zyx=(36, 32, 24))
    out = resample(src, 1.0)
    np.testing.assert_allclose(out.origin, src.origin)
    np.testing.assert_allclose(out.voxel_size, [1.0, 1.0, 1.0])
    assert out.shape_xyz == (47, 53, 46)  # floor((n - 1) * v) + 1 along x, y, z
    np.testing.assert_allclose(_world_centroid(out), center, atol=0.02)
    # The peak voxel is the one nearest the centre, and the value there matches the analytic blob.
    k, j, i = np.unravel_index(np.argmax(out.data), out.data.shape)
    np.testing.assert_array_equal([i, j, k], np.rint((center - out.origin) / 1.0).astype(int))
    ref = _blob_map(center, [1.0] * 3, out.origin, out.data.shape)
    assert np.abs(out.data - ref.data).max() < 0.02


def test_emd1997_resampled_to_1A_keeps_positions():
    raw = read_map(shared_file("emd1997_groel", "1997.map"))
    out = resample(raw, 1.0)
    assert out.data.shape == (200, 200, 200)  # floor(99 * 2.02) + 1
    assert resampled_shape(raw.shape_xyz, raw.voxel_size, 1.0) == (200, 200, 200)
    np.testing.assert_allclose(out.origin, raw.origin)
    # New voxel 101 and old voxel 50 are both at world 0 Å: the spline reproduces the sample there.
    assert abs(out.data[101, 101, 101] - raw.data[50, 50, 50]) < 1e-4
    assert abs(out.data[0, 0, 0] - raw.data[0, 0, 0]) < 1e-4
    # The density's centre of mass (positive part) is unchanged in Å.
    pos_raw = raw.like(np.maximum(raw.data, 0))
    pos_out = out.like(np.maximum(out.data, 0))
    np.testing.assert_allclose(_world_centroid(pos_out), _world_centroid(pos_raw), atol=0.1)


def test_separable_spline_equals_scipy_affine_transform():
    rng = np.random.default_rng(1)
    data = ndimage.gaussian_filter(rng.normal(size=(30, 32, 34)), 1.5).astype(np.float32)
    src = DensityMap(data, [1.9, 1.4, 1.1], [0, 0, 0])
    for order in (1, 3):
        out = resample(src, 1.0, order=order)
        ref = ndimage.affine_transform(data.astype(np.float64), 1.0 / src.voxel_size[::-1],
                                       output_shape=out.data.shape, order=order, mode="nearest")
        inner = (slice(14, -14),) * 3  # borders differ only in how the spline is extended
        np.testing.assert_allclose(out.data[inner], ref[inner], atol=2e-4)


def test_same_voxel_size_is_a_copy():
    src = DensityMap(np.arange(27, dtype=np.float32).reshape(3, 3, 3), [1, 1, 1], [1, 2, 3])
    out = resample(src, 1.0)
    np.testing.assert_array_equal(out.data, src.data)
    assert out.data is not src.data
