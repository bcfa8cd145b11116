"""crossi2p-evaluate-bag replays a rosbag2 through the node's pipeline and writes its report."""
import json

import pytest

from crossi2p.datasets.rosbag2 import write_drive_bag
from crossi2p_ros.evaluate_bag import main

from .test_calibration_node import MODEL_CARD


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory):
    from crossi2p_training.sim import SimConfig, simulate_drive

    drive = simulate_drive(SimConfig.preset("small"), seed=21, frames=5)
    bag = tmp_path_factory.mktemp("bag") / "drive"
    write_drive_bag(bag, drive.camera_frames, drive.lidar_sweeps, drive.camera, drive.T_cam_lidar)
    return bag


def test_replay_writes_summary_csv_plots_and_report(drive_bag, tmp_path, capsys):
    report = tmp_path / "report"
    rc = main([str(drive_bag), "--model", str(MODEL_CARD), "--json", str(tmp_path / "s.json"),
               "--report", str(report), "--execution-provider", "cpu",
               "--max-rte-m", "0.5", "--max-rre-deg", "2"])
    summary = json.loads((tmp_path / "s.json").read_text())
    for key in ("frames", "acc", "rte_m_median", "rre_geodesic_deg_median", "latency_ms_median",
                "fused_rte_m", "fused_rre_geodesic_deg", "frames_to_converge"):
        assert key in summary
    assert summary["frames"] == 4  # 5 sweeps; the last waits for a later image
    for name in ("summary.json", "frames.csv", "errors.png", "components.png", "inliers.png", "report.md"):
        assert (report / name).is_file(), name
    assert len((report / "frames.csv").read_text().splitlines()) == 1 + 4
    # Exit code gates on the final fused error: 0 within the thresholds, 3 otherwise.
    converged_within = summary["fused_rte_m"] is not None and summary["fused_rte_m"] <= 0.5 \
        and summary["fused_rre_geodesic_deg"] <= 2
    assert rc == (0 if converged_within else 3)
    assert "report:" in capsys.readouterr().out


def test_bad_input_exits_1_with_one_line(drive_bag, tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--model", str(MODEL_CARD)]) == 1
    assert "not found" in capsys.readouterr().err
    assert main([str(drive_bag), "--model", str(MODEL_CARD), "--points-topic", "/velodyne_points"]) == 1
    err = capsys.readouterr().err.strip()
    assert "/velodyne_points" in err and "/lidar/points" in err and len(err.splitlines()) == 1
    assert main([str(drive_bag), "--model", str(tmp_path / "missing.yaml")]) == 1
    assert "model card" in capsys.readouterr().err
