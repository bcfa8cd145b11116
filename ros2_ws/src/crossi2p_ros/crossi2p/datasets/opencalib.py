"""OpenCalib (PJLab-ADG/SensorsCalibration) lidar2camera sample folders.

A folder holds an image (``0.png``), a PCD cloud (``0.pcd``), ``<camera>-intrinsic.json``
(``cam_K`` 3x3, ``cam_dist`` k1 k2 p1 p2 -> OpenCV ``plumb_bob``) and
``<lidar>-to-<camera>-extrinsic.json`` (``sensor_calib`` 4x4, maps LiDAR points into the
camera frame, i.e. ``T_cam_lidar``). The intrinsic json's ``img_dist_w/h`` are not trusted
(the published sample says 1920x1080 for a 1920x1200 image): the image size is read from
the image.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..camera import CameraModel
from ..geometry import check_transform
from ..sample import Sample
from .kitti import read_rgb
from .pcd import read_pcd_xyzi

__all__ = ["load_opencalib_frame", "read_opencalib_calibration"]


def _param(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    top = next(iter(doc.values()), None) if isinstance(doc, dict) and len(doc) == 1 else None
    param = top.get("param") if isinstance(top, dict) else None
    if not isinstance(param, dict):
        raise ValueError(f"{path}: missing key 'param' under the sensor entry")
    for key in keys:
        if key not in param or "data" not in (param[key] or {}):
            raise ValueError(f"{path}: missing key 'param.{key}.data'")
    return param


def read_opencalib_calibration(folder: str | os.PathLike, width: int, height: int) -> tuple[CameraModel, np.ndarray]:
    """``(camera, T_cam_lidar)`` from the folder's ``*-intrinsic.json`` and ``*-extrinsic.json``."""
    folder = Path(folder)
    found = {}
    for kind in ("intrinsic", "extrinsic"):
        files = sorted(folder.glob(f"*-{kind}.json"))
        if len(files) != 1:
            raise ValueError(f"{folder}: expected one *-{kind}.json, found {[f.name for f in files]}")
        found[kind] = files[0]
    intr = _param(found["intrinsic"], ("cam_K", "cam_dist"))
    extr = _param(found["extrinsic"], ("sensor_calib",))
    K = np.asarray(intr["cam_K"]["data"], dtype=np.float64).reshape(3, 3)
    dist = np.asarray(intr["cam_dist"]["data"], dtype=np.float64).reshape(-1)
    camera = CameraModel(K, width, height, "plumb_bob", dist)
    T = check_transform(np.asarray(extr["sensor_calib"]["data"], dtype=np.float64).reshape(4, 4),
                        f"{found['extrinsic']}: sensor_calib")
    return camera, T


def load_opencalib_frame(folder: str | os.PathLike, stem: str = "0") -> Sample:
    """The folder's ``<stem>.png`` + ``<stem>.pcd`` + json calibration -> Sample."""
    folder = Path(folder)
    image = read_rgb(folder / f"{stem}.png")
    camera, T = read_opencalib_calibration(folder, image.shape[1], image.shape[0])
    return Sample(image=image, points=read_pcd_xyzi(folder / f"{stem}.pcd"), camera=camera, T_cam_lidar=T,
                  frame_id=stem, meta={"source": str(folder)})
