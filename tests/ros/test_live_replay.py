"""crossi2p-evaluate-bag --mode live: a simulated rosbag2 played over DDS with /clock into the real
calibration node (use_sim_time) gives, with node pacing, the offline evaluator's numbers.

Parity tolerance: per-frame and fused T_cam_lidar entries agree within 1e-6 (translation in m;
rotation-matrix entries, i.e. ~1e-6 rad) and the confidences within 1e-9. With node pacing both
modes feed the same messages in the same order through the same session, so they are in fact
bit-identical; the tolerance only leaves room for a different onnxruntime build.

The shipped model is not accurate yet (models/crossi2p_cpu.yaml), and parity does not depend on
accuracy: the runtime's and fusion's acceptance thresholds are opened so that every frame is fused
and the estimate "converges", which exercises the node's /tf_static and ~/pose outputs.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from crossi2p.datasets.rosbag2 import read_bag_ground_truth, read_bag_messages
from crossi2p.fusion import FusionConfig
from crossi2p_ros.evaluate_bag import Knock, load_runtime, main, replay_bag, summarize_replay
from crossi2p_ros.live_replay import LiveReplayConfig, image_topic_to_play, replay_bag_live
from crossi2p_ros.pipeline import RefinementScheduleConfig

from .conftest import write_simulated_bag
from .test_calibration_node import MODEL_CARD

TOPICS = ("/camera/image_raw", "/camera/camera_info", "/lidar/points")
TOL_T = 1e-6
TOL_CONFIDENCE = 1e-9
FUSION = FusionConfig(min_confidence=0.0, gate_rotation_deg=180.0, gate_translation_m=100.0,
                      min_inliers_to_converge=3, min_inlier_ratio_to_converge=0.0,
                      converge_rotation_std_deg=180.0, converge_translation_std_m=100.0)


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory):
    return write_simulated_bag(tmp_path_factory.mktemp("live"), seed=31, frames=8)[0]


@pytest.fixture(scope="module")
def runtime():
    """The shipped model's session, shared with the other evaluator tests of this process (creating
    it is the slow part); its acceptance thresholds, read per frame, are opened for this module."""
    rt = load_runtime(MODEL_CARD, "cpu")
    saved = rt.config
    # (the alignment check off too: this module pins offline/live parity of the fused path, which
    # needs enough valid frames on a short drive; validity has its own tests)
    rt.config = dataclasses.replace(saved, min_confidence=0.0, min_correspondences=0, alignment_check=False)
    yield rt
    rt.config = saved


@pytest.fixture(scope="module")
def replays(drive_bag, runtime):
    T_gt = read_bag_ground_truth(drive_bag)
    # refinement off on both sides: this module pins the per-frame and fused path, and that /tf_static
    # carries the fused estimate
    offline = replay_bag(drive_bag, runtime, T_gt, TOPICS, fusion=FUSION, progress=False,
                         schedule=RefinementScheduleConfig(enabled=False))
    live = replay_bag_live(drive_bag, runtime, T_gt, TOPICS, LiveReplayConfig(pacing="node", refine=False),
                           fusion=FUSION, progress=False)
    return offline, live


def assert_same_frames(offline, live):
    assert len(live.reports) == len(offline.reports) >= 5
    for a, b in zip(offline.reports, live.reports):
        assert (b.lidar_stamp_s, b.image_stamp_s, b.valid, b.status) == (a.lidar_stamp_s, a.image_stamp_s, a.valid,
                                                                         a.status)
        assert abs(b.confidence - a.confidence) <= TOL_CONFIDENCE
        assert np.abs(b.T_cam_lidar - a.T_cam_lidar).max() <= TOL_T
        assert (a.fused_T_cam_lidar is None) == (b.fused_T_cam_lidar is None)
        if a.fused_T_cam_lidar is not None:
            assert np.abs(b.fused_T_cam_lidar - a.fused_T_cam_lidar).max() <= TOL_T
    for a, b in zip(offline.frames, live.frames):
        assert np.array_equal(a.T_gt, b.T_gt)


def test_node_pacing_reproduces_the_offline_per_frame_and_fused_estimates(replays):
    offline, live = replays
    assert_same_frames(offline, live)
    assert live.frames[-1].T_fused is not None  # converged: the fused path was exercised
    s_off, s_live = summarize_replay(offline), summarize_replay(live)
    for key in ("frames", "frames_valid", "acc", "rte_m_median", "rre_geodesic_deg_median", "frames_to_converge",
                "fused_rte_m", "fused_rre_geodesic_deg"):
        assert s_live[key] == pytest.approx(s_off[key], abs=TOL_T), key


def test_live_run_records_the_nodes_own_outputs_on_bag_time(replays, drive_bag):
    from crossi2p.metrics import registration_error

    offline, live = replays
    rec = live.recording
    fused = live.reports[-1].fused_T_cam_lidar
    # /tf_static (parent LiDAR, child camera, inverted back) and ~/pose carry the fused estimate.
    assert rec.tf_static and rec.poses
    assert registration_error(rec.tf_static_T_cam_lidar(), fused).rte_m < 1e-6
    assert registration_error(rec.pose_T_cam_lidar(), fused).rre_geodesic_deg < 1e-6
    # The refinement figures of a live run are the node's own (counters, and its /tf_static when refined).
    from crossi2p_ros.live_replay import node_refinement_summary

    ref = node_refinement_summary(live)
    assert ref["refinement_runs"] == int(rec.final_status["refinements_run"])
    if rec.final_status.get("stage") == "refined":
        expected = registration_error(rec.tf_static_T_cam_lidar(), live.frames[-1].T_gt)
        assert ref["refined_rte_m"] == pytest.approx(expected.rte_m, abs=1e-9)
    # Nothing dropped with node pacing; the counters add up.
    c = rec.final_status
    assert c["pairs_dropped_busy"] == "0" and int(c["pairs_in"]) == int(c["frames_done"]) == len(live.frames)
    assert rec.messages_published == len(list(read_bag_messages(drive_bag, *TOPICS)))  # every message played
    # use_sim_time: the node's clock is the bag's (stamps from 0 s), not the wall clock.
    last_stamp = max(f.lidar_stamp_s for f in live.frames)
    assert all(0.0 <= t <= last_stamp + 0.1 for t in rec.frame_report_stamps_s)


def test_knock_is_injected_the_same_way_live(drive_bag, runtime):
    T_gt = read_bag_ground_truth(drive_bag)
    knock = Knock(at_s=0.35, rotation_deg=3.0)
    offline = replay_bag(drive_bag, runtime, T_gt, TOPICS, fusion=FUSION, knock=knock, progress=False)
    live = replay_bag_live(drive_bag, runtime, T_gt, TOPICS, LiveReplayConfig(), knock=knock, fusion=FUSION,
                           progress=False)
    assert_same_frames(offline, live)
    assert any(f.lidar_stamp_s >= 0.35 and not np.array_equal(f.T_gt, T_gt) for f in live.frames)


def test_clock_pacing_completes_and_accounts_for_every_pair(drive_bag, runtime):
    T_gt = read_bag_ground_truth(drive_bag)
    live = replay_bag_live(drive_bag, runtime, T_gt, TOPICS, LiveReplayConfig(pacing="clock", rate=0.0),
                           fusion=FUSION, progress=False)
    c = live.recording.final_status
    # Pairs arriving while the node is busy are dropped (how many depends on the CPU): they add up.
    assert int(c["frames_done"]) + int(c["pairs_dropped_busy"]) == int(c["pairs_in"]) >= 1
    assert len(live.frames) == int(c["frames_done"])


def test_cli_live_mode_writes_the_offline_report_with_the_same_figures(drive_bag, runtime, tmp_path, capsys):
    args = [str(drive_bag), "--model", str(MODEL_CARD), "--execution-provider", "cpu"]
    assert main(args + ["--json", str(tmp_path / "offline.json"), "--report", str(tmp_path / "off")]) == 0
    assert main(args + ["--mode", "live", "--json", str(tmp_path / "live.json"),
                        "--report", str(tmp_path / "live")]) == 0
    out = capsys.readouterr().out
    assert "estimated T_cam_lidar" in out and "live:" in out and "report:" in out
    s_off = json.loads((tmp_path / "offline.json").read_text())
    s_live = json.loads((tmp_path / "live.json").read_text())
    assert s_live["mode"] == "live" and s_live["live"]["pacing"] == "node"
    assert set(s_off) <= set(s_live) and set(s_live) - set(s_off) == {"live"}
    for key, value in s_off.items():
        if key in ("mode", "latency_ms_median", "sweeps_unpaired_at_end"):   # the last: null live (the node's queue)
            continue
        if key == "command":                                                 # its own command line, --mode live
            assert s_live[key].startswith("crossi2p-evaluate-bag ") and "--mode live" in s_live[key]
            continue
        if isinstance(value, float):
            assert s_live[key] == pytest.approx(value, abs=TOL_T), key
        elif key not in ("bag",):
            assert s_live[key] == value, key
    for name in ("summary.json", "frames.csv", "errors.png", "report.md"):
        assert (tmp_path / "live" / name).is_file(), name
    assert "Live replay: what the node published" in (tmp_path / "live" / "report.md").read_text()


@pytest.mark.parametrize("given, expected", [
    ("/camera_01/image_raw", ("/camera_01/image_raw/compressed", True)),              # found with its suffix
    ("/camera_01/image_raw/compressed", ("/camera_01/image_raw/compressed", True)),   # named with it
    ("/camera/image_raw", ("/camera/image_raw", False)),
    ("/nope", ("/nope", False)),                                   # missing: refused later, naming it
])
def test_the_image_topic_is_played_with_the_type_it_has_in_the_bag(given, expected):
    """A new-user trial named the real recording's topic with its /compressed suffix, which offline
    mode takes; live mode subscribed with Image and stopped on DDS's "incompatible type"."""
    present = {"/camera_01/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
               "/camera/image_raw": "sensor_msgs/msg/Image", "/lidar/points": "sensor_msgs/msg/PointCloud2"}
    assert image_topic_to_play(given, present) == expected
