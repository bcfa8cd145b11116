"""The one preprocessing of a camera + LiDAR frame, shared by training, export checks, the ROS
node and the evaluators (numpy + OpenCV; no torch).

Image (``fit_image``), in this order:

1. **Undistort** to a pinhole camera (skipped when the camera has no distortion). The maps of
   ``cv2.initUndistortRectifyMap`` (``cv2.fisheye.initUndistortRectifyMap`` for
   ``equidistant``) are cached per camera. The pinhole camera keeps the source size; its K comes
   from ``cv2.getOptimalNewCameraMatrix`` (``alpha = undistort_alpha``) or, for fisheye,
   ``cv2.fisheye.estimateNewCameraMatrixForUndistortRectify`` (``balance = undistort_alpha``).
   With the default ``alpha = 0`` every output pixel has image content (no black borders).
2. **Resize to the target width** ``image_width`` with ``cv2.INTER_AREA``, keeping the aspect
   ratio: the resized height is ``round(h * image_width / w)``.
3. **Crop or pad rows** to ``image_height``. ``row_anchor = "bottom"`` (default) keeps the
   BOTTOM rows, dropping the top ones (mostly sky in driving data; the KITTI I2P papers crop
   the top as well); ``"center"`` and ``"top"`` keep the middle / top rows. When the resized
   image is shorter than ``image_height`` it is padded on the side opposite the anchor
   (``bottom`` pads at the top) with the mean colour, which is exactly 0 after step 4.
   ``PreprocessedFrame.valid_rows`` says which rows hold image content.
4. **Normalise**: ``(rgb / 255 - mean) / std``, channel-first float32.

The pinhole camera of the output image is returned (``camera``, ``K``): projecting a point
with it lands on the same image content as projecting with the original (distorted) camera
and following the pixel through steps 1-3 (tests/core/test_preprocess.py pins this).

Points (``select_points``): non-finite points dropped; points with range
``|xyz|`` outside ``[min_range_m, max_range_m]`` dropped (``0, 0, 0`` non-returns included);
intensity normalised to ``[0, 1]`` by the card's policy ``lidar_intensity``
(``normalise_lidar_intensity``, below); then exactly ``num_points`` are drawn with the caller's ``np.random.Generator``: without
replacement when enough remain, otherwise all of them plus repeats drawn with replacement. The
returned order is random (a permutation), which the network relies on only weakly (it samples its
fine points with a stride over the cloud, which is uniform over a random order and still spread
over a ring-ordered one). Points stay in the LiDAR frame: the network must not assume a pose.

``point_index`` maps every output point back to its row in the input cloud.

LiDAR intensity (``normalise_lidar_intensity``, the one home of these rules; the PointCloud2 /
PCD / nuScenes decoders' ``pointcloud2.normalise_intensity`` is its ``auto`` policy). Drivers write
intensity on different scales: KITTI reflectance in [0, 1], Velodyne / nuScenes 0..255, Ouster
16-bit 0..65535, some clouds have none. ``lidar_intensity.scale`` says how the card's network
wants it mapped to [0, 1] (the result is always clipped to [0, 1]; NaN and -inf become 0, +inf 1):

- ``fixed`` (default; what every card without the key does, the shipped ``crossi2p_cpu`` among
  them): multiply by ``intensity_scale``, clip. Exactly the behaviour before the policy existed.
- ``unit`` / ``byte`` / ``uint16``: divide by 1 / 255 / 65535.
- ``auto``: from the sweep's largest finite value: <= 1 read as ``unit``, <= 255 as ``byte``,
  larger divided by that maximum (``max``).
- ``percentile``: divide by the sweep's ``percentile``-th percentile of the positive values
  (robust to a few retro-reflectors; for uncalibrated signal units).

A cloud without intensity (3 columns) gets ``missing_value``. ``detect_intensity_scale`` names the
scale a sweep looks like (``missing``, ``unit``, ``byte``, ``uint16``, ``other``); the result
(``PreprocessedFrame.intensity_detected`` / ``intensity_applied``) is what the node's diagnostics
and ``crossi2p-calibrate`` report.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from .camera import CameraModel
from .config_schema import config_from_dict, config_to_dict

__all__ = [
    "LidarIntensityConfig",
    "PreprocessConfig",
    "detect_intensity_scale",
    "normalise_lidar_intensity",
    "PreprocessedFrame",
    "preprocess_frame",
    "fit_image",
    "select_points",
    "normalize_image",
    "pinhole_camera",
    "undistort_to_pinhole",
]

RowAnchor = Literal["bottom", "center", "top"]
IntensityScale = Literal["fixed", "auto", "unit", "byte", "uint16", "percentile"]
_INTENSITY_SCALES = ("fixed", "auto", "unit", "byte", "uint16", "percentile")
_FULL_SCALE = {"unit": 1.0, "byte": 255.0, "uint16": 65535.0}


@dataclass(frozen=True)
class LidarIntensityConfig:
    """How LiDAR intensity is mapped to the network's [0, 1] (the card's
    ``preprocess.lidar_intensity``; the module docstring lists the policies)."""

    scale: IntensityScale = "fixed"
    """``fixed`` (multiply by ``PreprocessConfig.intensity_scale``; the behaviour of cards
    without this key), ``unit`` (/1), ``byte`` (/255), ``uint16`` (/65535), ``auto`` (by the
    sweep's maximum: <= 1 unit, <= 255 byte, else / maximum) or ``percentile``."""
    percentile: float = 99.0
    """``percentile`` policy: the sweep's positive intensities are divided by this percentile
    of them (0 < p <= 100)."""
    missing_value: float = 0.0
    """Intensity given to every point of a cloud that has none (3 columns), in [0, 1]."""

    def __post_init__(self):
        if self.scale not in _INTENSITY_SCALES:
            raise ValueError(f"lidar_intensity.scale: expected one of {'|'.join(_INTENSITY_SCALES)}, "
                             f"got {self.scale!r}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"lidar_intensity.percentile: expected 0 < p <= 100, got {self.percentile}")
        if not 0.0 <= self.missing_value <= 1.0:
            raise ValueError(f"lidar_intensity.missing_value: expected a value in [0, 1], got {self.missing_value}")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a frame is turned into network inputs. Goes into the model card (``to_dict``)."""

    image_height: int = 160
    """Output image height in pixels (rows)."""
    image_width: int = 512
    """Output image width in pixels (columns); the image is resized to this width."""
    row_anchor: RowAnchor = "bottom"
    """Which rows are kept when cropping to ``image_height`` (``bottom``: the sky is dropped)."""
    undistort_alpha: float = 0.0
    """Free scaling of the undistorted pinhole camera: 0 = only valid pixels (zoomed in),
    1 = all source pixels kept (black borders). Fisheye: the ``balance`` of OpenCV."""
    mean_rgb: tuple[float, float, float] = (0.485, 0.456, 0.406)
    """Per-channel mean subtracted after scaling RGB to [0, 1]."""
    std_rgb: tuple[float, float, float] = (0.229, 0.224, 0.225)
    """Per-channel standard deviation divided by after subtracting the mean."""
    min_range_m: float = 1.0
    """Points closer than this to the LiDAR origin are dropped (metres)."""
    max_range_m: float = 80.0
    """Points farther than this from the LiDAR origin are dropped (metres)."""
    num_points: int = 8192
    """Exact number of points handed to the network (subsampled or repeat-padded)."""
    intensity_scale: float = 1.0
    """Multiplies the raw intensity before clipping to [0, 1] (e.g. 1/255 for 8-bit LiDARs);
    used by ``lidar_intensity.scale: fixed`` only (must stay 1 with the other policies)."""
    lidar_intensity: LidarIntensityConfig = field(default_factory=LidarIntensityConfig)
    """Per-sensor intensity normalisation policy (``LidarIntensityConfig``); absent from a card:
    ``fixed``, the behaviour before the key existed."""

    def __post_init__(self):
        if self.lidar_intensity.scale != "fixed" and self.intensity_scale != 1.0:
            raise ValueError(f"PreprocessConfig: intensity_scale {self.intensity_scale} applies only with "
                             f"lidar_intensity.scale: fixed, not {self.lidar_intensity.scale!r}")
        if self.image_height <= 0 or self.image_width <= 0:
            raise ValueError(f"PreprocessConfig: image size must be positive, got "
                             f"{self.image_width}x{self.image_height}")
        if self.row_anchor not in ("bottom", "center", "top"):
            raise ValueError(f"PreprocessConfig.row_anchor: expected bottom|center|top, got {self.row_anchor!r}")
        if not 0.0 <= self.min_range_m < self.max_range_m:
            raise ValueError(f"PreprocessConfig: need 0 <= min_range_m < max_range_m, got "
                             f"{self.min_range_m}, {self.max_range_m}")
        if self.num_points <= 0:
            raise ValueError(f"PreprocessConfig.num_points: must be positive, got {self.num_points}")
        if len(self.mean_rgb) != 3 or len(self.std_rgb) != 3 or min(self.std_rgb) <= 0:
            raise ValueError("PreprocessConfig: mean_rgb/std_rgb need 3 values, std > 0")
        object.__setattr__(self, "mean_rgb", tuple(float(v) for v in self.mean_rgb))
        object.__setattr__(self, "std_rgb", tuple(float(v) for v in self.std_rgb))

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls) -> "PreprocessConfig":
        """The KITTI I2P papers' input size: 160x512 images, 40960 points."""
        return cls(image_height=160, image_width=512, num_points=40960)

    @classmethod
    def cpu(cls) -> "PreprocessConfig":
        """Small inputs that train on 2 CPU cores and infer in < 100 ms there."""
        return cls(image_height=128, image_width=384, num_points=4096, max_range_m=60.0)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """Plain dict of builtins (lists for tuples), for YAML model cards and checkpoints."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """Inverse of ``to_dict``; missing keys take their defaults, unknown keys and wrong
        types are errors naming the key (``crossi2p.config_schema``)."""
        return config_from_dict(cls, d, "preprocess")


@dataclass
class PreprocessedFrame:
    """Network inputs of one frame (batch them by stacking along a new first axis)."""

    image: np.ndarray
    """(3, H, W) float32 normalised RGB of the pinhole image (``H, W = image_height, image_width``)."""
    points: np.ndarray
    """(N, 4) float32 ``x, y, z, intensity`` in the LiDAR frame, ``N = num_points``, random order."""
    K: np.ndarray
    """(3, 3) float32 intrinsics of the preprocessed (pinhole, resized, cropped) image."""
    point_index: np.ndarray
    """(N,) int64 row of each output point in the input cloud (repeats where padded)."""
    camera: CameraModel
    """Pinhole camera (``distortion_model="none"``) of ``image``; ``camera.K == K`` in float64."""
    valid_rows: tuple[int, int] = field(default=(0, 0))
    """``(first, last + 1)`` rows of ``image`` that hold image content (the rest is padding)."""
    intensity_detected: str = ""
    """The scale the input cloud's intensity looks like (``detect_intensity_scale`` over the
    points in range): ``missing``, ``unit``, ``byte``, ``uint16`` or ``other``."""
    intensity_applied: str = ""
    """The normalisation applied (``normalise_lidar_intensity``), e.g. ``fixed x1``, ``byte /255``,
    ``auto -> byte /255``, ``percentile 99 /1843``, ``missing -> 0``."""


# ---------------------------------------------------------------------------------- images
_MAP_CACHE: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray, CameraModel]]" = OrderedDict()
_MAP_CACHE_SIZE = 16
_MAP_LOCK = threading.Lock()


def _camera_key(camera: CameraModel, alpha: float) -> tuple:
    return (camera.K.tobytes(), camera.distortion.tobytes(), camera.distortion_model,
            camera.width, camera.height, float(alpha))


def pinhole_camera(camera: CameraModel, alpha: float = 0.0) -> CameraModel:
    """The pinhole camera (same size) that ``fit_image`` undistorts ``camera``'s images to."""
    if camera.distortion_model == "none":
        return camera
    return _undistort_maps(camera, alpha)[2]


def _undistort_maps(camera: CameraModel, alpha: float) -> tuple[np.ndarray, np.ndarray, CameraModel]:
    """Cached ``(map1, map2, pinhole camera)`` of cv2.remap for one camera."""
    key = _camera_key(camera, alpha)
    with _MAP_LOCK:
        hit = _MAP_CACHE.get(key)
        if hit is not None:
            _MAP_CACHE.move_to_end(key)
            return hit
    size = (camera.width, camera.height)
    if camera.is_fisheye:
        newK = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
            camera.K, camera.distortion, size, np.eye(3), balance=float(alpha), new_size=size)
        m1, m2 = cv2.fisheye.initUndistortRectifyMap(camera.K, camera.distortion, np.eye(3), newK,
                                                     size, cv2.CV_16SC2)
    else:
        newK, _ = cv2.getOptimalNewCameraMatrix(camera.K, camera.distortion, size, float(alpha), size)
        m1, m2 = cv2.initUndistortRectifyMap(camera.K, camera.distortion, None, newK, size, cv2.CV_16SC2)
    pin = CameraModel(np.asarray(newK, dtype=np.float64), camera.width, camera.height, "none")
    out = (m1, m2, pin)
    with _MAP_LOCK:
        _MAP_CACHE[key] = out
        while len(_MAP_CACHE) > _MAP_CACHE_SIZE:
            _MAP_CACHE.popitem(last=False)
    return out


def undistort_to_pinhole(image: np.ndarray, camera: CameraModel, alpha: float = 0.0
                        ) -> tuple[np.ndarray, CameraModel]:
    """Undistort an image to its pinhole camera (step 1 of ``fit_image``, full size).

    Args:
        image: (H, W, C) or (H, W) image matching ``camera``'s size.
        camera: any CameraInfo model; ``none`` is returned unchanged.
        alpha: OpenCV's free scaling (0: only valid pixels, 1: all source pixels).
    Returns:
        (image, pinhole camera) of the same size.
    Raises:
        ValueError: the image size does not match the camera.
    """
    img = np.asarray(image)
    if (img.ndim < 2) or (img.shape[1], img.shape[0]) != (camera.width, camera.height):
        raise ValueError(f"undistort: image is {img.shape} but the camera is {camera.width}x{camera.height}")
    if camera.distortion_model == "none":
        return img, camera
    m1, m2, cam = _undistort_maps(camera, alpha)
    return cv2.remap(img, m1, m2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT), cam


def fit_image(image: np.ndarray, camera: CameraModel, config: PreprocessConfig
              ) -> tuple[np.ndarray, CameraModel, tuple[int, int]]:
    """Undistort, resize to the target width, crop/pad rows (steps 1-3 of the module docstring).

    Args:
        image: (h, w, 3) uint8 RGB matching ``camera``'s size.
    Returns:
        rgb: (image_height, image_width, 3) uint8 RGB (padding rows are filled with the mean
            colour, which normalises to 0),
        camera: pinhole CameraModel of ``rgb``,
        valid_rows: ``(first, last + 1)`` rows holding image content.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"preprocess: image must be (H, W, 3) uint8 RGB, got shape {img.shape} "
                         f"dtype {img.dtype}")
    if (img.shape[1], img.shape[0]) != (camera.width, camera.height):
        raise ValueError(f"preprocess: image is {img.shape[1]}x{img.shape[0]} but the camera is "
                         f"{camera.width}x{camera.height}")
    # 1. undistort
    img, cam = undistort_to_pinhole(img, camera, config.undistort_alpha)
    # 2. resize to the target width
    W, H = config.image_width, config.image_height
    h_r = max(1, int(round(cam.height * W / cam.width)))
    if (W, h_r) != (cam.width, cam.height):
        interp = cv2.INTER_AREA if W < cam.width else cv2.INTER_LINEAR
        img = cv2.resize(img, (W, h_r), interpolation=interp)
        cam = cam.resized(W, h_r)
    # 3. crop / pad rows; top = first source row shown in output row 0 (negative: padding)
    extra = h_r - H
    top = {"bottom": extra, "center": extra // 2, "top": 0}[config.row_anchor]
    if extra < 0 and config.row_anchor == "center":
        top = -((-extra) // 2)
    out = np.empty((H, W, 3), dtype=np.uint8)
    out[:] = np.round(np.asarray(config.mean_rgb) * 255.0).clip(0, 255).astype(np.uint8)
    src0, src1 = max(top, 0), min(top + H, h_r)
    out[src0 - top:src1 - top] = img[src0:src1]
    cam = cam.cropped(0, top, W, H)
    return out, cam, (src0 - top, src1 - top)


def normalize_image(rgb: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 ``(rgb / 255 - mean) / std``."""
    x = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    x -= np.asarray(config.mean_rgb, dtype=np.float32)
    x /= np.asarray(config.std_rgb, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# ---------------------------------------------------------------------------------- points
def detect_intensity_scale(intensity: np.ndarray | None) -> str:
    """Name the scale a sweep's intensity values look like, from their largest finite value.

    Args:
        intensity: (N,) raw intensities of one sweep, or None when the cloud has no intensity.
    Returns:
        ``missing`` (None, empty, or no finite value above 0), ``unit`` (max <= 1), ``byte``
        (max <= 255), ``uint16`` (max <= 65535) or ``other``.
    """
    if intensity is None:
        return "missing"
    v = np.asarray(intensity, dtype=np.float64)
    v = v[np.isfinite(v)]
    top = float(v.max()) if v.size else 0.0
    if top <= 0.0:
        return "missing"
    if top <= 1.0:
        return "unit"
    if top <= 255.0:
        return "byte"
    return "uint16" if top <= 65535.0 else "other"


def _fmt(v: float) -> str:
    return f"{v:g}"


def normalise_lidar_intensity(intensity: np.ndarray | None, config: PreprocessConfig,
                              n: int | None = None) -> tuple[np.ndarray, str]:
    """Map one sweep's raw intensities to [0, 1] by ``config.lidar_intensity`` (module docstring).

    Per-sweep statistics (``auto``'s maximum, ``percentile``) are taken over all the values given,
    so pass the whole sweep (``select_points`` passes the points in range), not a subsample.

    Args:
        intensity: (N,) raw intensities, any real dtype; None when the cloud has no intensity.
        config: the preprocessing contract (``lidar_intensity``, ``intensity_scale``).
        n: number of points when ``intensity`` is None (the length of the returned array).
    Returns:
        values: (N,) float32 in [0, 1],
        applied: what was done, e.g. ``fixed x1``, ``auto -> byte /255``, ``missing -> 0``.
    Raises:
        ValueError: ``intensity`` is not one-dimensional, or None without ``n``.
    """
    li = config.lidar_intensity
    if intensity is None:
        if n is None:
            raise ValueError("normalise_lidar_intensity: no intensity and no point count n")
        return np.full(int(n), li.missing_value, np.float32), f"missing -> {_fmt(li.missing_value)}"
    raw = np.asarray(intensity)
    if raw.ndim != 1:
        raise ValueError(f"normalise_lidar_intensity: expected (N,) intensities, got shape {raw.shape}")
    if li.scale == "fixed":  # the contract before the policy existed, bit for bit
        x = raw.astype(np.float64) * config.intensity_scale
        out = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        return out.astype(np.float32), f"fixed x{_fmt(config.intensity_scale)}"
    if li.scale == "auto":  # pointcloud2.normalise_intensity's rule (float32 arithmetic kept)
        i = raw.astype(np.float32, copy=True)
        i[~np.isfinite(i)] = 0.0
        np.maximum(i, 0.0, out=i)
        top = float(i.max()) if i.size else 0.0
        if top > 255.0:
            i /= top
            return np.minimum(i, 1.0), f"auto -> max /{_fmt(top)}"
        if top > 1.0:
            i /= 255.0
            return np.minimum(i, 1.0), "auto -> byte /255"
        return i, "auto -> unit /1"
    x = raw.astype(np.float64)
    if li.scale == "percentile":
        pos = x[np.isfinite(x) & (x > 0)]
        divisor = float(np.percentile(pos, li.percentile)) if pos.size else 1.0
        applied = f"percentile {_fmt(li.percentile)} /{_fmt(divisor)}"
    else:
        divisor = _FULL_SCALE[li.scale]
        applied = f"{li.scale} /{_fmt(divisor)}"
    out = np.clip(np.nan_to_num(x / divisor, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return out.astype(np.float32), applied


def select_points(points: np.ndarray, config: PreprocessConfig, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Filter and draw exactly ``num_points`` points (see the module docstring).

    Args:
        points: (n, >=3) LiDAR points ``x, y, z[, intensity, ...]`` (a missing intensity is 0).
        rng: the generator drawing the subsample; same seed -> same output.
    Returns:
        points: (num_points, 4) float32 ``x, y, z, intensity`` (intensity in [0, 1] by
            ``config.lidar_intensity``),
        index: (num_points,) int64 rows of the input.
    Raises:
        ValueError: not (N, 3+), empty, all non-finite, or no point within the range crop.
    """
    out, idx, _, _ = _select_points(points, config, rng)
    return out, idx


def _select_points(points: np.ndarray, config: PreprocessConfig, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, str, str]:
    """``select_points`` plus the detected and applied intensity scales."""
    P = np.asarray(points)
    if P.ndim != 2 or P.shape[1] < 3:
        raise ValueError(f"preprocess: points must be (N, 3+) x, y, z[, intensity], got shape {P.shape}")
    if P.shape[0] == 0:
        raise ValueError("preprocess: the point cloud is empty")
    xyz = P[:, :3].astype(np.float64)
    finite = np.all(np.isfinite(xyz), axis=1)
    if not finite.any():
        raise ValueError(f"preprocess: all {P.shape[0]} points are NaN/Inf")
    rng_m = np.linalg.norm(np.where(finite[:, None], xyz, 0.0), axis=1)
    keep = np.flatnonzero(finite & (rng_m >= config.min_range_m) & (rng_m <= config.max_range_m))
    if keep.size == 0:
        raise ValueError(f"preprocess: no point within [{config.min_range_m}, {config.max_range_m}] m "
                         f"of the LiDAR (of {int(finite.sum())} finite points)")
    n = config.num_points
    if keep.size >= n:
        idx = keep[rng.choice(keep.size, size=n, replace=False)]
    else:
        extra = keep[rng.integers(0, keep.size, size=n - keep.size)]
        idx = np.concatenate([keep, extra])[rng.permutation(n)]
    out = np.zeros((n, 4), dtype=np.float32)
    out[:, :3] = xyz[idx]
    # intensity of the points in range (per-sweep statistics), then of the drawn rows
    raw = P[keep, 3] if P.shape[1] >= 4 else None
    detected = detect_intensity_scale(raw)
    values, applied = normalise_lidar_intensity(raw, config, n=keep.size)
    if P.shape[1] >= 4 or config.lidar_intensity.missing_value != 0.0:
        row = np.empty(P.shape[0], np.float32)
        row[keep] = values
        out[:, 3] = row[idx]
    return out, idx.astype(np.int64), detected, applied


# ---------------------------------------------------------------------------------- frame
def preprocess_frame(image: np.ndarray, points: np.ndarray, camera: CameraModel,
                     config: PreprocessConfig, rng: np.random.Generator) -> PreprocessedFrame:
    """Turn one captured frame into network inputs.

    Args:
        image: (h, w, 3) uint8 RGB as captured (distorted if ``camera`` has distortion).
        points: (n, 4) LiDAR points ``x, y, z, intensity`` in the LiDAR frame.
        camera: the capturing camera (size must match ``image``).
        config: the preprocessing contract (from the model card).
        rng: random generator of the point subsample (seeded -> reproducible).
    Raises:
        ValueError: wrong image shape/dtype/size, empty or all-NaN cloud, no point in range.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"preprocess: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    rgb, cam, valid_rows = fit_image(image, camera, config)
    pts, idx, detected, applied = _select_points(points, config, rng)
    x = normalize_image(rgb, config)
    x[:, :valid_rows[0]] = 0.0
    x[:, valid_rows[1]:] = 0.0
    return PreprocessedFrame(image=x, points=pts,
                             K=cam.K.astype(np.float32), point_index=idx, camera=cam,
                             valid_rows=valid_rows, intensity_detected=detected, intensity_applied=applied)
