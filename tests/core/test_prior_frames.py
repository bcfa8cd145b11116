"""crossi2p.prior.prior_frame_mismatch: a prior names the frames it is for."""
from __future__ import annotations

import numpy as np

from crossi2p.prior import Prior, prior_frame_mismatch


def test_frames_agree_or_are_unnamed_then_no_mismatch():
    p = Prior(np.eye(4), lidar_frame="lidar", camera_frame="camera_01_optical", source="p.yaml")
    assert prior_frame_mismatch(p, "lidar", "camera_01_optical") is None
    assert prior_frame_mismatch(p, "", "") is None                        # data without frame ids
    assert prior_frame_mismatch(Prior(np.eye(4)), "lidar", "camera_01_optical") is None   # prior without


def test_another_camera_or_lidar_is_named():
    p = Prior(np.eye(4), lidar_frame="lidar", camera_frame="camera_01_optical", source="p.yaml")
    why = prior_frame_mismatch(p, "lidar", "camera_05_optical")
    assert why is not None and "p.yaml" in why and "camera_01_optical" in why and "camera_05_optical" in why
    assert prior_frame_mismatch(p, "velodyne", "camera_01_optical") is not None
