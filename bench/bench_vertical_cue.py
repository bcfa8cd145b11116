"""A roll / pitch cue independent of appearance matching: does the image's vertical vanishing
direction agree with the LiDAR's vertical under the TRUE ``T_cam_lidar``? (prints figures).

One camera alone leaves a roll about its optical axis open on real data (docs/benchmarks.md
section 8). Man-made scenes carry a cue for exactly that rotation: vertical structures (walls,
poles) are parallel to gravity, so in the image their line segments meet at the vertical vanishing
point, whose direction in the camera frame is "up"; the LiDAR sees the same up as the ground
plane's normal, or as the direction perpendicular to the normals of vertical planes (facades).
If the two agree to a fraction of a degree at the truth, the cue could settle the roll rivals.

Per sample folder: near-vertical LSD segments (``cv2.createLineSegmentDetector``; those within
8 deg of the vertical the truth predicts) give the image's up as the direction closest to
perpendicular to all their interpretation planes (robust least squares, Cauchy weights); the
LiDAR's up is the RANSAC ground plane's normal, and, separately, the direction most nearly
perpendicular to the normals of near-vertical planar patches. Printed: the angle between the
image's up and each LiDAR up moved into the camera by the truth, split into roll (about the
camera's z) and pitch (about its x).

    .venv/bin/python bench/bench_vertical_cue.py ../shared/data/real

The real samples are a development set: never tune thresholds on one of them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

from crossi2p.datasets.sample_folder import find_sample_folders, load_sample_folder
from crossi2p.preprocess import undistort_to_pinhole


def _robust_null_direction(normals: np.ndarray, weights: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Unit (3,) direction d minimising sum w (n . d)^2 with Cauchy re-weighting, sign of ``start``."""
    d = start / np.linalg.norm(start)
    for _ in range(10):
        r = normals @ d
        s = 1.4826 * np.median(np.abs(r)) + 1e-6
        w = weights / (1.0 + (r / (2.0 * s)) ** 2)
        _, vecs = np.linalg.eigh((normals * w[:, None]).T @ normals)
        d = vecs[:, 0] * np.sign(vecs[:, 0] @ d)
    return d


def image_up(rgb: np.ndarray, K: np.ndarray, up_guess: np.ndarray, min_len_px: float = 25.0,
             max_dev_deg: float = 8.0) -> tuple[np.ndarray | None, int]:
    """Up in the camera frame from the vertical vanishing point of near-vertical segments, and
    how many segments it used (None below 5)."""
    found = cv2.createLineSegmentDetector().detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))[0]
    if found is None:
        return None, 0
    seg = found.reshape(-1, 4)
    Ki = np.linalg.inv(K)
    a = np.c_[seg[:, :2], np.ones(len(seg))] @ Ki.T
    b = np.c_[seg[:, 2:], np.ones(len(seg))] @ Ki.T
    n = np.cross(a, b)
    n /= np.linalg.norm(n, axis=1, keepdims=True)              # each segment's interpretation plane
    length = np.linalg.norm(seg[:, 2:] - seg[:, :2], axis=1)
    keep = (length >= min_len_px) & (np.abs(n @ up_guess) < np.sin(np.radians(max_dev_deg)))
    if keep.sum() < 5:
        return None, int(keep.sum())
    return _robust_null_direction(n[keep], length[keep], up_guess), int(keep.sum())


def lidar_up(points: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(ground normal, up from facade normals, facade normals used), LiDAR frame."""
    P = points[:, :3]
    r = np.linalg.norm(P, axis=1)
    P = P[(r > 2.0) & (r < 40.0)]
    low = P[P[:, 2] < np.percentile(P[:, 2], 30)]
    rng = np.random.default_rng(seed)
    best, inliers = 0, None
    for _ in range(300):                                       # RANSAC ground plane, 5 cm
        p, q, s = low[rng.choice(len(low), 3, replace=False)]
        nrm = np.cross(q - p, s - p)
        if np.linalg.norm(nrm) < 1e-6 or abs(nrm[2]) < 0.9 * np.linalg.norm(nrm):
            continue
        nrm /= np.linalg.norm(nrm)
        inl = np.abs((low - p) @ nrm) < 0.05
        if inl.sum() > best:
            best, inliers = int(inl.sum()), inl
    ground = low[inliers]
    centre = ground.mean(axis=0)
    g = np.linalg.svd(ground - centre, full_matrices=False)[2][2]
    g *= np.sign(g[2])
    above = P[np.abs((P - centre) @ g) > 0.3]
    _, idx = cKDTree(above).query(above, 12)
    nb = above[idx] - above[idx].mean(axis=1, keepdims=True)
    vals, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))
    normals = vecs[:, :, 0]
    facade = (vals[:, 0] < 0.05 * vals[:, 1]) & (np.abs(normals @ g) < np.sin(np.radians(15.0)))
    return g, _robust_null_direction(normals[facade], np.ones(int(facade.sum())), g), int(facade.sum())


def roll_pitch_deg(d: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """The rotation from ``ref`` to ``d`` (both up directions in the camera optical frame: up is
    about -y) about the camera's z (roll) and x (pitch), degrees in [-180, 180)."""
    d = d * np.sign(d @ ref)
    wrap = lambda a: (a + 180.0) % 360.0 - 180.0                       # noqa: E731
    roll = np.degrees(np.arctan2(d[0], -d[1]) - np.arctan2(ref[0], -ref[1]))
    pitch = np.degrees(np.arctan2(d[2], -d[1]) - np.arctan2(ref[2], -ref[1]))
    return float(wrap(roll)), float(wrap(pitch))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("real", type=Path, help="folder of real sample folders (../shared/data/real)")
    args = p.parse_args(argv)
    folders = find_sample_folders(args.real)
    if not folders:
        print(f"bench_vertical_cue: {args.real}: no sample folder found", file=sys.stderr)
        return 1
    rows = []
    for folder in folders:
        s = load_sample_folder(folder)
        rgb, pin = undistort_to_pinhole(s.image, s.camera)
        R = s.T_cam_lidar[:3, :3]
        g, u, n_facade = lidar_up(s.points)
        d, n_lines = image_up(rgb, pin.K, -(R @ g))
        name = str(folder.relative_to(args.real))
        if d is None:
            print(f"{name:32s} {n_lines} near-vertical segments: no estimate")
            continue
        rg, ru = roll_pitch_deg(d, -(R @ g)), roll_pitch_deg(d, -(R @ u))
        rows.append((abs(rg[0]), abs(ru[0])))
        print(f"{name:32s} segments {n_lines:4d} | image up vs ground normal: roll {rg[0]:+.2f}, pitch {rg[1]:+.2f} deg"
              f" | vs facades' up ({n_facade} normals): roll {ru[0]:+.2f}, pitch {ru[1]:+.2f} deg")
    if rows:
        a = np.array(rows)
        print(f"median |roll| at the truth: {np.median(a[:, 0]):.2f} deg (ground normal), "
              f"{np.median(a[:, 1]):.2f} deg (facades); {len(rows)} samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
