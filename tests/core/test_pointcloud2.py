"""crossi2p.pointcloud2: PointCloud2 <-> numpy on duck-typed, rosbags and rclpy messages."""
from __future__ import annotations

import importlib.util
import logging
import re
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
    structured_point_times,
    structured_to_xyzi,
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
    """All 11 datatypes (INT64/UINT64/BOOL too), gaps between fields, point_step and row_step
    padding, height 3, count 3."""
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
        base = dt[name].base
        shape = (height * width,) + dt[name].shape
        if base.kind in "iu":
            info = np.iinfo(base)
            records[name] = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=base.newbyteorder("="))
        elif base.kind == "b":
            records[name] = rng.uniform(size=shape) < 0.5
        else:
            records[name] = rng.normal(size=shape)
    msg = cloud_msg(records, fields, height, width, row_pad=7, is_bigendian=is_bigendian)

    out = pointcloud2_to_array(msg)
    assert out.shape == (height * width,)
    for name in names:
        np.testing.assert_array_equal(out[name], records[name])
        assert out[name].dtype.isnative
    xyzi = pointcloud2_to_xyzi(msg)
    np.testing.assert_array_equal(xyzi[:, :3], np.c_[records["x"], records["y"], records["z"]].astype(np.float32))
    np.testing.assert_array_equal(xyzi[:, 3], 0.0)  # no intensity field


LIVOX_FIELDS = [field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("intensity", 12, 7),
                field("tag", 16, 2), field("line", 17, 2)]
LIVOX_DTYPE = np.dtype({"names": ["x", "y", "z", "intensity", "tag", "line"],
                        "formats": ["<f4"] * 4 + ["u1", "u1"], "offsets": [0, 4, 8, 12, 16, 17], "itemsize": 18})


def livox_records(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rec = np.zeros(n, LIVOX_DTYPE)
    for c in ("x", "y", "z"):
        rec[c] = rng.uniform(-50, 50, n)
    rec["intensity"] = rng.uniform(0, 150, n)
    rec["tag"], rec["line"] = rng.integers(0, 256, n), rng.integers(0, 6, n)
    return rec


@pytest.mark.parametrize("is_bigendian", [False, True])
def test_livox_18_byte_unaligned_points_decode(is_bigendian):
    """Livox CustomMsg -> PointCloud2: point_step 18, so every other point's floats sit at odd
    addresses (no alignment); big-endian as well."""
    rec = livox_records(7)
    stored = rec.astype(LIVOX_DTYPE.newbyteorder(">")) if is_bigendian else rec
    msg = cloud_msg(stored, LIVOX_FIELDS, 1, 7, is_bigendian=is_bigendian)
    assert msg.point_step == 18 and len(msg.data) == 126
    out = pointcloud2_to_array(msg)
    for name in LIVOX_DTYPE.names:
        np.testing.assert_array_equal(out[name], rec[name])
    xyzi = pointcloud2_to_xyzi(msg)
    np.testing.assert_allclose(xyzi[:, :3], np.c_[rec["x"], rec["y"], rec["z"]], rtol=0, atol=1e-6)
    np.testing.assert_allclose(xyzi[:, 3], rec["intensity"] / 255.0, rtol=1e-6)  # 8-bit reflectance scale
    np.testing.assert_allclose(pointcloud2_to_xyzi(msg, intensity_field="line")[:, 3], rec["line"] / 255.0,
                               rtol=1e-6)


def test_int64_uint64_bool_fields_decode_exactly():
    """INT64 = 9, UINT64 = 10 (values beyond 2**53, not exact through float64) and BOOL = 11."""
    dt = np.dtype({"names": ["x", "y", "z", "stamp_ns", "id", "valid"],
                   "formats": ["<f4"] * 3 + ["<i8", "<u8", "?"], "offsets": [0, 4, 8, 12, 20, 28], "itemsize": 29})
    rec = np.zeros(3, dt)
    rec["x"] = [1.5, -2.0, 3.25]
    rec["stamp_ns"] = [-(2**62) - 1, 0, 2**62 + 3]
    rec["id"] = [0, 2**63 + 11, 2**64 - 1]
    rec["valid"] = [True, False, True]
    fields = [field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("stamp_ns", 12, 9), field("id", 20, 10),
              field("valid", 28, 11)]
    out = pointcloud2_to_array(cloud_msg(rec, fields, 1, 3))
    assert out["stamp_ns"].dtype == np.int64 and out["id"].dtype == np.uint64 and out["valid"].dtype == np.bool_
    assert out["stamp_ns"].tolist() == [-(2**62) - 1, 0, 2**62 + 3]
    assert out["id"].tolist() == [0, 2**63 + 11, 2**64 - 1]
    assert out["valid"].tolist() == [True, False, True]
    np.testing.assert_allclose(pointcloud2_to_xyzi(cloud_msg(rec, fields, 1, 3))[:, 0], [1.5, -2.0, 3.25], atol=0)


def test_unknown_datatype_is_skipped_with_one_warning(caplog):
    """A datatype from a future distribution (42) on one field: x, y, z still decode, the count is
    unchanged, and 50 messages give one warning, not 50."""
    rec = livox_records(5, seed=4)
    fields = LIVOX_FIELDS[:4] + [field("tag_future", 16, 42), field("line", 17, 2)]
    with caplog.at_level(logging.WARNING, logger="crossi2p.pointcloud2"):
        for _ in range(50):
            out = pointcloud2_to_array(cloud_msg(rec, fields, 1, 5))
    assert out.dtype.names == ("x", "y", "z", "intensity", "line") and len(out) == 5
    np.testing.assert_array_equal(out["line"], rec["line"])
    np.testing.assert_allclose(pointcloud2_to_xyzi(cloud_msg(rec, fields, 1, 5))[:, :3],
                               np.c_[rec["x"], rec["y"], rec["z"]], atol=1e-6)
    warnings = [r for r in caplog.records if "tag_future" in r.getMessage()]
    assert len(warnings) == 1 and "unknown PointField datatype 42" in warnings[0].getMessage()


def test_unknown_datatype_on_z_is_a_clear_error_not_a_crash():
    rec = livox_records(2)
    fields = LIVOX_FIELDS[:2] + [field("z", 8, 77)] + LIVOX_FIELDS[3:]
    with pytest.raises(ValueError, match=re.escape("PointCloud2: no field(s) ['z']")):
        pointcloud2_to_xyzi(cloud_msg(rec, fields, 1, 2))


def test_pcl_padding_fields_and_duplicates():
    """PCL's ``_`` padding fields (several, any datatype) are skipped; a repeated non-xyz field keeps
    its first declaration."""
    dt = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": ["<f4"] * 4,
                   "offsets": [0, 4, 8, 16], "itemsize": 32})
    rec = np.zeros(2, dt)
    rec["x"], rec["intensity"] = [1, 2], [0.25, 0.5]
    fields = [field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("_", 12, 7), field("intensity", 16, 7),
              field("_", 20, 7, 3), field("intensity", 20, 7)]
    out = pointcloud2_to_array(cloud_msg(rec, fields, 1, 2))
    assert out.dtype.names == ("x", "y", "z", "intensity")
    np.testing.assert_array_equal(out["intensity"], [0.25, 0.5])


def test_zero_row_step_of_an_unorganised_cloud_is_read_as_packed():
    pts = np.array([[1, 2, 3, 0.5], [4, 5, 6, 1.0]], np.float32)
    msg = simple_msg(pts)
    msg.row_step = 0
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)


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
    ({"row_step": 8, "height": 2, "width": 1}, "row_step 8 < width 1 x point_step 16"),
    ({"row_step": 16, "data": b"\0" * 40}, "row_step 16 < width 2 x point_step 16"),
    ({"point_step": 12, "row_step": 24}, "runs past point_step 12"),
    ({"fields": [field("x", -4, 7)]}, "offset -4 + 1 x 4 bytes runs past point_step 16"),
    ({"fields": [field("", 0, 7)]}, "a field has an empty name"),
    ({"fields": [field("x", 0, 7), field("x", 4, 7)]}, "field 'x' appears twice"),
])
def test_inconsistent_sizes_are_clear_errors(change, message):
    msg = simple_msg(np.zeros((2, 4), np.float32))
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ValueError, match=re.escape(message)):
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


@pytest.mark.parametrize("field, dtype, scale, absolute", [
    ("t", "<u4", 1e9, False),              # Ouster: uint32 ns since the stamp
    ("t", "<f4", 1.0, False),              # crossi2p-sim --with-time: float32 s
    ("time", "<f4", 1.0, False),           # Velodyne ROS driver: float32 s
    ("offset_time", "<u4", 1e9, False),    # Livox: uint32 ns
    ("timestamp", "<f8", 1.0, True),       # Hesai: float64 absolute s
])
def test_point_times_in_seconds_from_the_stamp_for_each_drivers_field(field, dtype, scale, absolute):
    stamp = 1_700_000_000.25
    rel = np.array([0.0, 0.01, 0.05, 0.099])
    pts = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), (field, dtype)])
    pts["x"] = [1.0, np.nan, 3.0, 4.0]                       # a NaN row, dropped as structured_to_xyzi does
    pts[field] = (rel + stamp) if absolute else rel * scale
    t = structured_point_times(pts, stamp)
    np.testing.assert_allclose(t, rel[[0, 2, 3]], atol=1e-6)
    assert len(t) == len(structured_to_xyzi(pts))


def test_a_cloud_without_a_usable_time_field_has_no_times_and_is_never_refused_for_them():
    pts = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    assert structured_point_times(pts, 0.0) is None
    bad = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("time", "<f4")])
    bad["time"] = [0.01, np.nan, 0.02]
    t = structured_point_times(bad, 0.0, "cloud on /points")
    assert np.isnan(t[1]) and t[0] == pytest.approx(0.01) and t[2] == pytest.approx(0.02)   # NaN kept, not raised
    wide = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("t", "<f4", (2,))])
    assert structured_point_times(wide, 0.0, "cloud on /points") is None
