"""``crossi2p-calibrate`` end to end on a short simulated bag: a calibration it trusts (YAML with
covariance, URDF snippet, report with overlays) and exit 0, or exit 3 with a one-line reason;
bad input is exit 1 with one line. No ground truth is read (the bag's /tf_static is only used
here, by the test, to make a prior and to check the result)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.calib_io import load_calibration_yaml, save_calibration_yaml
from crossi2p.geometry import make_transform
from crossi2p.metrics import registration_error
from crossi2p.prior import Prior, prior_violation
from crossi2p_ros.calibrate import main

from .conftest import write_simulated_bag
from .test_calibration_node import MODEL_CARD

MODEL = ["--model", str(MODEL_CARD), "--execution-provider", "cpu", "--quiet"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    return write_simulated_bag(tmp_path_factory.mktemp("bag"), seed=21, frames=5)


def _prior_yaml(path, drive, angle_deg=2.0, dt=(0.06, -0.04, 0.08), bounds=(5.0, 0.3)):
    """The simulated rig's calibration off by ``angle_deg`` / ``dt`` as a prior YAML."""
    E = make_transform(Rotation.from_rotvec(np.radians(angle_deg) * np.array([1.0, -1.0, 2.0]) / np.sqrt(6)), dt)
    return save_calibration_yaml(path, E @ drive[1].T_cam_lidar, drive[1].camera, lidar_frame="lidar",
                                 camera_frame="camera_optical", prior_max_rotation_deg=bounds[0],
                                 prior_max_translation_m=bounds[1])


def _one_line(err: str) -> str:
    err = err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_calibrates_a_short_bag_from_a_prior_or_exits_3_with_the_reason(drive, tmp_path, capsys):
    bag, sim = drive
    prior_path = _prior_yaml(tmp_path / "prior.yaml", drive)
    out, report = tmp_path / "out" / "calib.yaml", tmp_path / "report"
    rc = main([str(bag), "--out", str(out), "--prior", str(prior_path), "--report", str(report), *MODEL])
    captured = capsys.readouterr()
    assert rc in (0, 3)
    md = (report / "report.md").read_text()
    assert "refinement start | prior" in md or "refinement start | fused" in md
    assert "refinement cost start / final" in md
    assert " pairs (spread), " in md   # the default window span
    for png in ("overlay_before.png", "overlay_after.png"):
        assert (report / png).stat().st_size > 1000, png
    if rc == 3:
        err = _one_line(captured.err)
        assert err.startswith("crossi2p-calibrate: cannot calibrate: ") and "rejected" in err
        assert not out.exists()
        return
    calib = load_calibration_yaml(out)
    assert calib.covariance is not None and calib.covariance.shape == (6, 6)
    assert np.all(np.isfinite(calib.covariance)) and np.all(np.diag(calib.covariance) >= 0)
    assert calib.metadata["stage"] in ("refined", "fused") and calib.metadata["pairs"] == 4
    assert (calib.lidar_frame, calib.camera_frame) == ("lidar", "camera_optical")
    assert (calib.camera.width, calib.camera.height) == (sim.camera.width, sim.camera.height)
    assert calib.metadata["refinement"]["start"] in ("prior", "fused")
    # within the prior's bounds (the gate and the refinement's search box keep it there)
    assert prior_violation(calib.T_cam_lidar, Prior(load_calibration_yaml(prior_path).T_cam_lidar, 5.0, 0.3)) is None
    urdf = out.with_suffix(".urdf").read_text()
    assert '<parent link="lidar"/>' in urdf and '<child link="camera_optical"/>' in urdf
    assert (report / "overlay_published.png").is_file()
    assert f"wrote {out}" in captured.out and "T_cam_lidar (" in captured.out
    err = registration_error(calib.T_cam_lidar, sim.T_cam_lidar)
    print(f"calibrate from a 2 deg / 0.1 m prior: stage {calib.metadata['stage']}, error {err}")


def test_short_recording_without_prior_exits_3_naming_the_reason(drive, tmp_path, capsys):
    out = tmp_path / "calib.yaml"
    rc = main([str(drive[0]), "--out", str(out), "--frames", "2", "--report", str(tmp_path / "r"), *MODEL])
    assert rc == 3 and not out.exists()
    err = _one_line(capsys.readouterr().err)
    assert re.match(r"crossi2p-calibrate: cannot calibrate: fusion not converged \(\w+, \d+ of 2 pairs fused\) "
                    r"and no --prior to refine from$", err), err
    assert "did not run" in (tmp_path / "r" / "report.md").read_text()


def test_rig_camera_misuse_exits_2_and_bad_input_1_with_one_line_naming_the_flag(drive, tmp_path, capsys):
    """--rig-camera needs a rosbag2, a --prior (the rig's geometry comes from the priors) and
    another camera than the main one (usage: exit 2), and topics that exist (input: exit 1); each
    is refused before the run."""
    out = ["--out", str(tmp_path / "c.yaml")]
    prior = str(_prior_yaml(tmp_path / "prior.yaml", drive))
    rig = ["--rig-camera", "/camera/image_raw", "/camera/camera_info", prior]
    assert main([str(drive[0]), *out, *rig, *MODEL]) == 2
    assert "--rig-camera: needs --prior" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--prior", prior, *rig, *MODEL]) == 2
    assert "--rig-camera /camera/image_raw: that is the main camera (--image-topic)" in _one_line(capsys.readouterr().err)
    other = ["--rig-camera", "/camera_2/image_raw", "/camera_2/camera_info", prior]
    assert main([str(drive[0]), *out, "--prior", prior, *other, *MODEL]) == 1
    assert "topics ['/camera_2/image_raw', '/camera_2/camera_info'] not found" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--prior", prior, *other, *other, *MODEL]) == 2
    assert "--rig-camera /camera_2/image_raw: given twice (each camera once)" in _one_line(capsys.readouterr().err)
    empty = tmp_path / "seq"
    (empty / "image_2").mkdir(parents=True)
    assert main([str(empty), *out, "--source", "kitti", "--prior", prior, *other, *MODEL]) == 2
    assert "--rig-camera: a rosbag2 input only" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "c.yaml").exists()


def test_a_rig_camera_whose_camera_info_is_another_cameras_is_bad_input(tmp_path, capsys):
    """On the committed real recording: camera_05's images with camera_06's CameraInfo are all
    refused, as for the main camera: exit 1 with one line naming the flag, nothing written."""
    rec = REPO / "data" / "real" / "tri_dgp_scene_02"
    code = main([str(rec / "bag"), "--image-topic", "/camera_01/image_raw", "--camera-info-topic",
                 "/camera_01/camera_info", "--points-topic", "/lidar/points", "--prior",
                 str(rec / "rig_prior_camera_01.yaml"), "--rig-camera", "/camera_05/image_raw",
                 "/camera_06/camera_info", str(rec / "rig_prior_camera_05.yaml"), "--out", str(tmp_path / "c.yaml"),
                 "--json", str(tmp_path / "c.json"), "--quiet", *MODEL])
    assert code == 1
    assert "--rig-camera /camera_05/image_raw: no camera/LiDAR pairs: " in _one_line(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


def test_bad_input_exits_1_and_a_flag_out_of_range_2_with_one_line(drive, tmp_path, capsys):
    out = ["--out", str(tmp_path / "c.yaml")]
    assert main([str(tmp_path / "nope"), *out, *MODEL]) == 1
    assert "not found" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--prior", str(tmp_path / "missing.yaml"), *MODEL]) == 1
    assert "missing.yaml" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--prior-max-rotation-deg", "3", *MODEL]) == 2
    assert "need --prior" in _one_line(capsys.readouterr().err)
    prior = _prior_yaml(tmp_path / "prior.yaml", drive)
    assert main([str(drive[0]), *out, "--prior", str(prior), "--prior-max-rotation-deg", "-5", *MODEL]) == 2
    assert "--prior-max-rotation-deg: expected a number > 0 and <= 180, got -5" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--prior", str(prior), "--prior-max-rotation-deg", "500", *MODEL]) == 2
    assert "--prior-max-rotation-deg: expected a number > 0 and <= 180, got 500" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--window-frames", "0", *MODEL]) == 2
    assert "--window-frames: expected >= 1 pairs, got 0" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--max-pair-offset-s", "-1", *MODEL]) == 2
    assert "--max-pair-offset-s: expected >= 0 seconds, got -1" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--workers", "0", *MODEL]) == 2
    assert "--workers: expected >= 1 processes, got 0" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--points-topic", "/velodyne_points", *MODEL]) == 1
    assert "/velodyne_points" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--model", str(tmp_path / "m.yaml")]) == 1
    assert "model card" in _one_line(capsys.readouterr().err)
    # a topic of the wrong message type is bad input (1), not "cannot calibrate" (3)
    assert main([str(drive[0]), *out, "--image-topic", "/camera/camera_info", "--camera-info-topic",
                 "/camera/image_raw", *MODEL]) == 1
    assert "has type sensor_msgs/msg/CameraInfo" in _one_line(capsys.readouterr().err)
    # an --out that is not a YAML path (the calibration is written there)
    assert main([str(drive[0]), "--out", str(tmp_path / "c.png"), *MODEL]) == 2
    assert "--out" in (err := _one_line(capsys.readouterr().err)) and "expected a calibration .yaml" in err
    # an --out that cannot be written is refused before the run, not after it
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main([str(drive[0]), "--out", str(blocker / "c.yaml"), *MODEL]) == 1
    assert "--out" in _one_line(capsys.readouterr().err)
    # ... also where the permission bits say yes but nothing can be created (root under /proc),
    # and for --report / --json
    assert main([str(drive[0]), "--out", "/proc/crossi2p_nope/c.yaml", *MODEL]) == 1
    assert "--out /proc/crossi2p_nope/c.yaml: not writable" in _one_line(capsys.readouterr().err)
    assert main([str(drive[0]), *out, "--report", "/proc/crossi2p_nope/r", *MODEL]) == 1
    assert "--report /proc/crossi2p_nope/r: not writable" in _one_line(capsys.readouterr().err)   # the folder given
    (tmp_path / "a_file").write_text("")
    assert main([str(drive[0]), *out, "--report", str(tmp_path / "a_file"), *MODEL]) == 1
    assert f"--report {tmp_path / 'a_file'}: is a file, expected a folder" in _one_line(capsys.readouterr().err)
    # a folder as the prior: said so, not "not found"
    assert main([str(drive[0]), *out, "--prior", str(tmp_path), *MODEL]) == 1
    assert "is a folder (expected a calibration YAML file)" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "c.yaml").exists()


def test_rosbag2_only_flags_on_a_dataset_folder_warn_that_they_have_no_effect(tmp_path, capsys):
    """A nuScenes folder comes paired: --slop-s / topic flags are one warning line naming them and why,
    as crossi2p-evaluate-bag; the run goes on (here to the missing model's error)."""
    nuscenes = Path(__file__).resolve().parents[1] / "fixtures" / "nuscenes_mini"
    args = [str(nuscenes), "--out", str(tmp_path / "c.yaml"), "--model", str(tmp_path / "missing.yaml"), "--quiet"]
    assert main([*args, "--slop-s", "0.1"]) == 1
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith("crossi2p-calibrate: warning: --slop-s has no effect for a nuscenes folder: "
                              "its pairs come from the dataset")
    assert error.startswith("crossi2p-calibrate: error: ") and "model card" in error
    assert main(args) == 1
    assert "warning" not in _one_line(capsys.readouterr().err)
    # a KITTI-only flag on a nuScenes folder: read for KITTI only
    assert main([*args, "--kitti-camera", "3"]) == 1
    warning, _ = capsys.readouterr().err.strip().splitlines()
    assert warning == ("crossi2p-calibrate: warning: --kitti-camera is read for a KITTI folder only, not for "
                       "this nuscenes input")
    # --slop-s must be a positive stamp difference (crossi2p-evaluate-bag refuses it too)
    assert main([*args, "--slop-s", "0"]) == 2
    assert "--slop-s: expected a stamp difference > 0 seconds, got 0.0" in _one_line(capsys.readouterr().err)


def test_help_names_the_outputs_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--prior" in text and "--report" in text and "URDF" in text and "3" in text


def test_ctrl_c_exits_130_with_one_line(drive, tmp_path, capsys, monkeypatch):
    import crossi2p_ros.evaluate_bag as evaluate_bag

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_bag, "load_runtime", interrupted)
    assert main([str(drive[0]), "--out", str(tmp_path / "c.yaml"), *MODEL]) == 130
    assert "interrupted" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "c.yaml").exists()


def test_a_dataset_folder_is_calibrated_without_reading_its_calibration(tmp_path, capsys, monkeypatch):
    """nuScenes-format folder: pairs from the dataset, the prior from the user; the dataset's own
    calibration is never read as ground truth (replay_samples records none)."""
    import crossi2p_ros.evaluate_bag as evaluate_bag
    from crossi2p.datasets.nuscenes import read_nuscenes

    from .test_evaluate_bag import NUSCENES_MINI

    dataset = read_nuscenes(NUSCENES_MINI)
    E = make_transform(Rotation.from_euler("xyz", [1.0, 0.5, -1.0], degrees=True), [0.05, 0.05, -0.05])
    prior = save_calibration_yaml(tmp_path / "prior.yaml", E @ dataset.T_cam_lidar(0), dataset[0].camera,
                                  prior_max_rotation_deg=4.0, prior_max_translation_m=0.2)
    seen = {}
    replay_samples = evaluate_bag.replay_samples

    def spy(*args, **kwargs):
        result = replay_samples(*args, **kwargs)
        seen["T_gt"] = [f.T_gt for f in result.frames]
        return result

    monkeypatch.setattr(evaluate_bag, "replay_samples", spy)
    out = tmp_path / "calib.yaml"
    rc = main([str(NUSCENES_MINI), "--out", str(out), "--prior", str(prior), "--report", str(tmp_path / "r"), *MODEL])
    assert seen["T_gt"] == [None, None]
    assert rc in (0, 3)
    if rc == 0:
        calib = load_calibration_yaml(out)
        assert calib.metadata["source"] == "nuscenes" and calib.metadata["pairs"] == 2
        assert (calib.camera.width, calib.camera.height) == (dataset[0].camera.width, dataset[0].camera.height)
    else:
        assert "cannot calibrate" in _one_line(capsys.readouterr().err)
    assert (tmp_path / "r" / "overlay_before.png").is_file()


def test_a_prior_of_another_camera_is_bad_input(drive, tmp_path, capsys):
    """The prior names camera_05_optical; the bag's images are camera_optical: exit 1, one line
    naming both, and nothing written."""
    bag, sim = drive
    E = make_transform(Rotation.from_rotvec(np.radians([0.5, 0.0, 0.0])), np.zeros(3))
    prior = save_calibration_yaml(tmp_path / "p05.yaml", E @ sim.T_cam_lidar, sim.camera, lidar_frame="lidar",
                                  camera_frame="camera_05_optical")
    out = tmp_path / "new" / "c.yaml"
    assert main([str(bag), "--out", str(out), "--prior", str(prior), *MODEL]) == 1
    err = _one_line(capsys.readouterr().err)
    assert "camera_05_optical" in err and "camera_optical" in err and "another sensor" in err
    assert not out.parent.exists()                      # not even an empty --out folder
    # the replay stops at the first pair (a long recording is not read to the end first)
    from crossi2p.prior import load_prior
    from crossi2p_ros.evaluate_bag import load_runtime, replay_bag

    result = replay_bag(bag, load_runtime(MODEL_CARD, "cpu"), None,
                        ("/camera/image_raw", "/camera/camera_info", "/lidar/points"),
                        prior=load_prior(prior), progress=False)
    assert len(result.frames) == 1 and result.pipeline.prior_mismatch is not None



def test_a_rig_whose_stamps_are_all_too_far_apart_is_told_so_and_max_pair_offset_lets_it_refine(drive, tmp_path,
                                                                                                capsys):
    """Every image stamped 40 ms after its sweep: no pair is kept for the refinement (the vehicle
    moves in between); the reason names the offset and the flag, not a missing prior."""
    import json

    from crossi2p.datasets.rosbag2 import write_drive_bag

    _, sim = drive
    frames = list(sim.camera_frames)[:3]
    nearest = [min(sim.lidar_sweeps, key=lambda sweep: abs(sweep[0] - t))[1] for t, _ in frames]
    images = [(t + 0.04, image) for t, image in frames]
    sweeps = [(t, points) for (t, _), points in zip(frames, nearest)]
    bag = write_drive_bag(tmp_path / "offset", images, sweeps, sim.camera, sim.T_cam_lidar)
    prior, out, js = _prior_yaml(tmp_path / "prior.yaml", drive), tmp_path / "calib.yaml", tmp_path / "run.json"
    rc = main([str(bag), "--out", str(out), "--prior", str(prior), "--slop-s", "0.05", *MODEL])
    err = _one_line(capsys.readouterr().err)
    assert rc == 3 and not out.exists()
    assert "no pair to refine on" in err and re.search(r"all \d+ pairs are more than 20 ms apart", err), err
    assert "--max-pair-offset-s" in err and "no --prior" not in err
    rc = main([str(bag), "--out", str(out), "--prior", str(prior), "--slop-s", "0.05", "--max-pair-offset-s", "0.05",
               "--json", str(js), *MODEL])
    capsys.readouterr()
    assert rc in (0, 3)
    refinement = json.loads(js.read_text())["refinement"]      # it ran, accepted or not
    assert refinement is not None and refinement["frames"] >= 1 and refinement["window_span"] == "spread"


def test_camera_and_lidar_on_different_clocks_are_told_so_with_both_stamp_spans(drive, tmp_path, capsys):
    """Images stamped 1000 s after the sweeps (one sensor on host time, one on its own clock):
    no pair at all; the one-line reason gives both streams' stamps and the gap, not "check the
    topics" (the topics are right)."""
    from crossi2p.datasets.rosbag2 import write_drive_bag

    _, sim = drive
    images = [(t + 1000.0, image) for t, image in list(sim.camera_frames)[:3]]
    bag = write_drive_bag(tmp_path / "clocks", images, list(sim.lidar_sweeps)[:3], sim.camera, sim.T_cam_lidar)
    out, report = tmp_path / "calib.yaml", tmp_path / "report"
    rc = main([str(bag), "--out", str(out), "--report", str(report), *MODEL])
    err = _one_line(capsys.readouterr().err)
    assert rc == 3 and not out.exists()
    assert "s apart, more than the pairing slop" in (report / "report.md").read_text()   # the report says it too
    m = re.search(r"images 3 stamped [\d.]+-[\d.]+ s, sweeps 3 stamped [\d.]+-[\d.]+ s: ([\d.]+) s apart", err)
    assert m, err
    assert float(m.group(1)) == pytest.approx(1000.0 - 0.2, abs=0.5), err    # stamps within 0.2 s each
    assert "different clocks" in err and "check the topics" not in err


@pytest.mark.parametrize("skewed", [True, False])
def test_kitti_sweeps_are_deskewed_unless_the_folder_says_they_already_are(skewed, tmp_path, capsys):
    """``--deskew auto``: a KITTI folder's sweeps are raw (KITTI never motion-compensates them), so
    they are de-skewed; a ``crossi2p-sim`` folder records whether its sweeps are skewed. Every sweep
    after the first (the odometry's start) is de-skewed, and the JSON and calib metadata say so."""
    from crossi2p_training.sim.cli import main as sim_main
    seq = tmp_path / "seq"
    assert sim_main(["--seed", "5", "--frames", "6", "--preset", "small", "--kitti", str(seq)]
                    + (["--motion-during-sweep"] if skewed else [])) == 0
    truth = load_calibration_yaml(seq / "calib.yaml")
    assert truth.metadata["lidar_sweeps"] == ("skewed" if skewed else "at_stamp")
    E = make_transform(Rotation.from_euler("xyz", [1.0, -0.5, 0.5], degrees=True), [0.05, -0.03, 0.04])
    prior = save_calibration_yaml(tmp_path / "prior.yaml", E @ truth.T_cam_lidar, truth.camera,
                                  prior_max_rotation_deg=4.0, prior_max_translation_m=0.2)
    js = tmp_path / "run.json"
    rc = main([str(seq), "--out", str(tmp_path / "calib.yaml"), "--prior", str(prior), "--json", str(js), *MODEL])
    assert rc in (0, 3), capsys.readouterr().err
    import json
    summary = json.loads(js.read_text())
    assert summary["deskew"] == ({"mode": "azimuth", "sweeps_deskewed": 5} if skewed
                                 else {"mode": "off", "sweeps_deskewed": 0})
    # the direction-of-travel check's counts (it runs with de-skewing on or off: its own odometry)
    assert 0 <= summary["rejected_direction_of_travel"] <= summary["direction_of_travel_checked"] <= summary["pairs"]
    # pairs kept out of the window, by why: the first sweep not de-skewed when skewed; a moving car, so
    # no repeated view (its 416 px frames move 3.5 px and more)
    assert summary["pairs_left_out"] == {"unsynchronised": 0, "not_deskewed": 1 if skewed else 0, "not_keyframes": 0}
    if rc == 0:
        assert load_calibration_yaml(tmp_path / "calib.yaml").metadata["deskew"] == summary["deskew"]
        out = capsys.readouterr().out
        assert ("de-skewing: 5 sweeps de-skewed (azimuth)" if skewed else "de-skewing: off") in out


def test_deskew_flags_are_checked_and_rosbags_are_left_alone_by_default(drive, tmp_path, capsys):
    bag, _ = drive
    for flag, value, reason in (("--lidar-rate-hz", "0", "expected 0.1 to 100 revolutions per second, got 0"),
                                ("--lidar-rate-hz", "inf", "expected 0.1 to 100 revolutions per second, got inf"),
                                ("--lidar-stamp-azimuth-deg", "nan", "expected -360 to 360 degrees, got nan"),
                                ("--lidar-stamp-azimuth-deg", "1000", "expected -360 to 360 degrees, got 1000")):
        rc = main([str(bag), "--out", str(tmp_path / "c.yaml"), flag, value, *MODEL])
        assert rc == 2 and _one_line(capsys.readouterr().err).endswith(f"{flag}: {reason}")
    from crossi2p_ros.calibrate import build_parser
    from crossi2p_ros.recordings import deskew_config
    args = build_parser().parse_args([str(bag), "--out", "x.yaml"])
    assert deskew_config(args, "rosbag2", bag).mode == "off"
    # KITTI raw sweeps are raw; KITTI Odometry's were compensated (a folder with no calib.yaml
    # record saying otherwise)
    assert deskew_config(args, "kitti_raw", tmp_path).mode == "azimuth"
    assert deskew_config(args, "kitti", tmp_path).mode == "off"
    args = build_parser().parse_args([str(bag), "--out", "x.yaml", "--deskew", "azimuth", "--lidar-spin",
                                      "counterclockwise", "--lidar-stamp-azimuth-deg", "180"])
    cfg = deskew_config(args, "rosbag2", bag)
    assert (cfg.mode, cfg.clockwise, cfg.stamp_azimuth_deg) == ("azimuth", False, 180.0)
    capsys.readouterr()
    args = build_parser().parse_args([str(bag), "--out", "x.yaml", "--lidar-spin", "counterclockwise"])
    assert deskew_config(args, "rosbag2", bag).mode == "off"        # flags without --deskew: said so
    assert "--lidar-spin has no effect: de-skewing is off" in _one_line(capsys.readouterr().err)


def test_a_bag_whose_clouds_carry_per_point_times_is_deskewed_with_them(tmp_path, capsys):
    """``--deskew time``: the clouds' own time field (here ``t``, seconds, as crossi2p-sim
    --with-time writes it; Ouster / Velodyne / Livox / Hesai fields are decoded the same way) gives
    the firing times; every sweep after the first is de-skewed. A bag without the field is used as
    recorded, and says so."""
    import dataclasses
    import json

    from crossi2p.datasets.rosbag2 import write_drive_bag
    from crossi2p_training.sim import SimConfig, simulate_drive

    base = SimConfig.preset("small")
    drive = simulate_drive(base.replace(lidar=dataclasses.replace(base.lidar, with_time=True,
                                                                  motion_during_sweep=True)), seed=21, frames=5)
    timed = write_drive_bag(tmp_path / "timed", drive.camera_frames, drive.lidar_sweeps, drive.camera,
                            drive.T_cam_lidar)
    untimed = write_drive_bag(tmp_path / "untimed", drive.camera_frames, [(t, p[:, :4]) for t, p in drive.lidar_sweeps],
                              drive.camera, drive.T_cam_lidar)
    prior = _prior_yaml(tmp_path / "prior.yaml", (None, drive))
    for bag, deskewed in ((timed, 4), (untimed, 0)):
        js = tmp_path / f"{bag.name}.json"
        rc = main([str(bag), "--out", str(tmp_path / f"{bag.name}.yaml"), "--prior", str(prior), "--json", str(js),
                   "--deskew", "time", *MODEL])
        assert rc in (0, 3), capsys.readouterr().err
        assert json.loads(js.read_text())["deskew"] == {"mode": "time", "sweeps_deskewed": deskewed}


def test_a_prior_that_puts_no_point_in_the_image_is_not_recommended(tmp_path, capsys):
    """An identity prior (a T_cam_lidar that was never set, or the wrong way round) puts no LiDAR
    point of the committed real recording into camera_01: exit 3, and the next step says to check
    the prior's direction instead of "keep using the prior"."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "data" / "real" / "tri_dgp_scene_02"
    good = load_calibration_yaml(data / "prior_camera_01.yaml")
    prior = save_calibration_yaml(tmp_path / "identity.yaml", np.eye(4), good.camera, lidar_frame=good.lidar_frame,
                                  camera_frame=good.camera_frame, prior_max_rotation_deg=5.0,
                                  prior_max_translation_m=0.3)
    args = [str(data / "bag"), "--image-topic", "/camera_01/image_raw", "--camera-info-topic",
            "/camera_01/camera_info", "--points-topic", "/lidar/points", "--prior", str(prior),
            "--out", str(tmp_path / "calib.yaml"), "--model", str(MODEL_CARD), "--execution-provider", "cpu"]
    assert main(args) == 3
    out, err = capsys.readouterr()
    assert "no LiDAR point in view" in err and "check its T_cam_lidar" in out and "keep using" not in out
    assert not (tmp_path / "calib.yaml").exists()


def test_a_corrupt_frame_of_a_dataset_folder_is_skipped_and_said(tmp_path, capsys):
    """A truncated sweep in a KITTI folder: that frame is skipped (not the rest of the recording),
    a warning names the file, the JSON lists it; without a prior the stdout does not claim a
    result was checked."""
    import json

    from crossi2p_training.sim.cli import main as sim_main
    seq = tmp_path / "seq"
    assert sim_main(["--seed", "5", "--frames", "6", "--preset", "small", "--kitti", str(seq)]) == 0
    bad = sorted((seq / "velodyne").glob("*.bin"))[2]
    bad.write_bytes(bad.read_bytes()[:1001])
    js = tmp_path / "run.json"
    capsys.readouterr()
    rc = main([str(seq), "--out", str(tmp_path / "calib.yaml"), "--json", str(js), "--deskew", "off",
               *MODEL[:-1]])                                       # not --quiet: the next-step line
    captured = capsys.readouterr()
    assert rc == 3
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and bad.name in warning[0] and "skipped" in warning[0], captured.err
    summary = json.loads(js.read_text())
    frames = len(list((seq / "velodyne").glob("*.bin")))
    assert summary["pairs"] == frames - 1 and len(summary["read_errors"]) == 1 and bad.name in summary["read_errors"][0]
    assert "no calibration written: there was no estimate to check" in captured.out


def test_a_camera_info_topic_of_another_camera_is_bad_input(tmp_path, capsys):
    """The committed real recording, camera_01's images with camera_05's CameraInfo: every image is
    refused, exit 1 with one line naming both frames (it used to run with the wrong intrinsics and
    be refused as 'ambiguous')."""
    recording = REPO / "data" / "real" / "tri_dgp_scene_02"
    rc = main([str(recording / "bag"), "--image-topic", "/camera_01/image_raw", "--camera-info-topic",
               "/camera_05/camera_info", "--prior", str(recording / "prior_camera_01.yaml"), "--out",
               str(tmp_path / "calib.yaml"), *MODEL])
    err = _one_line(capsys.readouterr().err)
    assert rc == 1 and not (tmp_path / "calib.yaml").exists()
    assert "'camera_05_optical'" in err and "'camera_01_optical'" in err and "not one camera" in err


def test_a_kitti_folder_without_the_extrinsic_is_calibrated_and_one_without_calib_is_one_line(tmp_path, capsys):
    """A user's own recording in KITTI layout has the intrinsics (P2) but not the extrinsic (Tr) that
    crossi2p-calibrate is to find; without any calibration file the reason says what is expected."""
    import json

    from crossi2p_training.sim.cli import main as sim_main
    seq = tmp_path / "seq"
    assert sim_main(["--seed", "5", "--frames", "6", "--preset", "small", "--kitti", str(seq)]) == 0
    truth = load_calibration_yaml(seq / "calib.yaml")
    (seq / "calib.yaml").unlink()
    calib_txt = seq / "calib.txt"
    calib_txt.write_text("".join(line + "\n" for line in calib_txt.read_text().splitlines()
                                 if not line.startswith("Tr:")))
    E = make_transform(Rotation.from_euler("xyz", [1.0, -0.5, 0.5], degrees=True), [0.05, -0.03, 0.04])
    prior = save_calibration_yaml(tmp_path / "prior.yaml", E @ truth.T_cam_lidar, truth.camera,
                                  prior_max_rotation_deg=4.0, prior_max_translation_m=0.2)
    js = tmp_path / "run.json"
    capsys.readouterr()
    rc = main([str(seq), "--out", str(tmp_path / "calib.yaml"), "--prior", str(prior), "--json", str(js), *MODEL])
    first = capsys.readouterr().err
    assert rc in (0, 3), first
    assert json.loads(js.read_text())["pairs"] == 6
    calib_txt.unlink()
    rc = main([str(seq), "--out", str(tmp_path / "calib.yaml"), "--prior", str(prior), *MODEL])
    err = _one_line(capsys.readouterr().err)
    assert rc == 1 and "calib.txt: not found (expected a KITTI calibration text file" in err


def test_a_converged_fusion_with_no_pair_to_refine_on_writes_the_fused_calibration_and_says_why(drive, tmp_path,
                                                                                               capsys, monkeypatch):
    """Every image 40 ms after its sweep (no pair for the refinement window) and a network that
    converges (scripted: the tool's handling of that case is under test, not the network): the
    fused calibration is written (with --accept-fused; without it, exit 3) with the recording's frame
    ids and camera, and the summary and the report say why the refinement did not run (it crashed on
    the empty window)."""
    import json

    import crossi2p_ros.evaluate_bag as evaluate_bag
    from crossi2p.datasets.rosbag2 import write_drive_bag
    from crossi2p.runtime import FrameEstimate

    _, sim = drive

    class ConvergingNetwork:
        card = type("Card", (), {"name": "scripted", "preprocess": {}})()
        providers = ["CPUExecutionProvider"]

        def estimate(self, image, points, camera, T_prior=None):
            return FrameEstimate(valid=True, T_cam_lidar=sim.T_cam_lidar.copy(), confidence=0.9, inlier_ratio=0.8,
                                 latency_ms={"graph": 1.0})

        def close(self):
            pass

    monkeypatch.setattr(evaluate_bag, "load_runtime", lambda *args, **kwargs: ConvergingNetwork())
    frames = list(sim.camera_frames)[:3]
    nearest = [min(sim.lidar_sweeps, key=lambda sweep: abs(sweep[0] - t))[1] for t, _ in frames]
    stamps = [0.1 * k for k in range(12)]                       # 12 pairs: enough to converge
    images = [(t + 0.04, frames[k % 3][1]) for k, t in enumerate(stamps)]
    sweeps = [(t, nearest[k % 3]) for k, t in enumerate(stamps)]
    bag = write_drive_bag(tmp_path / "offset", images, sweeps, sim.camera, sim.T_cam_lidar)
    out, js, report = tmp_path / "calib.yaml", tmp_path / "run.json", tmp_path / "report"
    args = [str(bag), "--out", str(out), "--json", str(js), "--report", str(report), "--slop-s", "0.05", "--quiet",
            *MODEL]
    # without --accept-fused: the network's estimate alone is not a calibration (exit 3, nothing written)
    assert main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("crossi2p-calibrate: cannot calibrate: only the fused network estimate is left "
                          "(no pair to refine on") and "--accept-fused writes it" in err
    assert not out.exists() and json.loads(js.read_text())["exit_code"] == 3
    rc = main([*args, "--accept-fused"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "written with --accept-fused" in printed
    calib = load_calibration_yaml(out)
    assert calib.metadata["stage"] == "fused" and calib.metadata["refinement"] is None
    np.testing.assert_allclose(calib.T_cam_lidar, sim.T_cam_lidar, atol=1e-6)
    assert (calib.lidar_frame, calib.camera_frame) == ("lidar", "camera_optical")
    np.testing.assert_allclose(calib.camera.K, sim.camera.K)
    assert "refinement: did not run, no pair to refine on" in printed and "20 ms apart" in printed
    assert json.loads(js.read_text())["stage"] == "fused"
    assert "did not run (no pair to refine on" in (report / "report.md").read_text()
    assert (report / "overlay_published.png").is_file()         # on the newest pair


def test_a_kitti_camera_index_out_of_range_is_one_line(tmp_path, capsys):
    """--kitti-camera 12 said 'no image_012/data/'; it names the range."""
    from crossi2p_training.sim.cli import main as sim_main

    seq = tmp_path / "seq"
    assert sim_main(["--seed", "5", "--frames", "2", "--preset", "small", "--kitti", str(seq)]) == 0
    capsys.readouterr()
    assert main([str(seq), "--out", str(tmp_path / "c.yaml"), "--kitti-camera", "12", *MODEL]) == 1
    assert _one_line(capsys.readouterr().err).endswith("--kitti-camera 12: expected 0 to 3 (KITTI's cameras: "
                                                        "0-1 grey, 2-3 colour)")


def test_a_dataset_folder_names_the_frames_written_when_the_prior_names_none(tmp_path, capsys):
    """A KITTI-layout folder's own calib.yaml names its frames (crossi2p-sim writes velodyne /
    camera_2): the calibration and URDF use them, not 'lidar' / 'camera_optical', when the prior's
    file names no frames (only the names are read, never the folder's calibration)."""
    from crossi2p.datasets.kitti import read_kitti_sequence
    from crossi2p_ros.recordings import dataset_frames
    from crossi2p_training.sim.cli import main as sim_main

    seq = tmp_path / "seq"
    assert sim_main(["--seed", "5", "--frames", "6", "--preset", "small", "--kitti", str(seq)]) == 0
    assert dataset_frames(seq, "kitti") == ("velodyne", "camera_2")
    assert dataset_frames(seq, "nuscenes", "CAM_BACK", "LIDAR_TOP") == ("LIDAR_TOP", "CAM_BACK")
    assert dataset_frames(tmp_path, "kitti") == ("", "")
    truth = read_kitti_sequence(seq).T_cam_lidar
    E = make_transform(Rotation.from_euler("xyz", [1.0, -0.5, 0.5], degrees=True), [0.05, -0.03, 0.04])
    rows = "".join(f"- [{', '.join(repr(float(x)) for x in row)}]\n" for row in E @ truth)
    prior = tmp_path / "prior.yaml"                      # names no frames
    prior.write_text(f"T_cam_lidar:\n{rows}prior_max_rotation_deg: 4.0\nprior_max_translation_m: 0.2\n")
    out = tmp_path / "calib.yaml"
    rc = main([str(seq), "--out", str(out), "--prior", str(prior), *MODEL])
    assert rc == 0, capsys.readouterr().err               # (deterministic: same seed, same refinement)
    written = load_calibration_yaml(out)
    assert (written.lidar_frame, written.camera_frame) == ("velodyne", "camera_2")
    assert 'parent link="velodyne"' in out.with_suffix(".urdf").read_text()
