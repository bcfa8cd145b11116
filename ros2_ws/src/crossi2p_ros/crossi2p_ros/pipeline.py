"""The calibration pipeline without ROS transport: pairing -> runtime -> prior gate -> fusion ->
refinement.

The node feeds it from DDS callbacks (processing the newest pair on a worker thread); the bag
evaluator and ``crossi2p-calibrate`` feed it from a recording and process every pair. One code
path for all, so a bag replayed offline gives the node's numbers.

Stages per pair (``estimate`` then ``fuse``; ``process`` does both):

1. the runtime's per-frame estimate (``estimate``; touches no shared state);
2. the prior gate: with a ``Prior``, a valid estimate outside its bounds is made invalid with the
   reason ``"outside prior: ..."`` (``crossi2p.prior.prior_violation``) and counted in
   ``rejected_outside_prior``; it never reaches the fusion;
2b. the direction-of-travel check (``crossi2p.travel_check``; on by default): a valid estimate
   under which the LiDAR's odometry moves the camera more than ``max_angle_deg`` from the way its
   images move (a view turned around) is made invalid with the reason ``"direction of travel:
   ..."``; every sweep is registered with the odometry for it (``SweepDeskewer.track_motion``);
3. temporal fusion (``crossi2p.fusion``);
4. the pair joins the refinement window (``RefinementScheduleConfig.window_frames`` pairs,
   decoded image + camera + points, prepared for the refinement lazily, on its first use) when it
   is a keyframe (its view moved ``keyframe_parallax_px`` since the last pair that joined, or a
   second passed): the most recent keyframes (``window_span="recent"``, the node) or keyframes
   spread evenly over everything since the start (``"spread"``, the offline ``crossi2p-calibrate``).

Refinement (``crossi2p.refinement``, training-free), run by the caller when ``refinement_due()``
(``refine()``; or ``plan_refinement`` / ``run_refinement`` / ``apply_refinement`` to run the heavy
part outside a lock): it starts from the fused estimate once converged, else from the prior (its
search box then is the prior's bounds); an accepted result becomes ``refined``, a rejected one
never replaces it. A drift event of the fusion (the camera moved) forgets ``refined`` and the
window. ``published_estimate()`` says what may be published: the refined estimate, else the
converged fused one, else nothing (a prior is never published as an estimate).
"""
from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Sequence, get_args

import cv2
import numpy as np

from crossi2p.camera import CameraModel
from crossi2p.deskew import DeskewConfig, SweepDeskewer, points_at_time
from crossi2p.fusion import ExtrinsicFuser, FusionConfig, FusionState
from crossi2p.prior import Prior, pose_distance, prior_frame_mismatch, prior_violation
from crossi2p.refinement import (PreparedFrame, Progress, RefinementConfig, RefinementResult, prepare_frame,
                                 refine_extrinsic)
from crossi2p.runtime import CalibrationRuntime, FrameEstimate
from crossi2p.travel_check import TravelCheck, TravelCheckConfig, track_corners

from .pairing import PairingConfig, StampedPair, StampPairer


@dataclass
class CameraFrame:
    """A decoded image with the camera model of its CameraInfo."""

    image_rgb: np.ndarray
    """(H, W, 3) uint8 RGB."""
    camera: CameraModel
    frame_id: str


@dataclass
class LidarSweep:
    """A decoded LiDAR sweep."""

    points: np.ndarray
    """(N, 4) float32 x, y, z, intensity in the LiDAR frame."""
    frame_id: str
    skewed: bool = False
    """De-skewing is on but this sweep could not be de-skewed (the odometry had no velocity yet:
    the first sweeps, or after a gap; mode ``time`` and no time field): it is not refined on."""
    times_s: np.ndarray | None = None
    """(N,) each point's firing time relative to the stamp, seconds, from the cloud's time field
    (``crossi2p.pointcloud2.structured_point_times``; None: none). Dropped once de-skewed."""
    T_odom_lidar: np.ndarray | None = None
    """(4, 4) the LiDAR odometry's pose of this sweep (``SweepDeskewer.last_pose``; None: not
    registered), for the direction-of-travel check."""
    odometry_run: int = 0
    """Which unbroken odometry run ``T_odom_lidar`` belongs to."""
    velocity: tuple[np.ndarray, np.ndarray] | None = None
    """(angular rad/s (3,), linear m/s (3,)) the LiDAR's body twist at this sweep, LiDAR frame,
    from the odometry (``SweepDeskewer.odometry_velocity``; None: not registered, or no twist
    yet), to move the sweep to an image's stamp (``RefinementScheduleConfig.compensate_pair_offset``)."""


@dataclass
class FrameOutcome:
    """What processing one pair did."""

    pair: StampedPair
    estimate: FrameEstimate
    fused: bool
    """The per-frame estimate was valid and accepted into the fusion window."""
    state: FusionState
    """Snapshot of the fusion state after this frame (T_cam_lidar and covariance are copies)."""


WindowSpan = Literal["recent", "spread"]
WINDOW_SPANS: tuple[str, ...] = get_args(WindowSpan)
"""The refinement window's spans (``RefinementScheduleConfig.window_span``; the CLIs' choices)."""

RIG_POINTS_PER_CAMERA = 10000
"""The refinement window's point budget per camera of a rig (``crossi2p-calibrate --rig-camera``,
the node's ``rig_calibration``; one camera's window has ``RefinementConfig.max_window_points``,
20000). Measured on the real 6-camera, 3-sweep TRI DGP
scene from 3 priors 3 deg / 0.2 m off (``bench/bench_rig.py``, docs/benchmarks.md section 8): 20000
points for the whole rig refused all 3 as ambiguous (searched 0.069 m / 0.13 deg); 10000 per camera
accepted all 3 (0.046 m / 0.15 deg, about 30 s)."""

OFFLINE_WORKERS = 1
"""The offline commands' default refinement processes (``crossi2p-calibrate --workers``,
``crossi2p-evaluate-bag --refine-workers``; ``RefinementConfig.workers``): 1. More are opt-in (2:
a 20-pair window 1.5x faster, the same result; docs/benchmarks.md section 8): they fork, and a
fork of a process whose other threads hold a lock can wait on it forever (it happened once, with
``crossi2p-calibrate`` inside a ``ProcessPoolExecutor`` worker: ``refinement._run_all``). The
node keeps 1 for the same reason (its DDS and callback threads)."""

EstimateStage = Literal["refined", "fused", "prior"]
"""Where an extrinsic comes from: an accepted refinement, the converged fusion, the user's prior."""


@dataclass
class RefinementScheduleConfig:
    """When and over what the pipeline refines (the ``RefinementConfig`` says how)."""

    enabled: bool = True
    """False: ``refinement_due`` is never true (``refine()`` still runs when called)."""
    window_frames: int = 20
    """Pairs kept for the refinement (decoded image, camera and points each)."""
    window_span: WindowSpan = "recent"
    """Which pairs the window keeps. ``recent``: the last ``window_frames``. ``spread``:
    ``window_frames`` pairs spread evenly over every pair since the start (or the last drift
    event), in bounded memory: once the window is full, every other pair is dropped and only every
    2nd (then 4th, ...) new pair is admitted. More varied scenes constrain the pose better:
    measured on 2 simulated KITTI-resolution drives (12 draws from a 4 deg / 0.25 m prior),
    20 pairs spread over 40 sweeps ended within 5 cm / 0.3 deg in 9 of 12 draws where the first 20
    consecutive pairs did in 7 (docs/benchmarks.md, section 8)."""
    every_frames: int = 10
    """New pairs needed since the last run before the next one is due."""
    min_window_frames: int = 1
    """Pairs in the window before the first run is due."""
    reprepare_rotation_deg: float = 1.0
    """A pair prepared around a start within this rotation of the new start is reused (degrees)."""
    reprepare_translation_m: float = 0.1
    """... and within this translation, per axis (metres)."""
    max_pair_offset_s: float = 0.02
    """Pairs whose image and LiDAR stamps differ by more than this (seconds) are not kept for
    the refinement: the vehicle moves between the two instants (0.33 m in 33 ms at 10 m/s), and
    a calibration fitted to such pairs absorbs the motion. Measured: on a simulated drive with a
    15 Hz camera and a 10 Hz LiDAR, 15 synchronised pairs refined from the ground truth stay at
    0.013 m / 0.10 deg where all 20 pairs drift to 0.031 m / 0.47 deg (docs/benchmarks.md,
    section 8). ``inf``: keep every pair (an unsynchronised rig; expect that bias)."""
    compensate_pair_offset: bool = False
    """A pair further apart than ``max_pair_offset_s`` is kept too when the LiDAR odometry knows
    the vehicle's motion at its sweep (``LidarSweep.velocity``: de-skewing on, or the
    direction-of-travel check's odometry): the sweep's points are moved to the image's stamp
    (``crossi2p.deskew.points_at_time``, constant velocity) instead. A camera that is not
    triggered with the LiDAR (a 15 Hz camera, a constant phase offset) then still gives pairs.
    Off by default: measured at stop 36 (docs/benchmarks.md section 8, "Pairs moved to the
    image's stamp")."""
    keyframe_parallax_px: float = 2.0
    """A pair joins the window only as a keyframe: once the image's corners have moved a median of
    at least this many pixels (at 640 px wide) since the last pair that joined, or
    ``keyframe_max_gap_s`` has passed (the parallax rule of visual odometry's keyframes). A vehicle
    standing at a light otherwise fills the window with one view repeated: it adds no constraint,
    and the bootstrap counts the copies as independent evidence. (The LiDAR odometry cannot tell:
    on a street that looks alike along its length it reports a moving vehicle as standing.) 0:
    every pair joins. Measured on the real KITTI sequence, docs/benchmarks.md section 8,
    "Keyframes"; the simulated drives move 0.6-1.2 m per sweep and every pair joins."""
    keyframe_max_gap_s: float = 1.0
    """... or this long (seconds) has passed since the last keyframe, so that the window still
    fills while the vehicle stands (see ``keyframe_parallax_px``)."""
    fused_max_rotation_deg: float = 2.0
    """Search box (rotation) of a refinement that starts from the converged fused estimate: the
    fusion is within about 1 deg on the drives measured (0.27-0.74 deg), and a wider box let a
    short window's search reach a farther, wrong minimum (the demo drive, seed 7, with a 10 deg
    alignment check: 1.3 deg from a 0.36 deg start, accepted; docs/benchmarks.md, section 8). A prior start searches the prior's own bounds."""
    fused_max_translation_m: float = 0.6
    """Search box (per-axis translation) from the fused estimate (its translation is the weak
    part: up to 0.52 m off along the optical axis on the drives measured)."""

    def __post_init__(self) -> None:
        for name, unit in (("keyframe_parallax_px", "pixels"), ("keyframe_max_gap_s", "seconds")):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"RefinementScheduleConfig.{name}: expected >= 0 {unit}, got {getattr(self, name)!r}")
        for name in ("window_frames", "every_frames", "min_window_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RefinementScheduleConfig.{name}: expected >= 1 pairs, got {getattr(self, name)!r}")
        if not self.max_pair_offset_s >= 0:
            raise ValueError(f"RefinementScheduleConfig.max_pair_offset_s: expected >= 0 seconds, "
                             f"got {self.max_pair_offset_s!r}")
        if self.window_span not in WINDOW_SPANS:
            raise ValueError(f"RefinementScheduleConfig.window_span: expected {' or '.join(map(repr, WINDOW_SPANS))}, "
                             f"got {self.window_span!r}")


def synchronised(pair: StampedPair, schedule: RefinementScheduleConfig) -> StampedPair | None:
    """``pair`` as the refinement may use it: itself when its stamps are within
    ``schedule.max_pair_offset_s``; else, with ``compensate_pair_offset`` and a sweep whose motion
    the odometry knows (``LidarSweep.velocity``), the pair with the sweep's points moved to the
    image's stamp (``crossi2p.deskew.points_at_time``; the stamps stay the pair's); else None (an
    unsynchronised pair: the vehicle moved between the two instants)."""
    if abs(pair.dt_s) <= schedule.max_pair_offset_s:
        return pair
    if not schedule.compensate_pair_offset or pair.lidar.velocity is None:
        return None
    moved = points_at_time(pair.lidar.points, pair.dt_s, *pair.lidar.velocity)
    return StampedPair(pair.image_stamp_s, pair.image, pair.lidar_stamp_s,
                       dataclasses.replace(pair.lidar, points=moved.astype(pair.lidar.points.dtype, copy=False)))


def schedule_from_flags(flags: dict[str, str], **fields) -> RefinementScheduleConfig:
    """``RefinementScheduleConfig(**fields)`` for a command line: a field out of range raises the
    config's ValueError with the flag that gave it (``flags[field]``, e.g. ``"--window-frames"``)
    in place of the field's name, so the CLIs need no checks of their own."""
    try:
        return RefinementScheduleConfig(**fields)
    except ValueError as exc:
        for name, flag in flags.items():
            prefix = f"RefinementScheduleConfig.{name}:"
            if str(exc).startswith(prefix):
                raise ValueError(flag + str(exc)[len(prefix) - 1:]) from None
        raise


class KeyframeSelector:
    """The refinement window's keyframe rule (``RefinementScheduleConfig.keyframe_parallax_px``):
    an image is a keyframe when its corners moved a median of at least ``parallax_px`` pixels (at
    ``WIDTH_PX`` wide) since the last keyframe, or ``max_gap_s`` passed; the first one always is.
    Corners are tracked with ``crossi2p.travel_check.track_corners`` (OpenCV); with fewer than 20
    tracks the change cannot be told and the image is a keyframe. ``parallax_px`` 0: every image."""

    WIDTH_PX = 640
    MIN_TRACKS = 20

    def __init__(self, parallax_px: float, max_gap_s: float):
        self.parallax_px, self.max_gap_s = float(parallax_px), float(max_gap_s)
        self._last: tuple[float, np.ndarray] | None = None      # (stamp, small grey image)

    def reset(self) -> None:
        self._last = None

    def __call__(self, stamp_s: float, image_rgb: np.ndarray) -> bool:
        """Whether the (H, W, 3) uint8 RGB image stamped ``stamp_s`` (seconds) is a keyframe;
        remembers it when it is."""
        if self.parallax_px <= 0:
            return True
        grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        if grey.shape[1] > self.WIDTH_PX:
            grey = cv2.resize(grey, (self.WIDTH_PX, round(grey.shape[0] * self.WIDTH_PX / grey.shape[1])),
                              interpolation=cv2.INTER_AREA)
        last = self._last
        if last is not None and last[1].shape == grey.shape and stamp_s - last[0] < self.max_gap_s:
            p0, p1 = track_corners(last[1], grey)
            if len(p0) >= self.MIN_TRACKS:
                parallax = float(np.median(np.linalg.norm(p1 - p0, axis=1))) * self.WIDTH_PX / grey.shape[1]
                if parallax < self.parallax_px:
                    return False
        self._last = (float(stamp_s), grey)
        return True


@dataclass
class RefinementJob:
    """Everything one refinement run needs, snapshot by ``plan_refinement`` (the heavy part,
    ``run_refinement``, then touches no pipeline state)."""

    pairs: list[StampedPair]
    """The window, oldest first."""
    T_start: np.ndarray
    """(4, 4) start ``T_cam_lidar``."""
    start_stage: EstimateStage
    """``fused`` (converged fusion) or ``prior``."""
    config: RefinementConfig
    """The refinement's parameters, the search box set for this start."""
    prepared: list[PreparedFrame | None]
    """Per pair, a frame prepared around a near enough start (reused), else None (prepared in
    ``run_refinement``, which fills this list)."""
    pairs_processed: int
    """Pairs the pipeline had processed when the job was planned."""
    extra_starts: list[np.ndarray] = field(default_factory=list)
    """Further seeds of the search: the previous accepted refinement, if any."""


@dataclass
class RigCamera:
    """Another camera of a rig, refined together with the pipeline's own (``run_refinement``).

    A rig's cameras usually have known poses relative to each other (the rig's own camera
    calibration, or a URDF); what is unknown is where the LiDAR sits. Each camera alone leaves a
    rotation or translation open (on a straight drive, the roll about its optical axis); all the
    rig's cameras together see the LiDAR's surroundings from every side, so one pose of the LiDAR
    explains every image only where it is right (docs/benchmarks.md section 8, "A rig of cameras").
    """

    pairs: list[StampedPair]
    """This camera's window (its own pipeline's keyframes), oldest first."""
    T_cam_ref: np.ndarray
    """(4, 4) this camera's pose from the pipeline's camera (the reference): its
    ``T_cam_lidar = T_cam_ref @ T_ref_lidar``; known, e.g. from two priors that agree on the rig
    (``T_prior_cam @ inv(T_prior_ref)``)."""


@dataclass
class RefinementRun:
    """One refinement run and what it ran on."""

    result: RefinementResult
    start_stage: EstimateStage
    pairs_processed: int
    """Pairs processed by the pipeline when it ran (``frames_to_refine`` of the first accepted)."""
    pairs: list[StampedPair] = field(repr=False, default_factory=list)
    """Its window, oldest first (the newest one is used for overlays)."""


def check_intensity_policy(runtime: CalibrationRuntime | None) -> None:
    """Refuse a model card whose intensity policy would divide the pipeline's clouds twice.

    The pairs' clouds come through the PointCloud2 / PCD / dataset decoders, which already map
    intensity to [0, 1] (``pointcloud2.normalise_intensity``); a card with the fixed full-scale
    divisors ``byte`` / ``uint16`` (meant for raw arrays given to ``CalibrationRuntime``) would
    squash every intensity. ``fixed``, ``auto``, ``unit`` and ``percentile`` are right here.

    Raises:
        ValueError: one line naming the card and the policy.
    """
    pre = getattr(runtime, "preprocess_config", None)    # None before the node's model loads
    scale = pre.lidar_intensity.scale if pre is not None else "fixed"
    if scale in ("byte", "uint16"):
        raise ValueError(f"model card {runtime.card.name}: preprocess.lidar_intensity.scale {scale!r} is not "
                         f"supported on decoded clouds (they arrive in [0, 1]); use fixed, auto, unit or "
                         f"percentile (the Python API's CalibrationRuntime takes raw arrays with it)")


class CalibrationPipeline:
    """Pairing, per-frame estimation, prior gate, temporal fusion and refinement (module
    docstring; plain Python; not thread-safe)."""

    def __init__(self, runtime: CalibrationRuntime, pairing: PairingConfig | None = None,
                 fusion: FusionConfig | None = None, prior: Prior | None = None,
                 refinement: RefinementConfig | None = None, schedule: RefinementScheduleConfig | None = None,
                 deskew: DeskewConfig | None = None, travel: TravelCheckConfig | None = None):
        check_intensity_policy(runtime)
        self.runtime = runtime
        self.pairer: StampPairer[CameraFrame, LidarSweep] = StampPairer(pairing)
        self.fuser = ExtrinsicFuser(fusion)
        self.prior = prior
        """The prior (None: no gate; refinement only from a converged fusion). May be set later
        (the node's /tf_static prior arrives after start-up)."""
        self.refinement_config = refinement or RefinementConfig()
        self.schedule = schedule or RefinementScheduleConfig()
        self.travel_check = TravelCheck(travel)
        """Refuses per-frame estimates that drive the camera the wrong way (``crossi2p.travel_check``)."""
        self.deskewer = SweepDeskewer(deskew, track_motion=self.travel_check.config.enabled)
        """De-skews every sweep offered (``crossi2p.deskew``; off by default); a caller that builds
        pairs itself (``process``) passes its sweeps through ``deskew_sweep`` first, in stamp order."""
        self.rejected_outside_prior = 0
        """Per-frame estimates rejected because they were outside the prior's bounds."""
        self.prior_mismatch: str | None = None
        """Set (the reason) when the first pair's frame ids are not the frames the prior names
        (``prior_frame_mismatch``); the prior is then dropped (``prior`` becomes None)."""
        self.pairs_processed = 0
        """Pairs fused (valid or not) since the last reset."""
        self.pairs_unsynchronised = 0
        """Pairs not kept for the refinement: stamps further apart than ``max_pair_offset_s``."""
        self.pairs_time_compensated = 0
        """Pairs kept for the refinement with their sweep moved to the image's stamp
        (``RefinementScheduleConfig.compensate_pair_offset``)."""
        self.pairs_skewed = 0
        """Pairs not kept for the refinement: their sweep could not be de-skewed (``LidarSweep.skewed``)."""
        self.pairs_not_keyframes = 0
        """Pairs not kept for the refinement: the view had hardly changed since the last pair kept
        (``RefinementScheduleConfig.keyframe_parallax_px``)."""
        self.refinement_runs = 0
        self.last_refinement: RefinementRun | None = None
        """The newest refinement run, accepted or not."""
        self.refined_run: RefinementRun | None = None
        """The newest accepted refinement run (None before one, and after a drift event)."""
        self.first_refined_at: int | None = None
        """``pairs_processed`` when the first accepted refinement ran."""
        self._window: deque[StampedPair] = deque(maxlen=self.schedule.window_frames)
        self._keyframes = KeyframeSelector(self.schedule.keyframe_parallax_px, self.schedule.keyframe_max_gap_s)
        self._offered = 0          # synchronised pairs offered to the window since the last reset
        self._admit_every = 1      # window_span "spread": admit every n-th of them
        self._prepared: dict[int, tuple[np.ndarray, PreparedFrame]] = {}  # id(pair) -> (start, frame)
        self._pairs_since_refine = 0
        self._last_start_stage: EstimateStage | None = None
        self._drift_events = 0

    def offer_image(self, stamp_s: float, frame: CameraFrame) -> list[StampedPair]:
        """Queue a camera frame; returns the pairs that became final."""
        return self.pairer.add_image(stamp_s, frame)

    def offer_lidar(self, stamp_s: float, sweep: LidarSweep, deskewed: bool = False) -> list[StampedPair]:
        """De-skew a LiDAR sweep (``deskew_sweep``; ``deskewed``: the caller already did) and queue
        it; returns the pairs that became final."""
        return self.pairer.add_lidar(stamp_s, sweep if deskewed else self.deskew_sweep(stamp_s, sweep))

    def deskew_sweep(self, stamp_s: float, sweep: LidarSweep) -> LidarSweep:
        """The sweep stamped ``stamp_s`` with its points moved to the sensor's pose at the stamp
        (``crossi2p.deskew.SweepDeskewer``: every sweep, in stamp order; as given when off), and
        marked ``skewed`` when de-skewing is on but could not be done for it."""
        points = self.deskewer(stamp_s, sweep.points, sweep.times_s)
        skewed = self.deskewer.config.mode != "off" and self.deskewer.velocity is None
        last = self.deskewer.last_pose
        T_odom_lidar = last[1] if last is not None and last[0] == float(stamp_s) else None
        return LidarSweep(points, sweep.frame_id, skewed, T_odom_lidar=T_odom_lidar,
                          odometry_run=self.deskewer.odometry_run,
                          velocity=self.deskewer.odometry_velocity if T_odom_lidar is not None else None)

    def estimate(self, pair: StampedPair, T_prior: np.ndarray | None = None) -> FrameEstimate:
        """Per-frame estimate on one pair (the expensive step; touches no shared state)."""
        return self.runtime.estimate(pair.image.image_rgb, pair.lidar.points, pair.image.camera, T_prior)

    def fuse(self, pair: StampedPair, estimate: FrameEstimate) -> FrameOutcome:
        """Gate a per-frame estimate with the prior, fuse it (invalid estimates are not fused) and
        add the pair to the refinement window. A prior naming other frames than the pair's is
        dropped, with the reason in ``prior_mismatch``."""
        if self.prior is not None:
            self.prior_mismatch = prior_frame_mismatch(self.prior, pair.lidar.frame_id, pair.image.frame_id)
            if self.prior_mismatch is not None:
                self.prior = None
        if self.prior is not None and estimate.valid and estimate.T_cam_lidar is not None:
            reason = prior_violation(estimate.T_cam_lidar, self.prior)
            if reason is not None:
                estimate.valid, estimate.reason = False, reason
                self.rejected_outside_prior += 1
        if self.travel_check.config.enabled:
            travel = self.travel_check.check(
                pair.lidar_stamp_s, pair.image.image_rgb, pair.image.camera, pair.lidar.T_odom_lidar,
                pair.lidar.odometry_run, estimate.T_cam_lidar if estimate.valid else None)
            estimate.travel_angle_deg = travel.angle_deg
            if not travel.passed:
                estimate.valid, estimate.reason = False, travel.reason
        fused = bool(estimate.valid and self.fuser.add(estimate.T_cam_lidar, estimate.confidence,
                                                        pair.lidar_stamp_s))
        st = self.fuser.state
        if st.drift_events != self._drift_events:  # the camera moved: the old window and result are stale
            self._drift_events = st.drift_events
            self.refined_run = None
            self._clear_window()
        windowed = synchronised(pair, self.schedule)
        if windowed is None:
            self.pairs_unsynchronised += 1
        elif pair.lidar.skewed:
            self.pairs_skewed += 1
        elif not self._keyframes(pair.lidar_stamp_s, pair.image.image_rgb):
            self.pairs_not_keyframes += 1
        else:
            self.pairs_time_compensated += windowed is not pair
            self._add_to_window(windowed)
        self.pairs_processed += 1
        self._pairs_since_refine += 1
        snapshot = FusionState(**{**st.__dict__,
                                   "T_cam_lidar": None if st.T_cam_lidar is None else st.T_cam_lidar.copy(),
                                   "covariance": None if st.covariance is None else st.covariance.copy()})
        return FrameOutcome(pair, estimate, fused, snapshot)

    def process(self, pair: StampedPair, T_prior: np.ndarray | None = None) -> FrameOutcome:
        """``estimate`` then ``fuse``."""
        return self.fuse(pair, self.estimate(pair, T_prior))

    # ------------------------------------------------------------------ refinement
    def _add_to_window(self, pair: StampedPair) -> None:
        index, self._offered = self._offered, self._offered + 1
        if self.schedule.window_span == "spread":
            if index % self._admit_every:
                return
            if len(self._window) == self._window.maxlen:   # full: keep every other pair, admit half as often
                pairs = list(self._window)
                for dropped in pairs[1::2]:
                    self._prepared.pop(id(dropped), None)
                self._window = deque(pairs[::2], maxlen=self._window.maxlen)
                self._admit_every *= 2
                if index % self._admit_every:
                    return
        elif len(self._window) == self._window.maxlen:
            self._prepared.pop(id(self._window[0]), None)
        self._window.append(pair)

    def _clear_window(self) -> None:
        self._window.clear()
        self._keyframes.reset()
        self._prepared.clear()
        self._offered, self._admit_every = 0, 1

    def no_pair_to_refine_on(self, names: dict[str, str]) -> str:
        """Why a refinement that has a start has no pair in its window, in one line ('' when it has
        pairs or no start): every pair unsynchronised (``max_pair_offset_s``), or its sweep not
        de-skewable. ``names``: how the caller's users set ``max_pair_offset_s``,
        ``compensate_pair_offset`` and de-skewing off (a command's flags, the node's parameters)."""
        if self.refinement_start() is None or self._window or not (self.pairs_unsynchronised or self.pairs_skewed):
            return ""
        apart = (f"more than {self.schedule.max_pair_offset_s * 1000:.0f} ms apart ({names['max_pair_offset_s']}"
                 + ("" if self.schedule.compensate_pair_offset else
                    f"; {names['compensate_pair_offset']} moves their sweeps to the images' stamps") + ")")
        skewed = ("could not be de-skewed (too few points, or too few sweeps for the odometry, or no per-point time "
                  f"field for de-skewing by time; {names['deskew_off']} uses them as recorded)")
        if not self.pairs_skewed:
            return f"no pair to refine on: the image and LiDAR stamps of all {self.pairs_unsynchronised} pairs are {apart}"
        if not self.pairs_unsynchronised:
            return f"no pair to refine on: the sweeps of all {self.pairs_skewed} pairs {skewed}"
        return (f"no pair to refine on: the stamps of {self.pairs_unsynchronised} pairs are {apart}, the sweeps of "
                f"the other {self.pairs_skewed} {skewed}")

    @property
    def pairs_left_out(self) -> dict[str, int]:
        """Pairs kept out of the refinement window, by why: ``unsynchronised`` (stamps further apart
        than ``max_pair_offset_s``), ``not_deskewed`` (``LidarSweep.skewed``), ``not_keyframes``
        (the view had hardly changed: ``keyframe_parallax_px``)."""
        return {"unsynchronised": self.pairs_unsynchronised, "not_deskewed": self.pairs_skewed,
                "not_keyframes": self.pairs_not_keyframes}

    @property
    def window(self) -> list[StampedPair]:
        """The pairs kept for the refinement, oldest first."""
        return list(self._window)

    @property
    def refined(self) -> RefinementResult | None:
        """The newest accepted refinement (None before one, and after a drift event)."""
        return self.refined_run.result if self.refined_run is not None else None

    def refinement_start(self) -> tuple[np.ndarray, EstimateStage] | None:
        """``(T_start (4, 4), stage)``: the fused estimate once converged (``fused``), else the
        prior (``prior``), else None."""
        st = self.fuser.state
        if st.status == "converged" and st.T_cam_lidar is not None:
            return st.T_cam_lidar.copy(), "fused"
        if self.prior is not None:
            return self.prior.T_cam_lidar.copy(), "prior"
        return None

    def refinement_due(self) -> bool:
        """A start exists, the window holds ``min_window_frames`` pairs, and either it never ran,
        its start changed kind (prior -> fused) or ``every_frames`` pairs came since the last run."""
        if not self.schedule.enabled or len(self._window) < self.schedule.min_window_frames:
            return False
        start = self.refinement_start()
        if start is None:
            return False
        return (self.refinement_runs == 0 or start[1] != self._last_start_stage
                or self._pairs_since_refine >= self.schedule.every_frames)

    def plan_refinement(self) -> RefinementJob | None:
        """Snapshot the window and the start for one run (None without a start or a pair); resets
        the count of new pairs. Cheap; call under the caller's lock."""
        start = self.refinement_start()
        if start is None or not self._window:
            return None
        T_start, stage = start
        cfg = self.refinement_config
        if stage == "prior":  # the prior's bounds are the search box
            cfg = dataclasses.replace(cfg, max_rotation_deg=self.prior.max_rotation_deg,
                                      max_translation_m=self.prior.max_translation_m)
        else:                 # the converged fusion is close in rotation, loose in translation
            cfg = dataclasses.replace(cfg, max_rotation_deg=self.schedule.fused_max_rotation_deg,
                                      max_translation_m=self.schedule.fused_max_translation_m)
        pairs = list(self._window)
        prepared: list[PreparedFrame | None] = []
        for pair in pairs:
            cached = self._prepared.get(id(pair))
            near = cached is not None and _near(cached[0], T_start, self.schedule)
            prepared.append(cached[1] if near else None)
        self._pairs_since_refine = 0
        self._last_start_stage = stage
        # a re-run also descends from the accepted result it would replace: each run starts at
        # the fused estimate (independent of earlier runs), but must not lose a better solution
        # to it (drive 900303: runs at 0.02-0.05 m replaced by one at 0.46 m; docs/benchmarks.md 8)
        extra = [self.refined_run.result.T_cam_lidar.copy()] if self.refined_run is not None else []
        return RefinementJob(pairs, T_start, stage, cfg, prepared, self.pairs_processed, extra)

    def run_refinement(self, job: RefinementJob, progress: Progress | None = None,
                       rig: Sequence[RigCamera] = (), rig_points_per_camera: int = 0) -> RefinementResult:
        """Prepare what is not yet prepared and refine (the heavy part, seconds; touches no
        pipeline state). A result outside the prior's bounds is not accepted. ``progress``:
        called as ``progress("preparing frames", done, total)`` per frame prepared, then as
        ``refine_extrinsic`` calls it.

        ``rig``: the rig's other cameras, whose windows join this one (``RigCamera``): the result
        is still this camera's ``T_cam_lidar``; each of theirs is ``T_cam_ref @`` it. With a rig,
        ``rig_points_per_camera`` (> 0) sets the window's point budget to that many per camera
        (``RefinementConfig.max_window_points`` is for one camera's window)."""
        todo = [k for k, prepared in enumerate(job.prepared) if prepared is None]
        total = len(todo) + sum(len(cam.pairs) for cam in rig)
        for done, k in enumerate(todo, 1):
            pair = job.pairs[k]
            job.prepared[k] = prepare_frame(pair.image.image_rgb, pair.lidar.points, pair.image.camera,
                                            job.T_start, job.config)
            if progress is not None:
                progress("preparing frames", done, total)
        frames, config, done = list(job.prepared), job.config, len(todo)
        for cam in rig:
            for pair in cam.pairs:
                frames.append(prepare_frame(pair.image.image_rgb, pair.lidar.points, pair.image.camera,
                                            job.T_start, job.config, T_cam_ref=cam.T_cam_ref))
                done += 1
                if progress is not None:
                    progress("preparing frames", done, total)
        if rig and rig_points_per_camera > 0:
            config = dataclasses.replace(config, max_window_points=rig_points_per_camera * (1 + len(rig)))
        result = refine_extrinsic(frames, job.T_start, config, job.extra_starts, progress)
        if result.accepted and self.prior is not None:
            reason = prior_violation(result.T_cam_lidar, self.prior)
            if reason is not None:
                result.accepted, result.reason, result.T_cam_lidar = False, reason, job.T_start.copy()
        return result

    def apply_refinement(self, job: RefinementJob, result: RefinementResult) -> RefinementRun:
        """Record a run: keep its prepared frames; an accepted result becomes ``refined`` (a
        rejected one never replaces it)."""
        live = {id(p) for p in self._window}
        for pair, frame in zip(job.pairs, job.prepared):
            if frame is not None and id(pair) in live:
                self._prepared[id(pair)] = (job.T_start, frame)
        run = RefinementRun(result, job.start_stage, job.pairs_processed, job.pairs)
        self.refinement_runs += 1
        self.last_refinement = run
        if result.accepted:
            self.refined_run = run
            if self.first_refined_at is None:
                self.first_refined_at = job.pairs_processed
        return run

    def refine(self, progress: Progress | None = None, rig: Sequence[RigCamera] = (),
               rig_points_per_camera: int = 0) -> RefinementResult | None:
        """``plan_refinement`` + ``run_refinement`` (``progress``, ``rig`` and
        ``rig_points_per_camera`` as there) + ``apply_refinement``; None when there is no start
        (fusion not converged, no prior) or no pair yet."""
        job = self.plan_refinement()
        if job is None:
            return None
        result = self.run_refinement(job, progress, rig, rig_points_per_camera)
        self.apply_refinement(job, result)
        return result

    def published_estimate(self) -> tuple[np.ndarray | None, np.ndarray | None, EstimateStage | None]:
        """``(T_cam_lidar (4, 4), covariance (6, 6) or None, stage)`` to publish: the accepted
        refinement (``refined``), else the converged fusion (``fused``), else ``(None, None, None)``
        (the prior is not an estimate)."""
        if self.refined_run is not None:
            r = self.refined_run.result
            return r.T_cam_lidar.copy(), None if r.covariance is None else r.covariance.copy(), "refined"
        st = self.fuser.state
        if st.status == "converged" and st.T_cam_lidar is not None:
            return st.T_cam_lidar.copy(), None if st.covariance is None else st.covariance.copy(), "fused"
        return None, None, None

    def reset(self) -> None:
        """Forget queued messages, the fused estimate, the refinement window and result (the
        prior and the counters of rejections stay)."""
        self.pairer.reset()
        self.fuser.reset()
        self.travel_check.reset()
        self._clear_window()
        self.refined_run = self.last_refinement = None
        self.first_refined_at = None
        self.refinement_runs = self.pairs_processed = self._pairs_since_refine = self._drift_events = 0
        self._last_start_stage = None


def _near(T_a: np.ndarray, T_b: np.ndarray, schedule: RefinementScheduleConfig) -> bool:
    """Two starts close enough to share a prepared frame."""
    rot, trans = pose_distance(T_a, T_b)
    return rot <= schedule.reprepare_rotation_deg and trans <= schedule.reprepare_translation_m
