"""How well does each refinement objective rank poses around the truth on the shared real samples?
(prints figures + JSON; no search, so it isolates the objective from the search).

For every real case (single frames, and with ``--windows`` the multi-frame scenes' 3-sweep
windows) it scores the ground truth and ``--poses`` poses drawn around it at a random fraction of
the prior box (each axis uniform within ``s * --max-deg`` / ``s * --max-m``, ``s`` uniform in
[0, 1], so that near and far poses are both present) with each objective variant, and reports per
variant, as medians over the cases:

- ``spearman``: rank correlation between the objective and the pose error (RRE in deg + 10 x RTE
  in m); 1 would be a perfect ordering;
- ``truth_rank``: the share of the drawn poses the objective prefers to the truth (0 is best);
- ``top5_error``: the mean error of the 5 poses the objective likes most (deg + 10 x m).

    .venv/bin/python bench/bench_objective.py --real ../shared/data/real --windows --json out/objective.json

The real samples are a development set: never tune thresholds on one of them (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from bench_refinement import perturbed, real_cases
from crossi2p.metrics import registration_error
from crossi2p.refinement import RefinementConfig, prepare_frame, refinement_cost

VARIANTS = {
    "nid": dict(segment_weight=0.0),                       # intensity NID alone (the default before)
    "segment": dict(nid_weight=0.0, segment_weight=1.0),   # segment consistency alone
    "default": dict(),                                     # RefinementConfig's defaults (both)
}


def pose_error(T: np.ndarray, T_gt: np.ndarray) -> float:
    """One number per pose: geodesic RRE in degrees + 10 x RTE in metres (0.1 m weighs as 1 deg)."""
    e = registration_error(T, T_gt)
    return e.rre_geodesic_deg + 10.0 * e.rte_m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", type=Path, required=True, help="folder of real sample folders (../shared/data/real)")
    p.add_argument("--windows", action="store_true", help="also the multi-frame scenes' windows")
    p.add_argument("--poses", type=int, default=120, help="poses drawn around the truth per case")
    p.add_argument("--max-deg", type=float, default=5.0, help="prior box, rotation per axis (deg)")
    p.add_argument("--max-m", type=float, default=0.3, help="prior box, translation per axis (m)")
    p.add_argument("--level", type=int, default=-1, help="blur level scored (-1: the finest)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not args.real.is_dir():
        print(f"bench_objective: --real {args.real}: not a folder", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    rows = []
    for name, samples, T_gt in tqdm(real_cases(args.real, args.windows), desc="cases", unit="case"):
        poses = [T_gt] + [perturbed(rng, T_gt, s * args.max_deg, s * args.max_m)
                          for s in rng.uniform(0, 1, args.poses)]
        errs = np.array([pose_error(T, T_gt) for T in poses])
        row = {"case": name}
        for variant, overrides in VARIANTS.items():
            cfg = dataclasses.replace(RefinementConfig(), **overrides)
            frames = [prepare_frame(s.image, s.points, s.camera, T_gt, cfg) for s in samples]
            c = np.array([refinement_cost(frames, T, args.level, cfg) for T in poses])
            row[variant] = {"spearman": float(spearmanr(c[1:], errs[1:]).correlation),
                            "truth_rank": float((c[1:] < c[0]).mean()),
                            "top5_error": float(errs[1:][np.argsort(c[1:])[:5]].mean())}
        rows.append(row)
    summary = {v: {k: float(np.median([r[v][k] for r in rows])) for k in ("spearman", "truth_rank", "top5_error")}
               for v in VARIANTS}
    print(f"{'objective':<10} {'spearman':>9} {'truth_rank':>11} {'top5_error':>11}   (medians over {len(rows)} cases)")
    for v, m in summary.items():
        print(f"{v:<10} {m['spearman']:>9.3f} {m['truth_rank']:>11.3f} {m['top5_error']:>11.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "rows": rows, "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
