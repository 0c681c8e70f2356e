"""The MMseqs2 path (run when the `mmseqs` binary is installed: CI installs the Debian package):
the same SequenceClusters as the exact pairwise path on the hand-made table."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from cryofm.curate.run import curate
from tests.curate_synth import EXPECTED_CLUSTERS, N_CHAIN_CLUSTERS, write_table

pytestmark = pytest.mark.skipif(shutil.which("mmseqs") is None,
                                reason="mmseqs not installed (Debian: apt-get install mmseqs2)")


def _clusters(out):
    f = pd.read_csv(out / "facts.csv", dtype=str, keep_default_na=False)
    return sorted(sorted(g["experiment"]) for _, g in f.groupby("SequenceCluster")), f


def test_mmseqs_and_pairwise_agree_on_the_test_table(tmp_path):
    write_table(tmp_path / "t.csv")
    prefer = ["EMDBResolution", "-Particles"]
    mm = curate(tmp_path / "t.csv", tmp_path / "mm", method="mmseqs", prefer=prefer, progress=False)
    pw = curate(tmp_path / "t.csv", tmp_path / "pw", method="pairwise", prefer=prefer, progress=False)
    assert mm["method"] == "mmseqs2" and mm["command"][1] == "easy-cluster"
    assert "--min-seq-id" in mm["command"] and "--single-step-clustering" in mm["command"]
    assert mm["method_text"].startswith("MMseqs2 ")
    assert mm["n_chain_clusters"] == pw["n_chain_clusters"] == N_CHAIN_CLUSTERS
    got_mm, f_mm = _clusters(tmp_path / "mm")
    got_pw, f_pw = _clusters(tmp_path / "pw")
    assert got_mm == got_pw == sorted(sorted(c) for c in EXPECTED_CLUSTERS)
    # the same names and the same selection, whichever path ran
    pd.testing.assert_frame_equal(f_mm, f_pw)
    assert "MMseqs2" in (tmp_path / "mm" / "summary.md").read_text()


def test_connected_linkage_agrees_too(tmp_path):
    write_table(tmp_path / "t.csv")
    mm = curate(tmp_path / "t.csv", tmp_path / "mm", method="mmseqs", linkage="connected", progress=False)
    curate(tmp_path / "t.csv", tmp_path / "pw", method="pairwise", linkage="connected", progress=False)
    assert mm["command"][1] == "easy-search"
    assert _clusters(tmp_path / "mm")[0] == _clusters(tmp_path / "pw")[0] == \
        sorted(sorted(c) for c in EXPECTED_CLUSTERS)
