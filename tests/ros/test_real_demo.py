"""The README's main job on real sensors: scripts/real_demo.py (crossi2p-calibrate from a prior) on
the committed TRI DGP recording data/real/tri_dgp_scene_02 (no shared data needed).

Tolerances, and why (docs/benchmarks.md section 8, "The real recording demo"): the committed prior
is the rig calibration moved by 3 deg / 0.2 m (0.241 m RTE for camera_01). Today the refinement's
search brings camera_01 to 1.61 deg / 0.168 m and refuses the result ("ambiguous"). The test pins
that rotation improves on the prior by at least 1 deg and stays <= 2.0 deg, that translation is
below the prior's (it was not before the 1 px blur level: 0.31 m), and that a refusal comes with
its reason and no calibration file.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECORDING = REPO / "data" / "real" / "tri_dgp_scene_02"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("demo_real")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "real_demo.py"), "--cameras", "camera_01",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "summary.json").read_text())["runs"][0], out, proc.stdout


def test_committed_recording_is_present_and_small():
    files = [p for p in (RECORDING / "bag").iterdir() if p.is_file()]
    assert {p.suffix for p in files} == {".mcap", ".yaml"}
    assert sum(p.stat().st_size for p in files) < 10e6
    assert len(list(RECORDING.glob("prior_camera_*.yaml"))) == 6


def test_demo_uses_every_sweep_and_states_the_prior_offset(demo):
    run, _, stdout = demo
    assert run["pairs"] == 3  # all three sweeps, the last one paired at the end of the recording
    assert run["prior_error"]["rre_geodesic_deg"] == pytest.approx(3.0, abs=1e-6)
    assert run["prior_error"]["rte_m"] == pytest.approx(0.241, abs=0.002)
    assert "moved by 3.0 deg and 0.2 m" in stdout


def test_the_search_beats_the_prior_in_rotation_and_translation(demo):
    run, _, _ = demo
    prior, searched = run["prior_error"], run["searched_error"]
    assert searched is not None, "crossi2p-calibrate --json must carry T_searched, accepted or not"
    assert searched["rre_geodesic_deg"] < prior["rre_geodesic_deg"] - 1.0
    assert searched["rre_geodesic_deg"] <= 2.0
    assert searched["rte_m"] < prior["rte_m"]


def test_refusal_or_calibration_is_reported_honestly(demo):
    run, out, stdout = demo
    assert run["exit_code"] in (0, 3)
    if run["exit_code"] == 3:
        assert run["reason"] and run["T_cam_lidar"] is None
        assert not (out / "camera_01" / "calib.yaml").exists()
        assert "refused (exit 3): " + run["refinement"]["reason"] in stdout
    else:
        assert run["calibration_error"] == pytest.approx(run["searched_error"])
    for name in ("camera_01_before_after.jpg", "errors.png", "report.md", "camera_01/report/report.md",
                 "camera_01/report/overlay_before.png", "camera_01/report/overlay_after.png"):
        assert (out / name).is_file(), name
    # a number the refinement did not compute is said in words, not printed as nan
    assert "nan" not in (out / "camera_01" / "report" / "report.md").read_text().lower()
