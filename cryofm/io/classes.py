"""Per-class 2D-classification annotations joined onto particles by ``ClassNumber``.

cryoPANDA records each particle's 2D-class resolution. It lives beside the particles, in the
classification's class table:

* RELION ``run_itNNN_model.star``: block ``model_classes``, one row per class in class order
  (class k is row k, 1-based), ``rlnEstimatedResolution`` in Å (``rlnClassDistribution`` kept too);
* cryoSPARC ``*_class_averages.cs``: one row per class, ``blob/idx`` the 0-based class index and
  ``blob/res_A`` the class resolution in Å.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryofm.errors import InputError


def read_class_table(path: str | Path) -> pd.DataFrame:
    """``ClassNumber`` (1-based) → ``ClassResolution`` (Å) table from a RELION model STAR or a
    cryoSPARC class-averages ``.cs``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "class table not found")
    if path.suffix.lower() == ".cs":
        from cryofm.io.cryosparc import load_cs

        cs = load_cs(path)
        if "blob/res_A" not in (cs.dtype.names or ()):
            raise InputError(path, "class-averages .cs has no blob/res_A (class resolution)")
        idx = cs["blob/idx"].astype(np.int64) if "blob/idx" in cs.dtype.names else np.arange(len(cs))
        return pd.DataFrame({"ClassNumber": idx + 1, "ClassResolution": cs["blob/res_A"].astype(float)})
    from cryofm.io.star import read_star_blocks

    blocks = read_star_blocks(path)
    table = blocks.get("model_classes")
    if table is None or "rlnEstimatedResolution" not in table.columns:
        raise InputError(path, "no model_classes block with rlnEstimatedResolution (expected a RELION "
                               "run_itNNN_model.star)")
    return pd.DataFrame({"ClassNumber": np.arange(1, len(table) + 1),
                         "ClassResolution": pd.to_numeric(table["rlnEstimatedResolution"]).to_numpy(float)})


def join_classes(df: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Add ``ClassResolution`` to a particle table from the class table at ``path``.

    A class resolution of 0 or less (RELION writes 999 or 0 for empty classes) is missing; a particle
    whose class is not in the table is an error naming the class.
    """
    if "ClassNumber" not in df or df["ClassNumber"].isna().all():
        raise InputError(path, "the particles have no ClassNumber to join class annotations on")
    table = read_class_table(path)
    res = dict(zip(table["ClassNumber"], table["ClassResolution"], strict=True))
    classes = df["ClassNumber"].dropna().astype(int)
    unknown = sorted(set(classes) - set(res))
    if unknown:
        raise InputError(path, f"particles are in class(es) {unknown[:5]} absent from the class table "
                               f"({len(res)} classes)")
    out = df.copy()
    values = out["ClassNumber"].map(lambda c: res.get(int(c), np.nan) if pd.notna(c) else np.nan)
    out["ClassResolution"] = values.astype(float).where(lambda v: (v > 0) & (v < 999))
    return out
