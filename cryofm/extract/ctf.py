"""Per-micrograph CTF from a RELION ``micrographs_ctf.star`` or a cryoSPARC exposures ``.cs`` file.

RELION: the micrographs table's ``rlnDefocusU/V`` (Å), ``rlnDefocusAngle`` (degrees),
``rlnPhaseShift``, ``rlnCtfBfactor``, ``rlnCtfMaxResolution``, ``rlnCtfFigureOfMerit``; voltage, Cs,
amplitude contrast and pixel size from its optics group.

cryoSPARC (the ``exposures`` output of Patch CTF / CTFFIND): ``micrograph_blob/path`` names the
micrograph; ``ctf/df1_A``, ``ctf/df2_A`` → ``rlnDefocusU/V``; ``ctf/df_angle_rad``,
``ctf/phase_shift_rad`` (radians) → ``rlnDefocusAngle``, ``rlnPhaseShift`` (degrees);
``ctf/ctf_fit_to_A`` → ``rlnCtfMaxResolution``; ``ctf/bfactor`` → ``rlnCtfBfactor``;
``ctf/accel_kv``, ``ctf/cs_mm``, ``ctf/amp_contrast``, ``micrograph_blob/psize_A`` → voltage, Cs,
amplitude contrast, pixel size.

Entries are matched to micrographs by file stem; failing an exact match, by the one entry whose stem
contains the micrograph's (cryoSPARC prefixes a unique id and appends ``_patch_aligned_doseweighted``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cryofm.errors import InputError
from cryofm.extract.inputs import read_micrographs_star

_CS = {"ctf/df1_A": ("rlnDefocusU", 1.0), "ctf/df2_A": ("rlnDefocusV", 1.0),
       "ctf/df_angle_rad": ("rlnDefocusAngle", 180.0 / np.pi),
       "ctf/phase_shift_rad": ("rlnPhaseShift", 180.0 / np.pi),
       "ctf/ctf_fit_to_A": ("rlnCtfMaxResolution", 1.0), "ctf/bfactor": ("rlnCtfBfactor", 1.0)}
_CS_OPTICS = {"ctf/accel_kv": "voltage", "ctf/cs_mm": "cs", "ctf/amp_contrast": "amplitude_contrast",
              "micrograph_blob/psize_A": "pixel_size"}


class CtfTable:
    """CTF values and acquisition per micrograph stem, as read from one file."""

    def __init__(self, source: Path, ctf: dict[str, dict[str, float]], optics: dict[str, dict[str, Any]]):
        self.source = source
        self.ctf = ctf
        self.optics = optics

    def key_for(self, stem: str) -> str:
        """The entry of micrograph ``stem`` (InputError when none or several fit)."""
        if stem in self.ctf:
            return stem
        hits = [k for k in self.ctf if stem in k]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise InputError(self.source, f"no CTF entry for micrograph {stem!r}")
        raise InputError(self.source, f"several CTF entries fit micrograph {stem!r}: {hits[:3]}")


def _read_star(path: Path) -> CtfTable:
    mics, optics = read_micrographs_star(path, resolve=False)
    ctf, opt = {}, {}
    for m in mics:
        if "rlnDefocusU" not in m.ctf:
            raise InputError(path, f"micrograph {m.name!r} has no rlnDefocusU (not a micrographs_ctf.star?)")
        ctf[Path(m.name).stem] = dict(m.ctf)
        opt[Path(m.name).stem] = dict(optics.get(m.optics_group, {}))
    return CtfTable(path, ctf, opt)


def _read_cs(path: Path) -> CtfTable:
    from cryofm.io.cryosparc import _decode, load_cs

    cs = load_cs(path)
    names = set(cs.dtype.names)
    key = next((k for k in ("micrograph_blob/path", "micrograph_blob_non_dw/path") if k in names), None)
    if key is None or "ctf/df1_A" not in names:
        raise InputError(path, "cryoSPARC exposures .cs needs micrograph_blob/path and ctf/df1_A")
    stems = [Path(p.lstrip(">")).stem for p in _decode(cs[key])]
    ctf: dict[str, dict[str, float]] = {}
    opt: dict[str, dict[str, Any]] = {}
    for i, stem in enumerate(stems):
        ctf[stem] = {dst: float(cs[src][i]) * f for src, (dst, f) in _CS.items() if src in names}
        opt[stem] = {dst: float(cs[src][i]) for src, dst in _CS_OPTICS.items() if src in names}
    return CtfTable(path, ctf, opt)


def read_ctf(path: str | Path) -> CtfTable:
    """A micrographs_ctf.star or exposures .cs file (InputError on anything else)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if path.suffix.lower() == ".star":
        return _read_star(path)
    if path.suffix.lower() == ".cs":
        return _read_cs(path)
    raise InputError(path, "ctf= takes a RELION micrographs_ctf.star or a cryoSPARC exposures .cs")
