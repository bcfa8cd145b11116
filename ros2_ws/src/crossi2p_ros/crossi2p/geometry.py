"""Rigid-body geometry on scipy.spatial.transform, with the project's frame convention.

Convention (docs/conventions.md): ``T_a_b`` is a 4x4 homogeneous transform mapping points
from frame ``b`` into frame ``a``: ``p_a = T_a_b @ p_b``. Composition reads left to right
through matching frame letters: ``T_a_c = T_a_b @ T_b_c``.

Quaternions are in geometry_msgs order ``(x, y, z, w)``, which is also scipy's order.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "make_transform",
    "invert_transform",
    "transform_points",
    "transform_to_tq",
    "transform_from_tq",
    "rotation_angle_deg",
    "check_transform",
    "se3_exp",
    "se3_log",
    "skew",
]


def check_transform(T: np.ndarray, name: str = "transform", atol: float = 1e-5) -> np.ndarray:
    """Validate a 4x4 rigid transform and return it as float64.

    Raises ``ValueError`` naming ``name`` when the shape, last row, finiteness or rotation
    orthonormality (``R @ R.T == I``, ``det R == +1`` within ``atol``) is wrong.
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name}: contains NaN or Inf")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise ValueError(f"{name}: last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=atol) or np.linalg.det(R) < 0:
        raise ValueError(f"{name}: upper-left 3x3 block is not a proper rotation")
    return T


def make_transform(rotation: np.ndarray | Rotation, translation: np.ndarray) -> np.ndarray:
    """Build a 4x4 transform from a rotation (3x3 matrix or scipy Rotation) and translation (3,)."""
    R = rotation.as_matrix() if isinstance(rotation, Rotation) else np.asarray(rotation, np.float64)
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return T


def invert_transform(T_a_b: np.ndarray) -> np.ndarray:
    """Return ``T_b_a`` given ``T_a_b`` (closed form, no general matrix inverse). Shape (4, 4)."""
    R = T_a_b[:3, :3]
    t = T_a_b[:3, 3]
    T_b_a = np.eye(4)
    T_b_a[:3, :3] = R.T
    T_b_a[:3, 3] = -R.T @ t
    return T_b_a


def transform_points(T_a_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Map points from frame b into frame a.

    Args:
        T_a_b: (4, 4) transform.
        points_b: (N, 3) points in frame b (extra columns are ignored).
    Returns:
        (N, 3) points in frame a, same float dtype as the input points.
    """
    pts = np.asarray(points_b)[:, :3]
    out = pts @ T_a_b[:3, :3].T.astype(pts.dtype, copy=False) + T_a_b[:3, 3].astype(pts.dtype, copy=False)
    return out


def transform_to_tq(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a transform into translation (3,) and quaternion (4,) in ``(x, y, z, w)`` order."""
    return T[:3, 3].copy(), Rotation.from_matrix(T[:3, :3]).as_quat()


def transform_from_tq(translation, quaternion_xyzw) -> np.ndarray:
    """Build a transform from translation (3,) and quaternion ``(x, y, z, w)`` (normalised here)."""
    q = np.asarray(quaternion_xyzw, dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
        raise ValueError(f"quaternion: expected 4 finite numbers (x, y, z, w) with non-zero norm, got {q}")
    return make_transform(Rotation.from_quat(q / np.linalg.norm(q)), translation)


def rotation_angle_deg(R: np.ndarray) -> float:
    """Geodesic angle of a rotation matrix (3, 3) in degrees, in [0, 180].

    Closed form ``atan2(|vee(R - R^T)| / 2, (trace R - 1) / 2)``: accurate at every angle (unlike
    ``arccos`` of the trace near 0 and 180 deg) and ten times faster than going through
    ``scipy.spatial.transform.Rotation`` (the refinement calls it once per objective evaluation).
    """
    R = np.asarray(R, dtype=np.float64)
    s = 0.5 * np.linalg.norm([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    c = 0.5 * (R[0, 0] + R[1, 1] + R[2, 2] - 1.0)
    return float(np.degrees(np.arctan2(s, c)))


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """Exponential map of a twist ``xi = (rho(3), phi(3))`` (translation first) to a 4x4 transform.

    Uses the exact SE(3) left Jacobian so that ``se3_log(se3_exp(xi)) == xi`` for |phi| < pi.
    """
    xi = np.asarray(xi, dtype=np.float64).reshape(6)
    rho, phi = xi[:3], xi[3:]
    theta = np.linalg.norm(phi)
    W = skew(phi)
    if theta < 1e-8:
        V = np.eye(3) + 0.5 * W
    else:
        V = (np.eye(3) + (1 - np.cos(theta)) / theta**2 * W
             + (theta - np.sin(theta)) / theta**3 * W @ W)
    return make_transform(Rotation.from_rotvec(phi), V @ rho)


def se3_log(T: np.ndarray) -> np.ndarray:
    """Logarithm map of a 4x4 transform to a twist ``(rho(3), phi(3))``; inverse of ``se3_exp``."""
    phi = Rotation.from_matrix(T[:3, :3]).as_rotvec()
    theta = np.linalg.norm(phi)
    W = skew(phi)
    if theta < 1e-8:
        V_inv = np.eye(3) - 0.5 * W
    else:
        half = theta / 2
        V_inv = np.eye(3) - 0.5 * W + (1 - half / np.tan(half)) / theta**2 * W @ W
    return np.concatenate([V_inv @ T[:3, 3], phi])


def skew(v: np.ndarray) -> np.ndarray:
    """(3,) vector -> (3, 3) cross-product matrix ``[v]x`` (``[v]x @ w == cross(v, w)``)."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
