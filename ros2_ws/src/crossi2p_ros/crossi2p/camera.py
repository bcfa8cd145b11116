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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import cv2
import numpy as np

DistortionModel = Literal["none", "plumb_bob", "rational_polynomial", "equidistant"]

_N_COEFFS = {"none": 0, "plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
_MIN_DEPTH_M = 1e-3


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
        K = np.asarray(self.K, dtype=np.float64)
        D = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"camera K: expected a finite 3x3 matrix with fx, fy > 0, got {K.tolist()}")
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
    def from_camera_info(cls, k, d, distortion_model: str, width: int, height: int) -> "CameraModel":
        """Build from CameraInfo fields (``k`` row-major 9 values, ``d`` coefficients)."""
        model = distortion_model or "none"
        D = np.asarray(d, dtype=np.float64)
        if model == "plumb_bob" and D.size == 0:
            model = "none"
        return cls(np.asarray(k, dtype=np.float64).reshape(3, 3), int(width), int(height), model, D)

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
