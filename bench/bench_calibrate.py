"""``crossi2p-calibrate`` on recordings with ground truth: its error from the fused estimate and from
seeded priors, for each refinement window span (prints one line per run + a summary; JSON).

Each bag is calibrated once without a prior (the refinement starts from the converged fused
estimate) and once per ``--priors`` draw, from the ground truth perturbed uniformly per axis
within ``--max-deg`` / ``--max-m`` (bounds 8 deg / 0.5 m stated in the prior YAML), with every
``--span``. The ground truth is the bag's /tf_static; the tool never sees it. ``searched`` is what
the refinement's search found, also when it refused it (never published).

    .venv/bin/python bench/bench_calibrate.py out/rbk_900101/bag out/rbk_900202/bag --priors 1 \\
        --span spread recent --json out/bench_calibrate.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crossi2p.datasets.rosbag2 import read_bag_ground_truth
from crossi2p.metrics import registration_error
from crossi2p_ros.pipeline import WINDOW_SPANS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_refinement import perturbed, print_and_save  # noqa: E402

CALIBRATE = Path(sys.executable).with_name("crossi2p-calibrate")


def prior_yaml(path: Path, T: np.ndarray, max_deg: float, max_m: float) -> Path:
    """A minimal prior YAML (``T_cam_lidar`` + its bounds) at ``path``."""
    rows = "".join(f"- [{', '.join(repr(float(x)) for x in row)}]\n" for row in T)
    path.write_text(f"T_cam_lidar:\n{rows}prior_max_rotation_deg: {max_deg}\nprior_max_translation_m: {max_m}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bags", type=Path, nargs="+", help="rosbag2 folders with the ground truth on /tf_static")
    p.add_argument("--span", nargs="+", choices=WINDOW_SPANS, default=["spread", "recent"])
    p.add_argument("--priors", type=int, default=1, help="prior draws per bag (besides the run without a prior)")
    p.add_argument("--max-deg", type=float, default=4.0, help="prior rotation error per axis (deg)")
    p.add_argument("--max-m", type=float, default=0.25, help="prior translation error per axis (m)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--window-frames", type=int, help="crossi2p-calibrate --window-frames (default: its own)")
    p.add_argument("--model", type=Path, default=Path("models/crossi2p_cpu.yaml"))
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for bag in args.bags:
            T_gt = read_bag_ground_truth(bag)
            for k in range(args.priors + 1):
                prior = None if k == 0 else prior_yaml(Path(tmp) / f"prior_{len(runs)}.yaml",
                                                       perturbed(rng, T_gt, args.max_deg, args.max_m), 8.0, 0.5)
                runs += [(bag, T_gt, k, prior, span) for span in args.span]
        for bag, T_gt, k, prior, span in tqdm(runs, desc="calibrate", unit="run"):
            out = Path(tmp) / f"run_{len(rows)}"
            cmd = [str(CALIBRATE), str(bag), "--out", str(out / "calib.yaml"), "--json", str(out / "run.json"),
                   "--window-span", span, "--model", str(args.model), "--quiet"]
            cmd += ["--prior", str(prior)] if prior is not None else []
            cmd += ["--window-frames", str(args.window_frames)] if args.window_frames else []
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
            if not (out / "run.json").exists():   # it failed before its JSON: its one-line reason
                raise SystemExit(f"bench_calibrate: {' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
            d = json.loads((out / "run.json").read_text())
            ref = d.get("refinement") or {}
            err = lambda T: registration_error(np.asarray(T), T_gt) if T is not None else None  # noqa: E731
            e, es = err(d.get("T_cam_lidar")), err(ref.get("T_searched"))
            rows.append({"bag": str(bag), "prior": k, "span": span, "exit_code": d["exit_code"], "stage": d.get("stage"),
                         "start": ref.get("start"),
                         "rte_m": e and e.rte_m, "rre_deg": e and e.rre_geodesic_deg,
                         "searched_rte_m": es and es.rte_m, "searched_rre_deg": es and es.rre_geodesic_deg,
                         "accepted": bool(ref.get("accepted")), "reason": ref.get("reason") or d.get("reason", "")})
            r = rows[-1]
            tqdm.write(f"{bag.parent.name:<14} prior {k} {span:<6} from {str(r['start']):<6} exit {r['exit_code']} "
                       f"{str(r['stage']):<7} "
                       + (f"{r['rte_m']:.3f} m {r['rre_deg']:.3f} deg" if e else "-") + "  searched "
                       + (f"{r['searched_rte_m']:.3f} m {r['searched_rre_deg']:.3f} deg" if es else "-")
                       + ("" if r["accepted"] else f"  refused: {r['reason'][:50]}"))
    summary = {}
    graded = lambda r: r["searched_rte_m"] <= 0.02 and r["searched_rre_deg"] <= 0.1  # noqa: E731  (<= 2 cm / 0.1 deg)
    for span in args.span:
        sel = [r for r in rows if r["span"] == span and r["searched_rte_m"] is not None]
        acc = [r for r in sel if r["accepted"]]
        summary[span] = {"runs": len(sel), "refined_accepted": len(acc),
                         "searched_rte_m_median": float(np.median([r["searched_rte_m"] for r in sel])) if sel else None,
                         "searched_rre_deg_median": float(np.median([r["searched_rre_deg"] for r in sel])) if sel else None,
                         "searched_within_2cm_0.1deg": sum(map(graded, sel)),
                         "accepted_within_2cm_0.1deg": sum(map(graded, acc))}
    print_and_save(summary, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
