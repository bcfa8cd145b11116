"""Direction-of-travel check: does a per-frame estimate move the camera the way its images move?

A camera-LiDAR extrinsic ``T_cam_lidar`` maps the LiDAR's own motion between two sweeps into the
camera's motion between the two images taken with them (the hand-eye relation of motion-based
calibration: Taylor & Nieto, "Motion-based calibration of multimodal sensor extrinsics and timing
offset estimation", IEEE T-RO 2016):

    T_cam1_cam0 = T_cam_lidar @ T_lidar1_lidar0 @ inv(T_cam_lidar)

The images give the camera's direction of travel: with the camera's rotation between the two
taken from the same relation (the LiDAR odometry's rotation is accurate to a fraction of a degree),
features tracked from the older image to the newer one fix the direction of its translation, and
the cheirality test (the tracked points lie in front of the camera) fixes its sign (Hartley &
Zisserman, "Multiple View Geometry", 2nd ed., section 9.6; ``camera_travel_direction``).
An estimate whose predicted direction of travel points far from the images' own is wrong, however
well its single frame aligns. It is what tells the yaw flip apart, an estimate turned 180 deg about
the camera's vertical axis: on a street that looks alike ahead and behind, one frame's image and
LiDAR agree at both poses (docs/benchmarks.md section 9), but the flip has the camera drive
backwards.

What the check needs and when it says nothing (``TravelResult.angle_deg`` None; the estimate
keeps its validity):
- the LiDAR's motion from odometry (``crossi2p.deskew.SweepDeskewer``, KISS-ICP) for both sweeps,
  from one unbroken odometry run;
- an earlier frame of the same camera within ``max_gap_s`` over which the LiDAR travelled at least
  ``min_travel_m`` (a standing vehicle has no direction of travel);
- enough tracked features that move once de-rotated and agree on one direction
  (``min_inliers``).

The check observes the direction of the camera's translation only: two of the three rotation
axes (the two that tilt the direction of travel) and the sign. It is a gross-error test, with a
wide threshold (``max_angle_deg``), not a calibration cue: measured on the real KITTI sequence
its minimum lies 1-2 deg off in yaw (docs/benchmarks.md section 8, "A motion cue").

Frames: ``T_odom_lidar`` is the LiDAR's pose in the odometry frame; every direction here is in
the camera optical frame (x right, y down, z forward: REP 103's ``_optical`` convention).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from .camera import CameraModel
from .geometry import invert_transform

__all__ = ["REFUSAL_PREFIX", "describe_travel_check", "TravelCheckConfig", "TravelResult", "TravelCheck", "camera_travel_direction", "track_corners",
           "predicted_camera_motion", "angle_between_deg"]


REFUSAL_PREFIX = "direction of travel"
"""How the reason of an estimate the check refused begins (frames.csv, ``~/frame_estimates``)."""


@dataclass
class TravelCheckConfig:
    """When the direction-of-travel check runs and what it refuses (module docstring)."""

    enabled: bool = True
    """Refuse per-frame estimates under which the camera moves another way than its images show
    (a view turned around). The pipeline then also runs the LiDAR odometry (KISS-ICP) on every
    sweep."""
    max_angle_deg: float = 30.0
    """An estimate whose predicted direction of travel is further than this from the images' own
    is invalid. The ground truth measured 0-13 deg (8 simulated drives, 127 frames checked, median
    1 deg) and 0-12 deg (the real KITTI sequence, 56 frames, median 3 deg); the 180 deg flips
    168-180 deg; the truth turned 20 deg about the camera's vertical 14-32 deg (docs/benchmarks.md
    section 9)."""
    min_travel_m: float = 0.15
    """Least LiDAR travel between the two frames compared (odometry, metres): a standing vehicle
    has no direction of travel (the real KITTI sequence's last 20 frames, 0.01-0.06 m a frame while
    it stops, are left unchecked)."""
    max_gap_s: float = 2.0
    """The earlier frame is at most this much older (seconds)."""
    min_inliers: int = 30
    """Least tracked features that move once de-rotated and agree on the direction of travel."""
    history: int = 10
    """Earlier frames kept to compare with (the newest one far enough back is used)."""
    max_width_px: int = 640
    """Images are tracked at most this wide (the check needs a direction, not sub-pixel detail)."""
    max_corners: int = 800
    """Shi-Tomasi corners tracked from the earlier image."""

    def __post_init__(self) -> None:
        if not 0.0 < self.max_angle_deg <= 180.0:
            raise ValueError(f"TravelCheckConfig.max_angle_deg: expected (0, 180] degrees, got {self.max_angle_deg!r}")
        if not self.min_travel_m > 0.0:
            raise ValueError(f"TravelCheckConfig.min_travel_m: expected > 0 metres, got {self.min_travel_m!r}")
        if not self.max_gap_s > 0.0:
            raise ValueError(f"TravelCheckConfig.max_gap_s: expected > 0 seconds, got {self.max_gap_s!r}")
        for name in ("min_inliers", "history", "max_width_px", "max_corners"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TravelCheckConfig.{name}: expected >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class TravelResult:
    """The check's verdict on one estimate."""

    passed: bool
    """False: the estimate is to be marked invalid, for ``reason``."""
    angle_deg: float | None = None
    """Angle between the predicted and the images' direction of travel (None: not checked)."""
    reason: str = ""
    """Why the estimate failed, or why it was not checked."""


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees, [0, 180]) between two (3,) vectors (nan when either is zero)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / norm, -1.0, 1.0))))


def predicted_camera_motion(T_cam_lidar: np.ndarray, T_lidar1_lidar0: np.ndarray) -> np.ndarray:
    """``T_cam1_cam0 = T_cam_lidar @ T_lidar1_lidar0 @ inv(T_cam_lidar)``: the camera's motion the
    LiDAR's implies under a candidate extrinsic (hand-eye relation).

    Args:
        T_cam_lidar: (4, 4) candidate extrinsic (LiDAR -> camera optical).
        T_lidar1_lidar0: (4, 4) the LiDAR's motion: maps points in the earlier sweep's frame into
            the later one's (``inv(T_odom_lidar1) @ T_odom_lidar0``).
    Returns:
        (4, 4) with ``x_cam1 = R x_cam0 + t`` (metres; camera optical frame): the convention of
        ``camera_travel_direction``.
    """
    return T_cam_lidar @ T_lidar1_lidar0 @ invert_transform(T_cam_lidar)


def track_corners(grey0: np.ndarray, grey1: np.ndarray, max_corners: int = 800) -> tuple[np.ndarray, np.ndarray]:
    """Shi-Tomasi corners of ``grey0`` and where pyramidal Lucas-Kanade finds them in ``grey1``
    (OpenCV), kept when tracking back lands within 0.5 px of the start.

    Args:
        grey0, grey1: (H, W) uint8 grey images.
        max_corners: corners detected in ``grey0``.
    Returns:
        ``(p0, p1)``: (N, 2) pixels in ``grey0`` and ``grey1`` (N may be 0).
    """
    p0 = cv2.goodFeaturesToTrack(grey0, max_corners, 0.01, 7)
    if p0 is None or len(p0) == 0:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    lk = dict(winSize=(21, 21), maxLevel=3)
    p1, ok1, _ = cv2.calcOpticalFlowPyrLK(grey0, grey1, p0, None, **lk)
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(grey1, grey0, p1, None, **lk)
    ok = (ok1[:, 0] == 1) & (ok2[:, 0] == 1) & (np.linalg.norm(back - p0, axis=2)[:, 0] < 0.5)
    return p0[ok, 0], p1[ok, 0]


def camera_travel_direction(grey0: np.ndarray, grey1: np.ndarray, camera: CameraModel, R_cam1_cam0: np.ndarray,
                            max_corners: int = 800, threshold_px: float = 1.0,
                            seed: int = 0) -> tuple[np.ndarray | None, int]:
    """The camera's direction of travel from image 0 to image 1, given its rotation.

    Corners of ``grey0`` tracked into ``grey1`` (``track_corners``), undistorted by ``camera`` (any ``CameraModel``: pinhole
    with distortion, or fisheye) to rays ``x0``, ``x1``. With the rotation known, the epipolar
    constraint ``x1 . (t x R x0) = 0`` is linear in ``t``: each track gives one row
    ``(R x0) x x1`` orthogonal to ``t``, two tracks fix it (Hartley & Zisserman, "Multiple View
    Geometry", 2nd ed., section 9.6; the "known rotation" case of Kneip et al., BMVC 2012). RANSAC
    over pairs of tracks (epipolar distance ``threshold_px``), least squares on the inliers, and
    the sign from the cheirality test (the tracked points in front of the earlier view).
    Tracks that barely move once de-rotated (under 0.5 px) say nothing about ``t`` and are not
    counted. With the rotation given, the classic confusion of a small turn with a sideways
    step (OpenCV's 5-point ``findEssentialMat`` put a simulated 1.6 m step along the optical
    axis 60 deg sideways, 0.13 s between the frames) cannot happen. OpenCV has no solver for this
    case (its essential-matrix solvers estimate the rotation too), hence the few lines here.

    Args:
        grey0, grey1: (H, W) uint8 grey images of the same camera, ``camera``'s size.
        camera: the camera model of both images.
        R_cam1_cam0: (3, 3) the camera's rotation between the two (``x_cam1 = R x_cam0 + t``).
        max_corners: corners detected in ``grey0``.
        threshold_px: RANSAC inlier threshold, pixels.
        seed: RANSAC's random seed (the result is repeatable).
    Returns:
        ``(t, inliers)``: ``t`` (3,) unit vector with ``x_cam1 = R x_cam0 + t`` (camera optical
        frame; the camera centre moves along ``-R^T t``), or None when the geometry could not be
        estimated; ``inliers``: de-rotated tracks that moved and agree with ``t``.
    Raises:
        ValueError: images of different shapes, or not ``camera``'s size.
    """
    if grey0.shape != grey1.shape or grey0.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"camera_travel_direction: images {grey0.shape} and {grey1.shape}, expected both "
                         f"({camera.height}, {camera.width}) as the camera model says")
    p0, p1 = track_corners(grey0, grey1, max_corners)
    if len(p0) < 8:
        return None, 0
    f_px = max(camera.fx, camera.fy)
    x0 = np.c_[camera.undistort_pixels(p0), np.ones(len(p0))]
    x1 = np.c_[camera.undistort_pixels(p1), np.ones(len(p1))]
    Rx0 = x0 @ np.asarray(R_cam1_cam0, float).T
    derotated = Rx0[:, :2] / Rx0[:, 2:3]
    moved = (Rx0[:, 2] > 0) & (np.linalg.norm(x1[:, :2] - derotated, axis=1) * f_px > 0.5)
    Rx0, x1 = Rx0[moved], x1[moved]
    if len(x1) < 8:
        return None, 0
    A = np.cross(Rx0, x1)                                   # each row orthogonal to t

    def distances(t):                                       # epipolar distance of x1, pixels
        lines = np.cross(t, Rx0)
        return np.abs(np.einsum("ij,ij->i", x1, lines)) / np.maximum(np.linalg.norm(lines[:, :2], axis=1), 1e-12) * f_px

    rng = np.random.default_rng(seed)
    best = np.zeros(len(A), bool)
    for _ in range(200):
        i, j = rng.choice(len(A), 2, replace=False)
        t = np.cross(A[i], A[j])
        if np.linalg.norm(t) < 1e-12:
            continue
        inliers = distances(t / np.linalg.norm(t)) < threshold_px
        if inliers.sum() > best.sum():
            best = inliers
    if best.sum() < 2:
        return None, 0
    t = np.linalg.svd(A[best])[2][-1]                       # least squares on the inliers
    best = distances(t) < threshold_px
    # cheirality: depth of each point in the earlier view, z0 = -(x1 x t).(x1 x R x0) / |x1 x R x0|^2
    depth_sign = -np.einsum("ij,ij->i", np.cross(x1[best], t), -A[best])
    if np.median(depth_sign) < 0:
        t = -t
    return t / np.linalg.norm(t), int(best.sum())


def describe_travel_check(enabled: bool, checked: int, refused: int) -> str:
    """``TravelCheck.describe`` from its counts (the evaluators count them from frame reports)."""
    if not enabled:
        return "off"
    if not checked:
        return ("no estimate checked (the vehicle stood, or the LiDAR odometry had not locked on yet, or no "
                "estimate passed the earlier checks)")
    return f"{checked} estimate(s) checked, {refused} refused"


def _same_camera(a: CameraModel, b: CameraModel) -> bool:
    return ((a.width, a.height, a.distortion_model) == (b.width, b.height, b.distortion_model)
            and np.array_equal(a.K, b.K) and np.array_equal(a.distortion, b.distortion))


@dataclass
class _Seen:
    stamp_s: float
    grey: np.ndarray
    camera: CameraModel
    T_odom_lidar: np.ndarray
    odometry_run: int


class TravelCheck:
    """Checks per-frame estimates against the direction of travel (module docstring).

    Stateful: call ``check`` once per pair, in stamp order, valid estimate or not (every frame is
    remembered to compare later ones with). Not thread-safe.
    """

    def __init__(self, config: TravelCheckConfig | None = None):
        self.config = config or TravelCheckConfig()
        self._seen: deque[_Seen] = deque(maxlen=int(self.config.history))
        self.checked = 0
        """Estimates checked (a direction was measured)."""
        self.refused = 0
        """Estimates refused by the check."""

    def reset(self) -> None:
        """Forget the earlier frames (a new recording, or time jumped back)."""
        self._seen.clear()

    def describe(self) -> str:
        """One line for a summary: what the check did (``"off"``; ``"12 estimates checked, 2
        refused"``; none checked: the reasons it can have)."""
        return describe_travel_check(self.config.enabled, self.checked, self.refused)

    def _small(self, image_rgb: np.ndarray, camera: CameraModel) -> tuple[np.ndarray, CameraModel]:
        grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.config.max_width_px / grey.shape[1])
        if scale < 1.0:
            w, h = round(grey.shape[1] * scale), round(grey.shape[0] * scale)
            return cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA), camera.resized(w, h)
        return grey, camera

    def check(self, stamp_s: float, image_rgb: np.ndarray, camera: CameraModel,
              T_odom_lidar: np.ndarray | None, odometry_run: int,
              T_cam_lidar: np.ndarray | None) -> TravelResult:
        """Check one estimate and remember the frame.

        Args:
            stamp_s: the pair's LiDAR stamp, seconds.
            image_rgb: (H, W, 3) uint8 the pair's image.
            camera: its camera model.
            T_odom_lidar: (4, 4) the odometry's pose of the pair's sweep (None: none).
            odometry_run: which unbroken odometry run the pose belongs to (poses of different runs
                are not compared).
            T_cam_lidar: (4, 4) the estimate to check (None: only remember the frame).
        Returns:
            ``TravelResult``: passed, unless a direction was measured and the estimate's is more
            than ``max_angle_deg`` from it.
        """
        cfg = self.config
        if T_odom_lidar is None:
            return TravelResult(True, None, "no LiDAR odometry for this sweep")
        grey, small_camera = self._small(image_rgb, camera)
        earlier = self._earlier(stamp_s, small_camera, T_odom_lidar, odometry_run)
        if stamp_s > (self._seen[-1].stamp_s if self._seen else -np.inf):
            self._seen.append(_Seen(stamp_s, grey, small_camera, np.asarray(T_odom_lidar, float), odometry_run))
        if T_cam_lidar is None:
            return TravelResult(True, None, "no estimate")
        if earlier is None:
            return TravelResult(True, None, f"the LiDAR travelled less than {cfg.min_travel_m:g} m "
                                            f"within {cfg.max_gap_s:g} s")
        T_lidar1_lidar0 = invert_transform(T_odom_lidar) @ earlier.T_odom_lidar
        T_cam1_cam0 = predicted_camera_motion(T_cam_lidar, T_lidar1_lidar0)
        t_images, inliers = camera_travel_direction(earlier.grey, grey, small_camera, T_cam1_cam0[:3, :3],
                                                    cfg.max_corners)
        if t_images is None or inliers < cfg.min_inliers:
            return TravelResult(True, None, f"{inliers} tracked features agree on the camera's motion, "
                                            f"need {cfg.min_inliers}")
        angle = angle_between_deg(T_cam1_cam0[:3, 3], t_images)
        self.checked += 1
        if angle > cfg.max_angle_deg:
            self.refused += 1
            return TravelResult(False, angle, f"{REFUSAL_PREFIX}: under the estimate the camera moves "
                                              f"{angle:.0f} deg from the way its images move (max_angle_deg "
                                              f"{cfg.max_angle_deg:g}; a view turned around?)")
        return TravelResult(True, angle)

    def _earlier(self, stamp_s, camera, T_odom_lidar, odometry_run) -> _Seen | None:
        """The newest remembered frame the LiDAR travelled ``min_travel_m`` from, or None."""
        cfg = self.config
        for seen in reversed(self._seen):
            if not 0.0 < stamp_s - seen.stamp_s <= cfg.max_gap_s:
                continue
            if seen.odometry_run != odometry_run or not _same_camera(seen.camera, camera):
                continue
            travel = float(np.linalg.norm(seen.T_odom_lidar[:3, 3] - np.asarray(T_odom_lidar)[:3, 3]))
            if travel >= cfg.min_travel_m:
                return seen
        return None
