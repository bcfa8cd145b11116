"""Refine mode takes its prior from the tf tree: a chain base_link -> LiDAR and base_link ->
camera_link -> camera optical frame on /tf_static, as a robot's URDF publishes it."""
from __future__ import annotations

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import TransformStamped
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from crossi2p.geometry import invert_transform, make_transform, transform_to_tq
from crossi2p_ros.calibration_node import LATCHED

from .conftest import spin_until
from .test_calibration_node import Harness, drive  # noqa: F401  (module-scoped simulator fixture)


def edge(parent: str, child: str, T_parent_child: np.ndarray) -> TransformStamped:
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    t, q = transform_to_tq(T_parent_child)
    tr, r = msg.transform.translation, msg.transform.rotation
    tr.x, tr.y, tr.z = map(float, t)
    r.x, r.y, r.z, r.w = map(float, q)
    return msg


def test_refine_prior_is_looked_up_through_a_tf_chain(drive):  # noqa: F811
    context = rclpy.Context()
    rclpy.init(context=context)
    h = Harness(context, mode="refine", prior_source="tf", publish_before_convergence=True,
                fusion__min_confidence=0.0, runtime__min_confidence=0.0, runtime__min_correspondences=0)
    try:
        assert "waiting" in h.node.diagnostics_status().values[-1].value
        # URDF-like chain whose composition is the drive's ground truth T_cam_lidar
        T_base_lidar = make_transform(Rotation.from_euler("z", 3.0, degrees=True), [1.2, 0.0, 1.7])
        T_base_link = make_transform(Rotation.from_euler("z", -2.0, degrees=True), [1.5, 0.1, 1.4])
        T_link_optical = invert_transform(T_base_link) @ T_base_lidar @ invert_transform(drive.T_cam_lidar)
        np.testing.assert_allclose(invert_transform(T_base_link @ T_link_optical) @ T_base_lidar,
                                   drive.T_cam_lidar, atol=1e-9)
        pub = h.io.create_publisher(TFMessage, "/tf_static", LATCHED)
        pub.publish(TFMessage(transforms=[edge("base_link", "lidar", T_base_lidar),
                                          edge("base_link", "camera_link", T_base_link),
                                          edge("camera_link", "camera_optical", T_link_optical)]))
        assert spin_until(h.executor, lambda: len(h.node._tf_tree) == 3, 20.0)
        h.play(drive)
        assert spin_until(h.executor, lambda: h.node._prior_from_tf is not None and h.count("pairs_used") >= 1, 60.0)
        np.testing.assert_allclose(h.node._prior_from_tf, drive.T_cam_lidar, atol=1e-6)
        assert h.last_status()["prior"] == "tf: camera_optical <- lidar from /tf_static"
    finally:
        h.close()
        context.try_shutdown()
