"""Split labelled maps by map, stratified by resolution.

Cubes of one map never straddle splits (neighbouring cubes overlap and share structure). Maps are
sorted by resolution and taken in consecutive strata of ``K`` maps (``K = 1 / smallest fraction``,
10 for 80/10/10); inside each stratum a seeded permutation deals the ``K`` slots to the splits in
proportion to ``fractions``. Every split so covers the whole resolution range (1-4 Å in the
labelled-map dataset) instead of, say, the held-out maps all being the worst ones.
"""

from __future__ import annotations

import math

import numpy as np

SPLITS = ("train", "val", "heldout")


def resolution_split(resolution: dict[str, float], fractions: dict[str, float] | None = None,
                     seed: int = 0) -> dict[str, str]:
    """Map id -> split name (``train`` / ``val`` / ``heldout``), stratified by resolution (Å).

    Maps with an unknown (NaN) resolution are placed after the others. A last, partial stratum
    takes the first slots of its permutation (so a lone map lands in a random split).
    """
    fractions = dict(fractions or {"train": 0.8, "val": 0.1, "heldout": 0.1})
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(f"split fractions must be non-negative with a positive sum: {fractions}")
    total = sum(fractions.values())
    names = [s for s in fractions if fractions[s] > 0]
    smallest = min(fractions[s] / total for s in names)
    k = max(1, round(1.0 / smallest))
    # Slots per split in a stratum of k, by largest remainder.
    raw = {s: fractions[s] / total * k for s in names}
    slots = {s: math.floor(r) for s, r in raw.items()}
    for s in sorted(names, key=lambda s: raw[s] - slots[s], reverse=True)[: k - sum(slots.values())]:
        slots[s] += 1
    deck = [s for s in names for _ in range(slots[s])]
    ids = sorted(resolution, key=lambda i: (math.isnan(resolution[i]), resolution[i], i))
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for start in range(0, len(ids), k):
        order = rng.permutation(k)
        for slot, map_id in zip(order, ids[start:start + k], strict=False):
            out[map_id] = deck[slot]
    return out
