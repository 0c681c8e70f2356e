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


def normalise(boxes: np.ndarray, radius: float, ramp: bool = True) -> np.ndarray:
    """RELION background normalisation of a stack [N, n, n] (or one box [n, n]); float32 out.

    Args:
        boxes: square boxes.
        radius: background radius in box pixels (see the module docstring).
        ramp: subtract the least-squares plane of the background first.
    """
    x = np.asarray(boxes, dtype=np.float64)
    single = x.ndim == 2
    if single:
        x = x[None]
    n = x.shape[-1]
    if x.shape[-2] != n:
        raise ValueError(f"expected square boxes, got {x.shape[-2:]}")
    bg = background_mask(n, radius)
    i, j = np.nonzero(bg)
    vals = x[:, i, j]  # [N, n_bg]
    if ramp:
        design = np.stack([j - n // 2, i - n // 2, np.ones_like(i)], axis=1).astype(np.float64)
        coef = vals @ np.linalg.pinv(design).T  # [N, 3]: A (per column), B (per row), C
        grid = np.arange(n, dtype=np.float64) - n // 2
        x = x - (coef[:, 0, None, None] * grid[None, None, :] + coef[:, 1, None, None] * grid[None, :, None]
                 + coef[:, 2, None, None])
        vals = x[:, i, j]
    mean = vals.mean(axis=1)
    std = vals.std(axis=1)
    ok = std >= 1e-10
    out = np.where(ok[:, None, None], (x - mean[:, None, None]) / np.where(ok, std, 1.0)[:, None, None], x)
    out = out.astype(np.float32)
    return out[0] if single else out
