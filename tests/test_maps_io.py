"""MRC maps: axis order, origin and voxel size, checked against gemmi's independent reader."""

from __future__ import annotations

import gemmi
import mrcfile
import numpy as np
import pytest

from cryofm.errors import InputError
from cryofm.io.mapio import DensityMap, read_map, write_map
from tests.conftest import shared_file


def _gemmi_zyx(path):
    """The map as gemmi reads it, reordered to X/Y/Z, then transposed to [z, y, x]."""
    m = gemmi.read_ccp4_map(str(path))
    m.setup(float("nan"), gemmi.MapSetup.ReorderOnly)
    return m, np.array(m.grid, copy=True).transpose(2, 1, 0)


def test_emd1997_origin_voxel_and_data_match_gemmi():
    path = shared_file("emd1997_groel", "1997.map")
    dmap = read_map(path)
    m, ref = _gemmi_zyx(path)
    assert dmap.data.shape == (100, 100, 100)
    np.testing.assert_allclose(dmap.voxel_size, [2.02, 2.02, 2.02], atol=1e-6)
    # EMDB header XML: origin col/row/sec = -50 voxels, so voxel 0 sits at -101 Å and voxel 50 at 0.
    np.testing.assert_allclose(dmap.origin, [-101.0, -101.0, -101.0], atol=1e-4)
    np.testing.assert_allclose(dmap.index_to_world([[50, 50, 50]]), [[0.0, 0.0, 0.0]], atol=1e-4)
    np.testing.assert_array_equal(dmap.data, ref)


def test_emd3197_start_gives_origin():
    path = shared_file("mrc_edge_cases", "EMD-3197.map")
    dmap = read_map(path)
    m = gemmi.read_ccp4_map(str(path))
    start = [m.header_i32(5), m.header_i32(6), m.header_i32(7)]  # nxstart, nystart, nzstart (axes 1 2 3)
    assert start == [-2, 0, 0]
    np.testing.assert_allclose(dmap.voxel_size, [11.4, 11.4, 11.4], atol=1e-5)
    np.testing.assert_allclose(dmap.origin, np.array(start) * 11.4, atol=1e-4)


def test_emd3001_permuted_axes_and_skewed_cell():
    path = shared_file("mrc_edge_cases", "EMD-3001.map")
    with pytest.raises(InputError, match="non-orthogonal"):
        read_map(path)
    dmap = read_map(path, require_orthogonal=False)
    raw = gemmi.read_ccp4_map(str(path))  # header as stored (setup() rewrites it)
    _, ref = _gemmi_zyx(path)
    # File axis order is mapc/mapr/maps = 3/1/2: columns run along Z, rows along X, sections along Y.
    assert [raw.header_i32(17), raw.header_i32(18), raw.header_i32(19)] == [3, 1, 2]
    assert dmap.data.shape == ref.shape == (73, 25, 43)  # (nz, ny, nx)
    np.testing.assert_array_equal(dmap.data, ref)
    cell, sampling = [17.93, 4.71, 33.03], [40, 12, 72]
    np.testing.assert_allclose(dmap.voxel_size, np.array(cell) / sampling, rtol=1e-5)
    # nxstart (columns, Z) = 0, nystart (rows, X) = -21, nzstart (sections, Y) = -12.
    np.testing.assert_allclose(dmap.origin, [-21 * cell[0] / 40, -12 * cell[1] / 12, 0.0], atol=1e-4)


def test_permuted_file_puts_a_voxel_at_its_world_position(tmp_path):
    # A file stored with sections along X, rows along Z, columns along Y (maps=1, mapr=3, mapc=2).
    nx, ny, nz = 6, 7, 8
    zyx = np.zeros((nz, ny, nx), np.float32)
    zyx[5, 2, 4] = 1.0  # voxel x=4, y=2, z=5
    stored = zyx.transpose(2, 0, 1)  # [section=x, row=z, column=y]
    path = tmp_path / "perm.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.ascontiguousarray(stored))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 2, 3, 1
        mrc.header.mx, mrc.header.my, mrc.header.mz = nx, ny, nz
        mrc.header.cella = (nx * 1.5, ny * 2.0, nz * 2.5)
        mrc.header.origin = (10.0, 20.0, 30.0)
    dmap = read_map(path)
    np.testing.assert_array_equal(dmap.data, zyx)
    np.testing.assert_allclose(dmap.voxel_size, [1.5, 2.0, 2.5])
    k, j, i = np.unravel_index(np.argmax(dmap.data), dmap.data.shape)
    np.testing.assert_allclose(dmap.index_to_world([[i, j, k]]), [[10 + 4 * 1.5, 20 + 2 * 2.0, 30 + 5 * 2.5]])


def test_write_read_roundtrip_keeps_frame(tmp_path):
    rng = np.random.default_rng(0)
    dmap = DensityMap(rng.normal(size=(5, 6, 7)).astype(np.float32), [1.0, 1.25, 0.5], [-3.5, 2.0, 7.25])
    write_map(tmp_path / "a.mrc", dmap)
    back = read_map(tmp_path / "a.mrc")
    np.testing.assert_array_equal(back.data, dmap.data)
    np.testing.assert_allclose(back.voxel_size, dmap.voxel_size, rtol=1e-6)
    np.testing.assert_allclose(back.origin, dmap.origin, atol=1e-5)
    write_map(tmp_path / "b.mrc", dmap.like((dmap.data > 0).astype(np.int8)), np.int8)
    with mrcfile.open(tmp_path / "b.mrc") as mrc:
        assert mrc.data.dtype == np.int8 and mrc.header.mode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mrc", "b.mrc"]  # no temp files left


def test_bad_files_raise_input_error(tmp_path):
    bad = tmp_path / "junk.mrc"
    bad.write_bytes(b"not a map" * 10)
    with pytest.raises(InputError, match="junk.mrc"):
        read_map(bad)
    with pytest.raises(InputError, match="not found"):
        read_map(tmp_path / "missing.mrc")
