"""Is the atomic model placed in the map's frame? The fraction of atoms inside the map's contour.

Rigid fitting is out of scope: the model must already sit in the map (as deposited PDB/EMDB pairs
do). An atom is *inside* when the map, trilinearly interpolated at its position, is at or above
the contour level; atoms outside the box are outside. A placed model at the recommended contour
typically has most atoms inside; an unplaced one (PDB 1OEL against EMD-1997) has almost none.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cryofm.io.mapio import DensityMap


def auto_contour(data: np.ndarray, n_std: float = 2.0) -> float:
    """A contour level when none is given: ``mean + n_std * std`` of the map."""
    return float(data.mean() + n_std * data.std())


def fraction_inside(dmap: DensityMap, xyz: np.ndarray, contour: float) -> float:
    """Fraction of atoms (positions in Å) at which ``dmap`` is >= ``contour``."""
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
    return float(np.mean(values >= contour))
