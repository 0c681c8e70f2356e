"""MRC / MRCS particle stacks through ``mrcfile``, memory-mapped, with header checks.

Many real stacks (RELION, older software) lack the ``MAP`` id string or a machine stamp, so files are
opened permissively and checked here instead: the mode is a real-valued one, the dimensions are
positive and square per image, and the file holds all the bytes the header promises. Every failure
is an :class:`~cryofm.errors.InputError` naming the file.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from cryofm.errors import InputError

# MRC modes with real pixel values that mrcfile maps to NumPy: int8, int16, float32, uint16, float16
REAL_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_ITEMSIZE = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}


class Stack:
    """An open, memory-mapped image stack: ``len(stack)`` images of ``shape`` (rows, columns).

    Use as a context manager or call :meth:`close`. ``voxel_size`` is the header's Å/px (NaN when
    the header gives 0). Index with 0-based ints or slices; images come back as float32 copies.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._mrc = _open_checked(self.path)
        data = self._mrc.data
        self._data = data[None] if data.ndim == 2 else data
        self.shape: tuple[int, int] = tuple(self._data.shape[-2:])  # type: ignore[assignment]
        vs = float(self._mrc.voxel_size.x)
        self.voxel_size = vs if vs > 0 else math.nan
        self.mode = int(self._mrc.header.mode)
        # MRC2014 space group: 0 images / image stack, 1 one volume, >= 401 a stack of volumes. Many
        # programs stamp 2-D stacks 1 (EMPIAR-10076's particles), so only >= 401 says "3-D" alone.
        self.ispg = int(self._mrc.header.ispg)
        self._offset = 1024 + int(self._mrc.header.nsymbt)  # first image byte
        self._fd: int | None = None

    def __len__(self) -> int:
        return int(self._data.shape[0])

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` (0-based) as float32 [rows, cols]; InputError past the end."""
        if not 0 <= index < len(self):
            raise InputError(self.path, f"image index {index + 1} (1-based) is past the end of the "
                                        f"stack ({len(self)} images)")
        return np.array(self._data[index], dtype=np.float32)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Images ``start..stop-1`` (0-based) as float32 [n, rows, cols] in one ``pread`` (read-only).

        Streaming goes through ``pread`` rather than the memory map: pages touched through a map stay
        in the process's resident set until it is unmapped, so reading a long stack that way would
        grow memory with the stack; a plain read keeps it flat.
        """
        if start < 0 or stop > len(self) or start > stop:
            raise InputError(self.path, f"image range {start + 1}..{stop} (1-based) is outside the "
                                        f"stack ({len(self)} images)")
        dtype = self._data.dtype
        frame = self.shape[0] * self.shape[1] * dtype.itemsize
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        want = (stop - start) * frame
        buf = os.pread(self._fd, want, self._offset + start * frame)
        if len(buf) != want:
            raise InputError(self.path, f"short read: images {start + 1}..{stop} are cut off")
        arr = np.frombuffer(buf, dtype=dtype).reshape(stop - start, *self.shape)
        if dtype == np.dtype(np.float32):  # native float32: the bytes object is the array, no copy
            return arr
        return arr.astype(np.float32)

    def close(self) -> None:
        self._mrc.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_checked(path: Path) -> mrcfile.mrcmemmap.MrcMemmap:
    if not path.is_file():
        raise InputError(path, "particle stack not found")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = mrcfile.mmap(path, mode="r", permissive=True)
        except (ValueError, OSError) as exc:
            raise InputError(path, f"not a readable MRC file ({exc})") from None
    h = mrc.header
    mode = int(h.mode)
    nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
    problem = None
    if mode not in REAL_MODES:
        problem = f"unsupported MRC mode {mode} (expected one of {sorted(REAL_MODES)}: real-valued images)"
    elif min(nx, ny, nz) <= 0:
        problem = f"bad dimensions in the MRC header (nx={nx}, ny={ny}, nz={nz})"
    else:
        expected = 1024 + int(h.nsymbt) + nx * ny * nz * _ITEMSIZE[mode]
        size = path.stat().st_size
        if size < expected or mrc.data is None:
            problem = (f"truncated or corrupt MRC: the header promises {nz} images of {ny}x{nx} "
                       f"({expected} bytes) but the file has {size} bytes")
        elif nx != ny:
            problem = f"particle images are not square ({ny}x{nx})"
    if problem is None and mrc.data is None:
        msgs = "; ".join(str(w.message) for w in caught) or "no data block"
        problem = f"corrupt MRC ({msgs})"
    if problem:
        mrc.close()
        raise InputError(path, problem)
    return mrc


def open_stack(path: str | Path) -> Stack:
    """Open a particle stack memory-mapped, after checking its header (see module doc)."""
    return Stack(path)


def stack_info(path: str | Path) -> tuple[int, tuple[int, int], float]:
    """(number of images, (rows, cols), header voxel size Å/px or NaN) after the header checks."""
    with open_stack(path) as s:
        return len(s), s.shape, s.voxel_size


def stack_header(path: str | Path) -> tuple[int, tuple[int, int], float, int]:
    """Like :func:`stack_info`, plus the header's space group (``ispg``: >= 401 is a volume stack)."""
    with open_stack(path) as s:
        return len(s), s.shape, s.voxel_size, s.ispg


def write_stack(path: str | Path, images: np.ndarray, voxel_size: float = 1.0) -> None:
    """Write an [n, H, W] (or [H, W]) array as an MRC stack (float32 and float16 kept, else float32)."""
    arr = np.asarray(images)
    if arr.dtype not in (np.float32, np.float16, np.int8, np.int16, np.uint16):
        arr = arr.astype(np.float32)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(arr)
        m.voxel_size = voxel_size
        if arr.ndim == 3:
            m.set_image_stack()
