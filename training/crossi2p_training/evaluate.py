"""``crossi2p-evaluate``: a trained model (checkpoint or exported ONNX) on a dataset under a protocol.

Examples::

    # a checkpoint on KITTI Odometry sequence 09 under the global protocol
    crossi2p-evaluate --model runs/crossi2p_cpu/checkpoints/last.pt --kitti data/sequences/09 \\
        --protocol global --seed 0 --json out/eval_09.json
    # a KITTI raw drive (its calibration files in the date folder above it)
    crossi2p-evaluate --model last.pt --kitti data/2011_09_26/2011_09_26_drive_0005_sync --json out/eval_raw.json
    # the exported graph (its model card models/<name>.yaml lies beside it) on a simulated drive
    crossi2p-evaluate --model models/crossi2p_cpu.onnx --sim-seed 7 --frames 50 --protocol refine \\
        --json out/eval_sim.json
    # nuScenes-format folder / rosbag2 recording
    crossi2p-evaluate --model last.pt --nuscenes data/nuscenes --json out/eval_nus.json
    crossi2p-evaluate --model last.pt --bag drive_bag --json out/eval_bag.json

Per frame ``i`` the protocol perturbation is drawn from ``numpy.random.default_rng([seed, i])``
(``crossi2p.metrics.sample_perturbation``) and applied to the captured cloud
(``points' = T_pert @ points``, ground truth ``T_cam_lidar @ inv(T_pert)``); the estimator then
preprocesses the frame itself, exactly as the deployed runtime does (``CalibrationRuntime`` for
ONNX; the same steps in torch for a checkpoint), and its estimate is scored with
``crossi2p.metrics``. Under ``refine`` the prior's error range is ``--refine-max-deg`` per Euler
angle and ``--refine-max-m`` per axis (default 20 deg / 1.5 m, RegNet/LCCNet).

Refinement (``refine`` protocol, ``--refine-frames N``, default 10; 0: none): up to N evenly
spaced frames are also refined alone, training-free (``crossi2p.refinement``), from their prior,
searching a box that holds every prior the protocol can draw (rotation ``min(3 D, 180)`` deg,
translation ``M`` per axis); a rejected refinement scores its start (the prior). Its errors give
``refined_rte_m_median`` / ``refined_rre_geodesic_deg_median`` (3-9 s a frame), beside the same
frames' priors' ``prior_rte_m_median`` / ``prior_rre_geodesic_deg_median`` (the baseline).

Written beside ``--json OUT`` (``OUT`` = ``<dir>/<stem>.json``):

- ``<stem>.json``: ``summarize_errors`` keys (``frames``, ``acc``, ``rte_m_median``,
  ``rte_m_mean``, ``rte_m_std``, ``rre_euler_sum_deg_*``, ``rre_geodesic_deg_*``) plus
  ``latency_ms_median``, the refinement's ``refined_rte_m_median`` /
  ``refined_rre_geodesic_deg_median`` and ``prior_*`` (null under ``global``) and the provenance (model, data,
  protocol, seed, command);
- ``<stem>_frames.csv``: one row per frame (errors, latency, validity, confidence);
- ``<stem>_recall.png``: registration recall against the RRE threshold (RTE < 2 m) and against
  the RTE threshold (RRE < 5 deg);
- ``<stem>_overlay_{best,median,worst}.png``: those frames' points projected with the estimate
  (top) and with the ground truth (bottom).

Exit codes: 0 evaluated; 2 a usage error (one line: an unknown flag, a flag's value out of its
range, flags that do not go together, not exactly one data source); 1 bad input (one line: a
model or data that cannot be read, an output that cannot be written); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse when the cores are shared: on 2 cores with one
# other busy process, a cpu-config training step took 15-50 s instead of ~3.3 s. A short spin
# (GNU OpenMP, torch's runtime on Linux) keeps the idle speed (2.3 s/step vs 2.1 s spinning
# fully, 2.55 s with OMP_WAIT_POLICY=PASSIVE) and the shared one (3.5 s). Set before torch loads
# its OpenMP runtime; explicit GOMP_SPINCOUNT / OMP_WAIT_POLICY settings are kept.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

import argparse
import csv
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossi2p.camera import CameraModel
from crossi2p.cli import ArgumentParser, UsageError, check_writable
from crossi2p.geometry import invert_transform, transform_points
from crossi2p.interrupt import exit_130_on_ctrl_c, run_interruptibly
from crossi2p.metrics import (ACC_RRE_DEG, ACC_RTE_M, RegistrationError, registration_error,
                              registration_recall, sample_perturbation, sample_refine_perturbation,
                              summarize_errors)
from crossi2p.sample import Sample, readable_samples

__all__ = ["Estimate", "CheckpointEstimator", "OnnxEstimator", "load_estimator", "evaluate_source",
           "write_report", "main"]


@dataclass
class Estimate:
    """One frame's result from an estimator."""

    T_cam_lidar: np.ndarray | None
    """(4, 4) estimate, or None when the estimator could not process the frame."""
    valid: bool = True
    """The estimator's own validity flag (confidence/correspondence checks)."""
    confidence: float = 0.0
    """The estimator's confidence in [0, 1]."""
    latency_ms: float = 0.0
    """Preprocessing + graph + post-processing, milliseconds."""
    reason: str = ""
    """Why the frame is invalid (empty when valid)."""


# ================================================================================ estimators
class CheckpointEstimator:
    """A training checkpoint, run in torch with the runtime's steps: preprocess (fixed seed)
    -> network -> re-orthonormalised ``T_cam_lidar``."""

    def __init__(self, path: str | Path, device: str = "cpu", seed: int = 0, fine_peak_radius: int | None = None):
        import torch

        from crossi2p.preprocess import PreprocessConfig
        from crossi2p_training.train import load_checkpoint, model_from_checkpoint

        self.torch = torch
        ckpt = load_checkpoint(path)
        self.config_dict = ckpt["config"]
        self.model = model_from_checkpoint(ckpt, fine_peak_radius).to(device).eval()
        self.preprocess_config = PreprocessConfig.from_dict(self.config_dict["preprocess"])
        self.device, self.seed = device, seed
        self.step = int(ckpt.get("step", 0))
        self.name = str(self.config_dict.get("name", Path(path).stem))

    def estimate(self, image: np.ndarray, points: np.ndarray, camera: CameraModel,
                 T_prior: np.ndarray | None = None) -> Estimate:
        from crossi2p.preprocess import preprocess_frame

        torch = self.torch
        t0 = time.perf_counter()
        try:
            frame = preprocess_frame(image, points, camera, self.preprocess_config,
                                     np.random.default_rng(self.seed))
        except ValueError as exc:
            return Estimate(None, valid=False, reason=f"bad input: {exc}")
        dev = self.device
        prior = np.eye(4) if T_prior is None else T_prior
        with torch.no_grad():
            out = self.model(torch.from_numpy(frame.image)[None].to(dev), torch.from_numpy(frame.points)[None].to(dev),
                             torch.from_numpy(frame.K)[None].to(dev),
                             torch.from_numpy(prior.astype(np.float32))[None].to(dev),
                             torch.tensor([0.0 if T_prior is None else 1.0], device=dev))
        T = _orthonormalise(out.T_cam_lidar[0].double().cpu().numpy())
        conf = float(out.confidence.reshape(-1)[0])
        return Estimate(T, valid=T is not None, confidence=conf, latency_ms=1e3 * (time.perf_counter() - t0),
                        reason="" if T is not None else "non-finite estimate")


class OnnxEstimator:
    """An exported graph through the runtime (``crossi2p.runtime.CalibrationRuntime``), which
    loads the model card ``<name>.yaml`` beside ``<name>.onnx`` and checks the graph's sha256."""

    def __init__(self, path: str | Path, seed: int = 0, max_lever_arm_m: float | None = None):
        """``max_lever_arm_m``: the runtime's bound on the sensors' distance (None: its default;
        0: off, for the ``global`` protocol, which moves the cloud up to 14 m away)."""
        from crossi2p.runtime import CalibrationRuntime, RuntimeConfig

        path = Path(path)
        card = path if path.suffix in (".yaml", ".yml") else path.with_suffix(".yaml")
        config = RuntimeConfig(execution_provider="cpu", seed=seed)
        if max_lever_arm_m is not None:
            config.max_lever_arm_m = max_lever_arm_m
        self.runtime = CalibrationRuntime(card, config)
        self.preprocess_config = self.runtime.preprocess_config
        self.name = self.runtime.card.name

    def estimate(self, image, points, camera, T_prior=None) -> Estimate:
        r = self.runtime.estimate(image, points, camera, T_prior)
        return Estimate(r.T_cam_lidar, valid=r.valid, confidence=r.confidence,
                        latency_ms=float(sum(r.latency_ms.values())), reason=r.reason)


def _orthonormalise(T: np.ndarray) -> np.ndarray | None:
    if not np.all(np.isfinite(T)):
        return None
    U, _, Vt = np.linalg.svd(T[:3, :3])
    out = np.eye(4)
    out[:3, :3] = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    out[:3, 3] = T[:3, 3]
    return out


def load_estimator(path: str | Path, device: str = "cpu", fine_peak_radius: int | None = None,
                   protocol: str | None = None):
    """``.pt``/``.pth`` checkpoint -> CheckpointEstimator; ``.onnx`` (or its ``.yaml`` card) -> OnnxEstimator.
    ``fine_peak_radius`` applies to checkpoints only (an exported graph has its value built in).
    ``protocol``: under ``global`` the runtime's lever-arm bound (``RuntimeConfig.max_lever_arm_m``)
    is off: that protocol moves the cloud up to 10 m along two axes, so a right estimate puts the
    sensors that far apart."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--model {path}: file not found")
    if path.suffix in (".onnx", ".yaml", ".yml"):
        if fine_peak_radius is not None:
            raise ValueError(f"--fine-peak-radius: applies to checkpoints; {path} has its value built in "
                             "(crossi2p-export --fine-peak-radius)")
        return OnnxEstimator(path, max_lever_arm_m=0.0 if protocol == "global" else None)
    return CheckpointEstimator(path, device=device, fine_peak_radius=fine_peak_radius)


# ================================================================================ evaluation
@dataclass
class FrameResult:
    """One evaluated frame (kept for the CSV and the overlays)."""

    index: int
    frame_id: str
    error: RegistrationError
    estimate: Estimate
    T_gt: np.ndarray
    T_pert: np.ndarray
    extra: dict = field(default_factory=dict)
    T_prior: np.ndarray | None = None
    """(4, 4) the prior handed to the estimator (``refine`` protocol), else None."""




def evaluate_source(estimator, source, protocol: str, seed: int, progress: bool = True,
                    refine_max_deg: float = 20.0, refine_max_m: float = 1.5,
                    read_errors: list[str] | None = None) -> list[FrameResult]:
    """Run the estimator on every frame of ``source`` under ``protocol`` (module docstring);
    ``refine_max_*``: the ``refine`` protocol's prior error range. A frame that cannot be read (a
    corrupt scan or image, a missing file) is skipped and its reason appended to ``read_errors``.

    Raises:
        ValueError: no frame could be read (the first frame's reason: a missing or malformed
            calibration fails every frame), or a frame has no ground truth.
    """
    from tqdm import tqdm

    results, errors = [], []
    frames = readable_samples(source, errors)
    for i, sample in tqdm(frames, total=len(source), desc=f"evaluating ({protocol})", disable=not progress,
                          unit="frame"):
        if sample.T_cam_lidar is None:
            raise ValueError(f"frame {i} ({sample.frame_id}): the source has no ground truth")
        rng = np.random.default_rng([seed, i])
        pert = (sample_refine_perturbation(rng, sample.T_cam_lidar, refine_max_deg, refine_max_m)
                if protocol == "refine" else sample_perturbation(protocol, rng, sample.T_cam_lidar))
        points = sample.points.copy()
        points[:, :3] = transform_points(pert.T_pert, sample.points[:, :3].astype(np.float64)).astype(np.float32)
        T_gt = sample.T_cam_lidar @ invert_transform(pert.T_pert)
        est = estimator.estimate(sample.image, points, sample.camera, pert.T_prior)
        # A frame the estimator cannot process is scored with its starting point (the prior, or
        # the identity without one): it stays in the figures as a failure.
        fallback = pert.T_prior if pert.T_prior is not None else np.eye(4)
        err = registration_error(est.T_cam_lidar if est.T_cam_lidar is not None else fallback, T_gt)
        results.append(FrameResult(i, sample.frame_id, err, est, T_gt, pert.T_pert, T_prior=pert.T_prior))
    if errors and not results:
        raise ValueError(f"no frame could be read ({errors[0]}" + (f"; and {len(errors) - 1} more frames)"
                                                                   if len(errors) > 1 else ")"))
    if read_errors is not None:
        read_errors.extend(errors)
    return results


def refine_results(results: list[FrameResult], source, frames: int, max_deg: float, max_m: float,
                   progress: bool = True, config=None) -> None:
    """Refine up to ``frames`` evenly spaced frames of a ``refine`` evaluation alone from their prior
    (module docstring); their errors go into ``FrameResult.extra`` (``refined_rte_m``,
    ``refined_rre_geodesic_deg``: of the accepted result, else of the prior it keeps;
    ``prior_rte_m``, ``prior_rre_geodesic_deg``: the prior's, the baseline; ``refine_accepted``,
    ``refine_reason``, ``refine_time_s``)."""
    from dataclasses import replace

    from tqdm import tqdm

    from crossi2p.refinement import RefinementConfig, prepare_frame, refine_extrinsic

    if frames <= 0 or not results or results[0].T_prior is None:
        return
    cfg = replace(config or RefinementConfig(), max_rotation_deg=min(3.0 * max_deg, 180.0), max_translation_m=max_m)
    picks = sorted({int(k) for k in np.linspace(0, len(results) - 1, min(frames, len(results)))})
    for k in tqdm(picks, desc="refining (training-free)", disable=not progress, unit="frame"):
        r = results[k]
        sample: Sample = source[r.index]
        T_prior = r.T_prior
        points = sample.points.copy()
        points[:, :3] = transform_points(r.T_pert, sample.points[:, :3].astype(np.float64)).astype(np.float32)
        t0 = time.perf_counter()
        res = refine_extrinsic([prepare_frame(sample.image, points, sample.camera, T_prior, cfg)], T_prior, cfg)
        err, start = registration_error(res.T_cam_lidar, r.T_gt), registration_error(T_prior, r.T_gt)
        r.extra.update(refined_rte_m=err.rte_m, refined_rre_geodesic_deg=err.rre_geodesic_deg,
                       prior_rte_m=start.rte_m, prior_rre_geodesic_deg=start.rre_geodesic_deg,
                       refine_accepted=bool(res.accepted), refine_reason=res.reason,
                       refine_time_s=time.perf_counter() - t0)


def summarize_results(results: list[FrameResult]) -> dict:
    """``summarize_errors`` + ``latency_ms_median`` + ``failed_frames`` (no estimate) + ``valid_fraction``
    + the refinement's ``refined_rte_m_median``, ``refined_rre_geodesic_deg_median`` (a refused
    refinement keeps its prior, so compare with ``prior_rte_m_median``,
    ``prior_rre_geodesic_deg_median``: the same frames' priors), ``refined_frames``,
    ``refine_accepted_fraction`` (null when no frame was refined)."""
    summary = summarize_errors([r.error for r in results])
    lat = [r.estimate.latency_ms for r in results if r.estimate.T_cam_lidar is not None]
    summary["latency_ms_median"] = float(np.median(lat)) if lat else None
    summary["failed_frames"] = int(sum(r.estimate.T_cam_lidar is None for r in results))
    summary["valid_fraction"] = float(np.mean([r.estimate.valid for r in results])) if results else 0.0
    refined = [r.extra for r in results if "refined_rte_m" in r.extra]
    summary.update(
        refined_rte_m_median=float(np.median([e["refined_rte_m"] for e in refined])) if refined else None,
        refined_rre_geodesic_deg_median=(float(np.median([e["refined_rre_geodesic_deg"] for e in refined]))
                                         if refined else None),
        prior_rte_m_median=float(np.median([e["prior_rte_m"] for e in refined])) if refined else None,
        prior_rre_geodesic_deg_median=(float(np.median([e["prior_rre_geodesic_deg"] for e in refined]))
                                       if refined else None),
        refined_frames=len(refined),
        refine_accepted_fraction=float(np.mean([e["refine_accepted"] for e in refined])) if refined else None)
    return summary


def _rank_score(r: FrameResult) -> float:
    """Ordering for best/median/worst: the larger of RTE and RRE relative to the Acc thresholds."""
    return max(r.error.rte_m / ACC_RTE_M, r.error.rre_euler_sum_deg / ACC_RRE_DEG)


def write_report(results: list[FrameResult], summary: dict, json_path: str | Path, source=None) -> dict:
    """Write the JSON summary, per-frame CSV, recall PNG and best/median/worst overlays; returns
    ``{kind: path}`` of what was written."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    stem = json_path.with_suffix("")
    written = {"json": json_path}
    json_path.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")

    csv_path = Path(f"{stem}_frames.csv")
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "frame_id", "rte_m", "rre_geodesic_deg", "rre_euler_sum_deg", "success", "valid",
                    "confidence", "latency_ms", "reason", "refined_rte_m", "refined_rre_geodesic_deg",
                    "refine_accepted", "refine_reason"])
        for r in results:
            e, x = r.error, r.extra
            refined = [f"{x['refined_rte_m']:.6g}", f"{x['refined_rre_geodesic_deg']:.6g}", int(x["refine_accepted"]),
                       x["refine_reason"]] if "refined_rte_m" in x else ["", "", "", ""]
            w.writerow([r.index, r.frame_id, f"{e.rte_m:.6g}", f"{e.rre_geodesic_deg:.6g}",
                        f"{e.rre_euler_sum_deg:.6g}", int(e.success), int(r.estimate.valid),
                        f"{r.estimate.confidence:.4g}", f"{r.estimate.latency_ms:.3f}", r.estimate.reason, *refined])
    written["csv"] = csv_path
    written["recall"] = _plot_recall(results, Path(f"{stem}_recall.png"), summary)
    if source is not None and results:
        written.update(_write_overlays(results, source, stem))
    return written


def _plot_recall(results: list[FrameResult], path: Path, summary: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors = [r.error for r in results]
    rre_t = np.linspace(0.0, 20.0, 201)
    rte_t = np.linspace(0.0, 5.0, 201)
    rte = np.array([e.rte_m for e in errors])
    eul = np.array([e.rre_euler_sum_deg for e in errors])
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(rre_t, registration_recall(errors, rre_t), lw=2)
    ax[0].axvline(ACC_RRE_DEG, color="grey", ls="--", lw=1)
    ax[0].set_xlabel("RRE threshold (Euler sum, deg)")
    ax[0].set_ylabel(f"registration recall (RTE < {ACC_RTE_M:g} m)")
    ax[1].plot(rte_t, [np.mean((rte < t) & (eul < ACC_RRE_DEG)) if len(errors) else 0 for t in rte_t], lw=2)
    ax[1].axvline(ACC_RTE_M, color="grey", ls="--", lw=1)
    ax[1].set_xlabel("RTE threshold (m)")
    ax[1].set_ylabel(f"registration recall (RRE < {ACC_RRE_DEG:g} deg)")
    for a in ax:
        a.set_ylim(0, 1.02)
        a.grid(alpha=0.3)
    fig.suptitle(f"{summary.get('model', '')} {summary.get('protocol', '')}: {summary.get('frames', 0)} frames, "
                 f"Acc {summary.get('acc', 0.0):.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _banner(width: int, text: str):
    import cv2

    scale = max(0.4, min(0.7, width / 1400))
    h = int(28 * scale / 0.5)
    bar = np.zeros((h, width, 3), np.uint8)
    cv2.putText(bar, text, (6, int(h * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def _write_overlays(results: list[FrameResult], source, stem: Path) -> dict:
    import cv2

    from crossi2p.overlay import draw_projected_points

    order = sorted(range(len(results)), key=lambda k: _rank_score(results[k]))
    picks = {"best": order[0], "median": order[len(order) // 2], "worst": order[-1]}
    out = {}
    for kind, k in picks.items():
        r = results[k]
        sample = source[r.index]
        pts = sample.points.copy()
        pts[:, :3] = transform_points(r.T_pert, sample.points[:, :3].astype(np.float64)).astype(np.float32)
        image, camera = sample.image, sample.camera
        if camera.width < 800:  # small images: draw at twice the size so the points stay visible
            image = cv2.resize(image, (2 * camera.width, 2 * camera.height), interpolation=cv2.INTER_LINEAR)
            camera = camera.resized(2 * camera.width, 2 * camera.height)
        T_est = r.estimate.T_cam_lidar
        top = draw_projected_points(image, pts, camera, T_est) if T_est is not None else image.copy()
        bottom = draw_projected_points(image, pts, camera, r.T_gt)
        e, w = r.error, image.shape[1]
        canvas = np.vstack([
            _banner(w, f"{kind} frame {r.frame_id}: estimate  RTE {e.rte_m:.2f} m  RRE {e.rre_geodesic_deg:.2f} deg "
                       f"(Euler sum {e.rre_euler_sum_deg:.2f})" + ("" if T_est is not None else "  [no estimate]")),
            top, _banner(w, "ground truth"), bottom])
        path = Path(f"{stem}_overlay_{kind}.png")
        cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        out[f"overlay_{kind}"] = path
    return out


# ================================================================================ CLI
def _build_source(args, estimator):
    from crossi2p_training.data import (KittiSource, NuScenesSource, Rosbag2Source, SampleFolderSource,
                                        SubsetSource)

    if args.sim_seed is not None:
        from crossi2p_training.sim import SimConfig, simulate_drive

        preset = args.sim_preset or getattr(estimator, "config_dict", {}).get("data", {}).get("sim_preset", "small")
        seeds = range(args.sim_seed, args.sim_seed + args.sim_drives)
        samples = [s for seed in seeds
                   for s in simulate_drive(SimConfig.preset(preset), seed, args.frames or 20).paired_samples()]
        return samples, (f"{args.sim_drives} simulated drive(s) preset={preset} seeds={seeds.start}..{seeds.stop - 1} "
                         f"frames={len(samples)}")
    if args.kitti:
        src, what = KittiSource(args.kitti), "KITTI " + " ".join(args.kitti)
    elif args.nuscenes:
        src, what = NuScenesSource(args.nuscenes), "nuScenes " + " ".join(args.nuscenes)
    elif args.samples:
        src = SampleFolderSource(args.samples)
        what = f"{len(src)} sample folder(s) under " + " ".join(args.samples)
    else:
        src = Rosbag2Source(args.bag, image_topic=args.image_topic, info_topic=args.camera_info_topic,
                            lidar_topic=args.points_topic, slop_s=args.slop_s, progress=True)
        what = "rosbag2 " + " ".join(args.bag)
    return SubsetSource(src, args.frames or 0), what


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="crossi2p-evaluate",
        description="Evaluate a checkpoint (.pt) or an exported model (.onnx + model card .yaml beside it) "
                    "on a dataset under the global or refine protocol; prints and writes RRE/RTE "
                    "(mean, std, median), Acc and latency, a recall curve, a per-frame CSV and overlays.",
        epilog=__doc__.split("Per frame")[0].split("Examples::")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint .pt, exported .onnx (its card <name>.yaml beside it), "
                                                  "or that model card .yaml")
    p.add_argument("--kitti", nargs="+", metavar="DIR",
                   help="KITTI Odometry sequence folder(s) (.../sequences/NN) and/or KITTI raw drive folder(s) "
                        "(<date>/<date>_drive_XXXX_sync, calibration in <date>/; or a date folder holding one drive)")
    p.add_argument("--nuscenes", nargs="+", metavar="DIR", help="nuScenes-format folder(s)")
    p.add_argument("--bag", nargs="+", metavar="DIR", help="rosbag2 recording(s) (ground truth from /tf_static)")
    p.add_argument("--image-topic", default="/camera/image_raw",
                   help="--bag: sensor_msgs/Image or CompressedImage topic (default %(default)s)")
    p.add_argument("--camera-info-topic", default="/camera/camera_info",
                   help="--bag: sensor_msgs/CameraInfo topic (default %(default)s)")
    p.add_argument("--points-topic", default="/lidar/points",
                   help="--bag: sensor_msgs/PointCloud2 topic (default %(default)s)")
    p.add_argument("--samples", nargs="+", metavar="DIR",
                   help="sample folders, searched recursively: a calib.yaml naming image_file and points_file beside "
                        "it (the layout of the shared real frames), one frame each with its ground truth")
    p.add_argument("--sim-seed", type=int, metavar="S", help="simulate a drive with this seed")
    p.add_argument("--sim-drives", type=int, default=1, metavar="K",
                   help="with --sim-seed: K independent drives (seeds S .. S+K-1), --frames N each")
    p.add_argument("--sim-preset", help="simulator preset for --sim-seed (default: the checkpoint's, else small)")
    p.add_argument("--frames", type=int, default=0, metavar="N",
                   help="simulated frames per drive (default 20), or at most N evenly spaced frames of a dataset (0: all)")
    p.add_argument("--protocol", choices=("global", "refine"), default="global",
                   help="perturbation protocol: global (the cloud turned by any angle about the camera's vertical and moved "
                        "up to 10 m along x and z, no prior) or refine "
                        "(a prior given, off by at most --refine-max-deg / --refine-max-m) (default %(default)s)")
    p.add_argument("--refine-max-deg", type=float, metavar="D",
                   help="refine protocol: prior rotation error, uniform per Euler angle in [-D, D] (default 20)")
    p.add_argument("--refine-max-m", type=float, metavar="M",
                   help="refine protocol: prior translation error, uniform per axis in [-M, M] (default 1.5)")
    p.add_argument("--refine-frames", type=int, default=10, metavar="N",
                   help="refine protocol: also refine up to N evenly spaced frames alone from their prior, "
                        "training-free (3-9 s each, by image size; default 10, 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-frame perturbations (default %(default)s)")
    p.add_argument("--json", required=True, metavar="OUT", help="summary JSON; CSV and PNGs are written beside it")
    p.add_argument("--slop-s", type=float, default=0.05, help="--bag: largest camera/LiDAR stamp difference, seconds (default %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device for checkpoints (cpu, cuda; default %(default)s)")
    p.add_argument("--fine-peak-radius", type=int, metavar="R",
                   help="checkpoints: fine matching mean over the (2R+1)^2 cells around each window's peak "
                        "(model.fine.peak_radius; default: the checkpoint's)")
    p.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@exit_130_on_ctrl_c("crossi2p-evaluate")  # results are written at the end: none after Ctrl-C
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # flags first (exit 2): the model takes seconds to load
        chosen = [n for n, v in (("--kitti", args.kitti), ("--nuscenes", args.nuscenes), ("--bag", args.bag),
                                 ("--samples", args.samples), ("--sim-seed", args.sim_seed)) if v not in (None, [])]
        if len(chosen) != 1:
            raise UsageError(f"give exactly one data source (--kitti, --nuscenes, --bag, --samples or --sim-seed); "
                             f"got {', '.join(chosen) or 'none'}")
        if args.sim_drives < 1:
            raise UsageError(f"--sim-drives: expected >= 1, got {args.sim_drives}")
        if args.protocol != "refine" and (args.refine_max_deg is not None or args.refine_max_m is not None):
            raise UsageError("--refine-max-deg / --refine-max-m: apply to --protocol refine only")
        if not args.bag:                 # the rosbag2-only flags: refused elsewhere, as the protocol's are
            given = [f"--{name.replace('_', '-')}" for name in ("image_topic", "camera_info_topic", "points_topic",
                                                                "slop_s")
                     if getattr(args, name) != parser.get_default(name)]
            if given:
                raise UsageError(f"{', '.join(given)}: apply to --bag only (the other sources come paired)")
        check_writable(Path(args.json), "--json")   # before the run: results are written at its end
        if args.fine_peak_radius is not None and args.fine_peak_radius < 0:
            raise UsageError(f"--fine-peak-radius: expected >= 0 fine cells, got {args.fine_peak_radius}")
        for flag, value in (("--frames", args.frames), ("--refine-frames", args.refine_frames)):
            if value < 0:
                raise UsageError(f"{flag}: expected >= 0 (0: {'all' if flag == '--frames' else 'none'}), got {value}")
        max_deg = 20.0 if args.refine_max_deg is None else args.refine_max_deg
        max_m = 1.5 if args.refine_max_m is None else args.refine_max_m
        if not (0 < max_deg <= 180 and 0 < max_m):
            raise UsageError(f"--refine-max-deg / --refine-max-m: expected 0 < D <= 180 and M > 0, "
                             f"got {max_deg} / {max_m}")
        if str(args.device).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"--device {args.device}: torch sees no GPU here (use --device cpu)")
        estimator = run_interruptibly(  # a large ONNX graph can take seconds to load: Ctrl-C stops the wait
            lambda: load_estimator(args.model, device=args.device, fine_peak_radius=args.fine_peak_radius,
                                   protocol=args.protocol),
            name="crossi2p_model_loader")
        source, what = _build_source(args, estimator)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:  # bad model or data: one line, exit 1
        print(f"crossi2p-evaluate: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1      # a flag's value or combination: exit 2
    read_errors: list[str] = []
    try:
        results = evaluate_source(estimator, source, args.protocol, args.seed, progress=not args.quiet,
                                  refine_max_deg=max_deg, refine_max_m=max_m, read_errors=read_errors)
    except (ValueError, OSError) as exc:       # nothing readable: one line, exit 1
        print(f"crossi2p-evaluate: error: {what}: {exc}", file=sys.stderr)
        return 1
    if read_errors:
        print(f"crossi2p-evaluate: warning: {len(read_errors)} frame(s) could not be read and were skipped "
              f"(first: {read_errors[0]})", file=sys.stderr)
    if args.protocol == "refine":
        refine_results(results, source, args.refine_frames, max_deg, max_m, progress=not args.quiet)
    summary = summarize_results(results)
    if args.protocol == "refine":
        summary.update(refine_max_deg=max_deg, refine_max_m=max_m)
    summary.update({
        "protocol": args.protocol, "seed": args.seed, "model": str(args.model), "data": what,
        "read_errors": read_errors,
        "command": "crossi2p-evaluate " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
    })
    written = write_report(results, summary, args.json, None if args.no_overlays else source)
    print(f"crossi2p-evaluate: {summary['frames']} frames of {what}, protocol {args.protocol}, seed {args.seed}")
    for key in ("acc", "rte_m_mean", "rte_m_std", "rte_m_median", "rre_euler_sum_deg_mean", "rre_euler_sum_deg_std",
                "rre_euler_sum_deg_median", "rre_geodesic_deg_mean", "rre_geodesic_deg_std",
                "rre_geodesic_deg_median", "latency_ms_median", "failed_frames", "valid_fraction",
                "prior_rte_m_median", "prior_rre_geodesic_deg_median", "refined_rte_m_median",
                "refined_rre_geodesic_deg_median", "refine_accepted_fraction"):
        if summary.get(key) is not None:
            print(f"  {key:28s} {summary[key]:.4g}")
    print("  wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
