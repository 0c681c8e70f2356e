"""The ``particles.star`` of an extraction, in RELION 3.1+ layout (what RELION's Extract writes).

Each block is preceded by ``# version 30001``, as in RELION's own files.

``data_optics``: ``rlnOpticsGroup``, ``rlnOpticsGroupName``, ``rlnMicrographOriginalPixelSize``,
``rlnVoltage`` (kV), ``rlnSphericalAberration`` (mm), ``rlnAmplitudeContrast``, ``rlnImagePixelSize``
(Å/px after binning), ``rlnImageSize`` (px), ``rlnImageDimensionality`` (2); an acquisition value
nobody gave is left out rather than invented.

``data_particles``: ``rlnCoordinateX/Y`` (the picks, in pixels of the unbinned micrograph),
``rlnImageName`` (``NNNNNN@Particles/<stem>.mrcs``, 1-based), ``rlnMicrographName``,
``rlnOpticsGroup``, the micrograph's CTF (``rlnDefocusU/V``, ``rlnDefocusAngle``, ...) when known,
and ``rlnAutopickFigureOfMerit`` when the picks carry scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import starfile

from cryofm.utils.atomic import atomic_path

OPTICS_ORDER = ("rlnOpticsGroup", "rlnOpticsGroupName", "rlnMicrographOriginalPixelSize", "rlnVoltage",
                "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize", "rlnImageSize",
                "rlnImageDimensionality")


def optics_table(groups: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """``data_optics`` from ``{group: {rln column: value}}``: columns known for every group only."""
    rows = [dict(v, rlnOpticsGroup=int(g)) for g, v in sorted(groups.items())]
    def known(v: Any) -> bool:
        return v is not None and not (isinstance(v, float) and np.isnan(v))

    cols = [c for c in OPTICS_ORDER if all(known(r.get(c)) for r in rows)]
    return pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)


def particles_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``data_particles`` from per-particle dicts (a column missing in some rows becomes NaN)."""
    first = ["rlnCoordinateX", "rlnCoordinateY", "rlnImageName", "rlnMicrographName", "rlnOpticsGroup"]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=first)
    return df[[c for c in first if c in df] + [c for c in df.columns if c not in first]]


def write_particles_star(path: str | Path, optics: pd.DataFrame, particles: pd.DataFrame) -> Path:
    """Atomically write the two blocks (``data_optics``, ``data_particles``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        starfile.write({"optics": optics, "particles": particles}, tmp, float_format="%.6f")
        # RELION >= 3.1 marks each block with its format version, as its own Extract does
        text = tmp.read_text()
        tmp.write_text(text.replace("\ndata_", "\n# version 30001\n\ndata_"))
    return path
