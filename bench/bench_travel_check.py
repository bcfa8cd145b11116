"""Direction-of-travel check (crossi2p.travel_check) on a drive: its angle for the ground truth, for
the truth turned 180 deg about the camera's vertical (the yaw flip), and for the truth turned
``--turn-deg`` about it; how many frames each refuses, and the check's time per frame (prints a
table; docs/benchmarks.md section 9, "A direction-of-travel check").

    .venv/bin/python bench/bench_travel_check.py --sim small --seeds 7 21 3 11 5 9 --frames 20
    .venv/bin/python bench/bench_travel_check.py --kitti KITTI_SEQUENCE_FOLDER

The odometry is the product's (``SweepDeskewer(track_motion=True)``: KISS-ICP), so no ground truth
enters the check; only the candidates are built from it. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from crossi2p.deskew import SweepDeskewer
from crossi2p.geometry import make_transform
from crossi2p.travel_check import TravelCheck, TravelCheckConfig


def drives(args):
    """``(name, samples)`` per drive: samples with ``image``, ``camera``, ``points``, ``T_cam_lidar``,
    ``lidar_stamp_s``."""
    if args.kitti:
        from crossi2p.datasets.kitti import read_kitti_sequence
        seq = read_kitti_sequence(args.kitti)
        samples = [seq[k] for k in range(len(seq))]
        yield args.kitti.name, [(0.1 * k, s) for k, s in enumerate(samples)]
        return
    from crossi2p_training.sim import SimConfig, simulate_drive
    for seed in args.seeds:
        drive = simulate_drive(SimConfig.preset(args.sim), seed=seed, frames=args.frames)
        yield f"sim {args.sim} seed {seed}", [(s.lidar_stamp_s, s) for s in drive.paired_samples()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sim", help="simulator preset (small, kitti_hdl64, ...)")
    src.add_argument("--kitti", type=Path, help="KITTI odometry-layout folder (ground truth in calib.txt)")
    p.add_argument("--seeds", type=int, nargs="+", default=[7, 21, 3, 11, 5, 9])
    p.add_argument("--frames", type=int, default=20, help="sweeps per simulated drive")
    p.add_argument("--turn-deg", type=float, default=20.0, help="the third candidate's turn about camera y")
    args = p.parse_args(argv)
    candidates = {"truth": np.eye(4),
                  "yaw flip (180 deg)": make_transform(Rotation.from_euler("y", 180, degrees=True), np.zeros(3)),
                  f"turned {args.turn_deg:g} deg": make_transform(Rotation.from_euler("y", args.turn_deg, degrees=True),
                                                                  np.zeros(3))}
    rows = {name: ([], 0, 0) for name in candidates}
    times = []
    try:
        for drive_name, samples in drives(args):
            for name, E in candidates.items():
                odometry, check = SweepDeskewer(track_motion=True), TravelCheck(TravelCheckConfig())
                angles, refused, frames = rows[name]
                for stamp, s in samples:
                    odometry(stamp, s.points)
                    _, T_odom_lidar = odometry.last_pose
                    t0 = time.perf_counter()
                    r = check.check(stamp, s.image, s.camera, T_odom_lidar, odometry.odometry_run, E @ s.T_cam_lidar)
                    times.append(time.perf_counter() - t0)
                    angles += [r.angle_deg] if r.angle_deg is not None else []
                rows[name] = (angles, refused + check.refused, frames + len(samples))
            print(f"{drive_name}: done", file=sys.stderr)
    except (OSError, ValueError, KeyError) as exc:
        print(f"bench_travel_check: {exc}", file=sys.stderr)
        return 1
    print(f"| candidate | frames | checked | angle min / median / max (deg) | refused (> {TravelCheckConfig().max_angle_deg:g} deg) |")
    print("|---|---|---|---|---|")
    for name, (angles, refused, frames) in rows.items():
        a = np.array(angles)
        span = f"{a.min():.0f} / {np.median(a):.0f} / {a.max():.0f}" if len(a) else "-"
        print(f"| {name} | {frames} | {len(a)} | {span} | {refused} |")
    print(f"check time per frame (tracking + solver, odometry excluded): median {1e3 * np.median(times):.1f} ms, "
          f"max {1e3 * np.max(times):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
