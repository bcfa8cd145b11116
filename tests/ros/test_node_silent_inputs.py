"""The node warns in its log when an input has received nothing (``input_timeout_s``), saying what
the ROS graph has there: the topic with another type and the parameter to set, a QoS its
subscription refuses, or similarly named topics of the expected type (``crossi2p_ros.input_watch``).

It used to say only "subscribed to ..." and "ready", forever, with a wrong topic name or a
CompressedImage on the image topic without ``compressed_image:=true``: only /diagnostics showed
``images_in`` 0. The pure rules first; then the real node over DDS, its warnings read back from
/rosout as any log consumer reads them.
"""
from __future__ import annotations

import array
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from crossi2p.pointcloud2 import rclpy_pointcloud2
from crossi2p_ros.calibration_node import CalibrationNode
from crossi2p_ros.input_watch import (InputWatch, Publisher, WatchedInput, silent_input_warning,
                                      stopped_input_warning)

from .conftest import spin_until, warning_listener
from .test_node_camera_info import StubRuntime, image_msg, info_msg

IMAGE = WatchedInput("/front_cam/image_raw", "sensor_msgs/msg/Image", "image_topic")
INFO = WatchedInput("/camera/camera_info", "sensor_msgs/msg/CameraInfo", "camera_info_topic")


# ---------------------------------------------------------------------------- pure rules
def test_an_input_with_nothing_is_due_after_the_timeout_then_every_repeat_period():
    watch = InputWatch([IMAGE, INFO], timeout_s=10.0, repeat_s=30.0, start_s=100.0)
    assert watch.due(109.0, {}) == []                        # not yet
    assert watch.due(110.0, {INFO: 3}) == [IMAGE]            # CameraInfo came: only the image is silent
    assert watch.due(125.0, {INFO: 9}) == []                 # not spammy
    assert watch.due(140.0, {INFO: 9}) == [IMAGE]            # again after the repeat period
    assert watch.due(200.0, {IMAGE: 1, INFO: 9}) == []       # something came: never again


def test_an_input_that_stops_is_due_once_it_is_silent_for_the_timeout_then_every_repeat_period():
    watch = InputWatch([IMAGE, INFO], timeout_s=10.0, repeat_s=30.0, start_s=100.0)
    assert watch.stopped(100.0, {}) == []
    assert watch.stopped(105.0, {IMAGE: 50, INFO: 50}) == []
    assert watch.stopped(110.0, {IMAGE: 100, INFO: 50}) == []           # INFO silent for 5 s only
    assert watch.stopped(115.0, {IMAGE: 150, INFO: 50}) == [(INFO, 10.0)]
    assert watch.stopped(120.0, {IMAGE: 200, INFO: 50}) == []           # not spammy
    assert watch.stopped(145.0, {IMAGE: 250, INFO: 50}) == [(INFO, 40.0)]   # again after the repeat period
    assert watch.stopped(150.0, {IMAGE: 300, INFO: 51}) == []           # it came back: the stop is over
    assert watch.stopped(160.0, {IMAGE: 400, INFO: 51}) == [(INFO, 10.0)]   # and a new stop is told at once
    never = InputWatch([IMAGE], timeout_s=10.0, repeat_s=30.0, start_s=0.0)
    assert never.stopped(0.0, {}) == [] and never.stopped(50.0, {}) == []   # never received: due(), not this


@pytest.mark.parametrize("publishers, expected", [
    ([Publisher(IMAGE.topic, IMAGE.msgtype, "/cam", False)],
     "its publisher (/cam) is still in the ROS graph: the driver may have stalled or lost its sensor"),
    ([Publisher(IMAGE.topic, "sensor_msgs/msg/CompressedImage", "/cam", False)],
     "nobody publishes it any more (the driver or the bag stopped)"),
    ([], "nobody publishes it any more (the driver or the bag stopped)"),
])
def test_the_stop_warning_says_whether_the_publisher_is_still_there(publishers, expected):
    line = stopped_input_warning(IMAGE, 12.3, 120, publishers)
    assert line == (f"no message on {IMAGE.topic} ({IMAGE.msgtype}) for 12 s, after 120 received; the calibration "
                    f"waits (the last estimate stays published): {expected}")


@pytest.mark.parametrize("watched, publishers, reliable, expected", [
    (WatchedInput("/camera/image_raw", "sensor_msgs/msg/Image", "image_topic"),
     [Publisher("/camera/image_raw", "sensor_msgs/msg/CompressedImage", "/cam", False)], False,
     "/camera/image_raw exists with type sensor_msgs/msg/CompressedImage; set compressed_image:=true"),
    (WatchedInput("/camera/image_raw", "sensor_msgs/msg/CompressedImage", "image_topic"),
     [Publisher("/camera/image_raw", "sensor_msgs/msg/Image", "/cam", False)], False,
     "exists with type sensor_msgs/msg/Image; set compressed_image:=false"),
    (WatchedInput("/lidar/points", "sensor_msgs/msg/PointCloud2", "points_topic"),
     [Publisher("/lidar/points", "sensor_msgs/msg/LaserScan", "/lidar", False)], False,
     "exists with type sensor_msgs/msg/LaserScan; expected sensor_msgs/msg/PointCloud2: set points_topic to a "
     "topic of that type"),
    (IMAGE, [Publisher("/camera/image_raw", "sensor_msgs/msg/Image", "/cam", False),
             Publisher("/lidar/points", "sensor_msgs/msg/PointCloud2", "/lidar", False)], False,
     "nobody publishes /front_cam/image_raw; /camera/image_raw carries sensor_msgs/msg/Image: "
     "set image_topic:=/camera/image_raw?"),
    (IMAGE, [Publisher(t, "sensor_msgs/msg/Image", "/cam", False)
             for t in ("/rear_cam/image_raw", "/depth/image", "/front_cam/image_rect", "/a", "/b")], False,
     "topics carrying sensor_msgs/msg/Image: /front_cam/image_rect, /rear_cam/image_raw, /depth/image "
     "(and 2 more); set image_topic"),
    (IMAGE, [Publisher("/front_cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage", "/cam", False)], False,
     "/front_cam/image_raw/compressed carries sensor_msgs/msg/CompressedImage: set "
     "image_topic:=/front_cam/image_raw/compressed and compressed_image:=true?"),
    (IMAGE, [], False, "no topic in the ROS graph carries sensor_msgs/msg/Image (is the driver or the bag playing, "
                       "with the same ROS_DOMAIN_ID?)"),
    (IMAGE, [Publisher("/crossi2p_calibration_rear/overlay", "sensor_msgs/msg/Image", "/crossi2p_calibration_rear",
                       False)], False,   # another calibration node's overlay is no camera
     "no topic in the ROS graph carries sensor_msgs/msg/Image (is the driver or the bag playing, "
     "with the same ROS_DOMAIN_ID?)"),
    (IMAGE, [Publisher(IMAGE.topic, IMAGE.msgtype, "/cam", True)], True,
     "its publisher (/cam) is best effort, which the subscription (qos:=reliable) does not accept; "
     "set qos:=sensor_data"),
    (IMAGE, [Publisher(IMAGE.topic, IMAGE.msgtype, "/cam", True)], False,
     "it has a publisher of sensor_msgs/msg/Image (/cam), but no message has arrived yet"),
])
def test_the_warning_says_what_the_graph_has_on_and_near_the_topic(watched, publishers, reliable, expected):
    line = silent_input_warning(watched, 10.2, publishers, reliable)
    assert line.startswith(f"nothing received on {watched.topic} ({watched.msgtype}, parameter {watched.parameter}) "
                           f"in the 10 s since start-up: ")
    assert line.endswith(expected), line


RIG_IMAGE = WatchedInput("/camera_05/image_raw", "sensor_msgs/msg/Image", "cameras[0].image_topic", "rig.yaml")


@pytest.mark.parametrize("publishers, expected", [
    ([Publisher("/camera_5/image_raw", "sensor_msgs/msg/Image", "/cam", False)],
     "nobody publishes /camera_05/image_raw; /camera_5/image_raw carries sensor_msgs/msg/Image: "
     "set cameras[0].image_topic: /camera_5/image_raw in rig.yaml?"),
    ([Publisher("/camera_05/image_raw/compressed", "sensor_msgs/msg/CompressedImage", "/cam", False)],
     "/camera_05/image_raw/compressed carries sensor_msgs/msg/CompressedImage: set cameras[0].image_topic: "
     "/camera_05/image_raw/compressed in rig.yaml and compressed_image:=true?"),
    ([Publisher("/camera_05/image_raw", "sensor_msgs/msg/CameraInfo", "/cam", False)],
     "exists with type sensor_msgs/msg/CameraInfo; expected sensor_msgs/msg/Image: set cameras[0].image_topic "
     "in rig.yaml to a topic of that type"),
])
def test_a_rig_cameras_warning_names_the_rig_files_entry_not_a_node_parameter(publishers, expected):
    line = silent_input_warning(RIG_IMAGE, 10.0, publishers, False)
    assert line.startswith("nothing received on /camera_05/image_raw (sensor_msgs/msg/Image, "
                           "cameras[0].image_topic in rig.yaml) in the 10 s since start-up: "), line
    assert line.endswith(expected), line


def test_the_nodes_other_inputs_are_never_suggested_in_a_silent_ones_place():
    publishers = [Publisher(t, "sensor_msgs/msg/Image", "/cam", False) for t in ("/camera_04/image_raw",
                                                                                   "/camera_05/image")]
    line = silent_input_warning(RIG_IMAGE, 10.0, publishers, False, frozenset({"/camera_04/image_raw"}))
    assert line.endswith("/camera_05/image carries sensor_msgs/msg/Image: set cameras[0].image_topic: "
                         "/camera_05/image in rig.yaml?"), line


# ---------------------------------------------------------------------------- over DDS
def compressed_msg(stamp_s: float) -> CompressedImage:
    msg = CompressedImage(format="jpeg")
    msg.data = array.array("B", b"\xff\xd8\xff\xd9")
    msg.header.stamp.sec = int(stamp_s)
    return msg


class Driver:
    """A camera and LiDAR driver: publishes on ``topics`` ({topic: message type}) at 10 Hz, from its
    own context (its own DDS participant, as another process: one participant cannot have a topic
    with two types)."""

    def __init__(self, topics: dict[str, type]):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_driver", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.pubs = [(self.node.create_publisher(t, topic, 10), t) for topic, t in topics.items()]
        self.stamp_s = 1.0
        self.node.create_timer(0.1, self._publish)

    def _publish(self) -> None:
        self.stamp_s += 0.1
        for pub, msg_type in self.pubs:
            pub.publish({Image: lambda s: image_msg(s), CompressedImage: compressed_msg, CameraInfo: info_msg,
                         PointCloud2: lambda s: rclpy_pointcloud2(np.ones((10, 4), np.float32), s, "lidar")
                         }[msg_type](self.stamp_s))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def node_warnings(context, overrides: list[Parameter], driver_topics: dict[str, type], wanted: str) -> list[Log]:
    """Start the node (``input_timeout_s`` 0.5 s) and a driver, spin until a warning of the node
    holds ``wanted`` (DDS discovery may come after the first warning: it repeats), return the
    node's warnings."""
    node = CalibrationNode(runtime=StubRuntime(), context=context, parameter_overrides=[
        Parameter("input_timeout_s", value=0.5), *overrides])
    driver = Driver(driver_topics)
    listener, warnings = warning_listener(context, node.get_name())
    executor = SingleThreadedExecutor(context=context)
    for n in (node, listener):
        executor.add_node(n)

    def heard() -> bool:
        driver.executor.spin_once(timeout_sec=0.0)
        return any(wanted in m.msg for m in warnings)

    try:
        assert spin_until(executor, heard, 30.0), [m.msg for m in warnings]
    finally:
        executor.shutdown()
        driver.close()
        for n in (listener, node):
            n.destroy_node()
    return warnings


def test_a_wrong_image_topic_is_named_with_the_topic_that_carries_images(ros_context):
    warnings = node_warnings(ros_context, [Parameter("image_topic", value="/front_cam/image_raw")],
                             {"/camera/image_raw": Image, "/camera/camera_info": CameraInfo,
                              "/lidar/points": PointCloud2},
                             "/camera/image_raw carries sensor_msgs/msg/Image: set image_topic:=/camera/image_raw?")
    assert all("/front_cam/image_raw" in m.msg for m in warnings if "image_raw" in m.msg)
    image = [m for m in warnings if m.msg.startswith("nothing received on /front_cam/image_raw")]
    stamps = [m.stamp.sec + 1e-9 * m.stamp.nanosec for m in image]
    assert all(b - a >= 1.5 - 1e-3 for a, b in zip(stamps, stamps[1:])), stamps  # every 3x the timeout at most


def test_compressed_images_on_the_image_topic_say_to_set_compressed_image(ros_context):
    node_warnings(ros_context, [], {"/camera/image_raw": CompressedImage},
                  "/camera/image_raw exists with type sensor_msgs/msg/CompressedImage; set compressed_image:=true")


def test_a_rig_cameras_wrong_topic_is_named_with_its_rig_file_entry(ros_context, tmp_path):
    """A rig file (``rig_calibration``) whose second camera's image topic nobody publishes: the
    node names that entry of the file, and the topic that does carry that camera's images."""
    recording = Path(__file__).resolve().parents[2] / "data" / "real" / "tri_dgp_scene_02"
    rig = tmp_path / "rig.yaml"
    rig.write_text(yaml.safe_dump({"cameras": [
        {"image_topic": f"/{c}/image", "camera_info_topic": f"/{c}/camera_info",
         "prior_calibration": str(recording / f"rig_prior_{c}.yaml")} for c in ("camera_05", "camera_06")]}))
    warnings = node_warnings(
        ros_context, [Parameter("prior_calibration", value=str(recording / "rig_prior_camera_01.yaml")),
                      Parameter("rig_calibration", value=str(rig))],
        {"/camera/image_raw": Image, "/camera/camera_info": CameraInfo, "/lidar/points": PointCloud2,
         "/camera_05/image": Image, "/camera_05/camera_info": CameraInfo, "/camera_06/camera_info": CameraInfo,
         "/camera_06/image_raw": Image},
        f"nothing received on /camera_06/image (sensor_msgs/msg/Image, cameras[1].image_topic in {rig})")
    lines = [m.msg for m in warnings if m.msg.startswith("nothing received on ")]
    assert any(line.endswith(f"/camera_06/image_raw carries sensor_msgs/msg/Image: set cameras[1].image_topic: "
                             f"/camera_06/image_raw in {rig}?") for line in lines), lines
    # the inputs that do get messages are never named
    assert not [line for line in lines if line.split()[3] in ("/camera_05/image", "/camera_06/camera_info",
                                                             "/camera/image_raw")], lines


def test_a_driver_that_stops_is_named_once_its_inputs_are_silent(ros_context):
    """Over DDS: a driver publishes all three inputs and then its node leaves the graph; the node
    names each input as stopped, with how many it received, and that nobody publishes it."""
    node = CalibrationNode(runtime=StubRuntime(), context=ros_context,
                           parameter_overrides=[Parameter("input_timeout_s", value=0.5)])
    driver = Driver({"/camera/image_raw": Image, "/camera/camera_info": CameraInfo, "/lidar/points": PointCloud2})
    listener, records = warning_listener(ros_context, node.get_name())
    executor = SingleThreadedExecutor(context=ros_context)
    for n in (node, listener):
        executor.add_node(n)
    try:
        def all_in() -> bool:
            driver.executor.spin_once(timeout_sec=0.0)
            c = node.counters
            return min(c.images_in, c.camera_infos_in, c.clouds_in) >= 3
        assert spin_until(executor, all_in, 30.0)
        driver.close()
        # (a warning may come before DDS has told the node that the driver left: it repeats)
        gone = lambda: [m.msg for m in records if m.msg.startswith("no message on ")  # noqa: E731
                        and m.msg.endswith("nobody publishes it any more (the driver or the bag stopped)")]
        assert spin_until(executor, lambda: len({w.split()[3] for w in gone()}) == 3, 30.0), [m.msg for m in records]
        for w in gone():
            assert int(w.split("after ")[1].split()[0]) >= 3, w
    finally:
        executor.shutdown()
        for n in (listener, node):
            n.destroy_node()


def test_input_timeout_0_switches_the_check_off(ros_context):
    counts = []
    for timeout in (10.0, 0.0):
        node = CalibrationNode(runtime=StubRuntime(), context=ros_context,
                               parameter_overrides=[Parameter("input_timeout_s", value=timeout)])
        counts.append(len(list(node.timers)))  # diagnostics, the name check (+ the input check)
        node.destroy_node()
    assert counts == [3, 2]
