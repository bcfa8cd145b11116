"""crossi2p.datasets.rosbag2.write_rig_bag: a multi-camera rig with its images' own JPEG bytes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from crossi2p.camera import CameraModel
from crossi2p.datasets.rosbag2 import (
    CameraInfoRecord,
    ImageRecord,
    RigCamera,
    bag_topics,
    open_bag,
    read_bag_ground_truth,
    read_bag_messages,
    write_rig_bag,
)
from crossi2p.geometry import se3_exp

CAMERA = CameraModel(np.array([[50.0, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]]), 64, 48)


def jpeg(seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", rgb)[1].tobytes()


def test_rig_bag_keeps_the_jpeg_bytes_and_one_tf_static_edge_per_camera(tmp_path):
    T_a, T_b = se3_exp([0.1, -0.3, 0.2, 1.2, -1.2, 1.2]), se3_exp([-0.4, 0.1, 0.0, 1.0, 1.5, -1.0])
    rig = [RigCamera("camera_a", CAMERA, T_a, [(10.0, jpeg(0)), (10.1, jpeg(1))]),
           RigCamera("camera_b", CAMERA, T_b, [(10.0, jpeg(2)), (10.1, jpeg(3))])]
    sweeps = [(10.005 + 0.1 * k, np.random.default_rng(k).normal(0, 5, (100, 4)).astype(np.float32))
              for k in range(2)]
    bag = write_rig_bag(tmp_path / "bag", rig, sweeps)
    topics = bag_topics(bag)
    assert topics["/camera_a/image_raw/compressed"] == "sensor_msgs/msg/CompressedImage"
    assert topics["/camera_b/camera_info"] == "sensor_msgs/msg/CameraInfo"
    np.testing.assert_allclose(read_bag_ground_truth(bag, "camera_a_optical", "lidar"), T_a, atol=1e-9)
    np.testing.assert_allclose(read_bag_ground_truth(bag, "camera_b_optical", "lidar"), T_b, atol=1e-9)
    records = list(read_bag_messages(bag, "/camera_b/image_raw", "/camera_b/camera_info", "/lidar/points"))
    kinds = [type(r).__name__ for r in records]
    assert kinds[:2] == ["CameraInfoRecord", "ImageRecord"]  # the camera model comes before its image
    images = [r for r in records if isinstance(r, ImageRecord)]
    assert [r.frame_id for r in images] == ["camera_b_optical"] * 2
    reader = open_bag(bag)  # the stored bytes are the given JPEG, not a re-encoding
    try:
        from rosbags.typesys import Stores, get_typestore

        ts = get_typestore(Stores.ROS2_JAZZY)
        conns = [c for c in reader.connections if c.topic == "/camera_a/image_raw/compressed"]
        stored = [bytes(ts.deserialize_cdr(raw, c.msgtype).data) for c, _, raw in reader.messages(connections=conns)]
    finally:
        reader.close()
    assert stored == [jpeg(0), jpeg(1)]


def test_rig_bag_refuses_two_cameras_with_one_name(tmp_path):
    rig = [RigCamera("cam", CAMERA, np.eye(4), [(1.0, jpeg(0))])] * 2
    with pytest.raises(ValueError, match="written twice"):
        write_rig_bag(tmp_path / "bag", rig, [])
