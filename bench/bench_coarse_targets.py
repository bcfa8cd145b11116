"""How many superpoints get a ground-truth superpixel, per model preset and ``coarse_target``?

    .venv/bin/python bench/bench_coarse_targets.py --kitti out/simk3/sequences/00 [--frames 3]

For each model preset (``cpu``, ``paper``, untrained weights: the targets depend on the geometry
only, not on what the network learned) and each ``LossConfig.coarse_target``, runs the network on
``--frames`` frames of a KITTI-layout sequence (``global`` protocol, seed 0) and prints the
in-view superpoints, those with a ground-truth superpixel (``crossi2p_training.losses
.build_targets``), and the quantiles of the best cell's share of a superpoint's members (the
``overlap`` criterion keeps a superpoint when that share is >= ``coarse_min_overlap``, 0.3).
Numbers, not assertions. A sequence can be made with ``crossi2p-sim --preset kitti_hdl64
--frames 20 --kitti DIR``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from crossi2p.preprocess import PreprocessConfig
from crossi2p_training.data import CalibrationDataset, KittiSource, collate_items
from crossi2p_training.losses import LossConfig, ModelGeometry, build_targets
from crossi2p_training.model.crossi2p_net import CrossI2PNet, ModelConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kitti", type=Path, required=True, help="a KITTI-layout sequence folder")
    p.add_argument("--frames", type=int, default=3, help="frames to average over (default 3)")
    args = p.parse_args(argv)
    if not args.kitti.is_dir():
        print(f"bench_coarse_targets: --kitti {args.kitti}: not a folder", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    for preset in ("cpu", "paper"):
        net = CrossI2PNet(getattr(ModelConfig, preset)()).eval()
        data = CalibrationDataset(KittiSource([args.kitti]), getattr(PreprocessConfig, preset)(), "global", 0)
        for target in ("overlap", "centre"):
            in_view, with_gt, shares = 0, 0, []
            for i in range(min(args.frames, len(data))):
                b = collate_items([data[i]])
                with torch.no_grad():
                    out = net(b["image"], b["points"], b["K"])
                    tg = build_targets(b["points"], b["T_cam_lidar"], b["K"], tuple(b["image"].shape[-2:]), out,
                                       ModelGeometry.from_net(net), LossConfig.coarse_min_overlap, target)
                in_view += int(tg.superpoint_inview.sum())
                with_gt += int((tg.superpoint_cell >= 0).sum())
                shares += tg.superpoint_overlap.max(2).values[tg.superpoint_inview].tolist()
            q = np.quantile(shares, [0.1, 0.5, 0.9]) if shares else [float("nan")] * 3
            print(f"{preset:<6} coarse_target={target:<8} in-view superpoints {in_view:5d}, with a ground truth "
                  f"{with_gt:5d}; best cell's share of the members (10/50/90 %): "
                  f"{q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
