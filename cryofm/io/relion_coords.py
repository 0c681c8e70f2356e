"""Picks in RELION's project layout: the coordinate-file list and the per-micrograph tree.

RELION (4, 5) pickers write one STAR file of coordinates per micrograph and a list pairing each
micrograph with its file; Extract's "Input coordinates" takes that list (``--coord_list``)::

    <out>/coordinate_files.star            data_coordinate_files: rlnMicrographName, rlnMicrographCoordinates
    <out>/Movies/<mic>_<suffix>.star       data_: rlnCoordinateX, rlnCoordinateY, rlnAutopickFigureOfMerit

``Movies/<mic>`` mirrors the micrograph's name after its RELION job folder, as RELION's autopicker
names its outputs (``AutoPicker::getOutputRootName`` → ``decomposePipelineFileName``):
``MotionCorr/job002/Movies/mic1.mrc`` → ``<out>/Movies/mic1_autopick.star``; a name outside a job
folder (``Micrographs/mic1.mrc``) is mirrored whole; outside a RELION project the files lie flat in
``<out>``. Names in the list are relative to the RELION
project dir (the folder of ``default_pipeline.star``, where RELION runs) when the files lie under
it, absolute otherwise; ``rlnMicrographName`` must be spelt as in the project's
``micrographs_ctf.star``, so pick from the project dir with the micrographs named as RELION names them.

Two ways into RELION: Extract with "Input coordinates" = ``<out>/coordinate_files.star``; or
Import → "Particle coordinates (*.box, *_pick.star)" of ``<out>/Movies/*_autopick.star`` when ``out``
is a job-like folder of the project (e.g. ``External/job100``), so that Import copies the ``Movies/``
tree and Extract finds ``Import/jobNNN/Movies/<mic>_autopick.star`` by suffix.

:func:`read_coordinate_list` reads such a list back (RELION's own ``autopick.star`` /
``manualpick.star`` / ``coordinate_files.star``), resolving each file against the project dir.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryofm.errors import InputError
from cryofm.utils import atomic

LIST_NAME = "coordinate_files.star"
PIPELINE = "default_pipeline.star"
_JOB = re.compile(r"^(.+?/)(job\d{3}[^/]*)/(.+)$")


def relion_post(name: str) -> str:
    """The part of a micrograph name after its RELION job folder (``decomposePipelineFileName``):
    ``MotionCorr/job002/Movies/m.mrc`` → ``Movies/m.mrc``; other names unchanged."""
    m = _JOB.match(str(name))
    return m.group(3) if m else str(name)


def find_project_dir(start: str | Path) -> Path | None:
    """The nearest folder at or above ``start`` holding ``default_pipeline.star``, or None."""
    p = Path(os.path.abspath(start))
    for d in [p, *p.parents]:
        if (d / PIPELINE).is_file():
            return d
    return None


def project_name(path: str | Path, project: Path) -> str:
    """``path`` as RELION names it: relative to the project dir when under it, else absolute."""
    a, root = Path(os.path.abspath(path)), Path(os.path.abspath(project))  # no symlink resolving:
    try:  # RELION's job aliases are links, and names keep them
        return a.relative_to(root).as_posix()
    except ValueError:
        return a.as_posix()


def coordinate_file(out_dir: str | Path, micrograph_name: str, suffix: str = "autopick",
                    mirror: bool = True) -> Path:
    """``<out>/<post without extension>_<suffix>.star`` for a micrograph RELION names ``micrograph_name``
    (``mirror=False``, or an absolute name outside the project: the file name only)."""
    post = relion_post(micrograph_name)
    if Path(post).is_absolute() or not mirror:
        post = Path(post).name
    stem = Path(post).with_suffix("")
    return Path(out_dir) / f"{stem.as_posix()}_{suffix}.star"


def write_relion_coordinates(out_dir: str | Path,
                             picks: Mapping[str | Path, tuple[np.ndarray, np.ndarray | None]],
                             suffix: str = "autopick", project_dir: str | Path | None = None) -> Path:
    """Write the per-micrograph STAR files and ``<out>/coordinate_files.star``; returns the list.

    Args:
        out_dir: where the list and the ``Movies/...`` tree go.
        picks: micrograph path → (centres [N, 2] in micrograph px, x = column, y = row; scores [N]
            or None). Coordinates must already be at the micrographs' full size.
        suffix: coordinate-file suffix (RELION's autopick writes ``autopick``, manual picking
            ``manualpick``).
        project_dir: the RELION project dir; default: found above the first micrograph
            (``default_pipeline.star``). Without a project (none given or found) names are relative
            to the current folder and the coordinate files lie flat in ``out_dir``
            (``<out>/<mic>_<suffix>.star``): there is no RELION job tree to mirror.
    """
    out_dir = Path(out_dir)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(suffix)):
        raise InputError("relion.suffix", f"must be a plain file-name suffix such as autopick "
                                          f"(got {suffix!r})")
    mics = [Path(m) for m in picks]
    found = Path(project_dir) if project_dir is not None else None
    if found is None and mics:
        found = find_project_dir(mics[0].parent)
    project = found or Path.cwd()
    rows, seen = [], {}
    for mic, (xy, scores) in zip(mics, picks.values(), strict=True):
        name = project_name(mic, project)
        f = coordinate_file(out_dir, name, suffix, mirror=found is not None)
        if f in seen:
            raise InputError(mic, f"two micrographs map to the same coordinate file {f} ({seen[f]})")
        seen[f] = mic
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        df = pd.DataFrame({"rlnCoordinateX": xy[:, 0], "rlnCoordinateY": xy[:, 1]})
        if scores is not None:
            df["rlnAutopickFigureOfMerit"] = np.asarray(scores, np.float64).reshape(-1)
        with atomic.atomic_path(f) as tmp:
            starfile.write({"": df}, tmp, float_format="%.3f")
        rows.append({"rlnMicrographName": name, "rlnMicrographCoordinates": project_name(f, project)})
    listing = out_dir / LIST_NAME
    table = pd.DataFrame(rows, columns=["rlnMicrographName", "rlnMicrographCoordinates"])
    with atomic.atomic_path(listing) as tmp:
        starfile.write({"coordinate_files": table}, tmp)
    return listing


def is_coordinate_list(path: str | Path) -> bool:
    """True for a STAR file with a ``rlnMicrographCoordinates`` column (a RELION coordinate list)."""
    p = Path(path)
    if p.suffix.lower() != ".star" or not p.is_file():
        return False
    try:
        with open(p, errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    return "rlnMicrographCoordinates" in head


def read_coordinate_list(path: str | Path, project_dir: str | Path | None = None
                         ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Picks of every micrograph of a RELION coordinate list, keyed by micrograph file stem.

    Each ``rlnMicrographCoordinates`` is looked up relative to ``project_dir``, the project dir
    above the list (``default_pipeline.star``), the current folder and the list's own folder, in
    that order; InputError names the row and the folders tried when none has it.
    """
    from cryofm.io.coords import read_picks

    path = Path(path)
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds on a malformed file
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(path, f"cannot read STAR file: {why}") from None
    table = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)
                  and {"rlnMicrographName", "rlnMicrographCoordinates"} <= set(b.columns)), None)
    if table is None:
        raise InputError(path, "not a RELION coordinate list (needs rlnMicrographName and "
                               "rlnMicrographCoordinates)")
    roots = [Path(r) for r in (project_dir, find_project_dir(path.parent), Path.cwd(), path.parent) if r]
    roots = list(dict.fromkeys(Path(os.path.abspath(r)) for r in roots))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, row in enumerate(table.itertuples(index=False), start=1):
        name, coords = str(row.rlnMicrographName), str(row.rlnMicrographCoordinates)
        cand = [Path(coords)] if Path(coords).is_absolute() else [r / coords for r in roots]
        found = next((c for c in cand if c.is_file()), None)
        if found is None:
            tried = ", ".join(str(r) for r in roots) if not Path(coords).is_absolute() else "(absolute path)"
            raise InputError(path, f"row {i}: coordinate file {coords} not found (looked in {tried})")
        stem = Path(name).stem
        if stem in out:
            raise InputError(path, f"row {i}: micrograph stem {stem!r} appears twice")
        out[stem] = read_picks(found, fmt="star")
    return out
