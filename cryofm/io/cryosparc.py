"""cryoSPARC ``.cs`` particle files (NumPy structured arrays) → particle table, in schema units.

Field conversions (cryoSPARC → schema):

* ``blob/path`` (a leading ``>`` marks a project-relative import), ``blob/idx`` (0-based) → stack,
  index and ``ImageName``; ``blob/shape[0]`` → ``ImageSize``; ``blob/psize_A`` → ``ImagePixelSize``.
* ``ctf/df1_A``, ``ctf/df2_A`` (Å) → ``DefocusU/V``; ``ctf/df_angle_rad`` and ``ctf/phase_shift_rad``
  (radians) → ``DefocusAngle`` / ``PhaseShift`` (degrees); ``ctf/accel_kv``, ``ctf/cs_mm``,
  ``ctf/amp_contrast``, ``ctf/bfactor`` → ``Voltage``, ``SphericalAberration``, ``AmplitudeContrast``,
  ``CtfBfactor``.
* ``alignments3D/pose``, an axis-angle rotation vector (radians), → RELION ZYZ Euler angles
  ``AngleRot/Tilt/Psi`` (degrees): RELION's rotation is ``Rz(rot)·Ry(tilt)·Rz(psi)`` of the same
  matrix (the convention of pyem's ``csparc2star``); ``alignments3D/shift`` (pixels of
  ``alignments3D/psize_A``) → ``OriginX/YAngst`` (Å); ``alignments3D/error`` → ``AlignmentError3D``.
* ``alignments2D/pose`` (in-plane, radians) → ``AnglePsi`` when there is no 3D pose;
  ``alignments2D/shift`` → origins likewise; ``alignments2D/class`` (0-based) → ``ClassNumber``
  (1-based); ``alignments2D/class_ess`` → ``ClassESS``; ``alignments2D/error`` → ``AlignmentError2D``.
* ``location/center_x_frac``, ``center_y_frac`` × ``location/micrograph_shape`` ([rows, cols]) →
  ``CoordinateX/Y`` (px); ``location/micrograph_path`` → ``MicrographName``.
* ``pick_stats/ncc_score`` → ``AutopickFigureOfMerit``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from cryofm.errors import InputError
from cryofm.io.particles import finish_table, resolve_stack

_DIRECT = {
    "blob/psize_A": "ImagePixelSize",
    "ctf/accel_kv": "Voltage",
    "ctf/cs_mm": "SphericalAberration",
    "ctf/amp_contrast": "AmplitudeContrast",
    "ctf/df1_A": "DefocusU",
    "ctf/df2_A": "DefocusV",
    "ctf/bfactor": "CtfBfactor",
    "ctf/ctf_fit_to_A": "CtfMaxResolution",
    "alignments3D/error": "AlignmentError3D",
    "alignments2D/error": "AlignmentError2D",
    "alignments2D/class_ess": "ClassESS",
    "pick_stats/ncc_score": "AutopickFigureOfMerit",
}
_RADIANS = {"ctf/df_angle_rad": "DefocusAngle", "ctf/phase_shift_rad": "PhaseShift"}


def rotvec_to_relion(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle vectors [N, 3] (radians) → RELION Euler angles [N, 3] (rot, tilt, psi) in degrees.

    ``tilt`` is in [0, 180]; ``rot`` and ``psi`` in (-180, 180].
    """
    rotvec = np.asarray(rotvec, dtype=np.float64).reshape(-1, 3)
    with warnings.catch_warnings():  # tilt 0 or 180: rot and psi are not separable; psi is set to 0
        warnings.filterwarnings("ignore", message="Gimbal lock")
        return Rotation.from_rotvec(rotvec).as_euler("ZYZ", degrees=True)


def _decode(a: np.ndarray) -> np.ndarray:
    return np.char.decode(a, "utf-8") if a.dtype.kind == "S" else a.astype(str)


def load_cs(path: str | Path) -> np.ndarray:
    """The structured array of a ``.cs`` file; InputError when it is not one."""
    try:
        cs = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"not a cryoSPARC .cs file ({exc})") from None
    if not isinstance(cs, np.ndarray) or cs.dtype.names is None:
        raise InputError(path, "not a cryoSPARC .cs file (no named fields)")
    return cs


def read_cs_particles(path: str | Path, root: str | Path | None = None) -> pd.DataFrame:
    """Particle table (see :mod:`cryofm.io.particles`) from a cryoSPARC particle ``.cs`` file."""
    path = Path(path)
    cs = load_cs(path)
    names = set(cs.dtype.names)
    if "blob/path" not in names or "blob/idx" not in names:
        raise InputError(path, ".cs file has no image paths (blob/path, blob/idx): use the particles "
                               ".cs exported with images, not a passthrough file")
    if len(cs) == 0:
        raise InputError(path, ".cs file has no rows")
    out = pd.DataFrame(index=np.arange(len(cs)))
    for src, dst in _DIRECT.items():
        if src in names:
            out[dst] = cs[src].astype(np.float64)
    for src, dst in _RADIANS.items():
        if src in names:
            out[dst] = np.rad2deg(cs[src].astype(np.float64))
    if "blob/shape" in names:
        out["ImageSize"] = cs["blob/shape"][:, 0].astype(np.int64)
    if "alignments3D/pose" in names:
        e = rotvec_to_relion(cs["alignments3D/pose"])
        out["AngleRot"], out["AngleTilt"], out["AnglePsi"] = e[:, 0], e[:, 1], e[:, 2]
        _shift(out, cs, "alignments3D")
    elif "alignments2D/pose" in names:
        psi = np.rad2deg(cs["alignments2D/pose"].astype(np.float64))
        out["AnglePsi"] = (psi + 180.0) % 360.0 - 180.0  # into [-180, 180)
        _shift(out, cs, "alignments2D")
    if "alignments2D/class" in names:
        out["ClassNumber"] = cs["alignments2D/class"].astype(np.int64) + 1
    elif "alignments3D/class" in names:
        out["ClassNumber"] = cs["alignments3D/class"].astype(np.int64) + 1
    if "location/micrograph_shape" in names:
        shape = cs["location/micrograph_shape"]
        out["MicrographShapeY"] = shape[:, 0].astype(np.int64)
        out["MicrographShapeX"] = shape[:, 1].astype(np.int64)
    if "location/center_x_frac" in names:
        out["CoordinateXFrac"] = cs["location/center_x_frac"].astype(np.float64)
        out["CoordinateYFrac"] = cs["location/center_y_frac"].astype(np.float64)
    if "location/micrograph_path" in names:
        out["MicrographName"] = _decode(cs["location/micrograph_path"])
    meta_dir = path.resolve().parent
    root_dir = Path(root).resolve() if root else None
    blob = [p.lstrip(">") for p in _decode(cs["blob/path"])]
    cache = {p: str(resolve_stack(p, meta_dir, root_dir)) for p in set(blob)}
    index = cs["blob/idx"].astype(np.int64)
    if (index < 0).any():
        raise InputError(path, "negative blob/idx")
    out["_index"] = index
    out["_stack"] = [cache[p] for p in blob]
    out["ImageName"] = [f"{i + 1}@{p}" for i, p in zip(index, blob, strict=True)]
    return finish_table(out, path)


def _shift(out: pd.DataFrame, cs: np.ndarray, group: str) -> None:
    names = cs.dtype.names
    if f"{group}/shift" not in names:
        return
    psize_key = f"{group}/psize_A" if f"{group}/psize_A" in names else "blob/psize_A"
    if psize_key not in names:
        return
    shift = cs[f"{group}/shift"].astype(np.float64) * cs[psize_key].astype(np.float64)[:, None]
    out["OriginXAngst"], out["OriginYAngst"] = shift[:, 0], shift[:, 1]
