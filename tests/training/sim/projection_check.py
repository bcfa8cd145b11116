"""Shared check of the simulator's ground truth: LiDAR points projected with ``T_cam_lidar`` land
on the pixels where the camera saw the same object at the same depth."""
import numpy as np

from crossi2p.geometry import transform_points


def projection_agreement(frame) -> tuple[int, float]:
    """``(points in view, fraction of them whose pixel shows the same object id within 5 % + 5 cm
    of their depth)`` for a ``SimFrame`` (``simulate_frame``)."""
    s = frame.sample
    uv, depth, in_view = s.camera.project_in_image(transform_points(s.T_cam_lidar, s.points[:, :3].astype(np.float64)))
    px = np.rint(uv[in_view]).astype(int)
    px[:, 0] = px[:, 0].clip(0, s.camera.width - 1)
    px[:, 1] = px[:, 1].clip(0, s.camera.height - 1)
    same_id = frame.render.object_id[px[:, 1], px[:, 0]] == frame.scan.object_id[in_view]
    same_depth = np.abs(frame.render.depth[px[:, 1], px[:, 0]] - depth[in_view]) < 0.05 * depth[in_view] + 0.05
    return int(in_view.sum()), float(np.mean(same_id & same_depth))
