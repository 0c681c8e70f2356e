"""The particle table every metadata reader returns, and the helpers they share.

A particle table is a :class:`pandas.DataFrame` with one row per particle: columns named after
schema fields (``DefocusU``, ``AngleRot``, ``ImagePixelSize``, ... in schema units) plus private
columns: ``_stack`` (absolute path of the image stack), ``_index`` (0-based image index in it),
``_path`` (the metadata file the row came from, for error messages), and optionally ``_sign``
(cryoSPARC ``blob/sign``: -1 where the stored images are protein-dark) and ``_searched`` (the
folders searched for the stacks, for the not-found message).

The readers return ``_stack`` as written in the file; :func:`read_particles` resolves it inside the
folder the user named (:mod:`cryofm.io.paths`). ``df.attrs["stack_notes"]`` lists substitutions
(a same-named stack used where the named one does not exist).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cryofm import schema
from cryofm.errors import InputError

PRIVATE = ("_stack", "_index", "_path", "_sign", "_searched")
# Fields that cannot be zero or negative: software writes 0 for "not measured" (e.g. RELION's
# rlnCtfMaxResolution 0.0), which the schema stores as missing, never as 0.
POSITIVE = ("ImagePixelSize", "Voltage", "CtfMaxResolution", "ClassResolution", "ImageSize",
            "MicrographShapeX", "MicrographShapeY", "ClassNumber")
_IMAGE_NAME = re.compile(r"^\s*(\d+)@(.+?)\s*$")


def parse_image_name(name: str, path: str | Path) -> tuple[int, str]:
    """RELION ``'000012@stack.mrcs'`` → (11, ``'stack.mrcs'``): 0-based index and stack name.

    A bare file name (no ``@``) is a single-image file: index 0.
    """
    m = _IMAGE_NAME.match(str(name))
    if m:
        index = int(m.group(1))
        if index < 1:
            raise InputError(path, f"bad image name {name!r}: indices are 1-based")
        return index - 1, m.group(2)
    name = str(name).strip()
    if not name or "@" in name:
        raise InputError(path, f"bad image name {name!r} (expected 'index@stack')")
    return 0, name


def check_pixel_size(psize: pd.Series, key: str, names: np.ndarray, path: str | Path) -> None:
    """InputError naming the key and the first row whose pixel size is not a positive number.

    Nothing is substituted: a zero, negative or unreadable pixel size is an error, never the MRC
    header's value (which is often a placeholder 1.0).
    """
    ok = (psize > 0) & np.isfinite(psize)
    if not ok.all():
        i = int(np.argmin(ok.to_numpy()))
        raise InputError(path, f"{key}: row {i + 1} ({names[i]}): pixel size {psize.iloc[i]} is not a "
                               "positive number of Å/px")


def finish_table(df: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Coerce schema columns to their dtypes, fill derived fields, check the private columns.

    Derived: ``CoordinateX/YFrac`` from coordinates and micrograph shape (and back), ``ImageName``.
    """
    for col in PRIVATE[:2]:
        if col not in df:
            raise InputError(path, f"reader produced no {col} column")
    df = df.reset_index(drop=True)
    df["_path"] = str(path)
    for col in list(df.columns):
        if col in PRIVATE:
            continue
        f = schema.BY_NAME.get(col)
        if f is None:
            continue
        try:
            if f.dtype == "float":
                df[col] = pd.to_numeric(df[col], errors="raise").astype(np.float64)
            elif f.dtype == "int":
                df[col] = pd.to_numeric(df[col], errors="raise").round().astype("Int64")
            elif f.dtype == "str":
                df[col] = df[col].astype(str)
        except (TypeError, ValueError):
            raise InputError(path, f"column for {col} has non-numeric values") from None
    for col in POSITIVE:
        if col in df:
            df[col] = df[col].where(df[col] > 0)
    shape_x, shape_y = df.get("MicrographShapeX"), df.get("MicrographShapeY")
    if shape_x is not None and shape_y is not None:
        if "CoordinateX" in df and "CoordinateXFrac" not in df:
            df["CoordinateXFrac"] = df["CoordinateX"] / shape_x.astype(float)
            df["CoordinateYFrac"] = df["CoordinateY"] / shape_y.astype(float)
        elif "CoordinateXFrac" in df and "CoordinateX" not in df:
            df["CoordinateX"] = df["CoordinateXFrac"] * shape_x.astype(float)
            df["CoordinateY"] = df["CoordinateYFrac"] * shape_y.astype(float)
    if "ImageName" not in df:
        df["ImageName"] = [f"{i + 1}@{Path(s).name}" for i, s in zip(df["_index"], df["_stack"], strict=True)]
    if "ClassECA" not in df and "ClassESS" in df and "ClassNumber" in df:
        df["ClassECA"] = class_eca(df["ClassNumber"], df["ClassESS"])
    return df


def class_eca(classes: pd.Series, ess: pd.Series) -> pd.Series:
    """Per particle, the ECA of its 2D class: the mean of ``ClassESS`` over the class's particles.

    cryoSPARC's 2D classification gives every particle ``alignments2D/class_ess``, the effective number
    of classes its posterior is spread over (1 = assigned to one class with certainty); the per-class
    ECA ("effective classes assigned") is the mean of that over the class's particles. Computed over
    the particles in the file (before duplicate removal), so it is the class's value when the file
    holds whole classes, as a Select 2D output does. Missing where the class or the ESS is missing.
    """
    known = classes.notna() & ess.notna()
    means = ess[known].groupby(classes[known]).mean()
    return classes.map(means).where(known).astype(np.float64)


def records(df: pd.DataFrame) -> list[dict]:
    """Table rows as record dicts (schema columns and ``_path``; NaN / <NA> → the field's missing)."""
    cols = [c for c in df.columns if c in schema.BY_NAME or c == "_path"]
    out = []
    for row in df[cols].itertuples(index=False, name=None):
        rec = {}
        for c, v in zip(cols, row, strict=True):
            if v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                continue
            rec[c] = v.item() if isinstance(v, np.generic) else v
        out.append(rec)
    return out


def read_particles(path: str | Path, root: str | Path | None = None,
                   stack: str | Path | None = None) -> pd.DataFrame:
    """Read RELION ``.star`` or cryoSPARC ``.cs`` particle metadata into a particle table.

    Args:
        path: the metadata file.
        root: folder the stack paths in the metadata are relative to, and that they must stay inside
            (default: the inferred RELION / cryoSPARC project directory, else the file's folder; see
            :mod:`cryofm.io.paths`).
        stack: one stack that holds all images, mapped by index (overrides the names in the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "is a folder, not a particle metadata file (.star / .cs)" if path.is_dir()
                         else "particle metadata file not found")
    suffix = path.suffix.lower()
    if suffix == ".star":
        from cryofm.io.star import read_star_particles
        df, kind = read_star_particles(path), "relion"
    elif suffix == ".cs":
        from cryofm.io.cryosparc import read_cs_particles
        df, kind = read_cs_particles(path), "cryosparc"
    else:
        raise InputError(path, f"unknown particle metadata format {suffix!r} (expected .star or .cs)")
    if stack is not None:
        s = Path(stack).resolve()
        df["_stack"] = str(s)
        df["ImageName"] = [f"{i + 1}@{s.name}" for i in df["_index"]]
        df.attrs["stack_notes"] = []
        return df
    from cryofm.io.paths import StackResolver

    resolver = StackResolver(path, root, kind)
    names = df["_stack"].astype(str)
    first = ~names.duplicated()
    where = {name: resolver.resolve(name, int(i), str(df["ImageName"].iat[i]))
             for i, name in zip(np.flatnonzero(first.to_numpy()), names[first], strict=True)}
    df["_stack"] = names.map(where)
    df["_searched"] = resolver.searched
    df.attrs["stack_notes"] = list(resolver.notes)
    return df
