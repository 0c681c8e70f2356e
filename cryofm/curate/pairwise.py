"""The exact fallback: pairwise global-alignment identity (Biopython's ``PairwiseAligner``) and the
clustering MMseqs2 does on it.

Alignment: global with free end gaps (so a fragment is not charged for the residues it lacks),
BLOSUM62, gap open -11 / extend -1 (MMseqs2's defaults). From the best alignment:

* identity = identical pairs / alignment columns between the first and the last aligned pair
  (internal gaps count, end gaps do not): MMseqs2's ``--seq-id-mode 0`` (identity over the
  alignment length);
* coverage of each sequence = the span of it that the alignment covers / its length. A pair is an
  edge when identity >= ``min_seq_id`` and both coverages >= ``coverage`` (MMseqs2's
  ``--cov-mode 0``). Pairs whose length ratio is below ``coverage`` cannot cover the longer one and
  are not aligned.

Clustering (``linkage="cluster"``) is MMseqs2's default ``--cluster-mode 0``, greedy set cover: the
sequence with the most not-yet-clustered neighbours becomes a representative and takes them all
(ties: the longer sequence, then the earlier one), until none is left. ``linkage="connected"``
takes the connected components of the edges instead (no pair above the threshold is ever split).
Cost: one alignment per pair, so this path is for small tables (``max_sequences``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from Bio import Align
from Bio.Align import substitution_matrices
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm


def make_aligner() -> Align.PairwiseAligner:
    """Global alignment, BLOSUM62, gaps -11 / -1, free end gaps."""
    al = Align.PairwiseAligner(mode="global", substitution_matrix=substitution_matrices.load("BLOSUM62"))
    al.open_gap_score, al.extend_gap_score = -11.0, -1.0
    al.end_gap_score = 0.0
    return al


def identity(a: str, b: str, aligner: Align.PairwiseAligner | None = None) -> tuple[float, float, float]:
    """(identity, coverage of ``a``, coverage of ``b``) of the best global alignment (module docstring)."""
    al = aligner or make_aligner()
    aln = al.align(a, b)[0]
    ta, tb = aln.aligned  # aligned blocks: [(start, end), ...] in a and in b
    if len(ta) == 0:
        return 0.0, 0.0, 0.0
    same = sum(sum(x == y for x, y in zip(a[s:e], b[q:f], strict=True))
               for (s, e), (q, f) in zip(ta, tb, strict=True))
    pairs = sum(int(e - s) for s, e in ta)
    gaps = sum(int(ta[i + 1][0] - ta[i][1]) + int(tb[i + 1][0] - tb[i][1]) for i in range(len(ta) - 1))
    return (same / (pairs + gaps), float(ta[-1][1] - ta[0][0]) / len(a), float(tb[-1][1] - tb[0][0]) / len(b))


def edges(seqs: Sequence[str], min_seq_id: float, coverage: float,
          progress: bool = False) -> list[tuple[int, int, float]]:
    """All pairs (i < j, identity) that pass both thresholds."""
    al = make_aligner()
    lengths = np.array([len(s) for s in seqs])
    out = []
    pairs = [(i, j) for i in range(len(seqs)) for j in range(i + 1, len(seqs))
             if min(lengths[i], lengths[j]) >= coverage * max(lengths[i], lengths[j])]
    for i, j in tqdm(pairs, desc="align", unit="pair", disable=not progress):
        ident, ca, cb = identity(seqs[i], seqs[j], al)
        if ident >= min_seq_id and ca >= coverage and cb >= coverage:
            out.append((i, j, ident))
    return out


def set_cover(n: int, pairs: Sequence[tuple[int, int, float]], lengths: Sequence[int]) -> list[int]:
    """Representative index of each of ``n`` sequences by greedy set cover (module docstring)."""
    nbr: list[set[int]] = [set() for _ in range(n)]
    for i, j, _ in pairs:
        nbr[i].add(j)
        nbr[j].add(i)
    rep = [-1] * n
    left = set(range(n))
    while left:
        best = max(left, key=lambda k: (len(nbr[k] & left), lengths[k], -k))
        for k in (nbr[best] & left) | {best}:
            rep[k] = best
        left -= nbr[best] | {best}
    return rep


def components(n: int, pairs: Sequence[tuple[int, int, float]]) -> list[int]:
    """Smallest member index of each sequence's connected component."""
    if not pairs:
        return list(range(n))
    i, j = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    _, lab = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    first = {}
    for k, c in enumerate(lab):
        first.setdefault(c, k)
    return [first[c] for c in lab]


def cluster(seqs: Sequence[str], min_seq_id: float, coverage: float, linkage: str = "cluster",
            progress: bool = False) -> list[int]:
    """Representative (cluster) index per sequence, by the exact path."""
    pairs = edges(seqs, min_seq_id, coverage, progress)
    if linkage == "connected":
        return components(len(seqs), pairs)
    return set_cover(len(seqs), pairs, [len(s) for s in seqs])
