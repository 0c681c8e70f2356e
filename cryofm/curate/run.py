"""The curation job: read sequences, cluster chains (MMseqs2 or the exact fallback), join
experiments into SequenceClusters, select representatives, write the outputs (:mod:`.report`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from cryofm.curate import mmseqs, pairwise
from cryofm.curate.clusters import cluster_experiments, unique_sequences
from cryofm.curate.report import write_outputs
from cryofm.curate.selection import parse_prefer, select
from cryofm.curate.sequences import chains_of, read_table
from cryofm.errors import InputError

METHODS = ("auto", "mmseqs", "pairwise")
LINKAGES = ("cluster", "connected")


def _check(min_seq_id: float, coverage: float, method: str, linkage: str, polymer: str, missing: str) -> None:
    if not 0 < min_seq_id <= 1:
        raise InputError("min_seq_id", f"must be in (0, 1] (a fraction, 0.3 = 30 %), got {min_seq_id}")
    if not 0 <= coverage <= 1:
        raise InputError("coverage", f"must be in [0, 1], got {coverage}")
    choices = (("method", method, METHODS), ("linkage", linkage, LINKAGES),
               ("polymer", polymer, ("protein", "all")), ("missing", missing, ("error", "own")))
    for key, value, allowed in choices:
        if value not in allowed:
            raise InputError(key, f"must be one of {', '.join(allowed)}, got {value!r}")


def curate(experiments: str | Path, out: str | Path, min_seq_id: float = 0.3, coverage: float = 0.8,
           max_per_cluster: int = 4, prefer: Sequence[str] = (), method: str = "auto",
           linkage: str = "cluster", polymer: str = "protein", min_length: int = 20, missing: str = "error",
           threads: int = 1, max_pairwise: int = 1000, mmseqs_args: Sequence[str] = (),
           cascaded: bool = False, progress: bool = True, root: str | Path | None = None) -> dict[str, Any]:
    """Curate the experiments of one table into ``out``; returns the summary (also curate.json)."""
    _check(min_seq_id, coverage, method, linkage, polymer, missing)
    if int(max_per_cluster) < 1:
        raise InputError("max_per_cluster", f"must be >= 1, got {max_per_cluster}")
    path = Path(experiments)
    table = read_table(path)
    keys = parse_prefer(prefer, list(table.columns))
    chains = chains_of(table, path, polymer, min_length, root)
    with_chains = {c.experiment for c in chains}
    lacking = [e for e in table["experiment"] if e not in with_chains]
    if lacking and missing == "error":
        raise InputError(path, f"experiment {lacking[0]} has no {polymer} sequence of >= {min_length} "
                               f"residues ({len(lacking)} such; missing=own makes each its own cluster)")
    seqs, _ = unique_sequences(chains)
    exe = mmseqs.binary()
    if method == "mmseqs" and exe is None:
        raise InputError("method", "mmseqs not found on PATH (Debian/Ubuntu: apt-get install mmseqs2; "
                                   "conda: mmseqs2), or method=pairwise")
    use_mmseqs = method == "mmseqs" or (method == "auto" and exe is not None)
    command: list[str] = []
    if use_mmseqs:
        ver = mmseqs.version(exe)

        def fn(s: list[str]) -> list[int]:
            rep, cmd = mmseqs.cluster(s, min_seq_id, coverage, linkage, exe, threads, mmseqs_args, cascaded)
            command[:] = cmd
            return rep

        steps = "" if cascaded else " --single-step-clustering 1"
        how = (f"easy-cluster --cluster-mode 0{steps} (greedy set cover)" if linkage == "cluster"
               else "easy-search -s 7.5 (all against all, then connected components)")
        text = f"MMseqs2 {ver}: mmseqs {how} --min-seq-id {min_seq_id} -c {coverage} --cov-mode 0"
        name = "mmseqs2"
    else:
        if len(seqs) > max_pairwise:
            raise InputError("method", f"{len(seqs)} unique sequences are too many for the exact pairwise "
                                       f"path (max_pairwise={max_pairwise}); install MMseqs2 "
                                       "(apt-get install mmseqs2)")
        fn = partial(pairwise.cluster, min_seq_id=min_seq_id, coverage=coverage, linkage=linkage,
                     progress=progress)
        why = "mmseqs not installed" if exe is None else "method=pairwise"
        then = ("greedy set cover as MMseqs2 --cluster-mode 0" if linkage == "cluster"
                else "connected components")
        text = (f"exact pairwise global alignment (Biopython PairwiseAligner, BLOSUM62, gaps -11/-1, free "
                f"end gaps; {why}): identity over the aligned columns >= {min_seq_id}, coverage of both >= "
                f"{coverage}, then {then}")
        name = "pairwise"
    chain_table, clusters = cluster_experiments(list(table["experiment"]), chains, fn)
    sel = select(table, clusters, keys, int(max_per_cluster))
    info = {"method": name, "method_text": text, "command": command, "min_seq_id": min_seq_id,
            "coverage": coverage, "linkage": linkage, "max_per_cluster": int(max_per_cluster),
            "prefer": [("-" if k.descending else "") + k.column for k in keys], "polymer": polymer,
            "min_length": min_length, "n_experiments": len(table), "n_chains": len(chains),
            "n_unique": len(seqs), "n_chain_clusters": int(chain_table["chain_cluster"].nunique()),
            "n_clusters": len(set(clusters.values())), "n_selected": int(sel["Selected"].sum()),
            "without_sequence": lacking, "table": str(path)}
    info["outputs"] = {k: str(v) for k, v in
                       write_outputs(Path(out), table, sel, chain_table, info, str(path)).items()}
    return info
