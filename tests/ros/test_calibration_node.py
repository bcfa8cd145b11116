"""The real calibration node over DDS: a simulated drive in, tf / pose / diagnostics out.

The node runs in-process with the shipped ONNX model (real onnxruntime); a second node publishes a
simulated drive (camera 15 Hz, LiDAR 10 Hz, CameraInfo) and listens to what the calibration node
publishes. ``publish_before_convergence`` is on so the tf direction can be checked numerically on
whatever the estimate is; whether the estimate reaches the ground truth is the model's accuracy,
stated in its card (models/crossi2p_cpu.yaml) and measured by the evaluators.
"""
from __future__ import annotations

import array
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from tf2_msgs.msg import TFMessage

from crossi2p.geometry import invert_transform, transform_from_tq
from crossi2p.image_encoding import rgb_to_image_fields
from crossi2p.model_card import ModelCard
from crossi2p.pointcloud2 import rclpy_pointcloud2, stamp_to_sec_nanosec
from crossi2p_ros.calibration_node import LATCHED, CalibrationNode
from crossi2p_ros.live_replay import pose_msg_T_cam_lidar

from .conftest import spin_until

REPO = Path(__file__).resolve().parents[2]
MODEL_CARD = REPO / "models" / "crossi2p_cpu.yaml"


@pytest.fixture(scope="module")
def drive():
    from crossi2p_training.sim import SimConfig, simulate_drive

    return simulate_drive(SimConfig.preset("small"), seed=11, frames=6)


def image_msg(rgb, stamp_s, frame_id="camera_optical") -> Image:
    fields = rgb_to_image_fields(rgb)
    msg = Image(height=fields["height"], width=fields["width"], encoding="rgb8", is_bigendian=0, step=fields["step"])
    msg.data = array.array("B", rgb.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_to_sec_nanosec(stamp_s)
    msg.header.frame_id = frame_id
    return msg


def info_msg(camera, stamp_s, frame_id="camera_optical") -> CameraInfo:
    msg = CameraInfo(width=camera.width, height=camera.height,
                     distortion_model=camera.distortion_model if camera.distortion.size else "plumb_bob")
    msg.k = [float(v) for v in camera.K.reshape(-1)]
    msg.d = [float(v) for v in camera.distortion]
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_to_sec_nanosec(stamp_s)
    msg.header.frame_id = frame_id
    return msg


class Harness:
    """The calibration node plus a publisher/listener node on one executor."""

    def __init__(self, context, **params):
        # the graph itself as model_card: the node takes the card beside it (the other node tests
        # give the card)
        overrides = [Parameter("model_card", value=str(MODEL_CARD.with_suffix(".onnx"))),
                     Parameter("qos", value="reliable"),
                     Parameter("queue_depth", value=50), Parameter("diagnostics_rate_hz", value=20.0),
                     Parameter("runtime.execution_provider", value="cpu")]
        overrides += [Parameter(k.replace("__", "."), value=v) for k, v in params.items()]
        self.node = CalibrationNode(context=context, parameter_overrides=overrides)
        self.io = rclpy.create_node("drive_player", context=context)
        qos = QoSProfile(depth=50)
        self.pub_image = self.io.create_publisher(Image, "/camera/image_raw", qos)
        self.pub_info = self.io.create_publisher(CameraInfo, "/camera/camera_info", qos)
        self.pub_points = self.io.create_publisher(PointCloud2, "/lidar/points", qos)
        self.tf, self.poses, self.diagnostics = [], [], []
        self.io.create_subscription(TFMessage, "/tf_static", self.tf.append, LATCHED)
        self.io.create_subscription(PoseWithCovarianceStamped, "/crossi2p_calibration/pose", self.poses.append, 10)
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.io)
        assert spin_until(self.executor, lambda: self.pub_points.get_subscription_count() > 0
                          and self.pub_image.get_subscription_count() > 0)

    def play(self, drive, cloud_fn=None, offset_s=0.0):
        events = [(t + offset_s, "image", img) for t, img in drive.camera_frames] + \
                 [(t + offset_s, "lidar", pts) for t, pts in drive.lidar_sweeps]
        for t, kind, data in sorted(events, key=lambda e: e[0]):
            if kind == "image":
                self.pub_info.publish(info_msg(drive.camera, t))
                self.pub_image.publish(image_msg(data, t))
            else:
                self.pub_points.publish(cloud_fn(data, t) if cloud_fn else rclpy_pointcloud2(data[:, :4], t, "lidar"))
            for _ in range(3):
                self.executor.spin_once(timeout_sec=0.01)

    def last_status(self) -> dict:
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values} if self.diagnostics else {}

    def count(self, key: str) -> int:
        return int(self.last_status().get(key, 0))

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()


@pytest.fixture(scope="module")
def harness():
    """One node for the module: creating the ONNX session is the slow part (tens of seconds on
    2 busy cores), so the tests share it. Each plays at its own time offset and checks the
    counters it changed; the bad-input tests come first, while nothing has been published."""
    context = rclpy.Context()
    rclpy.init(context=context)
    h = Harness(context, publish_before_convergence=True, fusion__min_confidence=0.0,
                runtime__min_confidence=0.0, runtime__min_correspondences=0, max_points=40000)
    yield h
    h.close()
    context.try_shutdown()


def test_image_before_any_camera_info_is_dropped_with_a_reason(harness, drive):
    h = harness                                          # first test: no CameraInfo was ever sent
    assert h.node.runtime.card.name == ModelCard.load(MODEL_CARD).name   # loaded through the .onnx
    h.pub_image.publish(image_msg(drive.camera_frames[0][1], 1.0))
    assert spin_until(h.executor, lambda: h.count("bad_images") == 1, 20.0)
    assert "no CameraInfo received yet on /camera/camera_info" in h.last_status()["last_error"]
    assert not h.tf and not h.poses


def test_huge_cloud_is_subsampled_to_max_points(harness):
    h = harness
    before_sub, before_bad = h.count("clouds_subsampled"), h.count("bad_clouds")
    pts = np.random.default_rng(0).uniform(-30, 30, (100_000, 4)).astype(np.float32)  # > max_points 40000
    h.pub_points.publish(rclpy_pointcloud2(pts, 5.0, "lidar"))
    assert spin_until(h.executor, lambda: h.count("clouds_subsampled") == before_sub + 1, 30.0)
    assert h.count("bad_clouds") == before_bad and not h.tf


def bad_cloud(kind):
    def make(points, t):
        if kind == "empty":
            return rclpy_pointcloud2(np.zeros((0, 4), np.float32), t, "lidar")
        if kind == "nan":
            return rclpy_pointcloud2(np.full((1000, 4), np.nan, np.float32), t, "lidar")
        msg = rclpy_pointcloud2(points[:, :4], t, "lidar")  # no x/y/z: rename the fields
        msg.fields = [PointField(name=n, offset=f.offset, datatype=f.datatype, count=1)
                      for n, f in zip("abcd", msg.fields)]
        return msg
    return make


@pytest.mark.parametrize("offset_s, kind", [(0.0, "empty"), (10.0, "nan"), (20.0, "no_xyz")])
def test_bad_clouds_are_counted_and_never_reach_tf(harness, drive, offset_s, kind):
    h = harness
    before = h.count("bad_clouds")
    h.play(drive, cloud_fn=bad_cloud(kind), offset_s=offset_s)
    assert spin_until(h.executor, lambda: h.count("bad_clouds") == before + 6, 30.0)
    status = h.last_status()
    assert status["pairs_in"] == "0" and status["state"] == "waiting"
    assert "cloud on /lidar/points" in status["last_error"]
    assert not h.tf and not h.poses


def test_image_with_mismatching_camera_info_is_rejected_with_a_reason(harness, drive):
    h = harness
    before = h.count("bad_images")
    small = [(t, img[: img.shape[0] // 2]) for t, img in drive.camera_frames]
    h.play(type("Drive", (), {"camera_frames": small, "lidar_sweeps": [], "camera": drive.camera})(), offset_s=30.0)
    assert spin_until(h.executor, lambda: h.count("bad_images") >= before + 8, 30.0)
    assert "CameraInfo says" in h.last_status()["last_error"]
    assert not h.tf


def test_image_whose_camera_info_is_of_another_camera_is_rejected_with_a_reason(harness, drive):
    h = harness
    before = h.count("bad_images")
    infos = h.node.counters.camera_infos_in
    h.pub_info.publish(info_msg(drive.camera, 35.0, frame_id="other_camera_optical"))
    assert spin_until(h.executor, lambda: h.node.counters.camera_infos_in == infos + 1, 20.0)  # before the image
    h.pub_image.publish(image_msg(drive.camera_frames[0][1], 35.0))
    assert spin_until(h.executor, lambda: h.count("bad_images") == before + 1, 20.0)
    assert "its CameraInfo is in frame 'other_camera_optical'" in h.last_status()["last_error"]
    assert not h.tf
    h.pub_info.publish(info_msg(drive.camera, 35.0))                 # the right one again, for the next tests
    assert spin_until(h.executor, lambda: h.node.counters.camera_infos_in == infos + 2, 20.0)


def test_unsupported_encoding_is_rejected(harness, drive):
    h = harness
    before = h.count("bad_images")
    msg = image_msg(drive.camera_frames[0][1], 40.0)
    msg.encoding = "32FC7"
    h.pub_image.publish(msg)
    assert spin_until(h.executor, lambda: h.count("bad_images") == before + 1, 20.0)
    assert "32FC7" in h.last_status()["last_error"]
    assert not h.tf


def test_node_publishes_tf_static_as_the_inverse_of_its_pose_estimate(harness, drive):
    h = harness
    images_before, pairs_before = h.count("images_in"), h.count("pairs_in")
    h.play(drive, offset_s=100.0)
    assert spin_until(h.executor, lambda: h.tf and h.poses and h.count("pairs_used") >= 1, 60.0)
    tf = h.tf[-1].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("lidar", "camera_optical")
    t, r = tf.transform.translation, tf.transform.rotation
    T_lidar_cam = transform_from_tq([t.x, t.y, t.z], [r.x, r.y, r.z, r.w])
    # tf (parent lidar, child camera) carries inv(T_cam_lidar); the pose carries T_cam_lidar. The pose
    # goes out on every fused frame, /tf_static only when the estimate moved (republish_*), so the
    # last tf carries the estimate of one of the poses, not necessarily of the last one.
    poses = [pose_msg_T_cam_lidar(m) for m in h.poses]
    assert any(np.allclose(T_lidar_cam, invert_transform(T_cam_lidar), atol=1e-6) for T_cam_lidar in poses)
    # The pose is stamped with the LiDAR stamp of the pair it includes (end-to-end latency).
    stamp = h.poses[-1].header.stamp.sec + 1e-9 * h.poses[-1].header.stamp.nanosec
    assert min(abs(stamp - (t + 100.0)) for t, _ in drive.lidar_sweeps) < 1e-6
    cov = np.array(h.poses[-1].pose.covariance).reshape(6, 6)
    assert np.all(np.isfinite(cov)) and np.all(np.diag(cov) >= 0)
    # Diagnostics are a periodic snapshot: wait for one that counts the whole drive.
    assert spin_until(h.executor, lambda: h.count("images_in") - images_before >= 8, 20.0)
    # 6 sweeps: the last waits for a later image; the first image may beat its CameraInfo.
    assert spin_until(h.executor, lambda: h.count("pairs_in") - pairs_before >= 4, 20.0)
    assert h.last_status()["execution_providers"] == "CPUExecutionProvider"


def test_stamps_going_backwards_restart_pairing_without_a_crash(harness, drive):
    h = harness                                           # after the drive at t = 100 s: a bag loop
    resets, pairs = h.count("time_resets"), h.count("pairs_in")
    h.play(drive, offset_s=60.0)
    assert spin_until(h.executor, lambda: h.count("time_resets") >= resets + 1 and h.count("pairs_in") >= pairs + 4, 30.0)
    assert h.node._worker.is_alive()


def test_reset_service_forgets_the_estimate(harness):
    from std_srvs.srv import Trigger

    h = harness
    c = h.node.counters
    # Let the worker finish the pairs it has, so none is fused after the reset.
    assert spin_until(h.executor, lambda: h.node._pending is None and c.pairs_used + c.pairs_dropped_busy >= c.pairs_in, 60.0)
    client = h.io.create_client(Trigger, "/crossi2p_calibration/reset")
    assert client.wait_for_service(timeout_sec=10.0)
    assert h.tf and h.tf[-1].transforms                    # an earlier test got an estimate published
    future = client.call_async(Trigger.Request())
    assert spin_until(h.executor, future.done, 20.0)
    assert future.result().success
    assert spin_until(h.executor, lambda: h.last_status()["state"] == "waiting", 10.0)
    # a node that subscribes to /tf_static later gets no forgotten transform (the latched message
    # is replaced by an empty one)
    late = []
    h.io.create_subscription(TFMessage, "/tf_static", late.append, LATCHED)
    assert spin_until(h.executor, lambda: len(late) >= 1, 10.0)
    assert all(not m.transforms for m in late)
    # and there is nothing to save now
    save = h.io.create_client(Trigger, "/crossi2p_calibration/save_calibration")
    assert save.wait_for_service(timeout_sec=10.0)
    saved = save.call_async(Trigger.Request())
    assert spin_until(h.executor, saved.done, 20.0)
    assert not saved.result().success and saved.result().message.startswith("nothing saved")

