"""StaticTransformTree: chained tf lookups agree with composing the transforms by hand."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.geometry import invert_transform, make_transform, transform_points
from crossi2p.tf_tree import StaticTransformTree, TransformLookupError


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
