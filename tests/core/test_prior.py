"""Priors: bounds from the calibration YAML (or the documented defaults), distances and the
one-line reason of an estimate outside them."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.calib_io import load_calibration_yaml, save_calibration_yaml
from crossi2p.camera import CameraModel
from crossi2p.geometry import make_transform
from crossi2p.prior import (DEFAULT_MAX_ROTATION_DEG, DEFAULT_MAX_TRANSLATION_M, Prior, load_prior,
                            prior_distance, prior_violation)

CAMERA = CameraModel(np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]), 640, 480)
T_PRIOR = make_transform(Rotation.from_euler("xyz", [-90, 0, -90], degrees=True), [0.05, -0.3, -0.1])


def off_by(T: np.ndarray, angle_deg: float, axis, dt) -> np.ndarray:
    """``T`` rotated by ``angle_deg`` about ``axis`` (camera frame) and shifted by ``dt`` (m)."""
    R = Rotation.from_rotvec(np.radians(angle_deg) * np.asarray(axis, float) / np.linalg.norm(axis))
    out = make_transform(R, np.zeros(3)) @ T
    out[:3, 3] = T[:3, 3] + np.asarray(dt, float)
    return out


def test_yaml_bounds_round_trip_and_defaults_when_absent(tmp_path):
    with_bounds = save_calibration_yaml(tmp_path / "with.yaml", T_PRIOR, CAMERA, lidar_frame="velodyne",
                                        camera_frame="cam", prior_max_rotation_deg=3.0, prior_max_translation_m=0.2)
    calib = load_calibration_yaml(with_bounds)
    assert calib.prior_max_rotation_deg == 3.0 and calib.prior_max_translation_m == 0.2
    assert "prior_max_rotation_deg" not in calib.metadata  # a known key, not free-form metadata
    prior = load_prior(with_bounds)
    assert (prior.max_rotation_deg, prior.max_translation_m) == (3.0, 0.2)
    assert (prior.lidar_frame, prior.camera_frame) == ("velodyne", "cam") and prior.source == str(with_bounds)
    np.testing.assert_allclose(prior.T_cam_lidar, T_PRIOR, atol=1e-12)

    without = save_calibration_yaml(tmp_path / "without.yaml", T_PRIOR, CAMERA)
    assert load_calibration_yaml(without).prior_max_rotation_deg is None
    prior = load_prior(without)
    assert (prior.max_rotation_deg, prior.max_translation_m) == (DEFAULT_MAX_ROTATION_DEG, DEFAULT_MAX_TRANSLATION_M)
    assert (DEFAULT_MAX_ROTATION_DEG, DEFAULT_MAX_TRANSLATION_M) == (10.0, 0.5)


def test_a_rotation_bound_above_180_degrees_is_refused_naming_the_key(tmp_path):
    """No rotation is more than 180 deg from another: 720 is a mistake (radians meant? a typo)."""
    path = tmp_path / "p.yaml"
    path.write_text("T_cam_lidar: " + str(np.eye(4).tolist()) + "\nprior_max_rotation_deg: 720\n")
    with pytest.raises(ValueError, match=r"prior .*p.yaml: key 'prior_max_rotation_deg': expected a number > 0 "
                                         r"and <= 180 \(degrees\), got 720"):
        load_prior(path)
    with pytest.raises(ValueError, match="expected a number > 0 and <= 180"):
        save_calibration_yaml(tmp_path / "q.yaml", T_PRIOR, CAMERA, prior_max_rotation_deg=200.0)
    with pytest.raises(ValueError, match="max_rotation_deg must be at most 180 deg"):   # a bound given in code
        Prior(T_PRIOR, max_rotation_deg=500.0, source="cli")


def test_bad_prior_files_are_one_line_errors_naming_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        load_prior(missing)
    bad = save_calibration_yaml(tmp_path / "bad.yaml", T_PRIOR, CAMERA)
    bad.write_text(bad.read_text() + "prior_max_rotation_deg: -2\n")
    with pytest.raises(ValueError) as exc:
        load_prior(bad)
    msg = str(exc.value)
    assert str(bad) in msg and "prior_max_rotation_deg" in msg and "> 0" in msg and "\n" not in msg
    not_calib = tmp_path / "notes.yaml"
    not_calib.write_text("hello: world\n")
    with pytest.raises(ValueError, match=re.escape(str(not_calib))):
        load_prior(not_calib)
    with pytest.raises(ValueError, match="max_translation_m"):
        Prior(T_PRIOR, 10.0, 0.0)


def test_distance_is_geodesic_rotation_and_largest_axis_translation():
    T = off_by(T_PRIOR, 12.3, [1, 2, -1], [0.3, -0.81, 0.5])
    rot, trans = prior_distance(T, Prior(T_PRIOR))
    assert rot == pytest.approx(12.3, abs=1e-9)
    assert trans == pytest.approx(0.81, abs=1e-12)


def test_violation_names_distance_and_bounds_or_is_none_inside():
    prior = Prior(T_PRIOR, 10.0, 0.5, source="calib.yaml")
    assert prior_violation(T_PRIOR, prior) is None
    assert prior_violation(off_by(T_PRIOR, 9.9, [0, 0, 1], [0.49, -0.49, 0.49]), prior) is None
    assert (prior_violation(off_by(T_PRIOR, 12.3, [0, 1, 0], [0.0, 0.81, 0.0]), prior)
            == "outside prior: 12.3 deg / 0.81 m from the prior (bounds 10 deg / 0.5 m)")
    # either bound alone is enough
    assert prior_violation(off_by(T_PRIOR, 10.5, [1, 0, 0], [0, 0, 0]), prior).startswith("outside prior: 10.5 deg")
    assert "0.60 m" in prior_violation(off_by(T_PRIOR, 0.0, [1, 0, 0], [0, 0, -0.6]), prior)
    assert "T_lidar_cam" not in prior_violation(off_by(T_PRIOR, 12.3, [0, 1, 0], [0.0, 0.81, 0.0]), prior)


def test_an_estimate_near_the_inverse_of_the_prior_asks_whether_t_lidar_cam_was_given():
    """The prior given as T_lidar_cam (the tf transform's direction): the network's estimates lie
    about 120 deg from it; the reason asks the question (a new-user trial got only the distance)."""
    from crossi2p.geometry import invert_transform

    prior = Prior(invert_transform(T_PRIOR), 5.0, 0.3, source="inverted.yaml")
    reason = prior_violation(off_by(T_PRIOR, 2.0, [0, 0, 1], [0.05, 0.0, 0.0]), prior)
    assert reason.startswith("outside prior: ") and reason.endswith(
        "; within the bounds of the prior's inverse: was T_lidar_cam given instead of T_cam_lidar?")


def test_an_extrinsic_only_prior_loads_and_bad_files_are_one_line(tmp_path):
    """A CAD prior has no intrinsics (the data's CameraInfo gives them); a non-YAML or binary file
    is one line starting "prior <file>:"."""
    cad = tmp_path / "cad.yaml"
    cad.write_text("T_cam_lidar: [[0, -1, 0, 0.1], [0, 0, -1, 0], [1, 0, 0, -0.2], [0, 0, 0, 1]]\n"
                   "prior_max_rotation_deg: 4\n")
    prior = load_prior(cad)
    assert prior.T_cam_lidar[0, 3] == pytest.approx(0.1) and prior.max_rotation_deg == pytest.approx(4.0)
    half = tmp_path / "half.yaml"          # some camera keys but not all: still an error
    half.write_text(cad.read_text() + "width: 640\n")
    with pytest.raises(ValueError, match="missing key 'K'"):
        load_prior(half)
    for name, data in (("broken.yaml", b"this is: [not valid yaml\n"), ("image.png", b"\x89PNG\r\n\x1a\n\x00\xff")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError) as exc:
            load_prior(path)
        msg = str(exc.value)
        assert msg.startswith(f"prior {path}:") and "\n" not in msg


def test_a_prior_in_millimetres_or_with_degrees_in_its_quaternion_is_refused_at_load(tmp_path):
    """Units a user can get wrong: a translation in millimetres (sensors 250 m apart) and a
    quaternion holding angles in degrees (norm about 150) are one line each at load, not a run
    that ends in 'no LiDAR point in view'."""
    mm = tmp_path / "mm.yaml"
    mm.write_text("T_cam_lidar: [[0, -1, 0, 118], [0, 0, -1, -157], [1, 0, 0, -152], [0, 0, 0, 1]]\n")
    with pytest.raises(ValueError) as exc:
        load_prior(mm)
    assert str(exc.value).startswith(f"prior {mm}: T_cam_lidar puts the LiDAR 248.3 m from the camera")
    assert "millimetres" in str(exc.value)
    degrees = tmp_path / "deg.yaml"
    degrees.write_text("translation: [0.1, 0.0, -0.2]\nquaternion_xyzw: [119.5, -87.3, -29.7, 1.0]\n")
    with pytest.raises(ValueError, match=r"quaternion_xyzw .* has norm 150\.9: expected a unit quaternion"):
        load_prior(degrees)
    unit = tmp_path / "unit.yaml"             # printed to 6 digits: still a unit quaternion
    unit.write_text("translation: [0.1, 0.0, -0.2]\nquaternion_xyzw: [0.5, -0.5, 0.5, -0.500001]\n")
    assert load_prior(unit).T_cam_lidar[0, 3] == pytest.approx(0.1)
