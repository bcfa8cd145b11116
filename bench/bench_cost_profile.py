"""How each term of the refinement objective rises around the truth on a KITTI-layout sequence
(prints figures): the objective at the ground truth and its rise (x 1e-3) at rotations of 0.5, 1
and 2 deg about each camera axis and translations of 5, 10 and 20 cm along each (the lower of the
two signs), for the default objective, the NID alone, the segment term alone and the single-band
NID. A term that hardly rises along an axis does not observe it on these frames.

    .venv/bin/python bench/bench_cost_profile.py --sim SEQ --deskew --frames 0 8 16 24 32 40 48 56 64 72

The frames are prepared at the ground truth (their point sets and segments are the truth's).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from bench_refinement import deskewed
from crossi2p.datasets.kitti import read_kitti_sequence
from crossi2p.deskew import DeskewConfig
from crossi2p.geometry import make_transform
from crossi2p.refinement import RefinementConfig, prepare_frame, refinement_cost


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sim", type=Path, required=True, help="a KITTI-layout sequence folder (real or simulated)")
    p.add_argument("--frames", type=int, nargs="+", default=[0], help="frame indices (default 0)")
    p.add_argument("--deskew", action="store_true", help="de-skew the sweeps first (azimuth, KISS-ICP)")
    args = p.parse_args(argv)
    seq = read_kitti_sequence(args.sim)
    if max(args.frames) >= len(seq) or min(args.frames) < 0:
        print(f"bench_cost_profile: --frames: {args.sim} has frames 0 to {len(seq) - 1}", file=sys.stderr)
        return 1
    samples = [seq[i] for i in range(len(seq))] if args.deskew else None
    samples = deskewed(samples, DeskewConfig(mode="azimuth")) if args.deskew else None
    chosen = [samples[i] if samples else seq[i] for i in args.frames]
    T_gt = chosen[0].T_cam_lidar
    cfg = RefinementConfig()
    frames = [prepare_frame(s.image, s.points, s.camera, T_gt, cfg) for s in chosen]
    variants = {"default": cfg,
                "nid_only": dataclasses.replace(cfg, segment_weight=0.0),
                "segment_only": dataclasses.replace(cfg, nid_weight=0.0, segment_weight=1.0),
                "nid_one_band": dataclasses.replace(cfg, segment_weight=0.0, nid_depth_bands=1)}

    def rise(c: RefinementConfig, c0: float, rotvec_deg=(0, 0, 0), t=(0, 0, 0)) -> float:
        both = [refinement_cost(frames, make_transform(Rotation.from_rotvec(np.radians(np.multiply(rotvec_deg, s))),
                                                       np.multiply(t, s)) @ T_gt, -1, c) for s in (1.0, -1.0)]
        return (min(both) - c0) * 1e3

    for name, c in variants.items():
        c0 = refinement_cost(frames, T_gt, -1, c)
        cells = [f"{name:<13} at truth {c0:.4f}"]
        for ax in range(3):
            cells += [f"r{'xyz'[ax]} {d}: {rise(c, c0, rotvec_deg=np.eye(3)[ax] * d):+.1f}" for d in (0.5, 1.0, 2.0)]
        for ax in range(3):
            cells += [f"t{'xyz'[ax]} {d}: {rise(c, c0, t=np.eye(3)[ax] * d):+.1f}" for d in (0.05, 0.1, 0.2)]
        print("  ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
