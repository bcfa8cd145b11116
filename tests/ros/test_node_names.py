"""Two calibration nodes of one name (a second camera's node started without its own name) share
parameter services and ~/ topics; the node says so in its log once DDS has shown it the other
(``CalibrationNode._check_unique_name``). The launch file takes the name (``node_name``)."""
from __future__ import annotations

import rclpy
from rclpy.executors import SingleThreadedExecutor

from crossi2p_ros.calibration_node import NAME_CHECK_PERIOD_S, CalibrationNode, duplicate_name_warning

from .conftest import spin_until, warning_listener
from .test_node_camera_info import StubRuntime


def test_the_warning_names_the_node_what_breaks_and_how_to_rename():
    line = duplicate_name_warning("/crossi2p_calibration", 1)
    assert line.startswith("another node named /crossi2p_calibration in the ROS graph: ")
    assert "-r __node:=NAME" in line and "node_name:=NAME" in line
    assert duplicate_name_warning("/x", 2).startswith("2 other nodes named /x")


def test_a_second_node_of_the_same_name_is_warned_about_and_differently_named_ones_are_not(ros_context):
    """Over DDS: nodes in two contexts (two participants, as two processes). The calibration node
    runs alone first; then another node starts with its name: the running node is told (not only a
    newcomer); another name: nothing."""
    listener, records = warning_listener(ros_context)
    for other_name, expect_warning in (("crossi2p_calibration", True), ("crossi2p_calibration_rear", False)):
        node = CalibrationNode(runtime=StubRuntime(), context=ros_context)
        executor = SingleThreadedExecutor(context=ros_context)
        for n in (node, listener):
            executor.add_node(n)
        spin_until(executor, lambda: False, 1.5 * NAME_CHECK_PERIOD_S)    # checked alone at least once
        records.clear()
        other_context = rclpy.Context()
        rclpy.init(context=other_context)
        other = rclpy.create_node(other_name, context=other_context)
        told = lambda: [m for m in records if "in the ROS graph: nodes of one name" in m.msg]  # noqa: E731
        try:
            if expect_warning:
                assert spin_until(executor, lambda: bool(told()), 30.0), [m.msg for m in records]
                assert all(m.name == "crossi2p_calibration" for m in told())
            else:                                          # a few checks, each seeing the other node
                spin_until(executor, lambda: False, 2.5 * NAME_CHECK_PERIOD_S)
                assert "/crossi2p_calibration_rear" in [f"{ns.rstrip('/')}/{n}" for n, ns in
                                                        node.get_node_names_and_namespaces()]
                assert not told()
        finally:
            executor.remove_node(listener)
            executor.shutdown()
            node.destroy_node()
            other.destroy_node()
            other_context.try_shutdown()
    listener.destroy_node()
