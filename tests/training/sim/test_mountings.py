"""Mounting randomisation (issue 14: several mountings, geometric randomisation): the
``_surround`` presets put the camera at any heading of a six-camera ring, tilt it and move the
LiDAR's height per seed; the ground truth still projects every point onto what the camera sees,
and presets without the option keep every seed's rig exactly as before."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p_training.sim import RigConfig, SimConfig, simulate_frame
from crossi2p_training.sim.config import NUSCENES_CAMERA_YAWS_DEG
from crossi2p_training.sim.drive import R_LIDAR_CAM_NOMINAL, _seed_rig, make_rig

from .projection_check import projection_agreement


def camera_heading_deg(T_cam_lidar: np.ndarray) -> float:
    """Heading of the camera's optical axis in the LiDAR frame (deg, 0 = forward, + = left)."""
    z_axis = np.linalg.inv(T_cam_lidar)[:3, 2]
    return float(np.degrees(np.arctan2(z_axis[1], z_axis[0])))


def test_surround_seeds_cover_the_ring_and_keep_the_offset_turned_with_the_camera():
    cfg = SimConfig.preset("small_surround").rig
    headings, heights = [], []
    for seed in range(40):
        rig = _seed_rig(cfg, seed)
        h = camera_heading_deg(rig.T_cam_lidar)
        nearest = min(NUSCENES_CAMERA_YAWS_DEG, key=lambda y: abs((h - y + 180) % 360 - 180))
        # heading within the jitter (2 deg per axis) and the tilt of the chosen ring slot
        assert abs((h - nearest + 180) % 360 - 180) < 4.0, (seed, h)
        headings.append(nearest)
        # the camera sits at its heading's turn of the nominal offset (+- the translation jitter)
        t = rig.T_lidar_cam[:3, 3]
        expected = Rotation.from_euler("z", np.radians(nearest)).apply(cfg.camera_offset_m)
        assert np.abs(t - expected).max() <= cfg.translation_jitter_m + 1e-9
        heights.append(rig.T_vehicle_lidar[2, 3])
    assert set(headings) == set(NUSCENES_CAMERA_YAWS_DEG)
    assert np.ptp(heights) > 0.1 and np.abs(np.array(heights) - cfg.lidar_height_m).max() <= 0.15


def test_one_heading_draws_nothing_so_earlier_rigs_are_unchanged():
    cfg = RigConfig()
    for seed in range(5):
        before = make_rig(cfg, np.random.default_rng([seed, 2]))  # the rig without a mounting stream
        after = _seed_rig(cfg, seed)
        np.testing.assert_array_equal(before.T_cam_lidar, after.T_cam_lidar)
        np.testing.assert_array_equal(before.T_vehicle_lidar, after.T_vehicle_lidar)
    assert np.allclose(make_rig(RigConfig(rotation_jitter_deg=0, translation_jitter_m=0),
                                np.random.default_rng(0)).T_lidar_cam[:3, :3], R_LIDAR_CAM_NOMINAL)


def test_a_sideways_or_rear_camera_sees_its_points_where_the_ground_truth_puts_them():
    cfg = SimConfig.preset("small_surround")
    checked = set()
    for seed in range(12):
        frame = simulate_frame(cfg, seed)
        s = frame.sample
        heading = round(camera_heading_deg(s.T_cam_lidar) / 5) * 5
        if abs(heading) < 30 or len(checked) >= 2 or heading in checked:
            continue
        checked.add(heading)
        in_view, agree = projection_agreement(frame)
        assert in_view > 500 and agree > 0.95, (seed, heading)
    assert len(checked) == 2


def test_a_rig_without_a_heading_is_refused():
    with pytest.raises(ValueError, match="camera_yaw_choices_deg"):
        RigConfig(camera_yaw_choices_deg=())
