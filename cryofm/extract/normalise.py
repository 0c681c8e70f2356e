"""Background normalisation of extracted boxes, as RELION's ``normalise`` (``relion_preprocess --norm``).

RELION's definitions (``src/image.cpp``: ``normalise``, ``subtractBackgroundRamp``,
``calculateBackgroundAvgStddev``), followed here exactly:

* Pixel ``(row, col)`` of an ``n``-px box has logical coordinates ``i = row - n/2``, ``j = col - n/2``
  (RELION's Xmipp origin: the centre is pixel ``n/2``). The background is every pixel with
  ``i² + j² > r²``, strictly outside the circle of radius ``r = bg_radius`` px.
* Ramp removal (on by default, RELION's ``--no_ramp`` turns it off): the least-squares plane
  ``z = A·j + B·i + C`` fitted to the background pixels is subtracted from the whole box.
* Then the mean and the standard deviation of the background (population, divided by the number
  of background pixels) are computed, and every pixel becomes ``(v - mean) / std``; a box whose
  background std is below 1e-10 is left as it is (RELION warns and skips it).

RELION's optional dust removal (``--white_dust`` / ``--black_dust``, off by default) is not done.
The radius: RELION's "diameter background circle" is given in pixels of the extracted (binned)
box, default 75 % of the box (``bg_radius = 0.375 · n``); ``cryofm extract diameter=`` is in
micrograph pixels and becomes ``round(diameter / 2 / bin)``.
"""

from __future__ import annotations

import functools

import numpy as np


def background_mask(n: int, radius: float) -> np.ndarray:
    """[n, n] bool: True outside the circle of ``radius`` px around pixel (n/2, n/2)."""
    if 2 * radius > n:
        raise ValueError(f"background radius {radius} px does not fit in a {n} px box (RELION: "
                         "2 * bg_radius must not exceed the box)")
    i = np.arange(n) - n // 2
    return i[:, None] ** 2 + i[None, :] ** 2 > radius * radius


def default_radius(n: int) -> int:
    """RELION's default background radius: 75 % of the box diameter, ``round(0.375 · n)`` px."""
    return int(round(0.375 * n))


@functools.lru_cache(maxsize=8)
def _plan(n: int, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of the background pixels, their logical column j and row i, and the
    least-squares projector [3, n_bg] onto (A, B, C) of the plane ``A·j + B·i + C`` (one per box
    size and radius: computed once)."""
    bg = background_mask(n, radius)
    i, j = np.nonzero(bg)
    i, j = (i - n // 2).astype(np.float32), (j - n // 2).astype(np.float32)
    design = np.stack([j, i, np.ones_like(i)], axis=1).astype(np.float64)
    return np.flatnonzero(bg), j, i, np.linalg.pinv(design).astype(np.float32)


def normalise(boxes: np.ndarray, radius: float, ramp: bool = True, inplace: bool = False) -> np.ndarray:
    """RELION background normalisation of a stack [N, n, n] (or one box [n, n]); float32 out.

    Args:
        boxes: square boxes.
        radius: background radius in box pixels (see the module docstring).
        ramp: subtract the least-squares plane of the background first.
        inplace: overwrite ``boxes`` (a float32, C-contiguous array) instead of copying it.

    Float32 throughout (the plane fit a BLAS product, the mean and std NumPy's pairwise sums):
    within 1e-5 of a float64 computation at a fraction of its time. A box whose background std is
    below 1e-6 of its background's magnitude (RELION: 1e-10 in double precision) is not divided.
    """
    x = np.asarray(boxes, dtype=np.float32)
    if not (inplace and x is boxes and x.flags.c_contiguous):
        x = np.array(x, dtype=np.float32, order="C", copy=True)
    single = x.ndim == 2
    if single:
        x = x[None]
    n = x.shape[-1]
    if x.shape[-2] != n:
        raise ValueError(f"expected square boxes, got {x.shape[-2:]}")
    idx, bj, bi, proj = _plan(n, float(radius))
    vals = x.reshape(len(x), n * n)[:, idx]  # [N, n_bg] (a copy)
    size = np.abs(vals).max(axis=1)
    if ramp:
        coef = vals @ proj.T  # [N, 3]: A (per column), B (per row), C
        vals -= coef[:, 0, None] * bj[None, :]
        vals -= coef[:, 1, None] * bi[None, :]
        vals -= coef[:, 2, None]
    else:
        coef = np.zeros((len(x), 3), np.float32)
    mean = vals.mean(axis=1)
    std = vals.std(axis=1)
    ok = (std > 1e-6 * size) & (std >= 1e-10)
    scale = np.where(ok, 1.0 / np.where(ok, std, 1.0), 1.0).astype(np.float32)
    shift = (coef[:, 2] + np.where(ok, mean, 0.0)).astype(np.float32)
    grid = np.arange(n, dtype=np.float32) - n // 2
    # x := (x - A·j - B·i - C - mean) / std, in four passes over the pixels
    x -= (coef[:, 0, None] * grid[None, :])[:, None, :]
    x -= (coef[:, 1, None] * grid[None, :])[:, :, None]
    x -= shift[:, None, None]
    x *= scale[:, None, None]
    return x[0] if single else x
