"""Camera + LiDAR samples from a nuScenes-format folder, read from its JSON tables (no devkit).

Folder layout (as published: ``v1.0-mini``, ``v1.0-trainval``, ...)::

    <root>/<version>/sample.json, sample_data.json, calibrated_sensor.json, ego_pose.json, sensor.json
    <root>/samples/CAM_FRONT/*.jpg                 undistorted images
    <root>/samples/LIDAR_TOP/*.pcd.bin             float32 (x, y, z, intensity 0..255, ring) per point

Each key-frame ``sample_data`` of ``camera_channel`` is paired with the key-frame
``sample_data`` of ``lidar_channel`` of the same ``sample``. Their capture times differ by up
to ~25 ms, during which the car moves (~0.4 m at 50 km/h), so the extrinsic of the pair is
ego-motion compensated through the global frame::

    T_cam_lidar = inv(T_ego_cam) @ inv(T_global_ego(t_cam)) @ T_global_ego(t_lidar) @ T_ego_lidar

(``T_ego_sensor`` from ``calibrated_sensor``, ``T_global_ego(t)`` from the ``ego_pose`` of
each sample_data; quaternions are ``(w, x, y, z)``). It maps the points, as measured at the
LiDAR time, to where the camera saw that (static) world at the camera time; it is not the
rig's fixed ``inv(T_ego_cam) @ T_ego_lidar``, which ``NuScenesDataset.rig_T_cam_lidar``
gives. The points are those of the file, in the LiDAR frame; intensity is scaled to [0, 1].
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from ..calib_io import nuscenes_camera, nuscenes_transform
from ..geometry import invert_transform
from ..pointcloud2 import normalise_intensity
from ..sample import Sample
from .kitti import read_rgb

__all__ = ["NuScenesDataset", "read_nuscenes", "read_nuscenes_lidar_bin", "nuscenes_T_cam_lidar"]

_TABLES = ("sample", "sample_data", "calibrated_sensor", "ego_pose", "sensor")


def read_nuscenes_lidar_bin(path: str | os.PathLike, columns: int = 5) -> np.ndarray:
    """nuScenes ``.pcd.bin`` -> (N, 4) float32 ``x, y, z, intensity`` (intensity in [0, 1]).

    Raises ``ValueError`` naming the file when its size is not a multiple of ``columns`` floats.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) % (4 * columns):
        raise ValueError(f"{path}: {len(raw)} bytes is not a multiple of {4 * columns} "
                         f"({columns} float32 per point); truncated or not a nuScenes LiDAR file")
    pts = np.frombuffer(raw, dtype="<f4").reshape(-1, columns)[:, :4].astype(np.float32)
    pts = pts[np.all(np.isfinite(pts[:, :3]), axis=1)]
    pts[:, 3] = normalise_intensity(pts[:, 3])
    return pts


def nuscenes_T_cam_lidar(T_ego_cam: np.ndarray, T_global_ego_cam: np.ndarray,
                         T_global_ego_lidar: np.ndarray, T_ego_lidar: np.ndarray) -> np.ndarray:
    """Ego-motion-compensated extrinsic of one camera/LiDAR pair (module docstring)."""
    return invert_transform(T_ego_cam) @ invert_transform(T_global_ego_cam) @ T_global_ego_lidar @ T_ego_lidar


class NuScenesDataset:
    """Camera/LiDAR key-frame pairs of a nuScenes-format folder; ``len``, indexing -> Sample (lazy)."""

    def __init__(self, root: str | os.PathLike, version: str | None = None,
                 camera_channel: str = "CAM_FRONT", lidar_channel: str = "LIDAR_TOP"):
        self.root = Path(root)
        self.version = version or self._only_version()
        self.table_dir = self.root / self.version
        self.camera_channel, self.lidar_channel = camera_channel, lidar_channel
        tables = {name: self._load_table(name) for name in _TABLES}
        self._calibrated = {r["token"]: r for r in tables["calibrated_sensor"]}
        self._ego_pose = {r["token"]: r for r in tables["ego_pose"]}
        channel_of_sensor = {r["token"]: self._key(r, "channel", "sensor") for r in tables["sensor"]}
        channels = sorted(set(channel_of_sensor.values()))
        for ch in (camera_channel, lidar_channel):
            if ch not in channels:
                raise ValueError(f"{self.table_dir / 'sensor.json'}: no channel {ch!r} (channels: {channels})")

        def channel(sd) -> str:
            cs = self._calibrated.get(self._key(sd, "calibrated_sensor_token", "sample_data"))
            if cs is None:
                raise ValueError(f"{self.table_dir / 'sample_data.json'}: sample_data {sd.get('token')} refers "
                                 f"to a calibrated_sensor not in calibrated_sensor.json")
            return channel_of_sensor.get(self._key(cs, "sensor_token", "calibrated_sensor"), "")

        cams, lidars = [], {}
        for sd in tables["sample_data"]:
            if not self._key(sd, "is_key_frame", "sample_data"):
                continue
            ch = channel(sd)
            if ch == camera_channel:
                cams.append(sd)
            elif ch == lidar_channel:
                lidars[self._key(sd, "sample_token", "sample_data")] = sd
        cams.sort(key=lambda sd: sd["timestamp"])
        self.pairs: list[tuple[dict, dict]] = [(c, lidars[c["sample_token"]])
                                               for c in cams if c["sample_token"] in lidars]
        if not self.pairs:
            raise ValueError(f"{self.table_dir}: no sample has key frames of both {camera_channel} and {lidar_channel}")

    # ---------------------------------------------------------------- tables
    def _only_version(self) -> str:
        found = sorted(p.name for p in self.root.glob("v1.0-*") if p.is_dir())
        if len(found) != 1:
            raise ValueError(f"{self.root}: not a nuScenes-format folder (expected one v1.0-* table folder, "
                             f"found {found or 'none'})")
        return found[0]

    def _load_table(self, name: str) -> list[dict]:
        path = self.table_dir / f"{name}.json"
        if not path.is_file():
            raise ValueError(f"{path}: missing nuScenes table")
        try:
            table = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(table, list) or not all(isinstance(r, dict) and "token" in r for r in table):
            raise ValueError(f"{path}: expected a list of records with a 'token' key")
        return table

    def _key(self, record: Mapping, key: str, table: str):
        if key not in record:
            raise ValueError(f"{self.table_dir / (table + '.json')}: record {record.get('token')} has no key {key!r}")
        return record[key]

    def _transform(self, table: str, token: str) -> np.ndarray:
        records = self._calibrated if table == "calibrated_sensor" else self._ego_pose
        if token not in records:
            raise ValueError(f"{self.table_dir / (table + '.json')}: no record with token {token}")
        return nuscenes_transform(records[token], source=f"{self.table_dir / (table + '.json')} record {token}")

    # ---------------------------------------------------------------- samples
    def T_cam_lidar(self, index: int) -> np.ndarray:
        """Ego-motion-compensated ``T_cam_lidar`` of pair ``index`` (module docstring)."""
        cam, lidar = self.pairs[index]
        return nuscenes_T_cam_lidar(self._transform("calibrated_sensor", cam["calibrated_sensor_token"]),
                                    self._transform("ego_pose", cam["ego_pose_token"]),
                                    self._transform("ego_pose", lidar["ego_pose_token"]),
                                    self._transform("calibrated_sensor", lidar["calibrated_sensor_token"]))

    def rig_T_cam_lidar(self, index: int) -> np.ndarray:
        """The rig's fixed ``inv(T_ego_cam) @ T_ego_lidar`` of pair ``index`` (no ego motion)."""
        cam, lidar = self.pairs[index]
        return (invert_transform(self._transform("calibrated_sensor", cam["calibrated_sensor_token"]))
                @ self._transform("calibrated_sensor", lidar["calibrated_sensor_token"]))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.root}: index {index} out of range for {len(self)} pairs")
        index %= len(self)
        cam, lidar = self.pairs[index]
        image_path, points_path = self.root / cam["filename"], self.root / lidar["filename"]
        image = read_rgb(image_path)
        cs_token = cam["calibrated_sensor_token"]
        camera = nuscenes_camera(self._calibrated[cs_token], image.shape[1], image.shape[0],
                                 source=f"{self.table_dir / 'calibrated_sensor.json'} record {cs_token} "
                                        f"({self.camera_channel})")
        return Sample(image=image, points=read_nuscenes_lidar_bin(points_path), camera=camera,
                      T_cam_lidar=self.T_cam_lidar(index), stamp_s=cam["timestamp"] * 1e-6,
                      lidar_stamp_s=lidar["timestamp"] * 1e-6, frame_id=cam["sample_token"],
                      meta={"root": str(self.root), "image": str(image_path), "points": str(points_path),
                            "camera_channel": self.camera_channel, "lidar_channel": self.lidar_channel})

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"NuScenesDataset({str(self.root)!r}, {self.version}, {len(self)} pairs)"


def read_nuscenes(root: str | os.PathLike, version: str | None = None, camera_channel: str = "CAM_FRONT",
                  lidar_channel: str = "LIDAR_TOP") -> NuScenesDataset:
    """Open a nuScenes-format folder (``version`` auto-detected when it holds one ``v1.0-*``)."""
    return NuScenesDataset(root, version, camera_channel, lidar_channel)
