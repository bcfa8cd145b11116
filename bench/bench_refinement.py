"""Refinement accuracy on the shared real samples and on a simulated drive (prints figures + JSON).

Each case starts from the ground truth perturbed by a seeded prior error, uniform per axis within
``--max-deg`` / ``--max-m`` (the ``refine`` protocol narrowed, issue 13), refines, and reports the
start and refined errors (RTE / geodesic RRE) with the share of results the stage accepted.
Cases: every real folder of ``--real`` (single frames, a window of 1) and, with ``--sim SEQ``,
windows of ``--window`` frames of a simulated KITTI-layout drive (``crossi2p-sim --kitti``).

    .venv/bin/python bench/bench_refinement.py --real ../shared/data/real --trials 3 --json out/refine_bench.json

The real samples are a development set: never tune thresholds on one of them (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from crossi2p.calib_io import load_calibration_yaml
from crossi2p.datasets.kitti import read_kitti_sequence
from crossi2p.datasets.sample_folder import find_sample_folders, load_sample_folder
from crossi2p.deskew import DeskewConfig, SweepDeskewer
from crossi2p.geometry import make_transform
from crossi2p.metrics import registration_error
from crossi2p.refinement import RefinementConfig, prepare_frame, refine_extrinsic, refinement_cost
from crossi2p_ros.pipeline import KeyframeSelector, RefinementScheduleConfig


def perturbed(rng: np.random.Generator, T_gt: np.ndarray, max_deg: float, max_m: float) -> np.ndarray:
    """``T_gt`` off by a rotation (per-axis uniform within max_deg) and a translation (max_m)."""
    rv = np.radians(rng.uniform(-max_deg, max_deg, 3))
    return make_transform(Rotation.from_rotvec(rv), rng.uniform(-max_m, max_m, 3)) @ T_gt


def densified(samples: list, neighbors: int) -> list:
    """``samples`` (consecutive sweeps) with each cloud accumulated over ``neighbors`` sweeps on
    each side, in its own LiDAR frame (Koide et al., ICRA 2023, accumulate before the NID). The
    sweeps are registered by KISS-ICP (Vizzo et al., RA-L 2023; ``pip install kiss-icp``, MIT; not
    a product dependency: the experiment was not adopted, docs/benchmarks.md section 8), not
    deskewed (no per-point times); no ground truth is used."""
    if neighbors <= 0 or len(samples) < 2:
        return samples
    from kiss_icp.config import KISSConfig
    from kiss_icp.kiss_icp import KissICP
    kiss = KISSConfig()
    kiss.data.max_range, kiss.data.min_range, kiss.data.deskew = 100.0, 1.0, False
    kiss.mapping.voxel_size = 1.0
    odom = KissICP(config=kiss)
    T_odom_lidar = []
    for s in samples:
        xyz = np.ascontiguousarray(s.points[:, :3], dtype=np.float64)
        odom.register_frame(xyz, np.zeros(len(xyz)))
        T_odom_lidar.append(np.asarray(odom.last_pose, float))
    out = []
    for k, s in enumerate(samples):
        parts = [s.points]
        for j in range(max(0, k - neighbors), min(len(samples), k + neighbors + 1)):
            if j != k:
                T = np.linalg.inv(T_odom_lidar[k]) @ T_odom_lidar[j]
                moved = samples[j].points.copy()
                moved[:, :3] = moved[:, :3] @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)
                parts.append(moved)
        out.append(dataclasses.replace(s, points=np.concatenate(parts)))
    return out


def deskewed(samples: list, config: DeskewConfig) -> list:
    """``samples`` (every sweep of a drive, in order) with each sweep de-skewed to its stamp by the
    product's ``SweepDeskewer`` (firing times from azimuth, ego motion from KISS-ICP; no ground
    truth is used)."""
    deskewer = SweepDeskewer(config)
    return [dataclasses.replace(s, points=deskewer(s.lidar_stamp_s if s.lidar_stamp_s is not None else s.stamp_s,
                                                   s.points)) for s in samples]


def near_truth(frames: list, T_gt: np.ndarray, cfg: RefinementConfig, at_truth: float) -> tuple[float, np.ndarray]:
    """The objective at the local minimum next to the truth and that minimum (4, 4): the start
    alone (no grid seeds) descending from ``T_gt``, finest level (``at_truth`` and ``T_gt``, the
    objective at the truth, when that descent stopped early or found nothing lower)."""
    local = dataclasses.replace(cfg, grid_steps=1, fine_grid_steps=1, multi_starts=0, fine_multi_starts=0,
                                grid_translation_m=0.0, translation_hops_m=0.0, bootstrap_replicates=2)
    res = refine_extrinsic(frames, T_gt, local)
    if res.T_searched is None or not res.cost_final < at_truth:
        return at_truth, T_gt
    return float(res.cost_final), res.T_searched


def real_cases(real: Path, windows: bool = False, accumulate: int = 0) -> list[tuple[str, list, np.ndarray]]:
    """``(name, samples, T_gt)`` for every sample folder under ``real`` (a window of 1) and, with
    ``windows``, every multi-frame scene's camera over its sweeps (folders ``f0_X``, ``f1_X``, ...
    of one parent; ground truth: the rig's ``T_cam_lidar_static`` when the record has it);
    ``accumulate``: see ``densified``."""
    cases = []
    groups: dict[tuple, list[Path]] = {}
    for folder in find_sample_folders(real):
        head, _, cam = folder.name.partition("_")
        if head[:1] == "f" and head[1:].isdigit() and cam:
            groups.setdefault((folder.parent, cam), []).append(folder)
    loaded = {}
    for folders in groups.values():
        for f, s in zip(folders, densified([load_sample_folder(f) for f in folders], accumulate)):
            loaded[f] = s
    for folder in find_sample_folders(real):
        s = loaded.get(folder) or load_sample_folder(folder)
        cases.append((str(folder.relative_to(real)), [s], s.T_cam_lidar))
    if windows:
        for (parent, cam), folders in sorted(groups.items()):
            if len(folders) < 2:
                continue
            samples = [loaded[f] for f in folders]
            static = load_calibration_yaml(folders[0] / "calib.yaml").metadata.get("T_cam_lidar_static")
            T_gt = np.asarray(static, float) if static is not None else samples[0].T_cam_lidar
            cases.append((f"{parent.relative_to(real)}/{cam}x{len(samples)}", samples, T_gt))
    return cases


def set_fields(cfg: RefinementConfig, items: list[str]) -> str | None:
    """Apply ``--set KEY=VALUE`` overrides to ``cfg`` in place; the first bad one's reason, or None."""
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            return f"--set {item}: expected KEY=VALUE"
        if not hasattr(cfg, key):
            return f"--set {item}: RefinementConfig has no field {key!r}"
        old = getattr(cfg, key)
        if isinstance(old, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                return f"--set {item}: expected true or false"
            setattr(cfg, key, value.lower() in ("true", "1"))
            continue
        try:
            setattr(cfg, key, tuple(float(v) for v in value.strip("()").split(",") if v.strip())
                    if isinstance(old, tuple) else type(old)(value))
        except ValueError:
            return f"--set {item}: expected a {type(old).__name__}" + (" (comma-separated numbers)"
                                                                       if isinstance(old, tuple) else "")
    return None


def print_and_save(summary: dict, rows: list[dict], path: Path | None) -> None:
    """Print ``summary``; with ``path``, write ``{"summary", "rows"}`` there as JSON."""
    print(json.dumps(summary, indent=1))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


def run_case(name: str, samples: list, T_gt: np.ndarray, args, cfg: RefinementConfig, rng) -> list[dict]:
    rows = []
    for trial in range(args.trials):
        T0 = perturbed(rng, T_gt, args.max_deg, args.max_m)
        frames = [prepare_frame(s.image, s.points, s.camera, T0, cfg) for s in samples]
        res = refine_extrinsic(frames, T0, cfg)
        e0, e1 = registration_error(T0, T_gt), registration_error(res.T_searched if res.T_searched is not None else T0, T_gt)
        cost_truth = refinement_cost(frames, T_gt, -1, cfg)
        cost_near, T_near = (cost_truth, T_gt) if args.skip_near_truth else near_truth(frames, T_gt, cfg, cost_truth)
        e_near = registration_error(T_near, T_gt)
        T_end = res.T_searched if res.T_searched is not None else T0
        rows.append({"case": name, "trial": trial, "frames": len(samples), "accepted": res.accepted,
                     "T_start": T0.tolist(), "T_searched": T_end.tolist(),
                     "reason": res.reason, "start_rte_m": e0.rte_m, "start_rre_deg": e0.rre_geodesic_deg,
                     "searched_rte_m": e1.rte_m, "searched_rre_deg": e1.rre_geodesic_deg,
                     "time_s": res.time_s, "std_m": [float(x) for x in res.std_m],
                     "std_deg": [float(x) for x in res.std_deg], "ambiguity_margin": res.ambiguity_margin,
                     "rival_support": res.rival_support,
                     # the curvature's margin ellipsoid (RefinementConfig.margin_covariance), per axis
                     "margin_std_m": None if res.margin_covariance is None else
                     [float(x) for x in np.sqrt(np.diag(res.margin_covariance)[:3])],
                     "margin_std_deg": None if res.margin_covariance is None else
                     [float(x) for x in np.degrees(np.sqrt(np.diag(res.margin_covariance)[3:]))],
                     "equivalent_ends": res.equivalent_ends,
                     # the objective (finest level, no prior term) at the result, at the truth, and
                     # at the local minimum next to the truth (the start's descent from the truth):
                     # a result below that minimum is the objective's fault, above it the search's
                     "cost_searched": res.cost_final, "cost_truth": cost_truth,
                     "cost_near_truth": cost_near,
                     # what a search that found that minimum would give
                     "near_truth_rte_m": e_near.rte_m, "near_truth_rre_deg": e_near.rre_geodesic_deg})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real", type=Path, help="folder of real sample folders (../shared/data/real)")
    p.add_argument("--windows", action="store_true",
                   help="also refine the real multi-frame scenes as windows: folders f0_X, f1_X, ... of "
                        "one parent are one camera X over consecutive sweeps (ground truth: the rig's "
                        "T_cam_lidar_static when the record has it)")
    p.add_argument("--sim", type=Path, help="a simulated KITTI-layout sequence folder")
    p.add_argument("--window", type=int, default=5, help="frames per simulated window")
    p.add_argument("--first", type=int, nargs="+", default=[0], metavar="K",
                   help="frame of --sim each window starts at, after --stride (several: one window each; default 0)")
    p.add_argument("--stride", type=int, default=1,
                   help="take every STRIDE-th simulated frame (2: only the camera frames taken with a LiDAR "
                        "sweep, 15 Hz camera / 10 Hz LiDAR; the KITTI layout keeps no LiDAR stamps to pair by)")
    p.add_argument("--keyframes", type=float, default=0.0, metavar="PX",
                   help="keep only the simulated frames the pipeline's keyframe rule keeps with this parallax "
                        "(crossi2p_ros.pipeline.KeyframeSelector, frames 0.1 s apart, after --stride; the node's "
                        "default is 2 px): --first then counts keyframes")
    p.add_argument("--accumulate", type=int, default=0, metavar="N",
                   help="densify every frame of a multi-frame scene or simulated window with N sweeps on "
                        "each side, registered by LiDAR odometry (KISS-ICP); single frames of a scene too")
    p.add_argument("--deskew", action="store_true",
                   help="de-skew every simulated sweep first (crossi2p.deskew, azimuth firing times with "
                        "the stamp facing forward, as KITTI raw and crossi2p-sim --motion-during-sweep)")
    p.add_argument("--trials", type=int, default=3, help="prior draws per case")
    p.add_argument("--max-deg", type=float, default=5.0, help="prior rotation error per axis (deg)")
    p.add_argument("--max-m", type=float, default=0.3, help="prior translation error per axis (m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nid-weight", type=float, default=None)
    p.add_argument("--edge-weight", type=float, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a RefinementConfig field (repeatable), e.g. --set histogram_bins=16")
    p.add_argument("--same-prior", action="store_true",
                   help="every case draws the same priors (trial k of each case starts from the same pose: "
                        "the agreement of independent windows from one prior, bench/window_agreement.py)")
    p.add_argument("--skip-near-truth", action="store_true",
                   help="do not descend from the truth (its cost_near_truth / near_truth_* are the truth's)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    cfg = RefinementConfig()
    if args.nid_weight is not None:
        cfg.nid_weight = args.nid_weight
    if args.edge_weight is not None:
        cfg.edge_weight = args.edge_weight
    error = set_fields(cfg, args.set)
    if error:
        print(f"bench_refinement: {error}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    cases = real_cases(args.real, args.windows, args.accumulate) if args.real else []
    if args.sim:
        seq = read_kitti_sequence(args.sim)
        every = [seq[i] for i in range(len(seq))]
        if args.deskew:
            every = deskewed(every, DeskewConfig(mode="azimuth"))
        strided = every[::max(args.stride, 1)]
        if args.keyframes > 0:
            keep = KeyframeSelector(args.keyframes, RefinementScheduleConfig.keyframe_max_gap_s)
            kept = [k for k, s in enumerate(strided) if keep(0.1 * k, s.image)]
            print(f"keyframes ({args.keyframes:g} px): {len(kept)} of {len(strided)} frames: {kept}")
            strided = [strided[k] for k in kept]
        for first in args.first:
            samples = densified(strided[first:first + args.window], args.accumulate)
            if not samples:
                print(f"bench_refinement: --first {first}: {args.sim} has {len(strided)} frames", file=sys.stderr)
                return 1
            cases.append((f"sim:{args.sim.name}x{len(samples)}" + (f"@{first}" if first else ""), samples,
                          samples[0].T_cam_lidar))
    if not cases:
        print("bench_refinement: give --real and/or --sim", file=sys.stderr)
        return 1
    rows = []
    for name, samples, T_gt in tqdm(cases, desc="cases", unit="case"):
        rows += run_case(name, samples, T_gt, args, cfg, np.random.default_rng(args.seed) if args.same_prior else rng)
    for r in rows:
        print(f"{r['case']:<40} start {r['start_rte_m']:.3f} m {r['start_rre_deg']:.2f} deg -> "
              f"{r['searched_rte_m']:.3f} m {r['searched_rre_deg']:.2f} deg  "
              f"{'accepted' if r['accepted'] else 'rejected: ' + r['reason'][:50]}")
    acc = [r for r in rows if r["accepted"]]
    summary = {"cases": len(cases), "trials": len(rows), "accepted": len(acc),
               "start_rte_m_median": float(np.median([r["start_rte_m"] for r in rows])),
               "start_rre_deg_median": float(np.median([r["start_rre_deg"] for r in rows])),
               "searched_rte_m_median": float(np.median([r["searched_rte_m"] for r in rows])),
               "searched_rre_deg_median": float(np.median([r["searched_rre_deg"] for r in rows])),
               "accepted_rte_m_median": float(np.median([r["searched_rte_m"] for r in acc])) if acc else None,
               "accepted_rre_deg_median": float(np.median([r["searched_rre_deg"] for r in acc])) if acc else None,
               "accepted_worse_than_start": sum(r["searched_rre_deg"] > r["start_rre_deg"] for r in acc),
               "time_s_median": float(np.median([r["time_s"] for r in rows])),
               # the ceiling of a better search: the local minimum next to the truth, and how often
               # it scores lower than what the search found (the search's fault, not the objective's)
               "near_truth_rte_m_median": float(np.median([r["near_truth_rte_m"] for r in rows])),
               "near_truth_rre_deg_median": float(np.median([r["near_truth_rre_deg"] for r in rows])),
               "near_truth_lower": sum(r["cost_near_truth"] < r["cost_searched"] for r in rows),
               "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
               "prior": {"max_deg": args.max_deg, "max_m": args.max_m, "seed": args.seed}}
    print_and_save(summary, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
