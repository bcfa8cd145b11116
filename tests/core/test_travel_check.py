"""Direction-of-travel check (crossi2p.travel_check): on a simulated drive the images' own direction
of travel matches the simulator's camera motion, the ground truth passes and the 180 deg yaw flip
is refused; a standing vehicle or a missing odometry leaves the estimate as it was."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.deskew import SweepDeskewer
from crossi2p.geometry import invert_transform, make_transform
from crossi2p.travel_check import (TravelCheck, TravelCheckConfig, angle_between_deg, camera_travel_direction,
                                   predicted_camera_motion)

# the yaw flip: the estimate turned 180 deg about the camera's vertical (y, optical frame)
FLIP = make_transform(Rotation.from_euler("y", 180, degrees=True), np.zeros(3))


@pytest.fixture(scope="module")
def drive():
    from crossi2p_training.sim import SimConfig, simulate_drive
    return simulate_drive(SimConfig.preset("small"), seed=11, frames=12)


def _grey(rgb):
    import cv2
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_the_images_give_the_simulated_cameras_direction_of_travel(drive):
    """Frames 3 apart (0.2 s at 15 Hz), the true rotation given: within 5 deg of the simulator's
    true camera motion."""
    angles = []
    for j in range(2, len(drive.camera_frames) - 3, 3):
        T_cam1_cam0 = invert_transform(drive.T_world_cam[j + 3]) @ drive.T_world_cam[j]
        t, inliers = camera_travel_direction(_grey(drive.camera_frames[j][1]), _grey(drive.camera_frames[j + 3][1]),
                                             drive.camera, T_cam1_cam0[:3, :3])
        assert t is not None and inliers >= 30 and abs(np.linalg.norm(t) - 1.0) < 1e-9
        angles.append(angle_between_deg(T_cam1_cam0[:3, 3], t))
    assert len(angles) >= 3 and max(angles) < 5.0, angles      # measured 0.5-1.2 deg


def test_prediction_moves_the_lidars_motion_into_the_camera():
    """Identity extrinsic: the camera's motion is the LiDAR's; a lever arm adds the rotation's
    sweep of it, ``(I - R) t_cam_lidar`` (hand-eye relation)."""
    T_l = make_transform(Rotation.from_euler("z", 10, degrees=True), [1.0, 0.2, 0.0])
    assert np.allclose(predicted_camera_motion(np.eye(4), T_l), T_l)
    T_cl = make_transform(Rotation.identity(), [0.0, 0.0, 0.5])
    expected = T_l[:3, 3] + (np.eye(3) - T_l[:3, :3]) @ T_cl[:3, 3]
    M = predicted_camera_motion(T_cl, T_l)
    assert np.allclose(M[:3, 3], expected) and np.allclose(M[:3, :3], T_l[:3, :3])
    assert angle_between_deg([1, 0, 0], [-1, 0, 0]) == pytest.approx(180.0)
    assert np.isnan(angle_between_deg([0, 0, 0], [1, 0, 0]))


def _run(drive, candidate, config=None):
    """Every sweep of the drive through the odometry, each paired sample checked with ``candidate``."""
    odometry = SweepDeskewer(track_motion=True)
    check = TravelCheck(config)
    results = []
    for sample in drive.paired_samples():
        odometry(sample.lidar_stamp_s, sample.points)
        stamp, T_odom_lidar = odometry.last_pose
        assert stamp == sample.lidar_stamp_s
        results.append(check.check(sample.lidar_stamp_s, sample.image, sample.camera, T_odom_lidar,
                                   odometry.odometry_run, candidate(sample.T_cam_lidar)))
    return results, check


def test_the_truth_passes_and_the_yaw_flip_is_refused(drive):
    truth, check = _run(drive, lambda T: T)
    checked = [r for r in truth if r.angle_deg is not None]
    # the first sweep has nothing to compare with; the odometry finds the motion within a sweep or two
    assert len(checked) >= 9 and all(r.passed for r in truth), [(r.angle_deg, r.reason) for r in truth]
    assert max(r.angle_deg for r in checked) < 10.0           # measured 0-5 deg on this drive
    assert check.checked == len(checked) and check.refused == 0
    flipped, check = _run(drive, lambda T: FLIP @ T)
    refused = [r for r in flipped if not r.passed]
    assert len(refused) == len(checked) and min(r.angle_deg for r in refused) > 150.0   # measured 175-180
    assert "direction of travel" in refused[0].reason and check.refused == len(refused)


def test_a_standing_vehicle_or_no_odometry_leaves_the_estimate_unchecked(drive):
    sample = drive.paired_samples()[3]
    check = TravelCheck()
    for k in range(3):   # the same sweep pose three times: no travel
        r = check.check(0.1 * k, sample.image, sample.camera, np.eye(4), 0, FLIP @ sample.T_cam_lidar)
        assert r.passed and r.angle_deg is None
    assert "travelled less than 0.15 m" in r.reason
    r = check.check(0.4, sample.image, sample.camera, None, 0, FLIP @ sample.T_cam_lidar)
    assert r.passed and r.angle_deg is None and "no LiDAR odometry" in r.reason
    # a pose from another odometry run (restarted) is not compared with
    moved = make_transform(Rotation.identity(), [5.0, 0.0, 0.0])
    r = check.check(0.5, sample.image, sample.camera, moved, 1, FLIP @ sample.T_cam_lidar)
    assert r.passed and r.angle_deg is None


def test_images_without_trackable_texture_give_no_direction(drive):
    """Blank, or nothing tracked from one image into an unrelated one: no direction, not an error."""
    image = _grey(drive.camera_frames[0][1])
    blank = np.zeros_like(image)
    assert camera_travel_direction(blank, blank, drive.camera, np.eye(3)) == (None, 0)
    assert camera_travel_direction(image, blank, drive.camera, np.eye(3)) == (None, 0)


def test_config_is_checked():
    for bad in (dict(max_angle_deg=0.0), dict(max_angle_deg=200.0), dict(min_travel_m=0.0), dict(max_gap_s=-1.0),
                dict(min_inliers=0), dict(history=0)):
        with pytest.raises(ValueError, match="TravelCheckConfig"):
            TravelCheckConfig(**bad)
    with pytest.raises(ValueError, match="camera_travel_direction"):
        from crossi2p.camera import CameraModel
        camera = CameraModel(np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]]), 100, 80)
        camera_travel_direction(np.zeros((80, 100), np.uint8), np.zeros((81, 100), np.uint8), camera, np.eye(3))


@pytest.mark.parametrize("preset, seed", [("small_surround", 2), ("small_surround", 1), ("fisheye", 1)])
def test_a_rear_or_side_camera_and_a_fisheye_pass_with_the_truth(preset, seed):
    """The check holds for any mounting and camera model: a camera looking backwards (seed 2 of
    the surround preset: heading 179 deg), sideways (seed 1: 110 deg, the vehicle moving across
    its view) and an equidistant fisheye; the flip is refused on each."""
    from crossi2p_training.sim import SimConfig, simulate_drive
    drive = simulate_drive(SimConfig.preset(preset), seed=seed, frames=8)
    truth, _ = _run(drive, lambda T: T)
    flipped, _ = _run(drive, lambda T: FLIP @ T)
    checked = [r.angle_deg for r in truth if r.angle_deg is not None]
    assert len(checked) >= 5 and max(checked) < 10.0 and all(r.passed for r in truth)   # measured 0-5 deg
    assert all(not r.passed for r in flipped if r.angle_deg is not None)
