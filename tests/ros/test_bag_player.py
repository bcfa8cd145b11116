"""crossi2p_ros.bag_player publishes a rosbag2's stored messages over DDS, each after /clock at its
log time, and leaves the recorded tf tree out unless asked; run alone it stops on SIGINT or SIGTERM
at any moment in one line (exit code 130 / 143)."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from crossi2p.camera import CameraModel
from crossi2p.datasets.rosbag2 import CameraInfoRecord, ImageRecord, PointCloudRecord, read_bag_messages, write_drive_bag
from crossi2p.geometry import make_transform
from crossi2p.image_encoding import message_to_rgb
from crossi2p.pointcloud2 import pointcloud2_to_xyzi
from crossi2p_ros.bag_player import BagPlayer, message_class
from crossi2p_ros.bag_player import main as player_main

from .conftest import signal_and_wait, spin_until

TOPICS = ("/camera/image_raw", "/camera/camera_info", "/lidar/points")


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    rng = np.random.default_rng(5)
    camera = CameraModel(np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]), 32, 24)
    images = [(0.1 * k, rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)) for k in range(4)]
    sweeps = [(0.1 * k + 0.02, rng.normal(size=(200, 4)).astype(np.float32)) for k in range(3)]
    bag = tmp_path_factory.mktemp("player") / "bag"
    write_drive_bag(bag, images, sweeps, camera, make_transform(np.eye(3), [0.1, 0.2, 0.3]))
    return bag


def test_message_class_maps_ros_type_names():
    assert message_class("sensor_msgs/msg/PointCloud2") is PointCloud2
    with pytest.raises(ValueError, match="no_such_msgs"):
        message_class("no_such_msgs/msg/Thing")


def test_plays_stored_messages_unchanged_in_log_time_order_after_their_clock(ros_context, small_bag):
    listener = rclpy.create_node("player_listener", context=ros_context)
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    got: list[tuple[str, object]] = []
    lock = threading.Lock()

    def keep(kind):
        def cb(msg):
            with lock:
                got.append((kind, msg))
        return cb

    for kind, msg_type, topic in (("image", Image, TOPICS[0]), ("info", CameraInfo, TOPICS[1]),
                                  ("points", PointCloud2, TOPICS[2]), ("clock", Clock, "/clock")):
        listener.create_subscription(msg_type, topic, keep(kind), qos)
    player_node = rclpy.create_node("player_under_test", context=ros_context)
    player = BagPlayer(player_node, small_bag)
    assert set(player.topics) == set(TOPICS)  # /tf_static (the ground truth) is not played by default
    assert len(player) == 4 + 4 + 3
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)
    executor.add_node(player_node)
    assert spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in player.publishers.values()))

    # One message at a time, each waited for, so the received order is the played order.
    def wait_for_message(_):
        n = sum(player.published.values())
        assert spin_until(executor, lambda: sum(k != "clock" for k, _ in got) >= n)

    assert player.play(rate=0, after_publish=wait_for_message, progress=False) == 11
    assert spin_until(executor, lambda: sum(k == "clock" for k, _ in got) >= 11)

    expected = list(read_bag_messages(small_bag, *TOPICS))
    data = [(k, m) for k, m in got if k != "clock"]
    assert [k for k, _ in data] == [{ImageRecord: "image", CameraInfoRecord: "info", PointCloudRecord: "points"}[type(r)]
                                    for r in expected]
    for (kind, msg), rec in zip(data, expected):
        assert msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec == pytest.approx(rec.stamp_s, abs=1e-9)
        if kind == "image":
            assert np.array_equal(message_to_rgb(msg), rec.image)
        elif kind == "points":
            assert np.array_equal(pointcloud2_to_xyzi(msg), rec.points)
    clocks = [m.clock.sec + 1e-9 * m.clock.nanosec for k, m in got if k == "clock"]
    assert clocks == pytest.approx([r.log_time_s for r in expected], abs=1e-9)
    executor.shutdown()


def test_missing_topic_is_refused_naming_the_topics_present(ros_context, small_bag):
    node = rclpy.create_node("player_bad_topic", context=ros_context)
    with pytest.raises(ValueError, match="/velodyne_points.*topics in the bag"):
        BagPlayer(node, small_bag, ["/velodyne_points"])
    with pytest.raises(ValueError, match="cannot be opened"):
        BagPlayer(node, small_bag.parent / "nope")


@pytest.mark.parametrize("flag, value", [("--rate", "-1"), ("--rate", "nan"), ("--wait-s", "-2")])
def test_a_negative_rate_or_wait_is_a_usage_error_in_one_line(small_bag, capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        player_main([str(small_bag), flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{flag}: expected a finite number >= 0, got {value}" in err, err


def test_plays_a_bare_mcap_file_like_its_recording(ros_context, small_bag, tmp_path):
    """A .mcap without metadata.yaml (a killed recorder, a copied file) plays the same messages."""
    import shutil

    bare = tmp_path / "copied.mcap"
    shutil.copy(next(small_bag.glob("*.mcap")), bare)
    node = rclpy.create_node("player_bare_mcap", context=ros_context)
    player, reference = BagPlayer(node, bare), BagPlayer(node, small_bag)
    assert player.topics == reference.topics and len(player) == len(reference) == 11
    assert [(m.topic, m.log_time_ns, m.raw) for m in player.messages()] == \
        [(m.topic, m.log_time_ns, m.raw) for m in reference.messages()]
    node.destroy_node()


# ---------------------------------------------------------------------------- python -m: signals
SIGNAL_CASES = [pytest.param(signal.SIGINT, signal.SIG_DFL, 130, "Ctrl-C", id="SIGINT"),
                pytest.param(signal.SIGINT, signal.SIG_IGN, 130, "Ctrl-C", id="SIGINT-background-job"),
                pytest.param(signal.SIGTERM, signal.SIG_DFL, 143, "SIGTERM", id="SIGTERM")]


class PlayerProcess:
    """``python -m crossi2p_ros.bag_player`` as a subprocess, started with SIGINT's action
    ``sigint`` (SIG_IGN: as a non-interactive shell starts a background job); stderr read as it comes."""

    def __init__(self, sigint, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "crossi2p_ros.bag_player", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
        self.out = {"stdout": "", "stderr": ""}
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s, n), daemon=True)
                         for s, n in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr"))]
        for r in self._readers:
            r.start()

    def _read(self, stream, name: str) -> None:
        for chunk in iter(lambda: stream.read(1), ""):
            with self._cond:
                self.out[name] += chunk
                self._cond.notify_all()

    def wait_for_played(self, count: int, timeout_s: float) -> bool:
        """Block until tqdm's ``play`` bar shows at least ``count`` messages (or the process ended)."""
        def reached() -> bool:
            shown = [int(m.group(1)) for m in re.finditer(r"play:.*?\| *(\d+)/\d+ \[", self.out["stderr"])]
            return bool(shown) and max(shown) >= count

        with self._cond:
            return self._cond.wait_for(lambda: reached() or self.proc.poll() is not None, timeout_s) and reached()

    def text(self) -> str:
        return self.out["stdout"] + self.out["stderr"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("moment", ["importing", "waiting for subscribers", "playing"])
@pytest.mark.parametrize("sig, sigint, code, name", SIGNAL_CASES)
def test_player_stops_on_sigint_or_sigterm_at_any_moment_in_one_line(small_bag, ros_context, moment, sig, sigint,
                                                                     code, name):
    """It used to die with ``RCLError: publisher's context is invalid`` (exit 1) on SIGTERM, and on
    SIGINT as a background job (rclpy's handlers shut the context down under the publishing
    loop), and with a KeyboardInterrupt traceback on Ctrl-C while importing."""
    args = [str(small_bag), "--rate", "0.02"]            # 0.3 s of bag: 15 s to play
    args += ["--wait-s", "120"] if moment == "waiting for subscribers" else ["--wait-s", "0"]
    player = PlayerProcess(sigint, *args)
    try:
        if moment == "importing":                        # the imports take about a second
            time.sleep(0.5)
        elif moment == "waiting for subscribers":        # its publishers are up: it waits for subscribers
            watcher = rclpy.create_node("player_watcher", context=ros_context)
            executor = SingleThreadedExecutor(context=ros_context)
            executor.add_node(watcher)
            assert spin_until(executor, lambda: watcher.count_publishers(TOPICS[2]) > 0
                              or player.proc.poll() is not None, 60.0), player.text()
            executor.shutdown()
        else:
            assert player.wait_for_played(2, 60.0), player.text()
        code_got = signal_and_wait(player.proc, sig, 30.0, player._readers, player.text, "the bag player")
    finally:
        player.kill()
    out = player.text()
    assert code_got == code, f"{name} while {moment}: exit code {code_got}\n{out}"
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    lines = [line for line in player.out["stderr"].replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("play:")]
    assert len(lines) == 1 and lines[0].startswith(f"bag_player: interrupted ({name})"), out
    if moment == "playing":
        assert re.fullmatch(rf"bag_player: interrupted \({name}\) after \d+ of 11 messages", lines[0]), lines


def test_ros_args_remap_the_played_topics(ros_context, small_bag):
    """``--ros-args -r FROM:=TO`` after the player's own flags: the bag's camera topics come out
    under the names a second camera's node listens to (the LiDAR's unchanged)."""
    node = rclpy.create_node("remap_listener", context=ros_context)
    got = {"/front/image_raw": 0, "/lidar/points": 0}
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "/front/image_raw", lambda m: got.__setitem__("/front/image_raw",
                                                                                   got["/front/image_raw"] + 1), qos)
    node.create_subscription(PointCloud2, "/lidar/points", lambda m: got.__setitem__("/lidar/points",
                                                                                      got["/lidar/points"] + 1), qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    proc = subprocess.Popen([sys.executable, "-m", "crossi2p_ros.bag_player", str(small_bag), "--rate", "0",
                             "--topics", "/camera/image_raw", "/lidar/points", "--wait-s", "20",
                             "--ros-args", "-r", "/camera/image_raw:=/front/image_raw"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert spin_until(executor, lambda: got["/front/image_raw"] == 4 and got["/lidar/points"] == 3
                          or proc.poll() not in (None, 0), 60.0), (got, proc.poll())
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert got == {"/front/image_raw": 4, "/lidar/points": 3}
    finally:
        if proc.poll() is None:
            proc.kill()
        executor.shutdown()
        node.destroy_node()
