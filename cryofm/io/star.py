"""RELION particle STAR files (3.0, 3.1+ with optics groups, 5.0) → particle table, via ``starfile``.

* 3.0: one particle block; pixel size from ``rlnImagePixelSize`` / ``rlnPixelSize`` or else
  ``rlnDetectorPixelSize`` (µm) × 10⁴ / ``rlnMagnification``; origins ``rlnOriginX/Y`` in pixels.
* 3.1 and 5.0: a ``data_optics`` block merged onto ``data_particles`` by ``rlnOpticsGroup``;
  origins ``rlnOriginX/YAngst`` in Å.

Every ``rln<Name>`` column whose ``<Name>`` is a schema field is copied under that name (RELION's
units are the schema's: Å, degrees, kV, mm). ``rlnImageName`` (``index@stack``, 1-based) is required.
A pixel size the file gives must be positive (no fallback to the MRC header); 3-D particles
(``rlnImageDimensionality 3``) are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryofm import schema
from cryofm.errors import InputError
from cryofm.io.particles import check_pixel_size, finish_table, parse_image_name

REQUIRED = ("rlnImageName",)


def read_star_blocks(path: str | Path) -> dict[str, pd.DataFrame]:
    """All loop blocks of a STAR file (``starfile.read``); InputError on an unreadable file."""
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises a variety of parser errors
        raise InputError(path, f"not a readable STAR file ({type(exc).__name__}: {exc})") from None
    out = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    for name, df in out.items():
        check_last_row(df, name, path)
    return out


def check_last_row(df: pd.DataFrame, block: str, path: str | Path) -> None:
    """InputError when the last row of loop ``block`` lacks values in columns every other row has
    (the parser fills a row cut short with NaN: a truncated or half-written file)."""
    if len(df) < 2:
        return
    last, rest = df.iloc[-1].isna(), df.iloc[:-1].notna().all()
    short = [str(c) for c in df.columns if last[c] and rest[c]]
    if short:
        raise InputError(path, f"data_{block}: the last row (row {len(df)}) stops before {short[0]} "
                               f"({len(short)} of {df.shape[1]} values missing): truncated file?")


def _strip(col: str) -> str:
    return col[3:] if col.startswith("rln") else col


def particle_block(blocks: dict[str, pd.DataFrame],
                   path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(particles, optics or None): the block holding ``rlnImageName`` and the optics block."""
    optics = blocks.get("optics")
    if "particles" in blocks:
        parts = blocks["particles"]
    else:
        cands = [b for name, b in blocks.items() if name != "optics" and "rlnImageName" in b.columns]
        if not cands:
            named = ", ".join(f"data_{k}" for k in blocks) or "none"
            raise InputError(path, f"no particle block with rlnImageName (blocks: {named})")
        parts = cands[0]
    missing = [c for c in REQUIRED if c not in parts.columns]
    if missing:
        raise InputError(path, f"STAR particle block lacks required column(s) {', '.join(missing)}")
    return parts, optics


def merge_optics(parts: pd.DataFrame, optics: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Copy each optics group's columns onto its particles (particle values win on a clash)."""
    if "rlnOpticsGroup" not in optics.columns:
        raise InputError(path, "data_optics block lacks rlnOpticsGroup")
    if "rlnOpticsGroup" not in parts.columns:
        if len(optics) != 1:
            raise InputError(path, "particles lack rlnOpticsGroup but there are several optics groups")
        parts = parts.assign(rlnOpticsGroup=optics["rlnOpticsGroup"].iloc[0])
    unknown = set(parts["rlnOpticsGroup"]) - set(optics["rlnOpticsGroup"])
    if unknown:
        raise InputError(path, f"particles refer to optics group(s) {sorted(unknown)} "
                               "absent from data_optics")
    extra = [c for c in optics.columns if c not in parts.columns or c == "rlnOpticsGroup"]
    merged = parts.reset_index(drop=True).merge(optics[extra], on="rlnOpticsGroup", how="left", sort=False)
    return merged


def _pixel_size(df: pd.DataFrame) -> tuple[pd.Series, str] | None:
    """(pixel size per particle in Å/px, the column(s) it came from), or None when the file has none."""
    for col in ("rlnImagePixelSize", "rlnPixelSize"):
        if col in df:
            return pd.to_numeric(df[col], errors="coerce"), col
    if "rlnDetectorPixelSize" in df and "rlnMagnification" in df:
        with np.errstate(divide="ignore", invalid="ignore"):
            ps = (pd.to_numeric(df["rlnDetectorPixelSize"], errors="coerce") * 1e4
                  / pd.to_numeric(df["rlnMagnification"], errors="coerce"))
        return ps, "rlnDetectorPixelSize x 1e4 / rlnMagnification"
    return None


def check_dimensionality(df: pd.DataFrame, names: np.ndarray, path: str | Path) -> None:
    """Refuse 3-D particles (``rlnImageDimensionality 3``: sub-tomograms): cryofm ingests 2-D images.

    (Sub-tilt series, 2-D projections of a tomogram's particles, are 2-D and ingested.)
    """
    if "rlnImageDimensionality" not in df:
        return
    dim = pd.to_numeric(df["rlnImageDimensionality"], errors="coerce")
    bad = (dim != 2) & dim.notna()
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise InputError(path, f"rlnImageDimensionality: row {i + 1} ({names[i]}): {dim.iloc[i]:g}-D "
                               "particles (sub-tomograms) are not supported: cryofm ingests 2-D "
                               "particle images")


def read_star_particles(path: str | Path) -> pd.DataFrame:
    """Particle table (see :mod:`cryofm.io.particles`) from a RELION particle STAR file.

    ``_stack`` holds the stack names as written (resolved by :func:`cryofm.io.particles.read_particles`).
    """
    path = Path(path)
    parts, optics = particle_block(read_star_blocks(path), path)
    df = merge_optics(parts, optics, path) if optics is not None else parts.reset_index(drop=True)
    if len(df) == 0:
        raise InputError(path, "STAR particle block has no rows")
    names = df["rlnImageName"].astype(str).to_numpy()
    check_dimensionality(df, names, path)
    out = pd.DataFrame(index=df.index)
    for col in df.columns:
        name = _strip(col)
        if name in schema.BY_NAME and name != "ImageName":
            out[name] = df[col].to_numpy()
    found = _pixel_size(df)
    psize = None
    if found is not None:
        psize, key = found
        check_pixel_size(psize, key, names, path)
        out["ImagePixelSize"] = psize.to_numpy()
    for axis in ("X", "Y"):
        if f"rlnOrigin{axis}Angst" not in df and f"rlnOrigin{axis}" in df:
            if psize is None:
                raise InputError(path, f"rlnOrigin{axis} is in pixels but the file gives no pixel size")
            out[f"Origin{axis}Angst"] = pd.to_numeric(df[f"rlnOrigin{axis}"]).to_numpy() * psize.to_numpy()
    index = np.empty(len(names), dtype=np.int64)
    stacks = []
    for i, name in enumerate(names):
        idx, stack = parse_image_name(name, path)
        index[i] = idx
        stacks.append(stack)
    out["ImageName"] = names
    out["_index"] = index
    out["_stack"] = stacks
    return finish_table(out, path)
