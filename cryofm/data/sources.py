"""A particle table (RELION / cryoSPARC metadata) → checked, streamed ``(image, record)`` items.

Before anything is written every stack the table names is opened (header only, memory-mapped) and
checked: present, a valid real-valued MRC of 2-D images (not a volume: a sub-tomogram is refused,
never ingested as its first slice), every referenced index inside the stack, image size equal to
the metadata's ``ImageSize``. Images are then read in runs of consecutive indices, one stack open
at a time, so memory stays flat however long the stacks are. A row with cryoSPARC ``blob/sign`` -1
yields its image negated (protein-bright) with ``ImageInverted`` set.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryofm.errors import InputError
from cryofm.io.mrc import open_stack, stack_header
from cryofm.io.particles import records

RUN = 64  # images per contiguous read (16 MiB at 256² float32)
OPEN_STACKS = 8  # stacks kept open at once (least recently used closed first)


def check_stacks(df: pd.DataFrame, path: str | Path) -> dict[str, tuple[int, tuple[int, int], float]]:
    """Open every stack's header; InputError naming the file on the first problem.

    Fills ``ImageSize`` and a missing ``ImagePixelSize`` (from the MRC header) in place.
    Returns ``{stack: (n_images, (rows, cols), voxel_size)}``.
    """
    info: dict[str, tuple[int, tuple[int, int], float]] = {}
    for stack, idx in df.groupby("_stack", sort=False)["_index"]:
        first = idx.index[0]
        name = df.at[first, "ImageName"]
        if not Path(stack).is_file():
            searched = df.at[first, "_searched"] if "_searched" in df else None
            where = f" (searched: {searched})" if searched else f" ({stack})"
            raise InputError(path, f"{name}: particle stack not found{where}")
        n, shape, voxel, ispg = stack_header(stack)
        if ispg >= 401:
            raise InputError(stack, f"a stack of 3-D volumes (MRC space group {ispg}; named by {name}): "
                                    "sub-tomograms are not supported, cryofm ingests 2-D particle images")
        bare = "@" not in str(name)
        if bare and n > 1:
            raise InputError(stack, f"{name} names one image, but the file holds {n} sections of "
                                    f"{shape[0]}x{shape[1]}: a 3-D volume (sub-tomogram?); cryofm ingests "
                                    "2-D particle images (a stack is named index@stack)")
        top = int(idx.max())
        if top >= n:
            bad = df.loc[idx.idxmax(), "ImageName"]
            row = int(idx.idxmax()) + 1
            raise InputError(path, f"row {row} ({bad}): image index {top + 1} (1-based; cryoSPARC blob/idx "
                                   f"{top}) is past the end of {stack} ({n} images)")
        info[str(stack)] = (n, shape, voxel)
    size = df["_stack"].map(lambda s: info[s][1][0]).astype("int64")
    if "ImageSize" in df:
        declared = pd.to_numeric(df["ImageSize"], errors="coerce")
        clash = declared.notna() & (declared != size)
        if clash.any():
            i = int(np.argmax(clash.to_numpy()))
            raise InputError(path, f"{df['ImageName'].iloc[i]}: metadata ImageSize "
                                   f"{int(declared.iloc[i])} but "
                                   f"the stack holds {size.iloc[i]}x{size.iloc[i]} images")
    df["ImageSize"] = size
    voxel = df["_stack"].map(lambda s: info[s][2]).astype(float)
    if "ImagePixelSize" not in df:
        df["ImagePixelSize"] = voxel
    else:
        df["ImagePixelSize"] = df["ImagePixelSize"].astype(float).fillna(voxel)
    return info


def _runs(stacks: np.ndarray, index: np.ndarray, start: int) -> Iterator[tuple[str, int, int, int]]:
    """(stack, first index, count, first row) for runs of consecutive rows with consecutive indices."""
    n = len(index)
    i = start
    while i < n:
        j = i + 1
        while j < n and j - i < RUN and stacks[j] == stacks[i] and index[j] == index[j - 1] + 1:
            j += 1
        yield stacks[i], int(index[i]), j - i, i
        i = j


def table_items(df: pd.DataFrame, start: int = 0) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """``(float32 image, record)`` for rows ``start..``, reading consecutive images in one go.

    A reader thread reads the next run of images while the caller processes the current one (the
    read waits on the disk with the GIL released), so a cold-cache ingest keeps the CPU busy.
    """
    stacks = df["_stack"].to_numpy()
    index = df["_index"].to_numpy()
    sign = df["_sign"].to_numpy() if "_sign" in df else None
    open_: OrderedDict[str, Any] = OrderedDict()  # a few stacks stay open: rows may interleave stacks

    def get(stack: str) -> Any:
        if stack in open_:
            open_.move_to_end(stack)
        else:
            if len(open_) >= OPEN_STACKS:  # no read is in flight when this is called
                open_.popitem(last=False)[1].close()
            open_[stack] = open_stack(stack)
        return open_[stack]

    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cryofm-read")

    def read(run: tuple[str, int, int, int]) -> Any:
        stack, first, count, _ = run
        return reader.submit(get(stack).read_range, first, first + count)

    try:
        runs = _runs(stacks, index, start)
        nxt = next(runs, None)
        pending = read(nxt) if nxt is not None else None
        while nxt is not None:
            stack, _, count, row = nxt
            block = pending.result()
            nxt = next(runs, None)
            if nxt is not None:
                pending = read(nxt)
            recs = records(df.iloc[row:row + count])  # per run: memory does not grow with the table
            for k in range(count):
                rec = recs[k]
                rec["_path"] = stack
                if sign is not None and sign[row + k] < 0:  # cryoSPARC protein-dark: flip to bright
                    rec["ImageInverted"] = True
                    yield -block[k], rec
                else:
                    yield block[k], rec
    finally:
        reader.shutdown(wait=True, cancel_futures=True)  # an in-flight read ends before the closes
        for s in open_.values():
            s.close()


def nan_to_none(value: Any) -> Any:
    """NaN → None (for JSON summaries)."""
    return None if isinstance(value, float) and math.isnan(value) else value
