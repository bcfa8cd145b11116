"""``crossi2p-calibrate``: a user's own recording in, a calibration out (YAML + URDF snippet + report).

No ground truth is used. The recording goes through the node's own code path
(``crossi2p_ros.pipeline.CalibrationPipeline``, fed as ``crossi2p-evaluate-bag`` feeds it):

0. every LiDAR sweep de-skewed to its stamp when the vehicle moves (``--deskew``; by default for
   KITTI raw drives, whose sweeps are raw: ``crossi2p.deskew``);
1. every camera/LiDAR pair (up to ``--frames``) through the network, the prior gate (``--prior``:
   estimates outside its bounds are rejected with the reason) and the temporal fusion;
2. once, the training-free refinement over ``--window-frames`` pairs spread evenly over the
   recording (``--window-span recent``: the last ones), from the fused estimate if it converged,
   else from the prior (searching within its bounds); only keyframes join the window (a pair whose
   image moved ``--keyframe-parallax-px`` since the last one kept, or a second later), so that a
   vehicle standing still adds one view, not many;
3. the published estimate: the accepted refinement; the converged fused estimate only with
   ``--accept-fused`` (it is the network's, decimetre-grade in translation: its covariance carries
   the network's systematic error, 0.25 m / 0.3 deg per axis; without the flag that is exit 3).

A rig of cameras (rosbag2, ``--rig-camera IMAGE_TOPIC CAMERA_INFO_TOPIC PRIOR_YAML``, repeatable):
the rig's other cameras go through steps 0-1 on their own, and their windows join the main camera's
in one refinement of the LiDAR's pose (``crossi2p_ros.pipeline.RigCamera``). The cameras' poses
relative to each other come from the priors (the main ``--prior`` and each ``--rig-camera``'s), so
those must agree on where the cameras sit (the rig's camera calibration, a URDF); they may share an
error in where the LiDAR is, which is what is refined. Before a rig's result is accepted, each
camera's pairs alone are searched from it, and a camera that prefers a pose more than 1 deg / 0.1 m
away by more than the ambiguity margin refuses it ("rig inconsistent: rig camera k ...", k counting
the ``--rig-camera`` flags in order): its relative pose is likely wrong (``RefinementConfig.rig_check``).
Each rig camera's calibration is written
beside ``--out`` as ``OUT_STEM.<camera frame>.yaml`` and ``.urdf`` (without a covariance: the main YAML's is the
rig's, about the main camera). All the cameras see the LiDAR's surroundings from every side, so
one pose must explain every image: on a real 6-camera recording this is accepted where each camera
alone is refused (docs/benchmarks.md section 8, "A rig of cameras").

Inputs: a rosbag2 (folder or ``.mcap``/``.db3``; ``--image-topic``, ``--camera-info-topic``,
``--points-topic``), a KITTI Odometry sequence, a KITTI raw drive (or its date folder) or a
nuScenes-format folder (``crossi2p_ros.recordings``; ``--source`` to say which).

Outputs: ``--out calib.yaml`` (``crossi2p.calib_io``, with the 6x6 covariance and the provenance
in ``metadata``; what a refined covariance covers, as measured against ground truth, is in
``metadata.covariance_note``), ``calib.urdf`` beside it (a fixed joint LiDAR -> camera optical frame) and, with
``--report DIR``, ``overlay_before.png`` (the refinement's start), ``overlay_after.png`` (what the
refinement found, accepted or not), ``overlay_published.png`` (the calibration written) and
``report.md``; with ``--json PATH``, the run's figures machine-readably, written on exit 0 and
on exit 3 alike: ``exit_code``, ``stage`` (``refined`` or ``fused``; null on exit 3), ``reason`` (why there is no calibration, '' when there
is one), ``T_cam_lidar`` (the calibration written, or null), ``prior`` (its ``T_cam_lidar`` and
bounds, or null), ``refinement`` (or null: ``start``, ``accepted``, ``reason``, ``T_start``,
``T_searched``: what the search found even when it was rejected, never to be used as a
calibration; costs, std, time, ``window_span``), ``pairs``, ``pairs_valid``, ``fusion_status``,
``frames_fused``, ``rejected_outside_prior``, ``rejected_direction_of_travel`` (per-frame estimates
refused by the direction-of-travel check, ``crossi2p.travel_check``), ``direction_of_travel_checked``
(those it could check: the vehicle moved and the odometry had locked on), ``pairs_left_out`` (pairs kept
out of the refinement window: ``unsynchronised``, ``not_deskewed``, ``not_keyframes``), ``pairs_time_compensated``
(pairs kept with their sweep moved to the image's stamp, ``--compensate-pair-offset``), ``wall_time_s``, ``deskew`` (``mode``,
``sweeps_deskewed``), ``rig`` (null, or per ``--rig-camera``: ``image_topic``, ``camera_frame``,
``prior``, ``pairs``, ``window_pairs``, ``T_cam_lidar`` and ``out``, null on exit 3), ``read_errors`` (what could not be read: a dataset folder's corrupt frame is
skipped, a bag's ends the reading; also a warning on stderr). Matrices are 4x4 row lists, LiDAR ->
camera optical.

Exit codes: 0 a calibration it trusts was written (refined; fused only with ``--accept-fused``);
3 it cannot produce one (no pairs; the refinement rejected or not run, and the fusion not
converged or not accepted; nothing to start from; no pair synchronised within
``--max-pair-offset-s`` to refine on), with the reason in one line; 2 a usage error (one line:
an unknown flag, a flag's value of the wrong kind or out of its range, flags that do not go
together, e.g. ``--rig-camera`` without ``--prior``); 1 bad input (one line: a missing or
unreadable input or prior, a topic missing or of the wrong message type, an --out that cannot be
written: checked before the run; a prior whose ``frames`` name another camera or LiDAR than the
recording's messages: the run stops at the first pair; every message refused, e.g. a CameraInfo
topic of another camera than the images'); 130 interrupted (Ctrl-C; 143 on SIGTERM).
A prior YAML needs only ``T_cam_lidar`` (or ``translation`` + ``quaternion_xyzw``); its camera keys
are optional, the intrinsics come from the data; its ``frames`` (parent LiDAR, child camera
optical), when given, must be the recording's (dataset folders name none). Its bounds are a
claim the tool relies on: the search stays within them, so a result can be accepted that is no
better than a prior whose true error exceeds its stated bounds.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from crossi2p.calib_io import save_calibration_yaml, urdf_joint_snippet
from crossi2p.cli import ArgumentParser, UsageError, check_writable, check_writable_folder
from crossi2p.deskew import describe_deskew
from crossi2p.geometry import invert_transform
from crossi2p.interrupt import exit_130_on_ctrl_c, exit_now_if_work_in_flight, interrupt_exit_code, interrupt_name
from crossi2p.metrics import registration_error
from crossi2p.prior import MAX_PRIOR_ROTATION_DEG, Prior, load_prior
from crossi2p.runtime import ModelLoadError

from .pairing import PairingConfig
from .pipeline import (OFFLINE_WORKERS, RIG_POINTS_PER_CAMERA, WINDOW_SPANS, CalibrationPipeline, RefinementRun,
                       RefinementScheduleConfig, RigCamera,
                       schedule_from_flags)
from .recordings import (SOURCES, add_dataset_arguments, add_deskew_arguments, add_topic_arguments, check_bag_topics,
                         dataset_frames, deskew_config, detect_source, open_dataset, travel_config,
                         warn_unused_source_flags)

PROG = "crossi2p-calibrate"
EXIT_UNTRUSTED = 3
WINDOW_FRAMES = 40
"""Pairs of the one refinement, spread over the recording (the node refines over 20 recent ones,
every 10 pairs). On 6 simulated bags x 2 starts, 40 spread pairs ended within 2 cm / 0.1 deg in 8
of 12 runs, 20 spread pairs in 6, the last 20 in 3 (docs/benchmarks.md, section 8); the point
budget, hence the time per evaluation, is the same."""


COVARIANCE_NOTE = ("the refinement's covariance (a bootstrap plus the spread of the search's equally good ends, or "
                   "where it found one end the objective's curvature): against ground truth the errors were about "
                   "1 standard deviation on simulated 20- and 40-pair windows and 2-3 on real frames; it does not "
                   "see the objective's own bias (docs/benchmarks.md, section 8)")




class CannotCalibrate(Exception):
    """No calibration the tool trusts (exit 3); the message is the one-line reason."""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("input", type=Path, help="rosbag2 folder or .mcap/.db3 file, KITTI Odometry sequence folder, "
                                            "KITTI raw drive or date folder, or nuScenes-format folder")
    p.add_argument("--out", type=Path, required=True, help="calibration YAML to write (the URDF snippet goes "
                                                           "beside it with the suffix .urdf)")
    p.add_argument("--prior", type=Path, help="calibration YAML of a prior (its optional prior_max_rotation_deg / "
                                              "prior_max_translation_m keys bound it; default 10 deg / 0.5 m)")
    p.add_argument("--prior-max-rotation-deg", type=float, help="override the prior's rotation bound (deg)")
    p.add_argument("--prior-max-translation-m", type=float, help="override the prior's per-axis translation bound (m)")
    p.add_argument("--report", type=Path, help="write overlays (PNG) and report.md into this folder")
    p.add_argument("--json", type=Path, help="write the run's figures as JSON (also when it cannot calibrate, "
                                             "exit 3; keys in the description below)")
    p.add_argument("--model", type=Path, help="model card YAML (or the .onnx with its card beside it); default: "
                                              "the shipped model")
    p.add_argument("--frames", type=int, help="use at most this many pairs (default: all)")
    p.add_argument("--window-frames", type=int, default=WINDOW_FRAMES,
                   help="pairs the refinement looks at (default %(default)s)")
    p.add_argument("--window-span", choices=WINDOW_SPANS, default="spread",
                   help="which pairs: spread evenly over the whole recording (default) or the last N")
    p.add_argument("--max-pair-offset-s", type=float, default=RefinementScheduleConfig.max_pair_offset_s,
                   help="pairs whose image and LiDAR stamps differ by more are not refined on: the vehicle "
                        "moves in between (default %(default)s s)")
    p.add_argument("--compensate-pair-offset", action="store_true",
                   help="keep the pairs further apart too, their sweep moved to the image's stamp with the LiDAR "
                        "odometry's motion (a camera not triggered with the LiDAR; off by default)")
    p.add_argument("--keyframe-parallax-px", type=float, default=RefinementScheduleConfig.keyframe_parallax_px,
                   help="a pair joins the refinement window once its image's corners moved a median of this many "
                        "pixels (at 640 px wide) since the last one that joined, or 1 s passed: a vehicle "
                        "standing still adds one view, not many; 0: every pair (default %(default)s px)")
    p.add_argument("--source", choices=["auto", *SOURCES], default="auto", help="what INPUT is (default: detected)")
    add_topic_arguments(p)
    p.add_argument("--rig-camera", nargs=3, action="append", default=[],
                   metavar=("IMAGE_TOPIC", "CAMERA_INFO_TOPIC", "PRIOR_YAML"),
                   help="rosbag2: another camera of the same rig (repeatable), refined together with the main one; "
                        "its prior must agree with --prior on where the cameras sit relative to each other (see "
                        "below); its calibration goes beside --out as OUT_STEM.<camera frame>.yaml, its URDF snippet "
                        "as OUT_STEM.<camera frame>.urdf")
    p.add_argument("--slop-s", type=float, default=PairingConfig.slop_s,
                   help="pairing slop (s), rosbag2 only (a dataset folder is already paired: warns)")
    add_dataset_arguments(p)
    add_deskew_arguments(p)
    p.add_argument("--execution-provider", choices=["auto", "cuda", "cpu"], default="auto",
                   help="onnxruntime provider: auto = CUDA when available, else the CPU (default auto)")
    p.add_argument("--accept-fused", action="store_true",
                   help="when the refinement is rejected or cannot run, write the converged fused network "
                        "estimate (decimetre-grade in translation) with exit 0 instead of exit 3")
    p.add_argument("--workers", type=int, default=OFFLINE_WORKERS,
                   help="processes for the refinement's search (its seeds, polish and bootstrap run side by side; "
                        "the result does not depend on it; 2 is 1.5x faster on 2 cores; default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    return p


@exit_130_on_ctrl_c(PROG, "interrupted (Ctrl-C); no calibration written")
def main(argv: list[str] | None = None) -> int:
    return _main(argv)


@dataclass
class _RigMember:
    """One ``--rig-camera``: its replay and its pose from the main camera (``RigCamera.T_cam_ref``)."""

    image_topic: str
    prior: Prior
    result: object
    """Its ``evaluate_bag.ReplayResult`` (own pipeline, own window of keyframes)."""
    T_cam_ref: np.ndarray
    out: Path | None = None
    """Its calibration YAML, once written."""

    @property
    def camera_frame(self) -> str:
        frame = self.result.last_sample[0].frame_id if self.result.last_sample is not None else ""
        return frame or self.prior.camera_frame or self.image_topic.strip("/").replace("/", "_")


def _all_refused(result) -> str:
    """Why a replay has no pair because every image or cloud was refused ('' otherwise):
    ``reason (Nx)`` per reason, for the one-line bad-input error."""
    if result.frames or not result.refused:
        return ""
    return "; ".join(f"{reason} ({n}x)" for reason, n in result.refused.items())


def _load_rig(args, source: str, prior: Prior | None) -> list[Prior]:
    """The ``--rig-camera`` priors, their topics checked (ValueError: one line naming the flag)."""
    if not args.rig_camera:
        return []
    if source != "rosbag2":
        raise UsageError(f"--rig-camera: a rosbag2 input only (its cameras are topics), got a {source} input")
    if prior is None:
        raise UsageError("--rig-camera: needs --prior (the cameras' poses relative to each other come from the priors)")
    topics = [image_topic for image_topic, _, _ in args.rig_camera]
    for image_topic in topics:
        if image_topic == args.image_topic:
            raise UsageError(f"--rig-camera {image_topic}: that is the main camera (--image-topic)")
        if topics.count(image_topic) > 1:
            raise UsageError(f"--rig-camera {image_topic}: given twice (each camera once)")
    priors = []
    for image_topic, info_topic, path in args.rig_camera:
        check_bag_topics(args.input, (image_topic, info_topic, args.points_topic))
        priors.append(load_prior(path))
    return priors


def _load_prior(args) -> Prior | None:
    if args.prior is None:
        if args.prior_max_rotation_deg is not None or args.prior_max_translation_m is not None:
            raise UsageError("--prior-max-rotation-deg / --prior-max-translation-m: need --prior YAML")
        return None
    for flag, value, top in (("--prior-max-rotation-deg", args.prior_max_rotation_deg, MAX_PRIOR_ROTATION_DEG),
                             ("--prior-max-translation-m", args.prior_max_translation_m, np.inf)):
        if value is not None and not (np.isfinite(value) and 0 < value <= top):
            raise UsageError(f"{flag}: expected a number > 0" + (f" and <= {top:g}" if np.isfinite(top) else "")
                             + f", got {value:g}")
    prior = load_prior(args.prior)
    return dataclasses.replace(
        prior, max_rotation_deg=prior.max_rotation_deg if args.prior_max_rotation_deg is None
        else args.prior_max_rotation_deg,
        max_translation_m=prior.max_translation_m if args.prior_max_translation_m is None
        else args.prior_max_translation_m)


def _main(argv: list[str] | None) -> int:
    from crossi2p.model_card import resolve_model_card

    from .evaluate_bag import load_runtime, replay_bag, replay_samples

    args = build_parser().parse_args(argv)
    topics = (args.image_topic, args.camera_info_topic, args.points_topic)
    t0 = time.perf_counter()
    try:
        if args.frames is not None and args.frames < 1:
            raise UsageError(f"--frames: expected >= 1, got {args.frames}")
        if args.workers < 1:
            raise UsageError(f"--workers: expected >= 1 processes, got {args.workers}")
        if not args.slop_s > 0:
            raise UsageError(f"--slop-s: expected a stamp difference > 0 seconds, got {args.slop_s}")
        if args.out.suffix.lower() not in (".yaml", ".yml"):
            raise UsageError(f"--out {args.out}: expected a calibration .yaml path (the URDF snippet goes beside it)")
        try:
            schedule = schedule_from_flags(
                {"window_frames": "--window-frames", "max_pair_offset_s": "--max-pair-offset-s",
                 "keyframe_parallax_px": "--keyframe-parallax-px"},
                enabled=False, window_frames=args.window_frames, window_span=args.window_span,
                max_pair_offset_s=args.max_pair_offset_s, keyframe_parallax_px=args.keyframe_parallax_px,
                compensate_pair_offset=args.compensate_pair_offset)
        except ValueError as exc:       # a flag out of range: a usage error
            raise UsageError(str(exc)) from None
        if not args.input.exists():
            raise ValueError(f"input {args.input}: not found")
        source = detect_source(args.input) if args.source == "auto" else args.source
        deskew = deskew_config(args, source, args.input)
        travel = travel_config(args)
        warn_unused_source_flags(args, source, PROG)
        prior = _load_prior(args)
        rig_priors = _load_rig(args, source, prior)
        check_writable(args.out, "--out")
        if args.report is not None:
            check_writable_folder(args.report, "--report")
        if args.json is not None:
            check_writable(args.json, "--json")
        if source == "rosbag2":
            check_bag_topics(args.input, topics)
        else:
            samples, count, _, _ = open_dataset(args.input, source, args.kitti_camera, args.camera_channel,
                                                args.lidar_channel, require_extrinsic=False)   # none is used
        card = resolve_model_card(args.model) if args.model is not None else _default_model_card()
        runtime = load_runtime(card, args.execution_provider)
        if source == "rosbag2":
            result = replay_bag(args.input, runtime, None, topics, PairingConfig(slop_s=args.slop_s),
                                max_frames=args.frames, progress=not args.quiet, prior=prior, schedule=schedule,
                                pair_at_end=True, deskew=deskew, travel=travel)
        else:
            result = replay_samples(samples, runtime, max_frames=args.frames, total=count, progress=not args.quiet,
                                    prior=prior, schedule=schedule, require_ground_truth=False, deskew=deskew,
                                    travel=travel)
    except (ValueError, FileNotFoundError, ModelLoadError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    if result.interrupted:  # Ctrl-C during the replay: nothing half-done is written
        print(f"{PROG}: interrupted ({interrupt_name()}) after {len(result.frames)} pairs; no calibration written",
              file=sys.stderr)
        exit_now_if_work_in_flight(interrupt_exit_code())
        return interrupt_exit_code()
    pipeline: CalibrationPipeline = result.pipeline
    if pipeline.prior_mismatch is not None:  # bad input: the prior is for another camera or LiDAR
        print(f"{PROG}: error: {pipeline.prior_mismatch}", file=sys.stderr)
        return 1
    if _all_refused(result):  # every image or cloud refused: bad input, the reason says why
        print(f"{PROG}: error: no camera/LiDAR pairs in {args.input}: {_all_refused(result)}", file=sys.stderr)
        return 1
    rig = []
    for (image_topic, info_topic, _), rig_prior in zip(args.rig_camera, rig_priors):
        if not args.quiet:                     # beside its progress bar, on stderr
            print(f"rig camera {image_topic}:", file=sys.stderr, flush=True)
        try:
            rig_result = replay_bag(args.input, runtime, None, (image_topic, info_topic, args.points_topic),
                                    PairingConfig(slop_s=args.slop_s), max_frames=args.frames, progress=not args.quiet,
                                    prior=rig_prior, schedule=schedule, pair_at_end=True, deskew=deskew, travel=travel)
        except (ValueError, OSError) as exc:
            print(f"{PROG}: error: --rig-camera {image_topic}: {exc}", file=sys.stderr)
            return 1
        if rig_result.interrupted:
            print(f"{PROG}: interrupted ({interrupt_name()}); no calibration written", file=sys.stderr)
            exit_now_if_work_in_flight(interrupt_exit_code())
            return interrupt_exit_code()
        if rig_result.pipeline.prior_mismatch is not None:
            print(f"{PROG}: error: --rig-camera {image_topic}: {rig_result.pipeline.prior_mismatch}", file=sys.stderr)
            return 1
        if _all_refused(rig_result):                      # bad input, as for the main camera
            print(f"{PROG}: error: --rig-camera {image_topic}: no camera/LiDAR pairs: {_all_refused(rig_result)}",
                  file=sys.stderr)
            return 1
        rig.append(_RigMember(image_topic, rig_prior, rig_result,
                              rig_prior.T_cam_lidar @ invert_transform(prior.T_cam_lidar)))
    if result.errors and result.frames:      # some input could not be read: say so, go on with the rest
        print(f"{PROG}: warning: {len(result.errors)} part(s) of {args.input} could not be read and "
              f"{'were skipped' if source != 'rosbag2' else 'ended the reading'} (first: {result.errors[0]}); "
              f"using the {len(result.frames)} pairs read", file=sys.stderr)
    try:
        if not result.frames:
            raise CannotCalibrate(f"no camera/LiDAR pairs in {args.input} "
                                  f"({result.no_pairs_reason(args.slop_s) or 'check the topics and --slop-s'})")
        for m in rig:
            if not m.result.pipeline.window:
                raise CannotCalibrate(f"--rig-camera {m.image_topic}: no pair to refine on "
                                      f"({m.result.no_pairs_reason(args.slop_s) or 'check its topics and --slop-s'})")
        start = pipeline.refinement_start()
        if start is not None:
            if not args.quiet:
                span = "spread over the recording" if args.window_span == "spread" else "the last ones"
                left_out = _left_out(pipeline)
                with_rig = (f" and {sum(len(m.result.pipeline.window) for m in rig)} pairs of {len(rig)} more "
                            f"camera(s) of the rig" if rig else "")
                print(f"refining over {len(pipeline.window)} pairs ({span}"
                      + (f"; left out: {left_out}" if left_out else "")
                      + f"){with_rig} from the {start[1]} estimate ...", flush=True)
            pipeline.refinement_config = dataclasses.replace(pipeline.refinement_config, workers=args.workers)
            with tqdm(total=1, desc="refining", disable=args.quiet, leave=False) as bar:
                pipeline.refine(lambda what, done, total: _show(bar, what, done, total),
                                rig=[RigCamera(m.result.pipeline.window, m.T_cam_ref) for m in rig],
                                rig_points_per_camera=RIG_POINTS_PER_CAMERA)
        T, cov, stage = pipeline.published_estimate()
        if stage is None:
            raise CannotCalibrate(_why_not(pipeline))
        if stage == "fused" and not args.accept_fused:
            raise CannotCalibrate(_fused_only(pipeline))
    except CannotCalibrate as exc:
        elapsed_s = time.perf_counter() - t0      # the run's time, the same in the report and the JSON
        try:
            if args.report is not None:           # with no pair too: the reason, without overlays
                _write_report(args, result, pipeline, None, None, str(exc), elapsed_s, rig)
            if args.json is not None:
                _write_json(args, result, pipeline, None, None, str(exc), EXIT_UNTRUSTED, elapsed_s, rig)
        except OSError as write_exc:
            print(f"{PROG}: error: could not write the report or JSON: {write_exc}", file=sys.stderr)
        if not args.quiet:        # the next step, on stdout (stderr keeps the one-line reason)
            did = ("the result did not pass its checks" if pipeline.last_refinement is not None
                   else "there was no estimate to check")
            print(f"no calibration written: {did}" + _next_step(pipeline, args, source))
        print(f"{PROG}: cannot calibrate: {exc}", file=sys.stderr)
        return EXIT_UNTRUSTED

    image, sweep = result.last_sample          # the newest pair: its camera and frame ids
    # tf names: the recording's (a bag's headers), else the prior's, else a dataset folder's, else defaults
    folder_lidar, folder_camera = (("", "") if source == "rosbag2" else
                                   dataset_frames(args.input, source, args.camera_channel, args.lidar_channel))
    lidar_frame = sweep.frame_id or (prior.lidar_frame if prior else "") or folder_lidar or "lidar"
    camera_frame = image.frame_id or (prior.camera_frame if prior else "") or folder_camera or "camera_optical"
    run = pipeline.last_refinement
    metadata = {
        "tool": PROG, "input": str(args.input), "source": source, "model": runtime.card.name, "stage": stage,
        "pairs": len(result.frames), "pairs_valid": sum(f.valid for f in result.frames),
        "fusion_status": pipeline.fuser.state.status, "frames_fused": pipeline.fuser.state.frames_accepted,
        "rejected_outside_prior": pipeline.rejected_outside_prior,
        "prior": None if prior is None else prior.source,
        "refinement": None if run is None else _refinement_summary(run, pipeline.schedule.window_span),
        "deskew": pipeline.deskewer.summary(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "covariance_note": COVARIANCE_NOTE if stage == "refined" else "",
    }
    try:       # checked before the run; a disk that fills up or a folder removed meanwhile: one line
        yaml_path = save_calibration_yaml(args.out, T, image.camera, lidar_frame=lidar_frame,
                                          camera_frame=camera_frame, covariance=cov, metadata=metadata)
        urdf_path = args.out.with_suffix(".urdf")
        urdf_path.write_text(urdf_joint_snippet(T, lidar_frame, camera_frame))
        for m in rig:
            rig_stem = f"{args.out.stem}.{m.camera_frame.replace('/', '_')}"
            args.out.with_name(f"{rig_stem}.urdf").write_text(urdf_joint_snippet(m.T_cam_ref @ T, lidar_frame,
                                                                                 m.camera_frame))
            m.out = save_calibration_yaml(
                args.out.with_name(f"{rig_stem}.yaml"), m.T_cam_ref @ T,
                m.result.last_sample[0].camera, lidar_frame=lidar_frame, camera_frame=m.camera_frame,
                metadata={**metadata, "prior": m.prior.source, "rig_reference": camera_frame,
                          "pairs": len(m.result.frames), "pairs_valid": sum(f.valid for f in m.result.frames),
                          "rig_window_pairs": len(m.result.pipeline.window),
                          "covariance_note": f"none here: the rig's covariance is about {camera_frame}, in {args.out}"})
        report_md = None
        elapsed_s = time.perf_counter() - t0      # the run's time, the same in the report and the JSON
        if args.report is not None:
            report_md = _write_report(args, result, pipeline, T, stage, "", elapsed_s, rig)
        if args.json is not None:
            _write_json(args, result, pipeline, T, stage, "", 0, elapsed_s, rig)
    except OSError as exc:
        print(f"{PROG}: error: could not write the results: {exc}", file=sys.stderr)
        return 1
    _print_summary(T, cov, stage, pipeline, result, yaml_path, urdf_path, report_md)
    if rig:
        print(f"rig: wrote {', '.join(str(m.out) for m in rig)}")
    return 0


def _show(bar: tqdm, what: str, done: int, total: int) -> None:
    """The refinement's progress on ``bar`` (``crossi2p.refinement.Progress``): one bar per step
    (preparing frames, then refining), each with its own total."""
    if bar.disable:               # --quiet: a disabled bar has no description to compare
        return
    if bar.desc != what or bar.total != total:
        bar.set_description_str(what, refresh=False)
        bar.reset(total=total)
    bar.update(done - bar.n)


def _next_step(pipeline: CalibrationPipeline, args, source: str = "") -> str:
    """What to do after a refusal: keep the prior only where it was usable at all; after an
    ambiguous one-camera refinement of a rosbag2 that holds other cameras, try them as a rig."""
    if pipeline.prior is None:
        return ""
    run = pipeline.last_refinement
    if run is not None and run.start_stage == "prior" and run.result.points_in_view < 100:
        return (f"; the prior puts {run.result.points_in_view} LiDAR points into the image: check its "
                f"T_cam_lidar (it maps LiDAR points into the camera optical frame; its inverse, T_lidar_cam, "
                f"is a common mistake)")
    where = f" ({args.report / 'overlay_before.png'})" if args.report is not None else " (--report DIR draws it)"
    step = f"; keep using the prior if its overlay{where} looks aligned"
    if (source == "rosbag2" and not args.rig_camera and run is not None
            and run.result.reason.startswith("ambiguous")):
        from crossi2p.datasets.rosbag2 import bag_topics

        images = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"}
        others = sorted({t.removesuffix("/compressed") for t, kind in bag_topics(args.input).items()
                         if kind in images} - {args.image_topic})
        if others:
            step += (f"; this recording has {len(others)} other camera(s) ({', '.join(others[:3])}"
                     f"{', ...' if len(others) > 3 else ''}): with priors that agree on where the cameras sit, "
                     f"--rig-camera refines them together with this one, which often settles what one camera "
                     f"leaves open")
    return step


def _default_model_card() -> Path:
    from .calibration_node import default_model_card  # rclpy only when the shipped model is looked up

    return default_model_card()


def _why_not(pipeline: CalibrationPipeline) -> str:
    """One line: why there is no estimate to publish."""
    st = pipeline.fuser.state
    fusion = f"fusion not converged ({st.status}, {st.frames_accepted} of {pipeline.pairs_processed} pairs fused"
    fusion += f", {pipeline.rejected_outside_prior} outside the prior)" if pipeline.prior is not None else ")"
    prior = pipeline.prior
    if prior is not None and st.frames_accepted == 0 and pipeline.rejected_outside_prior >= 3:
        fusion += (f": every one of the {pipeline.rejected_outside_prior} network estimates that passed their checks "
                   f"lies outside the prior's bounds ({prior.max_rotation_deg:g} deg / {prior.max_translation_m:g} m), "
                   f"so the prior may be wrong or its bounds too tight,")
    run = pipeline.last_refinement
    no_pair = _no_pair_to_refine_on(pipeline)
    if no_pair:
        return f"{fusion} and {no_pair}"
    if run is None:
        return f"{fusion} and no --prior to refine from"
    return f"{fusion} and the refinement from the {run.start_stage} was rejected: {run.result.reason}"


def _fused_only(pipeline: CalibrationPipeline) -> str:
    """One line: only the fused network estimate is there (no accepted refinement), and why."""
    run = pipeline.last_refinement
    why = (_no_pair_to_refine_on(pipeline) or "the refinement did not run") if run is None else \
        f"the refinement from the {run.start_stage} was rejected: {run.result.reason}"
    return (f"only the fused network estimate is left ({why}); it is decimetre-grade in translation "
            f"(the network's systematic error), not a calibration: --accept-fused writes it")


def _left_out(pipeline: CalibrationPipeline) -> str:
    """The pairs kept out of the refinement window, and why, in words ('' when none)."""
    n = pipeline.pairs_left_out
    parts = [f"{n['unsynchronised']} with image and LiDAR stamps more than "
             f"{pipeline.schedule.max_pair_offset_s:g} s apart (--max-pair-offset-s)" if n["unsynchronised"] else "",
             f"{n['not_deskewed']} whose sweep could not be de-skewed" if n["not_deskewed"] else "",
             f"{n['not_keyframes']} whose view had hardly changed since the last pair kept "
             f"(--keyframe-parallax-px)" if n["not_keyframes"] else ""]
    return ", ".join(p for p in parts if p)


def _no_pair_to_refine_on(pipeline: CalibrationPipeline) -> str:
    """Why the refinement had nothing to run on although it had a start ('' when it had pairs,
    ran, or had no start), in this command's flags (``CalibrationPipeline.no_pair_to_refine_on``)."""
    if pipeline.last_refinement is not None:
        return ""
    return pipeline.no_pair_to_refine_on({"max_pair_offset_s": "--max-pair-offset-s",
                                          "compensate_pair_offset": "--compensate-pair-offset",
                                          "deskew_off": "--deskew off"})


def _refinement_summary(run: RefinementRun, window_span: str) -> dict:
    r = run.result
    return {"start": run.start_stage, "accepted": bool(r.accepted), "reason": r.reason, "frames": int(r.frames),
            "window_span": window_span,
            "points_in_view": int(r.points_in_view), "cost_start": float(r.cost_start),
            "cost_final": float(r.cost_final), "std_m": [float(v) for v in r.std_m],
            "std_deg": [float(v) for v in r.std_deg], "time_s": float(r.time_s)}


def _matrix(T) -> list | None:
    return None if T is None else [[float(v) for v in row] for row in np.asarray(T)]


def _nan_to_null(value):
    """NaN / inf floats (e.g. the std of a rejected refinement) as None: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _write_json(args, result, pipeline: CalibrationPipeline, T, stage, failure: str, exit_code: int,
                elapsed_s: float, rig: list[_RigMember] = ()) -> Path:
    """The run's figures as JSON (keys in the module docstring); parent folders are created."""
    import json

    run = pipeline.last_refinement
    refinement = None
    if run is not None:
        r = run.result
        refinement = {**_refinement_summary(run, pipeline.schedule.window_span), "T_start": _matrix(r.T_start),
                      "T_searched": _matrix(r.T_searched),
                      "ambiguity_margin": None if r.ambiguity_margin is None else float(r.ambiguity_margin)}
    prior = pipeline.prior
    summary = {
        "tool": PROG, "input": str(args.input), "exit_code": exit_code, "stage": stage, "reason": failure,
        "T_cam_lidar": _matrix(T), "out": str(args.out) if T is not None else None,
        "report": str(args.report) if args.report is not None else None,
        "prior": None if prior is None else {"source": prior.source, "T_cam_lidar": _matrix(prior.T_cam_lidar),
                                             "max_rotation_deg": prior.max_rotation_deg,
                                             "max_translation_m": prior.max_translation_m},
        "refinement": refinement, "pairs": len(result.frames), "pairs_valid": sum(f.valid for f in result.frames),
        "fusion_status": pipeline.fuser.state.status, "frames_fused": pipeline.fuser.state.frames_accepted,
        "rejected_outside_prior": pipeline.rejected_outside_prior,
        "rejected_direction_of_travel": pipeline.travel_check.refused,
        "direction_of_travel_checked": pipeline.travel_check.checked,
        "pairs_left_out": pipeline.pairs_left_out,
        "pairs_time_compensated": pipeline.pairs_time_compensated,
        "wall_time_s": float(elapsed_s),
        "deskew": pipeline.deskewer.summary(), "read_errors": list(result.errors),
        "rig": [{"image_topic": m.image_topic, "camera_frame": m.camera_frame, "prior": m.prior.source,
                 "pairs": len(m.result.frames), "window_pairs": len(m.result.pipeline.window),
                 "T_cam_lidar": _matrix(m.T_cam_ref @ T) if T is not None else None,
                 "out": str(m.out) if m.out is not None else None} for m in rig] or None,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(_nan_to_null(summary), indent=2) + "\n")
    return args.json


def _overlay(sample: tuple, T: np.ndarray, path: Path, caption: str) -> None:
    """``sample``'s cloud drawn on its image under ``T`` (``(CameraFrame, LidarSweep)``), captioned."""
    from crossi2p.overlay import draw_projected_points

    frame, sweep = sample
    image, camera = frame.image_rgb, frame.camera
    if camera.width < 800:  # small images: twice the size so the points stay visible
        image = cv2.resize(image, (2 * camera.width, 2 * camera.height), interpolation=cv2.INTER_LINEAR)
        camera = camera.resized(2 * camera.width, 2 * camera.height)
    drawn = draw_projected_points(image, sweep.points, camera, T)
    bar = np.zeros((28, drawn.shape[1], 3), np.uint8)
    cv2.putText(bar, caption, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack([bar, drawn]), cv2.COLOR_RGB2BGR))


def _stds(values, digits: int) -> str:
    """Standard deviations for the report; 'not computed' where the refinement gave none (NaN:
    the search ended before the covariance, e.g. an ambiguous or degenerate window)."""
    values = np.asarray(values, float)
    if not np.all(np.isfinite(values)):
        return "not computed (the refinement was rejected before its covariance)"
    return ", ".join(f"{v:.{digits}f}" for v in values)


def _write_report(args, result, pipeline: CalibrationPipeline, T, stage, failure: str, elapsed_s: float,
                  rig: list[_RigMember] = ()) -> Path:
    """Overlays (PNG) on the newest pair of the refinement window and report.md (with ``rig``:
    a row per ``--rig-camera`` and where its calibration went)."""
    out = args.report
    out.mkdir(parents=True, exist_ok=True)
    run = pipeline.last_refinement
    # the refinement window's newest pair; with no pair to refine on, the newest pair read
    pair = (pipeline.window[-1].image, pipeline.window[-1].lidar) if pipeline.window else result.last_sample
    images = []
    if run is not None and pair is not None:
        r = run.result
        _overlay(pair, r.T_start, out / "overlay_before.png", f"before: refinement start ({run.start_stage})")
        images.append((f"Before: the refinement's start ({run.start_stage} estimate)", "overlay_before.png"))
        T_after = r.T_cam_lidar if r.accepted else (r.T_searched if r.T_searched is not None else r.T_start)
        verdict = "accepted" if r.accepted else f"REJECTED: {r.reason}"
        _overlay(pair, T_after, out / "overlay_after.png", f"after refinement ({verdict})")
        images.append((f"After: what the refinement found ({verdict})", "overlay_after.png"))
    if T is not None and pair is not None:
        _overlay(pair, T, out / "overlay_published.png", f"calibration written ({stage})")
        images.append((f"The calibration written ({stage})", "overlay_published.png"))
    st = pipeline.fuser.state
    lines = [f"# crossi2p-calibrate: {args.input}", "",
             f"Result: **{'stage ' + stage if stage else 'no calibration: ' + failure}**"
             + (f" -> `{args.out}`" if stage else ""), "",
             "| figure | value |", "|---|---|",
             f"| pairs processed | {len(result.frames)} |",
             f"| pairs with a valid network estimate | {sum(f.valid for f in result.frames)} |",
             f"| fusion | {st.status}, {st.frames_accepted} frames fused |",
             f"| prior | {pipeline.prior.source if pipeline.prior else 'none'} |",
             f"| rejected outside the prior | {pipeline.rejected_outside_prior} |",
             f"| direction-of-travel check | {pipeline.travel_check.describe()} |",
             f"| de-skewing | {describe_deskew(pipeline.deskewer.summary())} |",
             f"| wall time | {elapsed_s:.1f} s |"]
    lines += [f"| rig camera {m.image_topic} ({m.camera_frame}) | {len(m.result.pipeline.window)} pairs in the window; "
              + (f"`{m.out}`" if m.out is not None else "no calibration written") + " |" for m in rig]
    if run is not None:
        r = run.result
        lines += [f"| refinement start | {run.start_stage} |",
                  f"| refinement window | {r.frames} pairs ({pipeline.schedule.window_span}), "
                  f"{r.points_in_view} points in view |",
                  f"| pairs left out of the window | {_left_out(pipeline) or 'none'} |",
                  f"| refinement cost start / final | {r.cost_start:.5f} / {r.cost_final:.5f} |",
                  f"| refinement std (x, y, z) m | {_stds(r.std_m, 4)} |",
                  f"| refinement std (rx, ry, rz) deg | {_stds(r.std_deg, 3)} |",
                  f"| refinement accepted | {r.accepted} {('(' + r.reason + ')') if r.reason else ''} |",
                  f"| refinement time | {r.time_s:.1f} s |"]
        change = registration_error(r.T_start, r.T_searched) if r.T_searched is not None else None
        if change is not None:
            lines.append(f"| refinement moved the start by | {change.rte_m:.3f} m, {change.rre_geodesic_deg:.3f} deg |")
    else:
        lines.append(f"| refinement | did not run ({_no_pair_to_refine_on(pipeline) or 'no converged fusion and no prior'}) |")
    if T is not None:
        lines += ["", "T_cam_lidar (LiDAR points into the camera optical frame):", "", "```",
                  *(" ".join(f"{v:+.6f}" for v in row) for row in T), "```"]
    lines.append("")
    for title, name in images:
        lines += [f"## {title}", "", f"![{name}]({name})", ""]
    if result.errors:
        lines += ["## What could not be read", "", *[f"- {e}" for e in result.errors], ""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    return md


def _print_summary(T, cov, stage, pipeline, result, yaml_path, urdf_path, report_md) -> None:
    st = pipeline.fuser.state
    print(f"pairs: {len(result.frames)} ({sum(f.valid for f in result.frames)} valid), fusion {st.status} "
          f"({st.frames_accepted} fused), {pipeline.rejected_outside_prior} rejected outside the prior")
    print(f"de-skewing: {describe_deskew(pipeline.deskewer.summary())}")
    print(f"direction-of-travel check: {pipeline.travel_check.describe()}")
    run = pipeline.last_refinement
    if run is not None:
        r = run.result
        print(f"refinement from the {run.start_stage}: {'accepted' if r.accepted else 'rejected (' + r.reason + ')'}, "
              f"cost {r.cost_start:.5f} -> {r.cost_final:.5f}, {r.frames} pairs ({pipeline.schedule.window_span}), "
              f"{r.time_s:.1f} s")
    elif _no_pair_to_refine_on(pipeline):
        print(f"refinement: did not run, {_no_pair_to_refine_on(pipeline)}")
    if cov is not None:
        std = np.sqrt(np.maximum(np.diag(cov), 0.0))
        note = COVARIANCE_NOTE if stage == "refined" else ("the fusion's covariance of the mean plus the network's "
                                                           "systematic error: the fused estimate, written with "
                                                           "--accept-fused")
        print(f"std: {', '.join(f'{v:.3f}' for v in std[:3])} m; "
              f"{', '.join(f'{np.degrees(v):.3f}' for v in std[3:])} deg ({note})")
    print(f"T_cam_lidar ({stage}):\n" + "\n".join("  " + " ".join(f"{v:+.5f}" for v in row) for row in T))
    print(f"wrote {yaml_path}, {urdf_path}" + (f", {report_md}" if report_md else ""))


if __name__ == "__main__":
    sys.exit(main())
