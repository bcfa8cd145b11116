"""Choose the fusion defaults from a model's per-frame errors, on drives the shipped figures do not use.

The node's fusion (crossi2p/fusion.py) gates per-frame estimates against the running robust mean
and declares convergence when enough of them agree and the mean's standard deviation is small.
Those thresholds must match the model's per-frame accuracy: gates tighter than its scatter reject
everything (never converges), looser ones let wrong estimates in. This script:

1. simulates ``--drives`` held-out drives (seeds ``--seed`` ..; NOT the acceptance drive 900101 of
   scripts/release_model.sh and tests/ros/test_node_acceptance.py), runs the shipped runtime on every
   pair once (the node's pipeline, every frame kept);
2. replays the same per-frame estimates through ExtrinsicFuser for each candidate config;
3. prints, per config: drives converged, mean frames to converge, final fused RTE / geodesic RRE
   (median and worst over the drives), and writes ``--json``;
4. checks the default config's published covariance against the error at every converged frame:
   RTE over the root of the trace of its translation block, geodesic RRE over that of its rotation
   block (about 1 when the covariance is honest), with and without the network's systematic part
   (``FusionConfig.systematic_*``).

    .venv/bin/python bench/tune_fusion.py --model models/crossi2p_cpu.yaml --drives 4 --frames 60
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crossi2p.datasets.rosbag2 import write_drive_bag
from crossi2p.fusion import ExtrinsicFuser, FusionConfig
from crossi2p.metrics import registration_error
from crossi2p_ros.evaluate_bag import load_runtime, replay_bag
from crossi2p_ros.pipeline import RefinementScheduleConfig

TOPICS = ("/camera/image_raw", "/camera/camera_info", "/lidar/points")
# gate (deg, m) and convergence std (deg, m) candidates; the rest stays at FusionConfig's defaults
CANDIDATES = [
    dict(gate_rotation_deg=g_r, gate_translation_m=g_t, converge_rotation_std_deg=c_r, converge_translation_std_m=c_t)
    for g_r, g_t in ((3.0, 0.3), (5.0, 0.5), (5.0, 1.0), (8.0, 1.5), (10.0, 2.0))
    for c_r, c_t in ((0.5, 0.05), (1.0, 0.1), (1.0, 0.2))
] + [  # drift thresholds: false alarms on drives where nothing moved
    dict(gate_rotation_deg=8.0, gate_translation_m=1.5, converge_rotation_std_deg=1.0, converge_translation_std_m=0.2,
         drift_rotation_deg=d_r, drift_translation_m=d_t)
    for d_r, d_t in ((2.0, 0.2), (3.0, 1.0), (4.0, 1.5), (5.0, 2.0))
] + [  # the per-frame confidence floor (the shipped model's confidences are ~0.1-0.3)
    dict(gate_rotation_deg=8.0, gate_translation_m=1.5, converge_rotation_std_deg=1.0, converge_translation_std_m=0.2,
         drift_rotation_deg=3.0, drift_translation_m=1.0, min_confidence=c)
    for c in (0.05, 0.1, 0.15, 0.2)
]


def per_frame_estimates(model: Path, seed: int, frames: int, folder: Path):
    """[(T_frame | None, confidence, stamp_s)] of every pair of one simulated drive, and its T_gt."""
    from crossi2p_training.sim import SimConfig, simulate_drive

    drive = simulate_drive(SimConfig.preset("small"), seed=seed, frames=frames)
    bag = folder / f"drive_{seed}"
    write_drive_bag(bag, drive.camera_frames, drive.lidar_sweeps, drive.camera, drive.T_cam_lidar)
    open_fusion = FusionConfig(min_confidence=0.0)  # keep every per-frame estimate; fused again below
    result = replay_bag(bag, load_runtime(model, "cpu"), drive.T_cam_lidar, TOPICS, fusion=open_fusion, progress=False,
                        schedule=RefinementScheduleConfig(enabled=False))  # per-frame estimates only
    valid_only = [(r.T_cam_lidar if r.valid else None, r.confidence, r.lidar_stamp_s) for r in result.reports]
    return valid_only, drive.T_cam_lidar


def fuse(estimates, config: FusionConfig) -> tuple[np.ndarray | None, int | None, int]:
    fuser = ExtrinsicFuser(config)
    converged_at = None
    for i, (T, conf, stamp) in enumerate(estimates):
        if T is None:
            continue
        fuser.add(T, conf, stamp)
        if converged_at is None and fuser.state.status == "converged":
            converged_at = i + 1
    st = fuser.state
    return (st.T_cam_lidar if st.status == "converged" else None), converged_at, st.drift_events


def covariance_check(per_drive, config: FusionConfig) -> dict:
    """Errors in standard deviations (RMS and median over every converged frame of every drive):
    the published covariance (``FusionState.covariance``) and the covariance of the mean alone."""
    systematic = np.diag([config.systematic_translation_m**2] * 3 + [np.radians(config.systematic_rotation_deg)**2] * 3)
    z = {"published": [], "mean_only": []}
    for est, T_gt in per_drive:
        fuser = ExtrinsicFuser(config)
        for T, conf, stamp in est:
            if T is None:
                continue
            fuser.add(T, conf, stamp)
            st = fuser.state
            if st.status != "converged":
                continue
            e = registration_error(st.T_cam_lidar, T_gt)
            for key, cov in (("published", st.covariance), ("mean_only", st.covariance - systematic)):
                z[key].append((e.rte_m / np.sqrt(np.trace(cov[:3, :3])),
                               np.radians(e.rre_geodesic_deg) / np.sqrt(np.trace(cov[3:, 3:]))))
    out = {"converged_frames": len(z["published"])}
    for key, v in z.items():
        v = np.array(v).reshape(-1, 2)
        out[key] = {"translation_rms": float(np.sqrt(np.mean(v[:, 0]**2))) if len(v) else None,
                    "rotation_rms": float(np.sqrt(np.mean(v[:, 1]**2))) if len(v) else None}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/crossi2p_cpu.yaml"))
    p.add_argument("--seed", type=int, default=900201, help="first drive seed (default 900201)")
    p.add_argument("--drives", type=int, default=4)
    p.add_argument("--frames", type=int, default=60, help="LiDAR sweeps per drive")
    p.add_argument("--json", type=Path, default=Path("out/tune_fusion.json"))
    args = p.parse_args(argv)
    per_drive = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(range(args.seed, args.seed + args.drives), desc="drives", unit="drive"):
            per_drive.append(per_frame_estimates(args.model, seed, args.frames, Path(tmp)))
    frame_errors = [registration_error(T, T_gt) for est, T_gt in per_drive for T, _, _ in est if T is not None]
    print(f"{len(frame_errors)} valid per-frame estimates over {args.drives} drives: median RTE "
          f"{np.median([e.rte_m for e in frame_errors]):.2f} m, median geodesic RRE "
          f"{np.median([e.rre_geodesic_deg for e in frame_errors]):.2f} deg")
    rows = []
    for cand in CANDIDATES:
        cfg = dataclasses.replace(FusionConfig(), **cand)
        fused = [fuse(est, cfg) + (T_gt,) for est, T_gt in per_drive]
        errs = [registration_error(T, T_gt) for T, _, _, T_gt in fused if T is not None]
        conv = [n for _, n, _, _ in fused if n is not None]
        rows.append({**cand, "min_confidence": cfg.min_confidence, "drift_rotation_deg": cfg.drift_rotation_deg, "drift_translation_m": cfg.drift_translation_m,
                     "false_drift_events": sum(d for _, _, d, _ in fused), "converged": len(errs), "drives": len(per_drive),
                     "frames_to_converge_mean": float(np.mean(conv)) if conv else None,
                     "fused_rte_m_median": float(np.median([e.rte_m for e in errs])) if errs else None,
                     "fused_rte_m_max": float(max(e.rte_m for e in errs)) if errs else None,
                     "fused_rre_geodesic_deg_median": float(np.median([e.rre_geodesic_deg for e in errs])) if errs else None,
                     "fused_rre_geodesic_deg_max": float(max(e.rre_geodesic_deg for e in errs)) if errs else None})
    print("| min confidence | gate deg / m | converge std deg / m | drift deg / m | converged | false drift events | frames to converge "
          "| fused RTE median / max (m) | fused RRE median / max (deg) |\n|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        print(f"| {r['min_confidence']:g} | {r['gate_rotation_deg']:g} / {r['gate_translation_m']:g} | {r['converge_rotation_std_deg']:g} / "
              f"{r['converge_translation_std_m']:g} | {r['drift_rotation_deg']:g} / {r['drift_translation_m']:g} | "
              f"{r['converged']}/{r['drives']} | {r['false_drift_events']} | "
              f"{fmt(r['frames_to_converge_mean'], '.1f')} | {fmt(r['fused_rte_m_median'], '.3f')} / "
              f"{fmt(r['fused_rte_m_max'], '.3f')} | {fmt(r['fused_rre_geodesic_deg_median'], '.2f')} / "
              f"{fmt(r['fused_rre_geodesic_deg_max'], '.2f')} |")
    cov = covariance_check(per_drive, FusionConfig())
    print(f"default config, errors in standard deviations over {cov['converged_frames']} converged frames (RMS, "
          f"translation / rotation): published covariance {fmt(cov['published']['translation_rms'], '.2f')} / "
          f"{fmt(cov['published']['rotation_rms'], '.2f')}, covariance of the mean alone "
          f"{fmt(cov['mean_only']['translation_rms'], '.2f')} / {fmt(cov['mean_only']['rotation_rms'], '.2f')}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seeds": [args.seed, args.seed + args.drives - 1], "frames": args.frames,
                                     "model": str(args.model), "rows": rows, "covariance_check": cov}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
