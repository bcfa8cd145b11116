"""crossi2p.datasets.rosbag2: drives written as rosbag2 (MCAP / sqlite3) and read back."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from crossi2p.camera import CameraModel
from crossi2p.datasets.rosbag2 import (
    CameraInfoRecord,
    ImageRecord,
    PointCloudRecord,
    bag_message_counts,
    bag_topics,
    open_bag,
    read_bag_ground_truth,
    read_bag_messages,
    read_bag_transforms,
    unfinished_mcap,
    write_drive_bag,
)
from crossi2p.geometry import invert_transform, make_transform, se3_exp, transform_points, transform_to_tq

TS = get_typestore(Stores.ROS2_JAZZY)
CAMERA = CameraModel(np.array([[50.0, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]]), 64, 48, "plumb_bob",
                     np.array([-0.1, 0.01, 0.001, -0.002, 0.0]))
T_EXAMPLE = se3_exp([0.1, -0.3, 0.2, 1.2, -1.2, 1.2])


def drive(seed: int = 0, n: int = 3, with_t: bool = False):
    rng = np.random.default_rng(seed)
    frames = [(100.0 + 0.1 * k, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for k in range(n)]
    cols = 5 if with_t else 4
    sweeps = []
    for k in range(n):
        pts = np.c_[rng.normal(0, 10, (200, 3)), rng.uniform(0, 1, 200), rng.uniform(0, 0.1, 200)][:, :cols]
        sweeps.append((100.03 + 0.1 * k, pts.astype(np.float32)))
    return frames, sweeps


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip(tmp_path, storage):
    frames, sweeps = drive(with_t=True)
    bag = write_drive_bag(tmp_path / "bag", frames, sweeps, CAMERA, T_EXAMPLE, storage=storage)
    assert next(bag.glob("*.mcap" if storage == "mcap" else "*.db3"))
    assert bag_topics(bag) == {"/camera/image_raw": "sensor_msgs/msg/Image",
                               "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
                               "/lidar/points": "sensor_msgs/msg/PointCloud2",
                               "/tf_static": "tf2_msgs/msg/TFMessage"}
    # counted from the metadata / MCAP statistics (the replays' progress bar total)
    assert bag_message_counts(bag) == {"/camera/image_raw": 3, "/camera/camera_info": 3, "/lidar/points": 3,
                                       "/tf_static": 1}
    records = list(read_bag_messages(bag))
    assert len(records) == 9
    log_times = [r.log_time_s for r in records]
    assert log_times == sorted(log_times)
    images = [r for r in records if isinstance(r, ImageRecord)]
    infos = [r for r in records if isinstance(r, CameraInfoRecord)]
    clouds = [r for r in records if isinstance(r, PointCloudRecord)]
    for (stamp, rgb), img, info in zip(frames, images, infos):
        np.testing.assert_array_equal(img.image, rgb)
        assert img.stamp_s == pytest.approx(stamp, abs=1e-9) and img.log_time_s == pytest.approx(stamp, abs=1e-9)
        assert img.frame_id == info.frame_id == "camera_optical" and img.topic == "/camera/image_raw"
        np.testing.assert_array_equal(info.camera.K, CAMERA.K)
        np.testing.assert_array_equal(info.camera.distortion, CAMERA.distortion)
        assert info.camera.distortion_model == "plumb_bob" and info.stamp_s == pytest.approx(stamp, abs=1e-9)
    for (stamp, pts), cloud in zip(sweeps, clouds):
        np.testing.assert_array_equal(cloud.points, pts[:, :4])
        assert cloud.frame_id == "lidar" and cloud.stamp_s == pytest.approx(stamp, abs=1e-9)
    np.testing.assert_allclose(read_bag_ground_truth(bag), T_EXAMPLE, atol=1e-12)


def test_tf_static_carries_inverse_extrinsic_lidar_parent_camera_child(tmp_path):
    # LiDAR x forward, z up; camera optical frame 1.5 m ahead and 0.2 m above the LiDAR, looking forward.
    T_lidar_cam = make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), [1.5, 0.0, 0.2])
    T_cam_lidar = invert_transform(T_lidar_cam)
    # A point 10 m ahead of the LiDAR at its height is 8.5 m in front of the camera, 0.2 m below its axis.
    np.testing.assert_allclose(transform_points(T_cam_lidar, np.array([[10.0, 0, 0]])), [[0, 0.2, 8.5]], atol=1e-12)
    frames, sweeps = drive(n=1)
    bag = write_drive_bag(tmp_path / "bag", frames, sweeps, CAMERA, T_cam_lidar, lidar_frame="velodyne",
                          camera_frame="cam_optical")
    with Reader(bag) as reader:
        conn = next(c for c in reader.connections if c.topic == "/tf_static")
        assert conn.ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
        (_, log_ns, raw), = list(reader.messages(connections=[conn]))
    assert log_ns == 100_000_000_000  # logged at the first stamp
    (tf,) = TS.deserialize_cdr(raw, conn.msgtype).transforms
    assert (tf.header.frame_id, tf.child_frame_id) == ("velodyne", "cam_optical")
    tr, q = tf.transform.translation, tf.transform.rotation
    np.testing.assert_allclose([tr.x, tr.y, tr.z], [1.5, 0.0, 0.2], atol=1e-12)
    np.testing.assert_allclose(np.abs([q.x, q.y, q.z, q.w]), [0.5, 0.5, 0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(read_bag_ground_truth(bag), T_cam_lidar, atol=1e-12)
    np.testing.assert_allclose(read_bag_ground_truth(bag, "cam_optical", "velodyne"), T_cam_lidar, atol=1e-12)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_images(tmp_path, fmt):
    rng = np.random.default_rng(3)
    smooth = [(1.0 + k, cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (9, 9), 3))
              for k in range(2)]
    _, sweeps = drive(n=2)
    bag = write_drive_bag(tmp_path / "bag", smooth, sweeps, CAMERA, T_EXAMPLE, storage="sqlite3",
                          compressed=True, compressed_format=fmt)
    topics = bag_topics(bag)
    assert topics["/camera/image_raw/compressed"] == "sensor_msgs/msg/CompressedImage"
    assert "/camera/image_raw" not in topics
    images = [r for r in read_bag_messages(bag) if isinstance(r, ImageRecord)]  # default topic falls back
    assert [r.topic for r in images] == ["/camera/image_raw/compressed"] * 2
    for (_, rgb), rec in zip(smooth, images):
        error = np.abs(rec.image.astype(int) - rgb).mean()
        assert error == 0 if fmt == "png" else error < 3


def write_bag(path, messages, storage=StoragePlugin.MCAP):
    """Test helper: ``messages`` = [(topic, msgtype, log_ns, msg)]."""
    with Writer(path, version=8, storage_plugin=storage) as writer:
        conns = {}
        for topic, msgtype, ns, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(conns[topic], ns, TS.serialize_cdr(msg, msgtype))
    return path


def header(frame, sec=1):
    return TS.types["std_msgs/msg/Header"](stamp=TS.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=0),
                                           frame_id=frame)


def tf_msg(parent, child, T):
    t, q = transform_to_tq(T)
    Ty = TS.types
    return Ty["geometry_msgs/msg/TransformStamped"](
        header=header(parent), child_frame_id=child,
        transform=Ty["geometry_msgs/msg/Transform"](translation=Ty["geometry_msgs/msg/Vector3"](*t),
                                                    rotation=Ty["geometry_msgs/msg/Quaternion"](*q)))


def test_ground_truth_composes_a_tf_chain(tmp_path):
    T_base_lidar = se3_exp([1.0, 0.0, 1.8, 0.0, 0.0, 0.03])
    T_base_camlink = se3_exp([1.7, 0.1, 1.4, 0.01, -0.02, 0.0])
    T_camlink_optical = make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), [0, 0, 0])
    TFMessage = TS.types["tf2_msgs/msg/TFMessage"]
    bag = write_bag(tmp_path / "chain", [
        ("/tf_static", "tf2_msgs/msg/TFMessage", 1, TFMessage(transforms=[tf_msg("base_link", "lidar_top", T_base_lidar),
                                                                         tf_msg("base_link", "camera_link", T_base_camlink)])),
        ("/tf_static", "tf2_msgs/msg/TFMessage", 2, TFMessage(transforms=[tf_msg("camera_link", "camera_optical",
                                                                                T_camlink_optical)])),
    ])
    expected = invert_transform(T_base_camlink @ T_camlink_optical) @ T_base_lidar
    np.testing.assert_allclose(read_bag_ground_truth(bag, "camera_optical", "lidar_top"), expected, atol=1e-12)
    with pytest.raises(ValueError, match="cannot tell the camera and LiDAR frames apart"):
        read_bag_ground_truth(bag)
    with pytest.raises(ValueError, match="no chain of /tf_static transforms links 'lidar_top' to 'nowhere'"):
        read_bag_ground_truth(bag, "nowhere", "lidar_top")


def test_missing_topic_names_bag_topic_and_topics_present(tmp_path):
    frames, sweeps = drive(n=1)
    bag = write_drive_bag(tmp_path / "bag", frames, sweeps, CAMERA, T_EXAMPLE)
    with pytest.raises(ValueError) as info:
        read_bag_messages(bag, lidar_topic="/velodyne_points")  # checked on the call, before iterating
    text = str(info.value)
    assert str(bag) in text and "'/velodyne_points' not found" in text
    assert "/lidar/points (sensor_msgs/msg/PointCloud2)" in text and "/camera/image_raw" in text
    with pytest.raises(ValueError, match="topic '/camera/image_raw' has type sensor_msgs/msg/Image, expected"):
        list(read_bag_messages(bag, lidar_topic="/camera/image_raw"))
    only_lidar = list(read_bag_messages(bag, image_topic=None, info_topic=None))
    assert [type(r) for r in only_lidar] == [PointCloudRecord]


def test_bag_without_tf_static(tmp_path):
    bag = write_bag(tmp_path / "notf", [("/lidar/points", "sensor_msgs/msg/PointCloud2", 1,
                                         TS.types["sensor_msgs/msg/PointCloud2"](
                                             header=header("lidar"), height=1, width=0, fields=[], is_bigendian=False,
                                             point_step=16, row_step=0, data=np.zeros(0, np.uint8), is_dense=True))])
    with pytest.raises(ValueError, match=r"notf: topic '/tf_static' not found; topics in the bag: /lidar/points"):
        read_bag_ground_truth(bag)


def test_unsupported_image_encoding_in_a_bag_names_bag_topic_and_encoding(tmp_path):
    img = TS.types["sensor_msgs/msg/Image"](header=header("cam"), height=2, width=2, encoding="nv12",
                                            is_bigendian=False, step=2, data=np.zeros(6, np.uint8))
    bag = write_bag(tmp_path / "nv12", [("/cam/image", "sensor_msgs/msg/Image", 5, img)])
    with pytest.raises(ValueError) as info:
        list(read_bag_messages(bag, image_topic="/cam/image", info_topic=None, lidar_topic=None))
    text = str(info.value)
    assert str(bag) in text and "'/cam/image'" in text and "unsupported image encoding 'nv12'" in text
    assert "rgb8" in text


def test_unknown_storage_and_not_a_bag(tmp_path):
    frames, sweeps = drive(n=1)
    with pytest.raises(ValueError, match=r"unknown rosbag2 storage 'rosbag1'; expected one of \['mcap', 'sqlite3'\]"):
        write_drive_bag(tmp_path / "b", frames, sweeps, CAMERA, T_EXAMPLE, storage="rosbag1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"bag {tmp_path / 'empty'}: cannot be opened as a rosbag2"):
        list(read_bag_messages(tmp_path / "empty"))
    with pytest.raises(ValueError, match="does not exist"):
        bag_topics(tmp_path / "missing")
    bag = write_drive_bag(tmp_path / "zarr", frames, sweeps, CAMERA, T_EXAMPLE)
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text().replace("storage_identifier: mcap", "storage_identifier: zarr"))
    with pytest.raises(ValueError, match=f"bag {bag}: cannot be opened.*Storage plugin 'zarr' not supported"):
        bag_topics(bag)


# --------------------------------------------------------------------------- recordings without metadata.yaml
def _records(bag, **topics):
    """Comparable summary of every decoded message: (type, topic, log time ns, frame, data sha)."""
    import hashlib

    out = []
    for r in read_bag_messages(bag, **topics):
        data = r.image if isinstance(r, ImageRecord) else r.points if isinstance(r, PointCloudRecord) else r.camera.K
        out.append((type(r).__name__, r.topic, round(r.log_time_s * 1e9), r.frame_id,
                    hashlib.sha1(np.ascontiguousarray(data).tobytes()).hexdigest()))
    return out


def test_mcap_without_metadata_yaml_is_read_from_the_file_at_every_entry_point(tmp_path):
    frames, sweeps = drive(n=3)
    bag = write_drive_bag(tmp_path / "bag", frames, sweeps, CAMERA, T_EXAMPLE)
    expected, topics = _records(bag), bag_topics(bag)
    mcap = next(bag.glob("*.mcap"))
    # a path to the .mcap of a complete recording opens the recording
    assert _records(mcap) == expected and bag_topics(mcap) == topics
    (bag / "metadata.yaml").unlink()                     # the recorder was killed before writing it
    for path in (bag, mcap):
        assert bag_topics(path) == topics
        assert _records(path) == expected and len(expected) == 9
        np.testing.assert_allclose(read_bag_ground_truth(path), T_EXAMPLE, atol=1e-12)
        [(parent, child, T)] = read_bag_transforms(path)
        assert (parent, child) == ("lidar", "camera_optical")
        np.testing.assert_allclose(T, invert_transform(T_EXAMPLE), atol=1e-12)
        reader = open_bag(path)                           # opened; the caller closes it
        assert reader.message_count == 10                 # 3 x (image, info, cloud) + /tf_static
        reader.close()


def test_mcap_cut_short_by_a_killed_recorder_yields_its_complete_records(tmp_path):
    """No summary, no footer: every message of the complete chunks, in order; the cut chunk is lost."""
    camera = CameraModel(np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]]), 640, 480)
    rng = np.random.default_rng(3)
    frames = [(100.0 + 0.1 * k, rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for k in range(5)]
    sweeps = [(100.03 + 0.1 * k, rng.normal(0, 10, (300, 4)).astype(np.float32)) for k in range(5)]
    bag = write_drive_bag(tmp_path / "bag", frames, sweeps, camera, T_EXAMPLE)  # 0.9 MB images: 1 MiB chunks
    expected = _records(bag)
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(0.6 * len(data))])       # a copy cut short, metadata.yaml beside it
    for path in (bag, mcap):
        got = _records(path)
        assert 0 < len(got) < 15 and got == expected[: len(got)]
        assert unfinished_mcap(path).endswith("the MCAP file ends without its footer (the recorder was killed, "
                                              "or the file was cut); read up to its last complete record")
    (bag / "metadata.yaml").unlink()
    mcap.write_bytes(data[:-100])                        # summary half written, no footer: all messages
    assert _records(bag) == expected and len(expected) == 15
    np.testing.assert_allclose(read_bag_ground_truth(mcap), T_EXAMPLE, atol=1e-12)
    mcap.write_bytes(data[: int(0.6 * len(data))])       # killed mid-drive
    got = _records(bag)
    assert 0 < len(got) < 15 and got == expected[: len(got)]
    mcap.write_bytes(data[:20])                          # not even a header
    with pytest.raises(ValueError, match=f"bag {bag}: cannot be opened as a rosbag2 \\(Truncated record"):
        bag_topics(bag)
    mcap.write_bytes(data[:200_000])                     # inside the first chunk: no complete record
    with pytest.raises(ValueError, match=f"^bag {bag}: nothing readable: the MCAP file ends without its footer "
                                         r"\(the recorder was killed, or the file was cut\), before its first "
                                         r"complete record$"):
        bag_topics(bag)


def test_sqlite3_without_metadata_yaml_names_ros2_bag_reindex(tmp_path):
    frames, sweeps = drive(n=1)
    bag = write_drive_bag(tmp_path / "bag", frames, sweeps, CAMERA, T_EXAMPLE, storage="sqlite3")
    db3 = next(bag.glob("*.db3"))
    expected = _records(bag)
    assert _records(db3) == expected                     # the .db3 of a complete recording: the recording
    (bag / "metadata.yaml").unlink()
    for path in (bag, db3):
        for read in (bag_topics, read_bag_transforms, read_bag_ground_truth, read_bag_messages):
            with pytest.raises(ValueError) as info:
                read(path)
            text = str(info.value)
            assert text.startswith(f"bag {path}: sqlite3 storage") and "\n" not in text
            assert text.endswith(f"rebuild it with `ros2 bag reindex {bag} -s sqlite3`")


def test_paths_that_are_not_one_recording_are_refused_with_a_reason(tmp_path):
    frames, sweeps = drive(n=1)
    a = write_drive_bag(tmp_path / "a", frames, sweeps, CAMERA, T_EXAMPLE)
    b = write_drive_bag(tmp_path / "b", frames, sweeps, CAMERA, T_EXAMPLE)
    both = tmp_path / "both"
    both.mkdir()
    for k, src in enumerate((a, b)):
        next(src.glob("*.mcap")).rename(both / f"part_{k}.mcap")
    with pytest.raises(ValueError, match=r"both: 2 .mcap files and no metadata.yaml; pass one .mcap file, or "
                                         r"rebuild it with `ros2 bag reindex .*both -s mcap`"):
        bag_topics(both)
    assert len(_records(both / "part_1.mcap")) == 3
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"notes.txt: expected a rosbag2 folder or its .mcap / .db3 storage file, "
                                         r"got a .txt file"):
        bag_topics(tmp_path / "notes.txt")
