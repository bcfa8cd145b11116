"""StaticTransformTree: chained tf lookups agree with composing the transforms by hand."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.geometry import invert_transform, make_transform, transform_points
from crossi2p.tf_tree import (FrameMismatchError, StaticTransformTree, TransformLookupError, check_camera_frame,
                              check_camera_info_frame, points_in_lidar_frame)


def _random_T(rng):
    return make_transform(Rotation.random(random_state=rng), rng.uniform(-2, 2, 3))


def test_lookup_through_a_common_ancestor_matches_the_hand_composition():
    rng = np.random.default_rng(0)
    T_base_lidar, T_base_link, T_link_cam = _random_T(rng), _random_T(rng), _random_T(rng)
    tree = StaticTransformTree()
    tree.set_transform("base_link", "velodyne", T_base_lidar)
    tree.set_transform("base_link", "camera_link", T_base_link)
    tree.set_transform("camera_link", "camera_optical", T_link_cam)
    T_cam_lidar = tree.lookup("camera_optical", "velodyne")
    expected = invert_transform(T_base_link @ T_link_cam) @ T_base_lidar
    np.testing.assert_allclose(T_cam_lidar, expected, atol=1e-12)
    # the direction with numbers: a LiDAR point lands where the chain says in the camera frame
    p_lidar = rng.normal(size=(5, 3))
    p_base = transform_points(T_base_lidar, p_lidar)
    p_cam = transform_points(invert_transform(T_link_cam), transform_points(invert_transform(T_base_link), p_base))
    np.testing.assert_allclose(transform_points(T_cam_lidar, p_lidar), p_cam, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("velodyne", "camera_optical"), invert_transform(T_cam_lidar), atol=1e-12)


def test_direct_edge_in_either_direction_and_identity():
    rng = np.random.default_rng(1)
    T_lidar_cam = _random_T(rng)
    tree = StaticTransformTree()
    tree.set_transform("lidar", "cam", T_lidar_cam)
    np.testing.assert_allclose(tree.lookup("lidar", "cam"), T_lidar_cam, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "lidar"), invert_transform(T_lidar_cam), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "cam"), np.eye(4))


def test_a_newer_edge_replaces_the_old_parent_of_a_frame():
    rng = np.random.default_rng(2)
    tree = StaticTransformTree()
    tree.set_transform("a", "cam", _random_T(rng))
    T_new = _random_T(rng)
    tree.set_transform("lidar", "cam", T_new)
    assert len(tree) == 1
    np.testing.assert_allclose(tree.lookup("lidar", "cam"), T_new, atol=1e-12)


def test_disconnected_frames_raise_naming_both():
    tree = StaticTransformTree()
    tree.set_transform("base", "lidar", np.eye(4))
    tree.set_transform("odom", "cam", np.eye(4))
    with pytest.raises(TransformLookupError, match="'lidar' to 'cam'"):
        tree.lookup("cam", "lidar")
    assert not tree.can_lookup("cam", "lidar") and tree.can_lookup("base", "lidar")


def test_bad_edges_are_rejected_with_the_frames_named():
    tree = StaticTransformTree()
    with pytest.raises(ValueError, match="base -> lidar"):
        tree.set_transform("base", "lidar", np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="two different"):
        tree.set_transform("lidar", "lidar", np.eye(4))


# --------------------------------------------------------------------------- the frame rule
# Ouster: the driver stamps clouds with os_lidar; the sensor's URDF / static tf has
# os_sensor -> os_lidar = 180 deg about z and 36.18 mm up (T_os_sensor_os_lidar).
T_SENSOR_LIDAR = make_transform(Rotation.from_euler("z", 180.0, degrees=True), [0.0, 0.0, 0.03618])


def _ouster_tree() -> StaticTransformTree:
    tree = StaticTransformTree()
    tree.set_transform("base_link", "os_sensor", make_transform(np.eye(3), [0.5, 0.0, 1.9]))
    tree.set_transform("os_sensor", "os_lidar", T_SENSOR_LIDAR)
    return tree


def test_ouster_cloud_in_os_lidar_lands_where_it_should_in_os_sensor():
    pts = np.array([[1.0, 0.0, 0.0, 0.25], [0.0, 2.0, -0.5, 0.5], [10.0, -3.0, 1.0, 1.0]], np.float32)
    out = points_in_lidar_frame(pts, "os_lidar", "os_sensor", _ouster_tree())
    np.testing.assert_allclose(out, [[-1.0, 0.0, 0.03618, 0.25], [0.0, -2.0, -0.46382, 0.5],
                                     [-10.0, 3.0, 1.03618, 1.0]], atol=1e-6)
    assert out.dtype == np.float32 and out is not pts
    np.testing.assert_array_equal(pts[0], [1.0, 0.0, 0.0, 0.25])          # the input is not touched
    # through a common ancestor, and back again
    base = points_in_lidar_frame(pts, "os_lidar", "base_link", _ouster_tree())
    np.testing.assert_allclose(base[0, :3], [0.5 - 1.0, 0.0, 1.9 + 0.03618], atol=1e-6)
    np.testing.assert_allclose(points_in_lidar_frame(out, "os_sensor", "os_lidar", _ouster_tree()), pts, atol=1e-6)
    # a per-point time column (N, 5) rides along unchanged; ROS 1 style "/os_lidar" is the same frame
    timed = np.c_[pts, [0.0, 0.05, 0.099]].astype(np.float32)
    np.testing.assert_allclose(points_in_lidar_frame(timed, "/os_lidar", "os_sensor", _ouster_tree())[:, 3:],
                               timed[:, 3:], atol=0)


def test_cloud_in_its_own_frame_or_without_one_is_used_as_it_is():
    pts = np.ones((4, 4), np.float32)
    assert points_in_lidar_frame(pts, "os_sensor", "os_sensor", StaticTransformTree()) is pts
    assert points_in_lidar_frame(pts, "", "os_sensor", StaticTransformTree()) is pts
    assert points_in_lidar_frame(pts, "/os_sensor", "os_sensor", StaticTransformTree()) is pts


def test_cloud_in_an_unlinked_frame_is_refused_with_one_line_naming_both():
    tree = _ouster_tree()
    with pytest.raises(FrameMismatchError) as info:
        points_in_lidar_frame(np.ones((2, 4), np.float32), "velodyne", "os_sensor", tree)
    text = str(info.value)
    assert text == ("cloud in frame 'velodyne', not the LiDAR frame 'os_sensor', and no /tf_static path links the "
                    "two: publish that static transform or set lidar_frame to 'velodyne'")
    assert isinstance(info.value, ValueError)
    with pytest.raises(FrameMismatchError, match="no LiDAR frame configured"):
        points_in_lidar_frame(np.ones((2, 4), np.float32), "", "", tree)


def test_image_frame_must_be_the_camera_frame_or_an_identity_alias_of_it():
    tree = StaticTransformTree()
    tree.set_transform("camera_color_optical_frame", "camera_optical", np.eye(4))       # two names, one frame
    R_link_optical = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)               # REP 103 body -> optical
    tree.set_transform("camera_link", "camera_color_optical_frame", make_transform(R_link_optical, [0, 0, 0]))
    check_camera_frame("camera_optical", "camera_optical", tree)
    check_camera_frame("", "camera_optical", tree)
    check_camera_frame("camera_optical", "camera_color_optical_frame", tree)
    with pytest.raises(FrameMismatchError, match=r"image in frame 'camera_link', not the camera frame 'camera_optical' "
                                                 r"\(/tf_static puts them 0.0000 m and 120.00 deg apart\); an image "
                                                 r"cannot be re-expressed in another frame: set camera_frame to "
                                                 r"'camera_link'"):
        check_camera_frame("camera_link", "camera_optical", tree)
    with pytest.raises(FrameMismatchError, match=r"\(no /tf_static path links the two\)"):
        check_camera_frame("cam0", "camera_optical", tree)


def test_camera_info_must_be_of_the_images_camera():
    tree = StaticTransformTree()
    tree.set_transform("camera_color_optical_frame", "camera_optical", np.eye(4))
    check_camera_info_frame("camera_optical", "camera_optical", tree)
    check_camera_info_frame("/camera_optical", "camera_optical", tree)      # a leading slash is the same frame
    check_camera_info_frame("", "camera_optical", tree)                     # a frame id missing on either side
    check_camera_info_frame("camera_optical", "", tree)
    check_camera_info_frame("camera_color_optical_frame", "camera_optical", tree)   # identity alias
    with pytest.raises(FrameMismatchError, match=r"its CameraInfo is in frame 'camera_05_optical', the image in "
                                                 r"'camera_01_optical': not one camera"):
        check_camera_info_frame("camera_05_optical", "camera_01_optical", tree)
