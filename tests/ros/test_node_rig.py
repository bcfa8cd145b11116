"""The node refines a rig of cameras together (``rig_calibration``; crossi2p_ros.rig_inputs).

Over DDS: the committed real recording (TRI DGP scene_02: six cameras, three sweeps; README's main
job) played message by message into a real calibration node whose own camera is camera_01, with
the five others in its rig file and the rig priors (the LiDAR's pose 3 deg / 0.2 m off alike for
every camera). The network is scripted to offer nothing, so whatever is published comes from the
refinement, started from the prior. Without a ground truth in the node: the test compares every
camera's published transform with the recording's /tf_static.

Pure (no DDS): the rig file's errors, and which pairs a rig camera holds for the window.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage
from tf2_msgs.msg import TFMessage

from crossi2p.calib_io import load_calibration_yaml
from crossi2p.camera import CameraModel
from crossi2p.datasets.rosbag2 import read_bag_ground_truth
from crossi2p.geometry import invert_transform, transform_from_tq
from crossi2p.metrics import registration_error
from crossi2p.prior import load_prior
from crossi2p.runtime import FrameEstimate
from crossi2p_ros.bag_player import BagPlayer
from crossi2p_ros.calibration_node import LATCHED, CalibrationNode
from crossi2p_ros.pairing import StampedPair
from crossi2p_ros.pipeline import CameraFrame, LidarSweep, RefinementScheduleConfig
from crossi2p_ros.rig_inputs import RigInput, load_rig_file

from .test_node_signals import assert_one_line_error_exit_1, start_node  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[2]
RECORDING = REPO / "data" / "real" / "tri_dgp_scene_02"
CAMERAS = ("camera_01", "camera_05", "camera_06", "camera_07", "camera_08", "camera_09")


class NoEstimates:
    """The network, scripted to offer nothing (every frame invalid): refinement from the prior only."""

    card = SimpleNamespace(name="scripted")
    providers = ["CPUExecutionProvider"]

    def estimate(self, image, points, camera, T_prior=None) -> FrameEstimate:
        return FrameEstimate(valid=False, reason="scripted: no estimate", latency_ms={"graph": 1.0})

    def close(self) -> None:
        pass


def _rig_file(path: Path, cameras=CAMERAS[1:]) -> Path:
    path.write_text(yaml.safe_dump({"cameras": [
        {"image_topic": f"/{c}/image_raw/compressed", "camera_info_topic": f"/{c}/camera_info",
         "prior_calibration": str(RECORDING / f"rig_prior_{c}.yaml")} for c in cameras]}))
    return path


def test_the_node_refines_a_real_rig_and_publishes_every_cameras_transform(ros_context, tmp_path):
    overrides = [Parameter(name, value=value) for name, value in {
        "compressed_image": True, "image_topic": "/camera_01/image_raw/compressed",
        "camera_info_topic": "/camera_01/camera_info", "points_topic": "/lidar/points",
        "prior_calibration": str(RECORDING / "rig_prior_camera_01.yaml"),
        "rig_calibration": str(RECORDING / "rig_cameras.yaml"),     # the committed example
        "qos": "reliable", "queue_depth": 50, "deskew.mode": "off",
        "refinement_min_window_frames": 3, "refinement_window_frames": 3,
        "save_path": str(tmp_path / "calib.yaml")}.items()]
    node = CalibrationNode(runtime=NoEstimates(), context=ros_context, parameter_overrides=overrides)
    io = rclpy.create_node("rig_test_player", context=ros_context)
    player = BagPlayer(io, RECORDING / "bag")
    published: list[TFMessage] = []
    io.create_subscription(TFMessage, "/tf_static", published.append, LATCHED)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(io)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        ready = threading.Event()
        for _ in range(1500):   # DDS discovery (a bound, not a timing assertion)
            if all(pub.get_subscription_count() > 0 for pub in player.publishers.values()):
                break
            ready.wait(0.02)
        handled, last_image = 0, {}

        def after(message) -> None:
            nonlocal handled
            handled += 1
            if message.topic.endswith("/compressed"):
                last_image[message.topic] = message
            assert node.wait_until_idle(handled, 300.0), f"the node did not handle {message.topic}"

        player.play(rate=0.0, after_publish=after, progress=False)
        # a live camera keeps streaming: one image 0.1 s later per camera pairs the last sweep (the
        # node's own camera last: its pair completes the window, and the refinement runs at once)
        for topic, message in sorted(last_image.items(), key=lambda item: item[0].startswith("/camera_01/")):
            msg = deserialize_message(message.raw, CompressedImage)
            msg.header.stamp.nanosec += 100_000_000
            if msg.header.stamp.nanosec >= 1_000_000_000:
                msg.header.stamp.sec += 1
                msg.header.stamp.nanosec -= 1_000_000_000
            player.publishers[topic].publish(msg)
            handled += 1
            assert node.wait_until_idle(handled, 300.0)

        pipeline = node.pipeline
        assert node.counters.refinements_run >= 1
        result = pipeline.last_refinement.result
        assert result.accepted, result.reason
        assert result.frames == 3 * len(CAMERAS)      # every camera's three sweeps
        assert all(rig.held == 3 for rig in node._rig)
        for _ in range(1000):
            if published and len(published[-1].transforms) == len(CAMERAS):
                break
            ready.wait(0.02)
        transforms = {tf.child_frame_id: tf for tf in published[-1].transforms}
        assert set(transforms) == {f"{c}_optical" for c in CAMERAS}
        errors = []
        for camera in CAMERAS:
            tf = transforms[f"{camera}_optical"]
            assert tf.header.frame_id == "lidar"
            t, r = tf.transform.translation, tf.transform.rotation
            T = invert_transform(transform_from_tq([t.x, t.y, t.z], [r.x, r.y, r.z, r.w]))
            truth = read_bag_ground_truth(RECORDING / "bag", camera_frame=f"{camera}_optical", lidar_frame="lidar")
            prior = load_prior(RECORDING / f"rig_prior_{camera}.yaml").T_cam_lidar
            err, start = registration_error(T, truth), registration_error(prior, truth)
            assert err.rre_geodesic_deg < start.rre_geodesic_deg and err.rte_m < start.rte_m, camera
            errors.append((err.rte_m, err.rre_geodesic_deg))
        # the tolerance of the offline rig on this recording (tests/ros/test_real_demo.py): 0.08 m / 0.2 deg;
        # one LiDAR pose for all: the same rotation error for every camera
        assert max(e[0] for e in errors) < 0.08 and max(e[1] for e in errors) < 0.2, errors
        assert np.ptp([e[1] for e in errors]) < 1e-6
        status = node.diagnostics_status()
        values = {kv.key: kv.value for kv in status.values}
        assert values["rig_cameras"] == "5" and values["stage"] == "refined"
        assert values["rig_pairs_held"].count(": 3") == 5
        # ~/save_calibration (called as a user without the ros2 CLI calls it) writes every camera's
        # calibration, the rig's beside the node's own
        out = subprocess.run([sys.executable, "-m", "crossi2p_ros.save_calibration", "--timeout-s", "60"],
                             capture_output=True, text=True, timeout=120.0)
        assert out.returncode == 0 and out.stdout.startswith(f"saved {tmp_path / 'calib.yaml'}"), out.stderr
        response = SimpleNamespace(message=out.stdout)
        own = load_calibration_yaml(tmp_path / "calib.yaml")
        for camera in CAMERAS[1:]:
            saved = load_calibration_yaml(tmp_path / f"calib.{camera}_optical.yaml")
            assert saved.camera_frame == f"{camera}_optical" and saved.lidar_frame == "lidar"
            T_cam_ref = load_prior(RECORDING / f"rig_prior_{camera}.yaml").T_cam_lidar @ invert_transform(
                load_prior(RECORDING / "rig_prior_camera_01.yaml").T_cam_lidar)
            np.testing.assert_allclose(saved.T_cam_lidar, T_cam_ref @ own.T_cam_lidar, atol=1e-9)
            assert f"calib.{camera}_optical.yaml" in response.message
            assert f'<child link="{camera}_optical"/>' in (tmp_path / f"calib.{camera}_optical.urdf.xacro").read_text()
        # python -m crossi2p_ros.show_status prints what it says and publishes, without the ros2 CLI
        out = subprocess.run([sys.executable, "-m", "crossi2p_ros.show_status", "--timeout-s", "60"],
                             capture_output=True, text=True, timeout=120.0)
        assert out.returncode == 0 and "  stage" in out.stdout and "  rig_cameras" in out.stdout, out.stderr
        for camera in CAMERAS:
            assert f"/tf_static lidar -> {camera}_optical: translation [" in out.stdout, out.stdout
    finally:
        executor.shutdown()
        spin.join(timeout=10.0)
        node.destroy_node()
        io.destroy_node()


def test_a_rig_file_that_cannot_be_used_is_one_line_naming_it(tmp_path):
    reference = load_prior(RECORDING / "rig_prior_camera_01.yaml")
    own = "/camera_01/image_raw/compressed"
    with pytest.raises(ValueError, match="file not found"):
        load_rig_file(tmp_path / "missing.yaml", reference, own)
    (tmp_path / "bad.yaml").write_text("cameras: [")
    with pytest.raises(ValueError, match=r"not valid YAML \(.* at line 1, column"):
        load_rig_file(tmp_path / "bad.yaml", reference, own)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not a text file"):
        load_rig_file(tmp_path / "binary.yaml", reference, own)
    (tmp_path / "empty.yaml").write_text("cameras: []\n")
    with pytest.raises(ValueError, match="non-empty list 'cameras'"):
        load_rig_file(tmp_path / "empty.yaml", reference, own)
    (tmp_path / "key.yaml").write_text("cameras:\n  - {image_topic: /a}\n")
    with pytest.raises(ValueError, match=r"cameras\[0\]: expected the strings"):
        load_rig_file(tmp_path / "key.yaml", reference, own)
    with pytest.raises(ValueError, match="node's own camera"):
        load_rig_file(_rig_file(tmp_path / "own.yaml", ("camera_01",)), reference, own)
    with pytest.raises(ValueError, match="given twice"):
        load_rig_file(_rig_file(tmp_path / "twice.yaml", ("camera_05", "camera_05")), reference, own)
    rig = yaml.safe_load(_rig_file(tmp_path / "prior.yaml", ("camera_05",)).read_text())
    rig["cameras"][0]["prior_calibration"] = "no_such_prior.yaml"      # relative: from the rig file's folder
    (tmp_path / "prior.yaml").write_text(yaml.safe_dump(rig))
    with pytest.raises(ValueError, match=f"cameras\\[0\\]: prior {tmp_path / 'no_such_prior.yaml'}"):
        load_rig_file(tmp_path / "prior.yaml", reference, own)
    # a good one: each camera's pose from the reference, from the two priors
    specs = load_rig_file(_rig_file(tmp_path / "rig.yaml"), reference, own)
    assert [s.image_topic for s in specs] == [f"/{c}/image_raw/compressed" for c in CAMERAS[1:]]
    for spec in specs:
        np.testing.assert_allclose(spec.T_cam_ref @ reference.T_cam_lidar, spec.prior.T_cam_lidar, atol=1e-12)


def test_a_rig_camera_holds_its_synchronised_pair_of_each_window_sweep_whichever_comes_first(tmp_path):
    """An image paired with a sweep is held while that sweep is in the node's window, whether the
    window took the sweep before or after the pair was made; an image too far from its sweep
    (``max_pair_offset_s``) is never held; images wider than ``max_width_px`` are scaled down."""
    reference = load_prior(RECORDING / "rig_prior_camera_01.yaml")
    spec = load_rig_file(_rig_file(tmp_path / "rig.yaml", ("camera_05",)), reference, "/own")[0]
    rig = RigInput(spec, schedule=RefinementScheduleConfig(max_pair_offset_s=0.02), max_width_px=100)
    camera = CameraModel(np.array([[200.0, 0, 99.5], [0, 200.0, 49.5], [0, 0, 1]]), 200, 100)
    sweeps = {t: LidarSweep(np.zeros((1, 4), np.float32), "lidar") for t in (1.0, 2.0, 3.0)}

    def image(t: float) -> None:
        rig.offer_image(t, rig.scaled(CameraFrame(np.zeros((100, 200, 3), np.uint8), camera, "camera_05_optical")))

    def own_pair(t: float) -> StampedPair:
        return StampedPair(t, None, t, sweeps[t])

    image(0.99)
    rig.offer_lidar(1.0, sweeps[1.0])
    image(1.96)                                     # pairs 1.0
    rig.follow_window([own_pair(1.0)])              # the window takes sweep 1.0 after the pair was made
    assert rig.held == 1
    rig.offer_lidar(2.0, sweeps[2.0])               # 1.96 is 40 ms from it: paired, not synchronised
    image(2.99)
    rig.follow_window([own_pair(1.0), own_pair(2.0)])
    rig.offer_lidar(3.0, sweeps[3.0])
    rig.follow_window([own_pair(2.0), own_pair(3.0)])   # sweep 3.0 in the window before its pair exists
    image(3.5)                                      # pairs 3.0
    assert rig.pairs_unsynchronised == 1
    held = rig.rig_camera([own_pair(2.0), own_pair(3.0)])
    assert [p.lidar_stamp_s for p in held.pairs] == [3.0]      # 1.0 left the window; 2.0 was not synchronised
    assert held.pairs[0].image.image_rgb.shape == (50, 100, 3) and held.pairs[0].image.camera.width == 100
    np.testing.assert_array_equal(held.T_cam_ref, spec.T_cam_ref)
    assert rig.frame_id == "camera_05_optical"
    rig.reset()
    assert rig.held == 0 and rig.rig_camera([own_pair(3.0)]) is None


def test_a_rig_file_without_the_nodes_own_prior_or_unreadable_stops_the_node_in_one_line(start_node,  # noqa: F811
                                                                                         tmp_path):
    rig = RECORDING / "rig_cameras.yaml"
    node = start_node("-p", f"rig_calibration:={rig}")
    assert_one_line_error_exit_1(node, f"rig_calibration {rig}: needs prior_calibration (the cameras' poses "
                                       f"relative to each other come from the priors)")
    missing = tmp_path / "rig.yaml"
    node = start_node("-p", f"prior_calibration:={RECORDING / 'rig_prior_camera_01.yaml'}",
                      "-p", f"rig_calibration:={missing}")
    assert_one_line_error_exit_1(node, f"rig_calibration {missing}: file not found")


def test_a_rig_image_in_another_frame_than_its_prior_names_is_refused_with_the_reason(ros_context):
    """A rig file that gives a camera's topics another camera's prior: its images are refused as
    bad input naming both frames, not refined on with the wrong relative pose."""
    rig_file = RECORDING / "rig_cameras.yaml"
    overrides = [Parameter("prior_calibration", value=str(RECORDING / "rig_prior_camera_01.yaml")),
                 Parameter("rig_calibration", value=str(rig_file)), Parameter("compressed_image", value=True)]
    node = CalibrationNode(runtime=NoEstimates(), context=ros_context, parameter_overrides=overrides)
    try:
        first = {}
        for message in BagPlayer(node, RECORDING / "bag").messages():
            first.setdefault(message.topic, message)
        rig = node._rig[0]                                    # camera_05
        assert rig.spec.image_topic == "/camera_05/image_raw/compressed"
        node._on_rig_camera_info(rig, deserialize_message(first["/camera_05/camera_info"].raw, CameraInfo))
        image = deserialize_message(first["/camera_05/image_raw/compressed"].raw, CompressedImage)
        node._on_rig_image(rig, image)
        assert rig.images_in == 1 and node.counters.bad_images == 0
        info = deserialize_message(first["/camera_06/camera_info"].raw, CameraInfo)
        node._on_rig_camera_info(rig, info)                   # camera_06's data under camera_05's prior
        image = deserialize_message(first["/camera_06/image_raw/compressed"].raw, CompressedImage)
        node._on_rig_image(rig, image)
        assert rig.images_in == 1 and node.counters.bad_images == 1
        assert "refused: prior" in node.counters.last_error and "camera_05_optical" in node.counters.last_error
    finally:
        node.destroy_node()
