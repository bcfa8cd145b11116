"""``crossi2p-calibrate`` on KITTI-layout folders with skewed sweeps: ``--deskew auto`` against ``off``.

Each folder's ``calib.yaml`` is the ground truth (read here only, to draw the priors and score the
results); every run gets a prior within ``--max-deg`` / ``--max-m`` per axis of it (bounds 8 deg /
0.5 m). Prints one row per run and a summary per mode; writes ``OUT/summary.json``. The drives of
docs/benchmarks.md section 8 ("Skewed sweeps"):

    for s in 900501 900502 900503; do
      .venv/bin/crossi2p-sim --seed $s --frames 80 --preset kitti_hdl64 --motion-during-sweep \\
          --kitti out/simks_$s/sequences/00
    done
    .venv/bin/python bench/bench_deskew_calibrate.py out/simks_90050{1,2,3}/sequences/00
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from crossi2p.calib_io import load_calibration_yaml, save_calibration_yaml
from crossi2p.geometry import make_transform
from crossi2p.metrics import registration_error

MODES = ("auto", "off")


def run(seq: Path, out: Path, prior: Path, mode: str) -> dict:
    """One ``crossi2p-calibrate`` run; its JSON scored against the folder's own calibration."""
    truth = load_calibration_yaml(seq / "calib.yaml")
    tag = f"{prior.stem}_{mode}"
    js = out / f"{tag}.json"
    rc = subprocess.call([str(Path(sys.executable).parent / "crossi2p-calibrate"), str(seq), "--out",
                          str(out / f"{tag}.yaml"), "--prior", str(prior), "--json", str(js), "--deskew", mode,
                          "--quiet"])
    d = json.loads(js.read_text())
    err = registration_error(np.array(d["T_cam_lidar"]), truth.T_cam_lidar) if d["T_cam_lidar"] else None
    refinement = d.get("refinement") or {}
    return {"folder": str(seq), "prior": prior.name, "deskew": mode, "rc": rc, "stage": d["stage"],
            "refinement_start": refinement.get("start"), "refinement_accepted": refinement.get("accepted"),
            "rte_m": err and err.rte_m, "rre_deg": err and err.rre_geodesic_deg,
            "sweeps_deskewed": d["deskew"]["sweeps_deskewed"], "wall_time_s": d["wall_time_s"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="KITTI-layout sequence folders with a calib.yaml")
    p.add_argument("--priors", type=int, default=2, help="priors per folder (default %(default)s)")
    p.add_argument("--max-deg", type=float, default=4.0, help="prior rotation error per axis (deg)")
    p.add_argument("--max-m", type=float, default=0.25, help="prior translation error per axis (m)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("out/deskew_cal"), help="folder for priors, runs and summary")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    rows = []
    for k, seq in enumerate(args.folders):
        truth = load_calibration_yaml(seq / "calib.yaml")
        for trial in range(args.priors):
            E = make_transform(Rotation.from_rotvec(np.radians(rng.uniform(-args.max_deg, args.max_deg, 3))),
                               rng.uniform(-args.max_m, args.max_m, 3))
            prior = save_calibration_yaml(args.out / f"prior_{k}_{trial}.yaml", E @ truth.T_cam_lidar, truth.camera,
                                          prior_max_rotation_deg=8.0, prior_max_translation_m=0.5)
            for mode in MODES:
                rows.append(run(seq, args.out, prior, mode))
                print(rows[-1], flush=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    for mode in MODES:
        r = [x for x in rows if x["deskew"] == mode]
        t = np.array([np.inf if x["rte_m"] is None else x["rte_m"] for x in r])
        a = np.array([np.inf if x["rre_deg"] is None else x["rre_deg"] for x in r])
        print(f"--deskew {mode}: median {np.median(t):.3f} m / {np.median(a):.3f} deg; within 2 cm / 0.1 deg "
              f"{int(((t <= 0.02) & (a <= 0.1)).sum())} of {len(r)}, within 5 cm / 0.3 deg "
              f"{int(((t <= 0.05) & (a <= 0.3)).sum())}; wall time median "
              f"{np.median([x['wall_time_s'] for x in r]):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
