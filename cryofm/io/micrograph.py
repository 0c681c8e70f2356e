"""Read whole micrographs: MRC (mrcfile) and 8/16-bit PNG / TIFF / JPEG (Pillow, tifffile).

Returns a float32 [H, W] array in the file's own units, row 0 = first row of the file (the same
frame as pick coordinates: x = column, y = row). MRC stacks with several frames (movies, ``.mrcs``)
are averaged; colour images are converted to luminance.
"""

from __future__ import annotations

import glob
from pathlib import Path

import mrcfile
import numpy as np

from cryofm.errors import InputError

MRC_SUFFIXES = (".mrc", ".mrcs", ".map")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
SUFFIXES = MRC_SUFFIXES + IMAGE_SUFFIXES


def read_micrograph(path: str | Path) -> np.ndarray:
    """A micrograph as float32 [H, W]; InputError for missing, unreadable or non-2-D files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in MRC_SUFFIXES:
            with mrcfile.open(path, permissive=True) as mrc:
                if mrc.data is None:
                    raise InputError(path, "MRC file holds no data")
                a = np.asarray(mrc.data, dtype=np.float32)
            if a.ndim == 3:
                a = a.mean(axis=0)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            a = np.asarray(tifffile.imread(path)).astype(np.float32)
            if a.ndim == 3 and a.shape[-1] in (3, 4):
                a = a[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            elif a.ndim == 3:
                a = a.mean(axis=0)
        elif suffix in IMAGE_SUFFIXES:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                    im = im.convert("L")
                a = np.asarray(im).astype(np.float32)
        else:
            raise InputError(path, f"unknown micrograph suffix {suffix!r} (one of {', '.join(SUFFIXES)})")
    except InputError:
        raise
    except Exception as exc:  # corrupt header, truncated file, unsupported mode
        raise InputError(path, f"cannot read micrograph: {str(exc).splitlines()[0]}") from exc
    if a.ndim != 2 or min(a.shape) < 2:
        raise InputError(path, f"expected a 2-D micrograph, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(path, "micrograph contains NaN or infinite pixels")
    return a


def list_micrographs(spec: str | Path) -> list[Path]:
    """Micrograph files named by a directory (every supported suffix in it), a glob, or one file.

    Sorted by name; InputError when nothing matches.
    """
    p = Path(str(spec))
    if p.is_dir():
        files = [f for f in sorted(p.iterdir()) if f.suffix.lower() in SUFFIXES and f.is_file()]
    elif p.is_file():
        files = [p]
    else:
        files = [Path(f) for f in sorted(glob.glob(str(spec))) if Path(f).suffix.lower() in SUFFIXES]
    if not files:
        raise InputError(spec, "no micrographs here (.mrc, .png, .tif, .jpg)")
    return files
