"""Per-stage latency and peak memory of the runtime (preprocess, graph, post) on simulated frames.

    .venv/bin/python bench/bench_runtime.py [--model models/crossi2p_cpu.yaml] [--frames 50] [--threads 2]

Prints the session creation time, the median / p90 per stage over ``--frames`` frames (after 3
warm-up frames) and the process's peak resident memory. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from tqdm import tqdm

from crossi2p.runtime import CalibrationRuntime, RuntimeConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/crossi2p_cpu.yaml", help="model card")
    ap.add_argument("--frames", type=int, default=50, help="timed frames (median over these)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--sim-preset", default="small", help="simulator preset of the frames")
    args = ap.parse_args()
    from crossi2p_training.sim import SimConfig, simulate_sample

    samples = [simulate_sample(SimConfig.preset(args.sim_preset), 500 + i) for i in range(min(args.frames, 10))]
    t0 = time.perf_counter()
    runtime = CalibrationRuntime(args.model, RuntimeConfig(execution_provider="cpu", intra_op_threads=args.threads))
    load_s = time.perf_counter() - t0
    stages: dict[str, list[float]] = {"preprocess": [], "graph": [], "post": [], "total": []}
    for i in tqdm(range(args.frames + 3), desc="frames"):
        s = samples[i % len(samples)]
        est = runtime.estimate(s.image, s.points, s.camera)
        if i >= 3:
            for k, v in est.latency_ms.items():
                stages[k].append(v)
            stages["total"].append(sum(est.latency_ms.values()))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model {runtime.card.name}, {args.frames} frames ({args.sim_preset} simulator frames), "
          f"{args.threads} threads, providers {runtime.providers}")
    print(f"session creation: {load_s:.1f} s")
    for k, v in stages.items():
        print(f"{k:>10}: median {np.median(v):7.1f} ms   p90 {np.percentile(v, 90):7.1f} ms")
    print(f"peak resident memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
