"""Where is the refinement objective's own minimum on the shared real samples? (prints figures + JSON)

For every real case (single frames; with ``--windows`` also the multi-frame scenes' 3-sweep
windows) the frames are prepared at the ground truth and the objective descends from the truth
on its finest level, with no prior term and no grid (``bench_refinement.near_truth`` with
``prior_weight = 0``), along the parallax valley (``decoupled_translation``, so that translation
can move). The pose it ends at is the objective's local minimum next to the truth: what a
perfect search would return. Its error is the objective's bias, which no search can remove.

Printed per case and as medians: the translation error ``t_min - t_gt`` in the camera optical
frame (x right, y down, z forward; m), its norm (RTE) and the geodesic rotation error (RRE, deg).

    .venv/bin/python bench/bench_objective_minimum.py --real ../shared/data/real --json out/objective_minimum.json
    .venv/bin/python bench/bench_objective_minimum.py --real ../shared/data/real --set segment_weight=0
    .venv/bin/python bench/bench_objective_minimum.py --real ../shared/data/real --profile

``--profile`` also prints, per case, how much the objective rises when the translation is moved
0.2 m from the truth along each camera axis with the rotation re-optimised
(``refinement.translation_profile``): a rise below the ambiguity margin (0.005) means that the
case cannot observe that axis.

The real samples are a development set: never tune thresholds on one of them (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench_refinement import near_truth, print_and_save, real_cases, set_fields
from crossi2p.metrics import registration_error
from crossi2p.refinement import RefinementConfig, prepare_frame, refinement_cost, translation_profile


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2] + "\nAbout 1.5 min for the 23 frames and 6 windows "
                                       "of ../shared/data/real on one core.")
    p.add_argument("--real", type=Path, required=True, help="folder of real sample folders (../shared/data/real)")
    p.add_argument("--windows", action="store_true", help="also the multi-frame scenes as 3-sweep windows")
    p.add_argument("--translation-step", type=float, default=4.0,
                   help="Nelder-Mead's first translation step (RefinementConfig.translation_step; the product's "
                        "default is 1; one unit moves a point at the median depth by one blur sigma of the finest "
                        "level, 1 px at 1000 px image width), default 4: the published figures")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a RefinementConfig field (repeatable), e.g. --set segment_weight=0")
    p.add_argument("--profile", action="store_true",
                   help="also the objective's rise 0.2 m from the truth along each camera axis, rotation "
                        "re-optimised (about 3x the time)")
    p.add_argument("--json", type=Path, help="write the summary and the per-case rows here")
    args = p.parse_args(argv)
    cfg = dataclasses.replace(RefinementConfig(), prior_weight=0.0, decoupled_translation=True,
                              translation_step=args.translation_step)
    error = set_fields(cfg, args.set)
    if error:
        print(f"bench_objective_minimum: {error}", file=sys.stderr)
        return 1
    cases = real_cases(args.real, args.windows) if args.real.is_dir() else []
    if not cases:
        print(f"bench_objective_minimum: --real {args.real}: no real sample folders found (expected folders "
              "with an image, a cloud and a calib.yaml, as ../shared/data/real)", file=sys.stderr)
        return 1
    rows = []
    for name, samples, T_gt in tqdm(cases, desc="cases", unit="case"):
        frames = [prepare_frame(s.image, s.points, s.camera, T_gt, cfg) for s in samples]
        _, T_min = near_truth(frames, T_gt, cfg, refinement_cost(frames, T_gt, -1, cfg))
        e = registration_error(T_min, T_gt)
        dt = T_min[:3, 3] - T_gt[:3, 3]
        rows.append({"case": name, "frames": len(samples), "dt_cam_m": [float(x) for x in dt],
                     "rte_m": e.rte_m, "rre_deg": e.rre_geodesic_deg})
        line = f"{name:<40} dt_cam {np.round(dt, 3)} m  RTE {e.rte_m:.3f} m  RRE {e.rre_geodesic_deg:.2f} deg"
        if args.profile:
            prof = translation_profile(frames, T_gt, (-0.2, 0.0, 0.2), cfg)
            rise = np.minimum(prof[:, 0], prof[:, 2]) - prof[:, 1]     # the lower side, per axis
            rows[-1]["profile_rise_0p2m"] = [float(x) for x in rise]
            line += f"  rise at 0.2 m x/y/z {np.round(rise, 4)}"
        tqdm.write(line)
    summary = {}
    for kind, sel in (("single", lambda r: r["frames"] == 1), ("window", lambda r: r["frames"] > 1)):
        rs = [r for r in rows if sel(r)]
        if not rs:
            continue
        dt = np.array([r["dt_cam_m"] for r in rs])
        summary[kind] = {"cases": len(rs), "rte_m_median": float(np.median([r["rte_m"] for r in rs])),
                         "rre_deg_median": float(np.median([r["rre_deg"] for r in rs])),
                         "dt_cam_m_mean": [float(x) for x in dt.mean(axis=0)],
                         "dt_cam_m_median_abs": [float(x) for x in np.median(np.abs(dt), axis=0)]}
        if args.profile:
            rise = np.array([r["profile_rise_0p2m"] for r in rs])
            summary[kind].update(profile_rise_0p2m_median=[float(x) for x in np.median(rise, axis=0)],
                                 cases_unobserved_per_axis=[int(x) for x in (rise < cfg.min_ambiguity_margin).sum(0)])
    summary["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    print_and_save(summary, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
