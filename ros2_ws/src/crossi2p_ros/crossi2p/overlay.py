"""Overlay images: LiDAR points projected into the camera image with a given extrinsic.

Used by ``crossi2p-overlay``, the evaluators' report figures and the node's overlay topic.
"""
from __future__ import annotations

import cv2
import numpy as np

from .camera import CameraModel
from .geometry import transform_points


def project_lidar_points(points_lidar: np.ndarray, camera: CameraModel,
                         T_cam_lidar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and depths of the LiDAR points that land inside the image.

    Args:
        points_lidar: (N, 3+) points in the LiDAR frame.
        camera: the image's camera model.
        T_cam_lidar: (4, 4) extrinsic, LiDAR frame -> camera optical frame.
    Returns:
        uv: (M, 2) pixel coordinates, depth: (M,) metres, for the M points in view.
    """
    uv, depth, in_view = camera.project_in_image(transform_points(T_cam_lidar, points_lidar[:, :3]))
    return uv[in_view], depth[in_view]


def draw_projected_points(image_rgb: np.ndarray, points_lidar: np.ndarray, camera: CameraModel,
                          T_cam_lidar: np.ndarray, max_depth_m: float = 60.0,
                          radius_px: int = 1) -> np.ndarray:
    """Draw the LiDAR points on a copy of the image, coloured by depth (turbo: near red, far blue).

    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        points_lidar: (N, 3+) points in the LiDAR frame.
        camera, T_cam_lidar: as in ``project_lidar_points``.
    Returns:
        (H, W, 3) uint8 RGB image with the points drawn (far points first, near on top).
    """
    out = np.ascontiguousarray(image_rgb.copy())
    uv, depth = project_lidar_points(points_lidar, camera, T_cam_lidar)
    if len(depth) == 0:
        return out
    order = np.argsort(-depth)
    level = np.clip(255.0 * (1.0 - depth[order] / max_depth_m), 0, 255).astype(np.uint8)
    colours = cv2.applyColorMap(level.reshape(-1, 1), cv2.COLORMAP_TURBO).reshape(-1, 3)[:, ::-1]
    pix = np.round(uv[order]).astype(np.int32)
    if radius_px <= 0:
        out[pix[:, 1], pix[:, 0]] = colours
        return out
    for (u, v), c in zip(pix, colours.tolist()):
        cv2.circle(out, (int(u), int(v)), radius_px, c, thickness=-1, lineType=cv2.LINE_AA)
    return out
