"""The one data record every source produces and every consumer takes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .camera import CameraModel
from .geometry import check_transform


@dataclass
class Sample:
    """One paired camera + LiDAR frame with its calibration.

    Produced by the simulator, the KITTI / nuScenes / rosbag2 readers and the node's pairing;
    consumed by preprocessing, training, evaluation and the runtime.
    """

    image: np.ndarray
    """(H, W, 3) uint8 RGB image (as captured: distorted if the camera has distortion)."""
    points: np.ndarray
    """(N, 4) float32 LiDAR points ``x, y, z, intensity`` in the LiDAR frame (metres, [0, 1])."""
    camera: CameraModel
    """Intrinsics and distortion of ``image``."""
    T_cam_lidar: np.ndarray | None = None
    """(4, 4) ground-truth extrinsic mapping LiDAR points into the camera optical frame, or
    ``None`` where the source has no ground truth."""
    stamp_s: float = 0.0
    """Capture time of the image in seconds."""
    lidar_stamp_s: float | None = None
    """Capture time of the LiDAR sweep in seconds (``None``: same as ``stamp_s``)."""
    frame_id: str = ""
    """Identifier of the frame within its source (file stem, message index, ...)."""
    meta: dict = field(default_factory=dict)
    """Free-form provenance (sequence, source path, frame names, ...)."""

    def __post_init__(self):
        img = np.asarray(self.image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"Sample.image: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        if (img.shape[1], img.shape[0]) != (self.camera.width, self.camera.height):
            raise ValueError(f"Sample.image: size {img.shape[1]}x{img.shape[0]} does not match the "
                             f"camera's {self.camera.width}x{self.camera.height}")
        pts = np.asarray(self.points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 4:
            raise ValueError(f"Sample.points: expected (N, 4) x, y, z, intensity, got {pts.shape}")
        self.points = pts
        if self.T_cam_lidar is not None:
            self.T_cam_lidar = check_transform(self.T_cam_lidar, "Sample.T_cam_lidar")


def readable_samples(source, errors: list[str]):
    """``(index, Sample)`` of every frame of ``source`` (``len`` and indexing) that can be read; a
    frame whose files cannot be (a corrupt scan, a missing image: ``ValueError`` / ``OSError``) is
    skipped and ``"frame K skipped: why"`` appended to ``errors``, so one bad frame does not end an
    evaluation. The evaluators (``crossi2p-evaluate``, ``crossi2p-evaluate-bag``,
    ``crossi2p-calibrate``) read dataset folders through this."""
    for k in range(len(source)):
        try:
            sample = source[k]
        except (ValueError, OSError) as exc:      # OSError: a missing file of that frame
            why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else exc
            errors.append(f"frame {k} skipped: {why}")
            continue
        yield k, sample
