"""Registration errors and protocol samplers match their definitions (docs/conventions.md)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.geometry import invert_transform, make_transform, transform_points
from crossi2p.metrics import (registration_error, registration_recall, sample_global_perturbation,
                              sample_perturbation, sample_refine_perturbation, summarize_errors)

# A KITTI-like extrinsic: LiDAR x forward / z up -> camera z forward / y down.
T_CAM_LIDAR = make_transform(np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]),
                             [0.0, -0.08, -0.27])


def test_errors_of_a_known_offset():
    # The relative transform inv(T_est) @ T_gt is exactly E: 3 deg about x and 0.4 m along z.
    E = make_transform(Rotation.from_euler("x", 3, degrees=True), [0.0, 0.0, 0.4])
    err = registration_error(T_CAM_LIDAR @ invert_transform(E), T_CAM_LIDAR)
    assert err.rre_geodesic_deg == pytest.approx(3.0, abs=1e-9)
    assert err.rre_euler_sum_deg == pytest.approx(3.0, abs=1e-9)
    assert err.rte_m == pytest.approx(0.4, abs=1e-9)
    assert err.success


def test_euler_sum_exceeds_geodesic_for_a_multi_axis_error():
    E = make_transform(Rotation.from_euler("xyz", [2.0, 2.0, 2.0], degrees=True), np.zeros(3))
    err = registration_error(T_CAM_LIDAR @ invert_transform(E), T_CAM_LIDAR)
    assert err.rre_euler_sum_deg == pytest.approx(6.0, abs=1e-6)
    assert err.rre_geodesic_deg < err.rre_euler_sum_deg
    assert not err.success  # Acc uses the Euler sum, as the papers


def test_summary_uses_the_stable_keys():
    errs = [registration_error(make_transform(np.eye(3), [d, 0, 0]) @ T_CAM_LIDAR, T_CAM_LIDAR)
            for d in (0.1, 0.2, 3.0)]
    s = summarize_errors(errs)
    for key in ("frames", "acc", "rte_m_median", "rte_m_mean", "rre_euler_sum_deg_median",
                "rre_euler_sum_deg_mean", "rre_geodesic_deg_median"):
        assert key in s
    assert s["frames"] == 3 and s["acc"] == pytest.approx(2 / 3)
    assert s["rte_m_median"] == pytest.approx(0.2)
    assert registration_recall(errs, np.array([1.0])).tolist() == pytest.approx([2 / 3])


def test_global_protocol_is_a_yaw_about_camera_y_and_planar_shift():
    rng = np.random.default_rng(0)
    yaws, shifts = [], []
    for _ in range(2000):
        pert = sample_global_perturbation(rng, T_CAM_LIDAR)
        assert pert.T_prior is None
        # Perturbation seen in the camera frame.
        G = T_CAM_LIDAR @ pert.T_pert @ invert_transform(T_CAM_LIDAR)
        rotvec = Rotation.from_matrix(G[:3, :3]).as_rotvec()
        assert abs(rotvec[0]) < 1e-9 and abs(rotvec[2]) < 1e-9  # about y only
        assert abs(G[1, 3]) < 1e-9 and np.all(np.abs(G[[0, 2], 3]) <= 10.0)
        yaws.append(np.degrees(np.linalg.norm(rotvec)))
        shifts.append(G[[0, 2], 3])
    shifts = np.array(shifts)
    assert np.max(yaws) > 170  # all headings occur
    assert shifts.min() < -9.5 and shifts.max() > 9.5


def test_perturbed_ground_truth_keeps_projections():
    rng = np.random.default_rng(1)
    pert = sample_global_perturbation(rng, T_CAM_LIDAR)
    p_lidar = rng.normal(size=(10, 3)) * 10
    p_perturbed = transform_points(pert.T_pert, p_lidar)
    T_gt_new = T_CAM_LIDAR @ invert_transform(pert.T_pert)
    assert np.allclose(transform_points(T_gt_new, p_perturbed), transform_points(T_CAM_LIDAR, p_lidar))


def test_refine_prior_is_within_bounds_and_seeded():
    a = sample_refine_perturbation(np.random.default_rng(5), T_CAM_LIDAR)
    b = sample_perturbation("refine", np.random.default_rng(5), T_CAM_LIDAR)
    assert np.allclose(a.T_prior, b.T_prior)
    for seed in range(200):
        p = sample_refine_perturbation(np.random.default_rng(seed), T_CAM_LIDAR)
        E = p.T_prior @ invert_transform(T_CAM_LIDAR)
        assert np.all(np.abs(E[:3, 3]) <= 1.5)
        assert np.all(np.abs(Rotation.from_matrix(E[:3, :3]).as_euler("xyz", degrees=True)) <= 20 + 1e-9)
    with pytest.raises(ValueError, match="protocol"):
        sample_perturbation("local", np.random.default_rng(0), T_CAM_LIDAR)
