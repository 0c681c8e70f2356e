"""Model-in-map check: the fraction of atoms inside the contour, and the automatic contour."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.io.atomic import read_model
from cryofm.io.mapio import DensityMap, read_map
from cryofm.maps.placement import fraction_inside, volume_contour
from tests.conftest import shared_file


def test_volume_contour_encloses_the_requested_volume():
    data = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    c = volume_contour(data, voxel_volume=8.0, volume=800.0)  # 100 voxels of 8 Å^3
    assert (data > c).sum() == 100
    assert volume_contour(data, 8.0, 1e9) == data.min()


def test_fraction_inside_counts_atoms_above_contour():
    data = np.zeros((10, 10, 10), np.float32)
    data[2:6, 2:6, 2:6] = 1.0  # voxels x, y, z in 2..5 -> world 12..15 Å along x (origin 10, 1 Å)
    dmap = DensityMap(data, [1, 1, 1], [10.0, 0.0, 0.0])
    xyz = np.array([[13.0, 3.0, 4.0], [14.0, 5.0, 5.0], [10.0, 0.0, 0.0], [50.0, 3.0, 3.0]])
    assert fraction_inside(dmap, xyz, 0.5) == pytest.approx(0.5)  # 2 in the block, 1 outside, 1 off the box
    assert fraction_inside(dmap, xyz[:1], 0.5) == 1.0
    assert fraction_inside(dmap, np.array([[15.5, 3.0, 3.0]]), 0.4) == 1.0  # trilinear: 0.5 at the edge
    assert fraction_inside(dmap, np.array([[15.5, 3.0, 3.0]]), 0.6) == 0.0


def test_unplaced_1oel_is_mostly_outside_emd1997():
    dmap = read_map(shared_file("emd1997_groel", "1997.map"))
    model = read_model(shared_file("emd1997_groel", "1oel.pdb"))
    auto = volume_contour(dmap.data, float(np.prod(dmap.voxel_size)), 12.0 * len(model))
    assert fraction_inside(dmap, model.xyz, auto) < 0.3
    assert fraction_inside(dmap, model.xyz, 1.0) < 0.1  # author contour from the EMDB header
