"""Report folder of a bag replay: PNG plots, overlays before/after and a markdown page linking them."""
from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from crossi2p.metrics import registration_error  # noqa: E402
from crossi2p.overlay import draw_projected_points  # noqa: E402


def _series(result):
    t0 = result.frames[0].lidar_stamp_s
    t = np.array([f.lidar_stamp_s - t0 for f in result.frames])
    return t0, t


def plot_errors(result, path: Path) -> None:
    """Per-frame, fused and accepted refined RTE / RRE against time (a refinement run at the pair
    it ran after; offline replays, which record their runs)."""
    t0, t = _series(result)
    runs = [r for r in getattr(result, "refinements", []) if r is not None and r.result.accepted
            and 0 < r.pairs_processed <= len(result.frames)]
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for ax, attr, label in ((axes[0], "rte_m", "RTE [m]"), (axes[1], "rre_geodesic_deg", "RRE geodesic [deg]")):
        fr = [(ti, getattr(registration_error(f.T_frame, f.T_gt), attr))
              for ti, f in zip(t, result.frames) if f.T_frame is not None]
        fu = [(ti, getattr(registration_error(f.T_fused, f.T_gt), attr))
              for ti, f in zip(t, result.frames) if f.T_fused is not None]
        rf = [(t[r.pairs_processed - 1], getattr(registration_error(r.result.T_cam_lidar,
                                                                    result.frames[r.pairs_processed - 1].T_gt), attr))
              for r in runs]
        if fr:
            ax.scatter(*zip(*fr), s=8, alpha=0.5, label="per frame")
        if fu:
            ax.plot(*zip(*fu), color="C3", lw=2, label="fused (converged)")
        if rf:
            ax.scatter(*zip(*rf), marker="*", s=120, color="C2", zorder=3, label="refined (accepted runs)")
        if not (fr or fu or rf):
            ax.text(0.5, 0.5, "no valid estimate to plot", transform=ax.transAxes, ha="center", va="center")
        ax.set_yscale("symlog", linthresh=0.005 if attr == "rte_m" else 0.01)   # centimetres and hundredths of a degree visible
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if result.knock is not None:
            ax.axvline(result.knock.at_s - t0, color="k", ls="--", label="knock")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="upper right")
    axes[1].set_xlabel("bag time [s]")
    fig.suptitle("Extrinsic error against ground truth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_components(result, path: Path) -> None:
    """Fused translation and rotation (rotation vector) with 2-sigma bands, ground truth dashed."""
    _, t = _series(result)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
    sel = [i for i, f in enumerate(result.frames) if f.T_fused is not None]
    for k, name in enumerate("xyz"):
        for row, (component, unit, sig) in enumerate((
                (lambda T: T[:3, 3], "m", lambda C: np.sqrt(np.diag(C)[:3])),
                (lambda T: Rotation.from_matrix(T[:3, :3]).as_rotvec(), "rad", lambda C: np.sqrt(np.diag(C)[3:])))):
            ax = axes[row, k]
            gt = np.array([component(f.T_gt)[k] for f in result.frames])
            ax.plot(t, gt, "k--", lw=1, label="ground truth")
            if sel:
                est = np.array([component(result.frames[i].T_fused)[k] for i in sel])
                sd = np.array([sig(result.frames[i].covariance)[k] if result.frames[i].covariance is not None
                               else 0.0 for i in sel])
                ax.plot(t[sel], est, color="C0", label="fused")
                ax.fill_between(t[sel], est - 2 * sd, est + 2 * sd, color="C0", alpha=0.25, label="±2σ")
            ax.set_title(f"{'translation' if row == 0 else 'rotation vector'} {name} [{unit}]", fontsize=9)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("bag time [s]")
    fig.suptitle("Fused T_cam_lidar components (after convergence) vs ground truth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_inliers(result, path: Path) -> None:
    """Per-frame inlier ratio and confidence of the graph."""
    _, t = _series(result)
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(t, [f.inlier_ratio for f in result.frames], ".", label="inlier ratio")
    ax.plot(t, [f.confidence for f in result.frames], ".", alpha=0.6, label="confidence")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("bag time [s]")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_overlay(sample, T, path: Path) -> None:
    cam, sweep = sample
    drawn = draw_projected_points(cam.image_rgb, sweep.points, cam.camera, T)
    cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def write_report(result, summary: dict, out_dir: Path) -> Path:
    """Write plots, overlays and report.md into ``out_dir``; returns the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_errors(result, out_dir / "errors.png")
    plot_components(result, out_dir / "components.png")
    plot_inliers(result, out_dir / "inliers.png")
    images = []
    first_valid = next((f for f in result.frames if f.T_frame is not None), None)
    if first_valid is not None and result.first_sample is not None:
        _write_overlay(result.first_sample, first_valid.T_frame, out_dir / "overlay_before.png")
        images.append(("Before: the first per-frame estimate (first pair)", "overlay_before.png"))
    final = result.frames[-1]
    if final.T_fused is not None and result.last_sample is not None:
        _write_overlay(result.last_sample, final.T_fused, out_dir / "overlay_after.png")
        images.append(("After: the final fused estimate (last pair)", "overlay_after.png"))
    if result.last_sample is not None:
        _write_overlay(result.last_sample, final.T_gt, out_dir / "overlay_ground_truth.png")
        images.append(("Ground truth (last pair)", "overlay_ground_truth.png"))
    run = result.refined or (result.refinements[-1] if result.refinements else None)
    if run is not None and run.pairs:  # the newest pair of its window, before and after
        sample = (run.pairs[-1].image, run.pairs[-1].lidar)
        r = run.result
        _write_overlay(sample, r.T_start, out_dir / "overlay_refine_before.png")
        images.append((f"Before refinement: its start, the {run.start_stage} estimate (newest pair of its window)",
                       "overlay_refine_before.png"))
        after = r.T_cam_lidar if r.accepted else r.T_searched
        if after is not None:
            _write_overlay(sample, after, out_dir / "overlay_refine_after.png")
            images.append(("After refinement" + ("" if r.accepted else f" (REJECTED: {r.reason}; not used)"),
                           "overlay_refine_after.png"))

    def row(k):
        v = summary.get(k)
        if v is None:                                   # a stage that did not run, a figure with no value
            v = "n/a (no --prior)" if k == "rejected_outside_prior" else "n/a"
        return f"| `{k}` | {v:.4f} |" if isinstance(v, float) else f"| `{k}` | {v} |"

    keys = ["frames", "frames_valid", "frames_to_converge", "time_to_converge_s", "fused_rte_m",
            "fused_rre_geodesic_deg", "fused_rre_euler_sum_deg", "acc", "rte_m_median",
            "rre_geodesic_deg_median", "rre_euler_sum_deg_median", "latency_ms_median", "refined_rte_m",
            "refined_rre_geodesic_deg", "frames_to_refine", "refinement_runs", "refinement_accepted_runs",
            "rejected_outside_prior", "rejected_direction_of_travel", "direction_of_travel_checked"]
    if "drift_detection_delay_s" in summary:
        keys += ["knock_at_s", "drift_detection_delay_s"]
    mode = summary.get("mode", "offline")
    if "live" in summary:
        mode += f" ({summary['live']['pacing']} pacing)"
    lines = [f"# Bag replay report: {summary.get('bag', '')}", "", f"Model: `{summary.get('model', '')}`; "
             f"source: {summary.get('source', 'rosbag2')}; mode: {mode}; ground truth: "
             f"{summary.get('ground_truth', '')}.", "",
             "| figure | value |", "|---|---|", *[row(k) for k in keys], "",
             f"Newest estimate ({summary.get('estimate_kind')}): RTE {_fmt(summary.get('estimate_rte_m'))} m, "
             f"RRE {_fmt(summary.get('estimate_rre_geodesic_deg'))} deg.", "",
             "Per-frame rows: [frames.csv](frames.csv); all figures: [summary.json](summary.json).", "",
             "![errors](errors.png)", "", "![components](components.png)", "", "![inliers](inliers.png)", ""]
    for title, name in images:
        lines += [f"## {title}", "", f"![{name}]({name})", ""]
    if "live" in summary:
        lv = summary["live"]
        lines += ["## Live replay: what the node published", "",
                  f"{lv['messages_published']} messages played with /clock ({lv['pacing']} pacing, rate "
                  f"{lv['rate']}); the node published {lv['frame_estimates']} frame estimates, "
                  f"{lv['pose_messages']} poses, {lv['tf_static_messages']} /tf_static and "
                  f"{lv['diagnostics_messages']} /diagnostics messages.", "",
                  f"Last /tf_static against the ground truth: RTE {_fmt(lv.get('tf_static_rte_m'))} m, "
                  f"RRE {_fmt(lv.get('tf_static_rre_geodesic_deg'))} deg.", "",
                  "| node counter | value |", "|---|---|",
                  *[f"| `{k}` | {v} |" for k, v in lv["node_counters"].items()], ""]
    if summary.get("read_errors"):
        lines += ["## What could not be read", "", *[f"- {e}" for e in summary["read_errors"]], ""]
    md = out_dir / "report.md"
    md.write_text("\n".join(lines))
    return md
