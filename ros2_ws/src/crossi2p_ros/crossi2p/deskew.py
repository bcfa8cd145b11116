"""Motion compensation (de-skewing) of spinning-LiDAR sweeps, for the calibration's inputs.

A spinning LiDAR fires its columns over a whole revolution (0.1 s at 10 Hz) while the vehicle
moves: a raw sweep, as the KITTI raw ``velodyne_points`` and many ROS drivers give it, holds each
point in the sensor frame *at its own firing time*. The camera sees the scene at one instant. At
10 m/s the vehicle moves 1 m per revolution, so the points at the image's edges (fired some
12 ms before or after the camera was triggered) lie 0.1 m off, and a calibration fitted to them
absorbs that: measured on simulated KITTI-resolution drives with skewed sweeps, the refinement's
translation error triples (docs/benchmarks.md, section 8, "Skewed sweeps").

This module moves every point into the sensor frame at the sweep's stamp, with a constant-velocity
model (as KISS-ICP, Vizzo et al., RA-L 2023, and most LiDAR odometry do):

1. **Firing times** from each point's azimuth (mode ``azimuth``, ``sweep_times_from_azimuth``):
   the beams face ``stamp_azimuth_deg`` at the stamp and turn at ``rate_hz`` in the sensor's spin
   direction. KITTI raw stamps a sweep when the beams face forward (+x; its ``timestamps.txt``,
   the camera trigger), which is the default; a ROS driver that stamps at the end of the
   revolution needs the azimuth where it cuts the sweep. Or (mode ``time``) from the cloud's own
   per-point time field (``crossi2p.pointcloud2.structured_point_times``: Ouster, Velodyne,
   Livox, Hesai), which needs no convention and suits any scan pattern.
2. **Ego motion** from the sweeps themselves: KISS-ICP registers each sweep against a local map
   (no IMU or wheel odometry needed); the twist between the last two registered stamps is the
   velocity (averaged over the last ``velocity_sweeps``).
3. **De-skew** (``deskew_points``): a point fired ``tau`` seconds after the stamp is moved by the
   sensor's motion over ``tau``: ``p_stamp = Exp(tau * omega) p + tau * v``. The translation is
   interpolated linearly rather than through the SE(3) exponential: for a vehicle's rotation
   within one revolution (a few degrees) the difference is under a millimetre.

Only the geometry changes: the points keep their order, count and every other column
(intensity), so a de-skewed sweep drops in wherever the raw one went.

No installable package offers step 1 and 3 on arrays with columns kept (KISS-ICP de-skews
internally but returns range-cropped xyz only), hence the few lines here; step 2 is KISS-ICP's.

Frames: points are in the LiDAR frame (x forward, y left, z up: REP 103); azimuth is
``atan2(y, x)``, counter-clockwise seen from above; "clockwise" spin (Velodyne, Ouster, Hesai)
means the azimuth of the beams decreases with time.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from .geometry import check_transform, invert_transform, se3_log

__all__ = ["DeskewConfig", "SweepDeskewer", "sweep_times_from_azimuth", "deskew_points", "points_at_time",
           "describe_deskew", "DESKEW_MODES"]

DESKEW_MODES = ("off", "azimuth", "time")
"""``off``: sweeps are used as given (already de-skewed, or a standing vehicle). ``azimuth``:
firing times from each point's azimuth, ego motion from LiDAR odometry. ``time``: firing times
from the cloud's own per-point time field (``crossi2p.pointcloud2.POINT_TIME_FIELDS``), ego motion
from LiDAR odometry."""


@dataclass
class DeskewConfig:
    """How sweeps are de-skewed (module docstring)."""

    mode: Literal["off", "azimuth", "time"] = "off"
    """``off``: sweeps as given. ``azimuth``: each point's firing time from its azimuth; ``time``:
    from the cloud's per-point time field; the ego motion from KISS-ICP odometry over the sweeps. Off by default: applied to sweeps that are
    already de-skewed, or with the wrong stamp azimuth, it adds the error it is meant to remove."""
    rate_hz: float = 10.0
    """Revolutions per second of the LiDAR."""
    stamp_azimuth_deg: float = 0.0
    """Azimuth (degrees, ``atan2(y, x)`` in the LiDAR frame) the beams face at the sweep's stamp.
    0: forward, as KITTI raw stamps its sweeps (the camera trigger)."""
    clockwise: bool = True
    """Spin direction seen from above (Velodyne, Ouster and Hesai spin clockwise)."""
    voxel_size_m: float = 1.0
    """KISS-ICP's map voxel size (its default for outdoor driving data)."""
    min_range_m: float = 1.0
    """Points nearer than this are left out of the odometry (the vehicle's own body)."""
    max_range_m: float = 100.0
    """Points farther than this are left out of the odometry."""
    velocity_sweeps: int = 3
    """The velocity is the mean over the motion between the last this-many + 1 sweeps (odometry
    between two sweeps is noisy along a street; a vehicle's speed changes slowly)."""
    settled_min_sweeps: int = 10
    """``SweepDeskewer.odometry_velocity`` (moving a sweep to an image's stamp) is given only once
    the odometry has registered this many sweeps since it (re)started, and its speed has settled
    (``settled_speed_change``). KISS-ICP starts from zero velocity: on a simulated street at
    8.2 m/s its speed rose over 14 sweeps (1.7, 1.8, 2.2, ... 7.7, 8.1 m/s), and pairs moved with
    the early, low speed put the calibration 5-11 cm off (docs/benchmarks.md section 8, "Pairs
    moved to the image's stamp"); a steady ramp can look settled over 3 sweeps, hence the count."""
    settled_speed_change: float = 0.05
    """... and its last ``velocity_sweeps`` speeds lie within this fraction of their median, or
    within ``settled_speed_floor_mps``, whichever is larger."""
    settled_speed_floor_mps: float = 0.3
    """0.3 m/s of speed error moves a sweep 1 cm over a 33 ms offset (a 15 Hz camera's worst
    case). On the real KITTI sequence (about 2 m/s, braking) KISS-ICP's speed varies by 0.1-0.5 m/s
    from sweep to sweep, where 5 % alone (0.1 m/s) would never call it settled."""
    initial_threshold_m: float = 5.0
    """KISS-ICP's correspondence threshold before it has seen any motion (its own default, 2 m,
    is too tight for a vehicle already moving 1 m or more per sweep: started on simulated
    KITTI-like drives at 10-12 m/s it stayed stuck at about 0 m/s on 1 drive of 3; at 5 m it
    locked on within 2-3 sweeps on all 3)."""
    min_points: int = 1000
    """A sweep with fewer finite points is used as given and left out of the odometry (too
    sparse to register)."""
    max_speed_mps: float = 70.0
    """An odometry velocity above this (or a turn rate above 180 deg/s) is taken for a failed
    registration: the odometry restarts and that sweep is used as given."""
    max_gap_s: float = 0.5
    """A gap between sweeps longer than this restarts the odometry (its constant-velocity
    prediction no longer holds); that sweep is used as given."""
    odometry_max_points: int = 60000
    """With de-skewing off and the odometry run for the direction-of-travel check only
    (``SweepDeskewer.track_motion``), a sweep is registered with at most about this many points
    (every n-th): a real 113k-point HDL-64E sweep took 67 ms whole, 35 ms with every other point
    (KISS-ICP, 2 shared cores; 20 ms on idle ones); the direction it gives is the same."""

    def __post_init__(self) -> None:
        if self.mode not in DESKEW_MODES:
            raise ValueError(f"DeskewConfig.mode: expected one of {DESKEW_MODES}, got {self.mode!r}")
        if int(self.odometry_max_points) < 1:
            raise ValueError(f"DeskewConfig.odometry_max_points: expected >= 1, got {self.odometry_max_points!r}")
        if int(self.settled_min_sweeps) < 2 or not self.settled_speed_floor_mps >= 0:
            raise ValueError(f"DeskewConfig.settled_min_sweeps / settled_speed_floor_mps: expected >= 2 and >= 0, "
                             f"got {self.settled_min_sweeps!r} / {self.settled_speed_floor_mps!r}")
        if not 0 < self.settled_speed_change <= 1:
            raise ValueError(f"DeskewConfig.settled_speed_change: expected a fraction in (0, 1], "
                             f"got {self.settled_speed_change!r}")
        if int(self.velocity_sweeps) < 1:
            raise ValueError(f"DeskewConfig.velocity_sweeps: expected >= 1, got {self.velocity_sweeps!r}")
        if not 0 < self.rate_hz < np.inf:
            raise ValueError(f"DeskewConfig.rate_hz: expected > 0 revolutions per second, got {self.rate_hz!r}")
        if not np.isfinite(self.stamp_azimuth_deg):
            raise ValueError(f"DeskewConfig.stamp_azimuth_deg: expected a finite angle, got {self.stamp_azimuth_deg!r}")


def sweep_times_from_azimuth(points: np.ndarray, rate_hz: float, stamp_azimuth_deg: float = 0.0,
                             clockwise: bool = True) -> np.ndarray:
    """Firing time of each point of a spinning-LiDAR sweep, relative to the sweep's stamp.

    Args:
        points: (N, 3+) LiDAR-frame points (x, y, z first), metres.
        rate_hz: revolutions per second.
        stamp_azimuth_deg: azimuth the beams face at the stamp (``atan2(y, x)``, degrees).
        clockwise: spin direction seen from above (the beams' azimuth decreases with time).
    Returns:
        (N,) float64 seconds within +-0.5 / rate_hz: the revolution centred on the stamp (the
        KITTI convention: half the sweep fired before the stamp, half after).
    Raises:
        ValueError: malformed points or a rate that is not positive.
    """
    P = np.asarray(points)
    if P.ndim != 2 or P.shape[1] < 3:
        raise ValueError(f"sweep_times_from_azimuth: points must be (N, 3+), got shape {P.shape}")
    if not 0 < rate_hz < np.inf or not np.isfinite(stamp_azimuth_deg):
        raise ValueError(f"sweep_times_from_azimuth: rate_hz must be > 0 and finite and the stamp azimuth finite, "
                         f"got {rate_hz!r} and {stamp_azimuth_deg!r}")
    az = np.arctan2(P[:, 1].astype(np.float64), P[:, 0].astype(np.float64)) - np.radians(stamp_azimuth_deg)
    turned = np.angle(np.exp(1j * az))                      # (-pi, pi]: angle from the stamp's azimuth
    turned = np.where(turned == np.pi, -np.pi, turned)      # [-pi, pi)
    sign = -1.0 if clockwise else 1.0     # clockwise: what lies counter-clockwise of it fired before
    return sign * turned / (2.0 * np.pi * rate_hz)


def deskew_points(points: np.ndarray, times_s: np.ndarray, angular_velocity: np.ndarray,
                  linear_velocity: np.ndarray) -> np.ndarray:
    """Move each point from the sensor frame at its firing time into the sensor frame at the stamp.

    Constant velocity (the body twist of the sensor, in its own frame): the sensor at time ``tau``
    after the stamp is ``T_stamp_tau = (Exp(tau * omega), tau * v)``, so ``p_stamp = Exp(tau *
    omega) p_tau + tau * v`` (translation interpolated linearly: module docstring).

    Args:
        points: (N, 3+) LiDAR-frame points at their firing times; columns after the third
            (intensity, ...) are kept as they are.
        times_s: (N,) firing time of each point relative to the stamp, seconds.
        angular_velocity: (3,) rad/s, LiDAR frame.
        linear_velocity: (3,) m/s, LiDAR frame.
    Returns:
        (N, C) same dtype and columns as ``points``, x, y, z de-skewed.
    Raises:
        ValueError: shapes that do not match.
    """
    P = np.asarray(points)
    tau = np.asarray(times_s, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 3 or tau.shape != (len(P),):
        raise ValueError(f"deskew_points: expected points (N, 3+) and times (N,), got {P.shape} and {tau.shape}")
    w = np.asarray(angular_velocity, np.float64).reshape(3)
    v = np.asarray(linear_velocity, np.float64).reshape(3)
    out = P.copy()
    xyz = P[:, :3].astype(np.float64)
    out[:, :3] = Rotation.from_rotvec(tau[:, None] * w).apply(xyz) + tau[:, None] * v
    return out


def points_at_time(points: np.ndarray, dt_s: float, angular_velocity: np.ndarray,
                   linear_velocity: np.ndarray) -> np.ndarray:
    """Move a sweep's points from the sensor frame at its stamp into the sensor frame ``dt_s``
    later, e.g. at the stamp of an image taken then (a camera not triggered with the LiDAR).

    Constant velocity, as ``deskew_points``: the sensor ``dt_s`` after the stamp is ``(Exp(dt_s *
    omega), dt_s * v)`` in the stamp's frame, so ``p_dt = Exp(dt_s * omega)^-1 (p_stamp - dt_s * v)``.
    At 10 m/s an image 30 ms after the sweep sees the scene from 0.3 m further on; a calibration
    fitted without this absorbs it (docs/benchmarks.md section 8).

    Args:
        points: (N, 3+) LiDAR-frame points at the stamp (de-skewed); further columns are kept.
        dt_s: seconds from the stamp to the wanted instant (negative: before it).
        angular_velocity: (3,) rad/s, LiDAR frame.
        linear_velocity: (3,) m/s, LiDAR frame.
    Returns:
        (N, C) same dtype and columns as ``points``, x, y, z moved.
    Raises:
        ValueError: points not (N, 3+).
    """
    P = np.asarray(points)
    if P.ndim != 2 or P.shape[1] < 3:
        raise ValueError(f"points_at_time: expected points (N, 3+), got {P.shape}")
    w = np.asarray(angular_velocity, np.float64).reshape(3)
    v = np.asarray(linear_velocity, np.float64).reshape(3)
    out = P.copy()
    out[:, :3] = Rotation.from_rotvec(dt_s * w).inv().apply(P[:, :3].astype(np.float64) - dt_s * v)
    return out


def describe_deskew(summary: dict) -> str:
    """One line for people from ``SweepDeskewer.summary()`` (the CLIs' printed summaries, report.md)."""
    if summary["mode"] == "off":
        return "off (sweeps used as recorded)"
    return f"{summary['sweeps_deskewed']} sweeps de-skewed ({summary['mode']})"


class SweepDeskewer:
    """De-skews a stream of sweeps, in stamp order, with KISS-ICP odometry (module docstring).

    Stateful: feed every sweep of one LiDAR, oldest first (also those that never pair with an
    image: the odometry needs them all). The first sweep, and the first after a gap longer than
    ``max_gap_s``, are returned as given (no velocity yet).
    """

    def __init__(self, config: DeskewConfig | None = None, track_motion: bool = False):
        self.config = config or DeskewConfig()
        self.track_motion = track_motion
        """Run the odometry (``last_pose``) on every sweep even with ``mode`` off, for the
        direction-of-travel check (``crossi2p.travel_check``); the sweeps are then used as given.
        At most ``odometry_max_points`` of a sweep are registered then (a direction is all that
        check needs: on real KITTI sweeps every other point halves KISS-ICP's time)."""
        self.odometry_run = 0
        """Counts the odometry's restarts: poses of different runs are in different frames."""
        self._odometry = None
        self._poses: deque[tuple[float, np.ndarray]] = deque(maxlen=self.config.velocity_sweeps + 1)
        self._speeds: deque[float] = deque(maxlen=self.config.velocity_sweeps)
        """The odometry's last speeds (m/s), one per registered sweep (``odometry_velocity``)."""
        self._run_sweeps = 0
        """Sweeps registered since the odometry (re)started."""
        """(stamp, T_odom_lidar) of the last sweeps."""
        self.velocity: tuple[np.ndarray, np.ndarray] | None = None
        """(angular rad/s (3,), linear m/s (3,)) used for the last sweep, LiDAR frame (None: not
        de-skewed)."""
        self.sweeps_deskewed = 0

    @property
    def last_pose(self) -> tuple[float, np.ndarray] | None:
        """``(stamp_s, T_odom_lidar (4, 4))``: the odometry's pose of the last sweep it registered
        (KISS-ICP's, at mid-sweep), None before one or after a restart."""
        return self._poses[-1] if self._poses else None

    def summary(self) -> dict:
        """``{"mode", "sweeps_deskewed"}``: what was done (the CLIs' JSON key ``deskew``)."""
        return {"mode": self.config.mode, "sweeps_deskewed": self.sweeps_deskewed}

    def reset(self) -> None:
        """Forget the odometry (a new recording, or time jumped back)."""
        self._odometry, self.velocity = None, None
        self._poses.clear()
        self._speeds.clear()
        self._run_sweeps = 0
        self.odometry_run += 1

    def _new_odometry(self):
        # KISS-ICP: imported here, so that a node with de-skewing off never loads it
        from kiss_icp.config import KISSConfig
        from kiss_icp.kiss_icp import KissICP
        kiss = KISSConfig()
        kiss.data.min_range, kiss.data.max_range = self.config.min_range_m, self.config.max_range_m
        kiss.data.deskew = self.config.mode != "off"     # off: registered for track_motion only
        kiss.mapping.voxel_size = self.config.voxel_size_m
        kiss.adaptive_threshold.initial_threshold = self.config.initial_threshold_m
        return KissICP(config=kiss)

    def _restart_after_gap(self, stamp_s: float) -> None:
        if self._poses and not 0.0 < stamp_s - self._poses[-1][0] <= self.config.max_gap_s:
            self.reset()
        if self._odometry is None:
            self._odometry = self._new_odometry()

    def _twist(self) -> tuple[np.ndarray, np.ndarray]:
        """(angular rad/s (3,), linear m/s (3,)): the sensor's mean body twist over the poses kept
        (at least two), the linear part in the frame of the oldest of them (de-skewing uses it so;
        it differs from the newest's by the rotation over those sweeps, a few degrees at most)."""
        T_prev_cur, dt = self._motion()
        return Rotation.from_matrix(T_prev_cur[:3, :3]).as_rotvec() / dt, T_prev_cur[:3, 3] / dt

    def _motion(self) -> tuple[np.ndarray, float]:
        """``(T_first_last (4, 4), seconds)``: the motion from the first pose kept to the last."""
        (t_first, T_first), (t_last, T_last) = self._poses[0], self._poses[-1]
        return invert_transform(T_first) @ T_last, t_last - t_first

    @property
    def odometry_velocity(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(angular rad/s (3,), linear m/s (3,)): the constant body twist over the poses kept, so
        also at the last pose (where ``points_at_time`` moves a sweep from), whether the sweeps are
        de-skewed or only tracked (``track_motion``); None before ``settled_min_sweeps`` sweeps of
        one odometry run, and while its last speeds differ by more than ``settled_speed_change``
        (or ``settled_speed_floor_mps``)."""
        cfg = self.config
        if len(self._poses) < 2 or len(self._speeds) < self._speeds.maxlen or self._run_sweeps < cfg.settled_min_sweeps:
            return None
        speeds = np.asarray(self._speeds)
        if np.ptp(speeds) > max(cfg.settled_speed_change * float(np.median(speeds)), cfg.settled_speed_floor_mps):
            return None                       # still settling (KISS-ICP starts from rest), or braking hard
        return self._body_twist()

    def _body_twist(self) -> tuple[np.ndarray, np.ndarray]:
        """(angular rad/s (3,), linear m/s (3,)): the constant body twist that carries the first
        pose kept to the last (SE(3) log): the same in the frame of every pose along the way."""
        T_first_last, dt = self._motion()
        xi = se3_log(T_first_last) / dt
        return xi[3:], xi[:3]

    def _add_pose(self, stamp_s: float, T_odom_lidar: np.ndarray) -> None:
        """Keep a registered sweep's pose, and the odometry's speed then (``odometry_velocity``)."""
        self._poses.append((float(stamp_s), T_odom_lidar))
        self._run_sweeps += 1
        if len(self._poses) >= 2:
            self._speeds.append(float(np.linalg.norm(self._body_twist()[1])))

    def _track(self, stamp_s: float, P: np.ndarray) -> None:
        """Register a sweep with the odometry only (``track_motion`` with ``mode`` off)."""
        cfg = self.config
        xyz = P[np.isfinite(P[:, :3]).all(axis=1), :3]
        if len(xyz) < cfg.min_points:
            return
        every = -(-len(xyz) // cfg.odometry_max_points)              # ceil: at most odometry_max_points
        xyz = np.ascontiguousarray(xyz[::every], dtype=np.float64)
        self._restart_after_gap(stamp_s)
        self._odometry.register_frame(xyz, np.full(len(xyz), 0.5))   # times unused: KISS-ICP's de-skew is off
        T_odom_lidar = check_transform(np.asarray(self._odometry.last_pose, float), "KISS-ICP pose")
        if len(self._poses):
            t_last, T_last = self._poses[-1]
            step = np.linalg.norm((invert_transform(T_last) @ T_odom_lidar)[:3, 3])
            if step / max(stamp_s - t_last, 1e-9) > cfg.max_speed_mps:
                self.reset()                  # a registration that failed: start again
                return
        self._add_pose(stamp_s, T_odom_lidar)

    def __call__(self, stamp_s: float, points: np.ndarray, times_s: np.ndarray | None = None) -> np.ndarray:
        """The sweep stamped ``stamp_s`` de-skewed to its stamp.

        Args:
            stamp_s: the sweep's stamp, seconds.
            points: (N, 3+) LiDAR-frame points as fired (NaN rows allowed: left as they are).
            times_s: (N,) each point's firing time relative to the stamp, seconds (the cloud's
                time field; used in mode ``time``, where a sweep without it is used as given).
        Returns:
            (N, C) the same columns, x, y, z de-skewed (the input itself when ``mode`` is off,
            on the first sweep, after a gap, or in mode ``time`` without times).
        Raises:
            ValueError: malformed points, or times of another length.
        """
        cfg = self.config
        P = np.asarray(points)
        if P.ndim != 2 or P.shape[1] < 3:
            raise ValueError(f"SweepDeskewer: points must be (N, 3+), got shape {P.shape}")
        if times_s is not None and np.shape(times_s) != (len(P),):
            raise ValueError(f"SweepDeskewer: times must be ({len(P)},), got shape {np.shape(times_s)}")
        if cfg.mode == "off":
            if self.track_motion:
                self._track(stamp_s, P)
            return P
        finite = np.isfinite(P[:, :3]).all(axis=1)
        if cfg.mode == "time":
            if times_s is None:
                self.velocity = None
                return P
            finite &= np.isfinite(times_s)
        if finite.sum() < cfg.min_points:
            self.velocity = None
            return P
        self._restart_after_gap(stamp_s)
        tau = np.zeros(len(P))
        if cfg.mode == "time":
            tau[finite] = np.asarray(times_s, np.float64)[finite]
        else:
            tau[finite] = sweep_times_from_azimuth(P[finite], cfg.rate_hz, cfg.stamp_azimuth_deg, cfg.clockwise)
        xyz = np.ascontiguousarray(P[finite, :3], dtype=np.float64)
        # KISS-ICP's own de-skew takes times normalised to the sweep ([0, 1], its pose at 0.5): a
        # fixed offset between that pose and the stamp leaves the velocity between sweeps the same
        t = tau[finite]
        span = float(t.max() - t.min()) if len(t) else 0.0
        self._odometry.register_frame(xyz, (t - t.min()) / span if span > 0 else np.full(len(t), 0.5))
        T_odom_lidar = check_transform(np.asarray(self._odometry.last_pose, float), "KISS-ICP pose")
        self._add_pose(stamp_s, T_odom_lidar)
        if len(self._poses) < 2:
            self.velocity = None
            return P
        omega, v = self._twist()
        if np.linalg.norm(v) > cfg.max_speed_mps or np.linalg.norm(omega) > np.pi:
            self.reset()                      # a registration that failed: start again from this sweep
            return P
        self.velocity = (omega, v)
        out = P.copy()
        out[finite] = deskew_points(P[finite], tau[finite], omega, v)
        self.sweeps_deskewed += 1
        return out
