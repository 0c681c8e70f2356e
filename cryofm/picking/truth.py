"""Expert picks for a set of micrographs, from a file, a folder or a glob (any pick format or masks).

RELION's own outputs are ground truth too: a coordinate list (``autopick.star``,
``manualpick.star``, ``coordinate_files.star``: ``rlnMicrographName`` → ``rlnMicrographCoordinates``)
given as the file, and per-micrograph files named ``<micrograph>_autopick.star`` /
``<micrograph>_manualpick.star`` (RELION's suffixes) in a folder or glob.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryofm.errors import InputError
from cryofm.io.coords import SUFFIXES, mask_centres, read_picks_by_micrograph
from cryofm.io.micrograph import read_micrograph
from cryofm.io.relion_coords import is_coordinate_list, read_coordinate_list

# when a folder holds several files for one micrograph, coordinates win over masks
_PREFERENCE = (".star", ".cbox", ".csv", ".box", ".txt", ".tsv", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
# RELION names a micrograph's coordinate file <micrograph>_<suffix>.star
RELION_SUFFIXES = ("_autopick", "_manualpick", "_pick", "_extract")


def micrograph_stem(path: Path, stems: list[str] | set[str]) -> str:
    """The micrograph a per-micrograph pick file belongs to: its stem, or its stem without a RELION
    suffix (``mic1_autopick.star`` → ``mic1``) when that names one of ``stems``."""
    if path.stem in stems:
        return path.stem
    for suffix in RELION_SUFFIXES:
        if path.stem.endswith(suffix) and path.stem[: -len(suffix)] in stems:
            return path.stem[: -len(suffix)]
    return path.stem


@dataclass
class Truth:
    """Expert centres [N, 2] (x, y px) of one micrograph, and its disk mask when given as one."""

    xy: np.ndarray
    mask: np.ndarray | None = None
    source: str = ""


def _is_mask(path: Path) -> bool:
    return SUFFIXES.get(path.suffix.lower()) == "mask"


def _from_file(path: Path, diameter: float) -> dict[str, Truth]:
    if is_coordinate_list(path):
        out = {k: Truth(xy, None, str(path)) for k, (xy, _) in read_coordinate_list(path).items()}
    elif _is_mask(path):
        m = read_micrograph(path)
        binary = m > (float(m.min()) + float(m.max())) / 2
        out = {path.stem: Truth(mask_centres(m, diameter), binary, str(path))}
    else:
        out = {k: Truth(xy, None, str(path)) for k, (xy, _) in read_picks_by_micrograph(path).items()}
    for stem, t in out.items():
        if not np.isfinite(np.asarray(t.xy, float)).all():
            raise InputError(path, f"non-finite ground-truth coordinates (NaN / inf) for micrograph {stem!r}")
    return out


def load_ground_truth(spec: str | Path, stems: list[str], diameter: float) -> dict[str, Truth]:
    """Expert picks keyed by micrograph stem, for those of ``stems`` that have any.

    ``spec`` is a pick file (one micrograph, or many named inside: STAR ``rlnMicrographName``, topaz
    ``image_name``, a RELION coordinate list), a folder holding ``<stem>.<suffix>`` (or RELION's
    ``<stem>_autopick.star`` / ``<stem>_manualpick.star``) per micrograph, or a glob of such files.
    A single file without micrograph names applies to the single micrograph given.
    InputError when no micrograph gets ground truth.
    """
    p = Path(str(spec))
    found: dict[str, Truth] = {}
    if p.is_file():
        found = _from_file(p, diameter)
        if len(found) == 1 and len(stems) == 1 and stems[0] not in found:
            found = {stems[0]: next(iter(found.values()))}
    else:
        if p.is_dir():
            files = [f for f in sorted(p.iterdir()) if f.is_file() and f.suffix.lower() in SUFFIXES]
        else:
            files = [Path(f) for f in sorted(glob.glob(str(spec))) if Path(f).suffix.lower() in SUFFIXES]
        by_stem: dict[str, Path] = {}
        for f in sorted(files, key=lambda f: _PREFERENCE.index(f.suffix.lower())
                        if f.suffix.lower() in _PREFERENCE else 99):
            stem = micrograph_stem(f, stems)
            if stem in stems and stem not in by_stem:
                by_stem[stem] = f
        for stem, f in by_stem.items():
            got = _from_file(f, diameter)
            # a per-micrograph file may name its micrograph differently (or not at all)
            found[stem] = got[stem] if stem in got else next(iter(got.values()))
    found = {k: v for k, v in found.items() if k in stems}
    if not found:
        raise InputError(spec, "no ground truth for any of the micrographs (expected files named "
                               "<micrograph stem>.star/.csv/.box/.txt/.png, or names inside the file)")
    return found
