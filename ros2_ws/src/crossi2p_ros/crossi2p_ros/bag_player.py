"""Play a rosbag2 over DDS with /clock, without ``ros2 bag`` (which the PyPI wheels lack).

The bag is read with rosbags (as the offline evaluator reads it) and each message is published,
in log-time order, on its own topic with its own type (``sensor_msgs/msg/Image`` ->
``sensor_msgs.msg.Image``), as the CDR bytes stored in the bag (no decode / re-encode), unless
a caller replaces it. Before each message, ``rosgraph_msgs/msg/Clock`` carrying the message's
log time is published on /clock, so nodes with ``use_sim_time`` see bag time.

Pacing is the caller's: ``play`` sleeps to keep ``rate`` x bag speed (``rate`` 0: no sleeping)
and calls ``after_publish`` after each message, which may block (the evaluator waits there
until the calibration node has handled the message, ``crossi2p-evaluate-bag --pacing node``).

Run alone (a small ``ros2 bag play --clock``):
``python -m crossi2p_ros.bag_player BAG [--rate R] [--topics T ...] [--ros-args -r FROM:=TO ...]`` (the
remaps rename the played topics). SIGINT and SIGTERM stop it at any moment (while importing,
waiting for subscribers or playing; SIGINT also as a background job, started with SIGINT ignored)
with one line on stderr and exit code 130 (SIGINT) or 143
(SIGTERM), no traceback (``crossi2p.interrupt``: it installs no rclpy signal handlers, which would
shut its context down under the publishing loop).
"""
from __future__ import annotations

if __name__ == "__main__":  # python -m: a signal during the imports below (about a second) ends it in one line
    from crossi2p.startup_signals import exit_at_once_on_termination_signals

    exit_at_once_on_termination_signals(prog="bag_player")

import importlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from crossi2p.cli import ArgumentParser
from crossi2p.datasets.rosbag2 import open_bag
from crossi2p.interrupt import exit_130_on_ctrl_c, ignore_termination_signals, interrupt_exit_code, interrupt_name

DEFAULT_EXCLUDED = ("/tf_static", "/tf")
"""Not played by default: a recorded tf tree (the ground truth) would collide with the node's output."""
ACK_TIMEOUT_S = 5.0
"""After the last message, seconds the player waits at most for its subscribers to acknowledge
everything (reliable QoS): a node destroyed with messages still in flight loses them."""


@dataclass(frozen=True)
class BagMessage:
    """One stored message."""

    topic: str
    msgtype: str
    """ROS type name, ``package/msg/Name``."""
    log_time_ns: int
    raw: bytes
    """CDR bytes as stored (with the encapsulation header), publishable as they are."""


def message_class(msgtype: str):
    """The rclpy message class of a ROS type name (``sensor_msgs/msg/Image``); ValueError if absent."""
    package, kind, name = (msgtype.split("/") + ["", ""])[:3]
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"message type {msgtype}: no Python module {package}.{kind} with {name} "
                         f"is installed") from None


class BagPlayer:
    """Publishes a bag's messages from ``node`` (see module docstring).

    Args:
        node: the node that owns the publishers (it needs no spinning to publish).
        bag: rosbag2 folder (MCAP or sqlite3) or .mcap file (``crossi2p.datasets.rosbag2.open_bag``).
        topics: topics to play (default: every topic except ``DEFAULT_EXCLUDED``).
        qos: QoS of the data publishers (default reliable, depth 100).
    """

    def __init__(self, node: Node, bag: str | Path, topics: Sequence[str] | None = None,
                 qos: QoSProfile | None = None):
        self.bag = Path(bag)
        reader = open_bag(self.bag)  # ValueError naming the bag
        try:
            present = {c.topic: c.msgtype for c in reader.connections}
            self.message_counts = {t: info.msgcount for t, info in reader.topics.items()}
        finally:
            reader.close()
        if topics is None:
            topics = [t for t in present if t not in DEFAULT_EXCLUDED]
        missing = [t for t in topics if t not in present]
        if missing:
            raise ValueError(f"bag {self.bag}: topics {missing} not found; topics in the bag: {sorted(present)}")
        self.topics = {t: present[t] for t in topics}
        qos = qos or QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node = node
        self.publishers = {t: node.create_publisher(message_class(msgtype), t, qos)
                           for t, msgtype in self.topics.items()}
        self.clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10))
        self.published = dict.fromkeys(self.topics, 0)
        """Messages published so far, per topic."""

    def __len__(self) -> int:
        return sum(self.message_counts.get(t, 0) for t in self.topics)

    def messages(self) -> Iterator[BagMessage]:
        """The played topics' messages in log-time order (read lazily)."""
        reader = open_bag(self.bag)
        try:
            connections = [c for c in reader.connections if c.topic in self.topics]
            for conn, log_ns, raw in reader.messages(connections=connections):
                yield BagMessage(conn.topic, conn.msgtype, log_ns, bytes(raw))
        finally:
            reader.close()

    def publish_clock(self, time_ns: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(time_ns), 1_000_000_000)
        self.clock_pub.publish(msg)

    def publish(self, message: BagMessage, replacement=None) -> None:
        """/clock at the message's log time, then the message (or ``replacement``: an rclpy message
        of the topic's type, or CDR bytes)."""
        self.publish_clock(message.log_time_ns)
        self.publishers[message.topic].publish(message.raw if replacement is None else replacement)
        self.published[message.topic] += 1

    def play(self, rate: float = 1.0,
             rewrite: Callable[[BagMessage], object] | None = None,
             after_publish: Callable[[BagMessage], bool | None] | None = None,
             progress: bool = True) -> int:
        """Publish every message; returns how many were published.

        Args:
            rate: bag seconds per wall second (0: as fast as ``after_publish`` lets it).
            rewrite: ``rewrite(message)`` returns a replacement to publish, or None to keep it.
            after_publish: called after each message; may block (pacing); returning False stops.
        """
        count = 0
        last_log_ns = last_wall = None
        bar = tqdm(total=len(self), desc="play", unit="msg", disable=not progress)
        try:
            for message in self.messages():
                if rate > 0 and last_log_ns is not None:
                    wait = (message.log_time_ns - last_log_ns) * 1e-9 / rate - (time.monotonic() - last_wall)
                    if wait > 0:
                        time.sleep(wait)  # playback speed, not a synchronisation
                self.publish(message, rewrite(message) if rewrite is not None else None)
                last_log_ns, last_wall = message.log_time_ns, time.monotonic()
                count += 1
                bar.update(1)
                if after_publish is not None and after_publish(message) is False:
                    break
        finally:
            bar.close()
        return count


@exit_130_on_ctrl_c("bag_player", "interrupted (Ctrl-C) while starting")  # a signal before main's own handling
def main(argv: list[str] | None = None) -> int:
    """``python -m crossi2p_ros.bag_player``: 0 when the bag was played, 1 with a one-line error, 2
    for a usage error (a flag's value out of its range), 130 / 143 after SIGINT / SIGTERM (one line
    saying how far it got)."""
    import rclpy
    from rclpy.duration import Duration
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    p = ArgumentParser(prog="python -m crossi2p_ros.bag_player", description=__doc__.split("\n\n")[0],
                       epilog="ROS arguments after --ros-args apply to the player's node, e.g. topic remaps "
                              "(--ros-args -r /camera/image_raw:=/front/image_raw) to replay a recording under the "
                              "names another rig or a second calibration node listens to.")
    p.add_argument("bag", type=Path, help="rosbag2 folder or .mcap file")
    p.add_argument("--rate", type=float, default=1.0,
                   help="playback speed factor (0: as fast as possible; default %(default)s)")
    p.add_argument("--topics", nargs="+", help=f"topics to play (default: all but {' '.join(DEFAULT_EXCLUDED)})")
    p.add_argument("--wait-s", type=float, default=10.0,
                   help="wait up to this long for a subscriber on every played topic before the first message "
                        "(DDS matches them a moment after start: without it the first messages are lost; 0: no wait)")
    full_argv = ["bag_player", *(sys.argv[1:] if argv is None else argv)]
    args = p.parse_args(remove_ros_args(full_argv)[1:])
    for flag, value in (("--rate", args.rate), ("--wait-s", args.wait_s)):
        if not (math.isfinite(value) and value >= 0):
            p.error(f"{flag}: expected a finite number >= 0, got {value:g}")   # exit 2, one line
    node = player = None
    n, code, message = 0, 0, ""
    # SIGINT and SIGTERM arrive as KeyboardInterrupt (exit_130_on_ctrl_c: termination_signals_as_interrupt)
    try:
        # no rclpy signal handlers: they would shut the context down under the publishing loop
        rclpy.init(args=full_argv, signal_handler_options=SignalHandlerOptions.NO)   # --ros-args: remaps
        node = rclpy.create_node("crossi2p_bag_player")
        player = BagPlayer(node, args.bag, args.topics)
        deadline = time.monotonic() + max(args.wait_s, 0.0)
        while not all(pub.get_subscription_count() > 0 for pub in player.publishers.values()):
            if time.monotonic() >= deadline:
                if args.wait_s > 0:
                    alone = [t for t, pub in player.publishers.items() if pub.get_subscription_count() == 0]
                    print(f"bag_player: no subscriber on {alone} after {args.wait_s:g} s; playing anyway",
                          file=sys.stderr)
                break
            time.sleep(0.05)
        n = player.play(args.rate)
        # played as fast as possible, the last messages are still in flight when the node goes
        # (seen in full test runs: 2 of 4 images lost); delivered before it does
        for pub in player.publishers.values():
            pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
        message = f"published {n} messages from {args.bag}"
    except ValueError as exc:
        code, message = 1, f"bag_player: error: {exc}"
    except KeyboardInterrupt:
        code = interrupt_exit_code()
        done = (f"after {sum(player.published.values())} of {len(player)} messages" if player is not None
                else "before playing")
        message = f"bag_player: interrupted ({interrupt_name()}) {done}"
    finally:
        ignore_termination_signals()  # a second signal does not break the clean-up
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    print(message, file=sys.stdout if code == 0 else sys.stderr)  # still ignoring signals
    return code


if __name__ == "__main__":
    sys.exit(main())
