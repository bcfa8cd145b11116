"""Which frames of a drive the refinement window's keyframe rule keeps, and its time per pair
(``crossi2p_ros.pipeline.KeyframeSelector``; prints the frames kept and the time; docs/benchmarks.md
section 8, "Keyframes").

    .venv/bin/python bench/bench_keyframes.py KITTI_SEQUENCE_FOLDER [--parallax-px 2] [--rate-hz 10]
    .venv/bin/python bench/bench_keyframes.py --sim small --seeds 7 900101 --frames 12

Frames are stamped ``k / rate_hz`` (a KITTI Odometry folder's own stamps are not used, as
``bench_refinement.py --keyframes`` does). Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from crossi2p.datasets.kitti import read_kitti_sequence
from crossi2p_ros.pipeline import KeyframeSelector, RefinementScheduleConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("kitti", type=Path, nargs="?", help="a KITTI Odometry layout sequence folder")
    p.add_argument("--sim", help="a crossi2p-sim preset instead (with --seeds, --frames)")
    p.add_argument("--seeds", type=int, nargs="+", default=[7], help="simulated drives' seeds (with --sim)")
    p.add_argument("--frames", type=int, default=12, help="frames per simulated drive (with --sim)")
    p.add_argument("--parallax-px", type=float, default=RefinementScheduleConfig.keyframe_parallax_px)
    p.add_argument("--max-gap-s", type=float, default=RefinementScheduleConfig.keyframe_max_gap_s)
    p.add_argument("--rate-hz", type=float, default=10.0, help="frame rate the stamps assume")
    args = p.parse_args(argv)
    if not args.parallax_px >= 0 or not args.max_gap_s >= 0:
        p.error(f"--parallax-px and --max-gap-s: expected >= 0, got {args.parallax_px} and {args.max_gap_s}")
    if args.kitti is not None:
        try:
            seq = read_kitti_sequence(args.kitti, require_extrinsic=False)
        except (OSError, ValueError) as exc:
            print(f"bench_keyframes: {exc}", file=sys.stderr)
            return 1
        drives = [(args.kitti.name, [seq[i].image for i in range(len(seq))])]
    elif args.sim:
        from crossi2p_training.sim import SimConfig, simulate_drive
        drives = [(f"{args.sim} seed {s}", [x.image for x in simulate_drive(SimConfig.preset(args.sim), seed=s,
                                                                             frames=args.frames).paired_samples()])
                  for s in args.seeds]
    else:
        print("bench_keyframes: give a KITTI sequence folder or --sim PRESET", file=sys.stderr)
        return 1
    for name, images in drives:
        keep = KeyframeSelector(args.parallax_px, args.max_gap_s)
        kept, times = [], []
        for k, image in enumerate(images):
            t = time.perf_counter()
            if keep(k / args.rate_hz, image):
                kept.append(k)
            times.append(time.perf_counter() - t)
        print(f"{name}: {len(kept)} of {len(images)} frames are keyframes ({args.parallax_px:g} px, "
              f"{images[0].shape[1]} px wide): {kept}")
        print(f"  time per pair: median {1e3 * np.median(times[1:]):.1f} ms, max {1e3 * max(times[1:]):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
