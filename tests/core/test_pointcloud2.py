"""crossi2p.pointcloud2: PointCloud2 <-> numpy on duck-typed, rosbags and rclpy messages."""
from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from crossi2p.pointcloud2 import (
    POINTFIELD_DTYPES,
    normalise_intensity,
    pointcloud2_to_array,
    pointcloud2_to_xyzi,
    rclpy_pointcloud2,
    rosbags_pointcloud2,
    xyzi_to_pointcloud2_fields,
)


def field(name, offset, datatype, count=1):
    return SimpleNamespace(name=name, offset=offset, datatype=datatype, count=count)


def cloud_msg(records: np.ndarray, fields, height: int, width: int, row_pad: int = 0,
              is_bigendian: bool = False, is_dense: bool = True):
    """Message whose data is ``records`` (a structured array with explicit offsets/itemsize) laid
    out in ``height`` rows of ``width`` points, each row followed by ``row_pad`` junk bytes."""
    point_step = records.dtype.itemsize
    row_step = width * point_step + row_pad
    rows = records.reshape(height, width)
    data = b"".join(row.tobytes() + b"\xab" * row_pad for row in rows)
    return SimpleNamespace(height=height, width=width, fields=fields, is_bigendian=is_bigendian,
                           point_step=point_step, row_step=row_step, data=data, is_dense=is_dense)


def simple_msg(points: np.ndarray):
    fields, point_step, data = xyzi_to_pointcloud2_fields(points)
    return SimpleNamespace(height=1, width=len(points), fields=fields, is_bigendian=False, point_step=point_step,
                           row_step=point_step * len(points), data=data, is_dense=True)


def test_xyzi_round_trip_through_fields():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 4)).astype(np.float32)
    pts[:, 3] = rng.uniform(0, 1, 50)
    fields, point_step, data = xyzi_to_pointcloud2_fields(pts)
    assert [(f.name, f.offset, f.datatype, f.count) for f in fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 12, 7, 1)]
    assert point_step == 16 and len(data) == 16 * 50
    np.testing.assert_array_equal(pointcloud2_to_xyzi(simple_msg(pts)), pts)


def test_fifth_column_becomes_field_t():
    pts = np.c_[np.ones((3, 3)), np.full(3, 0.5), [0.0, 0.01, 0.02]].astype(np.float32)
    arr = pointcloud2_to_array(simple_msg(pts))
    assert arr.dtype.names == ("x", "y", "z", "intensity", "t")
    np.testing.assert_array_equal(arr["t"], pts[:, 4])


@pytest.mark.parametrize("is_bigendian", [False, True])
def test_every_datatype_padding_organised_cloud_and_count(is_bigendian):
    """All 8 datatypes, gaps between fields, point_step and row_step padding, height 3, count 3."""
    order = ">" if is_bigendian else "<"
    rng = np.random.default_rng(1)
    height, width = 3, 5
    names, formats, offsets, fields = [], [], [], []
    offset = 0
    for datatype, code in POINTFIELD_DTYPES.items():
        dt = np.dtype(order + code)
        offset = -(-offset // dt.itemsize) * dt.itemsize  # align
        names.append(f"f{datatype}")
        formats.append(dt)
        offsets.append(offset)
        fields.append(field(f"f{datatype}", offset, datatype))
        offset += dt.itemsize + 1  # 1-byte gap after each field
    for name in ("x", "y", "z"):
        offset = -(-offset // 4) * 4
        names.append(name), formats.append(np.dtype(order + "f4")), offsets.append(offset)
        fields.append(field(name, offset, 7))
        offset += 4
    offset = -(-offset // 8) * 8
    names.append("normal"), formats.append((np.dtype(order + "f8"), (3,))), offsets.append(offset)
    fields.append(field("normal", offset, 8, 3))
    offset += 24
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset + 6})
    records = np.zeros(height * width, dtype=dt)
    for name in names:
        info = np.iinfo(dt[name].base) if dt[name].base.kind in "iu" else None
        shape = (height * width,) + dt[name].shape
        records[name] = (rng.integers(info.min, info.max, size=shape, endpoint=True) if info
                         else rng.normal(size=shape))
    msg = cloud_msg(records, fields, height, width, row_pad=7, is_bigendian=is_bigendian)

    out = pointcloud2_to_array(msg)
    assert out.shape == (height * width,)
    for name in names:
        np.testing.assert_array_equal(out[name], records[name])
        assert out[name].dtype.isnative
    xyzi = pointcloud2_to_xyzi(msg)
    np.testing.assert_array_equal(xyzi[:, :3], np.c_[records["x"], records["y"], records["z"]].astype(np.float32))
    np.testing.assert_array_equal(xyzi[:, 3], 0.0)  # no intensity field


def test_last_row_without_padding_is_accepted():
    pts = np.arange(24, dtype=np.float32).reshape(6, 4) / 24
    fields, point_step, data = xyzi_to_pointcloud2_fields(pts)
    rows = [data[k * 3 * point_step:(k + 1) * 3 * point_step] for k in range(2)]
    msg = SimpleNamespace(height=2, width=3, fields=fields, is_bigendian=False, point_step=point_step,
                          row_step=3 * point_step + 4, data=rows[0] + b"\0" * 4 + rows[1], is_dense=True)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)


def test_not_dense_cloud_drops_nan_and_inf_points():
    pts = np.array([[1, 2, 3, 0.5], [np.nan, 0, 0, 0.1], [0, np.inf, 0, 0.2], [4, 5, 6, 0.25]], np.float32)
    msg = simple_msg(pts)
    msg.is_dense = False
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts[[0, 3]])


def test_intensity_scaling():
    np.testing.assert_allclose(normalise_intensity(np.array([0, 0.5, 1.0])), [0, 0.5, 1.0])
    np.testing.assert_allclose(normalise_intensity(np.array([0, 51, 255.0])), [0, 0.2, 1.0])
    np.testing.assert_allclose(normalise_intensity(np.array([0, 1000, 4000.0])), [0, 0.25, 1.0])
    np.testing.assert_allclose(normalise_intensity(np.array([-3, np.nan, 0.5])), [0, 0, 0.5])


def test_uint8_intensity_field_is_normalised_and_other_name_selectable():
    dt = np.dtype({"names": ["x", "y", "z", "reflectivity"], "formats": ["<f4"] * 3 + ["u1"],
                   "offsets": [0, 4, 8, 12], "itemsize": 16})
    rec = np.zeros(2, dt)
    rec["x"] = [1, 2]
    rec["reflectivity"] = [0, 255]
    fields = [field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("reflectivity", 12, 2)]
    msg = cloud_msg(rec, fields, 1, 2)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg)[:, 3], 0.0)
    np.testing.assert_allclose(pointcloud2_to_xyzi(msg, intensity_field="reflectivity")[:, 3], [0, 1])


def test_empty_cloud():
    msg = simple_msg(np.zeros((0, 4), np.float32))
    assert pointcloud2_to_xyzi(msg).shape == (0, 4)


def test_missing_xyz_is_a_clear_error():
    dt = np.dtype({"names": ["x", "y"], "formats": ["<f4"] * 2, "offsets": [0, 4], "itemsize": 8})
    msg = cloud_msg(np.zeros(2, dt), [field("x", 0, 7), field("y", 4, 7)], 1, 2)
    with pytest.raises(ValueError, match=r"PointCloud2: no field\(s\) \['z'\]"):
        pointcloud2_to_xyzi(msg)


@pytest.mark.parametrize("change, message", [
    ({"data": b"\0" * 17}, "data has 17 bytes, expected row_step 32 x height 1 = 32"),
    ({"row_step": 16}, "row_step 16 < width 2 x point_step 16"),
    ({"point_step": 12, "row_step": 24}, "runs past point_step 12"),
    ({"fields": [field("x", 0, 9)]}, "unknown PointField datatype 9"),
    ({"fields": [field("x", 0, 7), field("x", 4, 7)]}, "field 'x' appears twice"),
])
def test_inconsistent_sizes_are_clear_errors(change, message):
    msg = simple_msg(np.zeros((2, 4), np.float32))
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pointcloud2_to_array(msg)


def test_rosbags_message_round_trip_through_cdr():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    rng = np.random.default_rng(2)
    pts = np.c_[rng.normal(size=(20, 3)), rng.uniform(size=20), rng.uniform(0, 0.1, 20)].astype(np.float32)
    msg = rosbags_pointcloud2(pts, 12.25, "lidar", ts)
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (12, 250_000_000, "lidar")
    np.testing.assert_array_equal(pointcloud2_to_xyzi(back), pts[:, :4])
    np.testing.assert_array_equal(pointcloud2_to_array(back)["t"], pts[:, 4])


@pytest.mark.skipif(importlib.util.find_spec("sensor_msgs") is None, reason="ROS 2 sensor_msgs not installed")
def test_rclpy_message_round_trip():
    pts = np.array([[1, 2, 3, 0.5], [4, 5, 6, 1.0]], np.float32)
    msg = rclpy_pointcloud2(pts, 3.5, "velodyne")
    assert type(msg).__module__.startswith("sensor_msgs")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (3, 500_000_000, "velodyne")
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)


def test_io_modules_import_without_ros_or_torch():
    import subprocess
    import sys

    code = ("import sys, crossi2p.pointcloud2, crossi2p.image_encoding, crossi2p.calib_io, crossi2p.datasets.kitti, "
            "crossi2p.datasets.pcd, crossi2p.datasets.opencalib, crossi2p.datasets.nuscenes, crossi2p.datasets.rosbag2; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'torch', 'sensor_msgs', 'std_msgs')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
