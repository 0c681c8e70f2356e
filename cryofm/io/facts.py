"""Per-experiment facts (sample, resolution, ids) from a small CSV or YAML table.

CSV: a header with an ``experiment`` column and schema field names (``EMPIAR``, ``MolecularWeight``,
``ProteinClass``, ``SequenceCluster``, ...). YAML: a mapping ``experiment id -> {field: value}``.
Values are converted to the schema's dtype; empty cells are missing (never 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cryofm import schema
from cryofm.errors import InputError


def _check_fields(names: list[str], path: Path) -> None:
    unknown = [n for n in names if n not in schema.BY_NAME]
    if unknown:
        raise InputError(path, f"unknown field(s) {unknown} (use schema names, e.g. MolecularWeight)")


def read_facts(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{experiment: {field: value}}`` with values in schema dtypes (missing values left out)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "facts table not found")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            obj = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InputError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(obj, dict) or not all(isinstance(v, dict) for v in obj.values()):
            raise InputError(path, "expected a mapping: experiment id -> {field: value}")
        rows = {str(k): v for k, v in obj.items()}
    else:
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(path, f"not a readable CSV table ({exc})") from None
        if "experiment" not in table.columns:
            raise InputError(path, "facts table has no 'experiment' column")
        dup = table["experiment"][table["experiment"].duplicated()].tolist()
        if dup:
            raise InputError(path, f"experiment id(s) listed twice: {dup}")
        rows = {r.pop("experiment"): r for r in table.to_dict(orient="records")}
    out: dict[str, dict[str, Any]] = {}
    for exp, row in rows.items():
        row = {k: v for k, v in row.items() if k != "experiment"}
        _check_fields(list(row), path)
        rec = {}
        for k, v in row.items():
            try:
                val = schema.coerce(k, v)
            except ValueError as exc:
                raise InputError(path, f"experiment {exp}: {exc}") from None
            if not schema.is_missing(val):
                rec[k] = val
        out[exp] = rec
    return out


def facts_for(path: str | Path | None, experiment: str) -> dict[str, Any]:
    """The facts of one experiment; InputError when the table does not list it ({} without a table)."""
    if path is None:
        return {}
    table = read_facts(path)
    if experiment not in table:
        raise InputError(path, f"unknown experiment id {experiment!r} (not in the facts table)")
    return table[experiment]
