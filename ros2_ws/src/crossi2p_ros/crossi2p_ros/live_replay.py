"""Live replay evaluation: a rosbag2 played over DDS into the real calibration node.

``crossi2p-evaluate-bag --mode live``. In one process, on one rclpy context:

- the calibration node (``CalibrationNode``, ``use_sim_time: true``, ``qos: reliable``,
  ``publish_frame_estimates: true``) spins in its own executor thread;
- a replay node plays the bag's camera, CameraInfo and LiDAR topics with /clock
  (``crossi2p_ros.bag_player``) and records what the node publishes: ``~/frame_estimates``
  (per pair), ``~/pose``, /tf_static and /diagnostics, spun in a second executor thread.

In-process rather than a subprocess of the ``calibration_node`` console script: the node can use
an onnxruntime session that is already loaded (creating one takes about 0.4 s with the compact graph, 17-60 s with the former one), and pacing reads the
node's own counters (``CalibrationNode.wait_until_idle``) instead of a side channel; the data
still goes over DDS, serialised, as between two processes.

Pacing:

- ``node`` (default, deterministic): after each message the player waits until the node has
  handled it and finished every pair it produced. The node then sees the bag's messages in the
  order the offline evaluator reads them and never drops a pair as busy, so its per-frame and fused
  estimates equal the offline ones (the parity test pins this to 1e-9). ``rate`` > 0 also caps the
  speed at ``rate`` x bag time.
- ``clock``: the bag is played at ``rate`` x real time regardless of the node, as ``ros2 bag play``
  would; the node drops pairs that arrive while it is busy (counted as ``pairs_dropped_busy``), so
  results depend on the CPU.

The bag's /tf_static (the ground truth) is not played: it would collide with the node's output.

Ctrl-C (KeyboardInterrupt: this process installs no rclpy signal handlers, its context is not the
default one) stops the replay: the frame estimates the node published so far are collected, the
node is stopped (waiting at most ``INTERRUPT_WORKER_TIMEOUT_S`` for each), and they are returned
with ``interrupted`` set.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from tf2_msgs.msg import TFMessage

from crossi2p.datasets.rosbag2 import (CameraInfoRecord, ImageRecord, bag_topics, read_bag_messages,
                                       recorded_image_topic)
from crossi2p.fusion import FusionConfig
from crossi2p.geometry import invert_transform, transform_from_tq
from crossi2p.metrics import registration_error
from crossi2p.pointcloud2 import pointcloud2_to_xyzi, rclpy_pointcloud2
from crossi2p.runtime import CalibrationRuntime

from .bag_player import BagMessage, BagPlayer
from .calibration_node import LATCHED, CalibrationNode
from .frame_report import FRAME_STATUS_NAME, FrameReport
from .pipeline import CameraFrame, LidarSweep
from .replay_types import Knock, ReplayResult, knocked_points

Pacing = Literal["node", "clock"]
NODE_NAME = "crossi2p_calibration"
INTERRUPT_WORKER_TIMEOUT_S = 1.0
"""After Ctrl-C, the longest wait for the frame estimates the node already published to arrive, and
for its frame in progress to end (then it is left behind)."""


class LiveReplayError(RuntimeError):
    """The node did not keep up with the replay (a wait for it timed out)."""


@dataclass
class LiveReplayConfig:
    """How the bag is played into the node."""

    pacing: Pacing = "node"
    """``node``: wait for the node after each message (deterministic); ``clock``: play at ``rate``."""
    rate: float | None = None
    """Bag seconds per wall second; 0: no limit. None: 0 with ``node`` pacing, 1.0 with ``clock``."""
    timeout_s: float = 120.0
    """Longest wait for the node to handle one message (``node``) or to drain at the end."""
    slop_s: float = 0.05
    """The node's ``pairing.slop_s``."""
    discovery_timeout_s: float = 30.0
    """Longest wait for the player and the node to discover each other over DDS."""
    domain_id: int | None = None
    """ROS domain of the replay (None: ROS_DOMAIN_ID of the environment)."""
    refine: bool = True
    """The node's ``refinement_enabled`` (``crossi2p-evaluate-bag --no-refine`` turns it off)."""
    travel_check: bool = True
    """The node's ``travel_check.enabled`` (``--no-travel-check`` turns it off)."""

    @property
    def effective_rate(self) -> float:
        return self.rate if self.rate is not None else (0.0 if self.pacing == "node" else 1.0)


@dataclass
class LiveRecording:
    """What the node published during the replay."""

    frame_reports: list[FrameReport] = field(default_factory=list)
    frame_report_stamps_s: list[float] = field(default_factory=list)
    """Header stamps of the frame reports: the node's clock (bag time with use_sim_time)."""
    poses: list[PoseWithCovarianceStamped] = field(default_factory=list)
    tf_static: list[TFMessage] = field(default_factory=list)
    diagnostics: list[DiagnosticArray] = field(default_factory=list)
    final_status: dict[str, str] = field(default_factory=dict)
    """The node's diagnostics values after the replay."""
    messages_published: int = 0

    def tf_static_T_cam_lidar(self) -> np.ndarray | None:
        """T_cam_lidar of the node's last /tf_static message (parent LiDAR, child camera: inverted)."""
        for msg in reversed(self.tf_static):
            for tf in msg.transforms:
                t, r = tf.transform.translation, tf.transform.rotation
                return invert_transform(transform_from_tq([t.x, t.y, t.z], [r.x, r.y, r.z, r.w]))
        return None

    def pose_T_cam_lidar(self) -> np.ndarray | None:
        """T_cam_lidar of the node's last ~/pose message."""
        return pose_msg_T_cam_lidar(self.poses[-1]) if self.poses else None


def pose_msg_T_cam_lidar(msg: PoseWithCovarianceStamped) -> np.ndarray:
    """(4, 4) T_cam_lidar carried by one of the node's ~/pose messages."""
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    return transform_from_tq([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])


@dataclass
class LiveReplayResult(ReplayResult):
    recording: LiveRecording = field(default_factory=LiveRecording)
    config: LiveReplayConfig = field(default_factory=LiveReplayConfig)


class _Recorder:
    """Subscriptions to the node's outputs; ``wait_for_frames`` blocks until n reports arrived."""

    def __init__(self, node, recording: LiveRecording):
        self.recording = recording
        self._cond = threading.Condition()
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.frame_sub = node.create_subscription(DiagnosticArray, f"/{NODE_NAME}/frame_estimates",
                                                  self._on_frame, reliable)
        node.create_subscription(PoseWithCovarianceStamped, f"/{NODE_NAME}/pose",
                                 lambda msg: self._append(recording.poses, msg), reliable)
        node.create_subscription(TFMessage, "/tf_static", lambda msg: self._append(recording.tf_static, msg), LATCHED)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)

    def _on_frame(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == FRAME_STATUS_NAME:
                report = FrameReport.from_values({kv.key: kv.value for kv in status.values})
                with self._cond:
                    self.recording.frame_reports.append(report)
                    self.recording.frame_report_stamps_s.append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)
                    self._cond.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if any(s.name.startswith(NODE_NAME) for s in msg.status):
            self.recording.diagnostics.append(msg)

    def _append(self, messages: list, msg) -> None:
        with self._cond:
            messages.append(msg)
            self._cond.notify_all()

    def wait_for_frames(self, n: int, timeout_s: float, poses: int = 0, tf_static: int = 0) -> bool:
        """Block until ``n`` frame reports, ``poses`` ~/pose and ``tf_static`` /tf_static messages
        arrived (the node publishes a frame's report before its estimate: waiting for the reports
        alone raced the last estimate)."""
        rec = self.recording
        with self._cond:
            return self._cond.wait_for(lambda: len(rec.frame_reports) >= n and len(rec.poses) >= poses
                                       and len(rec.tf_static) >= tf_static, timeout_s)


def _node_parameters(topics: tuple[str, str, str], compressed: bool, slop_s: float,
                     fusion: FusionConfig | None, refine: bool = True, travel_check: bool = True) -> list[Parameter]:
    image_topic, info_topic, points_topic = topics
    fusion = fusion or FusionConfig()
    defaults = FusionConfig()  # values typed as declared (an int given for a float parameter is refused)
    return [Parameter(f"fusion.{f.name}", value=type(getattr(defaults, f.name))(getattr(fusion, f.name)))
            for f in dataclasses.fields(fusion)] + [Parameter("use_sim_time", value=True),
            Parameter("image_topic", value=image_topic), Parameter("compressed_image", value=compressed),
            Parameter("camera_info_topic", value=info_topic), Parameter("points_topic", value=points_topic),
            Parameter("qos", value="reliable"), Parameter("queue_depth", value=100),
            Parameter("pairing.slop_s", value=float(slop_s)),
            Parameter("max_points", value=10_000_000),  # the offline path keeps every point too
            Parameter("publish_frame_estimates", value=True), Parameter("refinement_enabled", value=refine),
            Parameter("travel_check.enabled", value=travel_check)]


def _wait_discovery(predicate, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise LiveReplayError(f"DDS discovery: {what} not matched within {timeout_s:.0f} s "
                                  "(ROS_DOMAIN_ID / ROS_LOCALHOST_ONLY / firewall?)")
        time.sleep(0.02)  # discovery polling, not a synchronisation of data


def image_topic_to_play(image_topic: str, present: dict[str, str]) -> tuple[str, bool]:
    """``(topic, compressed)``: the bag's image topic for ``image_topic`` and whether it carries
    sensor_msgs/CompressedImage (the node then subscribes with ``compressed_image:=true``).
    ``present``: the bag's ``{topic: type}``. ``/camera/image_raw`` finds
    ``/camera/image_raw/compressed`` when only that is recorded (as offline); a topic named with
    its suffix is taken as it is, by its type (one DDS participant cannot have a topic with two
    types: subscribing with Image to a CompressedImage topic stops the replay)."""
    image_topic = recorded_image_topic(image_topic, present)
    return image_topic, present.get(image_topic) == "sensor_msgs/msg/CompressedImage"


def replay_bag_live(bag: Path, runtime: CalibrationRuntime, T_gt: np.ndarray, topics: tuple[str, str, str],
                    config: LiveReplayConfig | None = None, knock: Knock | None = None,
                    max_frames: int | None = None, progress: bool = True,
                    fusion: FusionConfig | None = None) -> LiveReplayResult:
    """Play ``bag`` into the calibration node and turn what it publishes into a ``ReplayResult``
    (the same records as ``evaluate_bag.replay_bag``; see the module docstring).

    ``runtime`` is used by the node as it is (its RuntimeConfig applies); ``fusion`` becomes the
    node's ``fusion.*`` parameters (default: FusionConfig's defaults, as offline)."""
    config = config or LiveReplayConfig()
    image_topic, info_topic, points_topic = topics
    image_topic, compressed = image_topic_to_play(image_topic, bag_topics(bag))
    play_topics = (image_topic, info_topic, points_topic)
    result = LiveReplayResult(knock=knock, config=config)
    rec = result.recording

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=config.domain_id)
    node = io = player = recorder = None
    executors: list[SingleThreadedExecutor] = []
    threads: list[threading.Thread] = []
    try:
        node = CalibrationNode(runtime=runtime, context=context,
                               parameter_overrides=_node_parameters(play_topics, compressed, config.slop_s, fusion,
                                                                    config.refine, config.travel_check))
        io = rclpy.create_node("crossi2p_bag_replay", context=context)
        recorder = _Recorder(io, rec)
        player = BagPlayer(io, bag, play_topics,
                           qos=QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        for n in (node, io):
            ex = SingleThreadedExecutor(context=context)
            ex.add_node(n)
            executors.append(ex)
            threads.append(threading.Thread(target=ex.spin, name=f"spin_{n.get_name()}", daemon=True))
            threads[-1].start()
        _wait_discovery(lambda: all(p.get_subscription_count() > 0 for p in player.publishers.values())
                        and player.clock_pub.get_subscription_count() > 0
                        and recorder.frame_sub.get_publisher_count() > 0,
                        config.discovery_timeout_s, "the player and the calibration node")

        rewrite = None
        if knock is not None:
            def rewrite(message: BagMessage):
                if message.topic != points_topic:
                    return None
                msg = deserialize_message(message.raw, PointCloud2)
                stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                if stamp_s < knock.at_s:
                    return None
                out = rclpy_pointcloud2(knocked_points(pointcloud2_to_xyzi(msg), knock, T_gt), 0.0, "")
                out.header = msg.header
                return out

        def after_publish(message: BagMessage) -> bool:
            handled = sum(player.published.values())
            if config.pacing == "node" and not node.wait_until_idle(handled, config.timeout_s):
                raise LiveReplayError(f"the calibration node did not handle message {handled} ({message.topic} "
                                      f"at {message.log_time_ns * 1e-9:.3f} s) within {config.timeout_s:.0f} s")
            return max_frames is None or node.counters.frames_done < max_frames

        rec.messages_published = player.play(config.effective_rate, rewrite, after_publish, progress)
        if not node.wait_until_idle(rec.messages_published, config.timeout_s):
            raise LiveReplayError(f"the calibration node did not finish within {config.timeout_s:.0f} s "
                                  f"of the end of the bag")
        c = node.counters
        tf_static = c.tf_published if node.params.node.publish_on == "tf_static" else 0
        if not recorder.wait_for_frames(c.frames_done, config.timeout_s, c.poses_published, tf_static):
            raise LiveReplayError(f"received {len(rec.frame_reports)} of the node's {c.frames_done} frame "
                                  f"estimates, {len(rec.poses)} of its {c.poses_published} poses and "
                                  f"{len(rec.tf_static)} of its {tf_static} /tf_static messages within "
                                  f"{config.timeout_s:.0f} s")
        rec.final_status = {kv.key: kv.value for kv in node.diagnostics_status().values}
    except KeyboardInterrupt:  # Ctrl-C: what the node published so far is the result
        result.interrupted = True
        if node is not None:
            if recorder is not None:  # the frame estimates already published, still on their way (bounded)
                recorder.wait_for_frames(node.counters.frames_done, INTERRUPT_WORKER_TIMEOUT_S)
            rec.final_status = {kv.key: kv.value for kv in node.diagnostics_status().values}
            rec.messages_published = sum(player.published.values()) if player is not None else 0
    finally:
        for ex in executors:
            ex.shutdown()
        for th in threads:
            th.join(timeout=10.0)
        if node is not None:
            node.destroy_node(worker_timeout_s=INTERRUPT_WORKER_TIMEOUT_S if result.interrupted else 5.0)
        if io is not None:
            io.destroy_node()
        context.try_shutdown()

    for report in rec.frame_reports[:max_frames] if max_frames is not None else rec.frame_reports:
        result.add(report, T_gt)
    if result.frames and not result.interrupted:  # reading the bag again for overlays: not after Ctrl-C
        result.first_sample, result.last_sample = _samples_at(
            bag, topics, [result.frames[0], result.frames[-1]], knock, T_gt)
    return result


def _samples_at(bag: Path, topics, frames, knock: Knock | None, T_gt: np.ndarray) -> list[tuple | None]:
    """(CameraFrame, LidarSweep) of the given frame records, read back from the bag (report overlays)."""
    wanted = {(f.image_stamp_s, f.lidar_stamp_s) for f in frames}
    images, sweeps = {}, {}
    camera = None
    for r in read_bag_messages(bag, *topics):
        if isinstance(r, CameraInfoRecord):
            camera = r.camera
        elif isinstance(r, ImageRecord):
            if camera is not None and any(r.stamp_s == w[0] for w in wanted):
                images[r.stamp_s] = CameraFrame(r.image, camera, r.frame_id)
        elif any(r.stamp_s == w[1] for w in wanted):
            points = knocked_points(r.points, knock, T_gt) if knock is not None and r.stamp_s >= knock.at_s \
                else r.points
            sweeps[r.stamp_s] = LidarSweep(points, r.frame_id)
    return [(images[f.image_stamp_s], sweeps[f.lidar_stamp_s])
            if f.image_stamp_s in images and f.lidar_stamp_s in sweeps else None for f in frames]


def live_summary(result: LiveReplayResult) -> dict:
    """Figures only live mode has: what the node published, its counters, the pacing."""
    rec = result.recording
    out: dict = {"pacing": result.config.pacing, "rate": result.config.effective_rate,
                 "messages_published": rec.messages_published, "frame_estimates": len(rec.frame_reports),
                 "pose_messages": len(rec.poses), "tf_static_messages": len(rec.tf_static),
                 "diagnostics_messages": len(rec.diagnostics),
                 "node_counters": {k: rec.final_status.get(k) for k in (
                     "images_in", "camera_infos_in", "clouds_in", "bad_images", "bad_clouds", "pairs_in",
                     "pairs_used", "pairs_dropped_busy", "lidar_unmatched", "frames_invalid", "state")}}
    T_tf = rec.tf_static_T_cam_lidar()
    if T_tf is not None and result.frames:
        err = registration_error(T_tf, result.frames[-1].T_gt)
        out.update(tf_static_T_cam_lidar=T_tf.round(6).tolist(), tf_static_rte_m=err.rte_m,
                   tf_static_rre_geodesic_deg=err.rre_geodesic_deg)
    else:
        out.update(tf_static_T_cam_lidar=None, tf_static_rte_m=None, tf_static_rre_geodesic_deg=None)
    return out


def node_refinement_summary(result: LiveReplayResult) -> dict:
    """The refinement figures of a live run, read from what the node published: its diagnostics
    counters (``refinements_run``, ``refinements_accepted``, ``refinement_reason``, the
    ``refinement_pairs_*`` counts: ``pairs_left_out``, ``pairs_time_compensated``) and, when its
    published stage is ``refined``, the error of its last /tf_static against the ground truth;
    ``deskew`` from its diagnostics too.
    Keys as ``evaluate_bag``'s offline ``refined_*`` keys (``frames_to_refine`` stays null: the
    node does not report the pair count of its first accepted run)."""
    st = result.recording.final_status
    runs = int(st.get("refinements_run") or 0)
    out = {"deskew": {"mode": st.get("deskew") or "off", "sweeps_deskewed": int(st.get("sweeps_deskewed") or 0)},
           "refinement_runs": runs, "refinement_accepted_runs": int(st.get("refinements_accepted") or 0),
           "refinement_last_reason": st.get("refinement_reason") or (None if not runs else ""),
           "refinement_start": st.get("refinement_start_stage") or None,
           # the pairs its window left out, and those moved to the image's stamp: its diagnostics
           "pairs_left_out": {key: int(st.get(f"refinement_pairs_{name}") or 0) for key, name in (
               ("unsynchronised", "unsynchronised"), ("not_deskewed", "skewed"), ("not_keyframes", "not_keyframes"))},
           "pairs_time_compensated": int(st.get("refinement_pairs_time_compensated") or 0)}
    T_tf = result.recording.tf_static_T_cam_lidar()
    if st.get("stage") == "refined" and T_tf is not None and result.frames:
        err = registration_error(T_tf, result.frames[-1].T_gt)
        out.update(refined_rte_m=err.rte_m, refined_rre_geodesic_deg=err.rre_geodesic_deg,
                   refined_rre_euler_sum_deg=err.rre_euler_sum_deg, refined_T_cam_lidar=T_tf.round(6).tolist(),
                   estimate_kind="refined by the node (its /tf_static)",
                   estimate_T_cam_lidar=T_tf.round(6).tolist(), estimate_rte_m=err.rte_m,
                   estimate_rre_geodesic_deg=err.rre_geodesic_deg, estimate_rejected=False)
    return out
