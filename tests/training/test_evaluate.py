"""``crossi2p-evaluate`` on a tiny checkpoint (and on its exported ONNX graph through the runtime):
the summary JSON has the stable keys, and the CSV, recall curve and overlays are written."""
from __future__ import annotations

import csv
import json

import cv2
import pytest
import torch

from crossi2p.model_card import GRAPH_INPUTS, ModelCard, TensorSpec, sha256_of_file
from crossi2p_training.evaluate import main
from crossi2p_training.sim import SimConfig, simulate_drive

KEYS = ("frames", "acc", "rte_m_median", "rte_m_mean", "rre_euler_sum_deg_median", "rre_euler_sum_deg_mean",
        "rre_geodesic_deg_median", "latency_ms_median", "rte_m_std", "rre_geodesic_deg_std")


@pytest.fixture(scope="module")
def kitti_seq(tmp_path_factory):
    from crossi2p.datasets.kitti import write_kitti_sequence

    samples = simulate_drive(SimConfig.preset("small"), 21, 3).paired_samples()
    seq = tmp_path_factory.mktemp("kitti") / "09"
    write_kitti_sequence(seq, samples, samples[0].camera, samples[0].T_cam_lidar)
    return seq


def _check_report(out_json, frames):
    summary = json.loads(out_json.read_text())
    for key in KEYS:
        assert key in summary, key
    assert summary["frames"] == frames and 0.0 <= summary["acc"] <= 1.0
    stem = out_json.with_suffix("")
    rows = list(csv.DictReader(open(f"{stem}_frames.csv")))
    assert len(rows) == frames and {"rte_m", "rre_geodesic_deg", "rre_euler_sum_deg", "latency_ms"} <= set(rows[0])
    for suffix in ("recall", "overlay_best", "overlay_median", "overlay_worst"):
        img = cv2.imread(f"{stem}_{suffix}.png")
        assert img is not None and img.shape[0] > 50, suffix
    return summary


def test_checkpoint_on_a_kitti_folder_global(tmp_path, tiny_checkpoint, kitti_seq, capsys):
    out = tmp_path / "eval" / "kitti.json"
    assert main(["--model", str(tiny_checkpoint), "--kitti", str(kitti_seq), "--protocol", "global",
                 "--seed", "0", "--json", str(out), "--quiet"]) == 0
    summary = _check_report(out, 3)
    assert summary["protocol"] == "global" and summary["latency_ms_median"] > 0
    assert "rre_geodesic_deg_median" in capsys.readouterr().out
    again = tmp_path / "again.json"
    main(["--model", str(tiny_checkpoint), "--kitti", str(kitti_seq), "--protocol", "global", "--seed", "0",
          "--json", str(again), "--quiet", "--no-overlays"])
    a, b = json.loads(out.read_text()), json.loads(again.read_text())
    assert a["rte_m_mean"] == b["rte_m_mean"]                          # same seed, same perturbations


def test_checkpoint_on_a_simulated_drive_refine(tmp_path, tiny_checkpoint):
    out = tmp_path / "sim.json"
    assert main(["--model", str(tiny_checkpoint), "--sim-seed", "4", "--sim-drives", "2", "--frames", "2",
                 "--protocol", "refine", "--json", str(out), "--quiet", "--fine-peak-radius", "2"]) == 0
    _check_report(out, 4)                                 # 2 drives x 2 frames


def test_exported_onnx_runs_through_the_runtime(tmp_path, tiny_checkpoint, kitti_seq):
    from crossi2p_training.model.onnx_graph import export_onnx
    from crossi2p_training.train import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    net = model_from_checkpoint(ckpt).eval()
    pre = ckpt["config"]["preprocess"]
    onnx_path = tmp_path / "tiny.onnx"
    hw = (pre["image_height"], pre["image_width"])
    outputs = export_onnx(net, onnx_path, hw, pre["num_points"])
    shapes = {"image": [1, 3, *hw], "points": [1, "num_points", 4], "K": [1, 3, 3], "T_prior": [1, 4, 4],
              "prior_weight": [1]}
    ModelCard(name="tiny", onnx_file=onnx_path.name, onnx_sha256=sha256_of_file(onnx_path), preprocess=pre,
              inputs=[TensorSpec(n, shapes[n]) for n in GRAPH_INPUTS],
              outputs=[TensorSpec(n, [1]) for n in outputs]).save(tmp_path / "tiny.yaml")
    out = tmp_path / "onnx.json"
    assert main(["--model", str(onnx_path), "--kitti", str(kitti_seq), "--protocol", "refine", "--json", str(out),
                 "--quiet", "--no-overlays"]) == 0
    summary = json.loads(out.read_text())
    assert summary["frames"] == 3 and summary["latency_ms_median"] > 0
    # the checkpoint in torch and its graph in onnxruntime see the same frames the same way (the
    # untrained tiny net's PnP amplifies float differences, so only roughly equal figures)
    ref = tmp_path / "torch.json"
    main(["--model", str(tiny_checkpoint), "--kitti", str(kitti_seq), "--protocol", "refine", "--json", str(ref),
          "--quiet", "--no-overlays"])
    assert json.loads(ref.read_text())["rte_m_mean"] == pytest.approx(summary["rte_m_mean"], rel=0.05)


def test_exactly_one_data_source_is_required(tmp_path, capsys):
    """A usage error (exit 2, one line), said before the model is loaded (it does not exist here)."""
    assert main(["--model", str(tmp_path / "nope.pt"), "--json", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip() == ("crossi2p-evaluate: error: give exactly one data source (--kitti, "
                                               "--nuscenes, --bag, --samples or --sim-seed); got none")
    assert main(["--model", str(tmp_path / "nope.pt"), "--sim-seed", "1", "--kitti", str(tmp_path),
                 "--json", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip().endswith("got --kitti, --sim-seed")
    assert main(["--model", str(tmp_path / "nope.pt"), "--sim-seed", "1", "--sim-drives", "0",
                 "--json", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip() == "crossi2p-evaluate: error: --sim-drives: expected >= 1, got 0"


def test_bad_data_folder_or_model_exits_1_and_a_bad_flag_2_with_one_line(tmp_path, tiny_checkpoint, capsys):
    assert main(["--model", str(tiny_checkpoint), "--nuscenes", str(tmp_path / "missing"),
                 "--json", str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing" in err and "v1.0-*" in err
    assert main(["--model", str(tmp_path / "nope.pt"), "--sim-seed", "1", "--json", str(tmp_path / "x.json")]) == 1
    assert "nope.pt" in capsys.readouterr().err
    assert main(["--model", str(tiny_checkpoint), "--fine-peak-radius", "-1", "--sim-seed", "1",
                 "--json", str(tmp_path / "x.json")]) == 2
    assert "expected >= 0" in capsys.readouterr().err
    # --json a folder: refused before the model is even loaded (results are written at the end)
    assert main(["--model", str(tmp_path / "nope.pt"), "--sim-seed", "1", "--json", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--json" in err and "is a folder" in err
    # rosbag2-only flags without --bag: refused (they would be ignored), before the model is loaded
    assert main(["--model", str(tmp_path / "nope.pt"), "--sim-seed", "1", "--slop-s", "0.1", "--points-topic", "/p",
                 "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--points-topic, --slop-s: apply to --bag only" in err


def test_kitti_option_reads_a_kitti_raw_drive_or_its_date_folder(tmp_path):
    """--kitti takes the raw layout too: the same Samples, the devkit calibration as ground truth."""
    import numpy as np

    from crossi2p.geometry import transform_points
    from crossi2p_training.evaluate import _build_source, build_parser
    from tests.fixtures import kitti_raw

    drive = kitti_raw.write_kitti_raw(tmp_path, frames=2)
    for path in (drive, drive.parent):
        args = build_parser().parse_args(["--model", "m.pt", "--kitti", str(path), "--json", str(tmp_path / "o.json")])
        source, what = _build_source(args, None)
        assert len(source) == 2 and what == f"KITTI {path}"
        s = source[1]
        np.testing.assert_array_equal(s.points, kitti_raw.frame_points(1))
        uv, _, _ = s.camera.project_in_image(transform_points(s.T_cam_lidar, np.array([[10.0, 0.0, 0.0]])))
        np.testing.assert_allclose(uv[0], [613.96, 175.01], atol=0.01)
        assert s.stamp_s - s.lidar_stamp_s == pytest.approx(0.0032, abs=1e-6)
    args = build_parser().parse_args(["--model", "m.pt", "--kitti", str(drive / "image_02"), "--json", "o.json"])
    with pytest.raises(ValueError, match="neither a KITTI Odometry sequence .* nor a KITTI raw drive"):
        _build_source(args, None)


def test_the_committed_real_bag_and_the_shared_sample_folders_can_be_evaluated(tmp_path, shared_data):
    """--image-topic / --camera-info-topic / --points-topic reach a bag whose topics are not the
    defaults (the committed real recording); --samples reads the shared real frames' folders."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    onnx = repo / "models" / "crossi2p_cpu.onnx"
    out = tmp_path / "bag.json"
    assert main(["--model", str(onnx), "--bag", str(repo / "data" / "real" / "tri_dgp_scene_02" / "bag"),
                 "--image-topic", "/camera_01/image_raw", "--camera-info-topic", "/camera_01/camera_info",
                 "--points-topic", "/lidar/points", "--frames", "2", "--json", str(out), "--quiet",
                 "--no-overlays"]) == 0
    assert json.loads(out.read_text())["frames"] == 2
    out = tmp_path / "samples.json"
    assert main(["--model", str(onnx), "--samples", str(shared_data / "real" / "kitti_000000"),
                 str(shared_data / "real" / "opencalib_manual_0"), "--json", str(out), "--quiet",
                 "--no-overlays"]) == 0
    summary = json.loads(out.read_text())
    assert summary["frames"] == 2 and "2 sample folder(s)" in summary["data"]


@pytest.mark.parametrize("protocol, bound", [("global", 0.0), ("refine", 10.0), (None, 10.0)])
def test_the_global_protocol_turns_the_runtimes_lever_arm_bound_off(protocol, bound):
    """The global protocol moves the cloud up to 10 m along two axes (a right estimate then puts
    the sensors that far apart): the runtime's physical bound on their distance is off there only."""
    from pathlib import Path

    from crossi2p_training.evaluate import load_estimator

    card = Path(__file__).resolve().parents[2] / "models" / "crossi2p_cpu.yaml"
    estimator = load_estimator(card, protocol=protocol)
    try:
        assert estimator.runtime.config.max_lever_arm_m == bound
    finally:
        estimator.runtime.close()


def test_a_frame_that_cannot_be_read_is_skipped_and_a_folder_without_calibration_is_one_line(tmp_path, shared_data,
                                                                                           capsys):
    """A corrupt scan among readable frames is skipped with a warning and listed in read_errors (it
    ended the run with a traceback); a folder whose every frame fails (no calib.txt) is one line,
    exit 1."""
    import shutil
    from pathlib import Path

    card = Path(__file__).resolve().parents[2] / "models" / "crossi2p_cpu.yaml"
    d = shared_data / "real" / "kitti_000000"
    seq = tmp_path / "sequences" / "00"
    (seq / "image_2").mkdir(parents=True)
    (seq / "velodyne").mkdir()
    shutil.copy(d / "000000.txt", seq / "calib.txt")
    for n in (0, 1):
        shutil.copy(d / "000000.png", seq / "image_2" / f"{n:06d}.png")
        shutil.copy(d / "000000.bin", seq / "velodyne" / f"{n:06d}.bin")
    (seq / "velodyne" / "000001.bin").write_bytes(b"\0" * 1001)                 # not a multiple of 16
    out = tmp_path / "e.json"
    assert main(["--model", str(card), "--kitti", str(seq), "--json", str(out), "--quiet", "--no-overlays"]) == 0
    err = capsys.readouterr().err
    assert "1 frame(s) could not be read and were skipped" in err and "000001.bin" in err, err
    summary = json.loads(out.read_text())
    assert summary["frames"] == 1 and len(summary["read_errors"]) == 1
    (seq / "calib.txt").unlink()
    assert main(["--model", str(card), "--kitti", str(seq), "--json", str(out), "--quiet", "--no-overlays"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossi2p-evaluate: error: ") and "calib.txt" in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
