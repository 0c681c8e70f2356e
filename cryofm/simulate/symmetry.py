"""Point-group symmetry operators in RELION's conventions.

``Cn``: n-fold axis along z. ``Dn``: ``Cn`` plus a two-fold axis along x. ``T``, ``O``, ``I`` come
from SciPy's groups (orientation conventions may differ from RELION's for those three).

Operators are *active* rotation matrices ``S`` acting on 3D coordinates: a density ``V`` has the
symmetry when ``V(S r) = V(r)`` for every operator. The projection at pose ``A`` then equals the one
at ``A Sᵀ`` (see :mod:`cryofm.simulate.rotations`).
"""

from __future__ import annotations

import re

import numpy as np


def _rz(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def parse(symmetry: str) -> tuple[str, int]:
    """``"C4"`` → ("C", 4), ``"D7"`` → ("D", 7), ``"I"`` → ("I", 60). ValueError on unknown groups."""
    s = symmetry.strip().upper()
    m = re.fullmatch(r"([CD])(\d+)", s)
    if m and int(m.group(2)) >= 1:
        kind, n = m.group(1), int(m.group(2))
        return kind, n
    if s in ("T", "O", "I"):
        return s, {"T": 12, "O": 24, "I": 60}[s]
    raise ValueError(f"unknown point group {symmetry!r} (Cn, Dn, T, O or I)")


def operators(symmetry: str) -> np.ndarray:
    """All operators of the group as [K, 3, 3] active rotation matrices (identity first)."""
    kind, n = parse(symmetry)
    if kind in ("C", "D"):
        ops = [_rz(2 * np.pi * k / n) for k in range(n)]
        if kind == "D":
            flip = np.diag([1.0, -1.0, -1.0])  # two-fold about x
            ops += [op @ flip for op in ops]
        return np.stack(ops)
    from scipy.spatial.transform import Rotation

    mats = Rotation.create_group(kind).as_matrix()
    order = np.argsort(np.linalg.norm(mats - np.eye(3), axis=(1, 2)), kind="stable")
    return mats[order]


def order(symmetry: str) -> int:
    """Number of operators of the group (C4 → 4, D7 → 14, I → 60)."""
    kind, n = parse(symmetry)
    return 2 * n if kind == "D" else n


def symmetrize_points(points: np.ndarray, symmetry: str) -> np.ndarray:
    """Copies of ``points`` [N, 3] under every operator → [K * N, 3] (asymmetric unit first)."""
    ops = operators(symmetry)
    return np.einsum("kij,nj->kni", ops, np.asarray(points, dtype=np.float64)).reshape(-1, 3)
