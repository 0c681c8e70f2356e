"""Particle stacks as RELION writes them: one ``.mrcs`` per micrograph, float32 (MRC mode 2),
an image stack (``ispg`` 0, ``nz`` = number of particles), voxel size = pixel size after binning."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np

from cryofm.utils.atomic import atomic_path


def write_stack(path: str | Path, images: np.ndarray, pixel_size: float | None) -> Path:
    """Atomically write ``images`` [N, n, n] as an MRC image stack (Å/px in the header when known)."""
    path = Path(path)
    data = np.ascontiguousarray(images, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"a stack is [N, n, n], got shape {data.shape}")
    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as m:
        m.set_data(data)
        m.set_image_stack()
        if pixel_size:
            m.voxel_size = float(pixel_size)
        # the statistics mrcfile's update_header_stats() writes, without its float64 copy of the
        # stack (half the time of writing a stack)
        m.header.dmin, m.header.dmax = float(data.min()), float(data.max())
        m.header.dmean = float(data.mean(dtype=np.float64))
        m.header.rms = float(data.std())
    return path


def stack_length(path: str | Path) -> int | None:
    """Images in an existing stack (from the header), None when the file is missing or unreadable."""
    try:
        with mrcfile.open(path, header_only=True, permissive=True) as m:
            return int(m.header.nz)
    except (OSError, ValueError):
        return None
