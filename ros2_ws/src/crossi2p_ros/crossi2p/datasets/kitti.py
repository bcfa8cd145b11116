"""KITTI Odometry layout: read and write sequences; load single KITTI frames.

A sequence folder (``<root>/sequences/NN``)::

    image_2/000000.png ...     rectified left colour camera
    velodyne/000000.bin ...    float32 (x, y, z, reflectance) per point, LiDAR frame
    calib.txt                  P0..P3 (3x4), Tr (3x4: Velodyne -> rectified camera 0)
    times.txt                  one timestamp per frame, seconds
    calib.yaml                 (written by ``write_kitti_sequence``, not by KITTI) the full
                               calibration record incl. distortion; preferred when present

``read_kitti_sequence`` is lazy: it lists the frames, and reads one image and one sweep per
``__getitem__``. ``load_kitti_frame`` reads one frame of any KITTI benchmark (for example the
object benchmark's ``image_2/XXXXXX.png``, ``velodyne/XXXXXX.bin``, ``calib/XXXXXX.txt``).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..calib_io import kitti_calib_txt, kitti_calibration, load_calibration_yaml, save_calibration_yaml
from ..camera import CameraModel
from ..sample import Sample

__all__ = [
    "KittiSequence",
    "read_kitti_sequence",
    "write_kitti_sequence",
    "load_kitti_frame",
    "read_velodyne_bin",
    "write_velodyne_bin",
    "read_rgb",
    "write_rgb",
]

KITTI_FRAME_PERIOD_S = 0.1
"""Velodyne HDL-64E rotation period; frame spacing used when ``times.txt`` is absent."""


def read_velodyne_bin(path: str | os.PathLike) -> np.ndarray:
    """KITTI ``velodyne/*.bin`` -> (N, 4) float32 ``x, y, z, reflectance``.

    Raises ``ValueError`` naming the file when its size is not a multiple of 16 bytes
    (truncated or not a KITTI scan).
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) % 16:
        raise ValueError(f"{path}: {len(raw)} bytes is not a multiple of 16 (4 float32 per point); "
                         "truncated or not a KITTI Velodyne scan")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, 4).astype(np.float32)


def write_velodyne_bin(path: str | os.PathLike, points: np.ndarray) -> None:
    """(N, 4) ``x, y, z, intensity`` -> KITTI ``.bin`` (little-endian float32)."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"points: expected (N, 4) x, y, z, intensity, got {pts.shape}")
    Path(path).write_bytes(np.ascontiguousarray(pts, dtype="<f4").tobytes())


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Image file -> (H, W, 3) uint8 RGB; ``ValueError`` naming the file if it cannot be read."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: cannot be read as an image (missing or corrupt)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """(H, W, 3) uint8 RGB -> image file (format from the suffix)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)):
        raise ValueError(f"{path}: cv2.imwrite failed")


def _image_size(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: cannot be read as an image (missing or corrupt)")
    return img.shape[1], img.shape[0]


def load_kitti_frame(image_path: str | os.PathLike, velodyne_path: str | os.PathLike,
                     calib_path: str | os.PathLike, camera_index: int = 2) -> Sample:
    """One KITTI frame (image, Velodyne scan, calibration text of either benchmark) -> Sample."""
    image = read_rgb(image_path)
    camera, T_cam_lidar = kitti_calibration(calib_path, image.shape[1], image.shape[0], camera_index)
    return Sample(image=image, points=read_velodyne_bin(velodyne_path), camera=camera,
                  T_cam_lidar=T_cam_lidar, frame_id=Path(image_path).stem,
                  meta={"image": str(image_path), "points": str(velodyne_path), "calib": str(calib_path)})


class KittiSequence:
    """A KITTI Odometry sequence folder, read lazily: ``len``, indexing and iteration give Samples."""

    def __init__(self, seq_dir: str | os.PathLike, camera_index: int = 2):
        self.seq_dir = Path(seq_dir)
        self.camera_index = camera_index
        self.image_dir = self.seq_dir / f"image_{camera_index}"
        self.velodyne_dir = self.seq_dir / "velodyne"
        for d in (self.image_dir, self.velodyne_dir):
            if not d.is_dir():
                raise ValueError(f"{self.seq_dir}: not a KITTI Odometry sequence folder (no {d.name}/)")
        images = {p.stem: p for p in self.image_dir.glob("*.png")}
        scans = {p.stem: p for p in self.velodyne_dir.glob("*.bin")}
        self.frame_ids: list[str] = sorted(images.keys() & scans.keys())
        if not self.frame_ids:
            raise ValueError(f"{self.seq_dir}: no frame has both {self.image_dir.name}/<id>.png and "
                             f"velodyne/<id>.bin ({len(images)} images, {len(scans)} scans)")
        self._images = images
        self._scans = scans
        self.times_s = self._read_times()

    def _read_times(self) -> np.ndarray:
        path = self.seq_dir / "times.txt"
        ids = np.array([int(f) if f.isdigit() else k for k, f in enumerate(self.frame_ids)])
        if not path.is_file():
            return ids * KITTI_FRAME_PERIOD_S
        try:
            times = np.loadtxt(path, dtype=np.float64, ndmin=1)
        except ValueError as exc:
            raise ValueError(f"{path}: not one number per line ({exc})") from None
        if ids.max() >= len(times):
            raise ValueError(f"{path}: {len(times)} timestamps, but frame {ids.max():06d} exists")
        return times[ids]

    @cached_property
    def _calibration(self) -> tuple[CameraModel, np.ndarray]:
        yaml_path = self.seq_dir / "calib.yaml"
        if yaml_path.is_file():
            calib = load_calibration_yaml(yaml_path)
            return calib.camera, calib.T_cam_lidar
        width, height = _image_size(self._images[self.frame_ids[0]])
        return kitti_calibration(self.seq_dir / "calib.txt", width, height, self.camera_index)

    @property
    def camera(self) -> CameraModel:
        """Camera of ``image_<camera_index>`` (calib.yaml if present, else calib.txt + image size)."""
        return self._calibration[0]

    @property
    def T_cam_lidar(self) -> np.ndarray:
        """(4, 4) Velodyne -> camera ``camera_index`` (rectified) transform."""
        return self._calibration[1]

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.seq_dir}: index {index} out of range for {len(self)} frames")
        index %= len(self)
        frame = self.frame_ids[index]
        image_path, scan_path = self._images[frame], self._scans[frame]
        return Sample(image=read_rgb(image_path), points=read_velodyne_bin(scan_path), camera=self.camera,
                      T_cam_lidar=self.T_cam_lidar, stamp_s=float(self.times_s[index]), frame_id=frame,
                      meta={"sequence": str(self.seq_dir), "image": str(image_path), "points": str(scan_path)})

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"KittiSequence({str(self.seq_dir)!r}, {len(self)} frames)"


def read_kitti_sequence(seq_dir: str | os.PathLike, camera_index: int = 2) -> KittiSequence:
    """Open a KITTI Odometry sequence folder (``.../sequences/NN``) for lazy reading."""
    return KittiSequence(seq_dir, camera_index)


def write_kitti_sequence(seq_dir: str | os.PathLike, samples: Iterable[Sample], camera: CameraModel,
                         T_cam_lidar: np.ndarray, *, metadata: dict | None = None,
                         progress: bool = False) -> int:
    """Write samples as a KITTI Odometry sequence folder; returns the number of frames written.

    Writes ``image_2/%06d.png``, ``velodyne/%06d.bin``, ``times.txt`` (each sample's
    ``stamp_s``), ``calib.txt`` (``kitti_calib_txt``: ``P0..P3 = K [I | 0]``, ``Tr =
    T_cam_lidar``) and ``calib.yaml`` (the calibration record, which also keeps distortion).
    Each sample's image must match ``camera``'s size. ``samples`` may be a generator.
    """
    seq_dir = Path(seq_dir)
    image_dir, velodyne_dir = seq_dir / "image_2", seq_dir / "velodyne"
    image_dir.mkdir(parents=True, exist_ok=True)
    velodyne_dir.mkdir(parents=True, exist_ok=True)
    (seq_dir / "calib.txt").write_text(kitti_calib_txt(camera, T_cam_lidar))
    save_calibration_yaml(seq_dir / "calib.yaml", T_cam_lidar, camera, lidar_frame="velodyne",
                          camera_frame="camera_2", metadata=metadata)
    times = []
    for k, sample in enumerate(tqdm(samples, desc=f"writing {seq_dir.name}", disable=not progress)):
        h, w = sample.image.shape[:2]
        if (w, h) != (camera.width, camera.height):
            raise ValueError(f"sample {k}: image {w}x{h} does not match the camera's {camera.width}x{camera.height}")
        write_rgb(image_dir / f"{k:06d}.png", sample.image)
        write_velodyne_bin(velodyne_dir / f"{k:06d}.bin", sample.points)
        times.append(sample.stamp_s)
    (seq_dir / "times.txt").write_text("".join(f"{t:.6e}\n" for t in times))
    return len(times)
