"""Forward latency of CrossI2PNet (PyTorch and onnxruntime) and of the preprocessing, batch 1.

    .venv/bin/python bench/bench_model_latency.py [--preset cpu] [--threads 2] [--runs 20]

Prints the parameter count and median / p90 milliseconds per frame. Numbers, not assertions:
timings depend on the machine and on whatever else runs on it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, runs: int) -> tuple[float, float]:
    for _ in range(3):
        fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(t)), float(np.percentile(t, 90))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    ap.add_argument("--threads", type=int, default=2, help="torch / onnxruntime intra-op threads")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    from crossi2p.camera import CameraModel
    from crossi2p.model_card import GRAPH_INPUTS
    from crossi2p.preprocess import PreprocessConfig, preprocess_frame
    from crossi2p_training.model import CrossI2PNet, ModelConfig, export_onnx
    from crossi2p_training.model.onnx_graph import example_inputs

    torch.set_num_threads(a.threads)
    pcfg = getattr(PreprocessConfig, a.preset)()
    net = CrossI2PNet(getattr(ModelConfig, a.preset)()).eval()
    hw = (pcfg.image_height, pcfg.image_width)
    print(f"preset {a.preset}: {net.num_parameters():,} parameters, image {hw[0]}x{hw[1]}, "
          f"{pcfg.num_points} points, {a.threads} threads")

    # preprocessing of a KITTI-sized frame (1242x375 image, 120k points)
    rng = np.random.default_rng(0)
    cam = CameraModel(np.array([[718.9, 0, 607.2], [0, 718.9, 185.2], [0, 0, 1]]), 1242, 375, "plumb_bob",
                      np.array([-0.05, 0.01, 0.0, 0.0, 0.0]))
    img = rng.integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    cloud = np.c_[rng.uniform(-60, 60, (120_000, 3)), rng.uniform(0, 1, 120_000)].astype(np.float32)
    med, p90 = _timed(lambda: preprocess_frame(img, cloud, cam, pcfg, np.random.default_rng(1)), a.runs)
    print(f"preprocess (1242x375, 120k points): median {med:.1f} ms, p90 {p90:.1f} ms")

    args = example_inputs(net, hw, pcfg.num_points)
    with torch.no_grad():
        med, p90 = _timed(lambda: net(*args[:3]), a.runs)
    print(f"torch forward: median {med:.1f} ms, p90 {p90:.1f} ms")

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        export_onnx(net, path, hw, pcfg.num_points)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feeds = dict(zip(GRAPH_INPUTS, (x.numpy() for x in args)))
        med, p90 = _timed(lambda: sess.run(None, feeds), a.runs)
    print(f"onnxruntime graph: median {med:.1f} ms, p90 {p90:.1f} ms")


if __name__ == "__main__":
    main()
