"""Drives and independent frames: the simulator's public entry points.

- ``simulate_drive(config, seed, frames)``: a vehicle drives along a generated street; the
  LiDAR sweeps at its rate (``frames`` sweeps), the camera captures at its own rate over the
  same time span; ``SimDrive.paired_samples()`` pairs each sweep with the nearest image.
- ``simulate_sample(config, seed)``: one independent random frame (new street, rig and
  position; image and sweep at the same instant), the training data source.
- ``simulate_frame(config, seed)``: the same with the ground-truth buffers (depth / object id /
  material per pixel, object id / material per point), for tests and debugging.

Frames: world (x, y horizontal, z up); vehicle (x forward, y left, z up, on the ground);
LiDAR (x forward, y left, z up); camera optical (z forward, x right, y down).
Everything random comes from ``numpy.random.default_rng([seed, stream, ...])``: the same seed
gives identical arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from crossi2p.camera import CameraModel
from crossi2p.geometry import invert_transform, make_transform
from crossi2p.sample import Sample

from .config import RigConfig, SimConfig
from .lidar import LidarScan, lidar_rays, scan_lidar
from .mesh import TriangleSoup
from .raycast import SceneGeometry, StaticGeometry
from .render import CameraRender, render_camera
from .scene import Road, Scene, generate_scene

# random streams: [seed, stream, (frame)]
_SCENE, _RIG, _EGO, _MOUNTING, _CAMERA_NOISE, _LIDAR_NOISE = 1, 2, 3, 4, 10, 11
# the road and ground go on this far beyond the objects (the camera sees them; haze hides the end)
_FAR_M = 400.0
_OBJECT_MARGIN_M = 20.0

# LiDAR (x fwd, y left, z up) <- camera optical (z fwd, x right, y down): columns are the camera axes
R_LIDAR_CAM_NOMINAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


# ----------------------------------------------------------------------------------------- rig
@dataclass(frozen=True)
class SensorRig:
    """Sensor mounting: LiDAR on the vehicle, camera relative to the LiDAR."""

    T_vehicle_lidar: np.ndarray
    """(4, 4) LiDAR frame -> vehicle frame."""
    T_lidar_cam: np.ndarray
    """(4, 4) camera optical frame -> LiDAR frame."""

    @property
    def T_cam_lidar(self) -> np.ndarray:
        """(4, 4) the ground-truth extrinsic: LiDAR points -> camera optical frame."""
        return invert_transform(self.T_lidar_cam)


def make_rig(cfg: RigConfig, rng: np.random.Generator, mounting_rng: np.random.Generator | None = None) -> SensorRig:
    """The nominal rig of ``cfg`` with its per-seed random rotation and translation.

    ``mounting_rng`` draws the mounting randomisation (heading, tilt range, LiDAR height) when
    ``cfg`` asks for it; it is a stream of its own, so rigs without it are as they always were.
    """
    pitch_deg, yaw_deg, height_m = cfg.camera_pitch_deg, 0.0, cfg.lidar_height_m
    if mounting_rng is not None:
        if len(cfg.camera_yaw_choices_deg) > 1:
            yaw_deg = float(cfg.camera_yaw_choices_deg[mounting_rng.integers(len(cfg.camera_yaw_choices_deg))])
        else:
            yaw_deg = float(cfg.camera_yaw_choices_deg[0])
        if cfg.camera_pitch_range_deg is not None:
            pitch_deg = mounting_rng.uniform(*cfg.camera_pitch_range_deg)
        height_m += mounting_rng.uniform(-1, 1) * cfg.lidar_height_jitter_m
    heading = Rotation.from_euler("z", np.radians(yaw_deg))  # about the LiDAR's z (up)
    pitch = Rotation.from_euler("x", -np.radians(pitch_deg))  # positive pitch looks down
    jitter = Rotation.from_rotvec(np.radians(rng.uniform(-1, 1, 3) * cfg.rotation_jitter_deg))
    R = heading.as_matrix() @ R_LIDAR_CAM_NOMINAL @ (pitch * jitter).as_matrix()
    t = heading.apply(np.asarray(cfg.camera_offset_m, float)) + rng.uniform(-1, 1, 3) * cfg.translation_jitter_m
    return SensorRig(make_transform(np.eye(3), [0.0, 0.0, height_m]), make_transform(R, t))


def _seed_rig(cfg: RigConfig, seed: int) -> SensorRig:
    return make_rig(cfg, np.random.default_rng([seed, _RIG]), np.random.default_rng([seed, _MOUNTING]))


# ---------------------------------------------------------------------------------- trajectory
@dataclass(frozen=True)
class EgoTrajectory:
    """The ego vehicle along its lane at constant speed, weaving gently within the lane."""

    road: Road
    s0: float
    speed_mps: float
    lane_d: float
    weave_m: float
    weave_period_s: float
    weave_phase: float
    yaw_offset_rad: float = 0.0
    t0: float = 0.0

    def T_world_vehicle(self, t: float | np.ndarray) -> np.ndarray:
        """(4, 4) vehicle -> world at time t (or (N, 4, 4) for times (N,))."""
        tt = np.atleast_1d(np.asarray(t, float)) - self.t0
        w = 2 * np.pi / self.weave_period_s
        s = self.s0 + self.speed_mps * tt
        d = self.lane_d + self.weave_m * np.sin(w * tt + self.weave_phase)
        dd_ds = self.weave_m * w * np.cos(w * tt + self.weave_phase) / max(self.speed_mps, 1e-6)
        xy = self.road.point(s, d)
        _, h = self.road.frame(s)
        yaw = h + np.arctan(dd_ds) + self.yaw_offset_rad
        T = np.zeros((len(tt), 4, 4))
        c, sn = np.cos(yaw), np.sin(yaw)
        T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = c, -sn, sn, c
        T[:, 2, 2] = T[:, 3, 3] = 1.0
        T[:, 0, 3], T[:, 1, 3] = xy[:, 0], xy[:, 1]
        return T[0] if np.ndim(t) == 0 else T


# --------------------------------------------------------------------------------- the outputs
@dataclass
class SimDrive:
    """A simulated drive: camera frames and LiDAR sweeps, each at its own rate and stamps."""

    camera: CameraModel
    """Intrinsics and distortion of the images."""
    T_cam_lidar: np.ndarray
    """(4, 4) ground-truth extrinsic (LiDAR points -> camera optical frame), fixed for the drive."""
    camera_frames: list[tuple[float, np.ndarray]]
    """(stamp_s, (H, W, 3) uint8 RGB image) in time order."""
    lidar_sweeps: list[tuple[float, np.ndarray]]
    """(stamp_s, (N, 4) float32 x, y, z, intensity — (N, 5) with the per-point time relative to
    the stamp when ``LidarConfig.with_time``) in time order, points in the LiDAR frame."""
    seed: int = 0
    config: SimConfig = field(default_factory=SimConfig)
    T_world_lidar: list[np.ndarray] = field(default_factory=list)
    """(4, 4) LiDAR pose at each sweep stamp (world frame of the generated street)."""
    T_world_cam: list[np.ndarray] = field(default_factory=list)
    """(4, 4) camera pose at each image stamp."""
    camera_buffers: list[CameraRender] | None = None
    """Per image: depth / object id / material buffers (only with ``keep_buffers=True``)."""
    lidar_scans: list[LidarScan] | None = None
    """Per sweep: object id / material / true range per point (only with ``keep_buffers=True``)."""

    def paired_samples(self) -> list[Sample]:
        """Each LiDAR sweep with the camera frame closest in time (ties: the earlier frame).

        ``Sample.stamp_s`` is the image stamp, ``lidar_stamp_s`` the sweep stamp, ``frame_id``
        the sweep index (``000000``, ...). Points are (N, 4); with ``with_time`` the per-point
        times go to ``meta["point_time_s"]``.
        """
        cam_t = np.array([s for s, _ in self.camera_frames])
        out = []
        for k, (t_l, pts) in enumerate(self.lidar_sweeps):
            dt = np.abs(cam_t - t_l)
            j = int(np.flatnonzero(dt <= dt.min() + 1e-9)[0])  # ties (within 1 ns): the earlier image
            t_c, image = self.camera_frames[j]
            meta = {"source": "crossi2p_sim", "seed": self.seed, "lidar_index": k, "camera_index": j}
            if pts.shape[1] > 4:
                meta["point_time_s"] = pts[:, 4].copy()
            out.append(Sample(image=image, points=pts[:, :4], camera=self.camera, T_cam_lidar=self.T_cam_lidar.copy(),
                              stamp_s=float(t_c), lidar_stamp_s=float(t_l), frame_id=f"{k:06d}", meta=meta))
        return out


@dataclass
class SimFrame:
    """One independent frame with its ground truth."""

    sample: Sample
    render: CameraRender
    scan: LidarScan
    T_world_lidar: np.ndarray
    T_world_cam: np.ndarray
    scene: Scene


# ------------------------------------------------------------------------------ entry points
def _static_geometry(scene: Scene, include_traffic_at: float | None) -> StaticGeometry:
    soup = scene.static
    if include_traffic_at is not None:
        soup = TriangleSoup.concatenate([soup, scene.traffic.soup_at(include_traffic_at)])
    return StaticGeometry(soup, scene.markings(), scene.sun_direction)


class DriveSimulator:
    """A street generated for a drive, the ego trajectory along it and the sensor rig; renders
    the camera and scans the LiDAR at any stamp within the drive.

    Args:
        config: simulator configuration.
        seed: random seed (street, rig variation, speed, weave, sensor noise).
        duration_s: time span the street must cover after ``config.drive.start_time_s``.
    """

    def __init__(self, config: SimConfig, seed: int, duration_s: float):
        self.config, self.seed = config, seed
        cc, lc, dc = config.camera, config.lidar, config.drive
        self.rig = _seed_rig(config.rig, seed)
        ego_rng = np.random.default_rng([seed, _EGO])
        speed = ego_rng.uniform(*dc.speed_mps)
        self.t0 = dc.start_time_s
        reach = lc.max_range_m + _OBJECT_MARGIN_M
        span = duration_s + 1.0 / lc.rate_hz
        self.scene = generate_scene(config.scene, np.random.default_rng([seed, _SCENE]), -reach,
                                    speed * span + reach, _FAR_M, 0.0, speed, span)
        self.trajectory = EgoTrajectory(self.scene.road, 0.0, speed, self.scene.ego_lane_d, dc.lane_weave_m,
                                        ego_rng.uniform(*dc.weave_period_s), ego_rng.uniform(0, 2 * np.pi),
                                        t0=self.t0)
        self.static = _static_geometry(self.scene, None)
        self.camera = cc.camera_model()
        self._T_vehicle_cam = self.rig.T_vehicle_lidar @ self.rig.T_lidar_cam
        self._geometry: tuple[float, SceneGeometry] | None = None

    def geometry_at(self, t: float) -> SceneGeometry:
        """Static scene + the moving cars where they are at stamp ``t`` (the last one is cached)."""
        if self._geometry is None or self._geometry[0] != t:
            self._geometry = (t, self.static.with_dynamic(self.scene.traffic.soup_at(t - self.t0)))
        return self._geometry[1]

    def T_world_lidar(self, t: float) -> np.ndarray:
        return self.trajectory.T_world_vehicle(t) @ self.rig.T_vehicle_lidar

    def T_world_cam(self, t: float) -> np.ndarray:
        return self.trajectory.T_world_vehicle(t) @ self._T_vehicle_cam

    def render_camera(self, t: float, index: int) -> CameraRender:
        """The camera frame at stamp ``t``; ``index`` numbers its sensor noise."""
        return render_camera(self.geometry_at(t), self.camera, self.T_world_cam(t), self.config.camera,
                             np.random.default_rng([self.seed, _CAMERA_NOISE, index]))

    def scan_lidar(self, t: float, index: int) -> LidarScan:
        """The LiDAR sweep stamped ``t``; ``index`` numbers its noise."""
        lc = self.config.lidar
        if lc.motion_during_sweep:
            _, t_rel = lidar_rays(lc)
            pose = self.trajectory.T_world_vehicle(t + t_rel) @ self.rig.T_vehicle_lidar
        else:
            pose = self.T_world_lidar(t)
        return scan_lidar(self.geometry_at(t), lc, pose, np.random.default_rng([self.seed, _LIDAR_NOISE, index]))


def drive_stamps(config: SimConfig, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """LiDAR stamps (``frames``, at the LiDAR rate from ``start_time_s``) and camera stamps (at
    the camera rate from ``start_time_s + time_offset_s``, up to the last sweep stamp)."""
    cc, lc = config.camera, config.lidar
    t0 = config.drive.start_time_s
    lidar_t = t0 + np.arange(frames) / lc.rate_hz
    n_cam = int(np.floor((lidar_t[-1] - t0 - cc.time_offset_s) * cc.rate_hz + 1e-9)) + 1
    cam_t = t0 + cc.time_offset_s + np.arange(max(n_cam, 1)) / cc.rate_hz
    return lidar_t, cam_t


def simulate_drive(config: SimConfig, seed: int, frames: int, *, keep_buffers: bool = False,
                   progress: bool = False) -> SimDrive:
    """Simulate a drive of ``frames`` LiDAR sweeps (and the camera frames over the same span).

    Moving cars move between stamps (they are frozen during one sweep or exposure). Motion of
    the ego vehicle during a sweep is modelled only with ``LidarConfig.motion_during_sweep``.

    Args:
        keep_buffers: keep the depth / id buffers of each image and the per-point ground truth.
        progress: show a tqdm progress bar over the stamps.
    """
    if frames < 1:
        raise ValueError(f"simulate_drive: frames must be >= 1, got {frames}")
    lidar_t, cam_t = drive_stamps(config, frames)
    sim = DriveSimulator(config, seed, lidar_t[-1] - lidar_t[0])
    events = sorted([(t, 0, j) for j, t in enumerate(cam_t)] + [(t, 1, k) for k, t in enumerate(lidar_t)])
    drive = SimDrive(sim.camera, sim.rig.T_cam_lidar, [], [], seed, config,
                     camera_buffers=[] if keep_buffers else None, lidar_scans=[] if keep_buffers else None)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(events), desc=f"sim seed {seed}", unit="stamp")
    for t, kind, i in events:
        if kind == 0:
            r = sim.render_camera(t, i)
            drive.camera_frames.append((float(t), r.image))
            drive.T_world_cam.append(sim.T_world_cam(t))
            if keep_buffers:
                drive.camera_buffers.append(r)
        else:
            scan = sim.scan_lidar(t, i)
            drive.lidar_sweeps.append((float(t), scan.points))
            drive.T_world_lidar.append(sim.T_world_lidar(t))
            if keep_buffers:
                drive.lidar_scans.append(scan)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return drive


def simulate_frame(config: SimConfig, seed: int) -> SimFrame:
    """One independent random frame with its ground-truth buffers (see ``simulate_sample``)."""
    cc, lc = config.camera, config.lidar
    rig = _seed_rig(config.rig, seed)
    ego_rng = np.random.default_rng([seed, _EGO])
    reach = lc.max_range_m + _OBJECT_MARGIN_M
    scene = generate_scene(config.scene, np.random.default_rng([seed, _SCENE]), -reach, reach, _FAR_M, 0.0,
                           ego_rng.uniform(*config.drive.speed_mps), 0.0)
    traj = EgoTrajectory(scene.road, 0.0, 1.0, scene.ego_lane_d + ego_rng.uniform(-0.4, 0.4), 0.0, 1.0, 0.0,
                         yaw_offset_rad=np.radians(ego_rng.uniform(-3.0, 3.0)))
    geometry = _static_geometry(scene, 0.0).with_dynamic(None)
    camera = cc.camera_model()
    t = config.drive.start_time_s
    T_world_lidar = traj.T_world_vehicle(0.0) @ rig.T_vehicle_lidar
    T_world_cam = T_world_lidar @ rig.T_lidar_cam
    render = render_camera(geometry, camera, T_world_cam, cc, np.random.default_rng([seed, _CAMERA_NOISE]))
    scan = scan_lidar(geometry, lc, T_world_lidar, np.random.default_rng([seed, _LIDAR_NOISE]))
    meta = {"source": "crossi2p_sim", "seed": seed}
    if scan.points.shape[1] > 4:
        meta["point_time_s"] = scan.points[:, 4].copy()
    sample = Sample(image=render.image, points=scan.points[:, :4], camera=camera, T_cam_lidar=rig.T_cam_lidar,
                    stamp_s=t, lidar_stamp_s=t, frame_id=f"sim_{seed}", meta=meta)
    return SimFrame(sample, render, scan, T_world_lidar, T_world_cam, scene)


def simulate_sample(config: SimConfig, seed: int) -> Sample:
    """One independent random frame: a new street, rig variation and position for each seed;
    image and sweep at the same instant (no motion). ``T_cam_lidar`` is the ground truth."""
    return simulate_frame(config, seed).sample
