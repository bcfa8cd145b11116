"""De-skewing spinning-LiDAR sweeps: firing times from azimuth, the constant-velocity correction,
and the whole stream (KISS-ICP odometry) against the simulator's skewed and unskewed sweeps."""
import dataclasses

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from crossi2p.deskew import DeskewConfig, SweepDeskewer, deskew_points, points_at_time, sweep_times_from_azimuth
from crossi2p.geometry import invert_transform


def test_firing_times_follow_the_spin_from_the_stamp_azimuth():
    pts = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, -10.0, 0.0], [-10.0, 0.01, 0.0]])
    t = sweep_times_from_azimuth(pts, rate_hz=10.0)
    # clockwise, facing forward at the stamp: left fired a quarter turn before, right after
    np.testing.assert_allclose(t[:3], [0.0, -0.025, 0.025], atol=1e-12)
    assert abs(abs(t[3]) - 0.05) < 1e-4
    np.testing.assert_allclose(sweep_times_from_azimuth(pts, 10.0, clockwise=False)[:3], [0.0, 0.025, -0.025],
                               atol=1e-12)
    # a driver that stamps when the beams face left (+y)
    np.testing.assert_allclose(sweep_times_from_azimuth(pts, 20.0, stamp_azimuth_deg=90.0)[:2], [0.0125, 0.0],
                               atol=1e-12)


def test_deskew_undoes_a_constant_velocity_motion():
    rng = np.random.default_rng(0)
    p_stamp = rng.uniform([-30, -30, -2], [30, 30, 5], (500, 3))
    w, v = np.array([0.0, 0.0, 0.3]), np.array([12.0, 0.5, 0.0])      # rad/s, m/s: turning at 17 deg/s
    tau = rng.uniform(-0.05, 0.05, 500)
    # the point as fired: in the sensor frame at tau, inv(T_stamp_tau) @ p_stamp
    R = Rotation.from_rotvec(tau[:, None] * w)
    fired = R.inv().apply(p_stamp - tau[:, None] * v)
    intensity = rng.uniform(0, 1, (500, 1))
    out = deskew_points(np.hstack([fired, intensity]), tau, w, v)
    np.testing.assert_allclose(out[:, :3], p_stamp, atol=1e-9)
    np.testing.assert_array_equal(out[:, 3:], intensity)                # other columns kept
    with pytest.raises(ValueError, match="times"):
        deskew_points(fired, tau[:10], w, v)


def test_a_sweep_is_moved_to_a_later_instant_as_the_sensor_saw_it_then():
    """The sensor ``dt`` after the stamp is ``(Exp(dt w), dt v)``: a point of the stamp's frame is
    ``inv(T_stamp_dt) @ p`` then; ``deskew_points`` with every firing time ``dt`` undoes it."""
    rng = np.random.default_rng(1)
    p_stamp = rng.uniform([-30, -30, -2], [30, 30, 5], (300, 3))
    w, v, dt = np.array([0.01, -0.02, 0.3]), np.array([12.0, 0.5, 0.1]), 0.033
    T_stamp_dt = np.eye(4)
    T_stamp_dt[:3, :3], T_stamp_dt[:3, 3] = Rotation.from_rotvec(dt * w).as_matrix(), dt * v
    expected = (invert_transform(T_stamp_dt) @ np.c_[p_stamp, np.ones(300)].T).T[:, :3]
    intensity = rng.uniform(0, 1, (300, 1)).astype(np.float32)
    moved = points_at_time(np.hstack([p_stamp, intensity]).astype(np.float32), dt, w, v)
    assert moved.dtype == np.float32
    np.testing.assert_allclose(moved[:, :3], expected, atol=1e-4)      # float32 at 30 m
    np.testing.assert_array_equal(moved[:, 3:], intensity)
    np.testing.assert_allclose(deskew_points(moved, np.full(300, dt), w, v)[:, :3], p_stamp, atol=1e-4)
    np.testing.assert_allclose(points_at_time(p_stamp, 0.0, w, v), p_stamp)
    with pytest.raises(ValueError, match=r"\(N, 3\+\)"):
        points_at_time(p_stamp[:, :2], dt, w, v)


def test_config_and_inputs_are_checked():
    with pytest.raises(ValueError, match="mode"):
        DeskewConfig(mode="imu")
    with pytest.raises(ValueError, match="rate_hz"):
        DeskewConfig(rate_hz=0.0)
    with pytest.raises(ValueError, match=r"\(N, 3\+\)"):
        SweepDeskewer(DeskewConfig(mode="azimuth"))(0.0, np.zeros((5, 2)))
    off = np.ones((4, 4))
    assert SweepDeskewer()(0.0, off) is off                               # off: as given
    sparse = SweepDeskewer(DeskewConfig(mode="azimuth"))
    few = np.random.default_rng(0).uniform(-20, 20, (50, 4))
    assert sparse(0.0, few) is few and sparse(0.1, few) is few and sparse.sweeps_deskewed == 0  # too few to register


def _to_surface(ref, tree, query: np.ndarray, k: int = 8) -> np.ndarray:
    """Point-to-plane distance of each query point to the reference cloud (plane of its ``k``
    nearest reference points): a sweep fired from elsewhere samples other points of the same
    surfaces, so the distance to the surface, not to the nearest point, is what must agree."""
    _, idx = tree.query(query, k=k)
    nb = ref[idx]                                                  # (M, k, 3)
    centre = nb.mean(axis=1)
    normal = np.linalg.svd(nb - centre[:, None], full_matrices=False)[2][:, -1]
    return np.abs(np.einsum("md,md->m", query - centre, normal))


def test_a_skewed_simulated_drive_comes_back_close_to_the_unskewed_one():
    """The simulator fires each column from the vehicle's pose at its own time (KITTI raw's skew,
    stamp facing forward); de-skewed with odometry from the sweeps alone, the columns fired 25-50 ms
    from the stamp move back to where the same rays of an unskewed drive hit (same seed). The
    odometry starts from standstill on a street with little along it, so the first sweeps are
    left out (it reaches the true speed after about 8 sweeps here)."""
    from crossi2p_training.sim import SimConfig, simulate_drive
    base = SimConfig.preset("small")
    lidar = dataclasses.replace(base.lidar, with_time=True, range_noise_m=0.0, intensity_noise=0.0)
    still = simulate_drive(base.replace(lidar=lidar), seed=4, frames=11)
    moving = simulate_drive(base.replace(lidar=dataclasses.replace(lidar, motion_during_sweep=True)), seed=4, frames=11)
    deskewer = SweepDeskewer(DeskewConfig(mode="azimuth", rate_hz=lidar.rate_hz))
    raw_err, fixed_err, ideal_err = [], [], []
    for k, ((t, a), (_, b)) in enumerate(zip(still.lidar_sweeps, moving.lidar_sweeps)):
        out = deskewer(t, b[:, :4])
        assert out.shape == b[:, :4].shape and np.array_equal(out[:, 3], b[:, 3])
        if k < 8:
            continue
        # share of the points fired 25-50 ms off the stamp lying off the unskewed sweep's surfaces (5 cm)
        far_in_time = (np.abs(b[:, 4]) > 0.025) & (np.linalg.norm(b[:, :3], axis=1) < 25.0)
        tree = cKDTree(a[:, :3])
        raw_err.append(np.mean(_to_surface(a[:, :3], tree, b[far_in_time, :3]) > 0.05))
        fixed_err.append(np.mean(_to_surface(a[:, :3], tree, out[far_in_time, :3]) > 0.05))
        # the floor: de-skewed with the simulator's true motion of this sweep
        T = invert_transform(moving.T_world_lidar[k - 1]) @ moving.T_world_lidar[k]
        true_v = T[:3, 3] * lidar.rate_hz
        true_w = Rotation.from_matrix(T[:3, :3]).as_rotvec() * lidar.rate_hz
        ideal = deskew_points(b[far_in_time, :3], b[far_in_time, 4], true_w, true_v)
        ideal_err.append(np.mean(_to_surface(a[:, :3], tree, ideal) > 0.05))
    # the true ego speed and yaw rate of the last sweep, from the simulator's poses
    T = invert_transform(still.T_world_lidar[-2]) @ still.T_world_lidar[-1]
    speed = np.linalg.norm(T[:3, 3]) * lidar.rate_hz
    assert abs(np.linalg.norm(deskewer.velocity[1]) - speed) < 0.15 * speed
    assert len(fixed_err) == 3
    # off the surfaces beyond what the true motion leaves (2.9 %): about 3 % of the points raw,
    # none of them left on the last two sweeps (measured: 0.0 and 0.03 %)
    excess_raw = np.array(raw_err) - np.array(ideal_err)
    excess_fixed = np.array(fixed_err) - np.array(ideal_err)
    assert np.all(excess_raw > 0.02), (raw_err, ideal_err)
    assert np.median(excess_fixed) < 0.25 * np.median(excess_raw), (raw_err, fixed_err, ideal_err)


def test_the_time_mode_uses_the_clouds_own_times_and_matches_the_azimuth_mode_on_a_spinning_lidar():
    """The simulator's per-point times are the spinning sensor's firing times, so de-skewing with
    them (mode ``time``) and with times from azimuth (mode ``azimuth``) agree; in mode ``time`` a
    sweep without times is used as given."""
    from crossi2p_training.sim import SimConfig, simulate_drive
    base = SimConfig.preset("small")
    lidar = dataclasses.replace(base.lidar, with_time=True, motion_during_sweep=True)
    drive = simulate_drive(base.replace(lidar=lidar), seed=4, frames=4)
    by_time = SweepDeskewer(DeskewConfig(mode="time"))
    by_azimuth = SweepDeskewer(DeskewConfig(mode="azimuth"))
    for t, p in drive.lidar_sweeps:
        a = by_time(t, p[:, :4], p[:, 4].astype(np.float64))
        b = by_azimuth(t, p[:, :4])
    assert by_time.sweeps_deskewed == by_azimuth.sweeps_deskewed == 3
    moved = np.linalg.norm(b[:, :3] - drive.lidar_sweeps[-1][1][:, :3], axis=1)
    assert np.median(np.linalg.norm(a[:, :3] - b[:, :3], axis=1)) < 0.05 * max(np.median(moved), 1e-3) + 1e-3
    untimed = SweepDeskewer(DeskewConfig(mode="time"))
    p = drive.lidar_sweeps[0][1][:, :4]
    assert untimed(0.0, p) is p and untimed(0.1, p) is p and untimed.velocity is None
    with pytest.raises(ValueError, match="times must be"):
        untimed(0.2, p, np.zeros(3))


def test_with_deskewing_off_the_odometry_still_tracks_the_motion_for_the_travel_check():
    """``track_motion``: every sweep is registered (at most ``odometry_max_points`` of it) and given
    back unchanged; the odometry's poses follow the simulated vehicle's direction of travel."""
    from crossi2p_training.sim import SimConfig, simulate_drive
    drive = simulate_drive(SimConfig.preset("small"), seed=11, frames=8)
    deskewer = SweepDeskewer(DeskewConfig(odometry_max_points=10000), track_motion=True)
    for t, points in drive.lidar_sweeps:
        out = deskewer(t, points[:, :4])
        assert np.array_equal(out, points[:, :4]) and deskewer.last_pose[0] == t
    odometry_travel = deskewer.last_pose[1][:3, 3]
    true_travel = (invert_transform(drive.T_world_lidar[0]) @ drive.T_world_lidar[-1])[:3, 3]
    cos = odometry_travel @ true_travel / np.linalg.norm(odometry_travel) / np.linalg.norm(true_travel)
    assert cos > np.cos(np.radians(10)) and deskewer.odometry_run == 0
    untracked = SweepDeskewer()           # off, not tracking: KISS-ICP is never run
    untracked(0.0, drive.lidar_sweeps[0][1][:, :4])
    assert untracked.last_pose is None and untracked._odometry is None and untracked.odometry_velocity is None


def test_the_odometry_velocity_is_the_body_twist_given_once_its_speed_has_settled():
    """KISS-ICP starts from rest and its speed rises over the first sweeps: no twist is given for
    moving sweeps to an image's stamp until the last ``velocity_sweeps`` speeds agree within
    ``settled_speed_change``; then the constant body twist (SE(3) log), exact on a steady turn."""
    from crossi2p.geometry import se3_exp
    w, v = np.array([0.0, 0.0, 0.3]), np.array([8.0, 0.2, 0.0])      # a steady left turn, rad/s and m/s

    def given(config: DeskewConfig) -> tuple[list[bool], SweepDeskewer]:
        deskewer, T, out = SweepDeskewer(config), np.eye(4), []
        for k, speed in enumerate([2.0, 4.0, 6.0, 7.5, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0]):
            T = T @ se3_exp(np.r_[v * speed / 8.0, w] * 0.1)               # 0.1 s at this speed
            deskewer._add_pose(0.1 * (k + 1), T)
            out.append(deskewer.odometry_velocity is not None)
        return out, deskewer

    # each speed is the mean over the last 3 steps (7.2, 7.8, 8.0, 8.0 m/s ...): given once the last
    # 3 are within 5 % of their median (0.4 m/s) ...
    speeds_only, _ = given(DeskewConfig(velocity_sweeps=3, settled_min_sweeps=2))
    assert speeds_only == [False] * 7 + [True] * 4
    # ... and (the default) once 10 sweeps of the run are in: a ramp can look steady for 3 sweeps
    default, deskewer = given(DeskewConfig(velocity_sweeps=3))
    assert default == [False] * 9 + [True] * 2
    omega, linear = deskewer.odometry_velocity
    np.testing.assert_allclose(omega, w, atol=1e-9)
    np.testing.assert_allclose(linear, v, atol=1e-9)
    deskewer.reset()
    assert deskewer.odometry_velocity is None