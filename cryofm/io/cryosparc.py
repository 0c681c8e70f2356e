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
* ``pick_stats/ncc_score`` → ``AutopickFigureOfMerit``; ``ctf/exp_group_id`` → ``OpticsGroup``.
* ``blob/sign`` → private ``_sign``. cryoSPARC models an image as ``sign × (CTF ⊛ projection of the
  density)``: particles extracted from micrographs are stored protein-dark with ``sign = -1``, so
  ``image × sign`` is protein-bright, RELION's convention for particle stacks. Ingest multiplies by it
  (and records ``ImageInverted``), so shards from RELION and cryoSPARC have the same contrast.

Passthrough. A cryoSPARC job writes only the fields it changed into its particles file
(``J24_001_particles.cs``: blob and alignments) and the fields it passed through unchanged into
``J24_passthrough_particles.cs`` beside it (CTF, exposure groups, micrograph location, picking
stats). :func:`passthrough_path` finds that file by cryoSPARC's naming; its fields are joined on
``uid`` (the particles file wins where both have a field). A passthrough that lacks some of the
particles' ``uid`` is the wrong file: an error.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from cryofm.errors import InputError
from cryofm.io.particles import check_pixel_size, finish_table

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
_INT = {"ctf/exp_group_id": "OpticsGroup"}
_PARTICLES = re.compile(r"^(?P<job>.*?J\d+)_(?:\d+_)?(?P<group>particles.*)$")
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


def passthrough_path(path: str | Path) -> Path | None:
    """The ``*_passthrough_*.cs`` that belongs to a particles ``.cs``, when it exists beside it.

    cryoSPARC names a job's outputs ``<job>_<group>.cs`` or ``<job>_<iteration>_<group>.cs`` (the
    project id may lead, ``P12_J24_001_particles.cs``, in exported files) and the passthrough of group
    ``<group>`` ``<job>_passthrough_<group>.cs``: ``J24_001_particles.cs`` →
    ``J24_passthrough_particles.cs``, ``J30_particles_selected.cs`` →
    ``J30_passthrough_particles_selected.cs``.
    """
    path = Path(path)
    m = _PARTICLES.match(path.stem)
    if m is None:
        return None
    cand = path.with_name(f"{m['job']}_passthrough_{m['group']}.cs")
    return cand if cand.is_file() and cand.resolve() != path.resolve() else None


def _with_passthrough(cs: np.ndarray, path: Path) -> tuple[dict[str, np.ndarray], Path | None]:
    """The particles file's fields, plus the passthrough's fields they lack (joined on ``uid``)."""
    fields = {k: cs[k] for k in cs.dtype.names}
    pt_path = passthrough_path(path)
    if pt_path is None:
        return fields, None
    pt = load_cs(pt_path)
    if "uid" not in fields or "uid" not in pt.dtype.names:
        raise InputError(pt_path, "cannot join the passthrough file: uid is missing from it or from "
                                  f"{path.name}")
    order = np.argsort(pt["uid"], kind="stable")
    sorted_uid = pt["uid"][order]
    pos = np.searchsorted(sorted_uid, fields["uid"])
    pos_c = np.minimum(pos, len(sorted_uid) - 1)
    hit = (len(sorted_uid) > 0) & (sorted_uid[pos_c] == fields["uid"])
    if not np.all(hit):
        raise InputError(pt_path, f"{int((~hit).sum())} of {len(hit)} particles of {path.name} (by uid) "
                                  "are not in this passthrough file: not its passthrough")
    rows = order[pos_c]
    for k in pt.dtype.names:
        if k not in fields:
            fields[k] = pt[k][rows]
    return fields, pt_path


def read_cs_particles(path: str | Path) -> pd.DataFrame:
    """Particle table (see :mod:`cryofm.io.particles`) from a cryoSPARC particle ``.cs`` file, joined
    with its passthrough file when one lies beside it (``df.attrs["passthrough"]``).

    ``_stack`` holds ``blob/path`` as written, less a leading ``>`` (resolved by
    :func:`cryofm.io.particles.read_particles`).
    """
    path = Path(path)
    cs = load_cs(path)
    if "blob/path" not in cs.dtype.names or "blob/idx" not in cs.dtype.names:
        raise InputError(path, ".cs file has no image paths (blob/path, blob/idx): use the particles "
                               ".cs exported with images, not a passthrough file")
    if len(cs) == 0:
        raise InputError(path, ".cs file has no rows")
    f, pt_path = _with_passthrough(cs, path)
    names = set(f)
    blob = [p.lstrip(">") for p in _decode(f["blob/path"])]
    if f["blob/idx"].dtype.kind not in "iu":  # a float index would be truncated to another image
        raise InputError(path, f"blob/idx must hold whole numbers, got dtype {f['blob/idx'].dtype}")
    index = f["blob/idx"].astype(np.int64)
    if (index < 0).any():
        raise InputError(path, "negative blob/idx")
    image_names = [f"{i + 1}@{p}" for i, p in zip(index, blob, strict=True)]
    out = pd.DataFrame(index=np.arange(len(cs)))
    for src, dst in _DIRECT.items():
        if src in names:
            out[dst] = f[src].astype(np.float64)
    if "ImagePixelSize" in out:
        check_pixel_size(out["ImagePixelSize"], "blob/psize_A", np.asarray(image_names), path)
    for src, dst in _RADIANS.items():
        if src in names:
            out[dst] = np.rad2deg(f[src].astype(np.float64))
    for src, dst in _INT.items():
        if src in names:
            out[dst] = f[src].astype(np.int64)
    if "blob/shape" in names:
        out["ImageSize"] = f["blob/shape"][:, 0].astype(np.int64)
    if "blob/sign" in names:
        sign = f["blob/sign"].astype(np.float64)
        if not np.isin(sign, (-1.0, 1.0)).all():
            i = int(np.argmax(~np.isin(sign, (-1.0, 1.0))))
            raise InputError(path, f"blob/sign: row {i + 1} ({image_names[i]}): {sign[i]} (expected 1 or -1)")
        out["_sign"] = sign
    if "alignments3D/pose" in names:
        e = rotvec_to_relion(f["alignments3D/pose"])
        out["AngleRot"], out["AngleTilt"], out["AnglePsi"] = e[:, 0], e[:, 1], e[:, 2]
        _shift(out, f, "alignments3D")
    elif "alignments2D/pose" in names:
        psi = np.rad2deg(f["alignments2D/pose"].astype(np.float64))
        out["AnglePsi"] = (psi + 180.0) % 360.0 - 180.0  # into [-180, 180)
        _shift(out, f, "alignments2D")
    if "alignments2D/class" in names:
        out["ClassNumber"] = f["alignments2D/class"].astype(np.int64) + 1
    elif "alignments3D/class" in names:
        out["ClassNumber"] = f["alignments3D/class"].astype(np.int64) + 1
    if "location/micrograph_shape" in names:
        shape = f["location/micrograph_shape"]
        out["MicrographShapeY"] = shape[:, 0].astype(np.int64)
        out["MicrographShapeX"] = shape[:, 1].astype(np.int64)
    if "location/center_x_frac" in names:
        out["CoordinateXFrac"] = f["location/center_x_frac"].astype(np.float64)
        out["CoordinateYFrac"] = f["location/center_y_frac"].astype(np.float64)
    if "location/micrograph_path" in names:
        out["MicrographName"] = _decode(f["location/micrograph_path"])
    out["_index"] = index
    out["_stack"] = blob
    out["ImageName"] = image_names
    df = finish_table(out, path)
    df.attrs["passthrough"] = str(pt_path) if pt_path else None
    return df


def _shift(out: pd.DataFrame, cs: dict[str, np.ndarray], group: str) -> None:
    names = set(cs)
    if f"{group}/shift" not in names:
        return
    psize_key = f"{group}/psize_A" if f"{group}/psize_A" in names else "blob/psize_A"
    if psize_key not in names:
        return
    shift = cs[f"{group}/shift"].astype(np.float64) * cs[psize_key].astype(np.float64)[:, None]
    out["OriginXAngst"], out["OriginYAngst"] = shift[:, 0], shift[:, 1]
