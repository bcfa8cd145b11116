"""Priors of ``T_cam_lidar``: a start for the refinement and bounds that gate the estimates.

A prior is what the user already knows about the extrinsic: a calibration YAML (``load_prior``;
a CAD drawing, a previous calibration, a tape measure) or the /tf_static chain of a robot's URDF
(the node looks that up). Each prior states bounds: the true extrinsic is believed to be within
``max_rotation_deg`` (the angle of ``R_est R_prior^T``) and ``max_translation_m`` (per axis, the
largest of ``|t_est - t_prior|``, camera optical frame: the refinement's search box and the
``refine`` protocol are per axis too) of ``T_cam_lidar``.

Used by ``crossi2p_ros.pipeline.CalibrationPipeline``: a per-frame estimate outside the bounds is
rejected before fusion with the reason of ``prior_violation``; when the network has nothing
consistent to offer (fusion not converged), the refinement starts from the prior and searches
within its bounds.

YAML keys (``crossi2p.calib_io``): the calibration record plus optional
``prior_max_rotation_deg`` and ``prior_max_translation_m``; a file without them gets
``DEFAULT_MAX_ROTATION_DEG`` / ``DEFAULT_MAX_TRANSLATION_M`` (10 deg / 0.5 m: a hand-measured
mounting: a few degrees of pitch/yaw and decimetres of lever arm; the refinement's default box
is 8 deg / 0.5 m).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calib_io import load_calibration_input
from .geometry import check_transform, invert_transform, rotation_angle_deg

__all__ = ["DEFAULT_MAX_ROTATION_DEG", "DEFAULT_MAX_TRANSLATION_M", "MAX_PRIOR_ROTATION_DEG", "Prior", "load_prior", "pose_distance",
           "prior_distance", "prior_violation"]

DEFAULT_MAX_ROTATION_DEG = 10.0
"""Rotation bound of a prior YAML that does not state ``prior_max_rotation_deg`` (degrees)."""
DEFAULT_MAX_TRANSLATION_M = 0.5
"""Per-axis translation bound of a prior YAML that does not state ``prior_max_translation_m`` (metres)."""


MAX_PRIOR_ROTATION_DEG = 180.0
"""Largest rotation bound of a prior (every rotation is within 180 deg of another)."""


@dataclass
class Prior:
    """A prior of the extrinsic with its bounds (module docstring)."""

    T_cam_lidar: np.ndarray
    """(4, 4) prior extrinsic, LiDAR frame -> camera optical frame."""
    max_rotation_deg: float = DEFAULT_MAX_ROTATION_DEG
    """The true rotation is within this angle of the prior's (degrees)."""
    max_translation_m: float = DEFAULT_MAX_TRANSLATION_M
    """The true translation is within this of the prior's, per axis (metres, camera frame)."""
    source: str = ""
    """Where it came from, for diagnostics and reports (a file path, ``tf: camera <- lidar``)."""
    lidar_frame: str = ""
    """tf frame id of the LiDAR the prior names ('' when unknown)."""
    camera_frame: str = ""
    """tf frame id of the camera optical frame the prior names ('' when unknown)."""

    def __post_init__(self) -> None:
        where = f"prior {self.source}".strip()
        self.T_cam_lidar = check_transform(self.T_cam_lidar, f"{where}: T_cam_lidar")
        for name in ("max_rotation_deg", "max_translation_m"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{where}: {name} must be a number > 0, got {v!r}")
            if name == "max_rotation_deg" and v > MAX_PRIOR_ROTATION_DEG:
                raise ValueError(f"{where}: {name} must be at most {MAX_PRIOR_ROTATION_DEG:g} deg "
                                 f"(every rotation is within that), got {v!r}")
            setattr(self, name, float(v))


MAX_LEVER_ARM_M = 10.0
"""Two sensors on one vehicle are closer than this (metres): a ``T_cam_lidar`` whose translation
is longer is not a calibration of one rig (a prior in millimetres, or in another frame), and a
network estimate that long is invalid (``crossi2p.runtime.RuntimeConfig.max_lever_arm_m``)."""


def load_prior(path: str | os.PathLike) -> Prior:
    """The prior of a calibration YAML (its ``T_cam_lidar`` and the optional bound keys).

    The camera keys (``K``, ``width``, ``height``) may be absent: a prior is an extrinsic (from a
    CAD drawing, say); the intrinsics come from the data's CameraInfo.

    Raises:
        ValueError: one line starting ``prior <file>:`` (not found, not a calibration record, bad
            bound, a misspelt key such as ``prior_max_rotaton_deg``: ``load_calibration_yaml``), or
            its sensors more than ``MAX_LEVER_ARM_M`` apart (millimetres instead of metres).
    """
    path = Path(path)
    calib = load_calibration_input(path, "prior", require_camera=False)
    lever_arm_m = float(np.linalg.norm(calib.T_cam_lidar[:3, 3]))
    if lever_arm_m > MAX_LEVER_ARM_M:
        raise ValueError(f"prior {path}: T_cam_lidar puts the LiDAR {lever_arm_m:.1f} m from the camera; two "
                         f"sensors of one rig are within {MAX_LEVER_ARM_M:g} m (its translation is in metres: "
                         f"millimetres, or another frame?)")
    rot = calib.prior_max_rotation_deg
    trans = calib.prior_max_translation_m
    return Prior(calib.T_cam_lidar, DEFAULT_MAX_ROTATION_DEG if rot is None else rot,
                 DEFAULT_MAX_TRANSLATION_M if trans is None else trans, source=str(path),
                 lidar_frame=calib.named_frames.get("parent", ""),      # only what the file names:
                 camera_frame=calib.named_frames.get("child", ""))      # defaults are not compared


def pose_distance(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """``(rotation_deg, translation_m)`` between two (4, 4) ``T_cam_lidar``: the angle of
    ``R_a R_b^T`` and the largest per-axis difference of their translations (camera frame)."""
    A, B = np.asarray(T_a, dtype=np.float64), np.asarray(T_b, dtype=np.float64)
    rot = rotation_angle_deg(A[:3, :3] @ B[:3, :3].T)
    return rot, float(np.abs(A[:3, 3] - B[:3, 3]).max())


def prior_distance(T_est: np.ndarray, prior: Prior) -> tuple[float, float]:
    """``(rotation_deg, translation_m)`` of ``T_est`` from the prior (``pose_distance``)."""
    return pose_distance(T_est, prior.T_cam_lidar)


def prior_violation(T_est: np.ndarray, prior: Prior) -> str | None:
    """None when ``T_est`` (4, 4) is within the prior's bounds, else the reason, e.g.
    ``"outside prior: 12.3 deg / 0.81 m from the prior (bounds 10 deg / 0.5 m)"``."""
    rot, trans = prior_distance(T_est, prior)
    if rot <= prior.max_rotation_deg and trans <= prior.max_translation_m:
        return None
    reason = (f"outside prior: {rot:.1f} deg / {trans:.2f} m from the prior "
              f"(bounds {prior.max_rotation_deg:g} deg / {prior.max_translation_m:g} m)")
    # the common mistake: the prior given as T_lidar_cam (the tf transform) instead of T_cam_lidar
    inv_rot, inv_trans = pose_distance(T_est, invert_transform(prior.T_cam_lidar))
    if inv_rot <= prior.max_rotation_deg and inv_trans <= prior.max_translation_m:
        reason += "; within the bounds of the prior's inverse: was T_lidar_cam given instead of T_cam_lidar?"
    return reason


def prior_frame_mismatch(prior: Prior, lidar_frame: str, camera_frame: str) -> str | None:
    """None when the prior names the data's frames (or one side names none), else one line
    naming both, e.g. ``"prior p.yaml is for camera_05_optical <- lidar, the data is
    camera_01_optical <- lidar (a prior of another sensor?)"``: a prior of another camera or
    LiDAR would gate and start the refinement from the wrong pose.

    Args:
        prior: the prior; its ``lidar_frame`` / ``camera_frame`` ('' when its file names none).
        lidar_frame: the LiDAR sweeps' frame id ('' when unknown).
        camera_frame: the images' (optical) frame id ('' when unknown).
    """
    pairs = ((prior.lidar_frame, lidar_frame), (prior.camera_frame, camera_frame))
    if all(not a or not b or a == b for a, b in pairs):
        return None
    swapped = (prior.lidar_frame, prior.camera_frame) == (camera_frame, lidar_frame) and lidar_frame != camera_frame
    hint = ("its frames are swapped: the parent is the LiDAR frame and T_cam_lidar maps LiDAR points into the "
            "camera frame; was T_lidar_cam given?" if swapped else "a prior of another sensor?")
    return (f"prior {prior.source} is for {prior.camera_frame or '?'} <- {prior.lidar_frame or '?'}, the data is "
            f"{camera_frame or '?'} <- {lidar_frame or '?'} ({hint})")
