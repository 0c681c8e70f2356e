"""The exact fallback: identities and coverages of hand-made pairs, set cover and components."""

from __future__ import annotations

import numpy as np
import pytest

from cryofm.curate.pairwise import cluster, components, edges, identity, set_cover
from tests.curate_synth import random_sequence, variant


@pytest.mark.parametrize("p", [0.24, 0.36, 0.5, 0.75])
def test_identity_of_substitution_variants_is_the_fraction_kept(p):
    rng = np.random.default_rng(int(p * 100))
    a = random_sequence(rng, 240)
    b = variant(a, p, rng)
    ident, ca, cb = identity(a, b)
    # by construction round(p * 240) residues are identical along the diagonal; the best-scoring
    # alignment may trade a few gaps or trim mismatched ends for a little more identity
    assert p - 0.005 <= ident <= p + (0.02 if p > 0.3 else 0.04)
    assert ca > 0.9 and cb > 0.9
    assert (ident >= 0.3) == (p > 0.3)  # the boundary cases fall on their side


def test_fragments_cover_what_they_contain_and_end_gaps_are_free():
    rng = np.random.default_rng(1)
    a = random_sequence(rng, 240)
    ident, ca, cb = identity(a, a[:216])
    assert ident == 1.0 and ca == pytest.approx(0.9) and cb == 1.0
    ident, ca, cb = identity(a[24:], a)  # a fragment from the middle: still identity 1
    assert ident == 1.0 and ca == 1.0 and cb == pytest.approx(0.9)
    # an internal deletion of 10 residues: 230 identical pairs over 240 alignment columns
    ident, ca, cb = identity(a, a[:100] + a[110:])
    assert ident == pytest.approx(230 / 240) and ca == 1.0 and cb == 1.0
    # coverage 0.7 < 0.8: no edge; the length ratio alone rules the pair out before aligning
    assert edges([a, a[:168]], 0.3, 0.8) == []
    assert [(i, j) for i, j, _ in edges([a, a[:216]], 0.3, 0.8)] == [(0, 1)]


def test_set_cover_is_greedy_by_neighbours_and_components_are_transitive():
    # a path 0 - 1 - 2 - 3 - 4 and an isolated 5: set cover takes 1 (ties: longer, then earlier) with
    # 0 and 2, then 3 with 4; components join the whole path
    pairs = [(0, 1, 0.5), (1, 2, 0.5), (2, 3, 0.5), (3, 4, 0.5)]
    lengths = [100] * 6
    assert set_cover(6, pairs, lengths) == [1, 1, 1, 3, 3, 5]
    assert components(6, pairs) == [0, 0, 0, 0, 0, 5]
    lengths[3] = 120  # 3 is longer than 1 (both have two neighbours): it goes first
    assert set_cover(6, pairs, lengths) == [0, 0, 3, 3, 3, 5]


def test_cluster_on_a_star_of_variants():
    rng = np.random.default_rng(2)
    k = random_sequence(rng, 200)
    seqs = [variant(k, 0.4, rng) for _ in range(3)] + [k]
    # the variants are ~17 % identical to each other: only the base links them
    assert cluster(seqs, 0.3, 0.8) == [3, 3, 3, 3]
    assert cluster(seqs, 0.3, 0.8, linkage="connected") == [0, 0, 0, 0]
    assert cluster(seqs, 0.5, 0.8) == [0, 1, 2, 3]
