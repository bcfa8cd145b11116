"""The online calibration node: camera + LiDAR in, T_cam_lidar on tf out.

ROS glue only. The maths lives in core: pairing (``crossi2p_ros.pairing``), the exported graph
(``crossi2p.runtime``), temporal fusion (``crossi2p.fusion``), overlay drawing and calibration
I/O. Run: ``ros2 run crossi2p_ros calibration_node --ros-args --params-file config/default.yaml``.

Threads: subscription callbacks only convert and queue; one worker thread runs the graph on the
newest pair. A pair that arrives while the worker is busy replaces the waiting one (the replaced
pair is counted as dropped), so a slow CPU never builds a backlog.

Prior and refinement (``crossi2p_ros.pipeline``): a prior (``prior_calibration`` YAML, or in
``refine`` mode the ``prior_source`` pose, bounded by ``prior_max_*``) rejects per-frame estimates
outside its bounds before fusion (reason ``outside prior: ...`` in ``~/frame_estimates`` and
``last_error``, counted in ``rejected_outside_prior``). After a pair, when the pipeline says a
refinement is due (``refinement_*`` parameters: first from the prior or the converged fusion, then
every ``refinement_every_frames`` pairs over the last ``refinement_window_frames``), the same worker
thread runs it (seconds; meanwhile the newest pair waits, older ones are counted as dropped). An
accepted refinement is published at once and stays the published value (refined > converged
fused); a rejected one is never published, its reason goes to diagnostics (``refinement_reason``).

Outputs: /tf_static (TRANSIENT_LOCAL) or /tf with parent = LiDAR frame and child = camera optical
frame (the message carries ``inv(T_cam_lidar)``, docs/conventions.md); ``~/pose``
(PoseWithCovarianceStamped of T_cam_lidar, i.e. the LiDAR origin in the camera frame, frame_id =
camera frame, stamp = the LiDAR stamp of the newest pair in the estimate, so a consumer can
measure the end-to-end latency; its covariance is the stage's own: the refinement's bootstrap
covariance, or the fusion's covariance of the mean); /diagnostics (``stage``: which stage the
published value comes from, ``refined``, ``fused`` or ``network`` (the running fused estimate before
convergence, ``publish_before_convergence``), ``none`` before any; and the last refinement's
figures); ``~/overlay`` (rate-limited Image); with
``publish_frame_estimates``, ``~/frame_estimates`` (one DiagnosticArray per processed pair,
``crossi2p_ros.frame_report``); services ``~/save_calibration`` and ``~/reset`` (std_srvs/Trigger).

Frames (``crossi2p.tf_tree``): the estimate is made in, and published under, one LiDAR frame
(``lidar_frame``, else the first cloud's frame_id) and one camera frame (``camera_frame``, else the
first image's). A cloud stamped with another frame (Ouster: ``os_lidar`` for ``os_sensor``) is
mapped into the LiDAR frame through /tf_static (always subscribed), or refused and counted in
``bad_clouds`` with the reason in ``last_error``; an image stamped with another frame is refused
likewise unless /tf_static says the two frames coincide (an image cannot be re-expressed).

Inputs that say nothing (``crossi2p_ros.input_watch``): an input with no message at all
``input_timeout_s`` after start-up is named in a warning with what the ROS graph has there (the
topic with another type and the parameter to set, a QoS the subscription refuses, similarly named
topics of the expected type), again every 3x that while nothing comes; an input that stops for
``input_timeout_s`` after some messages is named too (whether its publisher is still there). The rig's
cameras' topics (``rig_calibration``) are watched alike, their advice naming the rig file's entry. A bad input is logged at
most every 5 s per kind of problem (``crossi2p.log_once.ThrottleByKind``), so the first of each
distinct problem always is; ``last_error`` in diagnostics holds the newest.

Replay pacing: ``wait_until_idle`` blocks until the node has handled a number of sensor messages
and finished every pair they produced (``crossi2p-evaluate-bag --mode live --pacing node``).

Start-up and shutdown (``main``): publishers, subscriptions, services and timers come up first and
the model (the onnxruntime session: 0.4 s for the shipped graph, longer for a large one) loads on a daemon thread;
meanwhile diagnostics say ``loading model`` and the newest pair waits (older ones are counted in
``pairs_dropped_loading``). A model that cannot be loaded ends the process with a one-line error
and exit code 1. SIGINT and SIGTERM (rclpy's handlers shut the context down) end it with exit code
0 at any moment: while the model loads, in the middle of a frame and when idle. The loader and the
worker are daemon threads nobody waits for long: when one is still inside onnxruntime (which cannot
be interrupted, and which crashes the interpreter's normal exit), the process leaves with
``os._exit`` once the node and the context are shut down (``crossi2p.interrupt``).
"""
from __future__ import annotations

import array
import dataclasses
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from crossi2p import refinement
from crossi2p.calib_io import save_calibration_yaml, urdf_joint_snippet
from crossi2p.camera import CameraModel, UncalibratedCameraError, camera_from_camera_info, camera_info_key
from crossi2p.geometry import invert_transform, transform_from_tq, transform_to_tq
from crossi2p.interrupt import exit_now_if_work_in_flight, ignore_termination_signals, register_native_worker
from crossi2p.log_once import ThrottleByKind
from crossi2p.image_encoding import message_to_rgb, rgb_to_image_fields
from crossi2p.metrics import registration_error
from crossi2p.overlay import draw_projected_points
from crossi2p.pointcloud2 import (normalise_intensity, pointcloud2_to_array, stamp_to_sec_nanosec,
                                  structured_point_times, structured_to_xyzi)
from crossi2p.preprocess import detect_intensity_scale
from crossi2p.prior import Prior, load_prior, prior_frame_mismatch
from crossi2p.runtime import CalibrationRuntime, ModelLoadError, RuntimeConfig
from crossi2p.tf_tree import (FrameMismatchError, StaticTransformTree, check_camera_frame, check_camera_info_frame,
                             points_in_lidar_frame)

from .frame_report import FRAME_STATUS_NAME, FrameReport
from .input_watch import ALTERNATE_TYPES, InputWatch, WatchedInput, silent_input_warning, stopped_input_warning
from .input_watch import Publisher as GraphPublisher
from .pipeline import (RIG_POINTS_PER_CAMERA, CalibrationPipeline, CameraFrame, LidarSweep,
                       check_intensity_policy)
from .parameters import CalibrationNodeParameters, parameter_specs, parameters_from_flat
from .rig_inputs import RigInput, load_rig_file

REFINEMENT_SETTINGS = {"max_pair_offset_s": "refinement_max_pair_offset_s",
                       "compensate_pair_offset": "refinement_compensate_pair_offset:=true",
                       "deskew_off": "deskew.mode:=off"}
"""How the node's users change what ``CalibrationPipeline.no_pair_to_refine_on`` names."""
NODE_NAME = "crossi2p_calibration"
"""The node's default name: the section of a parameters file it reads (``ros__parameters``)."""
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)


def default_model_card() -> Path:
    """The shipped model: the installed share/ folder, else the repository's models/."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("crossi2p_ros")) / "models" / "crossi2p_cpu.yaml"
        if share.is_file():
            return share
    except Exception:  # not installed with an ament index (editable install in the venv)
        pass
    return Path(__file__).resolve().parents[4] / "models" / "crossi2p_cpu.yaml"


def stamp_to_s(stamp) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


@dataclass
class NodeCounters:
    images_in: int = 0
    clouds_in: int = 0
    camera_infos_in: int = 0
    inputs_handled: int = 0
    """Sensor messages (images, camera infos, clouds) whose callback has returned."""
    bad_images: int = 0
    images_uncalibrated: int = 0
    """Images skipped because the newest CameraInfo is uncalibrated (K all zeros or a 0x0 size)."""
    bad_clouds: int = 0
    clouds_subsampled: int = 0
    """Clouds larger than ``max_points``, randomly subsampled to it (bounded memory and time)."""
    pairs_in: int = 0
    pairs_used: int = 0
    pairs_dropped_busy: int = 0
    pairs_dropped_loading: int = 0
    """Pairs replaced by a newer one while the model was still loading (the newest one waits)."""
    frames_done: int = 0
    """Pairs the worker has finished (estimate, fusion and publishing; failed ones included)."""
    frames_invalid: int = 0
    tf_published: int = 0
    poses_published: int = 0
    """~/pose messages sent (one per published estimate)."""
    refinements_run: int = 0
    """Refinements run to the end (accepted or not; since start-up)."""
    refinements_accepted: int = 0
    last_error: str = ""
    last_latency_ms: float = 0.0
    last_inlier_ratio: float = 0.0
    lidar_intensity_detected: str = ""
    """Scale of the last cloud's raw intensity field (``preprocess.detect_intensity_scale``)."""
    lidar_intensity_applied: str = ""
    """Normalisation the card applied to the last frame (after the decoder's ``auto`` rule)."""


class CalibrationNode(Node):
    """See the module docstring."""

    def __init__(self, runtime: CalibrationRuntime | None = None, *, load_model_in_background: bool = False,
                 **kwargs):
        """``runtime``: an already loaded runtime to use instead of loading ``model_card`` (its own
        RuntimeConfig applies, the ``runtime.*`` parameters do not; the caller keeps it and closes
        it). Without one the node loads ``model_card`` itself: here, raising ``ModelLoadError``
        (default), or with ``load_model_in_background`` on a daemon thread started once every
        publisher and subscription is up (``main``; ``model_ready`` / ``model_failed`` say how it
        went). ``kwargs`` go to rclpy's Node (context, parameter_overrides, ...)."""
        super().__init__(NODE_NAME, **kwargs)
        self.params = self._declare_parameters()
        p = self.params.node
        self._start_prior = self._configured_prior()  # before the model: a bad prior file stops the node at once
        self._rig = self._configured_rig()              # so does a bad rig file
        self._owns_runtime = runtime is None
        self.runtime: CalibrationRuntime | None = None
        """The loaded model; None while it loads in the background (or after it failed)."""
        self.model_ready = threading.Event()
        self.model_failed = Future()
        """Done, with the one-line reason, when loading the model in the background failed."""
        self._model_card = Path(p.model_card) if p.model_card else default_model_card()
        self._load_started_s = time.monotonic()
        self._loader: threading.Thread | None = None
        if runtime is not None:
            self.get_logger().info(f"model {runtime.card.name} (runtime given) on {runtime.providers}")
        elif not load_model_in_background:
            runtime = self._load_runtime(self._model_card, self.params.runtime)
        self.pipeline = CalibrationPipeline(runtime, self.params.pairing, self.params.fusion, prior=self._start_prior,
                                            schedule=self.params.refinement, deskew=self.params.deskew,
                                            travel=self.params.travel)
        self.counters = NodeCounters()
        self._lock = threading.Lock()  # guards the pipeline, counters, pending pair, camera info
        self._wake = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)  # inputs handled / frames done
        self._output_lock = threading.Lock()  # held by the worker while it publishes; destroy_node takes it
        self._pending = None
        self._stop = False
        if runtime is not None:
            self._set_runtime(runtime)
        self._camera_info: CameraInfo | None = None
        self._camera: CameraModel | None = None  # camera of _camera_info (crossi2p.camera.camera_from_camera_info)
        self._camera_error: ValueError | None = None  # why _camera_info has no camera (uncalibrated, malformed)
        self._camera_info_key: tuple | None = None  # the fields _camera was built from
        self._camera_notes: set[str] = set()  # CameraInfo reading notes already logged
        self._input_warnings = ThrottleByKind(5.0)  # bad-input warnings: throttled per kind of problem
        self._frames = ("", "")  # (lidar_frame, camera_frame) of the last pair
        self._second_parent_warned = False
        self._published_T: np.ndarray | None = None
        self._published_stage: str | None = None  # "refined" | "fused" | "network" of _published_T
        self._refining = False  # a refinement is running on the worker thread
        self._generation = 0  # bumped by ~/reset: a refinement planned before a reset is not applied
        self._last_overlay_s = 0.0
        self._tf_tree = StaticTransformTree()  # /tf_static edges (clouds in another frame; refine prior from tf)
        self._first_frames = ["", ""]  # LiDAR / camera frame of the first accepted cloud / image (empty parameters)
        self._prior_from_tf: np.ndarray | None = None

        # Outputs.
        tf_qos = LATCHED if p.publish_on == "tf_static" else QoSProfile(depth=100)
        self.tf_pub = self.create_publisher(TFMessage, "/" + p.publish_on, tf_qos)
        self.pose_pub = self.create_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", 1)
        self.frame_pub = (self.create_publisher(DiagnosticArray, "~/frame_estimates",
                                                QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
                          if p.publish_frame_estimates else None)
        # Inputs.
        qos = qos_profile_sensor_data if p.qos == "sensor_data" else QoSProfile(depth=p.queue_depth)
        if p.qos == "sensor_data":
            qos = QoSProfile(depth=p.queue_depth, reliability=qos.reliability, durability=qos.durability,
                             history=qos.history)
        image_type = CompressedImage if p.compressed_image else Image
        self.create_subscription(image_type, p.image_topic, self._counted(self._on_image), qos)
        self.create_subscription(CameraInfo, p.camera_info_topic, self._counted(self._on_camera_info), qos)
        self.create_subscription(PointCloud2, p.points_topic, self._counted(self._on_points), qos)
        for rig in self._rig:       # the rig's other cameras (rig_calibration): images paired, no network
            self.create_subscription(image_type, rig.spec.image_topic,
                                     self._counted(lambda msg, rig=rig: self._on_rig_image(rig, msg)), qos)
            self.create_subscription(CameraInfo, rig.spec.camera_info_topic,
                                     self._counted(lambda msg, rig=rig: self._on_rig_camera_info(rig, msg)), qos)
        # an input with nothing at all after input_timeout_s: a warning saying what the graph has there
        image_msgtype = f"sensor_msgs/msg/{image_type.__name__}"
        rig_inputs = [WatchedInput(topic, msgtype, f"cameras[{k}].{key}", p.rig_calibration)
                      for k, rig in enumerate(self._rig)
                      for topic, msgtype, key in ((rig.spec.image_topic, image_msgtype, "image_topic"),
                                                  (rig.spec.camera_info_topic, "sensor_msgs/msg/CameraInfo",
                                                   "camera_info_topic"))]
        self._input_watch = InputWatch(
            [WatchedInput(p.image_topic, image_msgtype, "image_topic"),
             WatchedInput(p.camera_info_topic, "sensor_msgs/msg/CameraInfo", "camera_info_topic"),
             WatchedInput(p.points_topic, "sensor_msgs/msg/PointCloud2", "points_topic"), *rig_inputs],
            p.input_timeout_s, 3.0 * p.input_timeout_s, time.monotonic())
        if p.input_timeout_s > 0:  # steady time, as diagnostics: under use_sim_time no /clock may come either
            self.create_timer(min(1.0, p.input_timeout_s / 2), self._warn_silent_inputs,
                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        # another node of this name (a second camera's node started without its own name), whichever
        # of the two started first: said each time their number grows
        self._name_twins_told = 0
        self._name_timer = self.create_timer(NAME_CHECK_PERIOD_S, self._check_unique_name,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        # Always: a cloud stamped with another frame than lidar_frame is mapped through /tf_static.
        self.create_subscription(TFMessage, "/tf_static", self._on_tf_static, LATCHED)
        self.create_service(Trigger, "~/save_calibration", self._on_save)
        self.create_service(Trigger, "~/reset", self._on_reset)
        # a steady clock, not the node's: under use_sim_time the node's clock stops with the bag's
        # /clock, and diagnostics must go on saying the final state (and a ~/reset) after it
        self.create_timer(1.0 / p.diagnostics_rate_hz, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        if p.publish_on == "tf":
            self.create_timer(1.0 / p.tf_rate_hz, self._publish_tf_periodic)
        self._worker = register_native_worker(threading.Thread(target=self._work, name="crossi2p_inference",
                                                               daemon=True))
        self._worker.start()
        if self.runtime is None:  # every input and output is up: now the slow part
            self.get_logger().info(f"subscribed to {p.image_topic}, {p.camera_info_topic}, {p.points_topic}; "
                                   f"loading model {self._model_card} in the background")
            self._loader = register_native_worker(threading.Thread(
                target=self._load_in_background, name="crossi2p_model_loader",
                args=(self._model_card, self.params.runtime), daemon=True))
            self._loader.start()

    # ------------------------------------------------------------------------ model loading
    def _load_runtime(self, card: Path, config: RuntimeConfig) -> CalibrationRuntime:
        """Load ``card`` (creating the onnxruntime session: the slow part); ``ModelLoadError``."""
        started = time.monotonic()
        runtime = CalibrationRuntime(card, config)
        self.get_logger().info(f"model {runtime.card.name} ({card}) on {runtime.providers}, "
                               f"loaded in {time.monotonic() - started:.1f} s")
        return runtime

    def _set_runtime(self, runtime: CalibrationRuntime) -> bool:
        """Start using ``runtime`` (the worker takes the waiting pair, if any); False when the node
        is already being destroyed."""
        with self._wake:
            if self._stop:
                return False
            self.runtime = runtime
            self.pipeline.runtime = runtime
            self.model_ready.set()
            self._wake.notify()
        return True

    def _load_in_background(self, card: Path, config: RuntimeConfig) -> None:
        """The loader thread: load, then hand the runtime over (or close it when the node is already
        being destroyed: nobody waits for this thread, onnxruntime cannot be interrupted)."""
        try:
            runtime = CalibrationRuntime(card, config)
            try:
                check_intensity_policy(runtime)
            except ValueError:
                runtime.close()
                raise
        except Exception as exc:  # ModelLoadError, or anything onnxruntime raises: one line either way
            reason = str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                if self._stop:
                    return
                self.counters.last_error = f"model failed to load: {reason}"
            try:
                self.model_failed.set_result(reason)  # wakes main()'s executor
            except Exception:  # the executor went away meanwhile (shutting down): nothing to tell
                pass
            return
        if not self._set_runtime(runtime):
            runtime.close()
            return
        self.get_logger().info(f"model {runtime.card.name} ({card}) on {runtime.providers}, loaded in "
                               f"{time.monotonic() - self._load_started_s:.1f} s: ready")
        if self.params.refinement.enabled:
            refinement.preload()     # not in the first refinement's time (about 1 s)

    # ------------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> CalibrationNodeParameters:
        values = {}
        for spec in parameter_specs():
            # read_only: every parameter is read once at start-up, so a change at run time is
            # refused (rclpy: "Trying to set a read-only parameter") instead of accepted and ignored
            descriptor = ParameterDescriptor(description=spec.description, read_only=True)
            if spec.choices:
                descriptor.additional_constraints = f"one of {list(spec.choices)}"
            if spec.range is not None and isinstance(spec.default, float):
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                                      to_value=float(spec.range[1]))]
            elif spec.range is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
                descriptor.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]),
                                                         step=0)]
            self.declare_parameter(spec.name, spec.default, descriptor)
            values[spec.name] = self.get_parameter(spec.name).value
        self._warn_unknown_parameters(set(values))
        return parameters_from_flat(values)

    def _warn_unknown_parameters(self, declared: set[str]) -> None:
        """Log every parameter given to this node (``-p``, ``--params-file``) that it does not have,
        with the closest name it has: a typo would otherwise leave the default in force without a
        word. A warning, not an error: a parameters file shared by several nodes may hold others'."""
        from crossi2p.config_schema import closest_name

        known = declared | {"use_sim_time", "start_type_description_service"}
        self.unknown_parameters: dict[str, str | None] = {}
        """Parameters given to the node that it does not have -> the closest one it has (or None)."""
        for name in sorted(set(self._parameter_overrides) - known):
            close = closest_name(name, declared)
            self.unknown_parameters[name] = close
            self.get_logger().warning(f"parameter '{name}' is not a parameter of this node; it is ignored"
                                      + (f" (did you mean '{close}'?)" if close else " (calibration_node --help "
                                                                                     "lists them)"))

    # ------------------------------------------------------------------------ inputs
    def _counted(self, callback):
        """``callback`` that counts itself in ``inputs_handled`` when it returns (replay pacing)."""
        def handle(msg) -> None:
            try:
                callback(msg)
            finally:
                with self._progress:
                    self.counters.inputs_handled += 1
                    self._progress.notify_all()
        return handle

    def wait_until_idle(self, inputs_handled: int, timeout_s: float) -> bool:
        """Block until at least ``inputs_handled`` sensor messages have been handled and every pair
        they produced is finished (or was dropped as busy or while loading); False when ``timeout_s``
        passes first."""
        c = self.counters
        with self._progress:
            return self._progress.wait_for(
                lambda: (c.inputs_handled >= inputs_handled and self._pending is None
                         and c.frames_done + c.pairs_dropped_busy + c.pairs_dropped_loading >= c.pairs_in),
                timeout_s)

    def _check_unique_name(self) -> None:
        """Timer (every ``NAME_CHECK_PERIOD_S``): warn when the ROS graph holds more other nodes
        with this node's fully qualified name than last told (a graph query: cheap)."""
        me = (self.get_name(), self.get_namespace())
        try:
            twins = self.get_node_names_and_namespaces().count(me) - 1
        except Exception:  # noqa: BLE001  (the context is shutting down: nothing to say)
            return
        if twins > self._name_twins_told:
            self.get_logger().warning(duplicate_name_warning(self.get_fully_qualified_name(), twins))
        self._name_twins_told = twins

    def _warn_silent_inputs(self) -> None:
        """Timer: warn about each input with no message at all, or none for ``input_timeout_s``
        after some (``crossi2p_ros.input_watch``)."""
        with self._lock:
            c = self.counters
            counts = [c.images_in, c.camera_infos_in, c.clouds_in]
            for rig in self._rig:     # in the order of the watch's inputs
                counts += [rig.images_received, rig.camera_infos_received]
            received = dict(zip(self._input_watch.inputs, counts))
        now = time.monotonic()
        due = self._input_watch.due(now, received)
        stopped = self._input_watch.stopped(now, received)
        if not due and not stopped:
            return
        publishers = self._graph_publishers(due + [watched for watched, _ in stopped])
        reliable = self.params.node.qos == "reliable"
        subscribed = frozenset(w.topic for w in self._input_watch.inputs)
        for watched in due:
            self.get_logger().warning(silent_input_warning(watched, now - self._input_watch.start_s, publishers,
                                                           reliable, subscribed))
        for watched, silent_s in stopped:
            self.get_logger().warning(stopped_input_warning(watched, silent_s, received[watched], publishers))

    def _graph_publishers(self, inputs: list[WatchedInput]) -> list[GraphPublisher]:
        """Other nodes' publishers on the ``inputs``' topics and on every topic of their types (or
        the other image type); [] when the graph cannot be read (shutting down)."""
        wanted = {w.msgtype for w in inputs} | {ALTERNATE_TYPES[w.msgtype][0] for w in inputs
                                                 if w.msgtype in ALTERNATE_TYPES}
        topics = {w.topic for w in inputs}
        me = (self.get_name(), self.get_namespace())
        out = []
        try:
            for name, types in self.get_topic_names_and_types():
                if name not in topics and not wanted & set(types):
                    continue
                for info in self.get_publishers_info_by_topic(name):
                    if (info.node_name, info.node_namespace) == me:
                        continue
                    node = f"{info.node_namespace.rstrip('/')}/{info.node_name}"
                    out.append(GraphPublisher(name, info.topic_type, node,
                                              info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT))
        except Exception:  # the context is going away: warn without the graph's word
            return []
        return out

    def _bad_input(self, kind: str, reason: str) -> None:
        with self._lock:
            if kind == "image":
                self.counters.bad_images += 1
            else:
                self.counters.bad_clouds += 1
            self.counters.last_error = reason
        self._warn_throttled(reason)

    def _warn_throttled(self, reason: str) -> None:
        """Log a bad input's ``reason``: at most once per 5 s for each kind of problem
        (``crossi2p.log_once.ThrottleByKind``), so the first of each distinct problem is always logged."""
        suppressed = self._input_warnings.admit(reason)
        if suppressed is not None:
            self.get_logger().warning(reason + (f" (and {suppressed} more like it since the last such warning)"
                                                if suppressed else ""))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Keep the newest CameraInfo and its camera (``crossi2p.camera.camera_from_camera_info``, the
        bag reader's conversion too: image_geometry's reading, binning and roi applied), converted
        once per calibration: a repeat of the previous message reuses it. A CameraInfo without a
        camera (uncalibrated, malformed) is kept with the reason; ``_on_image`` acts on it."""
        with self._lock:
            self.counters.camera_infos_in += 1
            self._camera_info = msg
            key = camera_info_key(msg)
            if key == self._camera_info_key:
                return
            self._camera, self._camera_error = self._read_camera_info(msg)
            self._camera_info_key = key

    def _read_camera_info(self, msg: CameraInfo) -> tuple[CameraModel | None, ValueError | None]:
        """``(camera, None)`` of a CameraInfo (``camera_from_camera_info``), or ``(None, why)``."""
        try:
            return camera_from_camera_info(msg, on_note=self._camera_note), None
        except ValueError as exc:  # UncalibratedCameraError included
            return None, exc

    def _on_rig_camera_info(self, rig: RigInput, msg: CameraInfo) -> None:
        """A rig camera's CameraInfo (``rig_calibration``), kept as ``_on_camera_info`` keeps the node's."""
        with self._lock:
            rig.camera_infos_received += 1
            rig.info = msg
            key = camera_info_key(msg)
            if key != rig.info_key:
                (rig.camera, rig.camera_error), rig.info_key = self._read_camera_info(msg), key

    def _camera_note(self, message: str) -> None:
        """A CameraInfo read other than literally (e.g. an empty distortion_model): logged once per note."""
        if message not in self._camera_notes:
            self._camera_notes.add(message)
            self.get_logger().warning(f"{self.params.node.camera_info_topic}: {message}")

    def _decoded_image(self, msg, info: CameraInfo | None, camera: CameraModel | None, error: ValueError | None,
                       image_topic: str, info_topic: str) -> np.ndarray | None:
        """(H, W, 3) uint8 RGB of an image on ``image_topic`` checked against its CameraInfo
        (``info`` and what ``_read_camera_info`` made of it), or None when it cannot be used (the
        reason counted and logged, throttled)."""
        if info is None:
            return self._bad_input("image", f"image dropped: no CameraInfo received yet on {info_topic}")
        try:
            check_camera_info_frame(info.header.frame_id, msg.header.frame_id, self._tf_tree)
        except FrameMismatchError as exc:
            return self._bad_input("image", f"image on {image_topic} dropped: {exc} ({info_topic})")
        if isinstance(error, UncalibratedCameraError):  # skipped and counted until a calibrated one arrives
            reason = f"image on {image_topic} skipped: {error} on {info_topic}; waiting for a calibrated CameraInfo"
            with self._lock:
                self.counters.images_uncalibrated += 1
                self.counters.last_error = reason
            self._warn_throttled(reason)
            return None
        if error is not None:
            return self._bad_input("image", f"image on {image_topic}: {info_topic}: {error}")
        try:
            rgb = message_to_rgb(msg)
        except ValueError as exc:
            return self._bad_input("image", f"image on {image_topic}: {exc}")
        if rgb.shape[:2] != (camera.height, camera.width):
            roi = info.roi
            reduced = (f" ({info.width}x{info.height} with binning {info.binning_x}x{info.binning_y}, roi "
                       f"{roi.width}x{roi.height}+{roi.x_offset}+{roi.y_offset})"
                       if max(info.binning_x, info.binning_y) > 1 or roi.x_offset or roi.y_offset or roi.width
                       else "")
            return self._bad_input("image", f"image on {image_topic} is {rgb.shape[1]}x{rgb.shape[0]} but its "
                                            f"CameraInfo says {camera.width}x{camera.height}{reduced}")
        return rgb

    def _on_rig_image(self, rig: RigInput, msg) -> None:
        """A rig camera's image: paired with the sweeps and held while its sweep is in the window."""
        with self._lock:
            rig.images_received += 1
            info, camera, error = rig.info, rig.camera, rig.camera_error
        rgb = self._decoded_image(msg, info, camera, error, rig.spec.image_topic, rig.spec.camera_info_topic)
        if rgb is None:
            return
        frame = msg.header.frame_id.lstrip("/") or rig.spec.prior.camera_frame
        mismatch = prior_frame_mismatch(rig.spec.prior, "", frame)     # e.g. the rig file's priors swapped
        if mismatch is not None:
            return self._bad_input("image", f"image on {rig.spec.image_topic} refused: {mismatch}")
        held = rig.scaled(CameraFrame(rgb, camera, frame))
        with self._lock:
            rig.offer_image(stamp_to_s(msg.header.stamp), held)

    def _on_image(self, msg) -> None:
        p = self.params.node
        with self._lock:
            self.counters.images_in += 1
            info, camera, error = self._camera_info, self._camera, self._camera_error
        rgb = self._decoded_image(msg, info, camera, error, p.image_topic, p.camera_info_topic)
        if rgb is None:
            return
        camera_frame, _, refused = self._in_configured_frame(
            1, p.camera_frame, msg.header.frame_id, f"image on {p.image_topic}",
            lambda frame: check_camera_frame(msg.header.frame_id, frame, self._tf_tree))
        if refused:
            return self._bad_input("image", refused)
        frame = CameraFrame(rgb, camera, camera_frame)
        with self._lock:
            pairs = self.pipeline.offer_image(stamp_to_s(msg.header.stamp), frame)
        self._offer(pairs)

    def _in_configured_frame(self, index: int, configured: str, header_frame: str, what: str, check
                             ) -> tuple[str, object, str | None]:
        """``(frame, check(frame), None)``: the frame estimates are published under
        (``configured``, else the first message's) and what ``check`` made of the message in it;
        ``(frame, None, reason)`` when ``check`` refused it (FrameMismatchError: /tf_static cannot
        relate ``header_frame`` to ``frame``)."""
        with self._lock:
            frame = self._frame_for(index, configured, header_frame)
            try:
                value = check(frame)
            except FrameMismatchError as exc:
                return frame, None, f"{what} refused: {exc}"
            self._first_frames[index] = frame
            return frame, value, None

    def _on_points(self, msg: PointCloud2) -> None:
        p = self.params.node
        with self._lock:
            self.counters.clouds_in += 1
        stamp_s = stamp_to_s(msg.header.stamp)
        try:
            cloud = pointcloud2_to_array(msg)
            points = structured_to_xyzi(cloud, p.intensity_field, source="PointCloud2", normalise=False)
            times = (structured_point_times(cloud, stamp_s, "PointCloud2")  # None: no time field
                     if self.pipeline.deskewer.config.mode == "time" else None)  # only de-skewing uses them
            detected = detect_intensity_scale(points[:, 3])  # the driver's scale, before normalising
            points[:, 3] = normalise_intensity(points[:, 3])
        except ValueError as exc:
            return self._bad_input("cloud", f"cloud on {p.points_topic}: {exc}")
        if len(points) == 0:
            return self._bad_input("cloud", f"cloud on {p.points_topic}: no finite points")
        with self._lock:
            self.counters.lidar_intensity_detected = detected
        if len(points) > p.max_points:
            with self._lock:
                self.counters.clouds_subsampled += 1
            keep = np.sort(np.random.default_rng(len(points)).choice(len(points), p.max_points, replace=False))
            points = points[keep]
            times = times[keep] if times is not None else None
        # the points in the LiDAR frame estimates are published under, or refused
        lidar_frame, points, refused = self._in_configured_frame(
            0, p.lidar_frame, msg.header.frame_id, f"cloud on {p.points_topic}",
            lambda frame: points_in_lidar_frame(points, msg.header.frame_id, frame, self._tf_tree))
        if refused:
            return self._bad_input("cloud", refused)
        # de-skewed outside the lock (its odometry takes tens of ms and the worker must not wait):
        # only this callback touches the odometry, and the executor runs callbacks one at a time
        sweep = self.pipeline.deskew_sweep(stamp_s, LidarSweep(points, lidar_frame, times_s=times))
        with self._lock:
            pairs = self.pipeline.offer_lidar(stamp_s, sweep, deskewed=True)
            for rig in self._rig:
                rig.offer_lidar(stamp_s, sweep)
        self._offer(pairs)

    def _offer(self, pairs) -> None:
        if not pairs:
            return
        with self._lock:
            self.counters.pairs_in += len(pairs)
            replaced = len(pairs) - 1 + (self._pending is not None)
            if self.runtime is None:  # the model is still loading: the newest pair waits for it
                self.counters.pairs_dropped_loading += replaced
            else:
                self.counters.pairs_dropped_busy += replaced
            self._pending = pairs[-1]
            self._wake.notify()

    def _frame_for(self, kind: int, configured: str, header_frame: str) -> str:
        """The frame a message's data is used in (``kind`` 0: LiDAR, 1: camera; call with the lock):
        the parameter, else the frame of the first accepted message of that kind (one frame for
        the whole estimate: the fusion mixes no frames), else this message's own frame."""
        return configured or self._first_frames[kind] or header_frame.lstrip("/")

    def _on_tf_static(self, msg: TFMessage) -> None:
        """Collect the static tf tree (clouds stamped with another frame than the LiDAR frame; the
        refine prior); a bad edge is skipped and reported."""
        with self._lock:
            for tf in msg.transforms:
                t, r = tf.transform.translation, tf.transform.rotation
                try:
                    self._tf_tree.set_transform(tf.header.frame_id, tf.child_frame_id,
                                                transform_from_tq([t.x, t.y, t.z], [r.x, r.y, r.z, r.w]))
                except ValueError as exc:
                    self.counters.last_error = f"/tf_static: {exc}"
        self._warn_second_parent()

    def _warn_second_parent(self) -> None:
        """Warn once when the frame this node publishes under (``tf_child_frame`` or the camera
        frame) has another parent than the LiDAR frame on /tf_static: this node's transform would
        give it a second parent."""
        lidar_frame, camera_frame = self._frames
        child = self.params.node.tf_child_frame or camera_frame
        if self._second_parent_warned or not child or not lidar_frame:
            return
        with self._lock:
            parent = self._tf_tree.parent_of(child)
        if parent is not None and parent != lidar_frame.lstrip("/"):
            self._second_parent_warned = True
            self.get_logger().warning(
                f"{child} already has the parent {parent} on /tf_static: this node's {lidar_frame} -> {child} "
                f"gives it a second parent (tf lookups then take either); set tf_child_frame to another name, "
                f"e.g. tf_child_frame:={child}_calibrated (docs/troubleshooting.md)")

    # ------------------------------------------------------------------------ inference worker
    def _prior(self) -> np.ndarray | None:
        """The refine prior T_cam_lidar, or None (global mode; tf prior not available yet).

        From tf: looked up through the static tree (any chain, e.g. base_link -> lidar and
        base_link -> camera_link -> camera_optical) the first time the two frames connect, then
        kept: once this node publishes its own lidar -> camera edge the tree would otherwise
        feed the estimate back as its own prior."""
        p = self.params.node
        if p.mode != "refine":
            return None
        if self.pipeline.prior_mismatch is not None:  # a prior of another sensor: not used
            return None
        if self._start_prior is not None:  # prior_calibration, or prior_source: parameter
            return self._start_prior.T_cam_lidar
        if self._prior_from_tf is None:
            lidar_frame, camera_frame = self._frames
            with self._lock:
                if self._tf_tree.can_lookup(camera_frame, lidar_frame):
                    self._prior_from_tf = self._tf_tree.lookup(camera_frame, lidar_frame)
                    self.pipeline.prior = self._bounded(Prior(self._prior_from_tf,
                                                              source=f"tf: {camera_frame} <- {lidar_frame}"))
        return self._prior_from_tf

    def _configured_prior(self) -> Prior | None:
        """The prior known at start-up, bounded by ``prior_max_*`` (``_bounded``): the
        ``prior_calibration`` YAML, else in ``refine`` mode the ``prior_xyz`` / ``prior_quat_xyzw``
        pose (``prior_source: parameter``), else None (a /tf_static prior is set once looked up).
        ValueError, one line naming the file, when it cannot be used."""
        p = self.params.node
        if p.prior_calibration:
            prior = self._bounded(load_prior(p.prior_calibration))
        elif p.mode == "refine" and p.prior_source == "parameter":
            prior = self._bounded(Prior(transform_from_tq(p.prior_xyz, p.prior_quat_xyzw),
                                        source="parameter (prior_xyz, prior_quat_xyzw)"))
        else:
            return None
        self.get_logger().info(f"prior {prior.source}: estimates farther than {prior.max_rotation_deg:g} deg / "
                               f"{prior.max_translation_m:g} m from it are rejected")
        return prior

    def _configured_rig(self) -> list[RigInput]:
        """The rig's other cameras (``rig_calibration``; [] without one). ValueError, one line naming
        the file, when it cannot be used."""
        p = self.params.node
        if not p.rig_calibration:
            return []
        if not p.prior_calibration:
            raise ValueError(f"rig_calibration {p.rig_calibration}: needs prior_calibration (the cameras' poses "
                             f"relative to each other come from the priors)")
        specs = load_rig_file(p.rig_calibration, self._start_prior, p.image_topic)
        self.get_logger().info(f"rig: {len(specs)} more camera(s) refined with this one: "
                               + ", ".join(s.image_topic for s in specs))
        return [RigInput(s, self.params.pairing, self.params.refinement) for s in specs]

    def _bounded(self, prior: Prior) -> Prior:
        """``prior`` with the bounds of ``prior_max_rotation_deg`` / ``prior_max_translation_m`` where
        they are set (> 0)."""
        p = self.params.node
        return dataclasses.replace(prior, max_rotation_deg=p.prior_max_rotation_deg or prior.max_rotation_deg,
                                   max_translation_m=p.prior_max_translation_m or prior.max_translation_m)

    def _prior_state(self) -> str:
        """One line for diagnostics: where the refine prior comes from, or what it waits for."""
        p = self.params.node
        if self.pipeline.prior_mismatch is not None:
            return f"ignored: {self.pipeline.prior_mismatch}"
        if p.prior_calibration:
            return f"calibration {p.prior_calibration}"
        if p.mode != "refine":
            return "none (global mode)"
        if p.prior_source == "parameter":
            return "parameter (prior_xyz, prior_quat_xyzw)"
        lidar_frame, camera_frame = self._frames
        if self._prior_from_tf is not None:
            return f"tf: {camera_frame} <- {lidar_frame} from /tf_static"
        return f"tf: waiting for a /tf_static path {camera_frame or '(camera frame)'} <- {lidar_frame or '(lidar frame)'}"

    def _work(self) -> None:
        """The worker thread: the newest pair, once the model is loaded, until ``destroy_node``."""
        while True:
            with self._wake:
                while (self._pending is None or self.runtime is None) and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                pair, self._pending = self._pending, None
            try:
                self._process(pair)
                self._refine_if_due()  # before the frame counts as done: replay pacing waits for it
            except Exception as exc:  # never let a frame kill the worker
                if self._stop:  # the node went away during the frame: nothing to report to
                    return
                self.get_logger().error(f"frame at {pair.lidar_stamp_s:.3f} s failed: {exc!r}")
                with self._lock:
                    self.counters.frames_invalid += 1
                    self.counters.last_error = f"internal error: {exc!r}"
            finally:
                with self._progress:
                    self.counters.frames_done += 1
                    self._progress.notify_all()

    def _process(self, pair) -> None:
        self._frames = (pair.lidar.frame_id, pair.image.frame_id)
        self.get_logger().debug(f"frame at {pair.lidar_stamp_s:.3f} s: running the model")
        est = self.pipeline.estimate(pair, self._prior())  # outside the lock: callbacks keep flowing
        with self._lock:
            outcome = self.pipeline.fuse(pair, est)
            if self._rig:
                window = self.pipeline.window
                for rig in self._rig:
                    rig.follow_window(window)
            self.counters.pairs_used += 1
            self.counters.last_latency_ms = sum(est.latency_ms.values())
            self.counters.last_inlier_ratio = est.inlier_ratio
            if est.intensity_applied:
                self.counters.lidar_intensity_applied = est.intensity_applied
            if not est.valid:
                self.counters.frames_invalid += 1
                self.counters.last_error = f"frame rejected: {est.reason}"
            to_publish = self._estimate_to_publish(outcome) if est.valid else None
        with self._output_lock:  # no publishing once destroy_node has begun (publishers, context gone)
            if not self._stop:
                self._publish_outcome(pair, outcome, to_publish)

    def _estimate_to_publish(self, outcome) -> tuple[np.ndarray, np.ndarray | None, str, float] | None:
        """``(T_cam_lidar, covariance, stage, stamp_s)`` after a valid frame (call with the lock): the
        pipeline's ``published_estimate`` (refined > converged fused), else with
        ``publish_before_convergence`` the running fused estimate (stage ``network``), else None.
        ``stamp_s``: the LiDAR stamp of the newest pair in that estimate."""
        T, covariance, stage = self.pipeline.published_estimate()
        if stage == "refined":
            return T, covariance, stage, self.pipeline.refined_run.pairs[-1].lidar_stamp_s
        if stage == "fused":
            return T, covariance, stage, outcome.pair.lidar_stamp_s
        st = outcome.state
        if st.T_cam_lidar is not None and self.params.node.publish_before_convergence:
            return st.T_cam_lidar, st.covariance, "network", outcome.pair.lidar_stamp_s
        return None

    def _publish_outcome(self, pair, outcome, to_publish) -> None:
        """Per-frame report, then (``_estimate_to_publish``) the estimate and the overlay. A refined
        estimate went out when its refinement was accepted: a frame does not change it, only the
        overlay is drawn with it on the newest pair."""
        if self.frame_pub is not None:
            self._publish_frame_estimate(FrameReport.from_outcome(outcome))
        if to_publish is None:
            return
        T, covariance, stage, stamp_s = to_publish
        if stage != "refined" or self._published_stage != "refined":
            self._publish_estimate(T, covariance, stamp_s, stage)
        self._publish_overlay(pair.image, pair.lidar, T)

    def _refine_if_due(self) -> None:
        """After a pair, on the worker thread: when the pipeline says a refinement is due, plan it
        under the lock, run it outside (seconds: callbacks keep queuing, nothing waits on it at
        shutdown), record it unless ``~/reset`` came meanwhile, and publish what
        ``published_estimate`` then says when the run was accepted. A rejected run publishes
        nothing; its reason is in diagnostics. A start without a pair for the window (every pair
        unsynchronised, or its sweep not de-skewable) is said in the log (throttled) and in
        ``last_error``."""
        with self._lock:
            if self._stop:
                return
            due = self.pipeline.refinement_due()
            job = self.pipeline.plan_refinement() if due else None
            # a start but no pair for its window (e.g. a camera not triggered with the LiDAR): said
            waiting = "" if due else self.pipeline.no_pair_to_refine_on(REFINEMENT_SETTINGS)
            if waiting:
                self.counters.last_error = waiting
            if job is not None:
                held = [(r.spec.image_topic, r.rig_camera(job.pairs)) for r in self._rig]
                generation = self._generation
                self._refining = True
        if waiting:
            self._warn_throttled(waiting)
        if job is None:
            return
        log = self.get_logger()
        rig = [camera for _, camera in held if camera is not None]
        missing = [topic for topic, camera in held if camera is None]
        log.info(f"refining over {len(job.pairs)} pairs from the {job.start_stage} estimate"
                 + (f" with {sum(len(c.pairs) for c in rig)} pairs of {len(rig)} more camera(s) of the rig"
                    if rig else "")
                 + (f" (no pair of {', '.join(missing)}: no synchronised images of the window's sweeps yet)"
                    if missing else ""))
        try:   # touches no pipeline state: no lock
            result = self.pipeline.run_refinement(job, rig=rig, rig_points_per_camera=RIG_POINTS_PER_CAMERA)
        except Exception as exc:  # never let a refinement kill the worker
            with self._lock:
                self._refining = False
                self.counters.last_error = f"refinement failed: {exc!r}"
            if not self._stop:
                log.error(f"refinement failed: {exc!r}")
            return
        with self._lock:
            self._refining = False
            if self._stop or generation != self._generation:  # destroyed or reset meanwhile: stale
                return
            self.pipeline.apply_refinement(job, result)
            self.counters.refinements_run += 1
            self.counters.refinements_accepted += int(result.accepted)
            T, covariance, stage = self.pipeline.published_estimate()
        if result.accepted:
            log.info(f"refinement accepted ({result.frames} frames, cost {result.cost_start:.4g} -> "
                     f"{result.cost_final:.4g}, {result.time_s:.1f} s): publishing it")
        else:
            log.info(f"refinement rejected: {result.reason}")
        if not result.accepted or stage != "refined":
            return
        newest = job.pairs[-1]
        with self._output_lock:
            if not self._stop:
                self._publish_estimate(T, covariance, newest.lidar_stamp_s, stage)
                self._publish_overlay(newest.image, newest.lidar, T)

    # ------------------------------------------------------------------------ outputs
    def _publish_estimate(self, T_cam_lidar: np.ndarray, covariance: np.ndarray | None, data_stamp_s: float,
                          stage: str) -> None:
        """``~/pose`` with the stage's covariance (zeros when it has none), and tf: /tf_static when
        the stage changed or the estimate moved more than ``republish_*``."""
        p = self.params.node
        lidar_frame, camera_frame = self._frames
        stamp = self.get_clock().now().to_msg()
        pose = PoseWithCovarianceStamped()
        pose.header.stamp.sec, pose.header.stamp.nanosec = stamp_to_sec_nanosec(data_stamp_s)
        pose.header.frame_id = camera_frame
        t, q = transform_to_tq(T_cam_lidar)
        pose.pose.pose.position.x, pose.pose.pose.position.y, pose.pose.pose.position.z = map(float, t)
        o = pose.pose.pose.orientation
        o.x, o.y, o.z, o.w = map(float, q)
        pose.pose.covariance = [0.0] * 36 if covariance is None else [float(c) for c in covariance.reshape(-1)]
        self.pose_pub.publish(pose)
        self.counters.poses_published += 1
        stage_changed, self._published_stage = stage != self._published_stage, stage
        if p.publish_on == "tf_static":
            if self._published_T is not None and not stage_changed:
                err = registration_error(T_cam_lidar, self._published_T)
                if err.rre_geodesic_deg < p.republish_rotation_deg and err.rte_m < p.republish_translation_m:
                    return
            self._warn_second_parent()
            self.tf_pub.publish(TFMessage(transforms=self._transform_msgs(T_cam_lidar, stamp)))
            self.counters.tf_published += 1
        self._published_T = T_cam_lidar

    def _publish_frame_estimate(self, report: FrameReport) -> None:
        msg = DiagnosticArray(status=[DiagnosticStatus(
            level=DiagnosticStatus.OK if report.valid else DiagnosticStatus.WARN, name=FRAME_STATUS_NAME,
            hardware_id=self.get_fully_qualified_name(),
            message=f"frame at {report.lidar_stamp_s:.3f} s: {'valid' if report.valid else report.reason}",
            values=[KeyValue(key=k, value=v) for k, v in report.to_values()])])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.frame_pub.publish(msg)

    def _publish_tf_periodic(self) -> None:
        if self._published_T is not None:
            stamp = self.get_clock().now().to_msg()
            self.tf_pub.publish(TFMessage(transforms=self._transform_msgs(self._published_T, stamp)))
            self.counters.tf_published += 1

    def _transform_msgs(self, T_cam_lidar: np.ndarray, stamp) -> list[TransformStamped]:
        """This camera's transform, then each rig camera's (``T_cam_ref @ T_cam_lidar``, child: its
        images' frame; ``rig_calibration``)."""
        lidar_frame, camera_frame = self._frames
        own = self._transform_msg(T_cam_lidar, stamp, lidar_frame, self.params.node.tf_child_frame or camera_frame)
        return [own] + [self._transform_msg(rig.spec.T_cam_ref @ T_cam_lidar, stamp, lidar_frame, rig.frame_id)
                        for rig in self._rig]

    @staticmethod
    def _transform_msg(T_cam_lidar: np.ndarray, stamp, lidar_frame: str, camera_frame: str) -> TransformStamped:
        """parent = LiDAR frame, child = camera optical frame: carries T_lidar_cam."""
        msg = TransformStamped()
        msg.header.stamp = stamp
        msg.header.frame_id = lidar_frame
        msg.child_frame_id = camera_frame
        t, q = transform_to_tq(invert_transform(T_cam_lidar))
        msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = map(float, t)
        r = msg.transform.rotation
        r.x, r.y, r.z, r.w = map(float, q)
        return msg

    def _publish_overlay(self, cam: CameraFrame, sweep: LidarSweep, T_cam_lidar: np.ndarray) -> None:
        rate = self.params.node.overlay_rate_hz
        now = time.monotonic()
        if rate <= 0 or now - self._last_overlay_s < 1.0 / rate or self.overlay_pub.get_subscription_count() == 0:
            return
        self._last_overlay_s = now
        drawn = draw_projected_points(cam.image_rgb, sweep.points, cam.camera, T_cam_lidar)
        msg = Image(**{k: v for k, v in rgb_to_image_fields(drawn).items() if k != "data"})
        msg.data = array.array("B", drawn.tobytes())
        msg.header.frame_id = cam.frame_id
        msg.header.stamp = self.get_clock().now().to_msg()
        self.overlay_pub.publish(msg)

    def diagnostics_status(self) -> DiagnosticStatus:
        with self._lock:
            c = self.counters
            st = self.pipeline.fuser.state
            pc = self.pipeline.pairer.counters
            stage = self._published_stage or "none"
            level = DiagnosticStatus.OK if st.status == "converged" or stage == "refined" else DiagnosticStatus.WARN
            model, state = self._model_state(), st.status
            if self.runtime is None:
                state = "loading model" if not self.model_failed.done() else "model failed to load"
                level = DiagnosticStatus.WARN if not self.model_failed.done() else DiagnosticStatus.ERROR
            values = {
                "state": state, "model": model, "converged": str(st.status == "converged").lower(),
                "images_in": c.images_in, "clouds_in": c.clouds_in, "camera_infos_in": c.camera_infos_in,
                "bad_images": c.bad_images, "images_uncalibrated": c.images_uncalibrated,
                "bad_clouds": c.bad_clouds, "clouds_subsampled": c.clouds_subsampled, "pairs_in": c.pairs_in, "pairs_used": c.pairs_used,
                "pairs_dropped_busy": c.pairs_dropped_busy, "pairs_dropped_loading": c.pairs_dropped_loading,
                "frames_done": c.frames_done,
                "frames_invalid": c.frames_invalid,
                "frames_fused": st.frames_accepted, "frames_gated_out": st.frames_rejected,
                "lidar_unmatched": pc.lidar_unmatched, "time_resets": pc.time_resets,
                "latency_ms": f"{c.last_latency_ms:.1f}", "inlier_ratio": f"{c.last_inlier_ratio:.3f}",
                "fused_inlier_ratio": f"{st.inlier_ratio:.3f}",
                "lidar_intensity_detected": c.lidar_intensity_detected,
                "lidar_intensity_applied": c.lidar_intensity_applied,
                "rotation_std_deg": f"{st.rotation_std_deg:.4f}", "translation_std_m": f"{st.translation_std_m:.4f}",
                "converged_at_frame": st.converged_at_frame if st.converged_at_frame is not None else "",
                "drift_events": st.drift_events, "tf_published": c.tf_published, "last_error": c.last_error,
                "execution_providers": ",".join(self.runtime.providers) if self.runtime is not None else "",
                "stage": stage,
                **self._deskew_values(),
                **self._refinement_values(),
                "rejected_outside_prior": self.pipeline.rejected_outside_prior,
                "rejected_direction_of_travel": self.pipeline.travel_check.refused,
                "direction_of_travel_checked": self.pipeline.travel_check.checked,
                "prior_bounds": (f"{self.pipeline.prior.max_rotation_deg:g} deg / "
                                 f"{self.pipeline.prior.max_translation_m:g} m" if self.pipeline.prior else ""),
                "prior": self._prior_state(),  # last (tests read it as values[-1])
            }
            message = f"{state}; {c.pairs_used} frames used, {st.drift_events} drift events; publishing: {stage}"
            if c.last_error:
                message += f"; last error: {c.last_error}"
        return DiagnosticStatus(level=level, name=f"{self.get_name()}: camera-LiDAR extrinsic",
                                hardware_id=self.get_fully_qualified_name(), message=message,
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def _deskew_values(self) -> dict[str, object]:
        """Diagnostics of the de-skewing (call with the lock): the mode, the sweeps de-skewed, and
        the ego speed the last one was de-skewed with (empty when it was not)."""
        d = self.pipeline.deskewer
        speed = "" if d.velocity is None else f"{np.linalg.norm(d.velocity[1]):.2f}"
        return {"deskew": d.config.mode, "sweeps_deskewed": d.sweeps_deskewed, "deskew_speed_mps": speed}

    def _refinement_values(self) -> dict[str, object]:
        """Diagnostics of the refinement (call with the lock): whether one runs now, the counts, and
        the last run's figures (empty before one, and after ``~/reset``)."""
        c = self.counters
        run = self.pipeline.last_refinement
        values: dict[str, object] = {
            "refinement_enabled": str(self.pipeline.schedule.enabled).lower(),
            "refinement_running": str(self._refining).lower(),
            "refinements_run": c.refinements_run, "refinements_accepted": c.refinements_accepted,
            "refinement_pairs_unsynchronised": self.pipeline.pairs_unsynchronised,
            "refinement_pairs_time_compensated": self.pipeline.pairs_time_compensated,
            "refinement_pairs_skewed": self.pipeline.pairs_skewed,
            "refinement_pairs_not_keyframes": self.pipeline.pairs_not_keyframes,
            "rig_cameras": len(self._rig),
            "rig_pairs_held": ", ".join(f"{r.spec.image_topic}: {r.held}" for r in self._rig)}
        keys = ("refinement_accepted", "refinement_reason", "refinement_start_stage", "refinement_cost_start",
                "refinement_cost_final", "refinement_frames", "refinement_std_m", "refinement_std_deg")
        if run is None:
            return {**values, **dict.fromkeys(keys, "")}
        r = run.result
        return {**values, **dict(zip(keys, (
            str(r.accepted).lower(), r.reason, run.start_stage, f"{r.cost_start:.6g}", f"{r.cost_final:.6g}",
            r.frames, ",".join(f"{v:.4f}" for v in r.std_m), ",".join(f"{v:.4f}" for v in r.std_deg))))}

    def _model_state(self) -> str:
        """One line for diagnostics: the model's name once loaded, else how long it has been loading."""
        if self.runtime is not None:
            return f"{self.runtime.card.name}: ready"
        if self.model_failed.done():
            return f"{self._model_card}: failed to load"
        return f"{self._model_card}: loading for {time.monotonic() - self._load_started_s:.0f} s"

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray(status=[self.diagnostics_status()])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    # ------------------------------------------------------------------------ services
    def _on_save(self, request, response):
        """``~/save_calibration``: the estimate the node publishes (refined > converged fused; the
        running fused one only with ``publish_before_convergence``, which publishes it too) as a
        calibration YAML + URDF snippet; success False, saving nothing, when there is none."""
        with self._lock:
            st = self.pipeline.fuser.state
            T, cov, stage = self.pipeline.published_estimate()
            if T is None and st.T_cam_lidar is not None and self.params.node.publish_before_convergence:
                T, cov, stage = st.T_cam_lidar.copy(), st.covariance, "network"
            converged, status, fused = st.status == "converged", st.status, st.frames_accepted
        if T is None or self._camera_info is None:
            response.success = False
            response.message = (f"nothing saved: no estimate has passed its checks yet (fusion {status}, {fused} "
                                f"frames fused; no accepted refinement)")
            return response
        lidar_frame, camera_frame = self._frames
        path = Path(self.params.node.save_path or f"{self.get_name()}.yaml")   # one file per node by default
        try:
            camera = self._last_camera()
            save_calibration_yaml(path, T, camera, lidar_frame=lidar_frame, camera_frame=camera_frame,
                                  covariance=cov, metadata={"converged": converged, "stage": stage,
                                                            "model": self.runtime.card.name})
            path.with_suffix(".urdf.xacro").write_text(urdf_joint_snippet(T, lidar_frame, camera_frame))
            rig_paths = []
            for rig in self._rig:     # each rig camera beside it, as crossi2p-calibrate --rig-camera writes them
                with self._lock:
                    rig_camera = rig.camera
                if rig_camera is None:
                    continue          # no CameraInfo of it yet: its intrinsics are unknown
                rig_stem = f"{path.stem}.{rig.frame_id.replace('/', '_')}"
                path.with_name(f"{rig_stem}.urdf.xacro").write_text(
                    urdf_joint_snippet(rig.spec.T_cam_ref @ T, lidar_frame, rig.frame_id))
                rig_paths.append(save_calibration_yaml(
                    path.with_name(f"{rig_stem}.yaml"), rig.spec.T_cam_ref @ T,
                    rig_camera, lidar_frame=lidar_frame, camera_frame=rig.frame_id,
                    metadata={"stage": stage, "rig_reference": camera_frame, "prior": rig.spec.prior.source,
                              "covariance_note": f"none here: the rig's covariance is about {camera_frame}, "
                                                 f"in {path}"}))
        except (OSError, ValueError) as exc:
            response.success, response.message = False, f"could not save to {path}: {exc}"
            return response
        response.success = True
        response.message = (f"saved {path} and {path.with_suffix('.urdf.xacro')} (stage: {stage}, "
                            f"converged: {converged})" + (f"; the rig's other cameras: {', '.join(map(str, rig_paths))}"
                                                          if rig_paths else ""))
        return response

    def _last_camera(self) -> CameraModel:
        """The camera of the newest CameraInfo; ValueError saying why there is none."""
        with self._lock:
            camera, error = self._camera, self._camera_error
        if camera is None:
            raise ValueError(f"no usable CameraInfo on {self.params.node.camera_info_topic}: {error}")
        return camera

    def _on_reset(self, request, response):
        """``~/reset``: forget every estimate (the prior stays). On /tf_static an empty TFMessage
        replaces the latched transform, so that a node starting later does not get the forgotten
        one (tf2 listeners that already have it keep it: a static transform cannot be withdrawn)."""
        with self._lock:
            self.pipeline.reset()
            for rig in self._rig:
                rig.reset()
            self._generation += 1  # a refinement running now is not applied
            had = self._published_T is not None
            self._published_T = self._published_stage = None
            self._first_frames = ["", ""]  # empty frame parameters: learnt again from the next messages
        withdrawn = had and self.params.node.publish_on == "tf_static"
        if withdrawn:
            with self._output_lock:
                self.tf_pub.publish(TFMessage(transforms=[]))
        self.get_logger().info("~/reset: every estimate forgotten" + (", its transform withdrawn from /tf_static"
                                                                       if withdrawn else ""))
        response.success, response.message = True, "estimator reset"
        return response

    def destroy_node(self, worker_timeout_s: float = 5.0):
        """Stop the worker (waiting at most ``worker_timeout_s`` for a frame in progress: from now
        on it publishes nothing), close the runtime the node loaded, destroy the node. A model
        still loading is not waited for: the loader closes it when it is done."""
        if hasattr(self, "_worker"):  # not when __init__ failed (a bad parameter) before starting it
            with self._output_lock, self._wake:
                self._stop = True
                self._wake.notify()
            self._worker.join(timeout=worker_timeout_s)
            if self._owns_runtime and self.runtime is not None:
                self.runtime.close()  # a frame still running keeps its session alive until it returns
        return super().destroy_node()


def _usage() -> str:
    """``calibration_node --help``: how to run it and every parameter with its default."""
    from .parameters import parameter_specs

    lines = ["usage: calibration_node [--ros-args [-p NAME:=VALUE ...] [--params-file config/default.yaml]]",
             "",
             "Online camera-LiDAR calibration: pairs camera and LiDAR messages, runs the ONNX graph, fuses",
             "and refines the per-frame estimates and publishes T_cam_lidar on tf (docs/parameters.md).",
             "Exit code 0 after SIGINT/SIGTERM, 1 with a one-line error when the model, a parameter or a",
             "--params-file is refused, 2 for an argument before --ros-args. A parameter the node does not",
             "have is logged as a warning (with the closest name) and ignored.",
             "", "parameters (default):"]
    lines += [f"  {spec.name} ({spec.default!r})" for spec in parameter_specs()]
    return "\n".join(lines)


def _params_file_problem(ros_args: list[str]) -> str:
    """Why a ``--params-file FILE`` among the ROS arguments cannot be used (missing, not YAML, not
    a mapping, no ``ros__parameters``) or a ``-p`` is not ``NAME:=VALUE``, one line naming it; ''
    when every one can."""
    import yaml

    from crossi2p.calib_io import yaml_problem

    for flag, path in zip(ros_args, ros_args[1:]):
        if flag in ("-p", "--param") and ":=" not in path:    # rcl: "Failed to parse global arguments"
            return f"{flag} {path}: expected NAME:=VALUE (e.g. -p image_topic:=/camera/image_raw)"
        if flag != "--params-file":
            continue
        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            return f"--params-file {path}: {exc.strerror or exc} (expected a parameters YAML, as config/default.yaml)"
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            why = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else "not a text file"
            return f"--params-file {path}: not valid YAML ({why}; expected a parameters YAML, as config/default.yaml)"
        if not isinstance(data, dict):
            return (f"--params-file {path}: expected a mapping of node names to ros__parameters, as "
                    f"config/default.yaml, got {type(data).__name__}")
        if not _holds_ros_parameters(data):
            return (f"--params-file {path}: no ros__parameters in it (expected node names mapping to "
                    f"ros__parameters, as config/default.yaml: 'crossi2p_calibration: ros__parameters: ...' or "
                    f"'/**: ros__parameters: ...')")
    return ""


NAME_CHECK_PERIOD_S = 2.0
"""How often the node looks for another node of its name in the ROS graph (seconds, steady time)."""


def duplicate_name_warning(fully_qualified_name: str, twins: int) -> str:
    """One line: ``twins`` other nodes in the graph have this node's name, what that breaks, what to do."""
    others = "another node" if twins == 1 else f"{twins} other nodes"
    return (f"{others} named {fully_qualified_name} in the ROS graph: nodes of one name share its parameter "
            f"services and ~/ topics ({fully_qualified_name}/pose, /save_calibration), so tools reach either "
            f"one; give each its own name (--ros-args -r __node:=NAME, or the launch argument node_name:=NAME)")


def _with_type_hint(message: str) -> str:
    """rclpy's refusal of an integer for a floating-point parameter (``-p pairing.slop_s:=1``), with
    how to write it; of a value outside a parameter's range (``-p queue_depth:=-1``), in the words
    ``parameters_from_flat`` uses (rclpy's reads "Invalid parameter value (-1) for parameter.
    Reason: Parameter queue_depth out of range. Min: 1, Max: 1000, value: -1: queue_depth"); other
    messages as they are."""
    if "of type 'INTEGER', expecting type 'DOUBLE'" in message:
        return message + " (write a decimal point: 1.0, not 1)"
    # (rclpy writes "out of range. Min:" for integers, "out of range Min:" for floating point)
    out_of_range = re.search(r"Parameter (\S+) out of range\.? Min: ([^,]+), Max: ([^,]+), value: ([^:]+)", message)
    if out_of_range:
        name, lo, hi, value = out_of_range.groups()
        return f"parameter {name}: {value} outside [{lo}, {hi}]"
    return message


def _params_files_for_other_nodes(ros_args: list[str], node_name: str) -> list[str]:
    """Warnings for each ``--params-file`` whose ``ros__parameters`` are all under other node
    names than ``node_name`` (or ``/**``): rcl applies none of them to this node, silently."""
    import yaml

    warnings = []
    for path in (b for a, b in zip(ros_args, ros_args[1:]) if a == "--params-file"):
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue                 # refused already (_params_file_problem)
        if not isinstance(data, dict):
            continue
        names = [str(k) for k, v in data.items() if isinstance(v, dict)]
        mine = {node_name, "/" + node_name, "/**", "**"}
        if names and not mine & set(names) and not any(n.endswith("/" + node_name) for n in names):
            warnings.append(f"--params-file {path}: no section for node '{node_name}' (it has {', '.join(names)}); "
                            f"none of its parameters apply to this node")
    return warnings


def _holds_ros_parameters(data) -> bool:
    """Whether a parameters YAML's mapping has a ``ros__parameters`` key at some depth (node names,
    possibly under namespaces, map to it; rcl refuses a file without one)."""
    return isinstance(data, dict) and ("ros__parameters" in data
                                       or any(_holds_ros_parameters(v) for v in data.values()))


def _ros_arguments_problem(exc: Exception) -> str:
    """One line for rcl refusing the ROS arguments (``rclpy.init`` raised): rcl's own reason, without
    its source location, and what is expected."""
    why = str(exc).removeprefix("failed to initialize rcl: ").split(". Error:")[0].split(", at /")[0]
    return (f"ROS arguments refused: {why} (expected --ros-args -p NAME:=VALUE ... or --params-file FILE; "
            f"--help lists the parameters)")


def main(args=None) -> int:
    """``calibration_node`` (module docstring, start-up and shutdown): exit code 0 after SIGINT or
    SIGTERM, 1 with a one-line error when the model, a parameter or a ``--params-file`` is refused,
    2 for an argument before ``--ros-args`` other than ``--help``."""
    argv = sys.argv[1:] if args is None else list(args[1:])
    ros_at = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    if {"-h", "--help"} & set(argv[:ros_at]):  # before rclpy.init: --help must not start the node
        print(_usage())
        return 0
    if argv[:ros_at]:                # the node takes no arguments of its own but --help
        print(f"calibration_node: error: unknown argument {argv[0]!r} (parameters go after --ros-args: "
              f"calibration_node --ros-args -p NAME:=VALUE; --help lists them)", file=sys.stderr)
        return 2
    problem = _params_file_problem(argv[ros_at:])
    if problem:                      # rcl would log "Failed to parse global arguments" without the file
        print(f"calibration_node: error: {problem}", file=sys.stderr)
        return 1
    remapped = [a.split(":=", 1)[1] for a in argv[ros_at:] if a.startswith("__node:=") or a.startswith("__name:=")]
    for warning in _params_files_for_other_nodes(argv[ros_at:], remapped[-1] if remapped else NODE_NAME):
        print(f"calibration_node: warning: {warning}", file=sys.stderr)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # like SIGINT until rclpy takes over
    node, code = None, 0
    try:
        rclpy.init(args=args)  # installs rclpy's SIGINT and SIGTERM handlers: they shut the context down
    except KeyboardInterrupt:
        return 0
    except Exception as exc:         # rcl refused an argument (-p NAME without :=VALUE, ...)
        print(f"calibration_node: error: {_ros_arguments_problem(exc)}", file=sys.stderr)
        return 1
    try:
        # The executor before the node: a signal that shuts the context down while an executor is
        # being constructed leaves a half-built one whose __del__ prints a traceback (rclpy); the
        # node's constructor takes longer and announces the model load, when users (and the
        # signal tests) are most likely to press Ctrl-C.
        executor = SingleThreadedExecutor()
        node = CalibrationNode(load_model_in_background=True)
        executor.add_node(node)
        executor.spin_until_future_complete(node.model_failed)  # until a signal, or the model failed
        if node.model_failed.done():
            print(f"calibration_node: error: {node.model_failed.result()}", file=sys.stderr)
            code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # a refused parameter, or rcl refusing a dead context after a signal
        if rclpy.ok():
            print(f"calibration_node: error: {_with_type_hint(str(exc))}", file=sys.stderr)
            code = 1
    finally:
        ignore_termination_signals()
        if node is not None:
            node.destroy_node(worker_timeout_s=0.5)
        rclpy.try_shutdown()  # restores the handlers rclpy replaced
        ignore_termination_signals()
    exit_now_if_work_in_flight(code)  # the loader or a frame inside onnxruntime: a normal exit would crash
    return code


if __name__ == "__main__":
    sys.exit(main())
