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

KITTI raw layout (what the raw-data download unpacks to), read by ``read_kitti_raw``::

    2011_09_26/                              date folder
        calib_velo_to_cam.txt                R (3x3), T (3): Velodyne -> unrectified camera 0
        calib_cam_to_cam.txt                 R_rect_00, P_rect_0i (3x4), S_rect_0i (width height), ...
        2011_09_26_drive_0001_sync/          drive folder (synced + rectified)
            image_02/data/0000000000.png     rectified colour camera 2
            image_02/timestamps.txt          'YYYY-MM-DD HH:MM:SS.nnnnnnnnn' per frame
            velodyne_points/data/0000000000.bin
            velodyne_points/timestamps.txt

``read_kitti`` opens either layout (an Odometry sequence, a raw drive folder or a raw date folder
holding one drive) and gives the same Sample interface.
"""
from __future__ import annotations

import calendar
import datetime
import os
import re
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..calib_io import (kitti_calib_txt, kitti_calibration, load_calibration_yaml, parse_kitti_calib,
                        save_calibration_yaml)
from ..geometry import check_transform, make_transform
from ..camera import CameraModel
from ..sample import Sample

__all__ = [
    "KittiSequence",
    "KittiRawDrive",
    "read_kitti",
    "read_kitti_sequence",
    "read_kitti_raw",
    "find_kitti_raw_drive",
    "kitti_raw_calibration",
    "parse_kitti_raw_timestamps",
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

    def __init__(self, seq_dir: str | os.PathLike, camera_index: int = 2, require_extrinsic: bool = True):
        self.seq_dir = Path(seq_dir)
        self.camera_index = camera_index
        self.require_extrinsic = require_extrinsic
        """False: a calib.txt without ``Tr`` is read too (``T_cam_lidar`` None: nothing to compare with)."""
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
        return kitti_calibration(self.seq_dir / "calib.txt", width, height, self.camera_index,
                                 self.require_extrinsic)

    @property
    def camera(self) -> CameraModel:
        """Camera of ``image_<camera_index>`` (calib.yaml if present, else calib.txt + image size)."""
        return self._calibration[0]

    @property
    def T_cam_lidar(self) -> np.ndarray | None:
        """(4, 4) Velodyne -> camera ``camera_index`` (rectified) transform (None: the folder has
        none and ``require_extrinsic`` is False)."""
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


def read_kitti_sequence(seq_dir: str | os.PathLike, camera_index: int = 2,
                        require_extrinsic: bool = True) -> KittiSequence:
    """Open a KITTI Odometry sequence folder (``.../sequences/NN``) for lazy reading
    (``require_extrinsic``: ``KittiSequence``)."""
    return KittiSequence(seq_dir, camera_index, require_extrinsic)


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


# --------------------------------------------------------------------------- KITTI raw
KITTI_RAW_VELO_TO_CAM = "calib_velo_to_cam.txt"
KITTI_RAW_CAM_TO_CAM = "calib_cam_to_cam.txt"
_RAW_STAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")


def parse_kitti_raw_timestamps(path: str | os.PathLike) -> np.ndarray:
    """KITTI raw ``timestamps.txt`` -> (N,) int64 nanoseconds since the Unix epoch.

    One ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` per line (the recording computer's clock, taken as UTC;
    only differences matter). Integers, because float64 seconds near 1.3e9 s keep only ~0.2 us.
    Raises ``ValueError`` naming the file, the line and the expected format.
    """
    path = Path(path)
    stamps = []
    for k, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        m = _RAW_STAMP.match(line)
        if m is None:
            raise ValueError(f"{path}: line {k} {line[:40]!r} is not a KITTI raw timestamp "
                             "'YYYY-MM-DD HH:MM:SS.nnnnnnnnn'")
        try:
            when = datetime.datetime(*(int(v) for v in m.groups()[:6]))
        except ValueError as exc:
            raise ValueError(f"{path}: line {k} {line!r} is not a valid date and time ({exc})") from None
        whole_s = calendar.timegm(when.timetuple())
        stamps.append(whole_s * 1_000_000_000 + int((m.group(7) or "0").ljust(9, "0")))
    return np.array(stamps, dtype=np.int64)


def kitti_raw_calibration(calib_dir: str | os.PathLike, camera_index: int = 2) -> tuple[CameraModel, np.ndarray]:
    """KITTI raw date folder calibration -> ``(camera of image_0<camera_index>, T_cam_lidar)``.

    From ``calib_velo_to_cam.txt`` (``R``, ``T``: Velodyne -> unrectified camera 0) and
    ``calib_cam_to_cam.txt`` (``R_rect_00``, ``P_rect_0i``, ``S_rect_0i``), exactly as the raw
    devkit projects (``y = P_rect_0i @ R_rect_00 @ T_velo_to_cam @ x``):
    ``T_cam_lidar = [I | K^-1 P_rect_0i[:, 3]] @ R_rect_00 (4x4) @ T_velo_to_cam`` with
    ``K = P_rect_0i[:, :3]`` (so ``K @ T_cam_lidar[:3] == P_rect_0i @ R_rect_00 @ T_velo_to_cam``),
    image size ``S_rect_0i`` (width, height), no distortion (the ``_sync`` images are rectified).
    T_cam_lidar maps Velodyne points (m) into the rectified camera ``i`` optical frame.
    """
    from ..calib_io import _kitti_get  # the same key/size checks as the Odometry reader

    calib_dir = Path(calib_dir)
    v2c_path, c2c_path = calib_dir / KITTI_RAW_VELO_TO_CAM, calib_dir / KITTI_RAW_CAM_TO_CAM
    for path in (v2c_path, c2c_path):
        if not path.is_file():
            raise ValueError(f"{calib_dir}: no {path.name} (a KITTI raw date folder holds "
                             f"{KITTI_RAW_VELO_TO_CAM} and {KITTI_RAW_CAM_TO_CAM})")
    v2c, c2c = parse_kitti_calib(v2c_path), parse_kitti_calib(c2c_path)
    T_velo_to_cam = make_transform(_kitti_get(v2c, "R", 9, str(v2c_path)).reshape(3, 3),
                                   _kitti_get(v2c, "T", 3, str(v2c_path)))
    R_rect_00 = np.eye(4)
    R_rect_00[:3, :3] = _kitti_get(c2c, "R_rect_00", 9, str(c2c_path)).reshape(3, 3)
    P = _kitti_get(c2c, f"P_rect_0{camera_index}", 12, str(c2c_path)).reshape(3, 4)
    width, height = _kitti_get(c2c, f"S_rect_0{camera_index}", 2, str(c2c_path))
    try:
        camera = CameraModel(P[:, :3].copy(), int(round(width)), int(round(height)), "none")
        t = np.linalg.solve(camera.K, P[:, 3])
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise ValueError(f"{c2c_path}: P_rect_0{camera_index} / S_rect_0{camera_index} do not give a valid "
                         f"camera ({exc})") from None
    T_cam_lidar = check_transform(make_transform(np.eye(3), t) @ R_rect_00 @ T_velo_to_cam,
                                  f"{calib_dir}: T_cam_lidar")
    return camera, T_cam_lidar


def _is_raw_drive(path: Path) -> bool:
    return (path / "velodyne_points" / "data").is_dir() and any(path.glob("image_0[0-3]/data"))


def find_kitti_raw_drive(path: str | os.PathLike) -> Path:
    """The drive folder of a KITTI raw path: the drive folder itself, or a date folder holding
    exactly one ``*_drive_*`` folder. ``ValueError`` naming what was looked for otherwise."""
    path = Path(path)
    if _is_raw_drive(path):
        return path
    drives = sorted(p for p in path.glob("*_drive_*") if _is_raw_drive(p)) if path.is_dir() else []
    if len(drives) == 1:
        return drives[0]
    if drives:
        raise ValueError(f"{path}: a KITTI raw date folder with {len(drives)} drives "
                         f"({', '.join(d.name for d in drives)}); pass one drive folder")
    raise ValueError(f"{path}: not a KITTI raw drive (no velodyne_points/data/ + image_0N/data/) nor a date "
                     "folder holding one")


class KittiRawDrive(KittiSequence):
    """A KITTI raw ``<date>_drive_XXXX_sync`` folder, read lazily; the same interface as
    ``KittiSequence`` (``len``, indexing and iteration give Samples, ``camera``, ``T_cam_lidar``).

    Calibration from the date folder (the drive's parent; or the drive folder itself when the two
    calibration files were copied into it): ``kitti_raw_calibration``. Each Sample's ``stamp_s``
    is the image's ``image_0N/timestamps.txt`` time and ``lidar_stamp_s`` the sweep's
    ``velodyne_points/timestamps.txt`` time (seconds since the epoch); ``times_ns`` /
    ``lidar_times_ns`` keep them exactly. Frames are matched by file number.
    """

    def __init__(self, drive_dir: str | os.PathLike, camera_index: int = 2):
        self.seq_dir = self.drive_dir = Path(drive_dir)
        self.camera_index = camera_index
        self.image_dir = self.drive_dir / f"image_0{camera_index}" / "data"
        self.velodyne_dir = self.drive_dir / "velodyne_points" / "data"
        for d in (self.image_dir, self.velodyne_dir):
            if not d.is_dir():
                raise ValueError(f"{self.drive_dir}: not a KITTI raw drive folder (no "
                                 f"{d.relative_to(self.drive_dir)}/)")
        self.calib_dir = next((d for d in (self.drive_dir, self.drive_dir.parent)
                               if (d / KITTI_RAW_VELO_TO_CAM).is_file()), self.drive_dir.parent)
        images = {p.stem: p for p in self.image_dir.glob("*.png")}
        scans = {p.stem: p for p in self.velodyne_dir.glob("*.bin")}
        self.frame_ids = sorted(images.keys() & scans.keys())
        if not self.frame_ids:
            raise ValueError(f"{self.drive_dir}: no frame has both image_0{camera_index}/data/<n>.png and "
                             f"velodyne_points/data/<n>.bin ({len(images)} images, {len(scans)} scans)")
        self._images, self._scans = images, scans
        image_times, lidar_times = self.image_dir.parent / "timestamps.txt", self.velodyne_dir.parent / "timestamps.txt"
        if image_times.is_file() != lidar_times.is_file():   # epoch stamps beside frame numbers: 41 years apart
            have, missing = (image_times, lidar_times) if image_times.is_file() else (lidar_times, image_times)
            raise ValueError(f"{missing}: not found, while {have.relative_to(self.drive_dir)} is (the image and "
                             f"sweep stamps would not be comparable; restore it, as the KITTI raw download has it)")
        self.times_ns = self._raw_times(image_times)
        self.lidar_times_ns = self._raw_times(lidar_times)
        self.times_s = self.times_ns * 1e-9
        self.lidar_times_s = self.lidar_times_ns * 1e-9

    def _raw_times(self, path: Path) -> np.ndarray:
        """(N,) int64 ns of the listed frames; without the file (and without its partner, checked in
        ``__init__``), frame number x 0.1 s."""
        ids = np.array([int(f) if f.isdigit() else k for k, f in enumerate(self.frame_ids)], dtype=np.int64)
        if not path.is_file():
            return ids * int(KITTI_FRAME_PERIOD_S * 1e9)
        stamps = parse_kitti_raw_timestamps(path)
        if ids.max() >= len(stamps):
            raise ValueError(f"{path}: {len(stamps)} timestamps, but frame {ids.max():010d} exists")
        return stamps[ids]

    @cached_property
    def _calibration(self) -> tuple[CameraModel, np.ndarray]:
        return kitti_raw_calibration(self.calib_dir, self.camera_index)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.drive_dir}: index {index} out of range for {len(self)} frames")
        index %= len(self)
        frame = self.frame_ids[index]
        image_path, scan_path = self._images[frame], self._scans[frame]
        return Sample(image=read_rgb(image_path), points=read_velodyne_bin(scan_path), camera=self.camera,
                      T_cam_lidar=self.T_cam_lidar, stamp_s=float(self.times_s[index]),
                      lidar_stamp_s=float(self.lidar_times_s[index]), frame_id=frame,
                      meta={"drive": str(self.drive_dir), "image": str(image_path), "points": str(scan_path)})

    def __repr__(self) -> str:
        return f"KittiRawDrive({str(self.drive_dir)!r}, {len(self)} frames)"


def read_kitti_raw(path: str | os.PathLike, camera_index: int = 2) -> KittiRawDrive:
    """Open a KITTI raw drive folder (or a date folder holding one drive) for lazy reading."""
    return KittiRawDrive(find_kitti_raw_drive(path), camera_index)


def read_kitti(path: str | os.PathLike, camera_index: int = 2) -> KittiSequence:
    """Open a KITTI folder of either layout: an Odometry sequence (``image_N/`` + ``velodyne/``)
    or a raw drive / date folder (``read_kitti_raw``). ``ValueError`` naming both layouts otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"KITTI folder {path}: not found or not a folder")
    if (path / "velodyne").is_dir():
        return KittiSequence(path, camera_index)
    try:
        return read_kitti_raw(path, camera_index)
    except ValueError as exc:
        if "drives (" in str(exc):
            raise
        raise ValueError(f"{path}: neither a KITTI Odometry sequence (image_{camera_index}/ + velodyne/) nor a "
                         f"KITTI raw drive (image_0{camera_index}/data/ + velodyne_points/data/) or date folder"
                         ) from None
