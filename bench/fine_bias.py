"""Measure the systematic bias of a checkpoint's matched pixels and of its translation.

For each simulated frame (no perturbation: the rig's own ``T_cam_lidar``), the network's
correspondences are compared with the ground-truth projection of their points. The frames are
drawn from tuning drives, which are neither training nor the held-out acceptance drives.

Printed and written to ``--json`` (a PNG of the binned offsets is written beside it):

- the mean and median per-frame translation error ``t_est - t_gt`` in the camera frame
  (x right, y down, z forward);
- per image axis, the least-squares slope of (matched pixel - principal point) against
  (true pixel - principal point). A slope < 1 means the matched pixels sit too close to the
  image centre, which makes the scene look smaller and moves the estimated camera back (+z);
- the mean pixel offset in bins of true ``u`` and ``v``.

Only correspondences within ``--max-error-px`` of their true pixel (matches, not outliers) and
with above-median weight count. Example (docs/benchmarks.md, section 1.1)::

    .venv/bin/python bench/fine_bias.py --model runs/crossi2p_cpu/checkpoints/last.pt --fine-peak-radius 2
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from crossi2p.geometry import transform_points
from crossi2p.preprocess import PreprocessConfig, preprocess_frame
from crossi2p_training.sim import SimConfig, simulate_drive
from crossi2p_training.train import load_checkpoint, model_from_checkpoint


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/fine_bias.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--model", required=True, help="training checkpoint (.pt)")
    p.add_argument("--fine-peak-radius", type=int, help="model.fine.peak_radius (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=900401, help="first tuning drive seed")
    p.add_argument("--drives", type=int, default=4)
    p.add_argument("--frames", type=int, default=5, help="LiDAR sweeps per drive")
    p.add_argument("--max-error-px", type=float, default=8.0, help="largest pixel error of a counted correspondence")
    p.add_argument("--json", default="out/fine_bias.json", help="summary JSON (the PNG is written beside it)")
    return p


def measure(net, pre: PreprocessConfig, samples) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: t_est - t_gt (F, 3); per correspondence: true pixel (N, 2), matched pixel (N, 2),
    weight (N,); and the principal point (2,) of the preprocessed image."""
    dt, true_uv, uv, weight = [], [], [], []
    for s in tqdm(samples, desc="frames", unit="frame"):
        f = preprocess_frame(s.image, s.points, s.camera, pre, np.random.default_rng(0))
        with torch.no_grad():
            out = net(torch.from_numpy(f.image)[None], torch.from_numpy(f.points)[None], torch.from_numpy(f.K)[None])
        T = s.T_cam_lidar
        true_uv.append(f.camera.project(transform_points(T, out.corr_xyz[0].double().numpy()))[0])
        uv.append(out.corr_uv[0].double().numpy())
        w = out.corr_weight[0].double().numpy()
        weight.append(w > np.median(w))
        dt.append(out.T_cam_lidar[0].double().numpy()[:3, 3] - T[:3, 3])
    return np.array(dt), np.concatenate(true_uv), np.concatenate(uv), np.concatenate(weight), f.K[:2, 2].astype(float)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ckpt = load_checkpoint(args.model)
        net = model_from_checkpoint(ckpt, args.fine_peak_radius).eval()
        pre = PreprocessConfig.from_dict(ckpt["config"]["preprocess"])
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        print(f"fine_bias: error: --model {args.model}: {exc}", file=sys.stderr)
        return 1
    torch.set_num_threads(2)
    sim = SimConfig.preset(ckpt["config"].get("data", {}).get("sim_preset", "small"))
    samples = [s for seed in range(args.seed, args.seed + args.drives)
               for s in simulate_drive(sim, seed, args.frames).paired_samples()]
    dt, g, uv, heavy, c = measure(net, pre, samples)
    d = uv - g
    keep = heavy & (np.linalg.norm(d, axis=1) < args.max_error_px)
    slope = [float(((g[keep, a] - c[a]) * (uv[keep, a] - c[a])).sum() / ((g[keep, a] - c[a]) ** 2).sum())
             for a in (0, 1)]
    H, W = pre.image_height, pre.image_width
    bins = {}
    for axis, name, size, n in ((0, "u", W, 8), (1, "v", H, 4)):
        edges = np.linspace(0, size, n + 1)
        rows = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            k = keep & (g[:, axis] >= lo) & (g[:, axis] < hi)
            rows.append({"from_px": float(lo), "to_px": float(hi), "count": int(k.sum()),
                         "mean_offset_px": float(d[k, axis].mean()) if k.any() else None})
        bins[name] = rows
    summary = {"model": args.model, "fine_peak_radius": int(net.fine_matcher.config.peak_radius),
               "drives": [args.seed, args.seed + args.drives - 1], "frames": len(dt),
               "correspondences_counted": int(keep.sum()),
               "translation_error_mean_m": dt.mean(0).tolist(), "translation_error_median_m": np.median(dt, 0).tolist(),
               "slope_u": slope[0], "slope_v": slope[1], "bins": bins}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    png = out.with_suffix(".png")
    _plot(bins, png)
    print(f"fine_bias: {len(dt)} frames, {int(keep.sum())} correspondences counted, peak radius "
          f"{summary['fine_peak_radius']}")
    print(f"  t_est - t_gt (camera x, y, z) mean {np.round(dt.mean(0), 3).tolist()} m, "
          f"median {np.round(np.median(dt, 0), 3).tolist()} m")
    print(f"  slope matched/true pixel offset from the principal point: u {slope[0]:.4f}, v {slope[1]:.4f}")
    for name, rows in bins.items():
        print(f"  mean offset along {name}: " + ", ".join(
            f"[{r['from_px']:.0f},{r['to_px']:.0f}) {r['mean_offset_px']:+.2f}" if r["count"] else
            f"[{r['from_px']:.0f},{r['to_px']:.0f}) -" for r in rows))
    print(f"  wrote {out}, {png}")
    return 0


def _plot(bins: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (name, rows) in zip(axes, bins.items()):
        mid = [(r["from_px"] + r["to_px"]) / 2 for r in rows if r["count"]]
        off = [r["mean_offset_px"] for r in rows if r["count"]]
        ax.bar(mid, off, width=0.8 * (rows[0]["to_px"] - rows[0]["from_px"]))
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel(f"true {name} (px)")
        ax.set_ylabel(f"matched - true {name} (px)")
    fig.suptitle("fine matches: mean pixel offset by image position")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
