"""``crossi2p-evaluate --protocol refine``: the prior's error range is narrowed with
``--refine-max-deg / --refine-max-m`` and single frames are refined from their prior
(``refined_*_median`` keys); the keys are present with null under ``global``."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.metrics import registration_error
from crossi2p_training.evaluate import evaluate_source, main
from crossi2p_training.sim import SimConfig, simulate_drive

REFINED_KEYS = ("refined_rte_m_median", "refined_rre_geodesic_deg_median", "prior_rte_m_median",
                "prior_rre_geodesic_deg_median")


class PriorEcho:
    """An estimator that returns its prior (so the frame error is the prior's error)."""

    name = "prior-echo"

    def estimate(self, image, points, camera, T_prior=None):
        from crossi2p_training.evaluate import Estimate

        return Estimate(None if T_prior is None else T_prior.copy(), valid=T_prior is not None)


def test_refine_range_bounds_every_drawn_prior():
    samples = simulate_drive(SimConfig.preset("small"), 4, 3).paired_samples()
    results = evaluate_source(PriorEcho(), samples, "refine", seed=0, progress=False,
                              refine_max_deg=2.0, refine_max_m=0.1)
    assert len(results) == 3
    for r in results:
        E = r.T_prior @ np.linalg.inv(r.T_gt)               # prior = E @ T_gt (camera-frame error)
        assert np.abs(E[:3, 3]).max() <= 0.1                # uniform per axis in [-M, M]
        assert np.abs(Rotation.from_matrix(E[:3, :3]).as_euler("xyz", degrees=True)).max() <= 2.0 + 1e-9
        assert registration_error(r.estimate.T_cam_lidar, r.T_gt) == r.error  # the prior echoed is scored


def test_refine_protocol_writes_refined_medians_and_global_writes_nulls(tmp_path, tiny_checkpoint):
    out = tmp_path / "refine.json"
    assert main(["--model", str(tiny_checkpoint), "--sim-seed", "4", "--frames", "2", "--protocol", "refine",
                 "--refine-max-deg", "2", "--refine-max-m", "0.1", "--refine-frames", "1", "--json", str(out),
                 "--quiet", "--no-overlays"]) == 0
    s = json.loads(out.read_text())
    assert s["refine_max_deg"] == 2.0 and s["refine_max_m"] == 0.1 and s["refined_frames"] == 1
    for key in REFINED_KEYS:
        assert isinstance(s[key], float) and np.isfinite(s[key]), key
    # the refined estimate stays within the search box around a prior at most 2 deg / 0.1 m off
    assert s["refined_rre_geodesic_deg_median"] < 3 * 2.0 + 3 * 2.0
    # the baseline beside it: the prior, within 2 deg per axis (3.5 deg geodesic at most)
    assert s["prior_rre_geodesic_deg_median"] <= np.sqrt(3) * 2.0 + 1e-9
    if s["refine_accepted_fraction"] == 0.0:                  # refused: the prior kept, the same error
        assert s["refined_rre_geodesic_deg_median"] == pytest.approx(s["prior_rre_geodesic_deg_median"])
    rows = list(csv.DictReader(open(tmp_path / "refine_frames.csv")))
    assert sum(r["refined_rte_m"] != "" for r in rows) == 1

    glob = tmp_path / "global.json"
    assert main(["--model", str(tiny_checkpoint), "--sim-seed", "4", "--frames", "1", "--protocol", "global",
                 "--json", str(glob), "--quiet", "--no-overlays"]) == 0
    g = json.loads(glob.read_text())
    for key in REFINED_KEYS:
        assert key in g and g[key] is None, key


def test_refine_range_with_global_protocol_is_a_one_line_error(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "m.pt"), "--sim-seed", "4", "--protocol", "global",
                 "--refine-max-deg", "2", "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--protocol refine" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("bad", [["--refine-max-deg", "0"], ["--refine-max-m", "-1"]])
def test_bad_refine_range_is_a_one_line_error(tmp_path, capsys, bad):
    assert main(["--model", str(tmp_path / "m.pt"), "--sim-seed", "4", "--protocol", "refine", *bad,
                 "--json", str(tmp_path / "x.json")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
