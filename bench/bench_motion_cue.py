"""Would a motion cue pin the rotation the appearance objective leaves ambiguous? (prints a profile)

Motion-based calibration (Taylor & Nieto, "Motion-based calibration of multimodal sensor
extrinsics and timing offset estimation", IEEE T-RO 2016; Ishikawa et al., IROS 2018): the LiDAR's
ego motion between two sweeps, moved into the camera by a candidate ``T_cam_lidar``
(``T_cam(k+s)_cam(k) = T_cam_lidar @ T_lidar(k+s)_lidar(k) @ inv(T_cam_lidar)``), predicts the
epipolar geometry of the two images. Its cost here: the mean robust (Cauchy, 1 px) Sampson
distance, in pixels, of image features tracked from frame k to k+s (OpenCV: Shi-Tomasi corners,
pyramidal Lucas-Kanade, forward-backward check), over every pair of the sequence; the LiDAR's
motion from the product's own odometry (``crossi2p.deskew.SweepDeskewer``: KISS-ICP), so no ground
truth enters the cue. Printed: the cost's rise when the ground truth is rotated about each camera
axis or shifted along it, and where the cost's minimum over the rotation lies (Nelder-Mead from the
truth, translation fixed at the truth's) — a cue worth adding would have its minimum within about
0.1 deg of the truth on the axes it observes.

    .venv/bin/python bench/bench_motion_cue.py KITTI_SEQUENCE_FOLDER --step 10

(Not a product component: docs/benchmarks.md section 8, "A motion cue", says what it measured.)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from crossi2p.datasets.kitti import read_kitti_sequence
from crossi2p.deskew import DeskewConfig, SweepDeskewer
from crossi2p.geometry import invert_transform, make_transform, skew


def tracks(a: np.ndarray, b: np.ndarray, K: np.ndarray, max_corners: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates (N, 3) of corners of grey image ``a`` and where they are in
    ``b`` (Lucas-Kanade, kept when tracking back lands within 0.5 px of the start)."""
    p0 = cv2.goodFeaturesToTrack(a, max_corners, 0.01, 7)
    p1, ok1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, winSize=(21, 21), maxLevel=4)
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, winSize=(21, 21), maxLevel=4)
    ok = (ok1[:, 0] == 1) & (ok2[:, 0] == 1) & (np.linalg.norm(back - p0, axis=2)[:, 0] < 0.5)
    Ki = np.linalg.inv(K)
    homogeneous = lambda p: np.c_[p[ok, 0], np.ones(int(ok.sum()))] @ Ki.T  # noqa: E731
    return homogeneous(p0), homogeneous(p1)


def sampson_cost(T_cam_lidar: np.ndarray, pairs: list, f_px: float) -> float:
    """Mean over ``pairs`` ``(x0, x1, T_lidar1_lidar0)`` of the mean Cauchy-robust (1 px) squared
    Sampson distance (px^2) of the tracks under the motion ``T_cam_lidar`` predicts."""
    Ti = invert_transform(T_cam_lidar)
    costs = []
    for x0, x1, T_l in pairs:
        T_c = T_cam_lidar @ T_l @ Ti
        E = skew(T_c[:3, 3] / max(np.linalg.norm(T_c[:3, 3]), 1e-12)) @ T_c[:3, :3]
        Ex0, Etx1 = x0 @ E.T, x1 @ E
        r2 = np.einsum("ij,ij->i", x1, Ex0) ** 2 / np.maximum(
            Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2 + Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2, 1e-18) * f_px**2
        costs.append(float(np.mean(np.log1p(r2))))
    return float(np.mean(costs))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sequence", type=Path, help="KITTI odometry-layout folder (raw sweeps, ground truth in calib.txt)")
    p.add_argument("--step", type=int, default=10, help="frames between the two images of a pair")
    p.add_argument("--max-corners", type=int, default=2000)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    try:
        seq = read_kitti_sequence(args.sequence)
        samples = [seq[k] for k in range(len(seq))]
    except (OSError, ValueError, KeyError) as exc:
        print(f"bench_motion_cue: {args.sequence}: {exc}", file=sys.stderr)
        return 1
    T_gt, K = samples[0].T_cam_lidar, samples[0].camera.K
    odometry, poses = SweepDeskewer(DeskewConfig(mode="azimuth")), []
    for s in tqdm(samples, desc="odometry", unit="sweep"):
        odometry(s.lidar_stamp_s if s.lidar_stamp_s is not None else s.stamp_s, s.points)
        poses.append(odometry.last_pose[1] if odometry.last_pose else None)
    gray = [cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY) for s in samples]
    pairs = []
    for k in tqdm(range(len(samples) - args.step), desc="tracks", unit="pair"):
        if poses[k] is None or poses[k + args.step] is None:
            continue
        x0, x1 = tracks(gray[k], gray[k + args.step], K, args.max_corners)
        pairs.append((x0, x1, invert_transform(poses[k + args.step]) @ poses[k]))
    if not pairs:
        print("bench_motion_cue: no pair with odometry on both sweeps", file=sys.stderr)
        return 1
    f_px = float(K[0, 0])
    motion = np.median([np.linalg.norm(T[:3, 3]) for _, _, T in pairs])
    print(f"{len(pairs)} pairs {args.step} frames apart, median LiDAR motion {motion:.2f} m, "
          f"median {int(np.median([len(x) for x, _, _ in pairs]))} tracks")
    c0 = sampson_cost(T_gt, pairs, f_px)

    def rotated(rotvec_deg) -> np.ndarray:        # about the camera centre, translation kept
        T = make_transform(Rotation.from_rotvec(np.radians(rotvec_deg)), np.zeros(3)) @ T_gt
        T[:3, 3] = T_gt[:3, 3]
        return T

    out = {"pairs": len(pairs), "motion_m_median": float(motion), "cost_at_truth": c0, "rotation": {}, "translation": {}}
    degs, metres = (-1.0, -0.5, -0.2, 0.2, 0.5, 1.0), (-0.2, -0.1, 0.1, 0.2)
    print("cost rise at " + ", ".join(f"{d:+g}" for d in degs) + " deg about camera x, y, z:")
    for axis in range(3):
        rises = [sampson_cost(rotated(np.eye(3)[axis] * d), pairs, f_px) - c0 for d in degs]
        out["rotation"]["xyz"[axis]] = rises
        print(f"  {'xyz'[axis]}: " + " ".join(f"{r:+.4f}" for r in rises))
    print("cost rise at " + ", ".join(f"{m:+g}" for m in metres) + " m along camera x, y, z:")
    for axis in range(3):
        rises = []
        for m in metres:
            T = T_gt.copy()
            T[axis, 3] += m
            rises.append(sampson_cost(T, pairs, f_px) - c0)
        out["translation"]["xyz"[axis]] = rises
        print(f"  {'xyz'[axis]}: " + " ".join(f"{r:+.4f}" for r in rises))
    res = minimize(lambda r: sampson_cost(rotated(r), pairs, f_px), np.zeros(3), method="Nelder-Mead",
                   options={"initial_simplex": np.vstack([np.zeros(3), np.eye(3) * 0.2]), "xatol": 1e-3,
                            "fatol": 1e-7})
    out["rotation_minimum_deg"] = res.x.tolist()
    print(f"the cost's minimum over the rotation (from the truth): {np.round(res.x, 3).tolist()} deg about camera "
          f"x, y, z (cost {res.fun:.4f} vs {c0:.4f} at the truth)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
