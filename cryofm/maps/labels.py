"""Voxel label maps from an atomic model on an experimental map's grid.

Conventions (those of the labelled dataset for AI-based cryo-EM map enhancement, Giri et al.):

- an atom's voxel is the voxel whose centre is nearest to the atom (``atom_voxel="round"``), or
  ``ceil((x - origin) / voxel)`` per axis as the dataset's scripts compute it (``"ceil"``);
- *neighbour* voxels are those whose centre lies within ``radius`` Å (default 6) of an atom voxel's
  centre (Euclidean, in Å, so anisotropic grids are handled);
- **regression**: the simulated density at atom voxels and their neighbours, 0 elsewhere;
- **classification**: 1 at atom voxels, 2 at neighbour voxels, 0 for background;
- **atom type** (atom voxels only): Cα 1, Cβ 2, backbone carbonyl C 3, backbone O 4, backbone N 5,
  any other atom 0. When several atoms share a voxel, the atom nearest the voxel centre sets the type.

Labels exist only on the experimental grid (voxels inside both maps): atoms outside the box label
nothing there, but atoms just outside still label their neighbours inside it.

The neighbour search is an exact Euclidean distance transform bounded to the radius: three
separable min-plus passes over the atoms' bounding box (array operations, no loop over atoms).
"""

from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from cryofm.io.mapio import DensityMap

TYPE_CODES = {"CA": 1, "CB": 2, "C": 3, "O": 4, "N": 5}  # atom name -> code (element must match)
TYPE_ELEMENT = {"CA": "C", "CB": "C", "C": "C", "O": "O", "N": "N"}
CLASS_ATOM, CLASS_NEIGHBOUR = 1, 2


@dataclass
class MapLabels:
    """The three label maps ``[z, y, x]`` on the experimental grid and the atom-voxel distance."""

    regression: np.ndarray  # float32, simulated density (e/Å^3) at labelled voxels
    classification: np.ndarray  # int8: 0 background, 1 atom voxel, 2 neighbour
    types: np.ndarray  # int8: atom type code at atom voxels
    distance: np.ndarray  # float32 Å to the nearest atom voxel centre (inf beyond the reach)
    n_atoms_inside: int  # atoms whose voxel lies in the grid


def atom_type_codes(atom_name: np.ndarray, element: np.ndarray,
                    residue_name: np.ndarray | None = None) -> np.ndarray:
    """Type code per atom (Cα 1, Cβ 2, carbonyl C 3, O 4, N 5, other 0) as int8.

    Names must carry the matching element (a calcium ion named ``CA`` is not a Cα) and, when
    ``residue_name`` is given, belong to an amino acid (gemmi's residue table).
    """
    names = np.char.strip(np.asarray(atom_name).astype(str))
    elems = np.char.upper(np.char.strip(np.asarray(element).astype(str)))
    codes = np.zeros(names.shape, dtype=np.int8)
    for name, code in TYPE_CODES.items():
        codes[(names == name) & (elems == TYPE_ELEMENT[name])] = code
    if residue_name is not None:
        res = np.asarray(residue_name).astype(str)
        uniq, inv = np.unique(res, return_inverse=True)
        is_aa = np.array([_is_amino_acid(r) for r in uniq], dtype=bool)[inv].reshape(res.shape)
        codes[~is_aa] = 0
    return codes


def _is_amino_acid(name: str) -> bool:
    info = gemmi.find_tabulated_residue(name.strip())
    return bool(info is not None and info.is_amino_acid())


def atom_voxels(grid: DensityMap, xyz: np.ndarray, mode: str = "round") -> np.ndarray:
    """Integer voxel index ``[N, 3]`` (x, y, z order) of each atom; may lie outside the grid."""
    u = grid.world_to_index(np.asarray(xyz, dtype=np.float64).reshape(-1, 3))
    if mode == "round":
        return np.floor(u + 0.5).astype(np.int64)
    if mode == "ceil":
        return np.ceil(u - 1e-9).astype(np.int64)
    raise ValueError(f"atom_voxel must be 'round' or 'ceil', got {mode!r}")


def bounded_sq_distance(sq: np.ndarray, spacing: np.ndarray, reach: float) -> np.ndarray:
    """Squared Euclidean distance (Å^2) to the nearest zero of ``sq`` (0 at sources, inf elsewhere).

    Exact wherever the distance is <= ``reach``; larger or unreachable distances come out > reach^2
    (possibly inf). Three separable min-plus passes, one per axis (``spacing`` in Å per axis of
    ``sq``): ``d^2 = min over dz of (dz^2 + min over dy of (dy^2 + min over dx of (dx^2 + sq)))``
    with offsets bounded by the reach, i.e. ~6 * reach / voxel array operations, no per-atom loop.
    """
    out = sq.astype(np.float32, copy=True)
    for axis in range(sq.ndim):
        p = int(np.floor(reach / spacing[axis] + 1e-9))
        if p == 0 or out.shape[axis] == 1:
            continue
        src = out
        out = src.copy()
        n = src.shape[axis]
        tmp = np.empty_like(src)
        for d in range(1, min(p, n - 1) + 1):
            w = np.float32((d * spacing[axis]) ** 2)
            lo = [slice(None)] * src.ndim
            hi = [slice(None)] * src.ndim
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            t = tmp[tuple(lo)]
            np.add(src[tuple(hi)], w, out=t)  # neighbour at +d
            np.minimum(out[tuple(lo)], t, out=out[tuple(lo)])
            np.add(src[tuple(lo)], w, out=t)  # neighbour at -d
            np.minimum(out[tuple(hi)], t, out=out[tuple(hi)])
    return out


def voxel_distance(grid: DensityMap, vox: np.ndarray, reach: float) -> tuple[np.ndarray, tuple]:
    """Distance in Å from every grid voxel centre to the nearest atom voxel centre, ``[z, y, x]``.

    ``vox`` are atom voxel indices (x, y, z), possibly outside the grid. Exact up to ``reach`` Å;
    farther voxels hold a value > ``reach`` or ``inf``. Also returns the slices (z, y, x) of the
    grid box outside which every voxel is farther than ``reach`` (empty slices when no atom is near).
    """
    n = np.array(grid.shape_xyz)
    v = grid.voxel_size
    pad = np.ceil(reach / v).astype(np.int64) + 1
    out = np.full(grid.data.shape, np.inf, dtype=np.float32)
    empty = (slice(0, 0),) * 3
    vox = vox[np.all((vox >= -pad) & (vox < n + pad), axis=1)]
    if len(vox) == 0:
        return out, empty
    # Box (in grid indices) holding every atom voxel that can reach the grid, plus the reach.
    lo = np.maximum(vox.min(axis=0) - pad, -pad)
    hi = np.minimum(vox.max(axis=0) + pad + 1, n + pad)
    sq = np.full((hi - lo)[::-1], np.inf, dtype=np.float32)
    rel = vox - lo
    sq[rel[:, 2], rel[:, 1], rel[:, 0]] = 0.0
    g_lo, g_hi = np.maximum(lo, 0), np.minimum(hi, n)
    if np.any(g_hi <= g_lo):
        return out, empty
    dist = np.sqrt(bounded_sq_distance(sq, v[::-1], reach))
    b_lo, b_hi = g_lo - lo, g_hi - lo
    box = tuple(slice(int(g_lo[a]), int(g_hi[a])) for a in (2, 1, 0))
    out[box] = dist[b_lo[2]:b_hi[2], b_lo[1]:b_hi[1], b_lo[0]:b_hi[0]]
    return out, box


def _nearest_atom_per_voxel(grid: DensityMap, xyz: np.ndarray, vox: np.ndarray) -> tuple:
    """Flat voxel index and the index of the atom nearest its centre, for atom voxels in the grid."""
    n = np.array(grid.shape_xyz)
    inside = np.all((vox >= 0) & (vox < n), axis=1)
    idx = np.flatnonzero(inside)
    v = vox[idx]
    flat = (v[:, 2] * n[1] + v[:, 1]) * n[0] + v[:, 0]
    off = np.linalg.norm(grid.world_to_index(xyz[idx]) * grid.voxel_size - v * grid.voxel_size, axis=1)
    order = np.lexsort((off, flat))  # by voxel, then nearest first
    flat_sorted = flat[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = flat_sorted[1:] != flat_sorted[:-1]
    return flat_sorted[first], idx[order[first]], int(inside.sum())


def make_labels(
    grid: DensityMap,
    simulated: np.ndarray,
    xyz: np.ndarray,
    atom_name: np.ndarray,
    element: np.ndarray,
    residue_name: np.ndarray | None = None,
    radius: float = 6.0,
    atom_voxel: str = "round",
    reach: float | None = None,
) -> MapLabels:
    """Regression, classification and atom-type label maps on ``grid`` (see the module docstring).

    ``simulated`` is the model's simulated density on the same grid; ``radius`` in Å; ``reach``
    (≥ radius, Å) extends the returned distance map, e.g. for a soft FSC mask.
    """
    if simulated.shape != grid.data.shape:
        raise ValueError(f"simulated map {simulated.shape} is not on the grid {grid.data.shape}")
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    vox = atom_voxels(grid, xyz, atom_voxel)
    dist, box = voxel_distance(grid, vox, max(radius, reach or 0.0))
    classification = np.zeros(grid.data.shape, dtype=np.int8)
    regression = np.zeros(grid.data.shape, dtype=np.float32)
    d, c = dist[box], classification[box]  # views: nothing is labelled outside the atoms' box
    c[d <= radius + 1e-6] = CLASS_NEIGHBOUR
    c[d == 0] = CLASS_ATOM
    np.copyto(regression[box], simulated[box], where=c > 0)
    types = np.zeros(grid.data.shape, dtype=np.int8)
    flat, atom, n_inside = _nearest_atom_per_voxel(grid, xyz, vox)
    types.ravel()[flat] = atom_type_codes(atom_name, element, residue_name)[atom]
    return MapLabels(regression, classification, types, dist, n_inside)
