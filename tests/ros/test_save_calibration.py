"""``python -m crossi2p_ros.save_calibration``: the node's ``~/save_calibration`` without the ``ros2`` CLI.

Over DDS against a real ``calibration_node`` subprocess (a stub model): with nothing that passed
its checks yet the node saves nothing and the command exits 3 with the node's reason; a node that
is not there is exit 1 in one line. The saving case (exit 0, every rig camera's file) is in
tests/ros/test_node_rig.py.
"""
from __future__ import annotations

import subprocess
import sys

from .test_node_signals import quick_card, start_node, stub_args  # noqa: F401 (fixtures)

COMMAND = [sys.executable, "-m", "crossi2p_ros.save_calibration"]


def test_nothing_to_save_is_exit_3_with_the_nodes_reason_and_no_node_is_exit_1(start_node, quick_card,  # noqa: F811
                                                                                tmp_path):
    node = start_node(*stub_args(quick_card), "-p", f"save_path:={tmp_path / 'calib.yaml'}")
    assert node.wait_for(": ready", 60.0), node.output()
    out = subprocess.run([*COMMAND, "--timeout-s", "30"], capture_output=True, text=True, timeout=90.0)
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("save_calibration: nothing saved: no estimate has passed its checks yet")
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "calib.yaml").exists()
    assert_no_node_is_exit_1_and_no_time_exit_2(
        COMMAND, "save_calibration: error: no service /no_such_node/save_calibration within 1 s")


def assert_no_node_is_exit_1_and_no_time_exit_2(command: list[str], no_node: str) -> None:
    """``command --node /no_such_node``: exit 1, one line starting ``no_node`` and saying what to
    check; ``--timeout-s 0``: a usage error, exit 2."""
    out = subprocess.run([*command, "--node", "/no_such_node", "--timeout-s", "1"], capture_output=True, text=True,
                         timeout=60.0)
    assert out.returncode == 1 and out.stderr.strip() == (
        f"{no_node} (is the node running, under that name and ROS_DOMAIN_ID? --node NAME)"), out.stderr
    out = subprocess.run([*command, "--timeout-s", "0"], capture_output=True, text=True, timeout=60.0)
    assert out.returncode == 2 and "--timeout-s: expected > 0 seconds, got 0.0" in out.stderr
