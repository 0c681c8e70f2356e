"""`cryofm curate` on the hand-made table (exact pairwise path): clusters, the multi-chain join, the
selection, facts.csv read by ingest's facts reader and honoured by split; one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cryofm.cli import main as cli_main
from cryofm.data import ingest
from cryofm.data.manifest import merge_manifests
from cryofm.data.split import make_split
from cryofm.io.facts import read_facts
from tests.curate_synth import EXPECTED_CLUSTERS, N_CHAIN_CLUSTERS, write_table


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curate")
    write_table(tmp / "experiments.csv")
    return tmp


def _run(capsys, *args):
    rc = cli_main(["curate", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_pairwise_path_gives_the_known_clusters(curated, capsys):
    out = curated / "pw"
    rc, o, err = _run(capsys, f"experiments={curated / 'experiments.csv'}", f"out={out}", "method=pairwise",
                      "prefer=[EMDBResolution,-Particles]", "progress=false")
    assert rc == 0, err
    assert o.startswith("clustering: exact pairwise global alignment (Biopython PairwiseAligner")
    assert (f"20 experiments, 21 chains (21 unique) -> {N_CHAIN_CLUSTERS} chain clusters -> 10 "
            "SequenceClusters; 18 selected (max_per_cluster=4)") in o
    facts = pd.read_csv(out / "facts.csv", dtype=str, keep_default_na=False)
    assert list(facts.columns) == ["experiment", "EMPIAR", "EMDBResolution", "SequenceCluster", "Selected"]
    got = sorted(sorted(g["experiment"]) for _, g in facts.groupby("SequenceCluster"))
    assert got == sorted(sorted(c) for c in EXPECTED_CLUSTERS)
    by = facts.set_index("experiment")
    # boundaries: 36 % joins, 24 % does not; coverage 0.9 joins, 0.7 does not
    assert by.at["A36", "SequenceCluster"] == by.at["A", "SequenceCluster"]
    assert by.at["B24", "SequenceCluster"] != by.at["B", "SequenceCluster"]
    assert by.at["C90", "SequenceCluster"] == by.at["C", "SequenceCluster"]
    assert by.at["D70", "SequenceCluster"] != by.at["D", "SequenceCluster"]
    # multi-chain join: E2 (like E1's chain e) and E3 (like E1's chain f) share no chain cluster,
    # but both share one with E1
    chains = pd.read_csv(out / "chains.csv").set_index(["experiment", "chain"])
    assert chains.at[("E2", "inline_1"), "chain_cluster"] == chains.at[("E1", "inline_1"), "chain_cluster"]
    assert chains.at[("E3", "inline_1"), "chain_cluster"] == chains.at[("E1", "inline_2"), "chain_cluster"]
    assert chains.at[("E2", "inline_1"), "chain_cluster"] != chains.at[("E3", "inline_1"), "chain_cluster"]
    assert by.at["E2", "SequenceCluster"] == by.at["E3", "SequenceCluster"] == by.at["E1", "SequenceCluster"]
    # selection in the six-member family: K3, K1, K5, K0 kept; K4 and K2 (no resolution) not
    assert by.loc[["K3", "K1", "K5", "K0"], "Selected"].eq("true").all()
    assert by.loc[["K4", "K2"], "Selected"].eq("false").all()
    sel = pd.read_csv(out / "selection.csv").set_index("experiment")
    assert sel.at["K4", "Reason"].startswith("not selected: rank 5 of 6")
    clusters = pd.read_csv(out / "clusters.csv")
    assert clusters.iloc[0]["members"] == "K3 K1 K5 K0 K4 K2" and clusters.iloc[0]["selected"] == 4
    # the one-page summary says which path ran; curate.json the counts
    assert "exact pairwise global alignment" in (out / "summary.md").read_text()
    assert "exact pairwise global alignment" in (out / "summary.html").read_text()
    info = json.loads((out / "curate.json").read_text())
    assert info["method"] == "pairwise" and info["n_clusters"] == 10
    # linkage=connected: every pair above the threshold joined; the same clusters here
    rc, o, _ = _run(capsys, f"experiments={curated / 'experiments.csv'}", f"out={curated / 'pwc'}",
                    "method=pairwise", "linkage=connected", "progress=false")
    assert rc == 0 and "-> 10 SequenceClusters" in o


def test_facts_feed_ingest_and_split_keeps_clusters_together(curated, capsys, tmp_path):
    out = curated / "pw2"
    assert _run(capsys, f"experiments={curated / 'experiments.csv'}", f"out={out}", "method=pairwise",
                "progress=false")[0] == 0
    facts = read_facts(out / "facts.csv")  # ingest's reader: schema names and types only
    assert facts["A50"]["SequenceCluster"] == facts["A"]["SequenceCluster"] and facts["A"]["Selected"] is True
    # no prefer=: ties everywhere, the experiment id decides (K0..K3 kept of six)
    assert [facts[f"K{i}"]["Selected"] for i in range(6)] == [True] * 4 + [False] * 2
    rng = np.random.default_rng(0)
    exps = ["A", "A50", "A36", "B", "B24", "E1", "E2", "E3", "G", "H"]
    for e in exps:
        items = [(rng.standard_normal((16, 16)).astype(np.float32), {"ImagePixelSize": 2.0})
                 for _ in range(3)]
        ingest.ingest_arrays(tmp_path, e, items, n=3, box=16, facts=facts[e], merge=False, progress=False)
    merge_manifests(tmp_path)
    for seed in range(5):
        side = make_split(tmp_path, seed=seed, fractions=(0.5, 0.25, 0.25), group_key="SequenceCluster",
                          write=False)["assignment"]
        for group in (("A", "A50", "A36"), ("E1", "E2", "E3")):
            assert len({side[e] for e in group}) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["min_seq_id=30"], "min_seq_id: must be in (0, 1]"),
    (["prefer=[Resolution]"], "prefer: no column 'Resolution'"),
    (["linkage=single"], "linkage: must be one of cluster, connected"),
    (["max_per_cluster=0"], "max_per_cluster: must be >= 1"),
])
def test_bad_options_one_line_exit_2_nothing_written(curated, capsys, tmp_path, args, message):
    rc, _, err = _run(capsys, f"experiments={curated / 'experiments.csv'}", f"out={tmp_path / 'o'}",
                      "method=pairwise", *args)
    assert rc == 2 and err.startswith(f"cryofm curate: error: {message}")
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_bad_table_and_missing_binary(curated, capsys, tmp_path, monkeypatch):
    t = tmp_path / "t.csv"
    t.write_text("experiment,sequence,EMDBResolution\nA,ACDEFGHIKLMNPQRSTVWYACDEF,2.5\nB,,3\n")
    rc, _, err = _run(capsys, f"experiments={t}", f"out={tmp_path / 'o'}", "method=pairwise")
    assert rc == 2 and err.startswith(f"cryofm curate: error: {t}: experiment B has no protein sequence")
    rc, o, _ = _run(capsys, f"experiments={t}", f"out={tmp_path / 'o'}", "method=pairwise", "missing=own")
    assert rc == 0 and "1 experiment(s) without a sequence, each its own cluster" in o
    t.write_text("experiment,sequence,EMDBResolution\nA,ACDEFGHIKLMNPQRSTVWYACDEF,high\n")
    rc, _, err = _run(capsys, f"experiments={t}", f"out={tmp_path / 'o2'}", "method=pairwise")
    assert rc == 2 and "experiment A: field 'EMDBResolution'" in err and not (tmp_path / "o2").exists()
    import cryofm.curate.mmseqs as mm

    monkeypatch.setattr(mm, "binary", lambda name="mmseqs": None)
    rc, _, err = _run(capsys, f"experiments={curated / 'experiments.csv'}", f"out={tmp_path / 'o3'}",
                      "method=mmseqs")
    assert rc == 2 and err.startswith("cryofm curate: error: method: mmseqs not found on PATH")
    rc, o, _ = _run(capsys, f"experiments={curated / 'experiments.csv'}", f"out={tmp_path / 'o3'}",
                    "progress=false")  # method=auto without the binary: the exact path, and it says so
    assert rc == 0 and "exact pairwise global alignment (Biopython PairwiseAligner, BLOSUM62, gaps -11/-1, " \
        "free end gaps; mmseqs not installed)" in o
