"""The node's CameraInfo handling, callbacks called directly (no DDS, a stub runtime: fast).

An uncalibrated camera (K all zeros, 0x0 size) makes the node skip and count its images
(``images_uncalibrated`` in diagnostics) and pair again once a calibrated CameraInfo arrives;
binning/roi give the size images are checked against (image_geometry's reading, the same core
function as the bag reader's); a malformed CameraInfo never crashes the node; each distinct problem
with an image is logged the first time it happens (read back from /rosout over DDS).
"""
from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CameraInfo, Image

from crossi2p.image_encoding import rgb_to_image_fields
from crossi2p.pointcloud2 import rclpy_pointcloud2, stamp_to_sec_nanosec
from crossi2p_ros.calibration_node import CalibrationNode

from .conftest import spin_until, warning_listener

K_FULL = [120.0, 0.0, 63.5, 0.0, 118.0, 47.5, 0.0, 0.0, 1.0]  # a 128x96 sensor


class StubRuntime:
    """Just what the node asks of a runtime before a pair is estimated; estimating fails loudly
    (the worker counts it as an invalid frame), which these tests do not look at."""

    card = SimpleNamespace(name="stub")
    providers = ["CPUExecutionProvider"]

    def estimate(self, *args, **kwargs):
        raise RuntimeError("stub runtime: no estimate")

    def close(self):
        pass


def info_msg(stamp_s, k=K_FULL, width=128, height=96, binning=0, d=(), model="plumb_bob") -> CameraInfo:
    msg = CameraInfo(width=width, height=height, distortion_model=model, binning_x=binning, binning_y=binning)
    msg.k = [float(v) for v in k]
    msg.d = [float(v) for v in d]
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_to_sec_nanosec(stamp_s)
    msg.header.frame_id = "camera_optical"
    return msg


def image_msg(stamp_s, width=128, height=96) -> Image:
    fields = rgb_to_image_fields(np.full((height, width, 3), 90, np.uint8))
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=fields["step"])
    msg.data = array.array("B", bytes(fields["data"]))
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_to_sec_nanosec(stamp_s)
    msg.header.frame_id = "camera_optical"
    return msg


def cloud_msg(stamp_s):
    pts = np.random.default_rng(0).uniform(-10, 10, (500, 4)).astype(np.float32)
    pts[:, 2] = np.abs(pts[:, 2]) + 1
    return rclpy_pointcloud2(pts, stamp_s, "lidar")


@pytest.fixture
def node(ros_context):
    n = CalibrationNode(runtime=StubRuntime(), context=ros_context)
    yield n
    n.destroy_node()


def status(node) -> dict:
    return {kv.key: kv.value for kv in node.diagnostics_status().values}


def frame_pair(node, t, width=128, height=96):
    """A cloud, then an image 10 ms later: a pair when the image is accepted."""
    node._on_points(cloud_msg(t))
    node._on_image(image_msg(t + 0.01, width, height))


@pytest.mark.parametrize("uncalibrated", [dict(k=[0.0] * 9), dict(width=0, height=0)])
def test_uncalibrated_camera_images_are_skipped_counted_and_pairing_resumes(node, uncalibrated):
    for k in range(3):
        node._on_camera_info(info_msg(1.0 + k, **uncalibrated))
        frame_pair(node, 1.0 + k)
    s = status(node)
    assert (s["images_in"], s["images_uncalibrated"], s["bad_images"], s["pairs_in"]) == ("3", "3", "0", "0")
    assert "uncalibrated camera" in s["last_error"] and "waiting for a calibrated CameraInfo" in s["last_error"]
    node._on_camera_info(info_msg(4.0))  # the driver found its calibration
    frame_pair(node, 4.0)
    s = status(node)
    assert (s["images_uncalibrated"], s["bad_images"], s["pairs_in"]) == ("3", "0", "1")
    node._on_camera_info(info_msg(5.0, **uncalibrated))  # and lost it again: skipped again
    frame_pair(node, 5.0)
    assert (status(node)["images_uncalibrated"], status(node)["pairs_in"]) == ("4", "1")


def test_binned_camera_info_accepts_the_binned_image_size(node):
    """A 128x96 calibration with binning 2: 64x48 images pair, 128x96 ones are refused with the reason."""
    node._on_camera_info(info_msg(1.0, binning=2, d=(-0.1, 0.01, 0, 0, 0)))
    frame_pair(node, 1.0, 64, 48)
    assert node.wait_until_idle(0, 10.0)  # the worker's stub failure must not race the refusal below
    s = status(node)
    assert (s["bad_images"], s["pairs_in"]) == ("0", "1")
    cam = node._last_camera()
    np.testing.assert_allclose([cam.fx, cam.fy, cam.K[0, 2], cam.K[1, 2]], [60.0, 59.0, 31.75, 23.75], atol=1e-12)
    frame_pair(node, 2.0, 128, 96)
    s = status(node)
    assert s["bad_images"] == "1" and s["pairs_in"] == "1"
    assert "is 128x96 but its CameraInfo says 64x48 (128x96 with binning 2x2" in s["last_error"]


@pytest.mark.parametrize("bad, reason", [
    (dict(k=[120.0, 4.0, 63.5, 0.0, 118.0, 47.5, 0.0, 0.0, 1.0]), "K[0,1] (skew) = 4"),
    (dict(d=(0.1, 0.0, 0.0, 0.0, 0.0, 0.2)), "plumb_bob with 6 coefficients"),
    (dict(model="mei", d=(0.1, 0, 0, 0, 0)), "distortion_model: expected one of"),
])
def test_malformed_camera_info_rejects_images_with_a_reason_and_the_node_goes_on(node, bad, reason):
    node._on_camera_info(info_msg(1.0, **bad))
    frame_pair(node, 1.0)
    s = status(node)
    assert s["bad_images"] == "1" and s["images_uncalibrated"] == "0" and reason in s["last_error"]
    node._on_camera_info(info_msg(2.0))
    frame_pair(node, 2.0)
    assert status(node)["pairs_in"] == "1"


def test_empty_distortion_model_is_read_as_plumb_bob_with_one_warning(node):
    notes = []
    node._camera_note = notes.append  # the node's once-per-note logger
    for k in range(5):
        node._on_camera_info(info_msg(1.0 + k, model="", d=(-0.1, 0.01, 0.001, 0.0, 0.0)))
    cam = node._last_camera()
    assert cam.distortion_model == "plumb_bob" and cam.distortion.tolist() == [-0.1, 0.01, 0.001, 0.0, 0.0]
    assert len(notes) == 1 and "empty distortion_model with 5 coefficients" in notes[0]


def test_repeated_camera_info_is_converted_once(node):
    node._on_camera_info(info_msg(1.0))
    first = node._last_camera()
    node._on_camera_info(info_msg(2.0))  # same calibration, new stamp
    assert node._last_camera() is first
    node._on_camera_info(info_msg(3.0, k=[121.0] + K_FULL[1:]))
    assert node._last_camera().fx == pytest.approx(121.0)


def test_each_distinct_bad_input_problem_is_logged_at_its_first_occurrence(node, ros_context):
    """A start-up race ("no CameraInfo received yet") used to hide the real cause that followed it
    (a CameraInfo of another size than the images) for 5 s, or for good in a short burst: the
    warnings were throttled per call site. Read from /rosout, as any log consumer does."""
    listener, records = warning_listener(ros_context, node.get_name())
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)
    try:
        for k in range(3):                              # images before any CameraInfo
            node._on_image(image_msg(1.0 + 0.1 * k, 416, 128))
        for k in range(10):                             # a CameraInfo of another size than the images
            node._on_camera_info(info_msg(2.0 + 0.1 * k, width=640, height=480))
            node._on_image(image_msg(2.0 + 0.1 * k, 416, 128))
        assert status(node)["bad_images"] == "13"
        assert spin_until(executor, lambda: any("416x128 but its CameraInfo says 640x480" in m.msg for m in records),
                          20.0), [m.msg for m in records]
        spin_until(executor, lambda: False, 0.5)        # anything else on its way
    finally:
        executor.shutdown()
        listener.destroy_node()
    logged = [m.msg for m in records]
    no_info = [m for m in logged if "no CameraInfo received yet" in m]
    size = [m for m in logged if "416x128 but its CameraInfo says 640x480" in m]
    assert len(no_info) == 1 and len(size) == 1, logged  # each problem once in a burst: not spammy
