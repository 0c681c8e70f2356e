"""Rotations in RELION's convention: ZYZ Euler angles (rot, tilt, psi) in degrees.

RELION's ``Euler_angles2matrix(rot, tilt, psi)`` gives the matrix ``A = Rz(psi) Ry(tilt) Rz(rot)``
built from *passive* (coordinate-frame) rotations. A projection image pixel at ``(x, y)`` integrates
the density along ``z`` at the 3D points ``Aᵀ (x, y, z)``; equivalently a feature at 3D position
``r`` appears in the image at ``(A r)[:2]``. ``A`` is the transpose of SciPy's intrinsic
``Rotation.from_euler("ZYZ", [rot, tilt, psi])`` matrix.
"""

from __future__ import annotations

import numpy as np


def euler_to_matrix(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """RELION ZYZ Euler angles in degrees ([B] each, or scalars) → matrices ``A`` [B, 3, 3]."""
    a, b, g = (np.deg2rad(np.atleast_1d(np.asarray(v, dtype=np.float64))) for v in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    A = np.empty(a.shape + (3, 3))
    A[..., 0, 0] = cg * cc - sg * sa
    A[..., 0, 1] = cg * cs + sg * ca
    A[..., 0, 2] = -cg * sb
    A[..., 1, 0] = -sg * cc - cg * sa
    A[..., 1, 1] = -sg * cs + cg * ca
    A[..., 1, 2] = sg * sb
    A[..., 2, 0] = sc
    A[..., 2, 1] = ss
    A[..., 2, 2] = cb
    return A


def matrix_to_euler(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matrices ``A`` [B, 3, 3] → RELION (rot, tilt, psi) in degrees, each [B] (RELION's formulas).

    Angles are in (-180, 180] for rot and psi and [0, 180] for tilt; at tilt 0 or 180 rot is 0.
    """
    A = np.asarray(A, dtype=np.float64).reshape(-1, 3, 3)
    abs_sb = np.hypot(A[:, 0, 2], A[:, 1, 2])
    tilt = np.arctan2(abs_sb, A[:, 2, 2])
    regular = abs_sb > 16 * np.finfo(np.float64).eps
    rot = np.where(regular, np.arctan2(A[:, 2, 1], A[:, 2, 0]), 0.0)
    psi = np.where(regular, np.arctan2(A[:, 1, 2], -A[:, 0, 2]),
                   np.where(np.sign(A[:, 2, 2]) > 0, np.arctan2(-A[:, 1, 0], A[:, 0, 0]),
                            np.arctan2(A[:, 1, 0], -A[:, 0, 0])))
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices [n, 3, 3] drawn uniformly on SO(3) (normalised Gaussian quaternions)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def random_euler(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` uniformly distributed orientations as RELION (rot, tilt, psi) in degrees."""
    return matrix_to_euler(random_rotations(n, rng))
