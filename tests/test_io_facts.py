"""Per-experiment facts tables (CSV and YAML)."""

from __future__ import annotations

import math

import pytest

from cryofm.errors import InputError
from cryofm.io.facts import facts_for, read_facts


def test_csv_types_and_missing(tmp_path):
    p = tmp_path / "facts.csv"
    p.write_text("experiment,EMPIAR,MolecularWeight,Subunits,HasRNA,ProteinClass,EMDBResolution\n"
                 "E1,EMPIAR-10028,3200.5,80,true,ribosome,3.2\n"
                 "E2,EMPIAR-10076,,4,no,,\n")
    t = read_facts(p)
    assert t["E1"] == {"EMPIAR": "EMPIAR-10028", "MolecularWeight": 3200.5, "Subunits": 80, "HasRNA": True,
                       "ProteinClass": "ribosome", "EMDBResolution": 3.2}
    # empty cells are missing (left out), never 0
    assert t["E2"] == {"EMPIAR": "EMPIAR-10076", "Subunits": 4, "HasRNA": False}
    assert facts_for(p, "E2")["Subunits"] == 4
    assert facts_for(None, "anything") == {}


def test_yaml(tmp_path):
    p = tmp_path / "facts.yaml"
    p.write_text("E1:\n  MaxDiameter: 250\n  Symmetry: D7\n  SequenceCluster: groel\n"
                 "E2:\n  MaxDiameter: .nan\n")
    t = read_facts(p)
    assert t["E1"] == {"MaxDiameter": 250.0, "Symmetry": "D7", "SequenceCluster": "groel"}
    assert t["E2"] == {} and not any(isinstance(v, float) and math.isnan(v) for v in t["E2"].values())


def test_unknown_experiment_id(tmp_path):
    p = tmp_path / "facts.csv"
    p.write_text("experiment,MolecularWeight\nE1,100\n")
    with pytest.raises(InputError) as exc:
        facts_for(p, "E9")
    assert str(exc.value) == f"{p}: unknown experiment id 'E9' (not in the facts table)"


@pytest.mark.parametrize(("text", "problem"), [
    ("id,MolecularWeight\nE1,100\n", "facts table has no 'experiment' column"),
    ("experiment,Weight\nE1,100\n", "unknown field(s) ['Weight']"),
    ("experiment,Subunits\nE1,many\n", "experiment E1: field 'Subunits': cannot read 'many' as int"),
    ("experiment,Subunits\nE1,1\nE1,2\n", "experiment id(s) listed twice: ['E1']"),
])
def test_bad_tables(tmp_path, text, problem):
    p = tmp_path / "facts.csv"
    p.write_text(text)
    with pytest.raises(InputError) as exc:
        read_facts(p)
    assert str(exc.value).startswith(f"{p}: {problem}")
