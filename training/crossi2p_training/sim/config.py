"""Configuration of the driving-scene simulator: one dataclass per component.

Ranges written as ``(low, high)`` tuples are drawn uniformly per seed (per drive, or per
independent sample), so one config describes a family of scenes and rigs. Every figure has its
unit in its name. ``SimConfig.preset(name)`` gives the named configurations (``PRESETS``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from crossi2p.camera import CameraModel

Range = tuple[float, float]

# KITTI colour camera: 1242x375, fx = fy ~ 720 px (81.6 deg horizontal field of view).
KITTI_WIDTH, KITTI_HEIGHT, KITTI_FOCAL_PX = 1242, 375, 720.0

# Beam elevation tables (degrees, top beam first) of the rigs the named presets imitate.
HDL64E_ELEVATIONS_DEG: tuple[float, ...] = tuple(
    [round(2.0 - k / 3.0, 3) for k in range(32)]
    + [round(-8.83 - k * (24.9 - 8.83) / 31.0, 3) for k in range(32)])
"""Velodyne HDL-64E (KITTI), nominal: an upper block of 32 lasers at 1/3 deg steps from +2.0 to
-8.333 deg and a lower block of 32 lasers at ~1/2 deg steps (0.518) from -8.83 to -24.9 deg
(KITTI's stated field of view: +2 .. -24.9 deg). A unit's own calibration (db.xml) differs by a
few tenths of a degree per laser."""
HDL32E_ELEVATIONS_DEG: tuple[float, ...] = (
    10.67, 9.33, 8.0, 6.67, 5.33, 4.0, 2.67, 1.33, 0.0, -1.33, -2.67, -4.0, -5.33, -6.67, -8.0, -9.33,
    -10.67, -12.0, -13.33, -14.67, -16.0, -17.33, -18.67, -20.0, -21.33, -22.67, -24.0, -25.33, -26.67,
    -28.0, -29.33, -30.67)
"""Velodyne HDL-32E (nuScenes): 32 lasers at 4/3 deg steps from +10.67 to -30.67 deg (the
manual's table, sorted top first; the sensor fires them interleaved)."""
OS1_128_ELEVATIONS_DEG: tuple[float, ...] = tuple(round(22.5 - k * 45.0 / 127.0, 4) for k in range(128))
"""Ouster OS1-128-like: 128 beams evenly spread over +22.5 .. -22.5 deg (45 deg field of view)."""


@dataclass(frozen=True)
class SceneConfig:
    """The procedural street: road cross-section, buildings, cars, street furniture, light."""

    lanes_per_direction: tuple[int, ...] = (1, 1, 2)
    """Choices for the number of driving lanes in each direction (one drawn per seed)."""
    lane_width_m: Range = (3.0, 3.75)
    """Width of one driving lane."""
    parking_lane_probability: float = 0.75
    """Chance that a side of the road has a parking lane (with parked cars) outside the lanes."""
    parking_lane_width_m: float = 2.2
    """Width of a parking lane."""
    parked_car_occupancy: Range = (0.4, 0.85)
    """Fraction of parking slots holding a car."""
    kerb_height_m: float = 0.15
    """Height of the kerb between road and sidewalk."""
    sidewalk_width_m: Range = (2.0, 4.5)
    """Width of the sidewalk on each side."""
    building_setback_m: Range = (0.0, 4.0)
    """Distance from the sidewalk's outer edge to a building front (a strip of ground)."""
    building_length_m: Range = (8.0, 28.0)
    """Length of a building along the road."""
    building_depth_m: Range = (8.0, 16.0)
    """Depth of a building away from the road."""
    building_floors: tuple[int, int] = (2, 6)
    """Number of floors (inclusive range)."""
    floor_height_m: Range = (2.8, 3.5)
    """Storey height (window rows repeat with it)."""
    building_gap_probability: float = 0.25
    """Chance of an open gap (ground, trees) instead of the next building."""
    tree_spacing_m: Range = (7.0, 16.0)
    """Spacing of street trees along the sidewalk (when a side has trees)."""
    street_tree_probability: float = 0.6
    """Chance that a side of the road has a row of street trees."""
    lamp_spacing_m: Range = (22.0, 40.0)
    """Spacing of street lamps along the road."""
    signs_per_100m: float = 2.0
    """Mean number of traffic signs per 100 m of road (both sides together)."""
    moving_cars_per_100m: float = 1.5
    """Mean number of moving cars per 100 m of road and direction."""
    zebra_crossings_per_100m: float = 0.3
    """Mean number of zebra crossings per 100 m of road."""
    max_curvature_per_m: float = 1.0 / 300.0
    """Largest road curvature (1/radius): gentle curves."""
    mesh_step_m: float = 2.0
    """Length of the road-surface mesh segments along the road."""
    side_extent_m: float = 180.0
    """How far the ground extends on each side of the road."""
    sun_elevation_deg: Range = (25.0, 60.0)
    """Elevation of the sun (its azimuth is uniform)."""
    hedge_probability: float = 0.0
    """Chance that a side of the road has hedges and bushes along the sidewalk's outer edge
    (vegetation at sensor height; 0: none, the default streets)."""
    clutter_per_100m: float = 0.0
    """Mean number of street-clutter items (bollards, bins, benches, railings) per 100 m of road,
    both sidewalks together."""
    overpass_probability: float = 0.0
    """Chance that a bridge crosses the street (deck 5-7 m above the road on pillars beside it)."""


@dataclass(frozen=True)
class CameraConfig:
    """The camera: intrinsics, distortion, rate and image formation."""

    width: int = KITTI_WIDTH
    """Image width in pixels."""
    height: int = KITTI_HEIGHT
    """Image height in pixels."""
    fx_px: float = KITTI_FOCAL_PX
    """Focal length along x in pixels."""
    fy_px: float | None = None
    """Focal length along y in pixels (``None``: same as ``fx_px``)."""
    cx_px: float | None = None
    """Principal point x in pixels (``None``: image centre, ``(width - 1) / 2``)."""
    cy_px: float | None = None
    """Principal point y in pixels (``None``: image centre, ``(height - 1) / 2``)."""
    distortion_model: Literal["none", "plumb_bob", "rational_polynomial", "equidistant"] = "none"
    """Distortion model, as sensor_msgs/CameraInfo (``equidistant`` is OpenCV's fisheye)."""
    distortion: tuple[float, ...] = ()
    """Distortion coefficients in OpenCV order for ``distortion_model``."""
    rate_hz: float = 15.0
    """Frame rate along a drive."""
    time_offset_s: float = 0.0
    """Stamp of the first camera frame relative to the first LiDAR sweep."""
    antialias: bool = False
    """Average 4 extra rays per pixel (5x the ray casting cost); the depth and id buffers
    always come from the ray through the pixel centre."""
    shadows: bool = True
    """Cast shadow rays toward the sun (about +25 % render time)."""
    pixel_noise_sigma: float = 1.5
    """Standard deviation of the additive sensor noise, in 8-bit grey levels."""

    def camera_model(self) -> CameraModel:
        """The ``CameraModel`` (intrinsics + distortion) of this configuration."""
        fx = float(self.fx_px)
        fy = float(self.fy_px) if self.fy_px is not None else fx
        cx = float(self.cx_px) if self.cx_px is not None else (self.width - 1) / 2.0
        cy = float(self.cy_px) if self.cy_px is not None else (self.height - 1) / 2.0
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return CameraModel(K, self.width, self.height, self.distortion_model, np.asarray(self.distortion, float))

    def scaled_to(self, width: int, height: int) -> "CameraConfig":
        """The same camera at another image size: focal lengths scale with the width (square
        pixels kept), the principal point goes to the new image centre."""
        s = width / self.width
        return dataclasses.replace(
            self, width=int(width), height=int(height), fx_px=self.fx_px * s,
            fy_px=None if self.fy_px is None else self.fy_px * s, cx_px=None, cy_px=None)


@dataclass(frozen=True)
class LidarConfig:
    """A rotating multi-beam LiDAR (Velodyne-like: spins clockwise seen from above)."""

    beams: int = 64
    """Number of laser beams (rows)."""
    elevation_max_deg: float = 2.0
    """Elevation of the top beam."""
    elevation_min_deg: float = -24.8
    """Elevation of the bottom beam (beams are evenly spaced in between unless
    ``elevation_table_deg`` is given)."""
    azimuth_step_deg: float = 0.2
    """Horizontal angle between firings (0.08 .. 0.35 for real sensors)."""
    max_range_m: float = 120.0
    """No return beyond this range."""
    min_range_m: float = 1.0
    """No return closer than this."""
    range_noise_m: float = 0.02
    """Standard deviation of the Gaussian range noise."""
    dropout_probability: float = 0.01
    """Chance that any return is lost (glass and grazing hits lose more)."""
    intensity_noise: float = 0.03
    """Standard deviation of the multiplicative intensity noise."""
    rate_hz: float = 10.0
    """Rotation (sweep) rate."""
    with_time: bool = False
    """Append a fifth column: each point's firing time relative to the sweep stamp (seconds,
    in [-0.5 / rate_hz, 0.5 / rate_hz); the stamp is when the beams face forward, +x)."""
    motion_during_sweep: bool = False
    """Fire each column from the vehicle pose at its own time (rolling-shutter skew, points in
    the sensor frame at firing time, as a raw driver outputs them). Off: the whole sweep is
    taken from the pose at the stamp (as if de-skewed to the stamp). Moving cars are frozen at
    the sweep stamp either way."""
    elevation_table_deg: tuple[float, ...] = ()
    """Elevation of each beam in degrees, top first, strictly decreasing (a real sensor's
    non-uniform table, e.g. ``HDL64E_ELEVATIONS_DEG``). Empty: ``beams`` evenly spaced from
    ``elevation_max_deg`` to ``elevation_min_deg``. Given: it must have ``beams`` entries and
    start / end at ``elevation_max_deg`` / ``elevation_min_deg`` (``from_elevation_table``
    sets all three)."""
    intensity_range_exponent: float = 0.0
    """Range fall-off of the returned intensity: multiplied by ``(ref / max(r, ref)) ** exponent``
    with ``ref = intensity_range_ref_m`` (2: an uncompensated signal, ~1/r^2; 0: a
    range-compensated reflectance, as KITTI's and Velodyne's calibrated intensities)."""
    intensity_range_ref_m: float = 10.0
    """Range up to which the intensity does not fall off (metres)."""
    intensity_units: Literal["unit", "byte", "uint16"] = "unit"
    """Scale of the intensity column as the imitated driver writes it: ``unit`` floats in
    [0, 1] (KITTI reflectance), ``byte`` integers 0..255 (Velodyne / nuScenes), ``uint16``
    integers 0..65535 (Ouster signal). Stored as float32 either way."""

    def __post_init__(self):
        table = tuple(float(v) for v in self.elevation_table_deg)
        object.__setattr__(self, "elevation_table_deg", table)
        if self.beams < 1:
            raise ValueError(f"LidarConfig.beams: must be >= 1, got {self.beams}")
        if table:
            if len(table) != self.beams:
                raise ValueError(f"LidarConfig.elevation_table_deg: {len(table)} entries for {self.beams} beams")
            if any(b >= a for a, b in zip(table, table[1:])):
                raise ValueError("LidarConfig.elevation_table_deg: must be strictly decreasing (top beam first)")
            if (table[0], table[-1]) != (self.elevation_max_deg, self.elevation_min_deg):
                raise ValueError(f"LidarConfig.elevation_table_deg: spans {table[0]} .. {table[-1]} deg but "
                                 f"elevation_max_deg / elevation_min_deg are {self.elevation_max_deg} / "
                                 f"{self.elevation_min_deg} (use LidarConfig.from_elevation_table)")
        if self.intensity_units not in ("unit", "byte", "uint16"):
            raise ValueError(f"LidarConfig.intensity_units: expected unit|byte|uint16, got {self.intensity_units!r}")
        if self.intensity_range_exponent < 0 or self.intensity_range_ref_m <= 0:
            raise ValueError("LidarConfig: need intensity_range_exponent >= 0 and intensity_range_ref_m > 0, got "
                             f"{self.intensity_range_exponent}, {self.intensity_range_ref_m}")

    @classmethod
    def from_elevation_table(cls, elevations_deg, **overrides) -> "LidarConfig":
        """A LiDAR whose beams follow ``elevations_deg`` (degrees, top first, strictly
        decreasing): sets ``beams``, ``elevation_max_deg``, ``elevation_min_deg`` and
        ``elevation_table_deg`` from it; ``overrides`` set the other fields.

        Raises:
            ValueError: an empty or non-decreasing table, or a bad override.
        """
        table = tuple(float(v) for v in elevations_deg)
        if not table:
            raise ValueError("LidarConfig.from_elevation_table: empty elevation table")
        return cls(**{**overrides, "beams": len(table), "elevation_max_deg": table[0],
                      "elevation_min_deg": table[-1], "elevation_table_deg": table})

    @classmethod
    def preset(cls, beams: int, **overrides) -> "LidarConfig":
        """Sensor presets: 32 (HDL-32E-like, +10.67 .. -30.67 deg), 64 (HDL-64E-like, +2 ..
        -24.8 deg, KITTI) and 128 beams (VLS-128-like, +15 .. -25 deg)."""
        table = {32: (10.67, -30.67), 64: (2.0, -24.8), 128: (15.0, -25.0)}
        if beams not in table:
            raise ValueError(f"lidar preset: expected 32, 64 or 128 beams, got {beams}")
        hi, lo = table[beams]
        return cls(**{"beams": beams, "elevation_max_deg": hi, "elevation_min_deg": lo, **overrides})

    def elevations_rad(self) -> np.ndarray:
        """(beams,) elevation of each beam in radians, top first (``elevation_table_deg`` when
        given, evenly spaced otherwise)."""
        if self.elevation_table_deg:
            return np.radians(np.asarray(self.elevation_table_deg, np.float64))
        return np.radians(np.linspace(self.elevation_max_deg, self.elevation_min_deg, self.beams))

    def azimuths_rad(self) -> np.ndarray:
        """(columns,) azimuth of each firing column in firing order: from behind (pi) clockwise
        seen from above (decreasing azimuth, LiDAR frame x forward / y left)."""
        n = int(round(360.0 / self.azimuth_step_deg))
        return np.pi - np.arange(n) * (2 * np.pi / n)


@dataclass(frozen=True)
class RigConfig:
    """Mounting of the sensors on the vehicle, and the per-seed rig variation."""

    lidar_height_m: float = 1.73
    """Height of the LiDAR above the ground (KITTI: 1.73 m)."""
    camera_offset_m: tuple[float, float, float] = (0.27, 0.0, -0.08)
    """Camera position in the LiDAR frame (x forward, y left, z up): ahead of and below the
    LiDAR, as KITTI's camera 0."""
    camera_pitch_deg: float = 0.0
    """Nominal downward tilt of the camera."""
    rotation_jitter_deg: float = 1.0
    """Per-seed random rotation of the camera about each axis, uniform in +/- this."""
    translation_jitter_m: float = 0.05
    """Per-seed random shift of the camera along each axis, uniform in +/- this."""
    camera_yaw_choices_deg: tuple[float, ...] = (0.0,)
    """Mountings: the headings a seed's camera is drawn from, uniformly (degrees about the LiDAR's
    z axis, positive to the left; 0 looks forward, 180 backward). The camera's offset turns with
    it (the camera at heading psi sits at ``Rz(psi) @ camera_offset_m``), as on a surround rig whose
    cameras ring the roof. One heading (the default) draws nothing."""
    camera_pitch_range_deg: Range | None = None
    """Geometric randomisation: the camera's downward tilt drawn per seed, uniform in this range,
    instead of ``camera_pitch_deg``."""
    lidar_height_jitter_m: float = 0.0
    """Geometric randomisation: per-seed change of ``lidar_height_m``, uniform in +/- this."""

    def __post_init__(self) -> None:
        if not self.camera_yaw_choices_deg:
            raise ValueError("RigConfig.camera_yaw_choices_deg: expected at least one heading, got none")


@dataclass(frozen=True)
class DriveConfig:
    """The ego vehicle's drive."""

    speed_mps: Range = (6.0, 12.0)
    """Constant driving speed."""
    lane_weave_m: float = 0.25
    """Amplitude of a slow sideways weave within the lane."""
    weave_period_s: Range = (6.0, 14.0)
    """Period of that weave."""
    start_time_s: float = 0.0
    """Stamp of the first LiDAR sweep."""


PRESETS = ("kitti", "lidar32", "lidar64", "lidar128", "small", "fisheye",
           "kitti_hdl64", "nuscenes_hdl32", "ouster_os1_128", "small_surround", "nuscenes_hdl32_surround",
           "small_varied", "kitti_hdl64_varied", "small_surround_varied", "nuscenes_hdl32_surround_varied")
"""Names ``SimConfig.preset`` knows. ``kitti_hdl64``, ``nuscenes_hdl32`` and ``ouster_os1_128`` are
named after the rig they imitate; the ``_surround`` ones mount the camera at any of a surround
rig's headings; the ``_varied`` ones add hedges, street clutter and overpasses to the street."""

NUSCENES_CAMERA_YAWS_DEG: tuple[float, ...] = (0.0, 55.0, -55.0, 110.0, -110.0, 180.0)
"""Nominal headings of nuScenes' six cameras (front, front-left/right, back-left/right, back; the
nuScenes sensor layout, Caesar et al., CVPR 2020), rounded to 5 deg."""

VARIED_SCENE = dict(hedge_probability=0.5, clutter_per_100m=14.0, overpass_probability=0.35)
"""The ``_varied`` presets' scenes (issue 14: vegetation, clutter, overpasses): hedges and bushes
on half the sidewalks, ~14 clutter items per 100 m, a bridge over the street in a third of them."""

SURROUND_RIG = dict(camera_yaw_choices_deg=NUSCENES_CAMERA_YAWS_DEG, camera_pitch_range_deg=(-2.0, 6.0),
                    rotation_jitter_deg=2.0, lidar_height_jitter_m=0.15)
"""The ``_surround`` presets' mounting randomisation (issue 14: several mountings, geometric
randomisation): a heading of the six-camera ring, a tilt of -2..6 deg, +-2 deg per-axis jitter,
the LiDAR +-0.15 m higher or lower."""


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator needs; ``SimConfig()`` is the KITTI-like default
    (1242x375 camera at 15 Hz, 64-beam LiDAR at 10 Hz)."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    """Procedural street."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    """Camera intrinsics, distortion, rate."""
    lidar: LidarConfig = field(default_factory=LidarConfig)
    """LiDAR beams, range, noise, rate."""
    rig: RigConfig = field(default_factory=RigConfig)
    """Sensor mounting and its per-seed variation."""
    drive: DriveConfig = field(default_factory=DriveConfig)
    """Ego vehicle motion."""

    @classmethod
    def preset(cls, name: str) -> "SimConfig":
        """Named configurations:

        - ``kitti`` / ``lidar64``: the default (1242x375, 64 beams, 0.2 deg azimuth step);
        - ``lidar32`` / ``lidar128``: KITTI camera with a 32- / 128-beam LiDAR;
        - ``small``: fast, for tests and training: 416x128 camera (same field of view),
          32 beams over the 64-beam elevation span, 0.35 deg step, 80 m range, no shadows;
        - ``fisheye``: 640x480 equidistant camera (~165 deg diagonal field of view), 64 beams.

        Rigs named after the sensors they imitate (non-uniform beam tables, the driver's
        intensity scale, the published camera sizes and mountings):

        - ``kitti_hdl64``: KITTI. Velodyne HDL-64E (``HDL64E_ELEVATIONS_DEG``: 64 beams, +2 ..
          -24.9 deg, 1/3 deg steps above -8.3 deg, ~1/2 deg below), 0.1728 deg azimuth step at
          10 Hz, reflectance in [0, 1]; rectified colour camera 1242x375, fx = fy = 721.5377 px,
          principal point (609.5593, 172.854) px (KITTI raw P_rect_02), 10 Hz; camera 0.27 m
          ahead of and 0.08 m below the LiDAR at 1.73 m.
        - ``nuscenes_hdl32``: nuScenes. Velodyne HDL-32E (``HDL32E_ELEVATIONS_DEG``: 32 beams,
          +10.67 .. -30.67 deg), 20 Hz, 0.33 deg azimuth step, intensity 0..255; front camera
          1600x900, fx = fy = 1266.4 px, principal point (816.3, 491.5) px, 12 Hz; LiDAR at
          1.84 m, camera 0.76 m ahead of and 0.33 m below it.
        - ``small_surround`` / ``nuscenes_hdl32_surround``: ``small`` / ``nuscenes_hdl32`` with the
          camera mounted at any heading of a six-camera ring (``SURROUND_RIG``); one camera per
          seed, with nuScenes' front-camera intrinsics at every heading (its rear camera is
          wider in reality).
        - ``..._varied`` (``small_varied``, ``kitti_hdl64_varied``, ``small_surround_varied``,
          ``nuscenes_hdl32_surround_varied``): the same rig in streets with hedges and bushes,
          bollards, bins, benches and railings, and bridges over the road (``VARIED_SCENE``).
        - ``ouster_os1_128``: an Ouster OS1-128-like LiDAR (``OS1_128_ELEVATIONS_DEG``: 128 beams
          evenly over +-22.5 deg), 2048 columns at 10 Hz, 16-bit signal intensity falling off
          as 1/r^2 beyond 5 m; 1920x1200 camera with strong barrel distortion (plumb_bob k1 =
          -0.25, corners moved ~560 px; ~97 deg horizontal field of view), fx = fy = 1100 px,
          10 Hz; LiDAR at 1.9 m, camera 0.15 m ahead of and 0.25 m below it.
        """
        if name in ("kitti", "lidar64"):
            return cls()
        if name == "lidar32":
            return cls(lidar=LidarConfig.preset(32))
        if name == "lidar128":
            return cls(lidar=LidarConfig.preset(128))
        if name == "small":
            return cls(camera=dataclasses.replace(CameraConfig().scaled_to(416, 128), shadows=False),
                       lidar=LidarConfig(beams=32, azimuth_step_deg=0.35, max_range_m=80.0))
        if name == "fisheye":
            return cls(camera=CameraConfig(width=640, height=480, fx_px=280.0,
                                           distortion_model="equidistant",
                                           distortion=(0.02, -0.005, 0.001, -0.0002)))
        if name == "kitti_hdl64":
            return cls(camera=CameraConfig(width=1242, height=375, fx_px=721.5377, cx_px=609.5593, cy_px=172.854,
                                           rate_hz=10.0),
                       lidar=LidarConfig.from_elevation_table(HDL64E_ELEVATIONS_DEG, azimuth_step_deg=0.1728))
        if name == "nuscenes_hdl32":
            return cls(camera=CameraConfig(width=1600, height=900, fx_px=1266.4, cx_px=816.3, cy_px=491.5,
                                           rate_hz=12.0),
                       lidar=LidarConfig.from_elevation_table(HDL32E_ELEVATIONS_DEG, azimuth_step_deg=0.33,
                                                              rate_hz=20.0, max_range_m=100.0,
                                                              intensity_units="byte"),
                       rig=RigConfig(lidar_height_m=1.84, camera_offset_m=(0.76, 0.0, -0.33)))
        if name == "ouster_os1_128":
            return cls(camera=CameraConfig(width=1920, height=1200, fx_px=1100.0, rate_hz=10.0,
                                           distortion_model="plumb_bob",
                                           distortion=(-0.25, 0.07, 0.0004, -0.0003, -0.01)),
                       lidar=LidarConfig.from_elevation_table(OS1_128_ELEVATIONS_DEG, azimuth_step_deg=360.0 / 2048,
                                                              range_noise_m=0.03, intensity_units="uint16",
                                                              intensity_range_exponent=2.0,
                                                              intensity_range_ref_m=5.0),
                       rig=RigConfig(lidar_height_m=1.9, camera_offset_m=(0.15, 0.0, -0.25)))
        if name.endswith("_varied") and name in PRESETS:
            base = cls.preset(name[:-len("_varied")])
            return base.replace(scene=dataclasses.replace(base.scene, **VARIED_SCENE))
        if name.endswith("_surround") and name in PRESETS:
            base = cls.preset(name[:-len("_surround")])
            return base.replace(rig=dataclasses.replace(base.rig, **SURROUND_RIG))
        raise ValueError(f"SimConfig.preset: unknown preset {name!r}; expected one of {PRESETS}")

    def replace(self, **changes) -> "SimConfig":
        """Copy with some components replaced (``config.replace(lidar=...)``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain nested dict (for provenance in sample metadata and written datasets)."""
        return dataclasses.asdict(self)
