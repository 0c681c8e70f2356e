"""Particle-pick coordinate files: RELION STAR, EMAN ``.box``, CryoPPP CSV, topaz TSV, disk masks.

Every function here speaks **centres in micrograph pixels**, ``xy[:, 0]`` = x = column,
``xy[:, 1]`` = y = row (RELION's ``rlnCoordinateX/Y`` convention). The formats differ only on disk:

=========  ==================  ==================================================================
``fmt``    suffix              columns
=========  ==================  ==================================================================
``star``   ``.star``           ``rlnCoordinateX``, ``rlnCoordinateY`` (centres),
                               ``rlnAutopickFigureOfMerit`` (score), ``rlnMicrographName``
``box``    ``.box``            EMAN: ``x - d/2``, ``y - d/2``, ``d``, ``d`` (lower-left corner of a
                               box of edge ``d`` = particle diameter / box size), tab separated
``csv``    ``.csv``            CryoPPP: ``X-Coordinate,Y-Coordinate,Diameter`` (centres), plus
                               ``Confidence-Score`` when scores are given
``topaz``  ``.txt``, ``.tsv``  topaz: ``image_name  x_coord  y_coord  score`` (centres), tab separated
``cbox``   ``.cbox``           crYOLO (≥ 1.8, a STAR file): ``data_cryolo`` with ``_CoordinateX``,
                               ``_CoordinateY`` = lower-left corner of the box like EMAN ``.box``,
                               ``_Width``, ``_Height`` (box), ``_EstWidth``, ``_EstHeight``
                               (estimated particle size), ``_Confidence`` (score); ``_CoordinateZ``,
                               ``_Depth``, ``_NumBoxes``, ``_Angle`` are ``<NA>`` for 2-D particles
``mask``   ``.png`` ``.tif``…  filled-disk mask (white = particle): centres from connected
                               components, merged disks split at distance-transform peaks
=========  ==================  ==================================================================

Files with picks of several micrographs (STAR with ``rlnMicrographName``, topaz with ``image_name``)
are read whole by :func:`read_picks` or per micrograph by :func:`read_picks_by_micrograph`.
Scores absent from a file come back as NaN. RELION's project layout (``coordinate_files.star`` and
the ``Movies/<mic>_autopick.star`` tree) is :mod:`cryofm.io.relion_coords`.

The ``.cbox`` corner convention was checked against crYOLO's own tools (not documented in crYOLO's
manual): napari-boxmanager's cbox reader takes the centre as ``_CoordinateX + _Width / 2`` and its
writer (like TomoTwin's) writes ``centre − box / 2``. crYOLO's ``_Confidence`` is a probability;
cryofm writes its picker's score there (higher = more confident, not limited to [0, 1]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import starfile
from scipy import ndimage as ndi

from cryofm.errors import InputError
from cryofm.utils import atomic

FORMATS = ("star", "box", "csv", "topaz", "cbox")
SUFFIXES = {".star": "star", ".box": "box", ".csv": "csv", ".txt": "topaz", ".tsv": "topaz", ".cbox": "cbox",
            ".png": "mask", ".tif": "mask", ".tiff": "mask", ".jpg": "mask", ".jpeg": "mask"}
EXTENSION = {"star": ".star", "box": ".box", "csv": ".csv", "topaz": ".txt", "cbox": ".cbox"}
_CBOX = ("_CoordinateX", "_CoordinateY", "_CoordinateZ", "_Width", "_Height", "_Depth", "_EstWidth",
         "_EstHeight", "_Confidence", "_NumBoxes", "_Angle")

_CSV_X, _CSV_Y, _CSV_D, _CSV_S = "X-Coordinate", "Y-Coordinate", "Diameter", "Confidence-Score"
_TOPAZ = ("image_name", "x_coord", "y_coord", "score")


def infer_format(path: str | Path) -> str:
    """The format name of ``path`` from its suffix (InputError for an unknown suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(path, f"unknown pick-file suffix {suffix!r} (expected one of "
                               f"{', '.join(sorted(SUFFIXES))})")
    return SUFFIXES[suffix]


def _as_xy(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        raise ValueError("pick coordinates must be finite")
    return xy


def _num(v: float) -> str:
    """Shortest faithful text for a coordinate: integers without a decimal point."""
    return str(int(round(v))) if float(v).is_integer() else f"{v:.3f}".rstrip("0").rstrip(".")


def write_picks(path: str | Path, xy: np.ndarray, fmt: str | None = None, scores: np.ndarray | None = None,
                diameter: float | None = None, micrograph: str | None = None) -> Path:
    """Write pick centres ``xy`` [N, 2] (x = column, y = row, micrograph px) atomically.

    Args:
        path: output file; ``fmt`` is inferred from its suffix when not given.
        fmt: ``star``, ``box``, ``csv``, ``topaz`` or ``cbox``.
        scores: [N] figure of merit (higher = more confident); STAR, CSV, topaz and cbox keep it.
        diameter: particle diameter in px; required by ``box`` and ``cbox`` (box edge) and ``csv``.
        micrograph: micrograph file name recorded in STAR (``rlnMicrographName``) and topaz
            (``image_name``, the stem as topaz writes it).
    """
    path = Path(path)
    fmt = fmt or infer_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown pick format {fmt!r} (one of {FORMATS})")
    xy = _as_xy(xy)
    n = len(xy)
    s = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if s is not None and len(s) != n:
        raise ValueError(f"{len(s)} scores for {n} picks")
    if fmt in ("box", "csv", "cbox") and diameter is None:
        raise ValueError(f"the {fmt} format needs the particle diameter (box size) in px")

    if fmt == "star":
        df = pd.DataFrame({"rlnCoordinateX": xy[:, 0], "rlnCoordinateY": xy[:, 1]})
        if s is not None:
            df["rlnAutopickFigureOfMerit"] = s
        if micrograph is not None:
            df["rlnMicrographName"] = [str(micrograph)] * n
        with atomic.atomic_path(path) as tmp:
            # a named block so an empty pick list still writes a valid, readable table
            starfile.write({"": df}, tmp, float_format="%.3f")
        return path
    if fmt == "box":
        d = float(diameter)
        rows = [f"{_num(x - d / 2)}\t{_num(y - d / 2)}\t{_num(d)}\t{_num(d)}" for x, y in xy]
        text = "\n".join(rows) + ("\n" if rows else "")
    elif fmt == "cbox":
        d = _num(float(diameter))
        lines = ["", "data_global", "", "_cbox_format_version 1.0", "", "data_cryolo", "", "loop_"]
        lines += [f"{c} #{i}" for i, c in enumerate(_CBOX, start=1)]
        for i, (x, y) in enumerate(xy):
            conf = "<NA>" if s is None else f"{s[i]:.6g}"
            lines.append(" ".join([_num(x - float(diameter) / 2), _num(y - float(diameter) / 2), "<NA>", d, d,
                                   "<NA>", d, d, conf, "<NA>", "<NA>"]))
        text = "\n".join(lines) + "\n"
    elif fmt == "csv":
        cols = [_CSV_X, _CSV_Y, _CSV_D] + ([_CSV_S] if s is not None else [])
        lines = [",".join(cols)]
        for i, (x, y) in enumerate(xy):
            row = [_num(x), _num(y), _num(float(diameter))]
            if s is not None:
                row.append(f"{s[i]:.6g}")
            lines.append(",".join(row))
        text = "\n".join(lines) + "\n"
    else:  # topaz
        name = Path(micrograph).stem if micrograph is not None else path.stem
        sc = s if s is not None else np.full(n, np.nan)
        lines = ["\t".join(_TOPAZ)]
        lines += [f"{name}\t{_num(x)}\t{_num(y)}\t{sc[i]:.6g}" for i, (x, y) in enumerate(xy)]
        text = "\n".join(lines) + "\n"
    atomic.write_text(path, text)
    return path


def _read_table(path: Path, fmt: str) -> pd.DataFrame:
    """The pick file as a DataFrame with columns x, y (centres), score, micrograph."""
    try:
        if fmt == "star":
            data = starfile.read(path, always_dict=True)
            blocks = [b for b in data.values() if isinstance(b, pd.DataFrame) and "rlnCoordinateX" in b]
            if not blocks:
                raise InputError(path, "no table with rlnCoordinateX / rlnCoordinateY")
            b = blocks[0]
            return pd.DataFrame({
                "x": b["rlnCoordinateX"].astype(float), "y": b["rlnCoordinateY"].astype(float),
                "score": b["rlnAutopickFigureOfMerit"].astype(float)
                if "rlnAutopickFigureOfMerit" in b else np.nan,
                "micrograph": b["rlnMicrographName"].astype(str) if "rlnMicrographName" in b else "",
            })
        if fmt == "cbox":
            data = starfile.read(path, always_dict=True)
            b = data.get("cryolo")
            if not isinstance(b, pd.DataFrame) or "CoordinateX" not in b or "CoordinateY" not in b:
                raise InputError(path, "crYOLO .cbox needs a data_cryolo table with _CoordinateX / "
                                       "_CoordinateY / _Width / _Height")
            num = {c: pd.to_numeric(b[c], errors="coerce") for c in ("CoordinateX", "CoordinateY")}
            w = pd.to_numeric(b["Width"], errors="coerce") if "Width" in b else 0.0
            h = pd.to_numeric(b["Height"], errors="coerce") if "Height" in b else 0.0
            score = pd.to_numeric(b["Confidence"], errors="coerce") if "Confidence" in b else np.nan
            return pd.DataFrame({"x": num["CoordinateX"] + w / 2, "y": num["CoordinateY"] + h / 2,
                                 "score": score, "micrograph": ""})
        if fmt == "box":
            if path.stat().st_size == 0 or not path.read_text().strip():
                return pd.DataFrame({"x": [], "y": [], "score": [], "micrograph": []})
            # EMAN2 may append a 5th column (pick type); rows of 4 and 5 fields can mix
            b = pd.read_csv(path, sep=r"\s+", header=None, comment="#", names=range(8))
            if b[[0, 1, 2, 3]].isna().any().any():
                raise InputError(path, "EMAN .box rows need 4 numeric columns (x y w h)")
            w, h = b[2].astype(float), b[3].astype(float)
            return pd.DataFrame({"x": b[0].astype(float) + w / 2, "y": b[1].astype(float) + h / 2,
                                 "score": np.nan, "micrograph": ""})
        if fmt == "csv":
            b = pd.read_csv(path)
            b.columns = [c.strip() for c in b.columns]
            if _CSV_X not in b or _CSV_Y not in b:
                raise InputError(path, f"CryoPPP CSV needs columns {_CSV_X!r} and {_CSV_Y!r}")
            names = (_CSV_S, "Confidence Score", "Score")
            score = next((b[c].astype(float) for c in names if c in b), np.nan)
            return pd.DataFrame({"x": b[_CSV_X].astype(float), "y": b[_CSV_Y].astype(float),
                                 "score": score, "micrograph": ""})
        # topaz
        b = pd.read_csv(path, sep="\t")
        missing = [c for c in _TOPAZ[1:3] if c not in b]
        if missing:
            raise InputError(path, f"topaz TSV needs columns x_coord, y_coord (missing {missing})")
        return pd.DataFrame({"x": b["x_coord"].astype(float), "y": b["y_coord"].astype(float),
                             "score": b["score"].astype(float) if "score" in b else np.nan,
                             "micrograph": b["image_name"].astype(str) if "image_name" in b else ""})
    except InputError:
        raise
    except FileNotFoundError as exc:
        raise InputError(path, "no such file") from exc
    except (ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"cannot read {fmt} picks: {str(exc).splitlines()[0]}") from exc


def read_picks(path: str | Path, diameter: float | None = None, micrograph: str | None = None,
               fmt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read pick centres and scores from any supported file.

    Args:
        path: STAR / .box / CryoPPP CSV / topaz TSV, or a disk-mask image.
        diameter: particle diameter in px; used by masks to split merged disks (estimated from the
            median component area when None); ignored by coordinate files.
        micrograph: keep only rows of this micrograph (matched on the file stem) in multi-micrograph
            STAR / topaz files.
        fmt: override the suffix-inferred format.

    Returns:
        ``xy`` [N, 2] float64 centres (x = column, y = row, px) and ``scores`` [N] (NaN if absent).
    """
    path = Path(path)
    fmt = fmt or infer_format(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if fmt == "mask":
        from cryofm.io.micrograph import read_micrograph

        xy = mask_centres(read_micrograph(path), diameter)
        return xy, np.full(len(xy), np.nan)
    df = _read_table(path, fmt)
    if micrograph is not None and (df["micrograph"] != "").any():
        stem = Path(str(micrograph)).stem
        df = df[[Path(m).stem == stem for m in df["micrograph"]]]
    xy = df[["x", "y"]].to_numpy(dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        raise InputError(path, "non-numeric or missing coordinates")
    return xy, df["score"].to_numpy(dtype=np.float64)


def read_picks_by_micrograph(path: str | Path,
                             fmt: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Picks of a multi-micrograph STAR / topaz file grouped by micrograph stem → (xy, scores).

    A file without micrograph names gives one entry keyed by its own stem.
    """
    path = Path(path)
    fmt = fmt or infer_format(path)
    if fmt == "mask":
        return {path.stem: read_picks(path, fmt=fmt)}
    if not path.is_file():
        raise InputError(path, "no such file")
    df = _read_table(path, fmt)
    keys = [Path(m).stem if m else path.stem for m in df["micrograph"]]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in dict.fromkeys(keys):
        sel = np.array([k == key for k in keys], dtype=bool)
        out[key] = (df.loc[sel, ["x", "y"]].to_numpy(np.float64), df.loc[sel, "score"].to_numpy(np.float64))
    return out


def mask_centres(mask: np.ndarray, diameter: float | None = None,
                 threshold: float | None = None) -> np.ndarray:
    """Particle centres [N, 2] (x, y px) from a filled-disk mask (particle pixels bright).

    Each connected component gives its centroid; a component larger than 1.5 disks (area of a disk
    of ``diameter``, estimated from the median component area when None) is split at the peaks of
    its Euclidean distance transform that lie at least a radius apart, highest first.

    Args:
        mask: [H, W] image; pixels above ``threshold`` (default: halfway between min and max) are
            particle.
        diameter: particle diameter in px.
        threshold: binarisation level in the mask's units.
    """
    m = np.asarray(mask, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    lo, hi = float(m.min()), float(m.max())
    if hi <= lo:
        return np.zeros((0, 2))
    binary = m > (threshold if threshold is not None else (lo + hi) / 2)
    labels, n = ndi.label(binary)
    if n == 0:
        return np.zeros((0, 2))
    idx = np.arange(1, n + 1)
    areas = ndi.sum(binary, labels, idx)
    if diameter is None:
        diameter = 2.0 * np.sqrt(np.median(areas) / np.pi)
    r = diameter / 2.0
    disk = np.pi * r * r
    cents = ndi.center_of_mass(binary, labels, idx)
    out: list[tuple[float, float]] = []
    edt = None
    for k, (area, (cy, cx)) in enumerate(zip(areas, cents, strict=True), start=1):
        if area < 0.1 * disk:  # specks: not a particle
            continue
        if area <= 1.5 * disk:
            out.append((cx, cy))
            continue
        if edt is None:
            edt = ndi.distance_transform_edt(binary)
        out.extend(_split_component(edt, labels == k, r))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def _split_component(edt: np.ndarray, comp: np.ndarray, r: float) -> list[tuple[float, float]]:
    """Centres of the merged disks of one component: distance-transform maxima ≥ r apart."""
    ys, xs = np.nonzero(comp)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    d = np.where(comp[y0:y1, x0:x1], edt[y0:y1, x0:x1], 0.0)
    size = max(3, int(round(r / 2)) | 1)
    peaks = (d == ndi.maximum_filter(d, size=size)) & (d >= 0.5 * d.max())
    plab, npk = ndi.label(peaks)
    if npk == 0:
        return [(float(xs.mean()), float(ys.mean()))]
    pc = np.asarray(ndi.center_of_mass(peaks, plab, np.arange(1, npk + 1))).reshape(-1, 2)
    pv = np.asarray(ndi.maximum(d, plab, np.arange(1, npk + 1)))
    kept: list[np.ndarray] = []
    for i in np.argsort(-pv):
        if all(np.hypot(*(pc[i] - q)) >= r for q in kept):
            kept.append(pc[i])
    return [(float(q[1] + x0), float(q[0] + y0)) for q in kept]
