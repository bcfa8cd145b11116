"""``crossi2p-evaluate-bag``: replay evaluation of a recording through the node's own code path.

Offline mode (``--mode offline``, default): the bag is read with rosbags and fed, in log-time
order, through the node's pairing -> runtime -> fusion pipeline (``crossi2p_ros.pipeline``), every
pair processed, as fast as the CPU allows. The per-frame and fused estimates are compared with the
ground truth (the bag's /tf_static, or ``--ground-truth YAML``).

Live mode (``--mode live``, rosbag2 only): the bag is played over DDS with /clock into the real
calibration node (use_sim_time) running in this process, and what the node publishes
(``~/frame_estimates``, ``~/pose``, /tf_static, /diagnostics) is recorded and compared with the
ground truth; same report, same JSON keys, plus a ``live`` section. ``--pacing node`` (default):
each message is published once the node has handled the previous one and finished its pair, so
nothing is dropped and the figures equal offline mode's (deterministic); ``--pacing clock``: the
bag plays at ``--rate`` x real time and the node drops pairs that arrive while it is busy, as on
a vehicle (figures depend on the CPU; ``live.node_counters.pairs_dropped_busy``).

Other recordings (offline mode): a KITTI Odometry sequence folder (``image_2/``, ``velodyne/``,
``calib.txt`` or ``calib.yaml``; ``--kitti-camera``), a KITTI raw drive folder
(``<date>_drive_XXXX_sync/`` with ``image_02/data/``, ``velodyne_points/data/``, the calibration
files in its date folder) or a date folder holding one drive, or a nuScenes-format folder (``v1.0-*/``
tables, ``samples/``; ``--camera-channel``, ``--lidar-channel``), detected from the folder or
named with ``--source``. Pairs come from the dataset (KITTI frame index, nuScenes sample), so
``--slop-s`` does not apply; the ground truth is the dataset's calibration (nuScenes: per pair,
ego-motion compensated), unless ``--ground-truth YAML``.

Prior and refinement (offline mode): ``--prior YAML`` (``crossi2p.prior``: a calibration YAML with
optional ``prior_max_rotation_deg`` / ``prior_max_translation_m``) gates the per-frame estimates
(outside its bounds: rejected with the reason) and is the refinement's start until the fusion
converges. The pipeline refines on its schedule (``RefinementScheduleConfig``: over the last 20
pairs, every 10 pairs; ``--refine-window-span spread``: 20 pairs spread over the whole bag;
``--no-refine`` turns it off); the summary's ``refined_rte_m`` /
``refined_rre_geodesic_deg`` are the error of the accepted refinement in force at the end,
``frames_to_refine`` the pairs processed when the first one was accepted (null: none),
``pairs_left_out`` the pairs kept out of its window by why (``unsynchronised``, ``not_deskewed``,
``not_keyframes``) and ``pairs_time_compensated`` those kept with their sweep moved to the
image's stamp (``--refine-compensate-pair-offset``; live: the node's diagnostics say them).

Decalibration injection (``--knock-at-s T --knock-rot-deg A [--knock-trans-m D]``): from bag
time T on, the LiDAR points are moved as if the camera had been knocked by a rotation A about its
optical axis (and D metres along x): the ground truth becomes ``E @ T_cam_lidar`` and the report
gives the drift detection delay. The points are moved before the LiDAR odometry sees them, as the
node gets them in ``--mode live`` (the odometry sees the knock as one jump of the sweeps: the
direction-of-travel check may refuse the frame at the knock).

Output (``--report DIR``): summary.json (also ``--json PATH``), frames.csv, PNG plots, overlay
PNGs before/after, report.md linking them (docs/evaluation.md). Exit code: 0 when the final fused error is within
``--max-rte-m`` / ``--max-rre-deg``, 3 when it is not (for CI gating), 1 on bad input, 2 on a flag
value or combination it does not take (one line each).

Ctrl-C (SIGINT) stops it at once, in any mode, with exit code 130 and one line on stderr (SIGTERM
likewise, exit code 143): during the
replay, frames.csv and summary.json (and ``--json``) are written for the pairs processed so far,
with ``"interrupted": true`` (no plots); before the first pair (reading the input, loading the
model) nothing is written.
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from crossi2p.calib_io import load_calibration_input
from crossi2p.cli import ArgumentParser, UsageError, check_writable, check_writable_folder
from crossi2p.datasets.rosbag2 import (CameraInfoRecord, ImageRecord, PointCloudRecord, bag_message_counts,
                                       read_bag_ground_truth, read_bag_messages, read_bag_tf_tree,
                                       unfinished_mcap)
from crossi2p.deskew import DeskewConfig, describe_deskew
from crossi2p.fusion import FusionConfig
from crossi2p.interrupt import (TERMINATION_SIGNALS, exit_130_on_ctrl_c, exit_now_if_work_in_flight, interrupt_exit_code,
                                interrupt_name, run_interruptibly)
from crossi2p.metrics import registration_error, summarize_errors
from crossi2p.model_card import resolve_model_card
from crossi2p.prior import Prior, load_prior
from crossi2p.refinement import RefinementConfig
from crossi2p.runtime import CalibrationRuntime, ModelLoadError, RuntimeConfig
from crossi2p.sample import Sample, readable_samples
from crossi2p.tf_tree import (FrameMismatchError, StaticTransformTree, check_camera_frame, check_camera_info_frame,
                             points_in_lidar_frame)
from crossi2p.travel_check import REFUSAL_PREFIX as TRAVEL_REFUSAL, TravelCheckConfig, describe_travel_check

from .frame_report import FrameReport
from .pairing import PairingConfig, StampedPair
from .pipeline import (OFFLINE_WORKERS, WINDOW_SPANS, CalibrationPipeline, CameraFrame, LidarSweep, RefinementScheduleConfig,
                       schedule_from_flags)
from .recordings import (SOURCES, Source, add_dataset_arguments, add_deskew_arguments, add_topic_arguments,
                         check_bag_topics, deskew_config, detect_source, open_dataset, travel_config,
                         warn_unused_source_flags)
from .replay_types import FrameRecord, Knock, ReplayResult, knocked_points  # noqa: F401  (re-exported)


def replay_bag(bag: Path, runtime: CalibrationRuntime, T_gt: np.ndarray | None, topics: tuple[str, str, str],
               pairing: PairingConfig | None = None, fusion: FusionConfig | None = None,
               knock: Knock | None = None, max_frames: int | None = None, progress: bool = True,
               lidar_frame: str | None = None, camera_frame: str | None = None, prior: Prior | None = None,
               refinement=None, schedule: RefinementScheduleConfig | None = None,
               pair_at_end: bool = False, deskew: DeskewConfig | None = None,
               travel: TravelCheckConfig | None = None) -> ReplayResult:
    """Feed a bag through the node's pipeline; every pair is processed (see module docstring).

    ``pair_at_end``: once the bag is read to its end, the sweeps still waiting for a later image
    are paired with the closest image within the slop (``StampPairer.flush``); off by default,
    as the node, which never knows its streams ended (``crossi2p-calibrate`` turns it on: the
    last sweep of a short recording is then used too).

    ``T_gt``: the ground truth recorded with each pair (None: none, as for ``crossi2p-calibrate``;
    a knock needs one). ``prior``, ``refinement`` (``RefinementConfig``), ``schedule``: the
    pipeline's prior gate and refinement, run whenever ``refinement_due()`` after a pair
    (``result.refinements``; ``result.pipeline`` holds the final state). ``deskew``: how the
    sweeps are de-skewed (``crossi2p.deskew``; None: not). ``travel``: the direction-of-travel
    check (``crossi2p.travel_check``; None: its defaults, on).

    Frames, as the node treats them (``crossi2p.tf_tree``): the sweeps are used in ``lidar_frame``
    (default: the first cloud's frame, which is also the one ``read_bag_ground_truth`` takes); a
    cloud stamped with another frame is mapped into it through the bag's /tf_static, or left out
    and counted in ``result.refused`` with the reason. An image must be in ``camera_frame``
    (default: the first image's) or an identity alias of it on /tf_static, or it is left out.
    """
    pipeline = CalibrationPipeline(runtime, pairing, fusion, prior, refinement, schedule, deskew, travel)
    result = ReplayResult(knock=knock, pipeline=pipeline)
    camera, info_frame = None, ""
    tree = read_bag_tf_tree(bag)
    frames = [lidar_frame or "", camera_frame or ""]  # learnt from the first message when not given
    total = bag_message_counts(bag).get(topics[2]) or None        # sweeps in the bag (None: unknown)
    bar = tqdm(total=total, desc="replay", unit="sweep", disable=not progress)

    def handle(pair) -> None:
        """One pair through the pipeline (and the refinement when due), into the result."""
        result.add(FrameReport.from_outcome(pipeline.process(pair)), T_gt)
        _refine_if_due(pipeline, result, bar)
        if result.first_sample is None:
            result.first_sample = (pair.image, pair.lidar)
        result.last_sample = (pair.image, pair.lidar)

    def full() -> bool:  # enough pairs, or the prior is of another sensor (bad input: stop at once)
        return (max_frames is not None and len(result.frames) >= max_frames) or pipeline.prior_mismatch is not None

    try:
        for rec in read_bag_messages(bag, *topics):
            if isinstance(rec, CameraInfoRecord):
                camera, info_frame = rec.camera, rec.frame_id
                continue
            if isinstance(rec, ImageRecord):
                result.image_stamps.add(rec.stamp_s)
                if camera is None or (camera.width, camera.height) != (rec.image.shape[1], rec.image.shape[0]):
                    why = (f"image dropped: no CameraInfo yet on {topics[1]}" if camera is None else
                           f"image dropped: {rec.image.shape[1]}x{rec.image.shape[0]}, its CameraInfo says "
                           f"{camera.width}x{camera.height}")
                    result.refused[why] = result.refused.get(why, 0) + 1    # counted, as the node logs it
                    continue
                try:
                    check_camera_info_frame(info_frame, rec.frame_id, tree)
                except FrameMismatchError as exc:
                    why = f"image on {topics[0]} dropped: {exc} ({topics[1]})"
                    result.refused[why] = result.refused.get(why, 0) + 1
                    continue
                frames[1] = frames[1] or rec.frame_id.lstrip("/")
                try:
                    check_camera_frame(rec.frame_id, frames[1], tree)
                except FrameMismatchError as exc:
                    result.refused[str(exc)] = result.refused.get(str(exc), 0) + 1
                    continue
                pairs = pipeline.offer_image(rec.stamp_s, CameraFrame(rec.image, camera, frames[1]))
            else:
                assert isinstance(rec, PointCloudRecord)
                bar.update(1)
                result.lidar_stamps.add(rec.stamp_s)
                frames[0] = frames[0] or rec.frame_id.lstrip("/")
                try:
                    points = points_in_lidar_frame(rec.points, rec.frame_id, frames[0], tree)
                except FrameMismatchError as exc:
                    result.refused[str(exc)] = result.refused.get(str(exc), 0) + 1
                    continue
                if knock is not None and rec.stamp_s >= knock.at_s:   # before the odometry, as the node gets them
                    points = knocked_points(points, knock, T_gt)
                sweep = pipeline.deskew_sweep(rec.stamp_s, LidarSweep(points, frames[0], times_s=rec.times_s))
                pairs = pipeline.offer_lidar(rec.stamp_s, sweep, deskewed=True)
            for pair in pairs:
                handle(pair)
            if full():
                break
        else:
            if pair_at_end:
                for pair in pipeline.pairer.flush():
                    if full():
                        break
                    handle(pair)
            else:
                result.sweeps_unpaired_at_end = pipeline.pairer.sweeps_waiting
    except ValueError as exc:  # a corrupt message or a truncated bag: keep what was read
        result.errors.append(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: the pairs processed so far are the result
        result.interrupted = True
    finally:
        bar.close()
    cut = unfinished_mcap(bag)     # read without an error, but not to the recording's end
    if cut:
        result.errors.append(cut)
    return result


def replay_samples(samples: Iterable[Sample], runtime: CalibrationRuntime, fusion: FusionConfig | None = None,
                   knock: Knock | None = None, T_gt: np.ndarray | None = None, max_frames: int | None = None,
                   total: int | None = None, progress: bool = True, prior: Prior | None = None,
                   refinement=None, schedule: RefinementScheduleConfig | None = None,
                   require_ground_truth: bool = True, deskew: DeskewConfig | None = None,
                   travel: TravelCheckConfig | None = None) -> ReplayResult:
    """Feed already paired dataset samples through the node's runtime -> fusion -> refinement
    pipeline (``prior``, ``refinement``, ``schedule``, ``deskew``, ``travel`` as in ``replay_bag``).

    Each sample is one pair (its ``stamp_s`` the image's, ``lidar_stamp_s`` the sweep's); the
    ground truth is the sample's own ``T_cam_lidar`` unless ``T_gt`` is given;
    ``require_ground_truth=False`` records none (``crossi2p-calibrate``). A frame of an indexable
    source (the dataset readers) that cannot be read (a corrupt or truncated file: ValueError) is
    skipped and its error recorded in ``result.errors``; an iterable stops there.
    """
    pipeline = CalibrationPipeline(runtime, None, fusion, prior, refinement, schedule, deskew, travel)
    result = ReplayResult(knock=knock, pipeline=pipeline)
    bar = tqdm(total=total if max_frames is None else min(total or max_frames, max_frames),
               desc="replay", unit="frame", disable=not progress)
    try:
        for sample in _readable(samples, result):
            gt = T_gt if T_gt is not None else sample.T_cam_lidar if require_ground_truth else None
            if gt is None and (require_ground_truth or knock is not None):
                raise ValueError(f"sample {sample.frame_id}: no ground-truth calibration; pass --ground-truth YAML")
            lidar_stamp = sample.stamp_s if sample.lidar_stamp_s is None else sample.lidar_stamp_s
            # dataset folders name no tf frames: '' (unknown), so a prior's frames are not compared
            points = knocked_points(sample.points, knock, gt) if knock is not None and lidar_stamp >= knock.at_s \
                else sample.points
            sweep = pipeline.deskew_sweep(lidar_stamp, LidarSweep(points, ""))
            pair = StampedPair(sample.stamp_s, CameraFrame(sample.image, sample.camera, ""), lidar_stamp, sweep)
            result.add(FrameReport.from_outcome(pipeline.process(pair)), gt)
            _refine_if_due(pipeline, result, bar)
            if result.first_sample is None:
                result.first_sample = (pair.image, pair.lidar)
            result.last_sample = (pair.image, pair.lidar)
            bar.update(1)
            if max_frames is not None and len(result.frames) >= max_frames:
                break
    except ValueError as exc:  # a corrupt file: keep what was read
        result.errors.append(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: the pairs processed so far are the result
        result.interrupted = True
    finally:
        bar.close()
    return result


def _readable(samples: Iterable[Sample], result: ReplayResult) -> Iterator[Sample]:
    """The samples of ``samples``; from a source with ``len`` and indexing, a frame whose files
    cannot be read is skipped (its error goes into ``result.errors``) instead of ending the replay."""
    if not (hasattr(samples, "__len__") and hasattr(samples, "__getitem__")):
        yield from samples
        return
    yield from (sample for _, sample in readable_samples(samples, result.errors))


def _refine_if_due(pipeline: CalibrationPipeline, result: ReplayResult, bar) -> None:
    """Run the pipeline's refinement when its schedule says so (as the node does); record the run."""
    if pipeline.refinement_due():
        pairs = len(pipeline.window)
        pipeline.refine(lambda what, done, total: bar.set_postfix_str(f"refining {pairs} pairs: {what} {done}/{total}"))
        result.refinements.append(pipeline.last_refinement)
        bar.set_postfix_str("")


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
    summary.update(_refined_summary(result))
    summary.update(_latest_estimate(result))
    if result.knock is not None:
        after = [f for f in frames if f.lidar_stamp_s >= result.knock.at_s]
        before_events = next((f.drift_events for f in reversed(frames) if f.lidar_stamp_s < result.knock.at_s), 0)
        detected = next((f for f in after if f.drift_events > before_events), None)
        summary["knock_at_s"] = result.knock.at_s
        summary["drift_detection_delay_s"] = (detected.lidar_stamp_s - result.knock.at_s) if detected else None
    summary["read_errors"] = result.errors
    summary["messages_refused"] = dict(result.refused)
    return summary


def _refined_summary(result: ReplayResult) -> dict:
    """``refined_rte_m`` / ``refined_rre_geodesic_deg`` (the accepted refinement in force at the end
    against the last pair's ground truth), ``frames_to_refine`` and the refinement's figures; null
    when the stage did not run (no start, nothing accepted). Live mode replaces them with the
    node's own (``live_replay.node_refinement_summary``)."""
    runs = [r for r in result.refinements if r is not None]
    out = dict(refined_rte_m=None, refined_rre_geodesic_deg=None, refined_rre_euler_sum_deg=None,
               refined_T_cam_lidar=None, frames_to_refine=result.frames_to_refine, refinement_runs=len(runs),
               refinement_accepted_runs=sum(r.result.accepted for r in runs),
               refinement_start=runs[-1].start_stage if runs else None,   # the last run's, accepted or not
               refinement_last_reason=runs[-1].result.reason if runs else None,
               rejected_outside_prior=(result.pipeline.rejected_outside_prior  # null without a prior (and live)
                                       if result.pipeline is not None and result.pipeline.prior is not None else None),
               # from the frames' reasons: the same offline and live (the node publishes them)
               rejected_direction_of_travel=sum(f.reason.startswith(TRAVEL_REFUSAL) for f in result.frames),
               direction_of_travel_checked=sum(f.travel_angle_deg is not None for f in result.frames),
               # pairs kept out of the refinement window, by why, and those moved to the image's stamp
               # (live: node_refinement_summary reads them from the node's diagnostics)
               pairs_left_out=result.pipeline.pairs_left_out if result.pipeline is not None else None,
               pairs_time_compensated=(result.pipeline.pairs_time_compensated if result.pipeline is not None
                                       else None),
               prior_rte_m=None, prior_rre_geodesic_deg=None)
    prior = result.pipeline.prior if result.pipeline is not None else None
    if prior is not None and result.frames and result.frames[-1].T_gt is not None:
        # what the user would keep: the refined figures are judged against it
        err = registration_error(prior.T_cam_lidar, result.frames[-1].T_gt)
        out.update(prior_rte_m=err.rte_m, prior_rre_geodesic_deg=err.rre_geodesic_deg)
    refined = result.refined
    if refined is not None and result.frames and result.frames[-1].T_gt is not None:
        err = registration_error(refined.result.T_cam_lidar, result.frames[-1].T_gt)
        out.update(refined_rte_m=err.rte_m, refined_rre_geodesic_deg=err.rre_geodesic_deg,
                   refined_rre_euler_sum_deg=err.rre_euler_sum_deg,
                   refined_T_cam_lidar=refined.result.T_cam_lidar.round(6).tolist(), refinement_start=refined.start_stage)
    return out


def _latest_estimate(result: ReplayResult) -> dict:
    """The newest estimate there is, said what it is: the accepted refinement in force, else the
    converged fused extrinsic, else the fused one before convergence, else the last per-frame
    estimate (even a rejected one: ``estimate_rejected`` true, nothing the node would publish)."""
    out = dict(estimate_kind=None, estimate_T_cam_lidar=None, estimate_rte_m=None, estimate_rre_geodesic_deg=None,
               estimate_rejected=False)
    if not result.frames:
        return out
    last, T, kind = result.frames[-1], None, None
    if result.refined is not None:
        T, kind, gt = result.refined.result.T_cam_lidar, f"refined (from the {result.refined.start_stage})", last.T_gt
    elif last.T_fused is not None:
        T, kind, gt = last.T_fused, "fused, converged", last.T_gt
    elif last.fused_T_cam_lidar is not None:
        T, kind, gt = last.fused_T_cam_lidar, f"fused, NOT converged ({last.status})", last.T_gt
    else:
        k = next((i for i in reversed(range(len(result.frames))) if result.frames[i].T_cam_lidar is not None), None)
        if k is not None:
            rec = result.frames[k]
            T, gt = rec.T_cam_lidar, rec.T_gt
            kind = f"frame {k + 1} per-frame estimate" + ("" if rec.valid else f", REJECTED ({rec.reason})")
            out["estimate_rejected"] = not rec.valid
    if T is not None:
        err = registration_error(T, gt)
        out.update(estimate_kind=kind, estimate_T_cam_lidar=np.asarray(T).round(6).tolist(), estimate_rte_m=err.rte_m,
                   estimate_rre_geodesic_deg=err.rre_geodesic_deg)
    return out


def write_frames_csv(result: ReplayResult, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lidar_stamp_s", "image_stamp_s", "valid", "reason", "confidence", "inlier_ratio",
                    "latency_ms", "status", "frame_rte_m", "frame_rre_geodesic_deg", "frame_rre_euler_sum_deg",
                    "fused_rte_m", "fused_rre_geodesic_deg", "drift_events", "travel_angle_deg"])
        for fr in result.frames:
            fe = registration_error(fr.T_frame, fr.T_gt) if fr.T_frame is not None else None
            fu = registration_error(fr.T_fused, fr.T_gt) if fr.T_fused is not None else None
            w.writerow([f"{fr.lidar_stamp_s:.6f}", f"{fr.image_stamp_s:.6f}", int(fr.valid), fr.reason,
                        f"{fr.confidence:.4f}", f"{fr.inlier_ratio:.4f}", f"{fr.latency_ms:.2f}", fr.status,
                        *(f"{v:.5f}" if v is not None else "" for v in
                          (fe and fe.rte_m, fe and fe.rre_geodesic_deg, fe and fe.rre_euler_sum_deg,
                           fu and fu.rte_m, fu and fu.rre_geodesic_deg)),
                        fr.drift_events,
                        "" if fr.travel_angle_deg is None else f"{fr.travel_angle_deg:.1f}"])


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="crossi2p-evaluate-bag", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("bag", type=Path, help="rosbag2 folder (MCAP or sqlite3) or .mcap file, KITTI Odometry "
                                          "sequence folder, KITTI raw drive or date folder, or nuScenes-format "
                                          "folder")
    p.add_argument("--model", type=Path, help="model card YAML (or the .onnx with its card beside it); default: "
                                              "the shipped model")
    p.add_argument("--json", type=Path, help="write the summary figures here too")
    p.add_argument("--quiet", action="store_true", help="no progress bar (the summary is still printed)")
    p.add_argument("--report", type=Path, default=Path("out/bag_report"), help="report folder (default out/bag_report)")
    p.add_argument("--source", choices=["auto", *SOURCES], default="auto",
                   help="what BAG is (default auto: metadata.yaml or a .mcap -> rosbag2, image_2/ + velodyne/ -> "
                        "kitti (Odometry), image_02/data/ + velodyne_points/data/ (or a date folder holding such "
                        "a drive) -> kitti_raw, v1.0-*/ -> nuscenes)")
    p.add_argument("--mode", choices=["offline", "live"], default="offline",
                   help="offline: the node's pipeline read straight from the bag (default); live: the bag "
                        "played over DDS with /clock into the real node (rosbag2 only)")
    p.add_argument("--pacing", choices=["node", "clock"], default="node",
                   help="live mode only: node = publish each message once the node has handled the previous one "
                        "and finished its pair (deterministic, equals offline; default); clock = play at "
                        "--rate regardless of the node, which drops pairs while busy (as on a vehicle)")
    p.add_argument("--rate", type=float,
                   help="live mode only: bag seconds per wall second, 0 = no limit (default: 0 with --pacing node, "
                        "1.0 with --pacing clock)")
    p.add_argument("--node-timeout-s", type=float, default=120.0,
                   help="live mode: longest wait for the node to handle one message / finish at the end (s)")
    p.add_argument("--ros-domain-id", type=int, help="live mode: ROS domain (default: ROS_DOMAIN_ID)")
    p.add_argument("--ground-truth", type=Path, help="calibration YAML (default: the bag's /tf_static, the "
                                                     "dataset's calibration)")
    add_topic_arguments(p)
    add_dataset_arguments(p)
    p.add_argument("--max-frames", type=int, help="stop after this many pairs")
    p.add_argument("--prior", type=Path, help="offline: calibration YAML of a prior (bounds: its optional "
                                              "prior_max_rotation_deg / prior_max_translation_m, default 10 deg / "
                                              "0.5 m); estimates outside it are rejected, the refinement starts "
                                              "from it until the fusion converges")
    p.add_argument("--no-refine", action="store_true", help="do not run the refinement stage (both modes)")
    p.add_argument("--refine-window-frames", type=int, default=RefinementScheduleConfig.window_frames,
                   help="offline: pairs the refinement looks at (default %(default)s)")
    p.add_argument("--refine-window-span", choices=WINDOW_SPANS, default=RefinementScheduleConfig.window_span,
                   help="offline: the last pairs (default, as the node) or pairs spread over the whole bag")
    p.add_argument("--refine-max-pair-offset-s", type=float, default=RefinementScheduleConfig.max_pair_offset_s,
                   help="offline: pairs whose image and LiDAR stamps differ by more are not refined on "
                        "(default %(default)s s)")
    p.add_argument("--refine-compensate-pair-offset", action="store_true",
                   help="offline: keep the pairs further apart too, their sweep moved to the image's stamp with "
                        "the LiDAR odometry's motion (the node's refinement_compensate_pair_offset; off by default)")
    p.add_argument("--refine-keyframe-parallax-px", type=float,
                   default=RefinementScheduleConfig.keyframe_parallax_px,
                   help="offline: a pair joins the refinement window once its image's corners moved a median of "
                        "this many pixels (at 640 px wide) since the last one that joined, or 1 s passed; 0: "
                        "every pair (default %(default)s px)")
    p.add_argument("--refine-every-frames", type=int, default=RefinementScheduleConfig.every_frames,
                   help="offline: new pairs between refinement runs (default %(default)s)")
    p.add_argument("--refine-workers", type=int, default=OFFLINE_WORKERS,
                   help="offline: processes for the refinement's search; the result does not depend on it "
                        "(2 is 1.5x faster on 2 cores; default %(default)s, as the node)")
    p.add_argument("--slop-s", type=float, default=PairingConfig.slop_s,
                   help="pairing slop (s), rosbag2 only (a dataset folder is already paired: warns)")
    add_deskew_arguments(p)
    p.add_argument("--knock-at-s", type=float, help="inject a decalibration at this bag time (s)")
    p.add_argument("--knock-rot-deg", type=float, help="with --knock-at-s: knock rotation about the optical axis "
                                                       "(deg, default 3)")
    p.add_argument("--knock-trans-m", type=float, help="with --knock-at-s: knock translation along camera x (m, "
                                                       "default 0)")
    p.add_argument("--max-rte-m", type=float, help="exit 3 when the final fused RTE exceeds this")
    p.add_argument("--max-rre-deg", type=float, help="exit 3 when the final fused geodesic RRE exceeds this")
    p.add_argument("--execution-provider", choices=["auto", "cuda", "cpu"], default="auto",
                   help="onnxruntime provider: auto = CUDA when available, else the CPU (default auto)")
    return p


_RUNTIMES: dict[tuple[Path, str], CalibrationRuntime] = {}


def load_runtime(card: Path, execution_provider: str = "auto") -> CalibrationRuntime:
    """The runtime of ``card``, loaded once per process (creating the session took 17-60 s with the former unrolled graph, 0.4 s now;
    successive evaluations in one process, e.g. tests, share it). Ctrl-C interrupts the wait for
    it (``crossi2p.interrupt``)."""
    key = (resolve_model_card(card).resolve(), execution_provider)
    if key not in _RUNTIMES:
        _RUNTIMES[key] = run_interruptibly(
            lambda: CalibrationRuntime(key[0], RuntimeConfig(execution_provider=execution_provider)),
            name="crossi2p_model_loader")
    return _RUNTIMES[key]


def check_ground_truth_frames(bag: Path, topics: tuple[str, str, str], calib, where: Path,
                              map_clouds: bool = True) -> None:
    """ValueError when the calibration YAML's frames are not the bag's (a calibration of another rig).

    The frame rule of the replay: the bag's clouds may be in another frame than the YAML's LiDAR
    frame when the bag's /tf_static links the two (they are mapped; not with ``map_clouds`` False:
    live mode, where the bag's /tf_static is not played to the node); its images must be in the
    YAML's camera frame or an identity alias of it."""
    frames: dict[str, str] = {}
    for rec in read_bag_messages(bag, *topics):
        if isinstance(rec, ImageRecord):
            frames.setdefault("camera", rec.frame_id)
        elif isinstance(rec, PointCloudRecord):
            frames.setdefault("lidar", rec.frame_id)
        if len(frames) == 2:
            break
    want = {"lidar": calib.lidar_frame, "camera": calib.camera_frame}
    tree = read_bag_tf_tree(bag) if map_clouds else StaticTransformTree()
    wrong = []
    for kind, frame in frames.items():
        try:
            if kind == "lidar":
                points_in_lidar_frame(np.zeros((0, 4), np.float32), frame, want[kind], tree)
            else:
                check_camera_frame(frame, want[kind], tree)
        except FrameMismatchError:
            wrong.append(f"{kind} '{want[kind]}' but the bag's {kind} messages are in '{frame}'")
    if wrong:
        raise ValueError(f"--ground-truth {where}: calibration frames do not match the bag: " + "; ".join(wrong))


def _open_dataset(args, source: Source):
    """(samples, count, ground-truth description, ground truth of the first pair) of a dataset folder
    (``crossi2p_ros.recordings.open_dataset`` with the command's options)."""
    return open_dataset(args.bag, source, args.kitti_camera, args.camera_channel, args.lidar_channel)


@exit_130_on_ctrl_c("crossi2p-evaluate-bag")  # Ctrl-C before the first pair (input, model loading) or while reporting
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    topics = (args.image_topic, args.camera_info_topic, args.points_topic)
    knock = (Knock(args.knock_at_s, 3.0 if args.knock_rot_deg is None else args.knock_rot_deg,
                   args.knock_trans_m or 0.0) if args.knock_at_s is not None else None)
    try:
        given = [f for f, v in (("--knock-rot-deg", args.knock_rot_deg), ("--knock-trans-m", args.knock_trans_m))
                 if v is not None]
        if given and args.knock_at_s is None:
            raise UsageError(f"{', '.join(given)}: no knock without --knock-at-s (the bag time it happens at)")
        if not args.bag.exists():
            raise ValueError(f"bag {args.bag}: not found")
        if args.max_frames is not None and args.max_frames < 1:
            raise UsageError(f"--max-frames: expected >= 1 pairs, got {args.max_frames}")
        if not args.slop_s > 0:
            raise UsageError(f"--slop-s: expected a stamp difference > 0 seconds, got {args.slop_s}")
        if args.refine_workers < 1:
            raise UsageError(f"--refine-workers: expected >= 1 processes, got {args.refine_workers}")
        for flag, value in (("--max-rte-m", args.max_rte_m), ("--max-rre-deg", args.max_rre_deg)):
            if value is not None and not value > 0:
                raise UsageError(f"{flag}: expected a bound > 0, got {value}")
        if args.rate is not None and not args.rate >= 0:
            raise UsageError(f"--rate: expected bag seconds per wall second >= 0 (0: no limit), got {args.rate}")
        if not args.node_timeout_s > 0:
            raise UsageError(f"--node-timeout-s: expected > 0 seconds, got {args.node_timeout_s}")
        check_writable_folder(args.report, "--report")     # checked now, so that the replay is not lost
        if args.json is not None:                           # at its end
            check_writable(args.json, "--json")
        source = detect_source(args.bag) if args.source == "auto" else args.source
        if args.mode == "live" and source != "rosbag2":
            raise UsageError(f"{args.bag}: live mode plays a rosbag2; a {source} folder is evaluated with "
                             "--mode offline")
        if args.mode == "live" and args.prior is not None:
            raise UsageError("--prior: offline mode only (the node takes its prior from its parameters or /tf_static)")
        if args.mode == "live" and args.deskew not in ("auto", "off"):
            raise UsageError("--deskew: offline mode only (the node takes its deskew.* parameters)")
        timeout_given = args.node_timeout_s != parser.get_default("node_timeout_s")
        if args.mode == "offline" and (args.pacing != "node" or args.rate is not None or timeout_given):
            flags = " / ".join(f for f, given in ((f"--pacing {args.pacing}", args.pacing != "node"),
                                                  ("--rate", args.rate is not None),
                                                  ("--node-timeout-s", timeout_given)) if given)
            raise UsageError(f"{flags}: live mode only (offline mode reads every pair in turn, as fast as the CPU "
                             f"allows, with no clock to pace; --mode live plays a rosbag2 with /clock)")
        # the schedule's fields the --refine-* flags set (offline mode)
        fields = ("window_frames", "every_frames", "window_span", "max_pair_offset_s", "keyframe_parallax_px",
                  "compensate_pair_offset")
        flag_of = {f: f"--refine-{f.replace('_', '-')}" for f in fields}
        refine_flags = [flag_of[f] for f in fields if getattr(args, f"refine_{f}") != parser.get_default(f"refine_{f}")]
        if args.refine_workers != parser.get_default("refine_workers"):
            refine_flags.append("--refine-workers")
        if args.mode == "live" and refine_flags:
            raise UsageError(f"{' / '.join(refine_flags)}: offline mode only (the node's refinement follows its "
                             f"refinement_* parameters; --no-refine turns it off in both modes)")
        if args.no_refine and refine_flags:
            raise UsageError(f"{' / '.join(refine_flags)}: no effect with --no-refine (the refinement does not run)")
        try:
            schedule = schedule_from_flags(flag_of, enabled=not args.no_refine,
                                           **{f: getattr(args, f"refine_{f}") for f in fields})
        except ValueError as exc:       # a flag out of range: a usage error
            raise UsageError(str(exc)) from None
        warn_unused_source_flags(args, source, "crossi2p-evaluate-bag")
        deskew = deskew_config(args, source, args.bag)
        travel = travel_config(args)
        prior = load_prior(args.prior) if args.prior is not None else None
        calib = load_calibration_input(args.ground_truth, "--ground-truth") if args.ground_truth else None
        T_override = calib.T_cam_lidar if calib is not None else None
        if source == "rosbag2":
            check_bag_topics(args.bag, topics)
            if calib is not None:
                check_ground_truth_frames(args.bag, topics, calib, args.ground_truth, map_clouds=args.mode != "live")
            try:
                T_gt = T_override if T_override is not None else read_bag_ground_truth(args.bag)
            except ValueError as exc:      # no ground truth in the bag: say where else it can come from
                raise ValueError(f"{exc} (the ground truth is read from /tf_static; a bag without it: "
                                 f"--ground-truth YAML)") from None
            gt_source = "--ground-truth YAML" if T_override is not None else "the bag's /tf_static"
        else:  # dataset folders are checked (tables, calibration) before the model is loaded
            samples, count, gt_source, _ = _open_dataset(args, source)
            if T_override is not None:
                gt_source = "--ground-truth YAML"
        if args.model is None:
            from .calibration_node import default_model_card  # rclpy only when the shipped model is looked up

            args.model = default_model_card()
        runtime = load_runtime(args.model, args.execution_provider)
        refinement = RefinementConfig(workers=args.refine_workers)
        if source == "rosbag2" and args.mode == "live":
            from .live_replay import LiveReplayConfig, replay_bag_live  # rclpy only in live mode

            config = LiveReplayConfig(args.pacing, args.rate, args.node_timeout_s, args.slop_s,
                                      domain_id=args.ros_domain_id, refine=not args.no_refine,
                                      travel_check=travel.enabled)
            result = replay_bag_live(args.bag, runtime, T_gt, topics, config, knock, args.max_frames,
                                     progress=not args.quiet)
        elif source == "rosbag2":
            result = replay_bag(args.bag, runtime, T_gt, topics, PairingConfig(slop_s=args.slop_s), knock=knock,
                                max_frames=args.max_frames, lidar_frame=calib and calib.lidar_frame,
                                camera_frame=calib and calib.camera_frame, prior=prior, schedule=schedule,
                                deskew=deskew, travel=travel, refinement=refinement, progress=not args.quiet)
        else:
            result = replay_samples(samples, runtime, knock=knock, T_gt=T_override, max_frames=args.max_frames,
                                    total=count, prior=prior, schedule=schedule, deskew=deskew, travel=travel,
                                    refinement=refinement, progress=not args.quiet)
    except (ValueError, FileNotFoundError, ModelLoadError, OSError) as exc:
        print(f"crossi2p-evaluate-bag: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except RuntimeError as exc:  # live mode: the node did not keep up (LiveReplayError)
        print(f"crossi2p-evaluate-bag: error: live replay: {exc}", file=sys.stderr)
        return 1
    if result.interrupted:
        return _write_interrupted(args, result, runtime.card.name, source, gt_source)
    if getattr(result.pipeline, "prior_mismatch", None) is not None:  # the prior is for another sensor
        print(f"crossi2p-evaluate-bag: error: {result.pipeline.prior_mismatch}", file=sys.stderr)
        return 1
    if not result.frames:
        print(f"crossi2p-evaluate-bag: error: no camera/LiDAR pairs in {args.bag} "
              f"({result.no_pairs_reason(args.slop_s) or 'check topics and --slop-s'})", file=sys.stderr)
        return 1
    summary = summarize_replay(result)
    summary.update(bag=str(args.bag), model=runtime.card.name, source=source, mode=args.mode,
                   ground_truth=gt_source, ground_truth_T_cam_lidar=result.frames[-1].T_gt.tolist(), interrupted=False,
                   command="crossi2p-evaluate-bag " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None
                                                                                         else argv)))
    # null where not counted: live mode (the node's own queue) and dataset folders (already paired)
    summary["sweeps_unpaired_at_end"] = (result.sweeps_unpaired_at_end
                                         if args.mode == "offline" and source == "rosbag2" else None)
    if args.mode == "live":
        from .live_replay import live_summary, node_refinement_summary

        summary["live"] = live_summary(result)
        summary.update(node_refinement_summary(result))
    else:
        summary["deskew"] = result.pipeline.deskewer.summary()
    from .bag_report import write_report  # matplotlib only when reporting

    report_md = write_report(result, summary, args.report)
    write_frames_csv(result, args.report / "frames.csv")
    (args.report / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    _print_summary(summary, report_md, refine=not args.no_refine, travel_check=travel.enabled)
    for err in result.errors:
        what = err if " skipped: " in err else f"stopped early: {err}"   # a dataset frame, or a bag's end
        print(f"crossi2p-evaluate-bag: warning: {what}", file=sys.stderr)
    for reason, count in result.refused.items():
        print(f"crossi2p-evaluate-bag: warning: {count} message(s) left out: {reason}", file=sys.stderr)
    fused_bad = summary["fused_rte_m"] is None or (
        (args.max_rte_m is not None and summary["fused_rte_m"] > args.max_rte_m)
        or (args.max_rre_deg is not None and summary["fused_rre_geodesic_deg"] > args.max_rre_deg))
    if (args.max_rte_m is not None or args.max_rre_deg is not None) and fused_bad:
        print("crossi2p-evaluate-bag: final error above the thresholds", file=sys.stderr)
        return 3
    return 0


def _write_interrupted(args, result: ReplayResult, model: str, source: str, gt_source: str) -> int:
    """Ctrl-C during the replay: frames.csv and summary.json (and ``--json``) of the pairs processed
    so far, marked ``"interrupted": true``, no plots (whoever pressed Ctrl-C wants the prompt
    back); one line on stderr; exit code 130 (SIGTERM: 143)."""
    name, code = interrupt_name(), interrupt_exit_code()      # Ctrl-C / 130 or SIGTERM / 143
    try:  # a second Ctrl-C does not cut a file in half
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in TERMINATION_SIGNALS}
    except ValueError:  # not the main thread: signals cannot reach this code anyway
        previous = None
    try:
        summary = summarize_replay(result)
        summary.update(bag=str(args.bag), model=model, source=source, mode=args.mode, ground_truth=gt_source,
                       ground_truth_T_cam_lidar=result.frames[-1].T_gt.tolist() if result.frames else None,
                       interrupted=True)
        if args.mode == "live":
            from .live_replay import live_summary, node_refinement_summary

            summary["live"] = live_summary(result)
            summary.update(node_refinement_summary(result))
        args.report.mkdir(parents=True, exist_ok=True)
        written = [args.report / "frames.csv", args.report / "summary.json"]
        write_frames_csv(result, written[0])
        written[1].write_text(json.dumps(summary, indent=2))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(summary, indent=2))
            written.append(args.json)
    finally:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)
    print(f"crossi2p-evaluate-bag: interrupted ({name}) after {len(result.frames)} pairs; partial results "
          f"(\"interrupted\": true) in {', '.join(str(p) for p in written)}", file=sys.stderr)
    exit_now_if_work_in_flight(code)
    return code


def _print_summary(s: dict, report_md: Path, refine: bool = True, travel_check: bool = True) -> None:
    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.3f}{unit}"

    converged = f"converged after {s['frames_to_converge']} frames" if s["frames_to_converge"] else "did not converge"
    print(f"frames: {s['frames']} ({s['frames_valid']} valid), {converged}")
    if s.get("sweeps_unpaired_at_end"):
        print(f"{s['sweeps_unpaired_at_end']} sweep(s) still waiting for a later image when the bag ended: left "
              "unpaired, as the live node leaves them (crossi2p-calibrate pairs them)")
    if "deskew" in s:
        print(f"de-skewing: {describe_deskew(s['deskew'])}")
    print(f"per-frame: median RTE {fmt(s.get('rte_m_median'), ' m')}, median RRE "
          f"{fmt(s.get('rre_geodesic_deg_median'), ' deg')} (valid frames), acc {fmt(s.get('acc'))} (of all "
          f"{s['frames']} frames, a rejected one a miss), "
          f"latency {fmt(s['latency_ms_median'], ' ms')}")
    if s.get("estimate_T_cam_lidar") is not None and s.get("estimate_rejected"):
        # nothing the node would publish: a rejected network guess is a diagnosis, not an estimate
        print(f"no estimate: every per-frame estimate was rejected, nothing fused or refined; the last one, for "
              f"diagnosis ({s['estimate_kind']}): RTE {fmt(s['estimate_rte_m'], ' m')}, RRE "
              f"{fmt(s['estimate_rre_geodesic_deg'], ' deg')}")
    elif s.get("estimate_T_cam_lidar") is not None:
        print(f"estimated T_cam_lidar ({s['estimate_kind']}):\n"
              + "\n".join("  " + " ".join(f"{v:+.4f}" for v in row) for row in s["estimate_T_cam_lidar"]))
        print(f"its error against the ground truth ({s.get('ground_truth', 'ground truth')}): "
              f"RTE {fmt(s['estimate_rte_m'], ' m')}, RRE {fmt(s['estimate_rre_geodesic_deg'], ' deg')}")
    else:
        print("no estimate: no frame could be processed")
    if s.get("fused_rte_m") is None:
        print("fused: not converged")
    else:
        print(f"fused (converged): RTE {fmt(s['fused_rte_m'], ' m')}, RRE {fmt(s['fused_rre_geodesic_deg'], ' deg')}")
    if s.get("prior_rte_m") is not None:
        print(f"prior (--prior, kept where nothing better passes its checks): RTE {fmt(s['prior_rte_m'], ' m')}, "
              f"RRE {fmt(s['prior_rre_geodesic_deg'], ' deg')}")
    if s.get("refinement_runs"):
        print(f"refined ({s['refinement_accepted_runs']} of {s['refinement_runs']} runs accepted"
              + (f", first after {s['frames_to_refine']} pairs" if s["frames_to_refine"] else "")
              + f"): RTE {fmt(s['refined_rte_m'], ' m')}, RRE {fmt(s['refined_rre_geodesic_deg'], ' deg')}"
              + (f"; last run: {s['refinement_last_reason']}" if s["refinement_last_reason"] else ""))
    elif refine and "live" not in s:
        if not s["frames_to_converge"] and s.get("rejected_outside_prior") is None:   # null: no --prior
            print("refinement: not run (it starts from a converged fused estimate or from a --prior calibration "
                  "YAML; there was neither)")
        else:
            apart = (s.get("pairs_left_out") or {}).get("unsynchronised")
            print("refinement: not run (too few pairs for its window; --refine-window-frames"
                  + (f"; {apart} pairs left out with image and LiDAR stamps further apart than "
                     f"--refine-max-pair-offset-s: --refine-compensate-pair-offset moves their sweeps to the "
                     f"image's stamp" if apart else "") + ")")
    if "direction_of_travel_checked" in s:
        print("direction-of-travel check: " + describe_travel_check(travel_check, s["direction_of_travel_checked"],
                                                                    s["rejected_direction_of_travel"]))
    if "live" in s:
        lv = s["live"]
        print(f"live: {lv['messages_published']} messages played ({lv['pacing']} pacing), "
              f"{lv['frame_estimates']} frame estimates, {lv['pose_messages']} poses and "
              f"{lv['tf_static_messages']} /tf_static from the node, "
              f"{lv['node_counters'].get('pairs_dropped_busy')} pairs dropped as busy")
    if "drift_detection_delay_s" in s:
        print(f"knock at {s['knock_at_s']:.2f} s: drift detected after {fmt(s['drift_detection_delay_s'], ' s')}")
    print(f"report: {report_md}")


if __name__ == "__main__":
    sys.exit(main())
