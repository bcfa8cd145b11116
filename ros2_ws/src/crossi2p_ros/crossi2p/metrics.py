"""Registration errors and the two test protocols (docs/conventions.md).

Errors are computed on the relative transform ``inv(T_est) @ T_gt``:

- ``rte_m``: norm of its translation (metres);
- ``rre_geodesic_deg``: its rotation angle (degrees);
- ``rre_euler_sum_deg``: sum of the absolute Euler angles of its rotation (degrees), what the
  KITTI I2P papers' code computes (DeepI2P/CorrI2P/VP2P-Match/CrossI2P), kept to compare with
  their tables. Euler convention: scipy's extrinsic ``"xyz"`` (= the papers' ``R = Rz Ry Rx``).

``Acc`` is the fraction of frames with ``rte_m < 2`` and ``rre_euler_sum_deg < 5``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from .geometry import invert_transform, make_transform

Protocol = Literal["global", "refine"]

ACC_RTE_M = 2.0
ACC_RRE_DEG = 5.0


@dataclass(frozen=True)
class RegistrationError:
    """Errors of one estimate against its ground truth."""

    rte_m: float
    rre_geodesic_deg: float
    rre_euler_sum_deg: float

    @property
    def success(self) -> bool:
        """Counted in ``acc`` (the papers' criterion)."""
        return self.rte_m < ACC_RTE_M and self.rre_euler_sum_deg < ACC_RRE_DEG


def registration_error(T_est: np.ndarray, T_gt: np.ndarray) -> RegistrationError:
    """Errors of ``T_est`` against ``T_gt`` (both (4, 4), same frames)."""
    D = invert_transform(T_est) @ T_gt
    rot = Rotation.from_matrix(D[:3, :3])
    return RegistrationError(
        rte_m=float(np.linalg.norm(D[:3, 3])),
        rre_geodesic_deg=float(np.degrees(rot.magnitude())),
        rre_euler_sum_deg=float(np.sum(np.abs(rot.as_euler("xyz", degrees=True)))),
    )


def summarize_errors(errors: list[RegistrationError]) -> dict:
    """Summary figures with the stable JSON keys of ARCHITECTURE.md (Interfaces)."""
    if not errors:
        return {"frames": 0, "acc": 0.0}
    rte = np.array([e.rte_m for e in errors])
    geo = np.array([e.rre_geodesic_deg for e in errors])
    eul = np.array([e.rre_euler_sum_deg for e in errors])
    return {
        "frames": len(errors),
        "acc": float(np.mean([e.success for e in errors])),
        "rte_m_median": float(np.median(rte)),
        "rte_m_mean": float(np.mean(rte)),
        "rte_m_std": float(np.std(rte)),
        "rre_euler_sum_deg_median": float(np.median(eul)),
        "rre_euler_sum_deg_mean": float(np.mean(eul)),
        "rre_euler_sum_deg_std": float(np.std(eul)),
        "rre_geodesic_deg_median": float(np.median(geo)),
        "rre_geodesic_deg_mean": float(np.mean(geo)),
        "rre_geodesic_deg_std": float(np.std(geo)),
    }


def registration_recall(errors: list[RegistrationError], rre_thresholds_deg: np.ndarray,
                        rte_m: float = ACC_RTE_M) -> np.ndarray:
    """Fraction of frames with ``rte < rte_m`` and Euler-sum RRE below each threshold."""
    eul = np.array([e.rre_euler_sum_deg for e in errors])
    rte = np.array([e.rte_m for e in errors])
    return np.array([np.mean((eul < t) & (rte < rte_m)) if len(errors) else 0.0
                     for t in rre_thresholds_deg])


@dataclass(frozen=True)
class ProtocolPerturbation:
    """A perturbation drawn by a protocol sampler.

    ``T_pert`` maps the original LiDAR frame into the perturbed one (``points' = T_pert @ p``).
    The ground truth after perturbing becomes ``T_cam_lidar' = T_cam_lidar @ inv(T_pert)``.
    ``T_prior`` is the initial guess handed to the estimator for the perturbed cloud
    (``None`` for the ``global`` protocol, which has no prior).
    """

    T_pert: np.ndarray
    T_prior: np.ndarray | None


def sample_global_perturbation(rng: np.random.Generator, T_cam_lidar: np.ndarray,
                               max_translation_m: float = 10.0) -> ProtocolPerturbation:
    """The KITTI I2P ``global`` protocol (DeepI2P/CorrI2P/VP2P-Match/CrossI2P).

    In the camera frame: rotation about the camera's vertical axis (y) uniform in
    ``[-2 pi, 2 pi)`` and translation with x, z uniform in ``[-max, max]`` m, y = 0, applied to
    the point cloud. Expressed in the LiDAR frame: ``T_pert = inv(T_cl) @ G @ T_cl``.
    """
    yaw = rng.uniform(-2 * np.pi, 2 * np.pi)
    t = np.array([rng.uniform(-max_translation_m, max_translation_m), 0.0,
                  rng.uniform(-max_translation_m, max_translation_m)])
    G_cam = make_transform(Rotation.from_euler("y", yaw), t)
    T_pert = invert_transform(T_cam_lidar) @ G_cam @ T_cam_lidar
    return ProtocolPerturbation(T_pert=T_pert, T_prior=None)


def sample_refine_perturbation(rng: np.random.Generator, T_cam_lidar: np.ndarray,
                               max_rotation_deg: float = 20.0,
                               max_translation_m: float = 1.5) -> ProtocolPerturbation:
    """The online-calibration ``refine`` protocol (RegNet/LCCNet).

    The cloud is left where it is (``T_pert = I``); the prior is the ground truth off by a
    rotation with each Euler angle uniform in ``[-max_rotation_deg, max_rotation_deg]`` and a
    translation uniform per axis in ``[-max_translation_m, max_translation_m]``.
    """
    angles = rng.uniform(-max_rotation_deg, max_rotation_deg, size=3)
    t = rng.uniform(-max_translation_m, max_translation_m, size=3)
    E = make_transform(Rotation.from_euler("xyz", angles, degrees=True), t)
    return ProtocolPerturbation(T_pert=np.eye(4), T_prior=E @ T_cam_lidar)


def sample_perturbation(protocol: Protocol, rng: np.random.Generator,
                        T_cam_lidar: np.ndarray) -> ProtocolPerturbation:
    """Dispatch on the protocol name (``global`` or ``refine``)."""
    if protocol == "global":
        return sample_global_perturbation(rng, T_cam_lidar)
    if protocol == "refine":
        return sample_refine_perturbation(rng, T_cam_lidar)
    raise ValueError(f"protocol: expected 'global' or 'refine', got {protocol!r}")
