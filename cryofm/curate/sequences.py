"""The experiments table and the chain sequences of each experiment.

A row per experiment: an ``experiment`` id, then any of ``fasta`` (a FASTA file, every record a
chain), ``model`` (an mmCIF / PDB model read with gemmi: one sequence per polymer entity, from its
full sequence (SEQRES / ``entity_poly_seq``); from the modelled chains when the file defines no
entity sequence, identical chains counted once) and ``sequence`` (inline one-letter sequences,
several chains separated by ``:`` or ``;``). Paths are relative to the table's folder and may not
lead outside it (or outside ``root=`` when given: not opened). Every other
column is a fact (schema fields such as ``EMDBResolution`` go on to ``facts.csv``; others, such as
a particle count, can still rank the selection).

Only protein chains are clustered (``polymer: protein``; ``all`` adds nucleic acids): RNA and DNA
share no sequence space with proteins and would join ribosomes by their rRNA. Chains shorter than
``min_length`` residues (tags, peptides) are left out, as their identities say little.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import gemmi
import pandas as pd

from cryofm.errors import InputError

SOURCE_COLUMNS = ("fasta", "model", "sequence")
_LETTERS = re.compile(r"^[A-Za-z*\-]+$")


@dataclass(frozen=True)
class Chain:
    """One chain sequence of one experiment (``source``: where it was read, for the report)."""

    experiment: str
    name: str
    sequence: str
    source: str


def read_table(path: str | Path) -> pd.DataFrame:
    """The experiments table (CSV, or TSV by suffix), all cells as strings; InputError when unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "experiments table not found")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        t = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable table ({str(exc).splitlines()[0]})") from None
    t.columns = [c.strip() for c in t.columns]
    if "experiment" not in t.columns:
        raise InputError(path, "the experiments table has no 'experiment' column")
    if not any(c in t.columns for c in SOURCE_COLUMNS):
        raise InputError(path, f"the experiments table needs a sequence column ({', '.join(SOURCE_COLUMNS)})")
    t["experiment"] = t["experiment"].str.strip()
    if (t["experiment"] == "").any():
        line = int((t["experiment"] == "").to_numpy().argmax()) + 2
        raise InputError(path, f"line {line}: empty experiment id")
    dup = t["experiment"][t["experiment"].duplicated()].tolist()
    if dup:
        raise InputError(path, f"experiment id(s) listed twice: {dup[:5]}")
    return t


def _clean(seq: str, where: str) -> str:
    s = re.sub(r"\s+", "", seq).upper().rstrip("*")
    if not s or not _LETTERS.match(s):
        raise InputError(where, f"not a one-letter sequence: {seq[:30]!r}")
    return s.replace("-", "")


def read_fasta(path: Path) -> list[tuple[str, str]]:
    """(name, sequence) per FASTA record (gemmi's reader)."""
    try:
        records = gemmi.read_pir_or_fasta(path.read_text())
    except (OSError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable FASTA file ({exc})") from None
    if not records:
        raise InputError(path, "no FASTA records")
    return [(r.header.split()[0] if r.header.split() else f"seq{i + 1}", _clean(r.seq, str(path)))
            for i, r in enumerate(records)]


def read_model(path: Path, polymer: str = "protein") -> list[tuple[str, str]]:
    """(name, sequence) per polymer entity of a PDB / mmCIF model (see the module docstring)."""
    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(path, f"cannot read atomic model: {exc}") from None
    st.setup_entities()
    peptide = (gemmi.PolymerType.PeptideL, gemmi.PolymerType.PeptideD)

    def wanted(ptype) -> bool:
        return ptype in peptide or (polymer == "all" and ptype != gemmi.PolymerType.Unknown)

    out: list[tuple[str, str]] = []
    for ent in st.entities:
        if ent.entity_type == gemmi.EntityType.Polymer and ent.full_sequence and wanted(ent.polymer_type):
            seq = gemmi.one_letter_code([gemmi.Entity.first_mon(m) for m in ent.full_sequence])
            out.append((f"entity_{ent.name}", seq.upper()))
    if out or any(e.full_sequence for e in st.entities):
        return out
    if len(st) == 0:
        raise InputError(path, "no model in file")
    seen: dict[str, str] = {}
    for ch in st[0]:
        poly = ch.get_polymer()
        if poly.length() and wanted(poly.check_polymer_type()):
            seen.setdefault(poly.make_one_letter_sequence().replace("-", "").upper(), f"chain_{ch.name}")
    return [(name, seq) for seq, name in seen.items()]


def chains_of(table: pd.DataFrame, path: Path, polymer: str = "protein", min_length: int = 20,
              root: str | Path | None = None) -> list[Chain]:
    """Every experiment's chains of the table at ``path`` (InputError naming the file or row when one
    cannot be read, or leads outside ``root``: the table's folder unless given)."""
    from cryofm.io.paths import table_file

    out: list[Chain] = []
    for row in table.to_dict(orient="records"):
        exp = row["experiment"]
        found: list[Chain] = []
        for col in SOURCE_COLUMNS:
            value = str(row.get(col, "") or "").strip()
            if not value:
                continue
            if col == "sequence":
                parts = [p for p in re.split(r"[:;]", value) if p.strip()]
                found += [Chain(exp, f"inline_{i + 1}", _clean(p, f"experiment {exp}"), "inline")
                          for i, p in enumerate(parts)]
                continue
            p = table_file(value, path, root, f"experiment {exp}, {col}")
            if not p.is_file():
                raise InputError(p, f"experiment {exp}: {col} file not found")
            recs = read_fasta(p) if col == "fasta" else read_model(p, polymer)
            found += [Chain(exp, name, seq, str(p)) for name, seq in recs]
        out += [c for c in found if len(c.sequence) >= min_length]
    return out
