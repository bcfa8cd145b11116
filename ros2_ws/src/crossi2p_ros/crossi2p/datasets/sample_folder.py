"""Sample folders: an image, a point cloud and a ``calib.yaml`` naming them.

The layout of the real development samples in ``shared/data/real`` (and of any folder a user
lays out the same way): ``calib.yaml`` is a calibration record (``crossi2p.calib_io``) whose
``image_file`` and ``points_file`` keys name the image (PNG/JPEG) and the cloud (KITTI-style
float32 ``x, y, z, intensity`` ``.bin`` or a ``.pcd``) beside it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..calib_io import load_calibration_yaml
from ..sample import Sample
from .kitti import read_rgb, read_velodyne_bin
from .pcd import read_pcd_xyzi

__all__ = ["load_sample_folder", "find_sample_folders"]


def load_sample_folder(folder: str | os.PathLike) -> Sample:
    """The folder's frame as a ``Sample`` with its ground truth ``T_cam_lidar``.

    Raises:
        ValueError: no ``calib.yaml``, or it lacks ``image_file`` / ``points_file``, or a file is
            missing or malformed (the message names it).
    """
    folder = Path(folder)
    calib_path = folder / "calib.yaml"
    if not calib_path.is_file():
        raise ValueError(f"{folder}: no calib.yaml (expected a sample folder: calib.yaml + image + points)")
    calib = load_calibration_yaml(calib_path)
    names = {k: calib.metadata.get(k) for k in ("image_file", "points_file")}
    for key, name in names.items():
        if not name:
            raise ValueError(f"{calib_path}: missing key {key!r}")
        if not (folder / str(name)).is_file():
            raise ValueError(f"{calib_path}: {key} {name!r} not found in {folder}")
    points_path = folder / str(names["points_file"])
    points = read_pcd_xyzi(points_path) if points_path.suffix == ".pcd" else read_velodyne_bin(points_path)
    image = read_rgb(folder / str(names["image_file"]))
    return Sample(image=image, points=np.asarray(points, np.float32), camera=calib.camera,
                  T_cam_lidar=calib.T_cam_lidar, frame_id=folder.name, meta={"source": str(folder)})


def find_sample_folders(root: str | os.PathLike) -> list[Path]:
    """Every folder under ``root`` (itself included) holding a ``calib.yaml``, sorted."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("calib.yaml"))
