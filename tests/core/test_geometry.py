"""Rigid transforms follow T_a_b (p_a = T_a_b @ p_b) and round-trip through every representation."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.geometry import (check_transform, invert_transform, make_transform, rotation_angle_deg, se3_exp, se3_log,
                               transform_from_tq, transform_points, transform_to_tq)


def random_transform(rng) -> np.ndarray:
    return make_transform(Rotation.random(random_state=rng.integers(1 << 31)), rng.normal(size=3) * 5)


def test_transform_points_maps_frame_b_into_frame_a():
    # Frame b is frame a shifted 1 m along x: the origin of b is at x=1 in a.
    T_a_b = make_transform(np.eye(3), [1.0, 0.0, 0.0])
    assert np.allclose(transform_points(T_a_b, np.zeros((1, 3))), [[1.0, 0.0, 0.0]])
    # A 90 deg yaw: b's x axis points along a's y axis.
    T_a_b = make_transform(Rotation.from_euler("z", 90, degrees=True), np.zeros(3))
    assert np.allclose(transform_points(T_a_b, np.array([[1.0, 0.0, 0.0]])), [[0.0, 1.0, 0.0]])


def test_composition_and_inverse_agree_with_matrix_algebra():
    rng = np.random.default_rng(1)
    T_a_b, T_b_c = random_transform(rng), random_transform(rng)
    p_c = rng.normal(size=(20, 3))
    T_a_c = T_a_b @ T_b_c
    assert np.allclose(transform_points(T_a_c, p_c), transform_points(T_a_b, transform_points(T_b_c, p_c)))
    assert np.allclose(invert_transform(T_a_c), np.linalg.inv(T_a_c), atol=1e-12)
    assert np.allclose(invert_transform(T_a_c) @ T_a_c, np.eye(4), atol=1e-12)


def test_translation_quaternion_round_trip_in_xyzw_order():
    rng = np.random.default_rng(2)
    T = random_transform(rng)
    t, q = transform_to_tq(T)
    assert q.shape == (4,) and np.isclose(np.linalg.norm(q), 1.0)
    assert np.allclose(transform_from_tq(t, q), T, atol=1e-12)
    # Identity rotation is (0, 0, 0, 1) in geometry_msgs order.
    assert np.allclose(transform_to_tq(np.eye(4))[1], [0, 0, 0, 1])


def test_se3_log_inverts_se3_exp():
    rng = np.random.default_rng(3)
    for _ in range(20):
        xi = np.concatenate([rng.normal(size=3) * 3, rng.normal(size=3)])
        xi[3:] *= min(1.0, 3.0 / np.linalg.norm(xi[3:]))  # |phi| < pi
        assert np.allclose(se3_log(se3_exp(xi)), xi, atol=1e-9)
    assert np.allclose(se3_exp(np.zeros(6)), np.eye(4))


@pytest.mark.parametrize("bad, message", [
    (np.eye(3), "4x4"),
    (np.full((4, 4), np.nan), "NaN"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "rotation"),
    (np.vstack([np.eye(4)[:3], [1, 0, 0, 1]]), "last row"),
])
def test_check_transform_names_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        check_transform(bad, "T_cam_lidar")


def test_bad_quaternion_is_rejected():
    with pytest.raises(ValueError, match="quaternion"):
        transform_from_tq([0, 0, 0], [0, 0, 0, 0])


@pytest.mark.parametrize("angle_deg", [0.0, 1e-6, 0.01, 3.0, 90.0, 179.99, 180.0])
def test_rotation_angle_deg_matches_scipy_at_every_angle(angle_deg):
    """The closed form (atan2 of the skew part and the trace) against scipy's rotation vector."""
    axis = np.array([0.6, -0.48, 0.64])
    R = Rotation.from_rotvec(np.radians(angle_deg) * axis / np.linalg.norm(axis)).as_matrix()
    assert rotation_angle_deg(R) == pytest.approx(angle_deg, abs=1e-9)
    assert rotation_angle_deg(R) == pytest.approx(np.degrees(Rotation.from_matrix(R).magnitude()), abs=1e-9)
