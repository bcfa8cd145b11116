"""A static transform tree: chains tf edges into ``T_target_source`` for any two connected frames.

Written here because tf2_ros (its Buffer) is not installable in this environment (ENVIRONMENT.md);
on a full ROS 2 install this is what ``tf2_ros.Buffer.lookup_transform`` does for static frames.
Only what the node needs: static edges (no time interpolation), the tf rule that a frame has one
parent (a newer edge to the same child replaces the old one), and a lookup through the common
ancestor of the two frames.

Edges follow the tf convention (docs/conventions.md): a TransformStamped with
``header.frame_id = P`` and ``child_frame_id = C`` carries ``T_P_C``. Frame ids are compared
without a leading ``/`` (ROS 1 style ids such as ``/velodyne`` name the same frame).

The frame rule of the node and the bag evaluator (``points_in_lidar_frame``,
``check_camera_frame``): an estimate is only ever made from points expressed in the LiDAR frame it
is published under and an image taken in the camera frame it is published under. A cloud stamped
with another frame is mapped into the LiDAR frame through the static tree, or refused with a
reason; an image cannot be re-expressed, so one stamped with another frame is refused unless the
static tree says the two frames coincide.
"""
from __future__ import annotations

import numpy as np

from .geometry import check_transform, invert_transform, rotation_angle_deg

__all__ = ["StaticTransformTree", "TransformLookupError", "FrameMismatchError", "points_in_lidar_frame",
           "check_camera_frame", "check_camera_info_frame"]


class TransformLookupError(LookupError):
    """The two frames are unknown or not connected."""


class FrameMismatchError(ValueError):
    """A message is stamped with a frame that cannot be expressed in the configured one (one line)."""


def _frame(frame_id: str) -> str:
    return frame_id.strip().lstrip("/")


class StaticTransformTree:
    """Frames and their ``T_parent_child`` edges; ``lookup(target, source)`` -> ``T_target_source``."""

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, T_parent_child)

    def set_transform(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Add or replace the edge of ``child`` (one parent per frame, as in tf)."""
        parent, child = _frame(parent), _frame(child)
        if not parent or not child or parent == child:
            raise ValueError(f"tf edge: expected two different non-empty frame ids, got {parent!r} -> {child!r}")
        T = check_transform(T_parent_child, f"tf edge {parent} -> {child}")
        self._parent[child] = (parent, T)

    def parent_of(self, frame: str) -> str | None:
        """The parent of ``frame`` (None: it has none here)."""
        edge = self._parent.get(_frame(frame))
        return edge[0] if edge else None

    def _chain_to_root(self, frame: str) -> list[tuple[str, np.ndarray]]:
        """``[(frame, I), (parent, T_parent_frame), (grandparent, T_grandparent_frame), ...]``."""
        chain, T_up_frame, seen = [(frame, np.eye(4))], np.eye(4), {frame}
        while frame in self._parent:
            parent, T_parent_child = self._parent[frame]
            if parent in seen:  # a loop in the published edges: stop where it closes
                break
            T_up_frame = T_parent_child @ T_up_frame
            chain.append((parent, T_up_frame))
            seen.add(parent)
            frame = parent
        return chain

    def lookup(self, target: str, source: str) -> np.ndarray:
        """``T_target_source`` (maps points in ``source`` into ``target``), through the lowest
        common ancestor. Raises ``TransformLookupError`` naming both frames when not connected."""
        target, source = _frame(target), _frame(source)
        if target == source:
            return np.eye(4)
        up_source = dict(self._chain_to_root(source))  # ancestor -> T_ancestor_source
        for ancestor, T_ancestor_target in self._chain_to_root(target):
            if ancestor in up_source:
                return invert_transform(T_ancestor_target) @ up_source[ancestor]
        known = sorted(set(self._parent) | {p for p, _ in self._parent.values()})
        raise TransformLookupError(f"no tf path from {source!r} to {target!r} (known frames: {known})")

    def can_lookup(self, target: str, source: str) -> bool:
        try:
            self.lookup(target, source)
            return True
        except TransformLookupError:
            return False

    def __len__(self) -> int:
        return len(self._parent)


def points_in_lidar_frame(points: np.ndarray, cloud_frame: str, lidar_frame: str,
                          tree: StaticTransformTree) -> np.ndarray:
    """(N, C) points of a cloud whose header says ``cloud_frame`` -> the same points in ``lidar_frame``.

    Columns 0-2 (x, y, z, metres) are mapped by ``T_lidar_cloud = tree.lookup(lidar_frame,
    cloud_frame)``; the others (intensity, per-point time) and the dtype are kept. Returned as
    it is (the same array) when the frames are the same or the cloud has no frame id (the
    configured frame names it). Example: an Ouster cloud stamped ``os_lidar`` with ``lidar_frame
    = os_sensor``, whose static tf ``os_sensor -> os_lidar`` is 180 deg about z and 36.18 mm up:
    the point (1, 0, 0) in os_lidar is (-1, 0, 0.03618) in os_sensor. Raises
    ``FrameMismatchError`` (one line naming both frames) when the tree does not link them.
    """
    cloud, lidar = _frame(cloud_frame), _frame(lidar_frame)
    if not lidar:
        raise FrameMismatchError(f"cloud in frame {cloud!r}: no LiDAR frame to express it in" if cloud else
                                 "cloud without a header.frame_id and no LiDAR frame configured (lidar_frame)")
    if not cloud or cloud == lidar:
        return points
    try:
        T_lidar_cloud = tree.lookup(lidar, cloud)
    except TransformLookupError:
        raise FrameMismatchError(f"cloud in frame {cloud!r}, not the LiDAR frame {lidar!r}, and no /tf_static path "
                                 f"links the two: publish that static transform or set lidar_frame to {cloud!r}"
                                 ) from None
    out = np.array(points, copy=True)
    xyz = np.asarray(points[:, :3], dtype=np.float64)
    out[:, :3] = xyz @ T_lidar_cloud[:3, :3].T + T_lidar_cloud[:3, 3]
    return out


def check_camera_frame(image_frame: str, camera_frame: str, tree: StaticTransformTree,
                       atol_m: float = 1e-6, atol_rad: float = 1e-6) -> None:
    """Raise ``FrameMismatchError`` unless an image stamped ``image_frame`` was taken in ``camera_frame``.

    Accepted: the same frame, an image with no frame id (the configured frame names it), or two
    frames the static tree links by an identity transform (within ``atol_m`` metres and
    ``atol_rad`` radians: two names of one optical frame). An image cannot be re-expressed in
    another frame (its pixels are where they are), so anything else is refused with a one-line
    reason naming both frames.
    """
    image, camera = _frame(image_frame), _frame(camera_frame)
    if not camera:
        raise FrameMismatchError(f"image in frame {image!r}: no camera frame to publish it under" if image else
                                 "image without a header.frame_id and no camera frame configured (camera_frame)")
    if not image or image == camera:
        return
    try:
        T = tree.lookup(camera, image)
    except TransformLookupError:
        T = None
    if T is not None:
        angle = float(np.radians(rotation_angle_deg(T[:3, :3])))
        if angle <= atol_rad and np.linalg.norm(T[:3, 3]) <= atol_m:
            return
        why = f"/tf_static puts them {np.linalg.norm(T[:3, 3]):.4f} m and {np.degrees(angle):.2f} deg apart"
    else:
        why = "no /tf_static path links the two"
    raise FrameMismatchError(f"image in frame {image!r}, not the camera frame {camera!r} ({why}); an image "
                             f"cannot be re-expressed in another frame: set camera_frame to {image!r}")


def check_camera_info_frame(info_frame: str, image_frame: str, tree: StaticTransformTree) -> None:
    """Raise ``FrameMismatchError`` unless a CameraInfo stamped ``info_frame`` describes the camera
    of an image stamped ``image_frame``: the same frame, either without a frame id, or two names the
    static tree links by an identity transform (``check_camera_frame``'s rule). A CameraInfo of
    another camera would give the image wrong intrinsics, and the refinement would fail on it
    without saying why.
    """
    if not _frame(info_frame) or not _frame(image_frame):
        return
    try:
        check_camera_frame(info_frame, image_frame, tree)
    except FrameMismatchError:
        raise FrameMismatchError(f"its CameraInfo is in frame {_frame(info_frame)!r}, the image in "
                                 f"{_frame(image_frame)!r}: not one camera (a CameraInfo topic of another "
                                 f"camera?)") from None
