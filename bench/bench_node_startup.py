"""Start-up and shutdown of the calibration node, seen from another process.

    .venv/bin/python bench/bench_node_startup.py               # 3 starts
    .venv/bin/python bench/bench_node_startup.py --runs 5 --wait-ready

Per run: the ``calibration_node`` console script is started as a child process (default parameters:
the shipped model); this process, already initialised, measures from the child's start the time
until all three of the node's subscriptions (image, CameraInfo, points) are matched over DDS and
until its first /diagnostics (whose ``state`` says ``loading model`` while the model loads in the
background), then, with ``--wait-ready``, until the ``model`` value ends in ``ready``. Then SIGINT
and the time to the child's exit and its exit code. Figures, not assertions: they depend on the
machine and its load.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

NODE = Path(sys.executable).parent / "calibration_node"


def measure_once(executor, publishers, diagnostics: list, wait_ready: bool, timeout_s: float) -> dict:
    """One start, measured (seconds from the child's start), then SIGINT. First waits until the
    previous run's node is gone from the graph (its subscriptions unmatched): DDS forgets a dead
    participant only after a while, and a stale match would read as a start-up of 0.01 s."""
    gone = time.monotonic()
    while any(p.get_subscription_count() > 0 for p in publishers) and time.monotonic() - gone < timeout_s:
        executor.spin_once(timeout_sec=0.05)
    diagnostics.clear()
    t0 = time.monotonic()
    child = subprocess.Popen([str(NODE)], stderr=subprocess.DEVNULL)
    out = {"subscriptions_up_s": None, "first_diagnostics_s": None, "first_state": None, "model_ready_s": None}
    while time.monotonic() - t0 < timeout_s and child.poll() is None:
        executor.spin_once(timeout_sec=0.01)
        now = time.monotonic() - t0
        if out["subscriptions_up_s"] is None and all(p.get_subscription_count() > 0 for p in publishers):
            out["subscriptions_up_s"] = now
        if out["first_diagnostics_s"] is None and diagnostics:
            out["first_diagnostics_s"], out["first_state"] = diagnostics[0][0] - t0, diagnostics[0][1].get("state")
        if wait_ready and out["model_ready_s"] is None:
            ready = [t for t, v in diagnostics if v.get("model", "").endswith("ready")]
            out["model_ready_s"] = ready[0] - t0 if ready else None
        if out["subscriptions_up_s"] is not None and out["first_diagnostics_s"] is not None \
                and (not wait_ready or out["model_ready_s"] is not None):
            break
    start = time.monotonic()
    child.send_signal(signal.SIGINT)
    out["exit_code"] = child.wait(timeout=60)
    out["exit_after_sigint_s"] = time.monotonic() - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--wait-ready", action="store_true", help="also wait for the model to be loaded")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="longest wait per run")
    args = parser.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node("startup_probe")
    publishers = [node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data),
                  node.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data),
                  node.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)]
    diagnostics: list = []
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.append(
        (time.monotonic(), {kv.key: kv.value for kv in m.status[0].values})), 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        for run in range(args.runs):
            r = measure_once(executor, publishers, diagnostics, args.wait_ready, args.timeout_s)

            def fmt(v):
                return "n/a" if v is None else f"{v:.2f} s"

            ready = f", model ready {fmt(r['model_ready_s'])}" if args.wait_ready else ""
            print(f"run {run + 1}: subscriptions up {fmt(r['subscriptions_up_s'])}, first diagnostics "
                  f"{fmt(r['first_diagnostics_s'])} (state '{r['first_state']}'){ready}; SIGINT -> exit code "
                  f"{r['exit_code']} after {r['exit_after_sigint_s']:.2f} s")
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
