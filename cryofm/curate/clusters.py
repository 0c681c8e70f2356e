"""From chain clusters to experiment clusters: experiments sharing any chain cluster join one
``SequenceCluster`` (connected components of the experiment–chain-cluster graph).

Chains are clustered as unique sequences (an identical chain in many experiments is aligned once).
Names are stable for the same input: chain clusters ``C0001, ...`` and sequence clusters
``SC0001, ...`` numbered by size (largest first), then by their first experiment id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cryofm.curate.sequences import Chain

COLUMNS = ["experiment", "chain", "length", "chain_cluster", "representative", "source"]


def unique_sequences(chains: Sequence[Chain]) -> tuple[list[str], list[int]]:
    """The distinct sequences (in first-seen order) and each chain's index into them."""
    index: dict[str, int] = {}
    of = [index.setdefault(c.sequence, len(index)) for c in chains]
    return list(index), of


def _names(groups: dict[object, list[str]], prefix: str) -> dict[object, str]:
    order = sorted(groups, key=lambda g: (-len(groups[g]), sorted(groups[g])[0]))
    width = max(4, len(str(len(order))))
    return {g: f"{prefix}{k + 1:0{width}d}" for k, g in enumerate(order)}


def cluster_experiments(experiments: Sequence[str], chains: Sequence[Chain],
                        cluster_fn: Callable[[list[str]], list[int]]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Chain table (with its chain cluster) and ``{experiment: SequenceCluster}``.

    Args:
        experiments: every experiment id (one without chains is its own cluster).
        chains: their chains.
        cluster_fn: unique sequences -> representative index per sequence (MMseqs2 or pairwise).
    """
    seqs, of = unique_sequences(chains)
    rep = cluster_fn(seqs) if seqs else []
    by_rep: dict[int, list[str]] = {}
    for c, u in zip(chains, of, strict=True):
        by_rep.setdefault(rep[u], []).append(c.experiment)
    cname = _names(by_rep, "C")
    first_chain = {}
    for c, u in zip(chains, of, strict=True):
        first_chain.setdefault(u, f"{c.experiment}/{c.name}")
    table = pd.DataFrame([{"experiment": c.experiment, "chain": c.name, "length": len(c.sequence),
                           "chain_cluster": cname[rep[u]], "representative": first_chain[rep[u]],
                           "source": c.source} for c, u in zip(chains, of, strict=True)],
                         columns=COLUMNS)
    exps = list(experiments)
    pos = {e: i for i, e in enumerate(exps)}
    clus = {n: len(exps) + i for i, n in enumerate(sorted(set(cname.values())))}
    i = np.array([pos[e] for e in table["experiment"]], dtype=np.int64)
    j = np.array([clus[c] for c in table["chain_cluster"]], dtype=np.int64)
    n = len(exps) + len(clus)
    _, lab = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    groups: dict[int, list[str]] = {}
    for e in exps:
        groups.setdefault(int(lab[pos[e]]), []).append(e)
    sname = _names(groups, "SC")
    return table, {e: sname[int(lab[pos[e]])] for e in exps}
