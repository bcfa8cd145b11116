"""What a recording folder is and how to open it: shared by ``crossi2p-evaluate-bag`` and
``crossi2p-calibrate`` (one reading of every layout).

- ``rosbag2``: a folder with metadata.yaml, a folder holding only storage files (``.mcap`` /
  ``.db3``), or a storage file itself; read message by message (``crossi2p.datasets.rosbag2``),
  paired by stamp in the pipeline;
- ``kitti``: a KITTI Odometry sequence folder (``image_N/``, ``velodyne/``, ``calib.txt`` or
  ``calib.yaml``);
- ``kitti_raw``: a KITTI raw drive (``<date>_drive_XXXX_sync/`` with ``image_0N/data/``,
  ``velodyne_points/data/``; calibration files in its date folder) or a date folder holding one;
- ``nuscenes``: a nuScenes-format folder (``v1.0-*/`` tables, ``samples/``).

Datasets come already paired (KITTI frame index, nuScenes sample): ``open_dataset`` gives their
``Sample`` sequence. ``add_topic_arguments`` are the two CLIs' rosbag2 topic flags
(``warn_unused_source_flags``: they and ``--slop-s`` have no effect on a dataset folder);
``add_deskew_arguments`` / ``deskew_config`` their de-skewing
flags (``crossi2p.deskew``), with what ``auto`` means for each layout (their output paths are
checked before a run by ``crossi2p.cli.check_writable``, shared with the training CLIs).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal

from crossi2p.calib_io import load_calibration_yaml
from crossi2p.cli import UsageError
from crossi2p.datasets.rosbag2 import bag_topics, recorded_image_topic
from crossi2p.deskew import DESKEW_MODES, DeskewConfig
from crossi2p.travel_check import TravelCheckConfig

from .pairing import PairingConfig

Source = Literal["rosbag2", "kitti", "kitti_raw", "nuscenes"]
SOURCES: tuple[str, ...] = ("rosbag2", "kitti", "kitti_raw", "nuscenes")
DEFAULT_KITTI_CAMERA, DEFAULT_CAMERA_CHANNEL, DEFAULT_LIDAR_CHANNEL = 2, "CAM_FRONT", "LIDAR_TOP"
"""The dataset-folder flags' defaults (``add_dataset_arguments``, ``open_dataset``)."""


def _is_kitti_raw_drive(path: Path) -> bool:
    return (path / "velodyne_points" / "data").is_dir() and any(path.glob("image_0[0-9]/data"))


def detect_source(path: Path) -> Source:
    """rosbag2, kitti (Odometry), kitti_raw or nuscenes from a path's layout; ValueError naming what
    was looked for. A rosbag2 is a folder with metadata.yaml, a folder holding only storage files
    (``.mcap`` / ``.db3``: a recording whose metadata.yaml is missing; the reader explains what it
    can do with it) or a storage file itself."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"bag {path}: not found")
    if path.is_file():
        if path.suffix in (".mcap", ".db3"):
            return "rosbag2"
        raise ValueError(f"{path}: a file, expected a .mcap or .db3 storage file or a recording folder")
    if (path / "metadata.yaml").is_file() or any(path.glob("*.mcap")) or any(path.glob("*.db3")):
        return "rosbag2"
    if (path / "velodyne").is_dir() and any(path.glob("image_[0-9]")):
        return "kitti"
    if _is_kitti_raw_drive(path) or any(_is_kitti_raw_drive(d) for d in path.glob("*_drive_*")):
        return "kitti_raw"
    if any(p.is_dir() for p in path.glob("v1.0-*")):
        return "nuscenes"
    raise ValueError(f"{path}: not a rosbag2 folder (no metadata.yaml, .mcap or .db3), KITTI Odometry sequence (no "
                     "image_N/ + velodyne/), KITTI raw drive (no image_0N/data/ + velodyne_points/data/, nor a "
                     "date folder holding one) or nuScenes folder (no v1.0-*/); check the path or pass --source")


def open_dataset(path: Path, source: Source, kitti_camera: int = DEFAULT_KITTI_CAMERA,
                 camera_channel: str = DEFAULT_CAMERA_CHANNEL, lidar_channel: str = DEFAULT_LIDAR_CHANNEL,
                 require_extrinsic: bool = True):
    """``(samples, count, ground-truth description, ground truth of the first pair)`` of a dataset
    folder (``kitti``, ``kitti_raw`` or ``nuscenes``); its errors name the file.
    ``require_extrinsic=False``: a KITTI Odometry folder whose calib.txt has no ``Tr`` is read too
    (its ground truth None: ``crossi2p-calibrate`` needs none)."""
    path = Path(path)
    if source in ("kitti", "kitti_raw") and kitti_camera not in range(4):
        raise ValueError(f"--kitti-camera {kitti_camera}: expected 0 to 3 (KITTI's cameras: 0-1 grey, 2-3 colour)")
    if source == "kitti":
        from crossi2p.datasets.kitti import read_kitti_sequence

        seq = read_kitti_sequence(path, kitti_camera, require_extrinsic)
        calib = "calib.yaml" if (path / "calib.yaml").is_file() else "calib.txt"
        return seq, len(seq), f"KITTI {calib}", seq.T_cam_lidar
    if source == "kitti_raw":
        from crossi2p.datasets.kitti import read_kitti_raw

        drive = read_kitti_raw(path, kitti_camera)
        return (drive, len(drive), f"KITTI raw {drive.calib_dir.name}/calib_velo_to_cam.txt + calib_cam_to_cam.txt",
                drive.T_cam_lidar)
    if source != "nuscenes":
        raise ValueError(f"{path}: open_dataset reads kitti, kitti_raw or nuscenes folders, not {source!r}")
    from crossi2p.datasets.nuscenes import read_nuscenes

    ds = read_nuscenes(path, camera_channel=camera_channel, lidar_channel=lidar_channel)
    return ds, len(ds), "nuScenes calibrated_sensor + ego_pose (per pair)", ds.T_cam_lidar(0)


def dataset_frames(path: Path, source: Source, camera_channel: str = DEFAULT_CAMERA_CHANNEL,
                   lidar_channel: str = DEFAULT_LIDAR_CHANNEL) -> tuple[str, str]:
    """``(lidar frame, camera frame)`` a dataset folder names, for the tf names of what is written
    about it: a KITTI-layout folder's own ``calib.yaml`` (``frames``: what ``crossi2p-sim --kitti``
    writes), a nuScenes folder's channels; ``('', '')`` where it names none (KITTI's own calib.txt).
    Only the names are read (the folder's calibration is never used)."""
    if source == "nuscenes":
        return lidar_channel, camera_channel
    record = Path(path) / "calib.yaml"
    if source != "kitti" or not record.is_file():
        return "", ""
    try:
        named = load_calibration_yaml(record, require_camera=False).named_frames
    except (OSError, ValueError):
        return "", ""                       # unreadable: its calibration is not used either
    return named.get("parent", ""), named.get("child", "")


def check_bag_topics(bag: Path, topics: tuple[str, str, str]) -> None:
    """ValueError naming the missing topics and those present (an image topic may be recorded as
    ``<topic>/compressed``)."""
    present = bag_topics(bag)
    image_topic = topics[0]
    recorded = [recorded_image_topic(image_topic, present), *topics[1:]]
    missing = [t for t, r in zip(topics, recorded) if r not in present]
    if missing:
        raise ValueError(f"bag {bag}: topics {missing} not found; topics in the bag: {sorted(present)}")
    if len(set(topics)) != 3:
        raise ValueError(f"bag {bag}: the image, camera info and points topics must differ, got {list(topics)}")
    expected = (("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"), ("sensor_msgs/msg/CameraInfo",),
                ("sensor_msgs/msg/PointCloud2",))
    for topic, on, types in zip(topics, recorded, expected):
        found = present[on]
        if found not in types:
            raise ValueError(f"bag {bag}: topic {topic} has type {found}, expected {' or '.join(types)}")


DEFAULT_TOPICS: dict[str, str] = {"--image-topic": "/camera/image_raw",
                                  "--camera-info-topic": "/camera/camera_info",
                                  "--points-topic": "/lidar/points"}


def add_topic_arguments(p: argparse.ArgumentParser) -> None:
    """The two CLIs' rosbag2 topic flags (``--image-topic``, ``--camera-info-topic``,
    ``--points-topic``), read in that order by ``check_bag_topics``."""
    p.add_argument("--image-topic", default=DEFAULT_TOPICS["--image-topic"],
                   help="rosbag2: sensor_msgs/Image or CompressedImage topic; a CompressedImage recorded as "
                        "TOPIC/compressed is found too (default %(default)s)")
    p.add_argument("--camera-info-topic", default=DEFAULT_TOPICS["--camera-info-topic"],
                   help="rosbag2: sensor_msgs/CameraInfo topic (default %(default)s)")
    p.add_argument("--points-topic", default=DEFAULT_TOPICS["--points-topic"],
                   help="rosbag2: sensor_msgs/PointCloud2 topic (default %(default)s)")


# flags that only one kind of input reads, and their defaults (crossi2p-calibrate, crossi2p-evaluate-bag)
_SOURCE_ONLY_FLAGS: dict[str, tuple[tuple[str, object], ...]] = {
    "a KITTI folder": (("--kitti-camera", DEFAULT_KITTI_CAMERA),),
    "a nuScenes folder": (("--camera-channel", DEFAULT_CAMERA_CHANNEL), ("--lidar-channel", DEFAULT_LIDAR_CHANNEL)),
}


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """The two CLIs' dataset-folder flags (``--kitti-camera``, ``--camera-channel``,
    ``--lidar-channel``; ``warn_unused_source_flags`` says when the input does not read them)."""
    p.add_argument("--kitti-camera", type=int, default=DEFAULT_KITTI_CAMERA,
                   help="KITTI: camera index of image_N/ (raw: image_0N/) (default %(default)s)")
    p.add_argument("--camera-channel", default=DEFAULT_CAMERA_CHANNEL,
                   help="nuScenes camera channel (default %(default)s)")
    p.add_argument("--lidar-channel", default=DEFAULT_LIDAR_CHANNEL, help="nuScenes LiDAR channel (default %(default)s)")


def warn_unused_source_flags(args: argparse.Namespace, source: Source, prog: str) -> list[str]:
    """Warn (stderr, one line each) when flags were set that this kind of input does not read:
    rosbag2-only flags (topics, ``--slop-s``) for a dataset folder, whose pairs come from the dataset
    (KITTI frame index, nuScenes sample), not from pairing message stamps on topics; ``--kitti-camera``
    for anything but KITTI; the nuScenes channels for anything but nuScenes. As the de-skew flags'
    warning, a flag counts as set when its value differs from the default. Returns the flags named
    (empty: no warning)."""
    named = []
    if source != "rosbag2":
        given = [flag for flag, default in DEFAULT_TOPICS.items()
                 if getattr(args, flag[2:].replace("-", "_")) != default]
        if args.slop_s != PairingConfig.slop_s:
            given.insert(0, "--slop-s")
        if given:
            verb = "has" if len(given) == 1 else "have"
            print(f"{prog}: warning: {', '.join(given)} {verb} no effect for a {source} folder: its pairs come "
                  f"from the dataset (frame index or sample), not from stamps on rosbag2 topics", file=sys.stderr)
        named += given
    reads = {"kitti": "a KITTI folder", "kitti_raw": "a KITTI folder", "nuscenes": "a nuScenes folder"}.get(source)
    for owner, flags in _SOURCE_ONLY_FLAGS.items():
        given = [flag for flag, default in flags if owner != reads and getattr(args, flag[2:].replace("-", "_")) != default]
        if given:
            verb = "is" if len(given) == 1 else "are"
            print(f"{prog}: warning: {', '.join(given)} {verb} read for {owner} only, not for this {source} input",
                  file=sys.stderr)
        named += given
    return named


def add_deskew_arguments(p: argparse.ArgumentParser) -> None:
    """The de-skewing and LiDAR-motion flags of ``crossi2p-calibrate`` and ``crossi2p-evaluate-bag``."""
    p.add_argument("--deskew", choices=["auto", *DESKEW_MODES], default="auto",
                   help="de-skew moving LiDAR sweeps to their stamps (firing times from azimuth, ego motion "
                        "from KISS-ICP odometry). auto (default): on for KITTI raw drives (their sweeps are raw), "
                        "off for KITTI Odometry folders (already compensated; a crossi2p-sim folder says whether "
                        "its sweeps are skewed), rosbag2 and nuScenes (say --deskew azimuth and where your "
                        "driver stamps, or --deskew time when its clouds carry per-point times: Ouster t, "
                        "Velodyne time, Livox offset_time, Hesai timestamp)")
    p.add_argument("--lidar-rate-hz", type=float, default=DeskewConfig.rate_hz,
                   help="LiDAR revolutions per second, for --deskew (default %(default)g)")
    p.add_argument("--lidar-stamp-azimuth-deg", type=float, default=DeskewConfig.stamp_azimuth_deg,
                   help="azimuth the beams face at a sweep's stamp, atan2(y, x) in the LiDAR frame, for "
                        "--deskew (default 0: forward, as KITTI)")
    p.add_argument("--lidar-spin", choices=["clockwise", "counterclockwise"], default="clockwise",
                   help="spin direction seen from above, for --deskew (default: clockwise, as Velodyne, "
                        "Ouster, Hesai)")
    p.add_argument("--no-travel-check", action="store_true",
                   help="do not run the direction-of-travel check on per-frame estimates (crossi2p.travel_check; "
                        "the node's travel_check.enabled:=false)")


def travel_config(args: argparse.Namespace) -> TravelCheckConfig:
    """The ``TravelCheckConfig`` the flags of ``add_deskew_arguments`` ask for (``--no-travel-check``)."""
    return TravelCheckConfig(enabled=not args.no_travel_check)


def deskew_config(args: argparse.Namespace, source: Source, path: Path) -> DeskewConfig:
    """The ``DeskewConfig`` the flags of ``add_deskew_arguments`` ask for. ``auto``: ``azimuth`` for
    a KITTI raw drive (the raw data's readme: its sweeps are not compensated for the ego motion,
    and ``velodyne_points/timestamps.txt`` is when the beams face forward) and for a KITTI Odometry
    folder whose ``calib.yaml`` (written by ``crossi2p-sim``) says its sweeps are skewed
    (``metadata.lidar_sweeps``); ``off`` otherwise, real KITTI Odometry included (its readme: its
    sweeps were compensated for the ego motion).

    Warns (stderr, one line) when de-skewing ends up off although ``--lidar-*`` flags were given.

    Raises:
        crossi2p.cli.UsageError: a rate or azimuth outside the node's ranges, or not finite (naming
            the flag).
    """
    if not 0.1 <= args.lidar_rate_hz <= 100.0:     # the node's deskew.rate_hz range (parameters.RANGES)
        raise UsageError(f"--lidar-rate-hz: expected 0.1 to 100 revolutions per second, got {args.lidar_rate_hz:g}")
    if not -360.0 <= args.lidar_stamp_azimuth_deg <= 360.0:
        raise UsageError(f"--lidar-stamp-azimuth-deg: expected -360 to 360 degrees, "
                         f"got {args.lidar_stamp_azimuth_deg:g}")
    mode = args.deskew
    if mode == "auto":
        mode = "off"
        if source == "kitti_raw":
            mode = "azimuth"
        elif source == "kitti":
            record = Path(path) / "calib.yaml"
            swept = load_calibration_yaml(record).metadata.get("lidar_sweeps") if record.is_file() else None
            mode = "azimuth" if swept == "skewed" else "off"
    given = [flag for flag, value, default in (("--lidar-rate-hz", args.lidar_rate_hz, DeskewConfig.rate_hz),
                                               ("--lidar-stamp-azimuth-deg", args.lidar_stamp_azimuth_deg,
                                                DeskewConfig.stamp_azimuth_deg),
                                               ("--lidar-spin", args.lidar_spin, "clockwise")) if value != default]
    if mode == "off" and given:
        verb = "has" if len(given) == 1 else "have"
        print(f"warning: {', '.join(given)} {verb} no effect: de-skewing is off for this {source} input "
              f"(--deskew {args.deskew}); --deskew azimuth turns it on", file=sys.stderr)
    return DeskewConfig(mode=mode, rate_hz=args.lidar_rate_hz, stamp_azimuth_deg=args.lidar_stamp_azimuth_deg,
                        clockwise=args.lidar_spin == "clockwise")
