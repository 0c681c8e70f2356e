"""Label maps from hand-made atoms: exact voxels, types, neighbours, regression; the simulated map."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cryofm.io.mapio import DensityMap
from cryofm.maps.labels import atom_type_codes, make_labels
from cryofm.maps.simulate_map import MOLMAP_SIGMA_FACTOR, simulate_map

ORIGIN = np.array([10.0, 20.0, 30.0])


def _grid(shape_zyx=(16, 16, 16), voxel=(1.0, 1.0, 1.0), origin=ORIGIN):
    return DensityMap(np.zeros(shape_zyx, np.float32), voxel, origin)


def _ball_count(r):
    """Integer lattice points with x^2 + y^2 + z^2 <= r^2 (by enumeration)."""
    rng = range(-int(r), int(r) + 1)
    return sum(1 for p in itertools.product(rng, rng, rng) if sum(c * c for c in p) <= r * r)


def test_single_atom_voxel_and_its_ball_of_neighbours():
    grid = _grid()
    xyz = np.array([[15.2, 24.9, 33.1]])  # nearest voxel centre: x 5, y 5, z 3 (origin 10, 20, 30)
    sim = np.random.default_rng(0).random(grid.data.shape).astype(np.float32)
    lab = make_labels(grid, sim, xyz, np.array(["CA"]), np.array(["C"]), radius=2.0)
    assert np.argwhere(lab.classification == 1).tolist() == [[3, 5, 5]]  # [z, y, x]
    # Within 2 Å of a voxel centre: 1 + 6 + 12 + 8 + 6 = 33 lattice points; 32 are neighbours.
    assert _ball_count(2.0) == 33
    assert (lab.classification == 2).sum() == 32
    assert lab.classification[3, 5, 7] == 2 and lab.classification[3, 7, 5] == 2  # 2 Å along x, y
    assert lab.classification[3, 6, 7] == 0  # sqrt(5) Å away
    assert lab.types[3, 5, 5] == 1 and (lab.types != 0).sum() == 1
    labelled = lab.classification > 0
    np.testing.assert_array_equal(lab.regression[labelled], sim[labelled])
    assert not lab.regression[~labelled].any()


def test_atom_types_and_shared_voxels():
    grid = _grid()
    names = ["CA", "CB", "C", "O", "N", "OG", "CA", "CA"]
    elements = ["C", "C", "C", "O", "N", "O", "CA", "C"]
    # Voxels (x, y, z) 2..9 along x at y=4, z=4; the calcium ion named CA sits at x=8; the last
    # Cα shares voxel x=3 with the Cβ but is farther from its centre, so the Cβ keeps the voxel.
    xyz = ORIGIN + np.array([[2, 4, 4], [3.1, 4, 4], [5, 4, 4], [6, 4, 4], [7, 4, 4],
                             [9, 4, 4], [8, 4, 4], [3.4, 4.1, 4]], dtype=float)
    lab = make_labels(grid, np.ones(grid.data.shape, np.float32), xyz, np.array(names), np.array(elements),
                      radius=1.0)
    row = lab.types[4, 4, :12].tolist()
    assert row == [0, 0, 1, 2, 0, 3, 4, 5, 0, 0, 0, 0]
    assert lab.classification[4, 4, :12].tolist() == [0, 2, 1, 1, 2, 1, 1, 1, 1, 1, 2, 0]
    assert lab.n_atoms_inside == 8


def test_type_codes_need_matching_element_and_amino_acid():
    codes = atom_type_codes(np.array(["CA", "CA", "N", "O", "C", "CB"]),
                            np.array(["C", "CA", "N", "O", "C", "C"]),
                            np.array(["ALA", "CA", "GLY", "HOH", "DA", "SER"]))
    assert codes.tolist() == [1, 0, 5, 0, 0, 2]  # calcium, water O and a DNA "C" are not backbone


def test_atom_outside_box_labels_only_neighbours_inside():
    grid = _grid((8, 8, 8), origin=(0, 0, 0))
    xyz = np.array([[-1.0, 3.0, 3.0]])  # atom voxel x = -1: one voxel outside the box
    lab = make_labels(grid, np.ones(grid.data.shape, np.float32), xyz, np.array(["N"]), np.array(["N"]),
                      radius=1.5)
    assert not (lab.classification == 1).any() and not lab.types.any()
    # Inside: x = 0 voxels within 1.5 Å of (-1, 3, 3): (0,3,3) at 1, (0,3±1,3), (0,3,3±1) at sqrt 2.
    got = sorted(map(tuple, np.argwhere(lab.classification == 2)[:, ::-1].tolist()))
    assert got == [(0, 2, 3), (0, 3, 2), (0, 3, 3), (0, 3, 4), (0, 4, 3)]
    assert lab.n_atoms_inside == 0


def test_labels_match_brute_force_on_anisotropic_grid():
    rng = np.random.default_rng(3)
    grid = _grid((10, 14, 18), voxel=(1.0, 1.5, 2.0))
    xyz = ORIGIN + rng.uniform([-2, -2, -2], [20, 22, 21], size=(12, 3))
    lab = make_labels(grid, np.ones(grid.data.shape, np.float32), xyz, np.array(["CA"] * 12),
                      np.array(["C"] * 12), radius=3.0)
    vox = np.floor((xyz - ORIGIN) / grid.voxel_size + 0.5).astype(int)
    k, j, i = np.indices(grid.data.shape)
    centres = np.stack([i, j, k], -1) * grid.voxel_size  # Å, relative to the origin
    d = np.min([np.linalg.norm(centres - v * grid.voxel_size, axis=-1) for v in vox], axis=0)
    expected = np.where(d == 0, 1, np.where(d <= 3.0, 2, 0))
    np.testing.assert_array_equal(lab.classification, expected)


def test_ceil_convention_of_the_dataset():
    grid = _grid()
    xyz = ORIGIN + np.array([[5.2, 4.9, 3.0]])
    lab = make_labels(grid, np.ones(grid.data.shape, np.float32), xyz, np.array(["CA"]), np.array(["C"]),
                      radius=0.5, atom_voxel="ceil")
    assert np.argwhere(lab.classification == 1).tolist() == [[3, 5, 6]]  # ceil(5.2)=6, ceil(4.9)=5


def test_simulated_map_mass_centre_and_width():
    grid = _grid((40, 40, 40), origin=(0, 0, 0))
    xyz = np.array([[20.3, 19.6, 18.25]])
    res = 6.0
    sim = simulate_map(grid, xyz, np.array(["S"]), res, occupancy=np.array([0.5]))
    assert sim.sum() == pytest.approx(16 * 0.5, rel=1e-5)  # Z(S) = 16 electrons x occupancy, 1 Å^3 voxels
    k, j, i = np.indices(sim.shape)
    w = sim / sim.sum()
    np.testing.assert_allclose([(i * w).sum(), (j * w).sum(), (k * w).sum()], xyz[0], atol=1e-4)
    sigma = MOLMAP_SIGMA_FACTOR * res
    var_x = ((i - xyz[0, 0]) ** 2 * w).sum()
    assert var_x == pytest.approx(sigma**2 + 1 / 12, rel=0.01)  # Gaussian averaged over 1 Å voxels


def test_simulated_map_is_linear_in_atoms_and_clips_at_box():
    grid = _grid((12, 12, 12), origin=(0, 0, 0))
    a = simulate_map(grid, np.array([[3.0, 3.0, 3.0]]), np.array(["C"]), 3.0)
    b = simulate_map(grid, np.array([[8.0, 7.0, 6.0]]), np.array(["N"]), 3.0)
    ab = simulate_map(grid, np.array([[3.0, 3.0, 3.0], [8.0, 7.0, 6.0]]), np.array(["C", "N"]), 3.0)
    np.testing.assert_allclose(ab, a + b, atol=1e-6)
    far = simulate_map(grid, np.array([[100.0, 3.0, 3.0]]), np.array(["C"]), 3.0)
    assert not far.any()
