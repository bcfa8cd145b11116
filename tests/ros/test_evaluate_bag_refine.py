"""crossi2p-evaluate-bag with the refinement stage: ``--prior YAML`` gates the per-frame estimates
and starts the refinement; ``refined_rte_m``, ``refined_rre_geodesic_deg``, ``frames_to_refine``
are always in the summary (null when the stage did not run or nothing was accepted)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.calib_io import save_calibration_yaml
from crossi2p.geometry import make_transform
from crossi2p.metrics import registration_error
from crossi2p_ros.evaluate_bag import main

from .conftest import write_simulated_bag
from .test_calibration_node import MODEL_CARD

REFINED_KEYS = ("refined_rte_m", "refined_rre_geodesic_deg", "frames_to_refine")
MODEL = ["--model", str(MODEL_CARD), "--execution-provider", "cpu"]


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    return write_simulated_bag(tmp_path_factory.mktemp("bag"), seed=21, frames=5)


def test_prior_runs_the_refinement_and_reports_its_error(drive, tmp_path):
    bag, sim = drive
    E = make_transform(Rotation.from_euler("xyz", [1.0, -1.5, 0.5], degrees=True), [0.06, -0.04, 0.08])
    prior = save_calibration_yaml(tmp_path / "prior.yaml", E @ sim.T_cam_lidar, sim.camera,
                                  prior_max_rotation_deg=5.0, prior_max_translation_m=0.3)
    report = tmp_path / "report"
    main([str(bag), *MODEL, "--json", str(tmp_path / "s.json"), "--report", str(report), "--prior", str(prior)])
    s = json.loads((tmp_path / "s.json").read_text())
    for key in REFINED_KEYS:
        assert key in s, key
    assert s["frames"] == 5 and s["refinement_runs"] >= 1  # due at the first pair: the prior is a start
    assert isinstance(s["rejected_outside_prior"], int) and isinstance(s["rejected_direction_of_travel"], int)
    # the prior's own error, what the refined figures are to beat
    e_prior = registration_error(E @ sim.T_cam_lidar, sim.T_cam_lidar)
    assert s["prior_rte_m"] == pytest.approx(e_prior.rte_m, abs=1e-6)
    assert s["prior_rre_geodesic_deg"] == pytest.approx(e_prior.rre_geodesic_deg, abs=1e-6)
    assert (report / "overlay_refine_before.png").is_file()
    if s["refinement_accepted_runs"]:
        assert s["frames_to_refine"] >= 1 and s["refinement_start"] in ("prior", "fused")
        err = registration_error(np.array(s["refined_T_cam_lidar"]), sim.T_cam_lidar)
        assert err.rte_m == pytest.approx(s["refined_rte_m"], abs=1e-5)
        assert s["estimate_kind"].startswith("refined")
        assert (report / "overlay_refine_after.png").is_file()
        assert (report / "errors.png").stat().st_size > 10000        # with the accepted runs drawn
    else:
        assert s["refined_rte_m"] is None and s["frames_to_refine"] is None and s["refinement_last_reason"]
    md = (report / "report.md").read_text()
    assert "refined_rte_m" in md and "overlay_refine_before.png" in md


def test_without_prior_or_convergence_the_refined_keys_are_null(drive, tmp_path):
    main([str(drive[0]), *MODEL, "--json", str(tmp_path / "s.json"), "--report", str(tmp_path / "r"),
          "--max-frames", "2"])
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["frames_to_converge"] is None and s["refinement_runs"] == 0
    for key in (*REFINED_KEYS, "prior_rte_m", "prior_rre_geodesic_deg"):
        assert key in s and s[key] is None, key


def test_prior_in_live_mode_or_missing_is_a_one_line_error(drive, tmp_path, capsys):
    assert main([str(drive[0]), *MODEL, "--report", str(tmp_path / "r"), "--mode", "live",
                 "--prior", str(tmp_path / "p.yaml")]) == 2                     # a usage error
    err = capsys.readouterr().err.strip()
    assert "offline mode only" in err and len(err.splitlines()) == 1
    assert main([str(drive[0]), *MODEL, "--report", str(tmp_path / "r"), "--prior", str(tmp_path / "p.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert "p.yaml" in err and len(err.splitlines()) == 1
