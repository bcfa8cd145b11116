"""Camera models of sensor_msgs/CameraInfo, projecting with OpenCV.

Supported ``distortion_model`` values (REP 104 / sensor_msgs/distortion_models.h):

- ``plumb_bob``: OpenCV ``(k1, k2, p1, p2, k3)``, projected with ``cv2.projectPoints``;
- ``rational_polynomial``: OpenCV ``(k1, k2, p1, p2, k3, k4, k5, k6)``, same function;
- ``equidistant``: OpenCV fisheye ``(k1, k2, k3, k4)``, ``cv2.fisheye.projectPoints``;
- ``none``: an ideal pinhole (empty distortion vector).

Pixels follow OpenCV: integer coordinates at pixel centres, so the image spans
``[-0.5, width - 0.5) x [-0.5, height - 0.5)``.

Points behind the camera, or outside the field of view where the polynomial distortion
stops being monotonic (it folds far-off points back into the image), are flagged invalid
instead of being projected to misleading pixels.

K has no skew: ``cv2.projectPoints``, ``cv2.undistortPoints`` and ``cv2.initUndistortRectifyMap``
read only ``fx, fy, cx, cy`` of the camera matrix and would silently ignore ``K[0, 1]``, so a
non-zero skew is refused with an error naming ``K[0,1]`` (a skew below ``1e-6 fx``, under a
thousandth of a pixel, is numerical noise and is set to 0).

Reading sensor_msgs/CameraInfo (``camera_from_camera_info``, the one conversion used by the
node, the bag reader and the tools) follows ROS's image_geometry ``PinholeCameraModel``:

- ``d`` goes to OpenCV as it is, so its length decides the model as it does for OpenCV:
  4/5 coefficients ``(k1, k2, p1, p2[, k3])``, 8 ``(+ k4, k5, k6)``, 12 / 14 (+ thin prism, tilt).
  ``plumb_bob`` with 8 or more coefficients whose extras are all zero is the 5-coefficient
  plumb_bob; with non-zero ``k4..k6`` it is read as OpenCV's 8-coefficient rational model
  (what image_geometry hands to OpenCV), with one warning; ``rational_polynomial`` with 8
  coefficients stays rational (with 5, the missing ``k4..k6`` are 0). Non-zero thin-prism or
  tilt terms (coefficients 9-14) are refused. ``equidistant`` takes 4.
- an empty ``distortion_model`` with coefficients is read by their count as OpenCV would
  (4/5: plumb_bob, 8: rational_polynomial), with one warning; empty with no or all-zero
  coefficients is a pinhole without distortion (all-zero coefficients of any model are too:
  image_geometry's "no distortion" state).
- an uncalibrated camera (``K`` all zeros, or a 0x0 image size) raises
  ``UncalibratedCameraError``; callers skip its images until a calibrated CameraInfo arrives.
- ``binning_x/y`` (0 = 1) and ``roi`` (all zeros = the full image) give the camera of the
  images actually published: the roi offset is subtracted from ``cx, cy`` first, then
  ``fx, cx`` are divided by ``binning_x`` and ``fy, cy`` by ``binning_y`` -- exactly
  image_geometry's arithmetic, with no half-pixel term (it puts a binned pixel's centre a
  quarter of an original pixel from where an area average would, e.g. ``cx = 1031.5`` at
  binning 2 becomes 515.75, not 515.5). The image size is ``roi.width // binning_x`` x
  ``roi.height // binning_y`` (image_geometry's reduced resolution).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import cv2
import numpy as np

from .log_once import warn_once

__all__ = [
    "CameraModel",
    "DistortionModel",
    "UncalibratedCameraError",
    "camera_from_camera_info",
    "camera_info_key",
    "distortion_model_name",
    "normalise_distortion",
]

DistortionModel = Literal["none", "plumb_bob", "rational_polynomial", "equidistant"]

_N_COEFFS = {"none": 0, "plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
_MIN_DEPTH_M = 1e-3
_SKEW_RTOL = 1e-6
"""|K[0,1]| up to this fraction of fx is numerical noise (under 1e-3 px for |y/z| < 1 and fx < 1000)."""
_log = logging.getLogger(__name__)

Note = Callable[[str], None]
"""Receives one-line warnings about how a CameraInfo was interpreted."""


class UncalibratedCameraError(ValueError):
    """A CameraInfo of an uncalibrated camera (K all zeros or a 0x0 image size): no model exists."""


_MODEL_ALIASES = {"radtan": "plumb_bob", "radial-tangential": "plumb_bob", "brown": "plumb_bob",
                  "opencv": "plumb_bob", "pinhole": "none", "null": "none", "": "none",
                  "fisheye": "equidistant", "kannala_brandt": "equidistant", "kb4": "equidistant",
                  "equi": "equidistant", "rational": "rational_polynomial"}


def distortion_model_name(name: str | None) -> str:
    """Distortion model names seen in the wild -> the CameraInfo name ``CameraModel`` takes.

    Only the first word counts (``"radtan (OpenCV plumb_bob: ...)"`` -> ``plumb_bob``); an empty
    name gives ``none`` (``normalise_distortion`` reads an empty name with coefficients by their count).
    """
    word = (str(name).strip().split() or ["none"])[0].strip("(),;:").lower() if name else "none"
    return _MODEL_ALIASES.get(word, word)


def _default_note(message: str) -> None:
    warn_once(("camera", message), message, _log)


def normalise_distortion(distortion_model: str | None, d, on_note: Note | None = None,
                         source: str = "camera", d_name: str = "d") -> tuple[str, np.ndarray]:
    """CameraInfo-style ``(distortion_model, d)`` -> the ``(model, coefficients)`` ``CameraModel`` takes.

    The rules (module docstring) are OpenCV's reading of the coefficient vector, which is what
    image_geometry does with CameraInfo. ``on_note`` receives a one-line warning when the
    reading is not the literal one (default: logged once per distinct warning).
    Raises ``ValueError`` naming ``source`` and the field (``distortion_model``, or ``d_name`` for
    the coefficients) for a model or coefficient count that has no reading.
    """
    note = on_note or _default_note
    raw = "" if distortion_model is None else str(distortion_model).strip()
    D = np.asarray(d if d is not None else [], dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(D)):
        raise ValueError(f"{source} {d_name}: distortion coefficients must be finite, got {D.tolist()}")
    nonzero = bool(np.any(D != 0.0))
    if not raw:
        if not nonzero:
            return "none", np.zeros(0)
        by_count = {4: "plumb_bob", 5: "plumb_bob", 8: "rational_polynomial", 12: "rational_polynomial",
                    14: "rational_polynomial"}
        if D.size not in by_count:
            raise ValueError(f"{source} distortion_model: empty, with {D.size} coefficients (expected plumb_bob's "
                             f"4/5 or OpenCV's 8/12/14 to read an empty model by count)")
        model = by_count[D.size]
        note(f"{source}: empty distortion_model with {D.size} coefficients, read as {model} (OpenCV's "
             f"reading of {D.size} coefficients)")
    else:
        model = distortion_model_name(raw)
        if model not in _N_COEFFS:
            raise ValueError(f"{source} distortion_model: expected one of plumb_bob, rational_polynomial, "
                             f"equidistant (or empty), got {raw!r}")
    if model == "none":
        if nonzero:
            raise ValueError(f"{source} distortion_model {raw!r} (no distortion) has non-zero coefficients "
                             f"{D.tolist()}")
        return "none", np.zeros(0)
    if not nonzero:
        return "none", np.zeros(0)  # image_geometry: all-zero coefficients = no distortion
    if model == "equidistant":
        if D.size < 4 or np.any(D[4:] != 0.0):
            raise ValueError(f"{source} {d_name}: equidistant (OpenCV fisheye) takes 4 coefficients k1..k4, got "
                             f"{D.size}: {D.tolist()}")
        return "equidistant", D[:4].copy()
    # plumb_bob / rational_polynomial: OpenCV's vector (k1, k2, p1, p2[, k3[, k4, k5, k6[, s1..s4[, tx, ty]]]]).
    if D.size not in (4, 5, 8, 12, 14):
        raise ValueError(f"{source} {d_name}: {model} with {D.size} coefficients; OpenCV reads 4, 5, 8, 12 or 14 "
                         f"(k1, k2, p1, p2, k3, k4, k5, k6, s1..s4, tau_x, tau_y)")
    if np.any(D[8:] != 0.0):
        raise ValueError(f"{source} {d_name}: thin-prism/tilt coefficients (9th to 14th: s1..s4, tau_x, tau_y) "
                         f"{D[8:].tolist()} are non-zero; only the 8-coefficient OpenCV model is supported")
    full = np.zeros(8)
    full[:min(D.size, 8)] = D[:8]
    if model == "rational_polynomial":
        return model, full
    if np.any(full[5:] != 0.0):
        note(f"{source}: plumb_bob with {D.size} coefficients and non-zero k4..k6 {full[5:].tolist()}: read as "
             f"OpenCV's 8-coefficient rational model, as image_geometry passes them to OpenCV")
        return "rational_polynomial", full
    return "plumb_bob", full[:5]


@dataclass(frozen=True)
class CameraModel:
    """A calibrated camera (intrinsics + distortion), as in sensor_msgs/CameraInfo."""

    K: np.ndarray
    """(3, 3) intrinsic matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    distortion_model: DistortionModel = "none"
    """One of ``none``, ``plumb_bob``, ``rational_polynomial``, ``equidistant``."""
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Distortion coefficients in OpenCV order (see module docstring)."""

    def __post_init__(self):
        K = np.array(self.K, dtype=np.float64)
        D = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"camera K: expected a finite 3x3 matrix with fx, fy > 0, got {K.tolist()}")
        if abs(K[0, 1]) > _SKEW_RTOL * K[0, 0]:
            raise ValueError(f"camera K[0,1] (skew) = {K[0, 1]:g} is not supported: OpenCV's projectPoints/"
                             f"undistortPoints ignore it; expected 0 (|K[0,1]| <= {_SKEW_RTOL:g} fx)")
        K[0, 1] = 0.0
        if np.any(np.abs(K[[1, 2, 2], [0, 0, 1]]) > 1e-9) or abs(K[2, 2] - 1.0) > 1e-9:
            raise ValueError(f"camera K: expected the last row [0, 0, 1] and K[1,0] = 0, got {K.tolist()}")
        if self.distortion_model not in _N_COEFFS:
            raise ValueError(f"camera distortion_model: expected one of {sorted(_N_COEFFS)}, "
                             f"got {self.distortion_model!r}")
        if self.distortion_model == "plumb_bob" and D.size == 4:
            D = np.append(D, 0.0)
        if self.distortion_model == "none" and D.size and np.allclose(D, 0.0):
            D = np.zeros(0)
        if D.size != _N_COEFFS[self.distortion_model]:
            raise ValueError(f"camera distortion: model {self.distortion_model!r} expects "
                             f"{_N_COEFFS[self.distortion_model]} coefficients, got {D.size}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"camera size: expected positive width/height, got {self.width}x{self.height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "distortion", D)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_camera_info(cls, k, d, distortion_model: str, width: int, height: int, binning_x: int = 0,
                         binning_y: int = 0, roi: tuple[int, int, int, int] | None = None,
                         on_note: Note | None = None, source: str = "CameraInfo") -> "CameraModel":
        """The camera of the images published with a sensor_msgs/CameraInfo, from its fields.

        Args:
            k: 9 values, row-major K of the full-resolution (unbinned) sensor, pixels.
            d: distortion coefficients (OpenCV order); read by ``normalise_distortion``.
            distortion_model: CameraInfo's name (``plumb_bob``, ``rational_polynomial``,
                ``equidistant``; empty: by coefficient count).
            width, height: the calibrated (full) resolution, pixels.
            binning_x, binning_y: 0 or 1 = no binning.
            roi: ``(x_offset, y_offset, width, height)`` in full-resolution pixels; all zeros or
                None = the full image.
            on_note: receives one-line warnings on non-literal readings (default: logged once).
            source: names the input in errors and warnings.
        Returns:
            The camera of the published (binned, roi) images; see the module docstring for the
            image_geometry arithmetic.
        Raises:
            UncalibratedCameraError: ``k`` all zeros or a 0x0 size.
            ValueError: anything else malformed, naming the field.
        """
        K = np.asarray(k, dtype=np.float64).reshape(-1)
        if K.size != 9:
            raise ValueError(f"{source} k: expected 9 values (row-major 3x3), got {K.size}")
        K = K.reshape(3, 3).copy()
        width, height = int(width), int(height)
        if not np.any(K):
            raise UncalibratedCameraError(f"{source}: uncalibrated camera (k is all zeros)")
        if width == 0 or height == 0:
            raise UncalibratedCameraError(f"{source}: uncalibrated camera (image size {width}x{height})")
        model, D = normalise_distortion(distortion_model, d, on_note, source)
        bx, by = int(binning_x) or 1, int(binning_y) or 1
        if bx < 0 or by < 0:
            raise ValueError(f"{source} binning_x/binning_y: expected >= 0, got {binning_x}/{binning_y}")
        x0, y0, rw, rh = (int(v) for v in (roi if roi is not None else (0, 0, 0, 0)))
        if (x0, y0, rw, rh) == (0, 0, 0, 0):
            rw, rh = width, height
        if x0 < 0 or y0 < 0 or rw <= 0 or rh <= 0 or x0 + rw > width or y0 + rh > height:
            raise ValueError(f"{source} roi: x_offset {x0}, y_offset {y0}, size {rw}x{rh} does not fit the "
                             f"calibrated {width}x{height} image (all zeros = full image)")
        # image_geometry PinholeCameraModel::fromCameraInfo: roi offset first, then binning.
        K[0, 2] -= x0
        K[1, 2] -= y0
        K[0, 0] /= bx
        K[0, 2] /= bx
        K[1, 1] /= by
        K[1, 2] /= by
        try:
            return cls(K, rw // bx, rh // by, model, D)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def is_fisheye(self) -> bool:
        return self.distortion_model == "equidistant"

    # ------------------------------------------------------------------ projection
    def project(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project points given in the camera optical frame.

        Args:
            points_cam: (N, 3) points, z forward (metres).
        Returns:
            uv: (N, 2) float64 pixel coordinates (undefined where not ``valid``),
            depth: (N,) z coordinate in metres,
            valid: (N,) bool, in front of the camera and inside the distortion model's
                monotonic field of view (NOT yet clipped to the image; see ``in_image``).
        """
        P = np.asarray(points_cam, dtype=np.float64)[:, :3]
        depth = P[:, 2].copy()
        finite = np.all(np.isfinite(P), axis=1)
        front = finite & (depth > _MIN_DEPTH_M)
        uv = np.full((len(P), 2), np.nan)
        if not np.any(front):
            return uv, depth, front
        Pf = P[front]
        r = np.hypot(Pf[:, 0], Pf[:, 1]) / Pf[:, 2]
        ok = r < self._max_normalised_radius
        idx = np.flatnonzero(front)[ok]
        valid = np.zeros(len(P), dtype=bool)
        valid[idx] = True
        if idx.size:
            uv[idx] = self._project_opencv(P[idx])
        return uv, depth, valid

    def in_image(self, uv: np.ndarray, valid: np.ndarray | None = None, margin_px: float = 0.0) -> np.ndarray:
        """(N,) bool: pixel lies inside the image (OpenCV pixel-centre convention)."""
        u, v = uv[:, 0], uv[:, 1]
        with np.errstate(invalid="ignore"):
            m = ((u >= -0.5 + margin_px) & (u < self.width - 0.5 - margin_px)
                 & (v >= -0.5 + margin_px) & (v < self.height - 0.5 - margin_px))
        return m if valid is None else m & valid

    def project_in_image(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``project`` followed by ``in_image``: returns ``(uv (N,2), depth (N,), in_view (N,))``."""
        uv, depth, valid = self.project(points_cam)
        return uv, depth, self.in_image(uv, valid)

    def _project_opencv(self, P: np.ndarray) -> np.ndarray:
        zero = np.zeros(3)
        if self.is_fisheye:
            out, _ = cv2.fisheye.projectPoints(P.reshape(-1, 1, 3), zero, zero, self.K, self.distortion)
        else:
            D = self.distortion if self.distortion.size else None
            out, _ = cv2.projectPoints(P.reshape(-1, 1, 3), zero, zero, self.K, D)
        return out.reshape(-1, 2)

    # ------------------------------------------------------------------ back-projection
    def undistort_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> normalised image coordinates (N, 2) (``x/z, y/z``) of the rays."""
        pts = np.asarray(uv, dtype=np.float64).reshape(-1, 1, 2)
        if self.is_fisheye:
            out = cv2.fisheye.undistortPoints(pts, self.K, self.distortion)
        elif self.distortion.size:
            out = cv2.undistortPoints(pts, self.K, self.distortion,
                                      criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12))
        else:
            out = cv2.undistortPoints(pts, self.K, None)
        return out.reshape(-1, 2)

    def unproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) with z depth (N,) in metres -> points (N, 3) in the camera frame."""
        xy = self.undistort_pixels(uv)
        z = np.asarray(depth, dtype=np.float64).reshape(-1, 1)
        return np.hstack([xy * z, z])

    # ------------------------------------------------------------------ image geometry edits
    def resized(self, width: int, height: int) -> "CameraModel":
        """The same camera after resizing its image to ``width x height`` (cv2.resize geometry)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 1] *= sy
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return CameraModel(K, width, height, self.distortion_model, self.distortion)

    def cropped(self, left: int, top: int, width: int, height: int) -> "CameraModel":
        """The same camera after cropping ``image[top:top+height, left:left+width]``."""
        K = self.K.copy()
        K[0, 2] -= left
        K[1, 2] -= top
        return CameraModel(K, width, height, self.distortion_model, self.distortion)

    # ------------------------------------------------------------------ validity region
    @cached_property
    def _max_normalised_radius(self) -> float:
        """Largest ``r = |(x, y)| / z`` up to which the distortion maps radius monotonically."""
        if self.is_fisheye:
            # theta = atan(r) in [0, pi/2); theta_d must increase with theta.
            theta = np.linspace(0.0, np.pi / 2 - 1e-3, 4000)
            k = self.distortion
            t2 = theta**2
            theta_d = theta * (1 + k[0] * t2 + k[1] * t2**2 + k[2] * t2**3 + k[3] * t2**4)
            bad = np.flatnonzero(np.diff(theta_d) <= 0)
            return float(np.tan(theta[bad[0]])) if bad.size else np.inf
        if self.distortion.size == 0:
            return np.inf
        k = self.distortion
        k1, k2, k3 = k[0], k[1], k[4]
        k4, k5, k6 = (k[5], k[6], k[7]) if k.size == 8 else (0.0, 0.0, 0.0)
        r = np.linspace(0.0, 20.0, 20001)
        r2 = r**2
        radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
        rd = r * radial
        bad = np.flatnonzero((np.diff(rd) <= 0) | ~np.isfinite(rd[1:]) | (radial[1:] <= 0))
        return float(r[bad[0]]) if bad.size else np.inf


def camera_info_key(info) -> tuple:
    """The fields of a CameraInfo that define its camera (to tell a changed calibration from a repeat)."""
    roi = getattr(info, "roi", None)
    return (tuple(float(v) for v in info.k), tuple(float(v) for v in info.d), str(info.distortion_model),
            int(info.width), int(info.height), int(getattr(info, "binning_x", 0)), int(getattr(info, "binning_y", 0)),
            (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)) if roi is not None else None)


def camera_from_camera_info(info, on_note: Note | None = None, source: str = "CameraInfo") -> CameraModel:
    """sensor_msgs/CameraInfo (rclpy, rosbags or any object with its attributes) -> ``CameraModel``
    of the images published with it (binning and roi applied as image_geometry does).

    The one CameraInfo conversion of the project: the node, the bag reader and the tools use it.
    Raises ``UncalibratedCameraError`` (a ``ValueError``) for an uncalibrated camera and
    ``ValueError`` naming the field otherwise; see ``CameraModel.from_camera_info``.
    """
    roi = getattr(info, "roi", None)
    return CameraModel.from_camera_info(
        info.k, info.d, info.distortion_model, info.width, info.height,
        binning_x=getattr(info, "binning_x", 0), binning_y=getattr(info, "binning_y", 0),
        roi=(roi.x_offset, roi.y_offset, roi.width, roi.height) if roi is not None else None,
        on_note=on_note, source=source)
