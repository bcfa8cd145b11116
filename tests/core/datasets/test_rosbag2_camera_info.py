"""CameraInfo in rosbag2 recordings: the bag reader converts it as the node does (image_geometry's
reading: binning, roi) and skips an uncalibrated camera's messages instead of aborting the bag."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from crossi2p.datasets.rosbag2 import CameraInfoRecord, ImageRecord, read_bag_messages
from crossi2p.image_encoding import rgb_to_image_fields

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
K_FULL = [120.0, 0.0, 63.5, 0.0, 118.0, 47.5, 0.0, 0.0, 1.0]  # a 128x96 sensor
INFO, IMAGE = "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/Image"


def header(stamp_s: float):
    sec, nsec = int(stamp_s), int(round((stamp_s % 1) * 1e9))
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id="cam")


def camera_info(stamp_s, k=K_FULL, width=128, height=96, binning=2, d=(-0.1, 0.01, 0.0, 0.0, 0.0), model="plumb_bob"):
    return T[INFO](header=header(stamp_s), height=height, width=width, distortion_model=model,
                   d=np.asarray(d, float), k=np.asarray(k, float), r=np.eye(3).reshape(-1), p=np.zeros(12),
                   binning_x=binning, binning_y=binning,
                   roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                             do_rectify=False))


def image(stamp_s, h=48, w=64):
    rgb = np.full((h, w, 3), 7, np.uint8)
    return T[IMAGE](header=header(stamp_s), **rgb_to_image_fields(rgb))


def write(path, messages):
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for topic, msgtype, stamp_s, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(conns[topic], int(round(stamp_s * 1e9)), TS.serialize_cdr(msg, msgtype))
    return path


def test_uncalibrated_camera_info_is_skipped_and_the_bag_reads_on(tmp_path, caplog):
    msgs = []
    for k in range(3):  # an uncalibrated driver first (K zeros, then a 0x0 size), then a calibrated one
        s = 1.0 + k
        bad = camera_info(s, k=np.zeros(9)) if k == 0 else camera_info(s, width=0, height=0) if k == 1 \
            else camera_info(s)
        msgs += [("/cam/camera_info", INFO, s, bad), ("/cam/image_raw", IMAGE, s + 0.001, image(s))]
    bag = write(tmp_path / "bag", msgs)
    with caplog.at_level(logging.WARNING, logger="crossi2p.datasets.rosbag2"):
        records = list(read_bag_messages(bag, "/cam/image_raw", "/cam/camera_info", None))
    infos = [r for r in records if isinstance(r, CameraInfoRecord)]
    assert len(infos) == 1 and infos[0].stamp_s == pytest.approx(3.0)
    assert sum(isinstance(r, ImageRecord) for r in records) == 3
    warned = [r.getMessage() for r in caplog.records if "uncalibrated camera" in r.getMessage()]
    assert len(warned) == 1 and "/cam/camera_info" in warned[0] and "skipped" in warned[0]


def test_binned_camera_info_gives_the_published_image_size_and_k(tmp_path):
    bag = write(tmp_path / "bag", [("/cam/camera_info", INFO, 1.0, camera_info(1.0))])
    (info,) = read_bag_messages(bag, None, "/cam/camera_info", None)
    cam = info.camera
    assert (cam.width, cam.height) == (64, 48)
    np.testing.assert_allclose([cam.fx, cam.fy, cam.K[0, 2], cam.K[1, 2]], [60.0, 59.0, 31.75, 23.75], atol=1e-12)


def test_malformed_camera_info_still_names_bag_topic_and_time(tmp_path):
    skewed = list(K_FULL)
    skewed[1] = 3.0
    bag = write(tmp_path / "bag", [("/cam/camera_info", INFO, 1.5, camera_info(1.5, k=skewed))])
    with pytest.raises(ValueError, match=r"topic '/cam/camera_info', message at 1\.5.* K\[0,1\] \(skew\) = 3"):
        list(read_bag_messages(bag, None, "/cam/camera_info", None))
