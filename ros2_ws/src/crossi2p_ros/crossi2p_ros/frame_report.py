"""What processing one camera/LiDAR pair gave, as the node publishes it and the evaluator reads it.

The node (parameter ``publish_frame_estimates``) publishes one ``diagnostic_msgs/DiagnosticArray``
per processed pair on ``~/frame_estimates``; its status holds the ``FrameReport`` as key/value
strings. Floats are written with ``repr``, so they are read back bit-exact: the live replay
evaluation compares the node's per-frame numbers with the offline pipeline's. Plain Python (no
rclpy): the encoding and decoding live here together and are tested together.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .pipeline import FrameOutcome

FRAME_STATUS_NAME = "crossi2p_calibration: frame estimate"
"""``DiagnosticStatus.name`` of a frame report."""


@dataclass
class FrameReport:
    """One processed pair: the per-frame estimate and the fusion state after it."""

    lidar_stamp_s: float
    image_stamp_s: float
    valid: bool
    reason: str
    """Why the frame is invalid ('' when valid)."""
    confidence: float
    inlier_ratio: float
    latency_ms: float
    """Preprocessing + graph + post-processing of this frame."""
    T_cam_lidar: np.ndarray | None
    """(4, 4) per-frame estimate (None when the frame could not be processed)."""
    status: str
    """Fusion state after this frame: waiting, converging or converged."""
    fused_T_cam_lidar: np.ndarray | None
    """(4, 4) fused estimate after this frame (None before the first fused frame)."""
    covariance: np.ndarray | None
    """(6, 6) covariance of the fused estimate, order (x, y, z, rot_x, rot_y, rot_z)."""
    drift_events: int
    frames_fused: int
    lidar_frame: str = ""
    camera_frame: str = ""
    travel_angle_deg: float | None = None
    """Direction-of-travel check's angle, degrees (``crossi2p.travel_check``; None: not checked)."""

    @classmethod
    def from_outcome(cls, outcome: FrameOutcome) -> FrameReport:
        est, st, pair = outcome.estimate, outcome.state, outcome.pair
        return cls(pair.lidar_stamp_s, pair.image_stamp_s, bool(est.valid), est.reason, float(est.confidence),
                   float(est.inlier_ratio), float(sum(est.latency_ms.values())), est.T_cam_lidar, st.status,
                   st.T_cam_lidar, st.covariance, int(st.drift_events), int(st.frames_accepted),
                   pair.lidar.frame_id, pair.image.frame_id, est.travel_angle_deg)

    def to_values(self) -> list[tuple[str, str]]:
        """``(key, value)`` strings of a DiagnosticStatus (floats exact)."""
        return [("lidar_stamp_s", repr(float(self.lidar_stamp_s))),
                ("image_stamp_s", repr(float(self.image_stamp_s))),
                ("valid", "true" if self.valid else "false"), ("reason", self.reason),
                ("confidence", repr(float(self.confidence))), ("inlier_ratio", repr(float(self.inlier_ratio))),
                ("latency_ms", repr(float(self.latency_ms))), ("T_cam_lidar", _floats(self.T_cam_lidar)),
                ("status", self.status), ("fused_T_cam_lidar", _floats(self.fused_T_cam_lidar)),
                ("covariance", _floats(self.covariance)), ("drift_events", str(self.drift_events)),
                ("frames_fused", str(self.frames_fused)), ("lidar_frame", self.lidar_frame),
                ("camera_frame", self.camera_frame),
                ("travel_angle_deg", "" if self.travel_angle_deg is None else repr(float(self.travel_angle_deg)))]

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> FrameReport:
        """Inverse of ``to_values``; ValueError naming the key on a malformed report."""
        try:
            return cls(float(values["lidar_stamp_s"]), float(values["image_stamp_s"]), values["valid"] == "true",
                       values["reason"], float(values["confidence"]), float(values["inlier_ratio"]),
                       float(values["latency_ms"]), _matrix(values["T_cam_lidar"], 4), values["status"],
                       _matrix(values["fused_T_cam_lidar"], 4), _matrix(values["covariance"], 6),
                       int(values["drift_events"]), int(values["frames_fused"]), values.get("lidar_frame", ""),
                       values.get("camera_frame", ""),
                       float(values["travel_angle_deg"]) if values.get("travel_angle_deg") else None)
        except KeyError as exc:
            raise ValueError(f"frame report: no key {exc}") from None


def _floats(a: np.ndarray | None) -> str:
    return "" if a is None else ",".join(repr(float(v)) for v in np.asarray(a).reshape(-1))


def _matrix(text: str, n: int) -> np.ndarray | None:
    if not text:
        return None
    values = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    if values.size != n * n:
        raise ValueError(f"frame report: expected {n * n} numbers, got {values.size}")
    return values.reshape(n, n)
