"""Per-stage latency and peak memory of the runtime (preprocess, graph, post) on simulated frames.

    .venv/bin/python bench/bench_runtime.py [--model models/crossi2p_cpu.yaml] [--frames 50] [--threads 2]
    .venv/bin/python bench/bench_runtime.py --compare OLD.onnx NEW.onnx [--model CARD] [--frames 30]

Prints the session creation time, the median / p90 per stage over ``--frames`` frames (after 3
warm-up frames) and the process's peak resident memory. Figures, not assertions.

``--compare A.onnx B.onnx``: two graphs of the same interface side by side in one run, each behind
a copy of ``--model``'s card (its preprocessing; the graph's own sha256): node count (subgraphs
included), session creation time, and per-frame latency with the frames interleaved (A then B on
one frame, B then A on the next, so load from other processes falls on both alike), plus how far
apart their estimates are (same weights: they should agree to float rounding).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crossi2p.model_card import ModelCard, sha256_of_file
from crossi2p.runtime import CalibrationRuntime, RuntimeConfig


def _count_nodes(onnx_path: Path) -> tuple[int, int]:
    """(outer-graph nodes, nodes including those inside Loop/If bodies) of an ONNX file."""
    import onnx

    def walk(g) -> int:
        return len(g.node) + sum(walk(a.g) if a.type == onnx.AttributeProto.GRAPH else 0
                                 for n in g.node for a in n.attribute)

    m = onnx.load(str(onnx_path))
    return len(m.graph.node), walk(m.graph)


def _card_for(graph: Path, card: Path, workdir: Path, tag: str) -> Path:
    """A copy of ``card`` next to a copy of ``graph`` (named ``tag``), with that graph's sha256."""
    c = ModelCard.load(card)
    dst = workdir / f"{tag}.onnx"
    shutil.copyfile(graph, dst)
    c.onnx_file, c.onnx_sha256 = dst.name, sha256_of_file(dst)
    path = workdir / f"{tag}.yaml"
    c.save(path)
    return path


def _pose_gap(Ta: np.ndarray, Tb: np.ndarray) -> tuple[float, float]:
    """(rotation angle in deg, translation distance in m) between two 4x4 transforms; the angle
    from the chordal distance ||Ra - Rb||_F = 2 sqrt(2) sin(angle / 2) (arccos of the trace reads
    float rounding as ~3e-6 deg)."""
    chord = np.linalg.norm(Ta[:3, :3].astype(np.float64) - Tb[:3, :3].astype(np.float64)) / (2 * np.sqrt(2))
    ang = np.degrees(2 * np.arcsin(min(chord, 1.0)))
    return float(ang), float(np.linalg.norm(Ta[:3, 3].astype(np.float64) - Tb[:3, 3]))


def compare(graphs: list[Path], card: Path, frames: int, threads: int, preset: str) -> None:
    from crossi2p_training.sim import SimConfig, simulate_sample

    samples = [simulate_sample(SimConfig.preset(preset), 500 + i) for i in range(min(frames, 10))]
    cfg = RuntimeConfig(execution_provider="cpu", intra_op_threads=threads)
    tags = ["A", "B"]
    runtimes, rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for tag, g in zip(tags, graphs):
            top, total = _count_nodes(g)
            t0 = time.perf_counter()
            runtimes[tag] = CalibrationRuntime(_card_for(g, card, Path(tmp), tag), cfg)
            rows[tag] = {"graph": str(g), "nodes": total, "outer": top, "session_s": time.perf_counter() - t0,
                         "graph_ms": [], "total_ms": [], "T": []}
        for i in tqdm(range(frames + 3), desc="frames (interleaved)"):
            s = samples[i % len(samples)]
            for tag in (tags if i % 2 == 0 else tags[::-1]):
                est = runtimes[tag].estimate(s.image, s.points, s.camera)
                if i >= 3:
                    rows[tag]["graph_ms"].append(est.latency_ms["graph"])
                    rows[tag]["total_ms"].append(sum(est.latency_ms.values()))
                    rows[tag]["T"].append(est.T_cam_lidar)
    print(f"{frames} frames ({preset} simulator frames), {threads} threads, interleaved; card {card}")
    print(f"{'':3}{'nodes (all / outer)':>22}{'session creation':>19}{'graph median':>15}{'total median':>15}"
          f"{'total p90':>12}  graph")
    for tag in tags:
        r = rows[tag]
        print(f"{tag:3}{r['nodes']:>13,} / {r['outer']:<6,}{r['session_s']:>17.2f} s{np.median(r['graph_ms']):>12.1f} ms"
              f"{np.median(r['total_ms']):>12.1f} ms{np.percentile(r['total_ms'], 90):>9.1f} ms  {r['graph']}")
    gaps = [_pose_gap(a, b) for a, b in zip(rows["A"]["T"], rows["B"]["T"]) if a is not None and b is not None]
    if gaps:
        rot, trans = np.array(gaps).T
        print(f"A vs B estimates over {len(gaps)} frames: rotation max {rot.max():.2e} deg (median {np.median(rot):.1e}), "
              f"translation max {trans.max():.2e} m (median {np.median(trans):.1e})")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/crossi2p_cpu.yaml", help="model card")
    ap.add_argument("--frames", type=int, default=50, help="timed frames (median over these)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--sim-preset", default="small", help="simulator preset of the frames")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A.onnx", "B.onnx"),
                    help="two graphs side by side (behind copies of --model's card)")
    args = ap.parse_args()
    if args.compare:
        compare(list(args.compare), Path(args.model), args.frames, args.threads, args.sim_preset)
        return
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
