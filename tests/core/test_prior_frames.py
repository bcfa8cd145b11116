"""crossi2p.prior.prior_frame_mismatch: a prior names the frames it is for."""
from __future__ import annotations

import numpy as np
import pytest

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
    assert "another sensor?" in why


def test_a_prior_with_its_frames_swapped_says_so():
    """parent camera, child LiDAR: the likely cause is a T_lidar_cam written as the prior, not
    another sensor (from a new-user trial)."""
    p = Prior(np.eye(4), lidar_frame="camera_optical", camera_frame="lidar", source="p.yaml")
    why = prior_frame_mismatch(p, "lidar", "camera_optical")
    assert why is not None and "frames are swapped" in why and "T_lidar_cam" in why
    assert "another sensor" not in why


def test_a_prior_file_without_frames_names_none_and_is_not_compared(tmp_path):
    """The calibration reader fills defaults (lidar / camera_optical) for a record without
    ``frames``; a prior compares only what the file itself names."""
    from crossi2p.prior import load_prior

    path = tmp_path / "cad.yaml"
    path.write_text("T_cam_lidar: [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]\n")
    p = load_prior(path)
    assert (p.lidar_frame, p.camera_frame) == ("", "")
    assert prior_frame_mismatch(p, "lidar", "camera_01_optical") is None
    path.write_text(path.read_text() + "frames: {parent: velodyne}\n")
    p = load_prior(path)
    assert (p.lidar_frame, p.camera_frame) == ("velodyne", "")
    assert prior_frame_mismatch(p, "velodyne", "camera_01_optical") is None
    assert "velodyne" in prior_frame_mismatch(p, "lidar", "camera_01_optical")


def test_a_misspelt_bound_key_is_an_error_naming_it(tmp_path):
    from crossi2p.prior import load_prior

    path = tmp_path / "p.yaml"
    path.write_text("T_cam_lidar: [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]\n"
                    "prior_max_rotation: 1.0\nmetadata: {prior_of: a CAD drawing}\n")
    with pytest.raises(ValueError, match=r"p\.yaml: unknown key 'prior_max_rotation' \(expected prior_max_rotation_deg"):
        load_prior(path)


@pytest.mark.parametrize("text, message", [
    ("T_cam_lidr: [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]\n"
     "translation: [0, 0, 0]\nquaternion_xyzw: [-0.5, 0.5, -0.5, 0.5]\n",
     r"unknown key 'T_cam_lidr' \(expected T_cam_lidar"),                 # the edit would be lost
    ("T_cam_lidar: [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]\n"
     "frames: {parent: lidar, chld: camera_optical}\n",
     r"key 'frames' has \['chld'\], expected only 'parent'"),             # the frame check would be skipped
    ("", r"the file is empty"),
])
def test_a_misspelt_key_or_an_empty_file_is_an_error_naming_it(tmp_path, text, message):
    from crossi2p.prior import load_prior

    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_prior(path)


def test_free_form_keys_still_go_to_metadata(tmp_path):
    from crossi2p.calib_io import load_calibration_yaml

    path = tmp_path / "p.yaml"
    path.write_text("T_cam_lidar: [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]\nmeasured_by: tape\n")
    assert load_calibration_yaml(path, require_camera=False).metadata["measured_by"] == "tape"
