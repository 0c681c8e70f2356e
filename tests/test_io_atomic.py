import numpy as np
import pytest

from cryofm.errors import InputError
from cryofm.io.atomic import read_model

PDB_LINES = """\
ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00 10.00           N
ATOM      2  CA  ALA A   1       1.458   0.000   0.000  1.00 10.00           C
ATOM      3  C   ALA A   1       2.009   1.420   0.000  1.00 10.00           C
ATOM      4  O   ALA A   1       1.251   2.390   0.000  1.00 10.00           O
ATOM      5  CB  ALA A   1       1.988  -0.773  -1.199  1.00 10.00           C
HETATM    6  O   HOH A 101      10.000  10.000  10.000  1.00 10.00           O
END
"""


def test_hand_made_model_atoms_names_and_mass(tmp_path):
    p = tmp_path / "ala.pdb"
    p.write_text(PDB_LINES)
    m = read_model(p, assembly=True)
    assert len(m) == 5  # water removed
    assert list(m.atom_name) == ["N", "CA", "C", "O", "CB"]
    np.testing.assert_allclose(m.xyz[1], [1.458, 0, 0])
    # N + 3 C + O, standard weights
    assert m.mass_kda() == pytest.approx((14.007 + 3 * 12.011 + 15.999) / 1000, rel=1e-3)
    brute = max(np.linalg.norm(a - b) for a in m.xyz for b in m.xyz)
    assert m.max_diameter() == pytest.approx(brute)


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_model(tmp_path / "nope.pdb")


def test_groel_biomt_assembly_is_14mer(shared_data):
    path = shared_data / "emd1997_groel" / "1oel.pdb"
    asym = read_model(path, assembly=False)
    full = read_model(path, assembly=True)
    assert asym.n_chains == 7 and full.n_chains == 14
    assert len(full) == 2 * len(asym)
    # GroEL 14-mer: ~800 kDa of protein (57 kDa per subunit; some residues unmodelled)
    assert 700 < full.mass_kda() < 830
    # the second BIOMT operator is a 2-fold about x: y, z -> -y, -z
    np.testing.assert_allclose(full.xyz[len(asym):, 1], -asym.xyz[:, 1], atol=1e-3)


def test_assembly_naming_missing_chain_is_one_line_error(tmp_path):
    p = tmp_path / "bad.pdb"
    biomt = ("REMARK 350 BIOMOLECULE: 1\n"
             "REMARK 350 APPLY THE FOLLOWING TO CHAINS: B\n"
             "REMARK 350   BIOMT1   1  1.000000  0.000000  0.000000        0.00000\n"
             "REMARK 350   BIOMT2   1  0.000000  1.000000  0.000000        0.00000\n"
             "REMARK 350   BIOMT3   1  0.000000  0.000000  1.000000        0.00000\n")
    p.write_text(biomt + PDB_LINES)
    try:
        m = read_model(p, assembly=True)
    except InputError as exc:
        assert "assembly" in str(exc) and str(p) in str(exc)
    else:  # a gemmi that skips the missing chain yields an empty assembly, refused as no atoms
        raise AssertionError(f"expected InputError, got {len(m)} atoms")
