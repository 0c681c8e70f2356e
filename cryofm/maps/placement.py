"""Is the atomic model placed in the map's frame? The fraction of atoms inside the map's contour.

Rigid fitting is out of scope: the model must already sit in the map (as deposited PDB/EMDB pairs
do). An atom is *inside* when the map, trilinearly interpolated at its position, is above the contour
level; atoms outside the box are outside. Without a given contour, the level enclosing about the
model's volume is used (12 Å^3 per heavy atom by default, a little under a protein's ~17 Å^3, so
the contour holds the model's denser core). GroEL placed in its simulated map: 0.95 of the atoms
inside; PDB 1OEL against EMD-1997 (not placed): 0.17, and 0.39 after centring it in the box.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryofm.io.mapio import DensityMap


def volume_contour(data: np.ndarray, voxel_volume: float, volume: float) -> float:
    """The contour level that encloses ``volume`` Å^3 of the map (its highest voxels).

    Used when no contour is given, with ``volume = n_atoms * volume_per_atom``: the contour then
    encloses about the model's own volume, whatever the box size or the map's scale.
    """
    frac = min(max(volume / (data.size * voxel_volume), 0.0), 1.0)
    return float(np.quantile(data, 1.0 - frac))


def fraction_inside(dmap: DensityMap, xyz: np.ndarray, contour: float) -> float:
    """Fraction of atoms (positions in Å) at which ``dmap`` is above ``contour``."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    if len(xyz) == 0:
        return 0.0
    u = dmap.world_to_index(xyz)
    n = np.array(dmap.shape_xyz)
    in_box = np.all((u >= -0.5) & (u <= n - 0.5), axis=1)
    values = np.full(len(xyz), -np.inf)
    if in_box.any():
        coords = u[in_box][:, ::-1].T  # (z, y, x) rows for map_coordinates
        values[in_box] = ndimage.map_coordinates(dmap.data, coords, order=1, mode="nearest")
    return float(np.mean(values > contour))
