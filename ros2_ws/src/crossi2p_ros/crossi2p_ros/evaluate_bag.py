"""``crossi2p-evaluate-bag``: replay evaluation of a rosbag2 through the node's own code path.

Offline mode (default): the bag is read with rosbags and fed, in log-time order, through the
node's pairing -> runtime -> fusion pipeline (``crossi2p_ros.pipeline``), every pair processed,
as fast as the CPU allows. The per-frame and fused estimates are compared with the ground truth
(the bag's /tf_static, or ``--ground-truth YAML``).

Decalibration injection (``--knock-at-s T --knock-rot-deg A [--knock-trans-m D]``): from bag
time T on, the LiDAR points are moved as if the camera had been knocked by a rotation A about its
optical axis (and D metres along x): the ground truth becomes ``E @ T_cam_lidar`` and the report
gives the drift detection delay.

Output (``--report DIR``): summary.json (also ``--json PATH``), frames.csv, PNG plots, overlay
PNGs before/after, report.md linking them. Exit code: 0 when the final fused error is within
``--max-rte-m`` / ``--max-rre-deg``, 3 when it is not (for CI gating), 1 on bad input (one line).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from crossi2p.calib_io import load_calibration_yaml
from crossi2p.datasets.rosbag2 import (CameraInfoRecord, ImageRecord, PointCloudRecord, bag_topics,
                                       read_bag_ground_truth, read_bag_messages)
from crossi2p.fusion import FusionConfig
from crossi2p.geometry import invert_transform, make_transform, transform_points
from crossi2p.metrics import registration_error, summarize_errors
from crossi2p.runtime import CalibrationRuntime, ModelLoadError, RuntimeConfig

from .pairing import PairingConfig
from .pipeline import CalibrationPipeline, CameraFrame, FrameOutcome, LidarSweep


@dataclass
class Knock:
    """A decalibration injected at ``at_s`` (bag time): the camera turns about its optical axis."""

    at_s: float
    rotation_deg: float
    translation_m: float = 0.0

    def E(self) -> np.ndarray:
        """(4, 4) camera-frame change: T_cam_lidar after = E @ T_cam_lidar before."""
        return make_transform(Rotation.from_euler("z", self.rotation_deg, degrees=True),
                              [self.translation_m, 0.0, 0.0])


@dataclass
class FrameRecord:
    """One processed pair, as written to frames.csv."""

    lidar_stamp_s: float
    image_stamp_s: float
    valid: bool
    reason: str
    confidence: float
    inlier_ratio: float
    latency_ms: float
    status: str
    T_gt: np.ndarray
    T_frame: np.ndarray | None
    T_fused: np.ndarray | None
    covariance: np.ndarray | None
    drift_events: int


@dataclass
class ReplayResult:
    frames: list[FrameRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Problems met while reading (partial results are kept)."""
    first_sample: tuple | None = None
    last_sample: tuple | None = None
    knock: Knock | None = None


def replay_bag(bag: Path, runtime: CalibrationRuntime, T_gt: np.ndarray, topics: tuple[str, str, str],
               pairing: PairingConfig | None = None, fusion: FusionConfig | None = None,
               knock: Knock | None = None, max_frames: int | None = None, progress: bool = True) -> ReplayResult:
    """Feed a bag through the node's pipeline; every pair is processed (see module docstring)."""
    pipeline = CalibrationPipeline(runtime, pairing, fusion)
    result = ReplayResult(knock=knock)
    camera = None
    n_lidar = bag_topics(bag).get(topics[2])
    total = getattr(n_lidar, "msgcount", None)
    bar = tqdm(total=total, desc="replay", unit="sweep", disable=not progress)
    try:
        for rec in read_bag_messages(bag, *topics):
            if isinstance(rec, CameraInfoRecord):
                camera = rec.camera
                continue
            if isinstance(rec, ImageRecord):
                if camera is None or (camera.width, camera.height) != (rec.image.shape[1], rec.image.shape[0]):
                    continue
                pairs = pipeline.offer_image(rec.stamp_s, CameraFrame(rec.image, camera, rec.frame_id))
            else:
                assert isinstance(rec, PointCloudRecord)
                bar.update(1)
                points = rec.points
                if knock is not None and rec.stamp_s >= knock.at_s:
                    # Same pixels for the moved camera: p' = inv(E T) T p.
                    M = invert_transform(knock.E() @ T_gt) @ T_gt
                    points = np.hstack([transform_points(M, points), points[:, 3:]]).astype(np.float32)
                pairs = pipeline.offer_lidar(rec.stamp_s, LidarSweep(points, rec.frame_id))
            for pair in pairs:
                outcome = pipeline.process(pair)
                result.frames.append(_record(outcome, T_gt, knock))
                if result.first_sample is None:
                    result.first_sample = (pair.image, pair.lidar)
                result.last_sample = (pair.image, pair.lidar)
            if max_frames is not None and len(result.frames) >= max_frames:
                break
    except ValueError as exc:  # a corrupt message or a truncated bag: keep what was read
        result.errors.append(str(exc))
    finally:
        bar.close()
    return result


def _record(outcome: FrameOutcome, T_gt: np.ndarray, knock: Knock | None) -> FrameRecord:
    est, st, pair = outcome.estimate, outcome.state, outcome.pair
    gt = knock.E() @ T_gt if knock is not None and pair.lidar_stamp_s >= knock.at_s else T_gt
    return FrameRecord(pair.lidar_stamp_s, pair.image_stamp_s, est.valid, est.reason, est.confidence,
                       est.inlier_ratio, sum(est.latency_ms.values()), st.status, gt,
                       est.T_cam_lidar if est.valid else None,
                       st.T_cam_lidar if st.status == "converged" else None,
                       st.covariance, st.drift_events)


def summarize_replay(result: ReplayResult) -> dict:
    """Summary figures with the stable JSON keys (ARCHITECTURE.md, Interfaces)."""
    frames = result.frames
    valid = [f for f in frames if f.valid]
    per_frame = [registration_error(f.T_frame, f.T_gt) for f in valid]
    no_valid = dict.fromkeys(("rte_m_median", "rte_m_mean", "rre_euler_sum_deg_median", "rre_euler_sum_deg_mean",
                              "rre_geodesic_deg_median"))  # stable keys even when no frame was valid
    summary = {**no_valid, **summarize_errors(per_frame), "frames": len(frames), "frames_valid": len(valid)}
    if per_frame:
        summary["acc"] = float(np.mean([e.success for e in per_frame] + [False] * (len(frames) - len(valid))))
    summary["latency_ms_median"] = float(np.median([f.latency_ms for f in frames])) if frames else None
    converged = [i for i, f in enumerate(frames) if f.T_fused is not None]
    summary["frames_to_converge"] = converged[0] + 1 if converged else None
    summary["time_to_converge_s"] = (frames[converged[0]].lidar_stamp_s - frames[0].lidar_stamp_s
                                     if converged else None)
    if frames and frames[-1].T_fused is not None:
        final = registration_error(frames[-1].T_fused, frames[-1].T_gt)
        summary.update(fused_rte_m=final.rte_m, fused_rre_geodesic_deg=final.rre_geodesic_deg,
                       fused_rre_euler_sum_deg=final.rre_euler_sum_deg,
                       fused_T_cam_lidar=frames[-1].T_fused.round(6).tolist())
    else:
        summary.update(fused_rte_m=None, fused_rre_geodesic_deg=None, fused_rre_euler_sum_deg=None)
    if result.knock is not None:
        after = [f for f in frames if f.lidar_stamp_s >= result.knock.at_s]
        before_events = next((f.drift_events for f in reversed(frames) if f.lidar_stamp_s < result.knock.at_s), 0)
        detected = next((f for f in after if f.drift_events > before_events), None)
        summary["knock_at_s"] = result.knock.at_s
        summary["drift_detection_delay_s"] = (detected.lidar_stamp_s - result.knock.at_s) if detected else None
    summary["read_errors"] = result.errors
    return summary


def write_frames_csv(result: ReplayResult, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lidar_stamp_s", "image_stamp_s", "valid", "reason", "confidence", "inlier_ratio",
                    "latency_ms", "status", "frame_rte_m", "frame_rre_geodesic_deg", "frame_rre_euler_sum_deg",
                    "fused_rte_m", "fused_rre_geodesic_deg", "drift_events"])
        for fr in result.frames:
            fe = registration_error(fr.T_frame, fr.T_gt) if fr.T_frame is not None else None
            fu = registration_error(fr.T_fused, fr.T_gt) if fr.T_fused is not None else None
            w.writerow([f"{fr.lidar_stamp_s:.6f}", f"{fr.image_stamp_s:.6f}", int(fr.valid), fr.reason,
                        f"{fr.confidence:.4f}", f"{fr.inlier_ratio:.4f}", f"{fr.latency_ms:.2f}", fr.status,
                        *(f"{v:.5f}" if v is not None else "" for v in
                          (fe and fe.rte_m, fe and fe.rre_geodesic_deg, fe and fe.rre_euler_sum_deg,
                           fu and fu.rte_m, fu and fu.rre_geodesic_deg)),
                        fr.drift_events])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crossi2p-evaluate-bag", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("bag", type=Path, help="rosbag2 folder (MCAP or sqlite3)")
    p.add_argument("--model", type=Path, required=True, help="model card YAML (or the .onnx with its card beside it)")
    p.add_argument("--json", type=Path, help="write the summary figures here too")
    p.add_argument("--report", type=Path, default=Path("out/bag_report"), help="report folder (default out/bag_report)")
    p.add_argument("--ground-truth", type=Path, help="calibration YAML (default: the bag's /tf_static)")
    p.add_argument("--image-topic", default="/camera/image_raw")
    p.add_argument("--camera-info-topic", default="/camera/camera_info")
    p.add_argument("--points-topic", default="/lidar/points")
    p.add_argument("--max-frames", type=int, help="stop after this many pairs")
    p.add_argument("--slop-s", type=float, default=PairingConfig.slop_s, help="pairing slop (s)")
    p.add_argument("--knock-at-s", type=float, help="inject a decalibration at this bag time (s)")
    p.add_argument("--knock-rot-deg", type=float, default=3.0, help="knock rotation about the optical axis (deg)")
    p.add_argument("--knock-trans-m", type=float, default=0.0, help="knock translation along camera x (m)")
    p.add_argument("--max-rte-m", type=float, help="exit 3 when the final fused RTE exceeds this")
    p.add_argument("--max-rre-deg", type=float, help="exit 3 when the final fused geodesic RRE exceeds this")
    p.add_argument("--execution-provider", choices=["auto", "cuda", "cpu"], default="auto")
    return p


def resolve_model_card(path: Path) -> Path:
    """A model card path from a card or an .onnx beside its card."""
    if path.suffix == ".onnx":
        path = path.with_suffix(".yaml")
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    topics = (args.image_topic, args.camera_info_topic, args.points_topic)
    try:
        if not args.bag.exists():
            raise ValueError(f"bag {args.bag}: not found")
        present = bag_topics(args.bag)
        missing = [t for t in topics if t not in present and not (t == args.image_topic and t + "/compressed" in present)]
        if missing:
            raise ValueError(f"bag {args.bag}: topics {missing} not found; topics in the bag: {sorted(present)}")
        T_gt = (load_calibration_yaml(args.ground_truth).T_cam_lidar if args.ground_truth
                else read_bag_ground_truth(args.bag))
        runtime = CalibrationRuntime(resolve_model_card(args.model), RuntimeConfig(execution_provider=args.execution_provider))
        knock = Knock(args.knock_at_s, args.knock_rot_deg, args.knock_trans_m) if args.knock_at_s is not None else None
        result = replay_bag(args.bag, runtime, T_gt, topics, PairingConfig(slop_s=args.slop_s), knock=knock,
                            max_frames=args.max_frames)
    except (ValueError, FileNotFoundError, ModelLoadError, OSError) as exc:
        print(f"crossi2p-evaluate-bag: error: {exc}", file=sys.stderr)
        return 1
    if not result.frames:
        print(f"crossi2p-evaluate-bag: error: no camera/LiDAR pairs in {args.bag} "
              f"({'; '.join(result.errors) or 'check topics and --slop-s'})", file=sys.stderr)
        return 1
    summary = summarize_replay(result)
    summary.update(bag=str(args.bag), model=runtime.card.name)
    from .bag_report import write_report  # matplotlib only when reporting

    report_md = write_report(result, summary, args.report)
    write_frames_csv(result, args.report / "frames.csv")
    (args.report / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    _print_summary(summary, report_md)
    for err in result.errors:
        print(f"crossi2p-evaluate-bag: warning: stopped early: {err}", file=sys.stderr)
    fused_bad = summary["fused_rte_m"] is None or (
        (args.max_rte_m is not None and summary["fused_rte_m"] > args.max_rte_m)
        or (args.max_rre_deg is not None and summary["fused_rre_geodesic_deg"] > args.max_rre_deg))
    if (args.max_rte_m is not None or args.max_rre_deg is not None) and fused_bad:
        print("crossi2p-evaluate-bag: final error above the thresholds", file=sys.stderr)
        return 3
    return 0


def _print_summary(s: dict, report_md: Path) -> None:
    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.3f}{unit}"

    converged = f"converged after {s['frames_to_converge']} frames" if s["frames_to_converge"] else "did not converge"
    print(f"frames: {s['frames']} ({s['frames_valid']} valid), {converged}")
    print(f"per-frame: median RTE {fmt(s.get('rte_m_median'), ' m')}, median RRE "
          f"{fmt(s.get('rre_geodesic_deg_median'), ' deg')}, acc {fmt(s.get('acc'))}, "
          f"latency {fmt(s['latency_ms_median'], ' ms')}")
    if s.get("fused_T_cam_lidar") is not None:
        print("fused T_cam_lidar:\n" + "\n".join("  " + " ".join(f"{v:+.4f}" for v in row)
                                                for row in s["fused_T_cam_lidar"]))
    print(f"fused: RTE {fmt(s['fused_rte_m'], ' m')}, RRE {fmt(s['fused_rre_geodesic_deg'], ' deg')}")
    if "drift_detection_delay_s" in s:
        print(f"knock at {s['knock_at_s']:.2f} s: drift detected after {fmt(s['drift_detection_delay_s'], ' s')}")
    print(f"report: {report_md}")


if __name__ == "__main__":
    sys.exit(main())
