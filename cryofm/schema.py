"""The canonical annotation schema: every per-particle and per-experiment field cryofm knows.

Field names follow the cryoPANDA dataset's spelling (RELION's names without the ``rln`` prefix where
one exists). Units are the field's conventions: pixel sizes in Å/px, defocus in Å, voltage in kV,
spherical aberration in mm, dose in e⁻/Å², angles in degrees, molecular weight in kDa.

Missing values are explicit: NaN for floats, ``None`` (JSON ``null``) for strings, integers and
booleans. Zero is a real value and never stands for "unknown".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

SCHEMA_VERSION = "1.0"

Group = Literal[
    "ids", "pose", "ctf", "class2d", "micrograph", "acquisition", "resolution", "sample", "image"
]
Level = Literal["particle", "experiment"]
Dtype = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True)
class Field:
    """One annotation field.

    Attributes:
        name: key in the shard JSON and in every table.
        dtype: ``str``, ``int``, ``float`` or ``bool``.
        unit: physical unit ("" when dimensionless).
        group: ids, pose, ctf, class2d, micrograph, acquisition, resolution, sample or image.
        level: ``particle`` (varies per particle) or ``experiment`` (one value per experiment).
        acquisition: True for the acquisition parameters that evaluations regress out.
        doc: one line on what it is and where it comes from.
    """

    name: str
    dtype: Dtype
    unit: str
    group: Group
    level: Level
    acquisition: bool = False
    doc: str = ""

    def missing(self) -> Any:
        """The explicit missing value for this field (NaN for floats, None otherwise)."""
        return math.nan if self.dtype == "float" else None


def _f(name: str, dtype: Dtype, unit: str, group: Group, level: Level = "particle",
       acquisition: bool = False, doc: str = "") -> Field:
    return Field(name, dtype, unit, group, level, acquisition, doc)


FIELDS: tuple[Field, ...] = (
    # ids
    _f("uid", "str", "", "ids", doc="globally unique particle id: '<experiment>/<source stem>/<index>'"),
    _f("experiment", "str", "", "ids", "experiment", doc="experiment id the dataset is keyed by"),
    _f("ImageName", "str", "", "ids", doc="RELION-style 'index@stack' of the source image (1-based)"),
    _f("EMPIAR", "str", "", "ids", "experiment", doc="EMPIAR entry, e.g. 'EMPIAR-10017'"),
    _f("EMDB", "str", "", "ids", "experiment", doc="EMDB entry, e.g. 'EMD-1997'"),
    _f("PDB", "str", "", "ids", "experiment", doc="PDB entry, e.g. '1OEL'"),
    # pose (3D refinement)
    _f("AngleRot", "float", "deg", "pose", doc="first ZYZ Euler angle (RELION convention)"),
    _f("AngleTilt", "float", "deg", "pose", doc="second ZYZ Euler angle"),
    _f("AnglePsi", "float", "deg", "pose", doc="third ZYZ Euler angle (in-plane)"),
    _f("OriginXAngst", "float", "Å", "pose", doc="x shift of the particle centre in the box"),
    _f("OriginYAngst", "float", "Å", "pose", doc="y shift of the particle centre in the box"),
    _f("AlignmentError3D", "float", "", "pose", doc="3D alignment error (cryoSPARC alignments3D/error)"),
    # CTF
    _f("DefocusU", "float", "Å", "ctf", acquisition=True, doc="defocus along the major axis"),
    _f("DefocusV", "float", "Å", "ctf", acquisition=True, doc="defocus along the minor axis"),
    _f("DefocusAngle", "float", "deg", "ctf", acquisition=True, doc="astigmatism angle"),
    _f("PhaseShift", "float", "deg", "ctf", doc="phase-plate phase shift"),
    _f("CtfBfactor", "float", "Å²", "ctf", doc="CTF envelope B-factor"),
    _f("CtfMaxResolution", "float", "Å", "ctf", doc="resolution to which Thon rings were fitted"),
    # 2D classification
    _f("ClassNumber", "int", "", "class2d", doc="2D (or 3D) class the particle was assigned to, 1-based"),
    _f("ClassESS", "float", "", "class2d",
       doc="effective number of classes the particle's 2D-class posterior is spread over (>= 1; "
           "cryoSPARC alignments2D/class_ess)"),
    _f("ClassECA", "float", "", "class2d",
       doc="effective classes assigned of the particle's 2D class: mean ClassESS over its particles "
           "(cryoSPARC Select 2D's ECA)"),
    _f("ClassResolution", "float", "Å", "class2d", doc="estimated resolution of the particle's 2D class"),
    _f("AlignmentError2D", "float", "", "class2d", doc="2D alignment error (cryoSPARC alignments2D/error)"),
    # micrograph and picking
    _f("MicrographName", "str", "", "micrograph", doc="source micrograph file name"),
    _f("MicrographShapeX", "int", "px", "micrograph", doc="micrograph width (columns)"),
    _f("MicrographShapeY", "int", "px", "micrograph", doc="micrograph height (rows)"),
    _f("CoordinateX", "float", "px", "micrograph", doc="particle centre column in the micrograph"),
    _f("CoordinateY", "float", "px", "micrograph", doc="particle centre row in the micrograph"),
    _f("CoordinateXFrac", "float", "", "micrograph", doc="CoordinateX / MicrographShapeX"),
    _f("CoordinateYFrac", "float", "", "micrograph", doc="CoordinateY / MicrographShapeY"),
    _f("AutopickFigureOfMerit", "float", "", "micrograph", doc="picker score of this particle"),
    # acquisition
    _f("Voltage", "float", "kV", "acquisition", acquisition=True, doc="acceleration voltage"),
    _f("ElectronDose", "float", "e⁻/Å²", "acquisition", acquisition=True, doc="total exposure"),
    _f("SphericalAberration", "float", "mm", "acquisition", acquisition=True, doc="Cs"),
    _f("AmplitudeContrast", "float", "", "acquisition", acquisition=True, doc="amplitude contrast fraction"),
    _f("OpticsGroup", "int", "", "acquisition",
       doc="optics / exposure group within the experiment (RELION rlnOpticsGroup, cryoSPARC "
           "ctf/exp_group_id)"),
    _f("ImageSize", "int", "px", "acquisition", doc="original particle box edge"),
    _f("ImagePixelSize", "float", "Å/px", "acquisition", acquisition=True,
       doc="original pixel size of the particle image"),
    _f("EffectiveImageSize", "int", "px", "image", doc="box edge stored in the shard after resizing"),
    _f("EffectiveImagePixelSize", "float", "Å/px", "image",
       doc="pixel size after resizing: ImagePixelSize * ImageSize / EffectiveImageSize"),
    _f("ImageScale", "float", "", "image", doc="multiply stored uint8 values by this (NaN for float16)"),
    _f("ImageOffset", "float", "", "image", doc="add this after scaling stored uint8 values"),
    _f("ImageInverted", "bool", "", "image",
       doc="True where the stored pixels are the negation of the file's (invert=, cryoSPARC blob/sign -1)"),
    # resolution
    _f("ReconstructionResolution", "float", "Å", "resolution", "experiment",
       doc="resolution of the reconstruction these particles gave"),
    _f("EMDBResolution", "float", "Å", "resolution", "experiment", doc="resolution reported in EMDB"),
    # sample
    _f("MolecularWeight", "float", "kDa", "sample", "experiment", doc="molecular weight of the assembly"),
    _f("Subunits", "int", "", "sample", "experiment", doc="number of polymer chains in the assembly"),
    _f("MaxDiameter", "float", "Å", "sample", "experiment", doc="largest extent of the assembly"),
    _f("Symmetry", "str", "", "sample", "experiment", doc="point group, e.g. 'C1', 'D7', 'O', 'I'"),
    _f("HasDNA", "bool", "", "sample", "experiment", doc="assembly contains DNA"),
    _f("HasRNA", "bool", "", "sample", "experiment", doc="assembly contains RNA"),
    _f("ProteinClass", "str", "", "sample", "experiment", doc="coarse class, e.g. 'ribosome', 'channel'"),
    _f("SampleName", "str", "", "sample", "experiment", doc="free-text sample name"),
    _f("SequenceCluster", "str", "", "sample", "experiment",
       doc="group key for splits (e.g. sequence cluster): no group is on two sides"),
    _f("Selected", "bool", "", "sample", "experiment",
       doc="kept as one of its SequenceCluster's representatives by `cryofm curate`"),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
PARTICLE_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.level == "particle")
EXPERIMENT_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.level == "experiment")
ACQUISITION_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.acquisition)


def field(name: str) -> Field:
    """Look up a field by name; KeyError names the unknown field."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown schema field {name!r}") from None


def empty_record() -> dict[str, Any]:
    """A record with every field present and missing (NaN / None)."""
    return {f.name: f.missing() for f in FIELDS}


def is_missing(value: Any) -> bool:
    """True for None and float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def coerce(name: str, value: Any) -> Any:
    """Convert ``value`` to the field's dtype; missing-like inputs become the explicit missing value.

    Empty strings, None and NaN are missing. Raises ValueError naming the field on a bad value.
    """
    f = field(name)
    if value is None or (isinstance(value, str) and value.strip() in ("", "nan", "NaN", "None", "null")):
        return f.missing()
    try:
        if f.dtype == "float":
            return float(value)
        if isinstance(value, float) and math.isnan(value):
            return None
        if f.dtype == "int":
            return int(value)
        if f.dtype == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("true", "yes", "1", "y"):
                    return True
                if low in ("false", "no", "0", "n"):
                    return False
                raise ValueError(value)
            return bool(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"field {name!r}: cannot read {value!r} as {f.dtype}") from None


def to_json_record(record: dict[str, Any]) -> dict[str, Any]:
    """Record → JSON-safe dict: every schema field present, NaN written as null."""
    out: dict[str, Any] = {}
    for f in FIELDS:
        v = record.get(f.name, f.missing())
        out[f.name] = None if is_missing(v) else coerce(f.name, v)
    for k, v in record.items():  # extra, non-schema keys are kept (e.g. simulation ground truth)
        if k not in BY_NAME:
            out[k] = None if is_missing(v) else v
    return out


def from_json_record(obj: dict[str, Any]) -> dict[str, Any]:
    """JSON dict → record with NaN for missing floats."""
    rec = empty_record()
    for k, v in obj.items():
        rec[k] = coerce(k, v) if k in BY_NAME else v
    return rec


def effective_pixel_size(pixel_size: float, image_size: int, out_size: int) -> float:
    """Pixel size (Å/px) after resizing a box of ``image_size`` px to ``out_size`` px."""
    return float(pixel_size) * float(image_size) / float(out_size)
