"""rosbag2 drives (MCAP or sqlite3) written and read with ``rosbags``, no ROS install needed.

A drive bag holds, per camera frame, a ``sensor_msgs/msg/Image`` (``rgb8``) or a
``sensor_msgs/msg/CompressedImage`` (on ``<image_topic>/compressed``) and a
``sensor_msgs/msg/CameraInfo`` with the same stamp; per LiDAR sweep a
``sensor_msgs/msg/PointCloud2`` (float32 ``x, y, z, intensity`` and ``t`` when given); and
one ``tf2_msgs/msg/TFMessage`` on ``/tf_static`` (QoS transient_local) with
``header.frame_id = lidar_frame`` (parent), ``child_frame_id = camera_frame`` (child), which
per the tf convention carries ``T_lidar_cam = inv(T_cam_lidar)``.

Each message's bag (log) time is its header stamp; ``/tf_static`` is logged at the first
stamp. ``write_rig_bag`` writes a multi-camera rig the same way, its images as the JPEG/PNG
bytes given (CompressedImage, no re-encoding) and one /tf_static transform per camera. Messages use the ROS 2 Jazzy type definitions (``Stores.ROS2_JAZZY``; sensor_msgs and
tf2_msgs are unchanged since Humble), metadata version 8 (Jazzy).
"""
from __future__ import annotations

import logging
import os
import struct
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.storage_mcap import McapReader, read_sized, read_string
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from ..camera import CameraModel, UncalibratedCameraError, camera_from_camera_info
from ..geometry import check_transform, invert_transform, transform_from_tq, transform_to_tq
from ..image_encoding import message_to_rgb, rgb_to_compressed, rgb_to_image_fields
from ..pointcloud2 import (pointcloud2_to_array, rosbags_pointcloud2, stamp_to_sec_nanosec, structured_point_times,
                           structured_to_xyzi)
from ..tf_tree import StaticTransformTree
from ..log_once import warn_once

__all__ = [
    "ImageRecord",
    "CameraInfoRecord",
    "PointCloudRecord",
    "STORAGES",
    "TF_STATIC_TOPIC",
    "write_drive_bag",
    "RigCamera",
    "write_rig_bag",
    "open_bag",
    "unfinished_mcap",
    "bag_topics",
    "read_bag_messages",
    "read_bag_ground_truth",
    "read_bag_transforms",
    "read_bag_tf_tree",
]

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
"""Storage plugin names accepted by ``write_drive_bag``."""
TF_STATIC_TOPIC = "/tf_static"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
_BAG_VERSION = 8
_INFINITE = QosTime(2147483647, 4294967295)  # rosbag2's "infinite" duration
TF_STATIC_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                    _INFINITE, _INFINITE, QosLiveliness.AUTOMATIC, _INFINITE, False)
"""/tf_static's QoS (as tf2_ros.StaticTransformBroadcaster offers it)."""


_log = logging.getLogger(__name__)


@cache
def _typestore():
    return get_typestore(Stores.ROS2_JAZZY)


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ImageRecord:
    """A decoded Image / CompressedImage message."""

    topic: str
    stamp_s: float
    """Header stamp (capture time), seconds."""
    log_time_s: float
    """Time the bag logged it, seconds."""
    frame_id: str
    image: np.ndarray
    """(H, W, 3) uint8 RGB."""


@dataclass(frozen=True)
class CameraInfoRecord:
    """A decoded CameraInfo message."""

    topic: str
    stamp_s: float
    log_time_s: float
    frame_id: str
    camera: CameraModel


@dataclass(frozen=True)
class PointCloudRecord:
    """A decoded PointCloud2 message."""

    topic: str
    stamp_s: float
    log_time_s: float
    frame_id: str
    points: np.ndarray
    """(N, 4) float32 ``x, y, z, intensity`` in ``frame_id`` (NaN points dropped)."""
    times_s: np.ndarray | None = None
    """(N,) each point's firing time relative to ``stamp_s``, seconds, from the cloud's time field
    (``crossi2p.pointcloud2.structured_point_times``; None: the cloud has none)."""


BagRecord = ImageRecord | CameraInfoRecord | PointCloudRecord


# --------------------------------------------------------------------------- writing
def _header(stamp_s: float, frame_id: str):
    T = _typestore().types
    sec, nanosec = stamp_to_sec_nanosec(stamp_s)
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                    frame_id=frame_id)


def _camera_info(camera: CameraModel, stamp_s: float, frame_id: str):
    T = _typestore().types
    P = np.hstack([camera.K, np.zeros((3, 1))])
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T[CAMERA_INFO](header=_header(stamp_s, frame_id), height=camera.height, width=camera.width,
                          distortion_model=camera.distortion_model if camera.distortion.size else "plumb_bob",
                          d=camera.distortion.astype(np.float64), k=camera.K.reshape(-1).astype(np.float64),
                          r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi)


def _image(rgb: np.ndarray, stamp_s: float, frame_id: str, compressed: bool, fmt: str):
    T = _typestore().types
    if compressed:
        fmt, data = rgb_to_compressed(rgb, fmt)
        return T[COMPRESSED_IMAGE](header=_header(stamp_s, frame_id), format=fmt,
                                   data=np.frombuffer(data, dtype=np.uint8))
    return T[IMAGE](header=_header(stamp_s, frame_id), **rgb_to_image_fields(rgb))


def _tf_static(T_cam_lidar: np.ndarray, stamp_s: float, lidar_frame: str, camera_frame: str):
    T = _typestore().types
    t, q = transform_to_tq(invert_transform(T_cam_lidar))  # T_lidar_cam: parent lidar -> child camera
    transform = T["geometry_msgs/msg/Transform"](
        translation=T["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=T["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
    stamped = T["geometry_msgs/msg/TransformStamped"](header=_header(stamp_s, lidar_frame),
                                                      child_frame_id=camera_frame, transform=transform)
    return T[TF_MESSAGE](transforms=[stamped])


def _ns(stamp_s: float) -> int:
    sec, nanosec = stamp_to_sec_nanosec(stamp_s)
    return sec * 1_000_000_000 + nanosec


def _storage_plugin(storage: str) -> StoragePlugin:
    if storage not in STORAGES:
        raise ValueError(f"unknown rosbag2 storage {storage!r}; expected one of {sorted(STORAGES)}")
    return STORAGES[storage]


def _write_queue(bag_dir: Path, plugin, ts, msgtypes: dict, queue: list, progress: bool) -> None:
    """Write a sorted queue of ``(stamp_ns, order, topic, make_message)`` into a new rosbag2 (one
    connection per topic of ``msgtypes``; /tf_static with its latched QoS)."""
    with Writer(bag_dir, version=_BAG_VERSION, storage_plugin=plugin) as writer:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=ts,
                                         offered_qos_profiles=[TF_STATIC_QOS] if topic == TF_STATIC_TOPIC else [])
            for topic, msgtype in msgtypes.items()
        }
        for ns, _, topic, make in tqdm(queue, desc=f"writing {bag_dir.name}", disable=not progress):
            writer.write(connections[topic], ns, ts.serialize_cdr(make(), msgtypes[topic]))


def write_drive_bag(bag_dir: str | os.PathLike,
                    camera_frames: Sequence[tuple[float, np.ndarray]],
                    lidar_sweeps: Sequence[tuple[float, np.ndarray]],
                    camera: CameraModel,
                    T_cam_lidar: np.ndarray,
                    storage: Literal["mcap", "sqlite3"] = "mcap",
                    compressed: bool = False,
                    image_topic: str = "/camera/image_raw",
                    info_topic: str = "/camera/camera_info",
                    lidar_topic: str = "/lidar/points",
                    camera_frame: str = "camera_optical",
                    lidar_frame: str = "lidar",
                    compressed_format: Literal["jpeg", "png"] = "jpeg",
                    progress: bool = False) -> Path:
    """Write a drive as a rosbag2 folder (created; must not exist yet); returns its path.

    Args:
        camera_frames: ``(stamp_s, image)`` pairs, image (H, W, 3) uint8 RGB of ``camera``'s size.
        lidar_sweeps: ``(stamp_s, points)`` pairs, points (N, 4) ``x, y, z, intensity`` or
            (N, 5) with a per-point time offset ``t`` (s), in ``lidar_frame``.
        camera: intrinsics written in each CameraInfo.
        T_cam_lidar: (4, 4) ground truth, published on /tf_static as parent ``lidar_frame``,
            child ``camera_frame`` (i.e. ``inv(T_cam_lidar)``).
        storage: ``mcap`` or ``sqlite3``.
        compressed: write CompressedImage (``compressed_format``) on ``<image_topic>/compressed``
            instead of raw ``rgb8`` Images on ``image_topic``.
    """
    plugin = _storage_plugin(storage)
    T_cam_lidar = check_transform(T_cam_lidar, "T_cam_lidar")
    bag_dir = Path(bag_dir)
    ts = _typestore()
    stamps = [s for s, _ in camera_frames] + [s for s, _ in lidar_sweeps]
    first = min(stamps) if stamps else 0.0
    img_topic = image_topic + "/compressed" if compressed else image_topic

    # (log time ns, tie-break, topic, message factory): messages are built while writing.
    queue: list[tuple[int, int, str, object]] = []
    for k, (stamp, rgb) in enumerate(camera_frames):
        if rgb.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"camera frame {k}: image {rgb.shape[1]}x{rgb.shape[0]} does not match the "
                             f"camera's {camera.width}x{camera.height}")
        ns = _ns(stamp)
        queue.append((ns, 2, img_topic, lambda s=stamp, im=rgb: _image(im, s, camera_frame, compressed,
                                                                          compressed_format)))
        # CameraInfo first at the same stamp: a reader that needs it for the image has it
        queue.append((ns, 1, info_topic, lambda s=stamp: _camera_info(camera, s, camera_frame)))
    for stamp, pts in lidar_sweeps:
        queue.append((_ns(stamp), 3, lidar_topic, lambda s=stamp, p=pts: rosbags_pointcloud2(p, s, lidar_frame, ts)))
    queue.append((_ns(first), 0, TF_STATIC_TOPIC,
                  lambda: _tf_static(T_cam_lidar, first, lidar_frame, camera_frame)))
    queue.sort(key=lambda item: item[:2])

    msgtypes = {img_topic: COMPRESSED_IMAGE if compressed else IMAGE, info_topic: CAMERA_INFO,
                lidar_topic: POINTCLOUD2, TF_STATIC_TOPIC: TF_MESSAGE}
    if len(msgtypes) != 4:
        raise ValueError(f"topics must differ: {img_topic}, {info_topic}, {lidar_topic}, {TF_STATIC_TOPIC}")
    _write_queue(bag_dir, plugin, ts, msgtypes, queue, progress)
    return bag_dir


@dataclass(frozen=True)
class RigCamera:
    """One camera of a multi-camera rig, for ``write_rig_bag``."""

    name: str
    """Short name used in its topics, e.g. ``camera_01`` -> ``/camera_01/image_raw/compressed``,
    ``/camera_01/camera_info``."""
    camera: CameraModel
    """Intrinsics written in each CameraInfo."""
    T_cam_lidar: np.ndarray
    """(4, 4) ground truth, LiDAR frame -> this camera's optical frame (on /tf_static)."""
    frames: Sequence[tuple[float, bytes]]
    """``(stamp_s, encoded image)``: JPEG or PNG bytes, written unchanged as CompressedImage."""
    frame_id: str = ""
    """Optical frame id (default ``<name>_optical``)."""
    image_format: Literal["jpeg", "png"] = "jpeg"
    """CompressedImage ``format`` of ``frames``."""

    @property
    def optical_frame(self) -> str:
        return self.frame_id or f"{self.name}_optical"

    @property
    def image_topic(self) -> str:
        """The raw image topic name; the CompressedImage is on ``<image_topic>/compressed``."""
        return f"/{self.name}/image_raw"

    @property
    def info_topic(self) -> str:
        return f"/{self.name}/camera_info"


def write_rig_bag(bag_dir: str | os.PathLike,
                  cameras: Sequence[RigCamera],
                  lidar_sweeps: Sequence[tuple[float, np.ndarray]],
                  lidar_topic: str = "/lidar/points",
                  lidar_frame: str = "lidar",
                  storage: Literal["mcap", "sqlite3"] = "mcap",
                  progress: bool = False) -> Path:
    """Write a multi-camera rig recording as a rosbag2 folder (created; must not exist yet).

    Per camera: its already encoded images as ``sensor_msgs/CompressedImage`` on
    ``<image_topic>/compressed`` (bytes kept as given: no re-encoding) and a CameraInfo with the
    same stamp on ``info_topic`` (logged just before the image); per sweep a PointCloud2 on ``lidar_topic``; one /tf_static
    message (transient_local) holding, per camera, parent ``lidar_frame`` -> child
    ``optical_frame``, i.e. ``inv(T_cam_lidar)`` (tf convention). Log time = header stamp.

    Args:
        cameras: the rig's cameras (names distinct).
        lidar_sweeps: ``(stamp_s, points)``, points (N, 4) ``x, y, z, intensity`` in ``lidar_frame``.
    Returns:
        the bag folder.
    """
    plugin = _storage_plugin(storage)
    bag_dir = Path(bag_dir)
    ts = _typestore()
    T = ts.types
    if not cameras:
        raise ValueError("write_rig_bag: no cameras")
    msgtypes: dict[str, str] = {lidar_topic: POINTCLOUD2, TF_STATIC_TOPIC: TF_MESSAGE}
    queue: list[tuple[int, int, str, object]] = []
    for c in cameras:
        check_transform(c.T_cam_lidar, f"camera {c.name}: T_cam_lidar")
        img_topic = c.image_topic + "/compressed"
        for topic, msgtype in ((img_topic, COMPRESSED_IMAGE), (c.info_topic, CAMERA_INFO)):
            if topic in msgtypes:
                raise ValueError(f"write_rig_bag: topic {topic} written twice (camera names must differ)")
            msgtypes[topic] = msgtype
        for stamp, data in c.frames:
            ns = _ns(stamp)
            # CameraInfo first: a reader that needs the camera model before an image gets it.
            queue.append((ns, 1, c.info_topic, lambda s=stamp, c=c: _camera_info(c.camera, s, c.optical_frame)))
            queue.append((ns, 2, img_topic, lambda s=stamp, d=data, c=c: T[COMPRESSED_IMAGE](
                header=_header(s, c.optical_frame), format=c.image_format, data=np.frombuffer(d, dtype=np.uint8))))
    for stamp, pts in lidar_sweeps:
        queue.append((_ns(stamp), 3, lidar_topic, lambda s=stamp, p=pts: rosbags_pointcloud2(p, s, lidar_frame, ts)))
    stamps = [s for c in cameras for s, _ in c.frames] + [s for s, _ in lidar_sweeps]
    first = min(stamps) if stamps else 0.0

    def tf_static():
        transforms = [m for c in cameras for m in _tf_static(c.T_cam_lidar, first, lidar_frame,
                                                                c.optical_frame).transforms]
        return T[TF_MESSAGE](transforms=transforms)

    queue.append((_ns(first), 0, TF_STATIC_TOPIC, tf_static))
    queue.sort(key=lambda item: item[:2])
    _write_queue(bag_dir, plugin, ts, msgtypes, queue, progress)
    return bag_dir


# --------------------------------------------------------------------------- reading
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_DATA_END = 0x0F


def _end_of_complete_records(bio, start: int) -> int:
    """Byte offset where the complete MCAP records that begin at ``start`` end: before the first
    record cut short by the end of the file, before a zero opcode (zero-filled tail after a crash)
    and before ``DataEnd`` (a summary section may follow it half written)."""
    size = bio.seek(0, 2)
    pos = start
    while pos + 9 <= size:
        bio.seek(pos)
        op = bio.read(1)[0]
        length = int.from_bytes(bio.read(8), "little")
        if op in (0x00, _MCAP_DATA_END) or pos + 9 + length > size:
            break
        pos += 9 + length
    return pos


class _UnfinishedMcapReader(McapReader):
    """An MCAP file whose recorder was killed: header, schemas, channels and chunks, but no summary
    and no footer, which rosbags' ``McapReader`` requires. The data section is taken up to its last
    complete record and scanned with rosbags' own ``meta_scan`` / ``messages_scan`` (what it does
    for a finished file without an index); the messages of a chunk cut short are lost. Messages
    come in file order, which is the order the recorder wrote them. Relies on rosbags 0.11's
    ``McapReader`` internals (``bio``, ``data_start`` / ``data_end``, ``meta_scan``,
    ``messages_scan``, ``statistics``): rosbags is pinned in requirements.txt and
    tests/core/datasets/test_rosbag2_dataset.py reads a cut file, so an upgrade that changes them fails there."""

    def _open(self) -> None:
        bio = self.bio
        if bio.read(8) != _MCAP_MAGIC:
            raise ReaderError("File magic is invalid.")
        if bio.read(1) != b"\x01":
            raise ReaderError("Unexpected record (expected the MCAP header).")
        if read_string(BytesIO(read_sized(bio))) != "ros2":
            raise ReaderError("Profile is not ros2.")
        self.data_start = bio.tell()
        self.data_end = _end_of_complete_records(bio, self.data_start)
        self.meta_scan()
        st = self.statistics
        self.connections = [c._replace(msgcount=st.channel_message_counts.get(c.id, 0)) for c in self.connections]
        self.metadata = self.metadata._replace(
            duration=st.end_time - st.start_time + 1 if st.message_count else 0,
            start_time=st.start_time if st.message_count else 2**63 - 1,
            end_time=st.end_time + 1 if st.message_count else 0, message_count=st.message_count)

    def messages(self, connections, start=None, stop=None):
        try:
            yield from self.messages_scan(connections, start, stop)
        except ReaderError as exc:  # a corrupt complete record: the readers keep what came before
            raise ValueError(f"bag {self.path}: unfinished MCAP unreadable past this point ({exc})") from None


_CUT_MCAP = "the MCAP file ends without its footer (the recorder was killed, or the file was cut)"


def _mcap_is_finished(path: Path) -> bool:
    """The file ends with the MCAP magic (its footer was written)."""
    with open(path, "rb") as f:
        if f.seek(0, 2) < 2 * len(_MCAP_MAGIC):
            return False
        f.seek(-len(_MCAP_MAGIC), 2)
        return f.read() == _MCAP_MAGIC


def unfinished_mcap(bag: str | os.PathLike) -> str:
    """Why ``bag`` (as ``open_bag`` takes it) is read only up to its last complete record: its
    MCAP file has no footer (the recorder was killed, or the copy was cut); '' when it has one,
    is sqlite3, or cannot be opened (``open_bag`` says why)."""
    try:
        source = _bag_source(Path(bag))
    except ValueError:
        return ""
    if source.suffix == ".mcap" and not _mcap_is_finished(source):
        return f"{source}: {_CUT_MCAP}; read up to its last complete record"
    return ""


def _reindex_hint(folder: Path, storage: str) -> str:
    return f"rebuild it with `ros2 bag reindex {folder} -s {storage}`"


def _cut_single_mcap(folder: Path) -> Path | None:
    """The folder's one ``.mcap`` when it was cut short (no footer) although ``metadata.yaml`` is
    there (a copy that stopped, a disk that filled): read from the file itself, up to its last
    complete record, as without metadata.yaml; None otherwise (rosbags reads the folder)."""
    mcaps = sorted(folder.glob("*.mcap"))
    return mcaps[0] if len(mcaps) == 1 and not _mcap_is_finished(mcaps[0]) else None


def _bag_source(path: Path) -> Path:
    """What ``open_bag`` hands to rosbags for a user's path (see ``open_bag``)."""
    if not path.exists():
        raise ValueError(f"bag {path}: cannot be opened as a rosbag2 (it does not exist)")
    if path.is_file():
        if path.suffix not in (".mcap", ".db3"):
            raise ValueError(f"bag {path}: expected a rosbag2 folder or its .mcap / .db3 storage file, "
                             f"got a {path.suffix or 'suffix-less'} file")
        if (path.parent / "metadata.yaml").is_file():
            # a file of a complete recording: the whole recording (split files too)
            return _cut_single_mcap(path.parent) or path.parent
        if path.suffix == ".db3":
            raise ValueError(f"bag {path}: sqlite3 storage without metadata.yaml (the recorder was killed?); "
                             + _reindex_hint(path.parent, "sqlite3"))
        return path
    if (path / "metadata.yaml").is_file():
        return _cut_single_mcap(path) or path
    mcaps, db3s = sorted(path.glob("*.mcap")), sorted(path.glob("*.db3"))
    if db3s:
        raise ValueError(f"bag {path}: sqlite3 storage ({db3s[0].name}) without metadata.yaml (the recorder was "
                         f"killed?); {_reindex_hint(path, 'sqlite3')}")
    if len(mcaps) == 1:
        return mcaps[0]
    if mcaps:
        raise ValueError(f"bag {path}: {len(mcaps)} .mcap files and no metadata.yaml; pass one .mcap file, or "
                         + _reindex_hint(path, "mcap"))
    raise ValueError(f"bag {path}: cannot be opened as a rosbag2 (no metadata.yaml, .mcap or .db3 in it)")


def open_bag(bag: str | os.PathLike) -> Reader:
    """Open a recording with rosbags (opened; the caller closes it). ``bag`` may be:

    - a rosbag2 folder with ``metadata.yaml`` (MCAP or sqlite3, split files included);
    - one storage file of such a folder (``.mcap`` / ``.db3`` with ``metadata.yaml`` beside it):
      the whole recording is opened;
    - an ``.mcap`` file without ``metadata.yaml``, or a folder holding one ``.mcap`` and no
      ``metadata.yaml`` (the recorder was killed before writing it, or only the file was copied):
      read from the file itself. MCAP is self-describing (schemas with the message definitions,
      channels with topic, type and QoS), so metadata.yaml adds nothing needed and rosbags' Reader
      opens the storage file directly; a file whose recorder was killed before the footer is read
      up to its last complete record (``_UnfinishedMcapReader``), also when ``metadata.yaml`` is
      there (a copy cut short; ``_cut_single_mcap``);
    - sqlite3 without ``metadata.yaml``: ``ValueError`` naming ``ros2 bag reindex``. A ``.db3`` left
      by a killed recorder can hold an unfinished transaction (a ``-journal`` / ``-wal`` beside
      it) that only SQLite with write access rolls back; rosbags opens ``.db3`` read-only, while
      ``ros2 bag reindex`` recovers the database and writes metadata.yaml.

    Raises ``ValueError`` (one line naming the bag and what was expected) otherwise.
    """
    path = Path(bag)
    source = _bag_source(path)
    try:
        reader = Reader(source)
        if source.suffix == ".mcap" and not _mcap_is_finished(source):
            reader.storage = _UnfinishedMcapReader(source)
        reader.open()
    except (ReaderError, FileNotFoundError, OSError, IndexError, struct.error) as exc:
        raise ValueError(f"bag {path}: cannot be opened as a rosbag2 ({exc})") from None
    return reader


_open = open_bag  # the name the readers below use


def recorded_image_topic(image_topic: str, topics: dict[str, str] | set[str]) -> str:
    """The topic a bag holds ``image_topic``'s images on: itself, or ``<image_topic>/compressed``
    when only that is recorded (``topics``: the bag's topics, ``bag_topics``)."""
    if image_topic not in topics and image_topic + "/compressed" in topics:
        return image_topic + "/compressed"
    return image_topic


def bag_topics(bag_dir: str | os.PathLike) -> dict[str, str]:
    """``{topic: message type}`` of a bag.

    Raises:
        ValueError: the bag cannot be opened (``open_bag``), or it is an MCAP cut short before
            its first complete record (no topic can be read from it: said so, not "no topics").
    """
    reader = _open(bag_dir)
    try:
        topics = {t: info.msgtype for t, info in reader.topics.items()}
    finally:
        reader.close()
    if not topics and unfinished_mcap(bag_dir):
        raise ValueError(f"bag {bag_dir}: nothing readable: {_CUT_MCAP}, before its first complete record")
    return topics


def bag_message_counts(bag_dir: str | os.PathLike) -> dict[str, int]:
    """``{topic: number of messages}`` of a bag, from its metadata / MCAP statistics (no message
    is read; a cut MCAP's statistics may be missing: 0)."""
    reader = _open(bag_dir)
    try:
        return {t: int(info.msgcount) for t, info in reader.topics.items()}
    finally:
        reader.close()


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _camera_from_info(msg, source: str = "CameraInfo") -> CameraModel:
    """The camera of a CameraInfo message: ``crossi2p.camera.camera_from_camera_info`` (the node's too)."""
    return camera_from_camera_info(msg, source=source)


def _missing_topic(bag_dir, topic: str, topics: dict[str, str]) -> ValueError:
    listing = ", ".join(f"{t} ({msgtype})" for t, msgtype in sorted(topics.items())) or "none"
    return ValueError(f"bag {bag_dir}: topic {topic!r} not found; topics in the bag: {listing}")


def read_bag_messages(bag_dir: str | os.PathLike,
                      image_topic: str | None = "/camera/image_raw",
                      info_topic: str | None = "/camera/camera_info",
                      lidar_topic: str | None = "/lidar/points") -> Iterator[BagRecord]:
    """Decoded camera, camera-info and LiDAR messages of a bag, in log-time order.

    Yields ``ImageRecord`` (images decoded by ``crossi2p.image_encoding``),
    ``CameraInfoRecord`` and ``PointCloudRecord`` (``crossi2p.pointcloud2.structured_to_xyzi``, and the
    per-point times of ``structured_point_times``).
    A topic given as ``None`` is skipped. When ``image_topic`` is absent but
    ``<image_topic>/compressed`` exists, that one is read. Raises ``ValueError`` naming the
    bag, the topic and the topics present when a topic is missing or has an unexpected type,
    and naming the bag, topic and time when a message cannot be decoded. A CameraInfo of an
    uncalibrated camera (K all zeros, 0x0 size) is skipped with one warning per topic: no record,
    so readers keep the last calibrated camera (none yet: their images wait). CameraInfo is read
    by ``crossi2p.camera.camera_from_camera_info`` (binning/roi applied, as the node does).
    Topics are checked when this is called; messages are read as the iterator is consumed.
    """
    topics = bag_topics(bag_dir)
    wanted: dict[str, tuple[str, ...]] = {}
    if image_topic is not None:
        wanted[recorded_image_topic(image_topic, topics)] = (IMAGE, COMPRESSED_IMAGE)
    if info_topic is not None:
        wanted[info_topic] = (CAMERA_INFO,)
    if lidar_topic is not None:
        wanted[lidar_topic] = (POINTCLOUD2,)
    for topic, types in wanted.items():
        if topic not in topics:
            raise _missing_topic(bag_dir, topic, topics)
        if topics[topic] not in types:
            raise ValueError(f"bag {bag_dir}: topic {topic!r} has type {topics[topic]}, "
                             f"expected {' or '.join(types)}")
    return _decoded_messages(bag_dir, set(wanted))


def _decoded_messages(bag_dir, topics: set[str]) -> Iterator[BagRecord]:
    reader = _open(bag_dir)
    ts = _typestore()
    try:
        connections = [c for c in reader.connections if c.topic in topics]
        for conn, log_ns, raw in reader.messages(connections=connections):
            log_s = log_ns * 1e-9
            try:
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                stamp, frame = _stamp_s(msg.header), msg.header.frame_id
                if conn.msgtype == CAMERA_INFO:
                    try:
                        camera = _camera_from_info(msg)
                    except UncalibratedCameraError as exc:  # skipped, not fatal: the node does the same
                        warn_once(("bag uncalibrated", str(bag_dir), conn.topic),
                                  f"bag {bag_dir}: topic {conn.topic!r}, message at {log_s:.9f} s: {exc}; "
                                  f"skipped, as are later uncalibrated ones on this topic", _log)
                        continue
                    record = CameraInfoRecord(conn.topic, stamp, log_s, frame, camera)
                elif conn.msgtype == POINTCLOUD2:
                    cloud = pointcloud2_to_array(msg)
                    record = PointCloudRecord(conn.topic, stamp, log_s, frame,
                                              structured_to_xyzi(cloud, source="PointCloud2"),
                                              structured_point_times(cloud, stamp, "PointCloud2"))
                else:
                    record = ImageRecord(conn.topic, stamp, log_s, frame, message_to_rgb(msg))
            except ValueError as exc:
                raise ValueError(f"bag {bag_dir}: topic {conn.topic!r}, message at {log_s:.9f} s: {exc}") from None
            yield record
    finally:
        reader.close()


def read_bag_transforms(bag_dir: str | os.PathLike, topic: str = TF_STATIC_TOPIC) -> list[tuple[str, str, np.ndarray]]:
    """All transforms on ``topic`` as ``(parent, child, T_parent_child)``, later ones replacing earlier."""
    reader = _open(bag_dir)
    ts = _typestore()
    try:
        if topic not in reader.topics:
            raise _missing_topic(bag_dir, topic, {t: info.msgtype for t, info in reader.topics.items()})
        edges: dict[str, tuple[str, str, np.ndarray]] = {}
        connections = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=connections):
            for tf in ts.deserialize_cdr(raw, conn.msgtype).transforms:
                tr, rot = tf.transform.translation, tf.transform.rotation
                T = transform_from_tq([tr.x, tr.y, tr.z], [rot.x, rot.y, rot.z, rot.w])
                parent, child = tf.header.frame_id.lstrip("/"), tf.child_frame_id.lstrip("/")
                edges[child] = (parent, child, T)  # a frame has one parent on tf
        return list(edges.values())
    finally:
        reader.close()


def read_bag_tf_tree(bag_dir: str | os.PathLike, topic: str = TF_STATIC_TOPIC) -> StaticTransformTree:
    """The bag's static transforms as a ``StaticTransformTree`` (empty when the bag has no ``topic``;
    an edge the tree refuses, e.g. a frame that is its own parent, is left out)."""
    tree = StaticTransformTree()
    if topic in bag_topics(bag_dir):
        for parent, child, T_parent_child in read_bag_transforms(bag_dir, topic):
            try:
                tree.set_transform(parent, child, T_parent_child)
            except ValueError:
                continue
    return tree


def _first_frame_ids(bag_dir) -> tuple[str | None, str | None]:
    """frame_id of the first camera message and of the first PointCloud2 in the bag."""
    reader = _open(bag_dir)
    ts = _typestore()
    camera_frame = lidar_frame = None
    try:
        for kinds, is_camera in (((IMAGE, COMPRESSED_IMAGE, CAMERA_INFO), True), ((POINTCLOUD2,), False)):
            conns = [c for c in reader.connections if c.msgtype in kinds]
            for conn, _, raw in reader.messages(connections=conns) if conns else ():
                frame = ts.deserialize_cdr(raw, conn.msgtype).header.frame_id.lstrip("/")
                if is_camera:
                    camera_frame = frame
                else:
                    lidar_frame = frame
                break
    finally:
        reader.close()
    return camera_frame, lidar_frame


def read_bag_ground_truth(bag_dir: str | os.PathLike, camera_frame: str | None = None,
                          lidar_frame: str | None = None) -> np.ndarray:
    """``T_cam_lidar`` (4x4) from the bag's ``/tf_static``, composing chains of transforms.

    Frames left ``None`` are taken from the ``frame_id`` of the bag's first camera message
    (Image, CompressedImage or CameraInfo) and first PointCloud2; failing that, when
    ``/tf_static`` holds a single transform, its child is the camera and its parent the LiDAR.
    The two frames may sit anywhere in the tf tree (e.g. ``base_link -> lidar`` and
    ``base_link -> camera_link -> camera_optical``): the path between them is composed.
    """
    edges = read_bag_transforms(bag_dir)
    if camera_frame is None or lidar_frame is None:
        cam0, lidar0 = _first_frame_ids(bag_dir)
        if (cam0 is None or lidar0 is None) and len(edges) == 1:
            lidar0 = lidar0 or edges[0][0]
            cam0 = cam0 or edges[0][1]
        camera_frame = camera_frame or cam0
        lidar_frame = lidar_frame or lidar0
        if camera_frame is None or lidar_frame is None:
            raise ValueError(f"bag {bag_dir}: cannot tell the camera and LiDAR frames apart; pass "
                             f"camera_frame and lidar_frame (tf frames: {_frames(edges)})")
    camera_frame, lidar_frame = camera_frame.lstrip("/"), lidar_frame.lstrip("/")
    # Breadth-first search from the LiDAR frame over the tf tree, both edge directions.
    neighbours: dict[str, list[tuple[str, np.ndarray]]] = {}
    for parent, child, T_p_c in edges:
        neighbours.setdefault(parent, []).append((child, T_p_c))
        neighbours.setdefault(child, []).append((parent, invert_transform(T_p_c)))
    T_lidar = {lidar_frame: np.eye(4)}  # frame f -> T_lidar_f
    todo = deque([lidar_frame])
    while todo:
        a = todo.popleft()
        for b, T_a_b in neighbours.get(a, []):
            if b not in T_lidar:
                T_lidar[b] = T_lidar[a] @ T_a_b
                todo.append(b)
    if camera_frame not in T_lidar:
        raise ValueError(f"bag {bag_dir}: no chain of {TF_STATIC_TOPIC} transforms links {lidar_frame!r} to "
                         f"{camera_frame!r} (tf frames: {_frames(edges)})")
    return invert_transform(T_lidar[camera_frame])


def _frames(edges) -> list[str]:
    return sorted({f for parent, child, _ in edges for f in (parent, child)})
