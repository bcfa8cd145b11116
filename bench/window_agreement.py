"""Do independent windows refined from one prior agree? (prints one line per prior draw)

Reads a ``bench_refinement.py --same-prior --json`` file (every case refined from the same prior
draws) and, per draw, prints each window's searched error and the largest pairwise difference of
the searched poses (``crossi2p.prior.pose_distance``: rotation degrees, largest per-axis metres),
marking the draws whose windows all agree within ``--deg`` / ``--m``: the measurement behind an
"independent windows agree" acceptance rule (docs/benchmarks.md section 8, "A CMA-ES polish").

    .venv/bin/python bench/window_agreement.py out/kreal/agree_consec.json --deg 0.5 --m 0.08
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from crossi2p.prior import pose_distance


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", type=Path, help="bench_refinement.py --same-prior --json output")
    p.add_argument("--deg", type=float, default=0.5, help="agreement tolerance, rotation (deg)")
    p.add_argument("--m", type=float, default=0.08, help="agreement tolerance, translation per axis (m)")
    args = p.parse_args(argv)
    try:
        rows = json.loads(args.json.read_text())["rows"]
        by_trial: dict[int, list[dict]] = {}
        for r in rows:
            by_trial.setdefault(r["trial"], []).append({**r, "T": np.asarray(r["T_searched"], float)})
    except (OSError, ValueError, KeyError) as exc:
        print(f"window_agreement: {args.json}: expected bench_refinement.py --json output with T_searched ({exc})",
              file=sys.stderr)
        return 1
    agreeing = 0
    for trial, rs in sorted(by_trial.items()):
        d = [pose_distance(a["T"], b["T"]) for a, b in itertools.combinations(rs, 2)] or [(0.0, 0.0)]
        agree = all(rot <= args.deg and m <= args.m for rot, m in d)
        agreeing += agree
        errors = "  ".join(f"{r['searched_rte_m']:.3f} m / {r['searched_rre_deg']:.2f} deg" for r in rs)
        print(f"draw {trial}: {'agree ' if agree else 'differ'}  windows: {errors}  largest difference "
              f"{max(x[0] for x in d):.2f} deg / {max(x[1] for x in d):.3f} m")
    print(f"{agreeing} of {len(by_trial)} draws: all {len(rs)} windows within {args.deg} deg / {args.m} m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
