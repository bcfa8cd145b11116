"""sensor_msgs/PointCloud2 <-> numpy, without ROS.

Hand-written because ``sensor_msgs_py`` (the ROS 2 helper ``point_cloud2``) is not on PyPI
nor in Debian 12 (docs: ENVIRONMENT). Everything here works on *duck-typed* messages:
any object with the PointCloud2 attributes ``height, width, fields (name, offset, datatype,
count), is_bigendian, point_step, row_step, data, is_dense`` -- rclpy's
``sensor_msgs.msg.PointCloud2`` (``data`` is an ``array.array('B')``) and the messages
``rosbags`` deserialises (``data`` is a numpy uint8 array) alike.

Layout handled (sensor_msgs/PointCloud2.msg, sensor_msgs/PointField.msg):

- every PointField datatype ``INT8=1 .. FLOAT64=8`` and those newer ROS distributions add,
  ``INT64=9, UINT64=10, BOOL=11``; ``count > 1`` (a sub-array per point). A datatype this
  module does not know is skipped (its bytes are ignored) with ONE warning per field name and
  datatype per process; the other fields, ``x, y, z`` among them, and the point count are
  unaffected. Fields named ``_`` are PCL padding and are skipped silently; ``count = 0``
  fields hold no data and are skipped;
- unaligned records of any ``point_step`` (e.g. Livox's 18-byte points: float32 ``x, y, z,
  intensity`` then uint8 ``tag, line``): decoded through a numpy structured dtype with the
  message's explicit offsets and ``itemsize = point_step``, no alignment assumed;
- ``is_bigendian`` (the byte order of every multi-byte field);
- ``point_step`` larger than the fields need (padding between points) and fields at any
  offset (gaps inside a point);
- ``row_step`` larger than ``width * point_step`` (padding at the end of each row); for an
  unorganised cloud (``height = 1``) a ``row_step`` below ``width * point_step`` (some drivers
  write 0) is read as ``width * point_step`` when ``data`` has exactly that size (one warning);
- organised clouds (``height > 1``): rows are concatenated, one record per point, row-major;
- ``is_dense = False`` clouds with NaN points (``pointcloud2_to_xyzi`` drops them).

Building messages (``xyzi_to_pointcloud2_fields``, ``rosbags_pointcloud2``,
``rclpy_pointcloud2``) always writes little-endian, unorganised (``height = 1``) clouds of
float32 ``x, y, z, intensity`` (+ ``t``, seconds relative to the header stamp, when a 5th
column is given).
"""
from __future__ import annotations

import array
import logging
from typing import Any, NamedTuple

import numpy as np

from .log_once import warn_once as _warn_once
from .preprocess import LidarIntensityConfig, PreprocessConfig, normalise_lidar_intensity

# the decoders' normalisation: the ``auto`` intensity policy of the one preprocessing
_AUTO_INTENSITY = PreprocessConfig(lidar_intensity=LidarIntensityConfig(scale="auto"))

__all__ = [
    "POINTFIELD_DTYPES",
    "PointFieldSpec",
    "PADDING_FIELD",
    "warn_once",
    "pointcloud2_dtype",
    "pointcloud2_to_array",
    "pointcloud2_to_xyzi",
    "structured_to_xyzi",
    "POINT_TIME_FIELDS",
    "structured_point_times",
    "normalise_intensity",
    "xyzi_to_pointcloud2_fields",
    "rosbags_pointcloud2",
    "rclpy_pointcloud2",
    "stamp_to_sec_nanosec",
]

POINTFIELD_DTYPES: dict[int, str] = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8",
                                     9: "i8", 10: "u8", 11: "?"}
"""sensor_msgs/PointField datatype constant -> numpy type code (byte order added per message).

1..8 are in every ROS 2 distribution; ``INT64 = 9``, ``UINT64 = 10``, ``BOOL = 11`` (one byte,
non-zero = true) are the ones newer distributions add."""
_POINTFIELD_NAMES = {1: "INT8", 2: "UINT8", 3: "INT16", 4: "UINT16", 5: "INT32", 6: "UINT32",
                     7: "FLOAT32", 8: "FLOAT64", 9: "INT64", 10: "UINT64", 11: "BOOL"}
_FLOAT32 = 7
PADDING_FIELD = "_"
"""Name PCL gives padding fields (PointCloud2 and PCD): skipped without a warning."""

_log = logging.getLogger(__name__)


def warn_once(key: tuple, message: str, logger: logging.Logger = _log) -> bool:
    """Log ``message`` as a warning the first time ``key`` is seen in this process (no spam per message)."""
    return _warn_once(key, message, logger)


class PointFieldSpec(NamedTuple):
    """One sensor_msgs/PointField as plain values."""

    name: str
    offset: int
    datatype: int
    count: int


# --------------------------------------------------------------------------- decoding
def pointcloud2_dtype(fields, point_step: int, is_bigendian: bool) -> np.dtype:
    """numpy structured dtype of one point (``itemsize == point_step``, fields at their offsets).

    Fields with an unknown datatype are left out (one warning per name and datatype, see the
    module docstring), as are PCL's ``_`` padding fields and ``count = 0`` fields; their bytes
    are simply not read. Raises ``ValueError`` for a known field running past ``point_step``, a
    negative offset, an empty field name, or ``x``/``y``/``z`` declared twice (a later duplicate
    of another field is skipped with a warning).
    """
    order = ">" if is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in fields:
        name, offset, datatype, count = str(f.name), int(f.offset), int(f.datatype), int(f.count)
        if not name:
            raise ValueError("PointCloud2: a field has an empty name")
        if name == PADDING_FIELD or count < 1:
            # PCL padding; count 0 happens with some drivers for unused fields: no data either way.
            continue
        if datatype not in POINTFIELD_DTYPES:
            warn_once(("PointCloud2", name, datatype),
                      f"PointCloud2 field {name!r}: unknown PointField datatype {datatype} (known: "
                      f"{_POINTFIELD_NAMES}); the field is skipped, the other fields are decoded")
            continue
        if name in names:
            if name in ("x", "y", "z"):
                raise ValueError(f"PointCloud2: field {name!r} appears twice")
            warn_once(("PointCloud2 duplicate", name),
                      f"PointCloud2: field {name!r} appears twice; the first one (offset "
                      f"{offsets[names.index(name)]}) is used")
            continue
        base = np.dtype(order + POINTFIELD_DTYPES[datatype])
        if offset < 0 or offset + base.itemsize * count > point_step:
            raise ValueError(f"PointCloud2 field {name!r}: offset {offset} + {count} x {base.itemsize} "
                             f"bytes runs past point_step {point_step}")
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": max(point_step, 0)})


def _as_uint8(data: Any) -> np.ndarray:
    """Message ``data`` (bytes, bytearray, array.array('B'), numpy uint8, list) -> uint8 view."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def pointcloud2_to_array(msg) -> np.ndarray:
    """Decode a PointCloud2 into a structured numpy array, one record per point.

    Args:
        msg: a PointCloud2 (rclpy, rosbags or any object with the same attributes).
    Returns:
        (height * width,) structured array with one field per PointField (``count > 1``
        fields are sub-arrays), native byte order, packed (padding dropped), row-major for
        organised clouds. A copy: it does not alias ``msg.data``.
    Raises:
        ValueError: inconsistent sizes (``point_step``, ``row_step``, ``len(data)``) or fields.
    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    dt = pointcloud2_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    data = _as_uint8(msg.data)
    n = height * width
    if n == 0:
        return np.zeros(0, dtype=_packed_native(dt))
    if point_step <= 0:
        raise ValueError(f"PointCloud2: point_step must be positive, got {point_step}")
    if row_step < width * point_step:
        if height == 1 and data.size == width * point_step:
            warn_once(("PointCloud2 row_step", row_step),
                      f"PointCloud2: row_step {row_step} < width {width} x point_step {point_step} in an "
                      f"unorganised cloud; read as {width * point_step} (data has exactly that size)")
            row_step = width * point_step
        else:
            raise ValueError(f"PointCloud2: row_step {row_step} < width {width} x point_step {point_step}")
    # The last row's padding is sometimes left out; anything else is inconsistent.
    full, trimmed = row_step * height, row_step * (height - 1) + width * point_step
    if data.size not in (full, trimmed):
        raise ValueError(f"PointCloud2: data has {data.size} bytes, expected row_step {row_step} x "
                         f"height {height} = {full} (width {width}, point_step {point_step})")
    view = np.ndarray(shape=(height, width), dtype=dt, buffer=data, offset=0,
                      strides=(row_step, point_step))
    return view.reshape(-1).astype(_packed_native(dt))


def _packed_native(dt: np.dtype) -> np.dtype:
    return np.dtype([(name, dt.fields[name][0].newbyteorder("=")) for name in dt.names])


def normalise_intensity(intensity: np.ndarray) -> np.ndarray:
    """(N,) intensities -> float32 in [0, 1]: the ``auto`` policy of
    ``crossi2p.preprocess.normalise_lidar_intensity`` (the one home of the rules).

    Values already within [0, 1] are kept; a maximum within (1, 255] is read as an 8-bit
    reflectance (divided by 255: Velodyne/Ouster/nuScenes/PCD exports); anything larger (16-bit
    or uncalibrated units) is divided by the sweep's maximum. Negative and non-finite values
    become 0.
    """
    return normalise_lidar_intensity(np.asarray(intensity).reshape(-1), _AUTO_INTENSITY)[0]


def structured_to_xyzi(points: np.ndarray, intensity_field: str = "intensity",
                       source: str = "point cloud", normalise: bool = True) -> np.ndarray:
    """Structured point array (PointCloud2, PCD) -> (N, 4) float32 ``x, y, z, intensity``.

    Rows with a non-finite coordinate are dropped; intensity is 0 where the field is absent
    and normalised by ``normalise_intensity`` otherwise (``normalise=False``: the field's raw
    values, e.g. to name their scale with ``preprocess.detect_intensity_scale`` first).
    ``source`` names the input in errors.
    """
    names = points.dtype.names or ()
    missing = [c for c in ("x", "y", "z") if c not in names]
    if missing:
        raise ValueError(f"{source}: no field(s) {missing} (fields: {list(names)})")
    for c in ("x", "y", "z"):
        if points.dtype[c].shape:
            raise ValueError(f"{source}: field {c!r} has count {points.dtype[c].shape}, expected 1")
    out = np.empty((len(points), 4), dtype=np.float32)
    for k, c in enumerate(("x", "y", "z")):
        out[:, k] = points[c]
    if intensity_field in names:
        inten = points[intensity_field]
        out[:, 3] = inten[:, 0] if inten.ndim > 1 else inten
    else:
        out[:, 3] = 0.0
    out = out[np.all(np.isfinite(out[:, :3]), axis=1)]
    if normalise:
        out[:, 3] = normalise_intensity(out[:, 3])
    return out


POINT_TIME_FIELDS = ("t", "time", "offset_time", "timestamp")
"""Per-point time fields drivers write, looked for in this order: ``t`` (Ouster: uint32
nanoseconds; ``crossi2p-sim --with-time``: float32 seconds), ``time`` (Velodyne ROS driver:
float32 seconds), ``offset_time`` (Livox: uint32 nanoseconds), ``timestamp`` (Hesai: float64
absolute seconds). Integer fields are read as nanoseconds, float fields as seconds; values over
1e6 s as absolute times (the header stamp is subtracted)."""


def structured_point_times(points: np.ndarray, stamp_s: float, source: str = "point cloud") -> np.ndarray | None:
    """Per-point firing time of a structured cloud, seconds relative to its header stamp, for
    the same rows ``structured_to_xyzi`` keeps (finite x, y, z), or None when the cloud has no
    usable time field (``POINT_TIME_FIELDS``; the first present is used; one with several values
    per point is not usable: one warning per source and field). Never raises: a cloud is not
    refused for its times, which only de-skewing (mode ``time``) uses; non-finite times stay NaN
    (those points are not de-skewed).
    """
    names = points.dtype.names or ()
    field = next((f for f in POINT_TIME_FIELDS if f in names), None)
    if field is None:
        return None
    if points.dtype[field].shape:
        _warn_once(("time field count", source, field),
                   f"{source}: time field {field!r} has count {points.dtype[field].shape}, expected 1; not used", _log)
        return None
    raw = points[field]
    t = raw.astype(np.float64) * (1e-9 if np.issubdtype(raw.dtype, np.integer) else 1.0)
    keep = np.ones(len(points), bool)
    for c in ("x", "y", "z"):
        keep &= np.isfinite(points[c])
    t = t[keep]
    t[~np.isfinite(t)] = np.nan
    finite = t[np.isfinite(t)]
    if len(finite) and np.median(np.abs(finite)) > 1e6:  # absolute times (Hesai): relative to the stamp
        t = t - float(stamp_s)
    return t


def pointcloud2_to_xyzi(msg, intensity_field: str = "intensity", normalise: bool = True) -> np.ndarray:
    """PointCloud2 -> (N, 4) float32 ``x, y, z, intensity`` in the message's frame.

    Points with NaN/Inf coordinates are dropped (``is_dense = False`` clouds); intensity is
    0 where ``intensity_field`` is absent and in [0, 1] otherwise (``normalise_intensity``;
    ``normalise=False``: the raw values).
    """
    return structured_to_xyzi(pointcloud2_to_array(msg), intensity_field, source="PointCloud2",
                              normalise=normalise)


# --------------------------------------------------------------------------- encoding
def xyzi_to_pointcloud2_fields(points: np.ndarray) -> tuple[list[PointFieldSpec], int, bytes]:
    """(N, 4|5) points -> ``(fields, point_step, data)`` of a little-endian float32 cloud.

    Columns ``x, y, z, intensity`` and, with a 5th column, ``t`` (seconds relative to the
    header stamp). ``fields`` is a list of ``PointFieldSpec(name, offset, datatype, count)``.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (4, 5):
        raise ValueError(f"points: expected (N, 4) x, y, z, intensity or (N, 5) with t, got {pts.shape}")
    names = ("x", "y", "z", "intensity", "t")[: pts.shape[1]]
    fields = [PointFieldSpec(n, 4 * k, _FLOAT32, 1) for k, n in enumerate(names)]
    data = np.ascontiguousarray(pts, dtype="<f4").tobytes()
    return fields, 4 * len(names), data


def stamp_to_sec_nanosec(stamp_s: float) -> tuple[int, int]:
    """Seconds (float) -> ``(sec, nanosec)`` of builtin_interfaces/Time (rounded to 1 ns)."""
    sec, nanosec = divmod(int(round(float(stamp_s) * 1e9)), 1_000_000_000)
    return int(sec), int(nanosec)


def rosbags_pointcloud2(points: np.ndarray, stamp_s: float, frame_id: str, typestore):
    """A ``rosbags`` sensor_msgs/msg/PointCloud2 of ``points`` (see ``xyzi_to_pointcloud2_fields``)."""
    T = typestore.types
    fields, point_step, data = xyzi_to_pointcloud2_fields(points)
    sec, nanosec = stamp_to_sec_nanosec(stamp_s)
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                      frame_id=frame_id)
    PointField = T["sensor_msgs/msg/PointField"]
    return T["sensor_msgs/msg/PointCloud2"](
        header=header, height=1, width=len(points),
        fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields],
        is_bigendian=False, point_step=point_step, row_step=point_step * len(points),
        data=np.frombuffer(data, dtype=np.uint8), is_dense=bool(np.all(np.isfinite(points))))


def rclpy_pointcloud2(points: np.ndarray, stamp_s: float, frame_id: str):
    """An rclpy ``sensor_msgs.msg.PointCloud2`` of ``points``.

    Imports the ROS message packages (not rclpy) when called, so this module stays importable
    without ROS.
    """
    from sensor_msgs.msg import PointCloud2, PointField  # noqa: PLC0415  (ROS only when used)

    fields, point_step, data = xyzi_to_pointcloud2_fields(points)
    msg = PointCloud2()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_to_sec_nanosec(stamp_s)
    msg.header.frame_id = frame_id
    msg.height, msg.width = 1, len(points)
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields]
    msg.is_bigendian = False
    msg.point_step, msg.row_step = point_step, point_step * len(points)
    msg.data = array.array("B", data)
    msg.is_dense = bool(np.all(np.isfinite(points)))
    return msg
