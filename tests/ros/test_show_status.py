"""``python -m crossi2p_ros.show_status``: the node's /diagnostics and /tf_static without the ``ros2`` CLI.

Over DDS against a real ``calibration_node`` subprocess (a stub model): its status line and
values are printed, exit 0; a node that is not there is exit 1 in one line; a bad flag exit 2.
"""
from __future__ import annotations

import subprocess
import sys

from .test_node_signals import quick_card, start_node, stub_args  # noqa: F401 (fixtures)
from .test_save_calibration import assert_no_node_is_exit_1_and_no_time_exit_2

COMMAND = [sys.executable, "-m", "crossi2p_ros.show_status"]


def test_the_nodes_status_is_printed_and_no_node_is_exit_1_in_one_line(start_node, quick_card):  # noqa: F811
    node = start_node(*stub_args(quick_card))
    assert node.wait_for(": ready", 60.0), node.output()
    out = subprocess.run([*COMMAND, "--timeout-s", "30"], capture_output=True, text=True, timeout=90.0)
    assert out.returncode == 0, out.stderr
    first, *values = out.stdout.splitlines()
    assert first.startswith("crossi2p_calibration: camera-LiDAR extrinsic: WARN: "), first   # not converged yet
    keys = {line.split()[0] for line in values if line.startswith("  ")}
    assert {"state", "images_in", "pairs_in", "refinements_run", "refinement_pairs_unsynchronised"} <= keys, keys
    assert_no_node_is_exit_1_and_no_time_exit_2(
        COMMAND, "show_status: error: no /diagnostics status 'no_such_node: camera-LiDAR extrinsic' within 1 s")
