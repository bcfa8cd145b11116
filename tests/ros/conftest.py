"""Fixtures for tests that run real rclpy nodes over DDS (Fast DDS on loopback).

Each pytest process takes its own ROS_DOMAIN_ID so that parallel runs on one machine do not
hear each other.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Callable

import pytest

os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402


def warning_listener(context, node_name: str | None = None):
    """A node that collects the WARN records on /rosout (of ``node_name`` only, when given), as any
    log consumer reads them: ``(listener node, list the records are appended to)``."""
    from rcl_interfaces.msg import Log
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    listener = rclpy.create_node("rosout_listener", context=context)
    records: list = []
    listener.create_subscription(
        Log, "/rosout", lambda m: records.append(m) if m.level == Log.WARN and node_name in (None, m.name) else None,
        QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    return listener, records


@pytest.fixture
def ros_context():
    """An initialised rclpy context, shut down after the test."""
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


def spin_until(executor: SingleThreadedExecutor, predicate, deadline_s: float = 20.0) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``deadline_s`` passes (not a timing test:
    the deadline only bounds a wait for DDS discovery and delivery)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
        if predicate():
            return True
    return predicate()


def write_simulated_bag(folder, seed: int, frames: int, preset: str = "small"):
    """A deterministic simulated drive written as a rosbag2 ``folder/drive`` (ground truth on
    /tf_static); returns ``(bag_path, drive)``."""
    from crossi2p.datasets.rosbag2 import write_drive_bag
    from crossi2p_training.sim import SimConfig, simulate_drive

    drive = simulate_drive(SimConfig.preset(preset), seed=seed, frames=frames)
    bag = folder / "drive"
    write_drive_bag(bag, drive.camera_frames, drive.lidar_sweeps, drive.camera, drive.T_cam_lidar)
    return bag, drive


def signal_and_wait(proc: subprocess.Popen, sig: int, timeout_s: float, readers: list[threading.Thread],
                    output: Callable[[], str], what: str) -> int:
    """Send ``sig`` to ``proc`` and return its exit code once it ended and its output readers
    finished; a process still running ``timeout_s`` after the signal is killed and the test fails
    with ``what`` and the process's output."""
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{what} still running {timeout_s:g} s after {signal.Signals(sig).name}:\n{output()}")
    for r in readers:
        r.join(timeout=5.0)
    return code
