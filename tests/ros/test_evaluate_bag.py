"""crossi2p-evaluate-bag replays a rosbag2, a KITTI Odometry sequence or a nuScenes folder through the
node's pipeline and writes its report."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from crossi2p.calib_io import kitti_calibration, load_calibration_yaml
from crossi2p.datasets.nuscenes import read_nuscenes
from crossi2p_ros.evaluate_bag import main

from tests.conftest import SHARED_DATA

from .conftest import write_simulated_bag
from .test_calibration_node import MODEL_CARD, REPO


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory):
    return write_simulated_bag(tmp_path_factory.mktemp("bag"), seed=21, frames=5)[0]


def test_replay_writes_summary_csv_plots_and_report(drive_bag, tmp_path, capsys):
    report = tmp_path / "report"
    rc = main([str(drive_bag), "--model", str(MODEL_CARD), "--json", str(tmp_path / "s.json"),
               "--report", str(report), "--execution-provider", "cpu",
               "--max-rte-m", "0.5", "--max-rre-deg", "2"])
    summary = json.loads((tmp_path / "s.json").read_text())
    for key in ("frames", "acc", "rte_m_median", "rre_geodesic_deg_median", "latency_ms_median",
                "fused_rte_m", "fused_rre_geodesic_deg", "frames_to_converge"):
        assert key in summary
    # 5 sweeps, each paired (the simulator writes each CameraInfo before its image: none is dropped)
    assert summary["frames"] == 5 and summary["messages_refused"] == {}
    for name in ("summary.json", "frames.csv", "errors.png", "components.png", "inliers.png", "report.md"):
        assert (report / name).is_file(), name
    assert len((report / "frames.csv").read_text().splitlines()) == 1 + 5
    # Exit code gates on the final fused error: 0 within the thresholds, 3 otherwise.
    converged_within = summary["fused_rte_m"] is not None and summary["fused_rte_m"] <= 0.5 \
        and summary["fused_rre_geodesic_deg"] <= 2
    assert rc == (0 if converged_within else 3)
    assert "report:" in capsys.readouterr().out


def test_the_direction_of_travel_check_is_counted_and_can_be_turned_off(drive_bag, tmp_path, capsys):
    """The summary says how many per-frame estimates the check could check and refused (the frames'
    travel_angle_deg, their reasons), and the console says it; --no-travel-check, as the node's
    travel_check.enabled:=false, checks none. Counts only: which frames the network gets right on
    this 5-sweep drive is not what this pins."""
    args = [str(drive_bag), "--model", str(MODEL_CARD), "--execution-provider", "cpu", "--no-refine"]
    main(args + ["--json", str(tmp_path / "on.json")])
    on = json.loads((tmp_path / "on.json").read_text())
    captured = capsys.readouterr()
    assert "direction-of-travel check: " in captured.out
    assert "replay: " in captured.err                                 # the progress bar
    assert 0 <= on["rejected_direction_of_travel"] <= on["direction_of_travel_checked"] <= on["frames"]
    main(args + ["--json", str(tmp_path / "off.json"), "--no-travel-check", "--quiet"])
    off = json.loads((tmp_path / "off.json").read_text())
    assert off["direction_of_travel_checked"] == off["rejected_direction_of_travel"] == 0
    captured = capsys.readouterr()
    assert "direction-of-travel check: off" in captured.out         # --quiet: the summary, no bar
    assert "replay: " not in captured.err


def test_bad_input_exits_1_with_one_line(drive_bag, tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--model", str(MODEL_CARD)]) == 1
    assert "not found" in capsys.readouterr().err
    assert main([str(drive_bag), "--model", str(MODEL_CARD), "--points-topic", "/velodyne_points"]) == 1
    err = capsys.readouterr().err.strip()
    assert "/velodyne_points" in err and "/lidar/points" in err and len(err.splitlines()) == 1
    assert main([str(drive_bag), "--model", str(tmp_path / "missing.yaml")]) == 1
    assert "model card" in capsys.readouterr().err
    # an .onnx: the path as given is named, missing or without its card
    assert main([str(drive_bag), "--model", str(tmp_path / "missing.onnx")]) == 1
    assert f"model {tmp_path / 'missing.onnx'}: not found" in capsys.readouterr().err
    assert main([str(drive_bag), "--model", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert main([str(drive_bag), "--model", str(REPO / "README.md")]) == 1          # not YAML: one line, where
    err = capsys.readouterr().err.strip()
    assert "not valid YAML" in err and "line" in err and len(err.splitlines()) == 1
    # bad input: exit 1; a flag value or combination the command does not take (usage): exit 2
    for flags, message, code in ((["--mode", "live", "--pacing", "clock", "--rate", "-1"], "--rate: expected", 2),
                                 (["--ground-truth", str(tmp_path / "gt.yaml")],
                                  f"--ground-truth {tmp_path / 'gt.yaml'}: file not found", 1),
                                 (["--ground-truth", str(REPO / "README.md")], "--ground-truth ", 1),
                                 (["--node-timeout-s", "0"], "--node-timeout-s: expected > 0", 2),
                                 (["--max-rte-m", "-1"], "--max-rte-m: expected a bound > 0, got -1.0", 2),
                                 (["--max-rre-deg", "0"], "--max-rre-deg: expected a bound > 0", 2),
                                 (["--knock-rot-deg", "2"], "--knock-rot-deg: no knock without --knock-at-s", 2),
                                 (["--mode", "live", "--refine-window-frames", "5"],
                                  "--refine-window-frames: offline mode only", 2),
                                 (["--mode", "live", "--refine-workers", "2"], "--refine-workers: offline mode only", 2)):
        assert main([str(drive_bag), "--model", str(MODEL_CARD), *flags]) == code, flags
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    # outputs that cannot be written are refused before the replay (one line), not after it
    for option, path in (("--json", "/proc/crossi2p_test/s.json"), ("--json", str(tmp_path)),
                         ("--report", "/proc/crossi2p_test_report")):
        assert main([str(drive_bag), "--model", str(MODEL_CARD), option, path]) == 1
        captured = capsys.readouterr()
        assert option in captured.err and len(captured.err.strip().splitlines()) == 1
        assert "replay" not in captured.err and "frames:" not in captured.out


def test_corrupt_bags_and_foreign_ground_truth_exit_1_with_one_line(drive_bag, tmp_path, capsys):
    from crossi2p.calib_io import save_calibration_yaml
    from crossi2p.datasets.rosbag2 import read_bag_ground_truth
    from crossi2p_training.sim import SimConfig

    truncated = shutil.copytree(drive_bag, tmp_path / "truncated")
    storage = next(truncated.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    plugin = shutil.copytree(drive_bag, tmp_path / "plugin")
    meta = plugin / "metadata.yaml"
    meta.write_text(meta.read_text().replace("storage_identifier: mcap", "storage_identifier: foo"))
    other_rig = save_calibration_yaml(tmp_path / "other_rig.yaml", read_bag_ground_truth(drive_bag),
                                      SimConfig.preset("small").camera.camera_model(), lidar_frame="velodyne",
                                      camera_frame="cam0")
    for args, expected in (([str(plugin)], "'foo'"),
                           ([str(drive_bag), "--ground-truth", str(other_rig)], "'velodyne'")):
        assert main([*args, "--model", str(MODEL_CARD), "--report", str(tmp_path / "r")]) == 1
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
    # an MCAP cut short beside its metadata.yaml (a copy that stopped): read up to its last complete
    # record, with a warning, as without metadata.yaml (it used to be rosbags' "File end magic is invalid")
    assert main([str(truncated), "--model", str(MODEL_CARD), "--report", str(tmp_path / "r"), "--no-refine",
                 "--quiet"]) == 0
    assert (f"warning: stopped early: {storage}: the MCAP file ends without its footer"
            in capsys.readouterr().err)


# ----------------------------------------------------------------------------- other recordings
SHARED_KITTI = SHARED_DATA / "real" / "kitti_000000"  # CROSSI2P_SHARED_DATA or ../shared/data
NUSCENES_MINI = REPO / "tests" / "fixtures" / "nuscenes_mini"


def test_live_pacing_flags_in_offline_mode_are_refused_with_one_line(drive_bag, tmp_path, capsys):
    """--pacing clock / --rate pace live mode's player (--node-timeout-s: its wait for the node); offline mode (a dataset folder, or a rosbag2
    without --mode live) has no clock: refused as live mode refuses --prior, not silently ignored."""
    for bag, flags, named in ((NUSCENES_MINI, ["--pacing", "clock"], "--pacing clock"),
                              (drive_bag, ["--pacing", "clock"], "--pacing clock"),
                              (drive_bag, ["--mode", "offline", "--rate", "2"], "--rate"),
                              (NUSCENES_MINI, ["--pacing", "clock", "--rate", "0"], "--pacing clock / --rate"),
                              (drive_bag, ["--node-timeout-s", "30"], "--node-timeout-s")):
        assert main([str(bag), "--model", str(MODEL_CARD), "--report", str(tmp_path / "r"), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"error: {named}: live mode only" in err, err
    assert not (tmp_path / "r").exists()


def test_out_of_range_refinement_flags_are_refused_naming_the_flag(tmp_path, capsys):
    """A refinement flag out of range is a usage error (exit 2) that names the flag, not the
    internal config class it feeds; so is one given with --no-refine."""
    for flags, named in ((["--refine-keyframe-parallax-px", "-1"], "--refine-keyframe-parallax-px: expected >= 0 pixels"),
                         (["--refine-window-frames", "0"], "--refine-window-frames: expected >= 1 pairs"),
                         (["--refine-max-pair-offset-s", "-0.5"], "--refine-max-pair-offset-s: expected >= 0 seconds"),
                         (["--refine-workers", "0"], "--refine-workers: expected >= 1 processes")):
        assert main([str(NUSCENES_MINI), "--model", str(MODEL_CARD), "--report", str(tmp_path / "r"), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err and "RefinementScheduleConfig" not in err, err
    # a refinement flag with the refinement off would be silently ignored: refused as well
    assert main([str(NUSCENES_MINI), "--model", str(MODEL_CARD), "--no-refine", "--refine-window-frames", "5"]) == 2
    assert "--refine-window-frames: no effect with --no-refine" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_rosbag2_only_flags_on_a_dataset_folder_warn_that_they_have_no_effect(drive_bag, tmp_path, capsys):
    """--slop-s and the topic flags pair a rosbag2's messages; a dataset folder comes paired: one warning
    line naming them and why, and the run goes on (here to the missing model's error)."""
    missing = ["--model", str(tmp_path / "missing.yaml"), "--report", str(tmp_path / "r")]
    assert main([str(NUSCENES_MINI), "--slop-s", "0.2", "--points-topic", "/x", *missing]) == 1
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert warning == ("crossi2p-evaluate-bag: warning: --slop-s, --points-topic have no effect for a nuscenes "
                       "folder: its pairs come from the dataset (frame index or sample), not from stamps on "
                       "rosbag2 topics")
    assert "model card" in error
    # defaults on a dataset folder, and --slop-s on a rosbag2: no warning
    for bag, flags in ((NUSCENES_MINI, []), (drive_bag, ["--slop-s", "0.2"])):
        assert main([str(bag), *flags, *missing]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "warning" not in err, err


@pytest.fixture(scope="module")
def kitti_sequence(tmp_path_factory):
    """The real KITTI frame of ../shared/data laid out as a one-frame KITTI Odometry sequence
    (image_2/, velodyne/, calib.txt = the frame's own KITTI calibration text)."""
    if not SHARED_KITTI.is_dir():
        pytest.skip(f"real KITTI sample not present at {SHARED_KITTI}")
    seq = tmp_path_factory.mktemp("kitti") / "sequences" / "00"
    (seq / "image_2").mkdir(parents=True)
    (seq / "velodyne").mkdir()
    shutil.copy(SHARED_KITTI / "000000.png", seq / "image_2" / "000000.png")
    shutil.copy(SHARED_KITTI / "000000.bin", seq / "velodyne" / "000000.bin")
    shutil.copy(SHARED_KITTI / "000000.txt", seq / "calib.txt")
    return seq


def test_kitti_sequence_runs_offline_with_its_calibration_as_ground_truth(kitti_sequence, tmp_path):
    # no --model: the shipped model (MODEL_CARD), as crossi2p-calibrate
    rc = main([str(kitti_sequence), "--json", str(tmp_path / "s.json"),
               "--report", str(tmp_path / "report"), "--execution-provider", "cpu"])
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["source"] == "kitti" and summary["mode"] == "offline" and summary["frames"] == 1
    assert summary["ground_truth"] == "KITTI calib.txt"
    _, T_calib = kitti_calibration(SHARED_KITTI / "000000.txt", 1224, 370, 2)
    T_yaml = load_calibration_yaml(SHARED_KITTI / "calib.yaml").T_cam_lidar  # the sample's normalised record
    assert np.abs(np.array(summary["ground_truth_T_cam_lidar"]) - T_calib).max() < 1e-6
    assert np.abs(np.array(summary["ground_truth_T_cam_lidar"]) - T_yaml).max() < 1e-6
    assert (tmp_path / "report" / "report.md").is_file()


def test_nuscenes_folder_runs_offline_with_per_pair_ground_truth(tmp_path):
    dataset = read_nuscenes(NUSCENES_MINI)
    rc = main([str(NUSCENES_MINI), "--model", str(MODEL_CARD), "--json", str(tmp_path / "s.json"),
               "--report", str(tmp_path / "report"), "--execution-provider", "cpu"])
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["source"] == "nuscenes" and summary["frames"] == len(dataset) == 2
    # The ground truth of the last pair, ego-motion compensated, as the dataset gives it.
    assert np.abs(np.array(summary["ground_truth_T_cam_lidar"]) - dataset.T_cam_lidar(1)).max() < 1e-6
    rows = (tmp_path / "report" / "frames.csv").read_text().splitlines()
    assert len(rows) == 1 + 2


def test_dataset_replay_uses_each_pairs_own_ground_truth():
    from crossi2p_ros.evaluate_bag import load_runtime, replay_samples

    dataset = read_nuscenes(NUSCENES_MINI)
    result = replay_samples(dataset, load_runtime(MODEL_CARD, "cpu"), total=len(dataset), progress=False)
    assert len(result.frames) == 2
    for i, frame in enumerate(result.frames):
        assert np.abs(frame.T_gt - dataset.T_cam_lidar(i)).max() < 1e-6
        assert frame.lidar_stamp_s == dataset[i].lidar_stamp_s and frame.image_stamp_s == dataset[i].stamp_s


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_folders_exit_1_with_one_line(tmp_path, capsys):
    model = ["--model", str(MODEL_CARD)]
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), *model]) == 1
    assert "not a rosbag2 folder" in _one_line_error(capsys)
    if SHARED_KITTI.is_dir():  # an object-benchmark frame is not an Odometry sequence
        assert main([str(SHARED_KITTI), "--source", "kitti", *model]) == 1
        assert "not a KITTI Odometry sequence folder" in _one_line_error(capsys)
    broken = tmp_path / "nuscenes"
    shutil.copytree(NUSCENES_MINI, broken)
    (broken / "v1.0-mini" / "sample_data.json").unlink()
    assert main([str(broken), *model]) == 1
    assert "sample_data.json: missing nuScenes table" in _one_line_error(capsys)
    assert main([str(NUSCENES_MINI), "--mode", "live", *model]) == 2            # a usage error
    assert "live mode plays a rosbag2" in _one_line_error(capsys)
    assert main([str(NUSCENES_MINI), "--source", "rosbag2", *model]) == 1
    assert "cannot be opened as a rosbag2" in _one_line_error(capsys)


def test_kitti_raw_drive_or_date_folder_is_detected_and_read_with_the_devkit_calibration(tmp_path):
    from crossi2p.geometry import transform_points
    from crossi2p_ros.evaluate_bag import _open_dataset, build_parser, detect_source
    from tests.fixtures import kitti_raw

    drive = kitti_raw.write_kitti_raw(tmp_path, frames=2)
    for path in (drive, drive.parent):
        assert detect_source(path) == "kitti_raw"
        samples, count, gt_source, T_first = _open_dataset(build_parser().parse_args([str(path), "--model", "m"]),
                                                           "kitti_raw")
        assert count == 2 and "KITTI raw 2011_09_26/calib_velo_to_cam.txt" in gt_source
        uv, _, _ = samples[0].camera.project_in_image(transform_points(T_first, np.array([[10.0, 0.0, 0.0]])))
        np.testing.assert_allclose(uv[0], [613.96, 175.01], atol=0.01)
    with pytest.raises(ValueError, match="KITTI raw drive \\(no image_0N/data/"):
        detect_source(drive / "image_02")


def test_kitti_raw_drive_runs_offline_with_its_calibration_as_ground_truth(tmp_path):
    from tests.fixtures import kitti_raw

    drive = kitti_raw.write_kitti_raw(tmp_path, frames=2)
    rc = main([str(drive.parent), "--model", str(MODEL_CARD), "--json", str(tmp_path / "s.json"),
               "--report", str(tmp_path / "r"), "--execution-provider", "cpu"])
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["source"] == "kitti_raw" and summary["frames"] == 2
    assert summary["ground_truth"].startswith("KITTI raw 2011_09_26/")
    T = np.array(summary["ground_truth_T_cam_lidar"])
    K = np.array([[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]])
    x = K @ (T @ [10.0, 0.0, 0.0, 1.0])[:3]
    np.testing.assert_allclose(x[:2] / x[2], [613.96, 175.01], atol=0.01)


# ----------------------------------------------------------------------------- recordings without metadata.yaml
def test_bare_mcap_file_is_replayed_like_its_recording(drive_bag, tmp_path):
    from crossi2p.datasets.rosbag2 import read_bag_ground_truth
    from crossi2p_ros.evaluate_bag import detect_source

    killed = tmp_path / "killed"                          # the recorder died before writing metadata.yaml
    killed.mkdir()
    mcap = killed / "drive_0.mcap"
    shutil.copy(next(drive_bag.glob("*.mcap")), mcap)
    assert detect_source(killed) == detect_source(mcap) == "rosbag2"
    rc = main([str(mcap), "--model", str(MODEL_CARD), "--json", str(tmp_path / "s.json"),
               "--report", str(tmp_path / "r"), "--execution-provider", "cpu"])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert rc == 0 and summary["frames"] == 5 and summary["ground_truth"] == "the bag's /tf_static"
    assert summary["command"].startswith(f"crossi2p-evaluate-bag {mcap} --model ")    # provenance (model cards)
    np.testing.assert_allclose(summary["ground_truth_T_cam_lidar"], read_bag_ground_truth(drive_bag), atol=1e-12)
    assert summary["read_errors"] == []
    # killed mid-drive: read up to its last complete record, and said so (it was silent)
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(0.7 * len(data))])
    rc = main([str(mcap), "--model", str(MODEL_CARD), "--json", str(tmp_path / "cut.json"),
               "--report", str(tmp_path / "r"), "--execution-provider", "cpu"])
    summary = json.loads((tmp_path / "cut.json").read_text())
    assert rc == 0 and 0 < summary["frames"] < 5, summary["frames"]
    assert len(summary["read_errors"]) == 1 and "ends without its footer" in summary["read_errors"][0]


def test_sqlite3_bag_without_metadata_exits_1_naming_ros2_bag_reindex(tmp_path, capsys):
    from crossi2p.camera import CameraModel
    from crossi2p.datasets.rosbag2 import write_drive_bag

    camera = CameraModel(np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]), 32, 24)
    bag = write_drive_bag(tmp_path / "bag", [(0.0, np.zeros((24, 32, 3), np.uint8))],
                          [(0.01, np.ones((10, 4), np.float32))], camera, np.eye(4), storage="sqlite3")
    (bag / "metadata.yaml").unlink()
    for path in (bag, next(bag.glob("*.db3"))):
        assert main([str(path), "--model", str(MODEL_CARD), "--report", str(tmp_path / "r")]) == 1
        assert f"`ros2 bag reindex {bag} -s sqlite3`" in _one_line_error(capsys)


# ----------------------------------------------------------------------------- frames (offline rule)
class _RecordingRuntime:
    """No model: records the points of each estimate and answers ``T`` (stands in for the runtime)."""

    def __init__(self, T):
        from types import SimpleNamespace

        self.T, self.points, self.card, self.providers = T, [], SimpleNamespace(name="recording stub"), ["CPU"]

    def estimate(self, image, points, camera, T_prior=None):
        from crossi2p.runtime import FrameEstimate

        self.points.append(np.array(points))
        return FrameEstimate(True, T_cam_lidar=self.T.copy(), confidence=1.0, inlier_ratio=1.0, latency_ms={"g": 1.0})


def _ouster_bag(path, frames=5, stray_cloud_frame=None):
    """A drive whose clouds are stamped os_lidar, /tf_static: os_sensor -> os_lidar (180 deg about z,
    36.18 mm up) and os_sensor -> camera_optical; returns (bag, points, T_cam_os_sensor, T_sensor_lidar)."""
    from scipy.spatial.transform import Rotation

    from crossi2p.camera import CameraModel
    from crossi2p.datasets.rosbag2 import _camera_info, _image
    from crossi2p.geometry import invert_transform, make_transform
    from crossi2p.pointcloud2 import rosbags_pointcloud2
    from tests.core.datasets.test_rosbag2_dataset import TS, tf_msg, write_bag

    T_sensor_lidar = make_transform(Rotation.from_euler("z", 180.0, degrees=True), [0.0, 0.0, 0.03618])
    T_cam_sensor = make_transform(Rotation.from_euler("xyz", [-90.0, 0.0, -90.0], degrees=True), [0.1, -0.2, 0.05])
    camera = CameraModel(np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]]), 64, 48)
    pts = np.array([[1.0, 0.0, 0.0, 0.25], [0.0, 2.0, -0.5, 0.5], [10.0, -3.0, 1.0, 1.0]] * 20, np.float32)
    tf = TS.types["tf2_msgs/msg/TFMessage"](transforms=[tf_msg("os_sensor", "os_lidar", T_sensor_lidar),
                                                        tf_msg("os_sensor", "camera_optical",
                                                               invert_transform(T_cam_sensor))])
    messages = [("/tf_static", "tf2_msgs/msg/TFMessage", 1, tf)]
    for k in range(frames):
        t = 1.0 + 0.1 * k
        ns = round(t * 1e9)
        messages += [("/camera/camera_info", "sensor_msgs/msg/CameraInfo", ns - 1, _camera_info(camera, t, "camera_optical")),
                     ("/camera/image_raw", "sensor_msgs/msg/Image", ns,
                      _image(np.full((48, 64, 3), 80, np.uint8), t, "camera_optical", False, "jpeg")),
                     ("/lidar/points", "sensor_msgs/msg/PointCloud2", ns + 10_000_000,
                      rosbags_pointcloud2(pts, t + 0.01, stray_cloud_frame if stray_cloud_frame and k == 1 else "os_lidar",
                                          TS))]
    return write_bag(path, messages), pts, T_cam_sensor, T_sensor_lidar


def test_offline_replay_maps_os_lidar_clouds_into_the_evaluated_frame_or_leaves_them_out(tmp_path):
    from crossi2p_ros.evaluate_bag import replay_bag

    bag, pts, T_cam_sensor, T_sensor_lidar = _ouster_bag(tmp_path / "ouster", stray_cloud_frame="velodyne")
    topics = ("/camera/image_raw", "/camera/camera_info", "/lidar/points")
    runtime = _RecordingRuntime(T_cam_sensor)
    result = replay_bag(bag, runtime, T_cam_sensor, topics, lidar_frame="os_sensor", camera_frame="camera_optical",
                        progress=False)
    np.testing.assert_allclose(runtime.points[0][:3], [[-1.0, 0.0, 0.03618, 0.25], [0.0, -2.0, -0.46382, 0.5],
                                                       [-10.0, 3.0, 1.03618, 1.0]], atol=1e-6)
    assert {f.lidar_frame for f in result.frames} == {"os_sensor"}
    assert result.refused == {"cloud in frame 'velodyne', not the LiDAR frame 'os_sensor', and no /tf_static path "
                              "links the two: publish that static transform or set lidar_frame to 'velodyne'": 1}
    # no frame given: the first cloud's frame (the one read_bag_ground_truth takes), points as stored
    runtime = _RecordingRuntime(T_cam_sensor @ T_sensor_lidar)
    result = replay_bag(bag, runtime, T_cam_sensor @ T_sensor_lidar, topics, progress=False)
    np.testing.assert_array_equal(runtime.points[0], pts)
    assert {f.lidar_frame for f in result.frames} == {"os_lidar"} and sum(result.refused.values()) == 1


def test_ground_truth_yaml_in_os_sensor_evaluates_an_os_lidar_bag(tmp_path, monkeypatch, capsys):
    from crossi2p.calib_io import save_calibration_yaml
    from crossi2p.camera import CameraModel
    from crossi2p_ros import evaluate_bag

    bag, _, T_cam_sensor, _ = _ouster_bag(tmp_path / "ouster", frames=4)  # the last sweep waits for an image
    camera = CameraModel(np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]]), 64, 48)
    card = tmp_path / "stub.yaml"
    runtime = _RecordingRuntime(T_cam_sensor)
    monkeypatch.setitem(evaluate_bag._RUNTIMES, (card.resolve(), "cpu"), runtime)
    common = ["--model", str(card), "--execution-provider", "cpu", "--report", str(tmp_path / "r")]
    gt = save_calibration_yaml(tmp_path / "gt.yaml", T_cam_sensor, camera, lidar_frame="os_sensor",
                               camera_frame="camera_optical")
    assert main([str(bag), "--ground-truth", str(gt), "--json", str(tmp_path / "s.json"), *common]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 3 and summary["messages_refused"] == {}
    assert summary["rte_m_median"] == pytest.approx(0.0, abs=1e-9)   # the stub answers the truth, in os_sensor
    np.testing.assert_allclose(runtime.points[0][0], [-1.0, 0.0, 0.03618, 0.25], atol=1e-6)
    # a calibration of a frame the bag's /tf_static does not know is another rig's
    other = save_calibration_yaml(tmp_path / "other.yaml", T_cam_sensor, camera, lidar_frame="velodyne",
                                  camera_frame="camera_optical")
    capsys.readouterr()
    assert main([str(bag), "--ground-truth", str(other), *common]) == 1
    assert "lidar 'velodyne' but the bag's lidar messages are in 'os_lidar'" in _one_line_error(capsys)
    # live mode: the node does not get the bag's /tf_static, so an os_sensor calibration is refused for os_lidar clouds
    with pytest.raises(ValueError, match="lidar 'os_sensor' but the bag's lidar messages are in 'os_lidar'"):
        evaluate_bag.check_ground_truth_frames(bag, ("/camera/image_raw", "/camera/camera_info", "/lidar/points"),
                                               load_calibration_yaml(gt), gt, map_clouds=False)


def test_a_sweep_left_waiting_at_the_end_of_the_bag_is_counted_and_said(tmp_path, capsys):
    """The committed real recording: 3 sweeps, each camera image a little after its sweep; the
    last sweep waits for a later image that never comes (the node's pairing; crossi2p-calibrate
    pairs it at the end). No prior and no converged fusion: the refinement says why it did not run."""
    bag = REPO / "data" / "real" / "tri_dgp_scene_02" / "bag"
    rc = main([str(bag), "--image-topic", "/camera_01/image_raw/compressed", "--camera-info-topic",
               "/camera_01/camera_info", "--json", str(tmp_path / "s.json"), "--report", str(tmp_path / "report"),
               "--execution-provider", "cpu"])
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] + summary["sweeps_unpaired_at_end"] == 3 and summary["sweeps_unpaired_at_end"] == 1
    out = capsys.readouterr().out
    assert "1 sweep(s) still waiting for a later image" in out
    assert "refinement: not run" in out and "--prior" in out


def test_a_rejected_last_estimate_is_flagged_and_not_headlined(capsys):
    """Nothing fused or refined and the last per-frame estimate rejected: the summary says
    ``estimate_rejected`` and prints it for diagnosis only, never as "estimated T_cam_lidar"."""
    from crossi2p_ros.evaluate_bag import _latest_estimate, _print_summary
    from crossi2p_ros.frame_report import FrameReport
    from crossi2p_ros.replay_types import FrameRecord, ReplayResult

    T_gt = np.eye(4)
    T_guess = np.eye(4)
    T_guess[:3, 3] = [0.3, 0.0, 0.0]

    def record(valid: bool) -> FrameRecord:
        return FrameRecord(FrameReport(lidar_stamp_s=0.0, image_stamp_s=0.0, valid=valid,
                                       reason="" if valid else "outside prior", confidence=0.5, inlier_ratio=0.5,
                                       latency_ms=1.0, T_cam_lidar=T_guess, status="waiting", fused_T_cam_lidar=None,
                                       covariance=None, drift_events=0, frames_fused=0), T_gt)

    rejected = _latest_estimate(ReplayResult(frames=[record(False)]))
    assert rejected["estimate_rejected"] is True and rejected["estimate_rte_m"] == pytest.approx(0.3, abs=1e-9)
    assert _latest_estimate(ReplayResult(frames=[record(True)]))["estimate_rejected"] is False
    assert _latest_estimate(ReplayResult())["estimate_rejected"] is False

    summary = dict(frames=1, frames_valid=0, frames_to_converge=None, acc=0.0, latency_ms_median=1.0, **rejected)
    _print_summary(summary, Path("report.md"), refine=False)
    out = capsys.readouterr().out
    assert "no estimate: every per-frame estimate was rejected" in out and "estimated T_cam_lidar" not in out


def test_a_nuscenes_pair_whose_lidar_file_is_missing_is_skipped_and_said(tmp_path, capsys):
    """A sample's .pcd.bin missing (its table row still there): that pair is skipped with the file
    named, the others replayed (it ended the run with errno text); 'skipped', not 'stopped early'."""
    folder = shutil.copytree(NUSCENES_MINI, tmp_path / "nuscenes")
    lidar = sorted((folder / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    lidar[0].unlink()
    rc = main([str(folder), "--model", str(MODEL_CARD), "--json", str(tmp_path / "s.json"),
               "--report", str(tmp_path / "report"), "--execution-provider", "cpu"])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert rc in (0, 3) and summary["frames"] == 1
    assert len(summary["read_errors"]) == 1 and lidar[0].name in summary["read_errors"][0]
    err = capsys.readouterr().err
    assert "warning: frame 0 skipped: " in err and "stopped early" not in err, err
    assert "## What could not be read" in (tmp_path / "report" / "report.md").read_text()


def test_a_bag_without_ground_truth_names_the_ground_truth_flag(drive_bag, tmp_path, capsys):
    """A recording without /tf_static (the robot's own bag): one line saying the ground truth is read
    from /tf_static and that --ground-truth YAML gives it otherwise (it only listed the topics)."""
    from rosbags.rosbag2 import Reader, Writer

    bag = tmp_path / "no_tf"
    with Reader(drive_bag) as reader, Writer(bag, version=8) as writer:     # the same bag without /tf_static
        kept = {c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest)
                for c in reader.connections if c.topic != "/tf_static"}
        for conn, log_ns, raw in reader.messages():
            if conn.id in kept:
                writer.write(kept[conn.id], log_ns, raw)
    assert main([str(bag), "--model", str(MODEL_CARD)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "topic '/tf_static' not found" in err, err
    assert err.endswith("(the ground truth is read from /tf_static; a bag without it: --ground-truth YAML)")
