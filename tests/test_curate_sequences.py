"""Reading experiments' sequences: gemmi entities of a real PDB / mmCIF model, FASTA, inline chains."""

from __future__ import annotations

import gemmi
import pandas as pd
import pytest

from cryofm.curate.sequences import chains_of, read_fasta, read_model, read_table
from cryofm.errors import InputError
from tests.conftest import shared_file

GROEL_START = "AAKDVKFGNDAGVKMLRGVNVLADAVKVTLGPKGRNVVLDKSFGAPTITKDGVSVAREIE"


def test_1oel_seven_identical_chains_are_one_entity():
    pdb = shared_file("emd1997_groel", "1oel.pdb")
    recs = read_model(pdb)
    assert len(recs) == 1  # 7 chains, one polymer entity (the water entity is not a polymer)
    name, seq = recs[0]
    assert len(seq) == 547 and seq.startswith(GROEL_START)  # the SEQRES sequence, 547 residues


def test_mmcif_and_a_pdb_without_seqres(tmp_path):
    pdb = shared_file("emd1997_groel", "1oel.pdb")
    st = gemmi.read_structure(str(pdb))
    st.setup_entities()
    doc = st.make_mmcif_document()
    doc.write_file(str(tmp_path / "1oel.cif"))
    cif = read_model(tmp_path / "1oel.cif")
    assert [s for _, s in cif] == [s for _, s in read_model(pdb)]
    # without SEQRES: the modelled chains, identical ones once (524 modelled residues per chain)
    lines = [ln for ln in pdb.read_text().splitlines() if not ln.startswith("SEQRES")]
    (tmp_path / "noseqres.pdb").write_text("\n".join(lines) + "\n")
    recs = read_model(tmp_path / "noseqres.pdb")
    assert len(recs) == 1 and len(recs[0][1]) == 524 and recs[0][0] == "chain_A"
    assert cif[0][1].startswith(recs[0][1])  # residues 1-524 of 547 are modelled


def test_table_rows_fasta_model_and_inline_chains(tmp_path):
    (tmp_path / "two.fasta").write_text(">chainA some protein\nMKTAYIAKQRQISFVKSHFSRQ\nLEERLGLIEVQ\n"
                                        ">chainB\nGSHMLEDPVDAFQKLKE*\n")
    pd.DataFrame([{"experiment": "E1", "fasta": "two.fasta", "sequence": "", "EMDB": "EMD-1"},
                  {"experiment": "E2", "fasta": "", "sequence": "MKTAYIAKQRQISFVKSHFS:ACDEFGHIKLMNPQRSTVWY",
                   "EMDB": ""}]).to_csv(tmp_path / "t.csv", index=False)
    t = read_table(tmp_path / "t.csv")
    chains = chains_of(t, tmp_path / "t.csv", min_length=5)
    assert [(c.experiment, c.name, len(c.sequence)) for c in chains] == [
        ("E1", "chainA", 33), ("E1", "chainB", 17), ("E2", "inline_1", 20), ("E2", "inline_2", 20)]
    assert read_fasta(tmp_path / "two.fasta")[1][1] == "GSHMLEDPVDAFQKLKE"  # stop codon dropped
    names = [c.name for c in chains_of(t, tmp_path / "t.csv", min_length=18)]
    assert names == ["chainA", "inline_1", "inline_2"]


def test_bad_tables_name_the_problem(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,sequence\nA,ACDEFG\n")
    with pytest.raises(InputError, match="no 'experiment' column"):
        read_table(p)
    p.write_text("experiment,EMDB\nA,EMD-1\n")
    with pytest.raises(InputError, match="needs a sequence column"):
        read_table(p)
    p.write_text("experiment,sequence\nA,ACDEFG\nA,KLMN\n")
    with pytest.raises(InputError, match="listed twice"):
        read_table(p)
    p.write_text("experiment,sequence,model\nA,AC1DE,\n")
    with pytest.raises(InputError, match="not a one-letter sequence"):
        chains_of(read_table(p), p)
    p.write_text("experiment,sequence,model\nA,,missing.cif\n")
    with pytest.raises(InputError, match="model file not found") as exc:
        chains_of(read_table(p), p)
    assert exc.value.path == str(tmp_path / "missing.cif")


def test_a_model_and_an_inline_homologue_join_one_cluster(tmp_path):
    import numpy as np

    from cryofm.curate.run import curate
    from tests.curate_synth import random_sequence, variant

    pdb = shared_file("emd1997_groel", "1oel.pdb")
    groel = read_model(pdb)[0][1]
    rng = np.random.default_rng(5)
    pd.DataFrame([{"experiment": "EMD-1997", "model": str(pdb), "sequence": ""},
                  {"experiment": "groel-homologue", "model": "", "sequence": variant(groel, 0.55, rng)},
                  {"experiment": "other", "model": "", "sequence": random_sequence(rng, 500)}]
                 ).to_csv(tmp_path / "t.csv", index=False)
    info = curate(tmp_path / "t.csv", tmp_path / "out", method="pairwise", progress=False,
                  root=pdb.parent)  # the model lies outside the table's folder
    f = pd.read_csv(tmp_path / "out" / "facts.csv").set_index("experiment")
    assert info["n_chains"] == 3  # the 7 chains of 1OEL are one entity
    assert f.at["EMD-1997", "SequenceCluster"] == f.at["groel-homologue", "SequenceCluster"] != \
        f.at["other", "SequenceCluster"]


@pytest.mark.parametrize("name", ["../outside.fasta", "ABSOLUTE", "sub/../../outside.fasta"])
def test_table_files_outside_its_folder_are_refused_unopened(tmp_path, name):
    outside = tmp_path / "outside.fasta"
    outside.write_text(">x\nMKTAYIAKQRQISFVKSHFSRQ\n")
    d = tmp_path / "tables"
    d.mkdir()
    name = str(outside) if name == "ABSOLUTE" else name
    p = d / "t.csv"
    pd.DataFrame([{"experiment": "A", "fasta": name}]).to_csv(p, index=False)
    with pytest.raises(InputError, match=r"experiment A, fasta: .* leads outside .*tables \(the table's "
                                         r"folder\); not opened") as exc:
        chains_of(read_table(p), p, min_length=5)
    assert exc.value.path == str(p)
    # root= naming a folder that holds the file allows it
    assert [c.name for c in chains_of(read_table(p), p, min_length=5, root=tmp_path)] == ["x"]

