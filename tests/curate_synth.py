"""A hand-made experiments table whose sequence identities are known by construction.

Each variant of a random base sequence keeps exactly ``round(p · L)`` residues and changes every
other one to a different amino acid, so its identity to the base is ``p`` over an ungapped
alignment. Families (``L = 240``):

=============  =========================================================  ==================
experiments    chains                                                     expected cluster
=============  =========================================================  ==================
A, A50, A36    a; 50 % of a; 36 % of a (above the 30 % boundary)           one
B, B24         b; 24 % of b (below the boundary)                           two
C, C90         c; c's first 216 residues (90 % coverage)                   one
D, D70         d; d's first 168 residues (70 % coverage, below 0.8)        two
E1, E2, E3     (e, f); 60 % of e; 60 % of f: joined through E1            one
G, H           unrelated                                                   two
K0 .. K5       k; five 75 % variants of k (the selection family)           one
=============  =========================================================  ==================

That is 20 experiments, 11 chain clusters and 10 SequenceClusters.
"""

from __future__ import annotations

import numpy as np

AA = "ACDEFGHIKLMNPQRSTVWY"
L = 240
EXPECTED_CLUSTERS = [{"A", "A50", "A36"}, {"B"}, {"B24"}, {"C", "C90"}, {"D"}, {"D70"}, {"E1", "E2", "E3"},
                     {"G"}, {"H"}, {f"K{i}" for i in range(6)}]
N_CHAIN_CLUSTERS = 11


def random_sequence(rng: np.random.Generator, n: int = L) -> str:
    return "".join(rng.choice(list(AA), n))


def variant(seq: str, identity: float, rng: np.random.Generator) -> str:
    """``seq`` with exactly ``round((1 - identity) · len)`` residues changed to another amino acid."""
    s = list(seq)
    for i in rng.choice(len(s), int(round((1 - identity) * len(s))), replace=False):
        s[i] = rng.choice([a for a in AA if a != s[i]])
    return "".join(s)


def table_rows(seed: int = 0) -> list[dict[str, str]]:
    """Rows of the experiments table: experiment, sequence (chains split by ':'), facts."""
    rng = np.random.default_rng(seed)
    a, b, c, d, e, f, g, h, k = (random_sequence(rng) for _ in range(9))
    seqs = {"A": a, "A50": variant(a, 0.50, rng), "A36": variant(a, 0.36, rng), "B": b,
            "B24": variant(b, 0.24, rng), "C": c, "C90": c[:216], "D": d, "D70": d[:168], "E1": f"{e}:{f}",
            "E2": variant(e, 0.60, rng), "E3": variant(f, 0.60, rng), "G": g, "H": h, "K0": k}
    for i in range(1, 6):
        seqs[f"K{i}"] = variant(k, 0.75, rng)
    res = {"K0": "3.1", "K1": "2.5", "K2": "", "K3": "2.5", "K4": "4.0", "K5": "2.9"}
    particles = {"K1": "100000", "K3": "200000", "K0": "50000", "K4": "900000", "K5": "10"}
    return [{"experiment": name, "sequence": s, "EMPIAR": f"EMPIAR-{10000 + i}",
             "EMDBResolution": res.get(name, "3.0"), "Particles": particles.get(name, "1000")}
            for i, (name, s) in enumerate(seqs.items())]


def write_table(path, seed: int = 0) -> None:
    import pandas as pd

    pd.DataFrame(table_rows(seed)).to_csv(path, index=False)
