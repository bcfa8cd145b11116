"""Two calibration nodes of one name (a second camera's node started without its own name) share
parameter services and ~/ topics; the node says so in its log once DDS has shown it the other
(``CalibrationNode._check_unique_name``). The launch file takes the name (``node_name``)."""
from __future__ import annotations

import rclpy
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from crossi2p_ros.calibration_node import CalibrationNode, duplicate_name_warning

from .conftest import spin_until
from .test_node_camera_info import StubRuntime


def test_the_warning_names_the_node_what_breaks_and_how_to_rename():
    line = duplicate_name_warning("/crossi2p_calibration", 1)
    assert line.startswith("another node named /crossi2p_calibration in the ROS graph: ")
    assert "-r __node:=NAME" in line and "node_name:=NAME" in line
    assert duplicate_name_warning("/x", 2).startswith("2 other nodes named /x")


def test_a_second_node_of_the_same_name_is_warned_about_and_differently_named_ones_are_not(ros_context):
    """Over DDS: nodes in two contexts (two participants, as two processes). Same name: a warning
    from the node; another name: none after the node's checks are over."""
    listener = rclpy.create_node("rosout_listener", context=ros_context)
    warnings: list[tuple[str, str]] = []
    listener.create_subscription(Log, "/rosout", lambda m: warnings.append((m.name, m.msg)) if m.level == Log.WARN
                                 else None, QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
    for other_name, expect_warning in (("crossi2p_calibration", True), ("crossi2p_calibration_rear", False)):
        other_context = rclpy.Context()
        rclpy.init(context=other_context)
        other = rclpy.create_node(other_name, context=other_context)
        node = CalibrationNode(runtime=StubRuntime(), context=ros_context)
        executor = SingleThreadedExecutor(context=ros_context)
        for n in (node, listener):
            executor.add_node(n)
        warnings.clear()
        try:
            if expect_warning:
                assert spin_until(executor, lambda: any("in the ROS graph: nodes of one name" in msg
                                                        for _, msg in warnings), 30.0), warnings
                assert all(name == "crossi2p_calibration" for name, msg in warnings if "nodes of one name" in msg)
            else:
                spin_until(executor, lambda: node._name_timer.is_canceled(), 30.0)
                assert node._name_timer.is_canceled()
                assert not [msg for _, msg in warnings if "nodes of one name" in msg]
        finally:
            executor.remove_node(listener)
            executor.shutdown()
            node.destroy_node()
            other.destroy_node()
            other_context.try_shutdown()
    listener.destroy_node()
