"""``invert=auto``: is the protein dark or bright in these micrographs?

In a raw bright-field micrograph (motion-corrected MRC, CryoPPP PNG) particles are darker than the
ice around them; RELION's extracted particles, and cryofm's backbones (``backbone.json``
``particle_contrast``), have the protein bright. The test: in each box at a pick, the mean inside
the particle disk is compared with the mean of the rest of the box; when most picks are darker
inside, the micrographs hold dark particles. A split close to half (the picks do not sit on
particles, or the contrast is too weak to tell) is refused rather than guessed.
"""

from __future__ import annotations

import numpy as np

CONTRASTS = ("dark", "bright")


def inside_minus_outside(boxes: np.ndarray, radius: float) -> np.ndarray:
    """[N] mean inside the disk of ``radius`` px around box pixel (n/2, n/2) minus the mean outside."""
    b = np.asarray(boxes, dtype=np.float64)
    n = b.shape[-1]
    i = np.arange(n) - n // 2
    disk = i[:, None] ** 2 + i[None, :] ** 2 <= radius * radius
    if disk.all() or not disk.any():
        raise ValueError(f"particle radius {radius} px leaves no inside or no outside in a {n} px box")
    return b[:, disk].mean(axis=1) - b[:, ~disk].mean(axis=1)


def decide(differences: np.ndarray, margin: float = 0.1) -> tuple[str, float]:
    """(``dark`` | ``bright``, fraction of picks darker inside) from :func:`inside_minus_outside`.

    Raises ValueError when the fraction lies within ``margin`` of one half, or there are no picks.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no picks to measure the particle contrast on")
    frac = float((d < 0).mean())
    if abs(frac - 0.5) < margin:
        raise ValueError(f"{frac:.0%} of {d.size} picks are darker than their surroundings: the "
                         "particle contrast is unclear")
    return ("dark" if frac > 0.5 else "bright"), frac
