"""The network alone on the shared real samples, ``global`` protocol: Acc / RTE / RRE per model.

For every real sample folder of ``--real`` (KITTI, OpenCalib, TRI DGP frames) and each of
``--trials`` draws, the cloud is moved by the ``global`` perturbation (any yaw, +-10 m; drawn from
``default_rng([seed, frame index, trial])``, so every model gets the same draws) and each model
card's runtime estimates the extrinsic with no prior. The runtime's per-frame validity checks and
alignment check are not applied: this scores the network's estimate itself (a frame without an
estimate is scored at the identity and counts as a failure). Acc: RTE < 2 m and Euler-sum RRE
< 5 deg (docs/conventions.md); also the count within 10 deg geodesic.

    .venv/bin/python bench/bench_real_global.py --real ../shared/data/real --model models/crossi2p_cpu.yaml \\
        --trials 2 --json out/real_global.json

The real samples are for evaluation only, never for training or tuning (issue 14).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crossi2p.datasets.sample_folder import find_sample_folders, load_sample_folder
from crossi2p.geometry import transform_points
from crossi2p.metrics import registration_error, sample_global_perturbation, summarize_errors
from crossi2p.runtime import CalibrationRuntime, RuntimeConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", type=Path, required=True,
                   help="a real sample folder, or a folder of them (../shared/data/real)")
    p.add_argument("--model", type=Path, action="append", required=True,
                   help="model card .yaml (repeatable: each model gets the same draws)")
    p.add_argument("--trials", type=int, default=2, help="global-protocol draws per frame (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--json", type=Path, help="write every model's summary and per-draw rows here")
    p.add_argument("--card-entry", type=Path,
                   help="also write the first model's summary as a model-card evaluation entry "
                        "(crossi2p-export --evaluation; scripts/release_model.sh)")
    args = p.parse_args(argv)
    folders = find_sample_folders(args.real)
    if not folders:
        print(f"bench_real_global: no sample folders under {args.real}", file=sys.stderr)
        return 1
    samples = [(f.relative_to(args.real).as_posix(), load_sample_folder(f)) for f in folders]
    config = dataclasses.replace(RuntimeConfig(), alignment_check=False)
    result = {"real": str(args.real), "trials": args.trials, "seed": args.seed,
              "command": " ".join([".venv/bin/python bench/bench_real_global.py",
                                   *(argv if argv is not None else sys.argv[1:])]),
              "models": {}}
    for card in args.model:
        rt = CalibrationRuntime(card, config)
        errors, rows = [], []
        for i, (name, s) in enumerate(tqdm(samples, desc=card.stem, unit="frame")):
            for trial in range(args.trials):
                pert = sample_global_perturbation(np.random.default_rng([args.seed, i, trial]), s.T_cam_lidar)
                pts = s.points.copy()
                pts[:, :3] = transform_points(pert.T_pert, pts[:, :3])
                T_gt = s.T_cam_lidar @ np.linalg.inv(pert.T_pert)
                est = rt.estimate(s.image, pts, s.camera)
                err = registration_error(est.T_cam_lidar if est.T_cam_lidar is not None else np.eye(4), T_gt)
                errors.append(err)
                rows.append({"frame": name, "trial": trial, "valid": bool(est.valid),
                             "has_estimate": est.T_cam_lidar is not None, **dataclasses.asdict(err)})
        summary = summarize_errors(errors)
        summary["within_10_deg"] = int(sum(r["rre_geodesic_deg"] <= 10.0 and r["has_estimate"] for r in rows))
        result["models"][str(card)] = {"summary": summary, "rows": rows}
        print(f"{card}: {summary['frames']} frame draws, Acc {100 * summary['acc']:.1f} %, "
              f"RTE median {summary['rte_m_median']:.2f} m, RRE median {summary['rre_euler_sum_deg_median']:.1f} deg "
              f"(Euler sum) / {summary['rre_geodesic_deg_median']:.1f} deg (geodesic), "
              f"{summary['within_10_deg']} within 10 deg")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float))
    if args.card_entry:
        first = next(iter(result["models"].values()))["summary"]
        entry = {"protocol": "global", "seed": args.seed, "model": str(args.model[0]),
                 "data": f"shared real samples {args.real}: {len(samples)} frames x {args.trials} draws "
                         "(network estimate alone: no validity or alignment check)",
                 **first, "command": result["command"]}
        args.card_entry.parent.mkdir(parents=True, exist_ok=True)
        args.card_entry.write_text(json.dumps(entry, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
