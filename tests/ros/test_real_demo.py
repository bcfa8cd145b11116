"""The README's main job on real sensors: scripts/real_demo.py (crossi2p-calibrate from a prior) on
the committed TRI DGP recording data/real/tri_dgp_scene_02 (no shared data needed).

Tolerances, and why (docs/benchmarks.md section 8, "Depth bands in the NID" and "The real
recording demo"): the committed priors are the rig calibration moved by 3 deg / 0.2 m (RTE
0.18-0.26 m, median 0.22 m). Today the refinement's search brings the six cameras to a median of
0.28 deg / 0.15 m (0.19-0.66 deg; camera_05's translation ends above its prior's) and refuses every
result ("ambiguous"). The test runs the demo as a user does (all six cameras) and pins that the
median rotation improves on the prior by at least 2 deg and stays <= 0.45 deg (0.35 deg before the
translation hops, 0.71 deg before the depth bands; the margin is for the search's sensitivity to
floating-point rounding on another CPU), that the median translation is below the priors' median,
and that every refusal comes with its reason and no calibration file.

The rig (all six cameras refined as one, ``crossi2p-calibrate --rig-camera``, from the committed rig
priors: the LiDAR's pose off by 3 deg / 0.2 m for every camera alike) is accepted at 0.056 m /
0.103 deg (docs/benchmarks.md section 8, "A rig of cameras"); the test pins that it is written for
every camera, better than its prior, within 0.08 m / 0.2 deg (the margin for floating-point
rounding on another CPU) and the same error for every camera (one pose of the LiDAR).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
RECORDING = REPO / "data" / "real" / "tri_dgp_scene_02"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("demo_real")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "real_demo.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "summary.json").read_text())["runs"], out, proc.stdout


def test_committed_recording_is_present_and_small():
    files = [p for p in (RECORDING / "bag").iterdir() if p.is_file()]
    assert {p.suffix for p in files} == {".mcap", ".yaml"}
    assert sum(p.stat().st_size for p in files) < 10e6
    assert len(list(RECORDING.glob("prior_camera_*.yaml"))) == 6
    assert len(list(RECORDING.glob("rig_prior_camera_*.yaml"))) == 6


def test_demo_uses_every_sweep_and_states_the_prior_offset(demo):
    runs, _, stdout = demo
    assert [r["camera"] for r in runs] == [f"camera_0{k}" for k in (1, 5, 6, 7, 8, 9)]
    assert all(r["pairs"] == 3 for r in runs)  # all three sweeps, the last one paired at the end of the recording
    run = runs[0]
    assert run["prior_error"]["rre_geodesic_deg"] == pytest.approx(3.0, abs=1e-6)
    assert run["prior_error"]["rte_m"] == pytest.approx(0.241, abs=0.002)
    assert "moved by 3.0 deg and 0.2 m" in stdout


def test_the_search_beats_the_prior_in_rotation_and_translation(demo):
    runs, _, _ = demo
    assert all(r["searched_error"] is not None for r in runs), \
        "crossi2p-calibrate --json must carry T_searched, accepted or not"
    prior_rre = [r["prior_error"]["rre_geodesic_deg"] for r in runs]
    searched_rre = [r["searched_error"]["rre_geodesic_deg"] for r in runs]
    assert np.median(searched_rre) < np.median(prior_rre) - 2.0
    assert np.median(searched_rre) <= 0.45
    assert (np.median([r["searched_error"]["rte_m"] for r in runs])
            < np.median([r["prior_error"]["rte_m"] for r in runs]))


def test_refusal_or_calibration_is_reported_honestly(demo):
    runs, out, stdout = demo
    for run in runs:
        cam = run["camera"]
        assert run["exit_code"] in (0, 3)
        if run["exit_code"] == 3:
            assert run["reason"] and run["T_cam_lidar"] is None
            assert not (out / cam / "calib.yaml").exists()
            assert "refused (exit 3): " + run["refinement"]["reason"] in stdout
            if run["refinement"]["reason"].startswith("ambiguous"):   # the recording's other cameras: a rig
                assert "this recording has 5 other camera(s)" in run["console"]
                assert "--rig-camera refines them together with this one" in run["console"]
        else:                       # a written calibration is the search's result, and no worse than its prior
            assert run["calibration_error"] == pytest.approx(run["searched_error"])
            assert run["calibration_error"]["rre_geodesic_deg"] < run["prior_error"]["rre_geodesic_deg"]
        for name in ("report/report.md", "report/overlay_before.png", "report/overlay_after.png"):
            assert (out / cam / name).is_file(), f"{cam}/{name}"
        # a number the refinement did not compute is said in words, not printed as nan
        assert "nan" not in (out / cam / "report" / "report.md").read_text().lower()
    for name in ("camera_01_before_after.jpg", "errors.png", "report.md"):
        assert (out / name).is_file(), name


def test_the_rig_is_calibrated_as_one_better_than_its_prior_within_the_stated_figures(demo):
    _, out, stdout = demo
    rig = json.loads((out / "summary.json").read_text())["rig"]
    assert rig["exit_code"] == 0 and rig["stage"] == "refined", rig["reason"]
    assert [c["camera"] for c in rig["cameras"]] == [f"camera_0{k}" for k in (1, 5, 6, 7, 8, 9)]
    first = rig["cameras"][0]["calibration_error"]
    for cam in rig["cameras"]:
        err, prior = cam["calibration_error"], cam["prior_error"]
        assert err["rte_m"] < prior["rte_m"] and err["rre_geodesic_deg"] < prior["rre_geodesic_deg"]
        assert err["rte_m"] <= 0.08 and err["rre_geodesic_deg"] <= 0.2, (cam["camera"], err)
        assert err["rte_m"] == pytest.approx(first["rte_m"], abs=1e-6)          # one pose of the LiDAR
        assert err["rre_geodesic_deg"] == pytest.approx(first["rre_geodesic_deg"], abs=1e-6)
        name = "calib.yaml" if cam is rig["cameras"][0] else f"calib.{cam['camera']}_optical.yaml"
        assert (out / "rig" / name).is_file(), name
        urdf = (out / "rig" / name).with_suffix(".urdf")                        # every camera's URDF snippet
        assert f'<child link="{cam["camera"]}_optical"/>' in urdf.read_text(), urdf
    assert f"camera_01    0.200 m / 3.00 deg calibrated: {first['rte_m']:.3f} m" in stdout
    assert (out / "camera_01_rig_before_after.jpg").is_file()
    report = (out / "rig" / "report" / "report.md").read_text()
    assert "| rig camera /camera_05/image_raw (camera_05_optical) | 3 pairs in the window; " in report


def test_demo_script_has_help_and_refuses_bad_arguments_with_exit_2():
    """``bash scripts/demo.sh --help`` prints its usage (exit 0); an unknown argument or a SEED that
    is not a number is a usage error: one line, exit 2, nothing run."""
    script = REPO / "scripts" / "demo.sh"
    shown = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "bash scripts/demo.sh --sim [SEED] [FRAMES]" in shown.stdout
    for args in (["--bogus"], ["--sim", "abc"]):
        proc = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and proc.stderr.startswith("demo.sh: error: ") and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1
