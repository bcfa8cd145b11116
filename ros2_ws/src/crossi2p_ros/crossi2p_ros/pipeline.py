"""The calibration pipeline without ROS transport: pairing -> runtime -> fusion.

The node feeds it from DDS callbacks (processing the newest pair on a worker thread); the bag
evaluator feeds it from a rosbag2 read with rosbags and processes every pair. One code path for
both, so a bag replayed offline gives the node's numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossi2p.camera import CameraModel
from crossi2p.fusion import ExtrinsicFuser, FusionConfig, FusionState
from crossi2p.runtime import CalibrationRuntime, FrameEstimate

from .pairing import PairingConfig, StampedPair, StampPairer


@dataclass
class CameraFrame:
    """A decoded image with the camera model of its CameraInfo."""

    image_rgb: np.ndarray
    """(H, W, 3) uint8 RGB."""
    camera: CameraModel
    frame_id: str


@dataclass
class LidarSweep:
    """A decoded LiDAR sweep."""

    points: np.ndarray
    """(N, 4) float32 x, y, z, intensity in the LiDAR frame."""
    frame_id: str


@dataclass
class FrameOutcome:
    """What processing one pair did."""

    pair: StampedPair
    estimate: FrameEstimate
    fused: bool
    """The per-frame estimate was valid and accepted into the fusion window."""
    state: FusionState
    """Snapshot of the fusion state after this frame (T_cam_lidar and covariance are copies)."""


class CalibrationPipeline:
    """Pairing, per-frame estimation and temporal fusion (plain Python; not thread-safe)."""

    def __init__(self, runtime: CalibrationRuntime, pairing: PairingConfig | None = None,
                 fusion: FusionConfig | None = None):
        self.runtime = runtime
        self.pairer: StampPairer[CameraFrame, LidarSweep] = StampPairer(pairing)
        self.fuser = ExtrinsicFuser(fusion)

    def offer_image(self, stamp_s: float, frame: CameraFrame) -> list[StampedPair]:
        """Queue a camera frame; returns the pairs that became final."""
        return self.pairer.add_image(stamp_s, frame)

    def offer_lidar(self, stamp_s: float, sweep: LidarSweep) -> list[StampedPair]:
        """Queue a LiDAR sweep; returns the pairs that became final."""
        return self.pairer.add_lidar(stamp_s, sweep)

    def estimate(self, pair: StampedPair, T_prior: np.ndarray | None = None) -> FrameEstimate:
        """Per-frame estimate on one pair (the expensive step; touches no shared state)."""
        return self.runtime.estimate(pair.image.image_rgb, pair.lidar.points, pair.image.camera, T_prior)

    def fuse(self, pair: StampedPair, estimate: FrameEstimate) -> FrameOutcome:
        """Fuse a per-frame estimate (invalid estimates are not fused)."""
        fused = bool(estimate.valid and self.fuser.add(estimate.T_cam_lidar, estimate.confidence,
                                                        pair.lidar_stamp_s))
        st = self.fuser.state
        snapshot = FusionState(**{**st.__dict__,
                                   "T_cam_lidar": None if st.T_cam_lidar is None else st.T_cam_lidar.copy(),
                                   "covariance": None if st.covariance is None else st.covariance.copy()})
        return FrameOutcome(pair, estimate, fused, snapshot)

    def process(self, pair: StampedPair, T_prior: np.ndarray | None = None) -> FrameOutcome:
        """``estimate`` then ``fuse``."""
        return self.fuse(pair, self.estimate(pair, T_prior))

    def reset(self) -> None:
        """Forget queued messages and the fused estimate."""
        self.pairer.reset()
        self.fuser.reset()
