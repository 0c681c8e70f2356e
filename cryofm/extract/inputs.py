"""What ``cryofm extract`` reads: micrographs (files, or a RELION micrographs STAR) and their picks.

Micrographs: a folder, a glob or one file (``.mrc``, ``.png``, ``.tif``, ... as
:mod:`cryofm.io.micrograph` reads them), or a RELION ``micrographs.star`` / ``micrographs_ctf.star``
(``rlnMicrographName`` per row; a ``data_optics`` block gives ``rlnMicrographPixelSize``, voltage, Cs
and amplitude contrast per optics group; CTF columns are carried to the particles). Names in a STAR
file are relative to the RELION project folder: they are looked up under ``root=``, the current
folder, and the STAR file's folder and its parents (``CtfFind/job003/`` lies two levels below the
project). With ``root=`` no name may lead outside it (absolute, or climbing out with ``..``): such a
row is refused before anything is opened; without it the search stays within three folders above the
STAR file.

Picks are matched to micrographs **by name, as RELION does**: the pick file of micrograph
``<stem>.mrc`` is ``<stem><suffix>`` where the suffix is one of ``.star``, ``_autopick.star``,
``_manualpick.star``, ``_pick.star``, ``.box``, ``.csv``, ``.txt``, ``.tsv``, ``.cbox`` (or a
``coord_suffix`` of your own, RELION's ``--coord_suffix``), or a disk-mask image of the same stem;
the longest micrograph stem that fits wins (``mic_1_2`` before ``mic_1``). A STAR / topaz file that
names micrographs (``rlnMicrographName`` / ``image_name``) gives the picks of each by stem. Every
format of :mod:`cryofm.io.coords` is read; crYOLO's ``.cbox`` (a STAR file whose ``data_cryolo``
block gives the lower-left corner ``CoordinateX/Y``, the box ``Width/Height`` and ``Confidence``) is
read here until :mod:`cryofm.io.coords` has it.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pandas as pd

from cryofm.errors import InputError
from cryofm.io import coords as pickio
from cryofm.io.micrograph import SUFFIXES as MIC_SUFFIXES
from cryofm.io.micrograph import list_micrographs

PICK_SUFFIXES = ("_autopick.star", "_manualpick.star", "_pick.star", ".star", ".box", ".csv", ".txt",
                 ".tsv", ".cbox")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
# per-micrograph CTF columns RELION's Extract copies from the micrographs STAR onto each particle
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor",
               "rlnCtfScalefactor", "rlnCtfMaxResolution", "rlnCtfFigureOfMerit")
OPTICS_COLUMNS = {"rlnMicrographPixelSize": "pixel_size", "rlnVoltage": "voltage",
                  "rlnSphericalAberration": "cs", "rlnAmplitudeContrast": "amplitude_contrast",
                  "rlnMicrographOriginalPixelSize": "original_pixel_size",
                  "rlnOpticsGroupName": "name"}


@dataclass
class Micrograph:
    """One micrograph to extract from.

    Attributes:
        path: the file.
        name: its name as recorded in ``rlnMicrographName`` (as given in the STAR file or glob).
        optics_group: RELION optics group (1 without a STAR file).
        ctf: per-micrograph CTF values by RELION column name (Å, degrees).
    """

    path: Path
    name: str
    optics_group: int = 1
    ctf: dict[str, float] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.path.stem


@dataclass
class Picks:
    """Picks of one micrograph: centres [N, 2] (x, y micrograph px), scores [N] (NaN if none), file."""

    xy: np.ndarray
    scores: np.ndarray
    source: Path


def _resolve(name: str, star: Path, root: Path | None) -> Path:
    """The micrograph file ``name`` of ``star`` (see the module doc). With ``root=`` every name must
    lie inside it (as written, ``..`` collapsed; not opened otherwise), and the folders searched are
    those inside it; without, the STAR file's folder and its three parents bound the search."""
    from cryofm.io.paths import bounds, is_inside, normalised

    p = Path(name)
    here = normalised(star.absolute().parent)
    bound = normalised(root.absolute()) if root else (list(here.parents)[:3] or [here])[-1]
    allowed = bounds(bound)
    bases = [b for b in dict.fromkeys([*([bound] if root else []), normalised(Path.cwd()), here,
                                       *list(here.parents)[:3]]) if any(is_inside(b, a) for a in allowed)]
    written = [normalised(p)] if p.is_absolute() else [normalised(b / p) for b in bases]
    inside = [c for c in written if any(is_inside(c, a) for a in allowed)]
    if not inside:
        raise InputError(star, f"micrograph {name!r} leads outside {bound} "
                               f"({'root=' if root else 'three folders above the STAR file'}); not opened"
                               + ("" if root else " (pass root=<folder that holds the micrographs>)"))
    for c in inside:
        if c.is_file():
            return c.resolve()
    for b in bases:  # the bare file name beside the STAR file or under root
        if (b / p.name).is_file():
            return (b / p.name).resolve()
    raise InputError(star, f"micrograph {name!r} not found (looked under root=, the current folder and "
                           "the STAR file's folder and its parents)")


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def read_optics(blocks: dict[str, pd.DataFrame]) -> dict[int, dict[str, Any]]:
    """Optics groups of a RELION 3.1+ STAR file: group → {pixel_size, voltage, cs, ...}."""
    optics = blocks.get("optics")
    out: dict[int, dict[str, Any]] = {}
    if optics is None or "rlnOpticsGroup" not in optics:
        return out
    for row in optics.to_dict(orient="records"):
        g = int(row["rlnOpticsGroup"])
        out[g] = {key: (str(row[col]) if key == "name" else _float(row[col]))
                  for col, key in OPTICS_COLUMNS.items() if col in row}
    return out


def read_micrographs_star(path: Path, root: Path | None = None,
                          resolve: bool = True) -> tuple[list[Micrograph], dict[int, dict]]:
    """Micrographs and optics groups of a RELION micrographs STAR file.

    With ``resolve=False`` the names are kept as paths without looking for the files (a CTF table
    read only for its values).
    """
    from cryofm.io.star import read_star_blocks

    blocks = read_star_blocks(path)
    table = blocks.get("micrographs")
    if table is None:
        cands = [b for k, b in blocks.items() if k != "optics" and "rlnMicrographName" in b]
        if not cands:
            raise InputError(path, "no table with rlnMicrographName (a RELION micrographs STAR file)")
        table = cands[0]
    if "rlnMicrographName" not in table:
        raise InputError(path, "micrographs table lacks rlnMicrographName")
    optics = read_optics(blocks)
    # RELION 3.0 files carry the acquisition per row
    if not optics:
        row = table.iloc[0] if len(table) else {}
        g: dict[str, Any] = {}
        for col, key in OPTICS_COLUMNS.items():
            if col in table and key != "name":
                g[key] = _float(row[col])
        if "pixel_size" not in g and "rlnDetectorPixelSize" in table and "rlnMagnification" in table:
            g["pixel_size"] = _float(row["rlnDetectorPixelSize"]) * 1e4 / _float(row["rlnMagnification"])
        if g:
            optics = {1: g}
    mics = []
    for row in table.to_dict(orient="records"):
        name = str(row["rlnMicrographName"])
        group = int(row.get("rlnOpticsGroup", 1))
        if optics and group not in optics:
            raise InputError(path, f"micrograph {name!r} refers to optics group {group}, absent from "
                                   "data_optics")
        ctf = {c: _float(row[c]) for c in CTF_COLUMNS if c in row and np.isfinite(_float(row[c]))}
        mics.append(Micrograph(_resolve(name, path, root) if resolve else Path(name), name, group, ctf))
    if not mics:
        raise InputError(path, "the micrographs table has no rows")
    return mics, optics


def list_inputs(spec: str, root: str | Path | None = None) -> tuple[list[Micrograph], dict[int, dict]]:
    """Micrographs named by ``spec`` (folder, glob, file, or micrographs STAR) and optics groups."""
    root_p = Path(root) if root else None
    p = Path(str(spec))
    if p.suffix.lower() == ".star":
        if not p.is_file():
            raise InputError(p, "no such file")
        mics, optics = read_micrographs_star(p, root_p)
    else:
        mics, optics = [Micrograph(f, str(f)) for f in list_micrographs(spec)], {}
    stems = [m.stem for m in mics]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(spec, f"two micrographs share the file stem {dup[0]!r} (stacks are named by stem)")
    return mics, optics


def mrc_pixel_size(path: Path) -> float | None:
    """Voxel size (Å/px) in an MRC header, None when unset (0) or not an MRC file."""
    if path.suffix.lower() not in (".mrc", ".mrcs", ".map"):
        return None
    try:
        with mrcfile.open(path, header_only=True, permissive=True) as m:
            v = float(m.voxel_size.x)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the MRC header: {exc}") from None
    return v if v > 0 else None


def read_cbox(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """crYOLO ``.cbox``: centres = lower-left corner + half the box, and ``Confidence`` scores."""
    import starfile

    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many parser errors
        raise InputError(path, f"not a readable crYOLO .cbox (STAR) file: {exc}") from None
    b = blocks.get("cryolo")
    if b is None:
        b = next((v for v in blocks.values() if isinstance(v, pd.DataFrame) and "CoordinateX" in v), None)
    if not isinstance(b, pd.DataFrame) or "CoordinateX" not in b or "CoordinateY" not in b:
        raise InputError(path, "crYOLO .cbox needs a data_cryolo block with _CoordinateX / _CoordinateY")
    try:
        w = b["Width"].astype(float) if "Width" in b else 0.0
        h = b["Height"].astype(float) if "Height" in b else w
        x = b["CoordinateX"].astype(float) + w / 2
        y = b["CoordinateY"].astype(float) + h / 2
        s = b["Confidence"].astype(float) if "Confidence" in b else pd.Series(np.nan, index=b.index)
    except (ValueError, TypeError) as exc:
        raise InputError(path, f"non-numeric .cbox columns ({exc})") from None
    xy = np.stack([x.to_numpy(), y.to_numpy()], axis=1).reshape(-1, 2)
    if not np.isfinite(xy).all():
        raise InputError(path, "non-numeric or missing coordinates")
    return xy, s.to_numpy(dtype=np.float64)


def _pick_files(spec: str, mic_paths: set[Path]) -> list[Path]:
    p = Path(str(spec))
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file())
    elif p.is_file():
        files = [p]
    else:
        files = sorted(Path(f) for f in glob.glob(str(spec)) if Path(f).is_file())
    files = [f for f in files if f.resolve() not in mic_paths]
    coord = [f for f in files if f.name.lower().endswith(PICK_SUFFIXES)]
    # disk masks only when nothing else is there (a folder of micrographs with PNG masks beside
    # coordinate files would otherwise be read twice)
    masks = [f for f in files if f.suffix.lower() in MASK_SUFFIXES]
    picked = coord or masks
    if not picked:
        raise InputError(spec, "no pick files here (.star, .box, .csv, .txt/.tsv, .cbox or disk masks)")
    return picked


def _stem_of(name: str, suffixes: tuple[str, ...], stems: set[str]) -> str | None:
    """The longest micrograph stem that ``name`` is ``<stem><suffix>`` of (None if none)."""
    low = name.lower()
    bases = [name[: len(name) - len(s)] for s in suffixes if low.endswith(s.lower())]
    return max((b for b in bases if b in stems), key=len, default=None)


def match_picks(mics: list[Micrograph], spec: str, coord_suffix: str | None = None,
                diameter: float | None = None) -> tuple[dict[str, Picks], list[Path]]:
    """Picks per micrograph stem, and the pick files that matched no micrograph.

    Raises InputError for an unreadable pick file or two files claiming one micrograph.
    """
    suffixes = ((coord_suffix,) if coord_suffix else ()) + PICK_SUFFIXES + MASK_SUFFIXES
    stem_set = {m.stem for m in mics}
    files = _pick_files(spec, {m.path.resolve() for m in mics})
    out: dict[str, Picks] = {}
    unmatched: list[Path] = []

    def put(stem: str, xy: np.ndarray, scores: np.ndarray, src: Path) -> None:
        if stem in out:
            raise InputError(src, f"a second pick file for micrograph {stem!r} (first: {out[stem].source}); "
                                  "name one with a glob or coord_suffix=")
        out[stem] = Picks(np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(scores, np.float64), src)

    for f in files:
        fmt = "cbox" if f.suffix.lower() == ".cbox" else pickio.infer_format(f)
        if fmt in ("star", "topaz"):
            groups = pickio.read_picks_by_micrograph(f, fmt=fmt)
            named = [k for k in groups if k in stem_set]
            if named and not (len(groups) == 1 and next(iter(groups)) == f.stem):
                for k in named:
                    put(k, *groups[k], f)
                unmatched += [] if len(named) == len(groups) else [f]
                continue
        stem = _stem_of(f.name, suffixes, stem_set)
        if stem is None:
            unmatched.append(f)
            continue
        if fmt == "cbox":
            xy, s = read_cbox(f)
        else:
            xy, s = pickio.read_picks(f, diameter=diameter, fmt=fmt)
        put(stem, xy, s, f)
    return out, unmatched


def micrograph_shape(path: Path) -> tuple[int, int]:
    """(rows, columns) of a micrograph from its header, without reading the pixels."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        if suffix in (".mrc", ".mrcs", ".map"):
            with mrcfile.open(path, header_only=True, permissive=True) as m:
                return int(m.header.ny), int(m.header.nx)
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as t:
                shape = t.pages[0].shape
            return int(shape[0]), int(shape[1])
        if suffix in MIC_SUFFIXES:
            from PIL import Image

            with Image.open(path) as im:
                w, h = im.size
            return int(h), int(w)
    except (OSError, ValueError, IndexError) as exc:
        raise InputError(path, f"cannot read the micrograph header: {str(exc).splitlines()[0]}") from None
    raise InputError(path, f"unknown micrograph suffix {suffix!r}")
