"""Wrong-but-valid frames: how often the runtime calls a per-frame estimate valid that is wrong.

Runs the shipped network (``global`` protocol: no prior, the cloud moved by a seeded random yaw
and +-10 m) on every real sample folder of ``--real``, every frame of the real KITTI-layout
sequences of ``--real-sequence`` and, with ``--sim SEQ``, on simulated
frames with a hard photometric domain shift (exposure x0.4-1.8, noise sigma 12, blur sigma 1.5),
twice: with the runtime's training-free alignment check (``RuntimeConfig.alignment_check``) and
without it. Prints, per setting, the frames called valid and those of them off by more than
``--wrong-deg`` (the issue-13 target: none above 10 deg).

With ``--as-recorded`` the frames of each sequence (``--sim``, ``--real-sequence``) are the
consecutive frames of one drive, as the node gets them; two more settings then add the pipeline's
direction-of-travel check (``crossi2p.travel_check``, with the product's LiDAR odometry) to each
setting's verdicts (``...+travel_check``).

    .venv/bin/python bench/bench_validity.py --real ../shared/data/real --sim SEQ --trials 2 --json out/validity.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from crossi2p.datasets.kitti import read_kitti_sequence
from crossi2p.deskew import SweepDeskewer
from crossi2p.datasets.sample_folder import find_sample_folders, load_sample_folder
from crossi2p.geometry import transform_points
from crossi2p.metrics import registration_error, sample_global_perturbation
from crossi2p.runtime import CalibrationRuntime, RuntimeConfig
from crossi2p.travel_check import TravelCheck

REPO = Path(__file__).resolve().parents[1]


def domain_shift(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, sensor noise and blur the simulator's training images never had."""
    img = image.astype(np.float64) * rng.uniform(0.4, 1.8) + rng.normal(0, 12, image.shape)
    return cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (0, 0), 1.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", type=Path, help="folder of real sample folders (../shared/data/real)")
    p.add_argument("--sim", type=Path, help="a simulated KITTI-layout sequence (crossi2p-sim --kitti)")
    p.add_argument("--real-sequence", type=Path, nargs="+", default=[], metavar="SEQ",
                   help="real KITTI-layout sequences (every frame, no domain shift: the sensors are foreign already)")
    p.add_argument("--model", type=Path, default=REPO / "models" / "crossi2p_cpu.yaml")
    p.add_argument("--trials", type=int, default=2, help="global-protocol draws per frame")
    p.add_argument("--as-recorded", action="store_true",
                   help="no global-protocol perturbation: each frame as the node gets it (one draw; the lever-arm "
                        "bound on, as in the product); default: the global protocol with that bound off")
    p.add_argument("--wrong-deg", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a RuntimeConfig field of the runtime with the check (repeatable), "
                        "e.g. --set alignment_offset_deg=6")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    # the global protocol moves the cloud up to 10 m along two axes: the runtime's bound on the
    # sensors' distance (a physical rig's) does not hold there
    config = RuntimeConfig() if args.as_recorded else RuntimeConfig(max_lever_arm_m=0.0)
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(config, key):
            print(f"bench_validity: --set {item}: RuntimeConfig has no field {key!r}", file=sys.stderr)
            return 1
        config = dataclasses.replace(config, **{key: type(getattr(config, key))(value)})
    frames = []
    if args.real:
        frames += [("real", f.name, load_sample_folder(f)) for f in find_sample_folders(args.real)]
    if args.sim:
        seq = read_kitti_sequence(args.sim)
        frames += [("sim_shifted", f"{args.sim.name}:{i}", seq[i]) for i in range(len(seq))]
    for path in args.real_sequence:
        seq = read_kitti_sequence(path)
        frames += [("real_sequence", f"{path}:{i}", seq[i]) for i in range(len(seq))]
    if not frames:
        print("bench_validity: give --real, --sim and/or --real-sequence", file=sys.stderr)
        return 1
    runtimes = {"with_alignment_check": CalibrationRuntime(args.model, config),
                "without": CalibrationRuntime(args.model, dataclasses.replace(config, alignment_check=False))}
    rng = np.random.default_rng(args.seed)
    rows = []
    travel: dict[str, tuple[SweepDeskewer, TravelCheck]] = {}   # per sequence, with --as-recorded
    for kind, name, s in tqdm(frames, desc="frames", unit="frame"):
        for trial in range(1 if args.as_recorded else args.trials):
            T_pert = np.eye(4) if args.as_recorded else sample_global_perturbation(rng, s.T_cam_lidar).T_pert
            pts = s.points.copy()
            pts[:, :3] = transform_points(T_pert, pts[:, :3])
            T_gt = s.T_cam_lidar @ np.linalg.inv(T_pert)
            img = domain_shift(s.image, rng) if kind == "sim_shifted" else s.image
            for setting, rt in runtimes.items():
                est = rt.estimate(img, pts, s.camera)
                err = registration_error(est.T_cam_lidar, T_gt) if est.T_cam_lidar is not None else None
                row = {"kind": kind, "frame": name, "trial": trial, "setting": setting, "valid": est.valid,
                       "reason": est.reason, "rre_geodesic_deg": err.rre_geodesic_deg if err else None,
                       "rte_m": err.rte_m if err else None, "alignment_margin": est.alignment_margin}
                rows.append(row)
                if args.as_recorded and kind != "real":
                    sequence, index = name.rsplit(":", 1)
                    odometry, check = travel.setdefault(f"{sequence}/{setting}",
                                                        (SweepDeskewer(track_motion=True), TravelCheck()))
                    odometry(0.1 * int(index), pts)
                    verdict = check.check(0.1 * int(index), img, s.camera, odometry.last_pose[1],
                                          odometry.odometry_run, est.T_cam_lidar if est.valid else None)
                    rows.append({**row, "setting": f"{setting}+travel_check",
                                 "valid": est.valid and verdict.passed, "travel_angle_deg": verdict.angle_deg,
                                 "reason": est.reason or ("" if verdict.passed else verdict.reason)})
    summary = {}
    for kind in sorted({r["kind"] for r in rows}):
        for setting in [*runtimes, *(f"{r}+travel_check" for r in runtimes)]:
            rs = [r for r in rows if r["kind"] == kind and r["setting"] == setting]
            if not rs:
                continue
            valid = [r for r in rs if r["valid"]]
            wrong = [r for r in valid if r["rre_geodesic_deg"] is not None and r["rre_geodesic_deg"] > args.wrong_deg]
            right = [r for r in rs if r["rre_geodesic_deg"] is not None and r["rre_geodesic_deg"] <= args.wrong_deg]
            summary[f"{kind}/{setting}"] = {"frames": len(rs), "valid": len(valid), "wrong_but_valid": len(wrong),
                                            "right": len(right), "right_and_valid": sum(r["valid"] for r in right),
                                            "wrong_but_valid_frames": [f"{r['frame']} ({r['rre_geodesic_deg']:.0f} deg, "
                                                                       f"{r['rte_m']:.1f} m)" for r in wrong]}
    for k, v in summary.items():
        print(f"{k:<36} {v}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "rows": rows, "wrong_deg": args.wrong_deg}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
