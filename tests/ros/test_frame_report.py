"""A frame report (what the node publishes per pair on ~/frame_estimates) reads back bit-exact."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.geometry import make_transform
from crossi2p_ros.frame_report import FrameReport


def _report(**changes) -> FrameReport:
    rng = np.random.default_rng(3)
    T = make_transform(Rotation.from_rotvec(rng.normal(size=3)), rng.normal(size=3) * 5)
    fields = dict(lidar_stamp_s=1732000000.123456789, image_stamp_s=1732000000.1, valid=True, reason="",
                  confidence=0.1 + 1e-17, inlier_ratio=1 / 3, latency_ms=71.25, T_cam_lidar=T, status="converging",
                  fused_T_cam_lidar=T @ T, covariance=np.diag(rng.random(6) * 1e-7), drift_events=2,
                  frames_fused=17, lidar_frame="velodyne", camera_frame="camera_optical")
    fields.update(changes)
    return FrameReport(**fields)


def test_values_read_back_bit_exact():
    report = _report()
    back = FrameReport.from_values(dict(report.to_values()))
    for key, value in vars(report).items():
        got = getattr(back, key)
        if isinstance(value, np.ndarray):
            assert np.array_equal(got, value), key
        else:
            assert got == value, key


def test_rejected_frame_without_estimates_reads_back_with_nones():
    report = _report(valid=False, reason="0 correspondences with weight > 0.1, need 12", T_cam_lidar=None,
                     fused_T_cam_lidar=None, covariance=None, status="waiting")
    back = FrameReport.from_values(dict(report.to_values()))
    assert not back.valid and back.reason == report.reason
    assert back.T_cam_lidar is None and back.fused_T_cam_lidar is None and back.covariance is None


def test_malformed_values_are_refused_naming_the_problem():
    values = dict(_report().to_values())
    with pytest.raises(ValueError, match="lidar_stamp_s"):
        FrameReport.from_values({k: v for k, v in values.items() if k != "lidar_stamp_s"})
    with pytest.raises(ValueError, match="expected 16 numbers"):
        FrameReport.from_values({**values, "T_cam_lidar": "1.0,2.0"})
