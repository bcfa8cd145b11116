"""Refinement of one LiDAR against a rig of cameras at once, on a real multi-camera scene (prints
figures + JSON).

A rig's cameras usually have known poses relative to each other (the rig's own camera calibration);
what is unknown is where the LiDAR sits. Each camera alone leaves some rotation or translation
open (one view, little parallax); all cameras together see the LiDAR's surroundings from every
side, so one shared pose explains every image only where it is right.

Each trial draws one prior error for the LiDAR (per-axis uniform within ``--max-deg`` /
``--max-m``, about the reference camera), starts every camera from it (``T_cam_ref @ T_ref_lidar``,
``T_cam_ref`` from the recording's calibration: the rig), and refines

- every camera alone over its sweeps (``--per-camera``; what ``crossi2p-calibrate`` does today),
- the whole rig as one window (``prepare_frame(..., T_cam_ref=...)``).

Errors are RTE / geodesic RRE of each camera's ``T_cam_lidar`` against the recording's
``T_cam_lidar_static`` (the rig's calibration; ``T_cam_lidar`` of a single sweep otherwise).

    .venv/bin/python bench/bench_rig.py ../shared/data/real/tri_dgp_scene_02 --trials 3 --per-camera

The real samples are a development set: never tune thresholds on one of them (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench_refinement import perturbed, print_and_save, set_fields
from crossi2p.calib_io import load_calibration_yaml
from crossi2p.datasets.sample_folder import find_sample_folders, load_sample_folder
from crossi2p.geometry import invert_transform
from crossi2p.metrics import registration_error
from crossi2p.refinement import RefinementConfig, prepare_frame, refine_extrinsic


def rig_cameras(scene: Path) -> dict[str, tuple[list, np.ndarray]]:
    """``{camera: (samples, T_cam_lidar)}`` of a scene's folders ``f<k>_<camera>`` (sweep k seen by
    that camera), ground truth the record's ``T_cam_lidar_static`` when it has one.

    Raises:
        ValueError: no such folder under ``scene``.
    """
    cams: dict[str, list[Path]] = {}
    for folder in find_sample_folders(scene):
        head, _, cam = folder.name.partition("_")
        if head[:1] == "f" and head[1:].isdigit() and cam:
            cams.setdefault(cam, []).append(folder)
    if not cams:
        raise ValueError(f"{scene}: no f<k>_<camera> sample folders (a multi-camera scene of ../shared/data/real)")
    out = {}
    for cam, folders in sorted(cams.items()):
        folders.sort(key=lambda f: int(f.name.partition("_")[0][1:]))
        samples = [load_sample_folder(f) for f in folders]
        static = load_calibration_yaml(folders[0] / "calib.yaml").metadata.get("T_cam_lidar_static")
        out[cam] = (samples, np.asarray(static, float) if static is not None else samples[0].T_cam_lidar)
    return out


def errors(T_ref: np.ndarray, rig: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, tuple]:
    """``{camera: (rte_m, rre_deg)}`` of every camera's ``T_cam_ref @ T_ref`` against its truth."""
    out = {}
    for cam, A in rig.items():
        e = registration_error(A @ T_ref, truth[cam])
        out[cam] = (e.rte_m, e.rre_geodesic_deg)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scene", type=Path, help="a multi-camera scene folder (f<k>_<camera>/ sample folders), "
                                             "e.g. ../shared/data/real/tri_dgp_scene_02")
    p.add_argument("--reference", help="the rig's reference camera (default: the first by name)")
    p.add_argument("--per-camera", action="store_true", help="also refine every camera alone, from the same prior")
    p.add_argument("--trials", type=int, default=3, help="prior draws")
    p.add_argument("--max-deg", type=float, default=3.0, help="prior rotation error per axis (deg)")
    p.add_argument("--max-m", type=float, default=0.2, help="prior translation error per axis (m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a RefinementConfig field (repeatable)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    cfg = RefinementConfig()
    error = set_fields(cfg, args.set)
    try:
        cams = rig_cameras(args.scene)
    except (OSError, ValueError) as exc:
        error = error or str(exc)
    if error:
        print(f"bench_rig: {error}", file=sys.stderr)
        return 1
    ref = args.reference or next(iter(cams))
    if ref not in cams:
        print(f"bench_rig: --reference {ref}: the scene's cameras are {', '.join(cams)}", file=sys.stderr)
        return 1
    truth = {cam: T for cam, (_, T) in cams.items()}
    rig = {cam: T @ invert_transform(truth[ref]) for cam, T in truth.items()}      # T_cam_ref, known
    rng = np.random.default_rng(args.seed)
    rows = []
    for trial in tqdm(range(args.trials), desc="priors", unit="prior"):
        T0 = perturbed(rng, truth[ref], args.max_deg, args.max_m)                  # T_ref_lidar's prior
        start = errors(T0, rig, truth)
        frames = [prepare_frame(s.image, s.points, s.camera, T0, cfg, T_cam_ref=rig[cam])
                  for cam, (samples, _) in cams.items() for s in samples]
        res = refine_extrinsic(frames, T0, cfg)
        found = errors(res.T_searched if res.T_searched is not None else T0, rig, truth)
        row = {"trial": trial, "mode": "rig", "cameras": len(cams), "frames": len(frames),
               "accepted": res.accepted, "reason": res.reason, "time_s": res.time_s,
               "start": start, "searched": found, "std_m": [float(x) for x in res.std_m],
               "std_deg": [float(x) for x in res.std_deg], "ambiguity_margin": res.ambiguity_margin}
        rows.append(row)
        if args.per_camera:
            for cam, (samples, _) in cams.items():
                T0c = rig[cam] @ T0
                alone = refine_extrinsic([prepare_frame(s.image, s.points, s.camera, T0c, cfg) for s in samples],
                                         T0c, cfg)
                e = registration_error(alone.T_searched if alone.T_searched is not None else T0c, truth[cam])
                rows.append({"trial": trial, "mode": "alone", "camera": cam, "frames": len(samples),
                             "accepted": alone.accepted, "reason": alone.reason, "time_s": alone.time_s,
                             "start": {cam: start[cam]}, "searched": {cam: (e.rte_m, e.rre_geodesic_deg)},
                             "ambiguity_margin": alone.ambiguity_margin})
    for r in rows:
        worst_s = max(r["searched"].values(), key=lambda x: x[1])
        med = np.median(np.array(list(r["searched"].values())), axis=0)
        label = "rig of %d" % r["cameras"] if r["mode"] == "rig" else r["camera"]
        print(f"prior {r['trial']} {label:<12} searched median {med[0]:.3f} m / {med[1]:.2f} deg "
              f"(worst camera {worst_s[0]:.3f} m / {worst_s[1]:.2f} deg)  "
              f"{'accepted' if r['accepted'] else 'refused: ' + r['reason'][:60]}")

    def pooled(mode: str, key: str) -> list[tuple]:
        return [e for r in rows if r["mode"] == mode for e in r[key].values()]

    summary = {"scene": str(args.scene), "reference": ref, "cameras": list(cams), "trials": args.trials,
               "prior": {"max_deg": args.max_deg, "max_m": args.max_m, "seed": args.seed}}
    for mode in ("rig", "alone"):
        if pooled(mode, "searched"):
            s, e = np.array(pooled(mode, "start")), np.array(pooled(mode, "searched"))
            summary[mode] = {"start_rte_m_median": float(np.median(s[:, 0])),
                             "start_rre_deg_median": float(np.median(s[:, 1])),
                             "searched_rte_m_median": float(np.median(e[:, 0])),
                             "searched_rre_deg_median": float(np.median(e[:, 1])),
                             "accepted": sum(r["accepted"] for r in rows if r["mode"] == mode),
                             "runs": sum(r["mode"] == mode for r in rows),
                             "time_s_median": float(np.median([r["time_s"] for r in rows if r["mode"] == mode]))}
    print_and_save(summary, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
