"""The node's frame rule over DDS: a cloud stamped with another frame than ``lidar_frame`` is mapped
into it through /tf_static, or refused with a reason; the estimate goes out under the frame its
points were in. A stub runtime records the points it is given (no onnxruntime: fast) and answers
a fixed T_cam_lidar, so the published frames and the points' numbers can be checked exactly.

Ouster: the driver stamps clouds ``os_lidar``; the URDF has os_sensor -> os_lidar = 180 deg about z
and 36.18 mm up; the calibration is configured in ``os_sensor``.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from crossi2p.camera import CameraModel
from crossi2p.geometry import invert_transform, make_transform, transform_from_tq
from crossi2p.pointcloud2 import rclpy_pointcloud2
from crossi2p.runtime import FrameEstimate
from crossi2p_ros.calibration_node import LATCHED, CalibrationNode

from .conftest import spin_until
from .test_calibration_node import image_msg, info_msg
from .test_refine_prior import edge

T_SENSOR_LIDAR = make_transform(Rotation.from_euler("z", 180.0, degrees=True), [0.0, 0.0, 0.03618])
T_CAM_SENSOR = make_transform(Rotation.from_euler("xyz", [-90.0, 0.0, -90.0], degrees=True), [0.1, -0.2, 0.05])
CAMERA = CameraModel(np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]]), 64, 48)


class RecordingRuntime:
    """Records the points of every estimate; answers ``T_CAM_SENSOR`` with full confidence."""

    card = SimpleNamespace(name="recording stub")
    providers = ["CPUExecutionProvider"]

    def __init__(self):
        self.points: list[np.ndarray] = []

    def estimate(self, image, points, camera, T_prior=None) -> FrameEstimate:
        self.points.append(np.array(points))
        return FrameEstimate(True, T_cam_lidar=T_CAM_SENSOR.copy(), confidence=1.0, inlier_ratio=1.0,
                             latency_ms={"graph": 1.0})

    def close(self):
        pass


def _io(context):
    """A node with the sensors' publishers and a /tf_static publisher, recording what the
    calibration node puts on /tf_static and ~/pose."""
    io = rclpy.create_node("frames_io", context=context)
    qos = QoSProfile(depth=50)
    out = SimpleNamespace(node=io, image=io.create_publisher(Image, "/camera/image_raw", qos),
                          info=io.create_publisher(CameraInfo, "/camera/camera_info", qos),
                          points=io.create_publisher(PointCloud2, "/lidar/points", qos),
                          tf=io.create_publisher(TFMessage, "/tf_static", LATCHED), tf_out=[], poses=[])
    io.create_subscription(TFMessage, "/tf_static", out.tf_out.append, LATCHED)
    io.create_subscription(PoseWithCovarianceStamped, "/crossi2p_calibration/pose", out.poses.append, 10)
    return out


def test_cloud_in_os_lidar_is_refused_without_tf_then_mapped_into_os_sensor_and_published_there():
    context = rclpy.Context()
    rclpy.init(context=context)
    runtime = RecordingRuntime()
    node = CalibrationNode(runtime=runtime, context=context, parameter_overrides=[
        Parameter("lidar_frame", value="os_sensor"), Parameter("qos", value="reliable"),
        Parameter("queue_depth", value=50), Parameter("publish_before_convergence", value=True),
        Parameter("fusion.min_confidence", value=0.0), Parameter("diagnostics_rate_hz", value=50.0)])
    ios = _io(context)
    io, pub_image, pub_info, pub_points, pub_tf = ios.node, ios.image, ios.info, ios.points, ios.tf
    tf_out, poses = ios.tf_out, ios.poses
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(io)
    pts = np.array([[1.0, 0.0, 0.0, 0.25], [0.0, 2.0, -0.5, 0.5], [10.0, -3.0, 1.0, 1.0]] * 100, np.float32)

    def play(t):
        pub_info.publish(info_msg(CAMERA, t))
        pub_image.publish(image_msg(np.full((48, 64, 3), 80, np.uint8), t))
        pub_points.publish(rclpy_pointcloud2(pts, t + 0.01, "os_lidar"))
        for _ in range(5):
            executor.spin_once(timeout_sec=0.01)

    try:
        assert spin_until(executor, lambda: pub_points.get_subscription_count() > 0
                          and pub_image.get_subscription_count() > 0)
        # 1. no /tf_static yet: refused, counted, said why; nothing estimated or published
        for k in range(3):
            play(1.0 + 0.1 * k)
        assert spin_until(executor, lambda: node.counters.bad_clouds == 3 and node.counters.inputs_handled >= 9)
        status = {kv.key: kv.value for kv in node.diagnostics_status().values}
        assert status["bad_clouds"] == "3" and status["pairs_in"] == "0"
        assert status["last_error"] == (
            "cloud on /lidar/points refused: cloud in frame 'os_lidar', not the LiDAR frame 'os_sensor', and no "
            "/tf_static path links the two: publish that static transform or set lidar_frame to 'os_lidar'")
        assert not runtime.points and not poses and not any(
            t.header.frame_id == "os_sensor" for m in tf_out for t in m.transforms)

        # 2. the URDF's static tf arrives: the clouds are used, in os_sensor
        pub_tf.publish(TFMessage(transforms=[edge("os_sensor", "os_lidar", T_SENSOR_LIDAR)]))
        assert spin_until(executor, lambda: len(node._tf_tree) == 1)
        for k in range(4):
            play(5.0 + 0.1 * k)
        assert spin_until(executor, lambda: poses and any(t.header.frame_id == "os_sensor"
                                                          for m in tf_out for t in m.transforms))
        assert node.counters.bad_clouds == 3 and runtime.points
        np.testing.assert_allclose(runtime.points[0][:3], [[-1.0, 0.0, 0.03618, 0.25], [0.0, -2.0, -0.46382, 0.5],
                                                           [-10.0, 3.0, 1.03618, 1.0]], atol=1e-6)
        # published under os_sensor (parent) -> camera_optical (child), carrying inv(T_cam_os_sensor)
        ours = [t for m in tf_out for t in m.transforms if t.child_frame_id == "camera_optical"]
        assert ours and {t.header.frame_id for t in ours} == {"os_sensor"}
        tr, r = ours[-1].transform.translation, ours[-1].transform.rotation
        np.testing.assert_allclose(transform_from_tq([tr.x, tr.y, tr.z], [r.x, r.y, r.z, r.w]),
                                   invert_transform(T_CAM_SENSOR), atol=1e-9)
        assert poses[-1].header.frame_id == "camera_optical" and node.pipeline.fuser.state.frames_accepted >= 1
    finally:
        executor.shutdown()
        node.destroy_node()
        io.destroy_node()
        context.try_shutdown()


def test_an_image_in_another_frame_than_camera_frame_is_refused_with_a_reason():
    context = rclpy.Context()
    rclpy.init(context=context)
    runtime = RecordingRuntime()
    node = CalibrationNode(runtime=runtime, context=context,
                           parameter_overrides=[Parameter("camera_frame", value="camera_optical")])
    try:
        node._on_camera_info(info_msg(CAMERA, 1.0, frame_id="camera_link"))
        node._on_image(image_msg(np.full((48, 64, 3), 80, np.uint8), 1.0, frame_id="camera_link"))
        assert node.counters.bad_images == 1
        assert node.counters.last_error.startswith(
            "image on /camera/image_raw refused: image in frame 'camera_link', not the camera frame 'camera_optical' "
            "(no /tf_static path links the two)")
        # an identity alias on /tf_static makes it the same optical frame
        node._on_tf_static(TFMessage(transforms=[edge("camera_optical", "camera_link", np.eye(4))]))
        node._on_image(image_msg(np.full((48, 64, 3), 80, np.uint8), 1.1, frame_id="camera_link"))
        assert node.counters.bad_images == 1
        # empty parameters: the first message's frame is the frame; a later one in another frame is mapped or refused
        node2 = CalibrationNode(runtime=runtime, context=context)
        node2._on_points(rclpy_pointcloud2(np.ones((50, 4), np.float32), 2.0, "velodyne"))
        node2._on_points(rclpy_pointcloud2(np.ones((50, 4), np.float32), 2.1, "os_lidar"))
        assert node2.counters.bad_clouds == 1 and "not the LiDAR frame 'velodyne'" in node2.counters.last_error
        node2.destroy_node()
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_a_camera_frame_that_already_has_a_parent_is_warned_about_and_tf_child_frame_publishes_beside_it():
    """The robot's URDF already has camera_link -> camera_optical on /tf_static: the node's
    lidar -> camera_optical would give the frame a second parent, so it warns (once, naming the
    parent and the parameter); with ``tf_child_frame`` it publishes under that name instead and says
    nothing, ``~/pose`` staying in the camera frame. A parameter change at run time is refused."""
    from rcl_interfaces.srv import SetParameters
    from std_srvs.srv import Trigger

    from .conftest import warning_listener

    for child in ("", "camera_optical_calibrated"):
        context = rclpy.Context()
        rclpy.init(context=context)
        overrides = [Parameter("qos", value="reliable"), Parameter("queue_depth", value=50),
                     Parameter("publish_before_convergence", value=True), Parameter("fusion.min_confidence", value=0.0)]
        if child:
            overrides.append(Parameter("tf_child_frame", value=child))
        node = CalibrationNode(runtime=RecordingRuntime(), context=context, parameter_overrides=overrides)
        ios = _io(context)
        io, pub_image, pub_info, pub_points, pub_tf = ios.node, ios.image, ios.info, ios.points, ios.tf
        tf_out, poses = ios.tf_out, ios.poses
        listener, warnings = warning_listener(context, node.get_name())
        executor = SingleThreadedExecutor(context=context)
        for n in (node, io, listener):
            executor.add_node(n)
        pts = np.array([[5.0, 0.0, 0.0, 0.25], [6.0, 1.0, -0.5, 0.5]] * 100, np.float32)
        try:
            pub_tf.publish(TFMessage(transforms=[edge("camera_link", "camera_optical", np.eye(4))]))
            assert spin_until(executor, lambda: pub_points.get_subscription_count() > 0 and len(node._tf_tree) >= 1)
            for k in range(3):
                t = 1.0 + 0.1 * k
                pub_info.publish(info_msg(CAMERA, t))
                pub_image.publish(image_msg(np.full((48, 64, 3), 80, np.uint8), t))
                pub_points.publish(rclpy_pointcloud2(pts, t + 0.01, "lidar"))
            published = child or "camera_optical"
            assert spin_until(executor, lambda: poses and any(tr.child_frame_id == published and tr.header.frame_id
                                                              == "lidar" for m in tf_out for tr in m.transforms))
            spin_until(executor, lambda: False, 0.5)            # the log reaches /rosout
            told = [m.msg for m in warnings if "already has the parent" in m.msg]
            if child:
                assert not told and poses[-1].header.frame_id == "camera_optical"
            else:
                assert told == ["camera_optical already has the parent camera_link on /tf_static: this node's lidar -> "
                                "camera_optical gives it a second parent (tf lookups then take either); set "
                                "tf_child_frame to another name, e.g. tf_child_frame:=camera_optical_calibrated "
                                "(docs/troubleshooting.md)"]
                # every parameter is read at start-up: a change at run time is refused, not silently ignored
                client = io.create_client(SetParameters, "/crossi2p_calibration/set_parameters")
                assert client.wait_for_service(timeout_sec=10.0)
                future = client.call_async(SetParameters.Request(
                    parameters=[Parameter("image_topic", value="/foo").to_parameter_msg()]))
                assert spin_until(executor, future.done)
                result = future.result().results[0]
                assert not result.successful and "read-only" in result.reason
                assert node.get_parameter("image_topic").value == "/camera/image_raw"
                reset = io.create_client(Trigger, "/crossi2p_calibration/reset")
                assert reset.wait_for_service(timeout_sec=10.0)
                done = reset.call_async(Trigger.Request())
                assert spin_until(executor, done.done) and done.result().success
        finally:
            executor.shutdown()
            for n in (listener, node, io):
                n.destroy_node()
            context.try_shutdown()
