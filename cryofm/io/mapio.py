"""MRC / CCP4 density maps with their world frame: voxel size, origin and axis order.

A :class:`DensityMap` holds ``data`` indexed ``[z, y, x]`` (C order, x fastest, as most cryo-EM
software writes it) whatever the file's ``mapc/mapr/maps`` axis order, the voxel size per axis in
Å (``(x, y, z)``) and ``origin``: the world position in Å (``(x, y, z)``) of the centre of voxel
``[0, 0, 0]``. The position of voxel ``[k, j, i]`` is ``origin + (i, j, k) * voxel_size``.

Origin convention (as ChimeraX reads MRC files): the MRC2014 ``origin`` field when it is non-zero,
otherwise ``n[xyz]start * voxel_size`` (EMDB maps store the box start there, e.g. EMD-1997 has
``nxstart = -50`` at 2.02 Å, so its voxel 50 sits at 0 Å). Written maps put the position in
``origin``, zero ``n[xyz]start`` and the standard axis order ``mapc, mapr, maps = 1, 2, 3``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryofm.errors import InputError
from cryofm.utils.atomic import atomic_path


@dataclass
class DensityMap:
    """A 3D map on an orthogonal grid: ``data[z, y, x]``, ``voxel_size`` and ``origin`` in Å (x, y, z)."""

    data: np.ndarray
    voxel_size: np.ndarray
    origin: np.ndarray

    def __post_init__(self) -> None:
        self.voxel_size = np.asarray(self.voxel_size, dtype=np.float64).reshape(3)
        self.origin = np.asarray(self.origin, dtype=np.float64).reshape(3)

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Number of voxels along x, y, z."""
        return tuple(int(n) for n in self.data.shape[::-1])

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Continuous voxel indices ``[N, 3]`` in ``(i, j, k)`` = (x, y, z) order of world points in Å."""
        return (np.asarray(xyz, dtype=np.float64) - self.origin) / self.voxel_size

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """World positions in Å of voxel indices ``[N, 3]`` given in (x, y, z) order."""
        return np.asarray(ijk, dtype=np.float64) * self.voxel_size + self.origin

    def like(self, data: np.ndarray) -> DensityMap:
        """A map with the same grid and new ``data`` (same shape)."""
        if data.shape != self.data.shape:
            raise ValueError(f"shape {data.shape} differs from the grid's {self.data.shape}")
        return DensityMap(data, self.voxel_size.copy(), self.origin.copy())


def _canonical_order(mapc: int, mapr: int, maps: int) -> tuple[int, int, int]:
    """Transpose that turns a file array ``[section, row, column]`` into ``[z, y, x]``."""
    axis_of = {int(mapc): 2, int(mapr): 1, int(maps): 0}  # world axis (1=X, 2=Y, 3=Z) -> data axis
    if sorted(axis_of) != [1, 2, 3]:
        raise ValueError(f"mapc/mapr/maps = {mapc}/{mapr}/{maps} is not a permutation of 1/2/3")
    return axis_of[3], axis_of[2], axis_of[1]


def read_map(path: str | Path, require_orthogonal: bool = True) -> DensityMap:
    """Read an MRC/CCP4 map into a :class:`DensityMap` (float32 ``data[z, y, x]``, Å).

    Raises :class:`InputError` for a missing or unreadable file, a non-3D or empty map, a zero or
    non-finite voxel size, and (``require_orthogonal``) a unit cell whose angles are not 90°
    (crystallographic maps; cryo-EM maps are always orthogonal).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "map file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # permissive: EMDB files often have small header quirks
            with mrcfile.open(path, permissive=True, header_only=False) as mrc:
                if mrc.data is None:
                    raise InputError(path, "not an MRC/CCP4 map (no data block)")
                raw = np.asarray(mrc.data)
                h = mrc.header
                mapcrs = (int(h.mapc), int(h.mapr), int(h.maps))
                cella = np.array([float(h.cella.x), float(h.cella.y), float(h.cella.z)])
                cellb = np.array([float(h.cellb.alpha), float(h.cellb.beta), float(h.cellb.gamma)])
                msize = np.array([int(h.mx), int(h.my), int(h.mz)])
                start = (int(h.nxstart), int(h.nystart), int(h.nzstart))
                origin = np.array([float(h.origin.x), float(h.origin.y), float(h.origin.z)])
    except InputError:
        raise
    except Exception as exc:  # mrcfile raises ValueError / OSError on broken files
        raise InputError(path, f"cannot read as an MRC map ({exc})") from exc
    if raw.ndim != 3 or raw.size == 0:
        raise InputError(path, f"expected a 3D volume, got an array of shape {raw.shape}")
    if mapcrs == (0, 0, 0):  # some old writers leave the axis order empty: the default is 1, 2, 3
        mapcrs = (1, 2, 3)
    try:
        order = _canonical_order(*mapcrs)
    except ValueError as exc:
        raise InputError(path, str(exc)) from exc
    if require_orthogonal and np.any(np.abs(cellb - 90.0) > 1e-3) and np.all(cellb > 0):
        raise InputError(path, f"non-orthogonal unit cell (angles {cellb.round(3).tolist()} deg) "
                               "is not supported; cryo-EM maps have 90 deg cells")
    data = np.ascontiguousarray(raw.transpose(order), dtype=np.float32)
    if np.any(msize <= 0):  # no unit-cell sampling: assume the cell is the box
        msize = np.array(data.shape[::-1])
    voxel = cella / msize
    if not np.all(np.isfinite(voxel)) or np.any(voxel <= 0):
        raise InputError(path, f"invalid voxel size {voxel.tolist()} A (cell {cella.tolist()}, "
                               f"sampling {msize.tolist()})")
    # n[xyz]start index the column / row / section axes: move them to world x, y, z.
    start_xyz = np.zeros(3)
    for file_axis, world_axis in enumerate(mapcrs):
        start_xyz[world_axis - 1] = start[file_axis]
    if not np.all(np.isfinite(origin)) or not np.any(origin):
        origin = start_xyz * voxel
    if not np.all(np.isfinite(data)):
        raise InputError(path, "map holds NaN or infinite values")
    return DensityMap(data, voxel, origin)


def write_map(path: str | Path, dmap: DensityMap, dtype: np.dtype | str = np.float32) -> None:
    """Atomically write ``dmap`` as MRC2014 (axis order 1/2/3, origin in the header, Å)."""
    data = np.ascontiguousarray(dmap.data, dtype=dtype)
    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = tuple(float(v) for v in dmap.voxel_size)
        mrc.header.origin = tuple(float(o) for o in dmap.origin)
        mrc.header.nxstart = mrc.header.nystart = mrc.header.nzstart = 0
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 1, 2, 3
        mrc.update_header_stats()
