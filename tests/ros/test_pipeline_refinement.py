"""CalibrationPipeline: the prior gate before fusion, the refinement window and schedule, and which
estimate may be published (refined > converged fused > nothing). Simulated frames, a scripted
runtime (the network's estimates are chosen by the test), the real refinement."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.deskew import points_at_time
from crossi2p.fusion import FusionConfig
from crossi2p.geometry import make_transform
from crossi2p.metrics import registration_error
from crossi2p.prior import Prior, prior_violation
from crossi2p.refinement import RefinementConfig, RefinementResult
from crossi2p.runtime import FrameEstimate
from crossi2p_ros.pairing import StampedPair
from crossi2p_ros.pipeline import CalibrationPipeline, CameraFrame, LidarSweep, RefinementScheduleConfig


def off_by(T: np.ndarray, angle_deg: float, axis, dt) -> np.ndarray:
    R = Rotation.from_rotvec(np.radians(angle_deg) * np.asarray(axis, float) / np.linalg.norm(axis))
    out = make_transform(R, np.zeros(3)) @ T
    out[:3, 3] = T[:3, 3] + np.asarray(dt, float)
    return out


class ScriptedRuntime:
    """Stands in for CalibrationRuntime: returns the next scripted T_cam_lidar as a valid estimate."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        self.calls = 0

    def estimate(self, image, points, camera, T_prior=None) -> FrameEstimate:
        T = self.transforms[min(self.calls, len(self.transforms) - 1)]
        self.calls += 1
        return FrameEstimate(valid=True, T_cam_lidar=T.copy(), confidence=0.9, inlier_ratio=0.8,
                             latency_ms={"graph": 1.0})


@pytest.fixture(scope="module")
def sim():
    """Three simulated pairs (small preset, seed 21) and their ground truth."""
    from crossi2p_training.sim import SimConfig, simulate_drive

    samples = simulate_drive(SimConfig.preset("small"), seed=21, frames=3).paired_samples()
    return samples, samples[0].T_cam_lidar


EVERY_PAIR = {"keyframe_parallax_px": 0.0}
"""These tests repeat their three views: every pair joins the window (no keyframe rule)."""


def pair_of(sample, k: int) -> StampedPair:
    """The sample as the pipeline's k-th pair (stamps 0.1 s apart, so pairs can be repeated)."""
    return StampedPair(0.1 * k, CameraFrame(sample.image, sample.camera, "camera"), 0.1 * k + 0.01,
                       LidarSweep(sample.points, "lidar"))


def feed(pipeline: CalibrationPipeline, samples, n: int, start: int = 0):
    return [pipeline.process(pair_of(samples[(start + k) % len(samples)], start + k)) for k in range(n)]


def test_estimate_outside_the_prior_is_rejected_before_fusion_with_its_reason(sim):
    samples, T_gt = sim
    prior = Prior(T_gt, 5.0, 0.3, source="test")
    far, near = off_by(T_gt, 12.0, [0, 1, 0], [0, 0, 0]), off_by(T_gt, 1.0, [0, 1, 0], [0.05, 0, 0])
    pipeline = CalibrationPipeline(ScriptedRuntime([far, near]), prior=prior,
                                   schedule=RefinementScheduleConfig(enabled=False, **EVERY_PAIR))
    rejected, accepted = feed(pipeline, samples, 2)
    assert not rejected.estimate.valid and not rejected.fused
    assert rejected.estimate.reason == "outside prior: 12.0 deg / 0.00 m from the prior (bounds 5 deg / 0.3 m)"
    assert accepted.estimate.valid and accepted.fused and accepted.state.frames_accepted == 1
    assert pipeline.rejected_outside_prior == 1
    assert len(pipeline.window) == 2  # every pair is kept for the refinement, whatever the network said


def test_without_prior_or_convergence_nothing_is_due_refined_or_published(sim):
    samples, T_gt = sim
    pipeline = CalibrationPipeline(ScriptedRuntime([off_by(T_gt, 1.0, [1, 0, 0], [0, 0, 0])]))
    feed(pipeline, samples, 2)
    assert pipeline.fuser.state.status != "converged"
    assert pipeline.refinement_start() is None and not pipeline.refinement_due()
    assert pipeline.refine() is None and pipeline.refinement_runs == 0
    assert pipeline.published_estimate() == (None, None, None)


def test_refinement_from_the_prior_searches_its_bounds_and_publishes_only_an_accepted_result(sim):
    samples, T_gt = sim
    T_prior = off_by(T_gt, 2.0, [1, -1, 2], [0.06, -0.04, 0.08])
    prior = Prior(T_prior, 5.0, 0.3, source="test")
    pipeline = CalibrationPipeline(ScriptedRuntime([T_gt]), prior=prior, fusion=FusionConfig(min_inliers_to_converge=50),
                                   schedule=RefinementScheduleConfig(window_frames=3, every_frames=2, **EVERY_PAIR))
    assert not pipeline.refinement_due()  # nothing in the window yet
    feed(pipeline, samples, 1)
    assert pipeline.refinement_due()      # never ran, the prior is a start
    job = pipeline.plan_refinement()
    assert job.start_stage == "prior" and np.array_equal(job.T_start, T_prior)
    assert (job.config.max_rotation_deg, job.config.max_translation_m) == (5.0, 0.3)  # the prior's box
    result = pipeline.run_refinement(job)
    run = pipeline.apply_refinement(job, result)
    assert run.pairs_processed == 1 and pipeline.refinement_runs == 1
    np.testing.assert_array_equal(result.T_start, T_prior)
    T, cov, stage = pipeline.published_estimate()
    if result.accepted:
        assert stage == "refined" and pipeline.first_refined_at == 1 and pipeline.refined is result
        np.testing.assert_array_equal(T, result.T_cam_lidar)
        assert cov.shape == (6, 6) and np.all(np.isfinite(cov))
        assert result.cost_final < result.cost_start
        assert prior_violation(result.T_cam_lidar, prior) is None
    else:  # a rejected refinement publishes nothing and says why
        assert (T, cov, stage) == (None, None, None) and result.reason and pipeline.refined is None
        np.testing.assert_array_equal(result.T_cam_lidar, T_prior)
    # the schedule: due again after every_frames new pairs, not before
    feed(pipeline, samples, 1, start=1)
    assert not pipeline.refinement_due()
    feed(pipeline, samples, 1, start=2)
    assert pipeline.refinement_due()
    job = pipeline.plan_refinement()
    assert len(job.pairs) == 3 and job.prepared[0] is not None and job.prepared[1:] == [None, None]  # reused / new
    feed(pipeline, samples, 1, start=3)
    assert pipeline.plan_refinement().prepared == [None] * 3  # the prepared pair left the window
    print(f"prior start: {registration_error(T_prior, T_gt)}; refined ({result.accepted}, {result.reason!r}): "
          f"{registration_error(result.T_cam_lidar, T_gt)}")


def _result(T: np.ndarray, accepted: bool) -> RefinementResult:
    return RefinementResult(T_cam_lidar=T.copy(), T_start=T.copy(), accepted=accepted,
                            reason="" if accepted else "objective not better than its start",
                            covariance=np.eye(6) * 1e-4 if accepted else None)


def test_converged_fusion_is_published_then_starts_the_refinement_and_a_rejected_run_never_replaces_refined(sim):
    samples, T_gt = sim
    T_net = off_by(T_gt, 0.5, [0, 0, 1], [0.02, 0, 0])
    prior = Prior(off_by(T_gt, 3.0, [0, 1, 0], [0, 0.1, 0]), 10.0, 0.5)
    pipeline = CalibrationPipeline(ScriptedRuntime([T_net]), prior=prior,
                                   fusion=FusionConfig(min_inliers_to_converge=2),
                                   schedule=RefinementScheduleConfig(every_frames=10))
    feed(pipeline, samples, 1)
    assert pipeline.refinement_start()[1] == "prior" and pipeline.published_estimate()[2] is None
    pipeline.apply_refinement(pipeline.plan_refinement(), _result(prior.T_cam_lidar, accepted=False))
    feed(pipeline, samples, 1, start=1)
    assert pipeline.fuser.state.status == "converged"
    T, cov, stage = pipeline.published_estimate()
    assert stage == "fused" and cov.shape == (6, 6)
    np.testing.assert_allclose(T, T_net, atol=1e-9)
    # the start changed kind (prior -> fused): due at once, with the fused start's search box
    assert pipeline.refinement_due()
    job = pipeline.plan_refinement()
    box = RefinementScheduleConfig()
    assert job.start_stage == "fused" and job.config.max_rotation_deg == box.fused_max_rotation_deg
    assert job.config.max_translation_m == box.fused_max_translation_m
    np.testing.assert_allclose(job.T_start, T_net, atol=1e-9)
    T_ref = off_by(T_gt, 0.1, [1, 0, 0], [0, 0, 0])
    pipeline.apply_refinement(job, _result(T_ref, accepted=True))
    assert pipeline.published_estimate()[2] == "refined" and pipeline.first_refined_at == 2
    pipeline.apply_refinement(pipeline.plan_refinement(), _result(T_net, accepted=False))
    assert pipeline.last_refinement.result.accepted is False
    np.testing.assert_array_equal(pipeline.published_estimate()[0], T_ref)  # still the accepted one


def test_a_re_run_also_descends_from_the_accepted_refinement_it_would_replace(sim):
    """Each run starts at the fused estimate; the previous accepted result is a further seed, so
    a re-run on a new window cannot lose it to a worse minimum near the fused start (a simulated
    drive: runs at 0.02-0.05 m were replaced by one at 0.46 m before)."""
    samples, T_gt = sim
    T_net = off_by(T_gt, 1.0, [0, 1, 0], [0.0, 0.0, 0.3])
    pipeline = CalibrationPipeline(ScriptedRuntime([T_net]), fusion=FusionConfig(min_inliers_to_converge=2),
                                   schedule=RefinementScheduleConfig(every_frames=1))
    feed(pipeline, samples, 3)
    job = pipeline.plan_refinement()
    assert job.start_stage == "fused" and job.extra_starts == []
    pipeline.apply_refinement(job, _result(T_gt, accepted=True))
    job = pipeline.plan_refinement()
    np.testing.assert_allclose(job.T_start, pipeline.fuser.state.T_cam_lidar, atol=1e-12)
    assert len(job.extra_starts) == 1 and np.allclose(job.extra_starts[0], T_gt)
    result = pipeline.run_refinement(job)     # the real search, over the real window
    err = registration_error(result.T_cam_lidar if result.accepted else T_gt, T_gt)
    assert err.rte_m < 0.1 and err.rre_geodesic_deg < 0.5, (result.reason, err)


def test_a_drift_event_forgets_the_refined_estimate_and_the_window(sim):
    samples, T_gt = sim
    knocked = off_by(T_gt, 5.0, [0, 0, 1], [0, 0, 0])
    fusion = FusionConfig(min_inliers_to_converge=2, drift_frames=3, drift_rotation_deg=3.0)
    pipeline = CalibrationPipeline(ScriptedRuntime([T_gt] * 3 + [knocked] * 10), fusion=fusion)
    feed(pipeline, samples, 3)
    pipeline.apply_refinement(pipeline.plan_refinement(), _result(T_gt, accepted=True))
    assert pipeline.published_estimate()[2] == "refined"
    outcomes = feed(pipeline, samples, 6, start=3)
    assert outcomes[-1].state.drift_events >= 1
    assert pipeline.refined is None and pipeline.published_estimate()[2] != "refined"
    assert len(pipeline.window) < 6  # cleared at the drift event, refilled since


def test_pairs_further_apart_in_time_than_max_pair_offset_are_not_refined_on(sim):
    samples, T_gt = sim
    pipeline = CalibrationPipeline(ScriptedRuntime([T_gt]),
                                   schedule=RefinementScheduleConfig(enabled=False, max_pair_offset_s=0.02))
    s = samples[0]
    synced = StampedPair(1.0, CameraFrame(s.image, s.camera, "camera"), 1.005, LidarSweep(s.points, "lidar"))
    apart = StampedPair(2.0, CameraFrame(s.image, s.camera, "camera"), 2.033, LidarSweep(s.points, "lidar"))
    pipeline.process(synced)
    pipeline.process(apart)
    assert pipeline.window == [synced] and pipeline.pairs_unsynchronised == 1
    assert pipeline.pairs_processed == 2  # the network and fusion still saw both


def test_with_compensate_pair_offset_a_pair_further_apart_joins_with_its_sweep_at_the_images_stamp(sim):
    """The sweep's points moved by the odometry's motion over the 33 ms between the stamps
    (``crossi2p.deskew.points_at_time``); a sweep whose motion is unknown stays out."""
    samples, T_gt = sim
    schedule = RefinementScheduleConfig(enabled=False, max_pair_offset_s=0.02, compensate_pair_offset=True)
    pipeline = CalibrationPipeline(ScriptedRuntime([T_gt]), schedule=schedule)
    s = samples[0]
    w, v = np.array([0.0, 0.0, 0.2]), np.array([10.0, 0.0, 0.0])
    moving = StampedPair(2.033, CameraFrame(s.image, s.camera, "camera"), 2.0,
                         LidarSweep(s.points, "lidar", velocity=(w, v)))
    unknown = StampedPair(3.033, CameraFrame(s.image, s.camera, "camera"), 3.0, LidarSweep(s.points, "lidar"))
    pipeline.process(moving)
    pipeline.process(unknown)
    [kept] = pipeline.window
    assert (kept.image_stamp_s, kept.lidar_stamp_s) == (2.033, 2.0)
    np.testing.assert_allclose(kept.lidar.points, points_at_time(s.points, 0.033, w, v), atol=1e-6)
    assert np.abs(kept.lidar.points[:, 0] - s.points[:, 0]).max() > 0.3     # 0.33 m of travel
    assert pipeline.pairs_time_compensated == 1 and pipeline.pairs_unsynchronised == 1
    off = CalibrationPipeline(ScriptedRuntime([T_gt]), schedule=dataclasses.replace(schedule,
                                                                                     compensate_pair_offset=False))
    off.process(moving)
    assert off.window == [] and off.pairs_unsynchronised == 1 and off.pairs_time_compensated == 0


@pytest.mark.parametrize("window_frames", [4, 5])
def test_a_spread_window_keeps_pairs_evenly_spaced_over_everything_since_the_start(sim, window_frames):
    samples, T_gt = sim
    schedule = RefinementScheduleConfig(enabled=False, window_frames=window_frames, window_span="spread", **EVERY_PAIR)
    pipeline = CalibrationPipeline(ScriptedRuntime([T_gt]), schedule=schedule)
    for n in range(1, 40):
        feed(pipeline, samples, 1, start=n - 1)
        stamps = [round(p.image_stamp_s / 0.1) for p in pipeline.window]  # pair indices
        steps = set(np.diff(stamps))
        assert stamps[0] == 0 and len(steps) <= 1, (n, stamps)        # from the first pair, evenly spaced
        assert len(pipeline.window) <= window_frames
        assert n - 1 - stamps[-1] < max(steps, default=1), (n, stamps)  # up to the newest admissible pair
        assert len(pipeline.window) >= min(n, (window_frames + 1) // 2)
    assert max(steps) >= 8                                            # it spans all 39 pairs
    pipeline.reset()
    feed(pipeline, samples, 2, start=100)
    assert [round(p.image_stamp_s / 0.1) for p in pipeline.window] == [100, 101]  # a reset starts afresh


def test_window_span_must_be_recent_or_spread_and_the_pair_offset_not_negative():
    with pytest.raises(ValueError, match="window_span"):
        RefinementScheduleConfig(window_span="all")
    with pytest.raises(ValueError, match="max_pair_offset_s"):
        RefinementScheduleConfig(max_pair_offset_s=-0.01)


def test_a_card_with_a_fixed_byte_or_uint16_intensity_divisor_is_refused_on_decoded_clouds():
    """The pipeline's clouds arrive in [0, 1] from the decoders: a card dividing by 255 or 65535
    again would silently squash every intensity, so the pipeline refuses it in one line."""
    import dataclasses

    from crossi2p.preprocess import LidarIntensityConfig
    from crossi2p.runtime import CalibrationRuntime

    from .test_calibration_node import MODEL_CARD

    runtime = CalibrationRuntime(MODEL_CARD)
    try:
        CalibrationPipeline(runtime)          # the shipped card (fixed) is fine
        for scale in ("byte", "uint16"):
            runtime.preprocess_config = dataclasses.replace(runtime.preprocess_config,
                                                            lidar_intensity=LidarIntensityConfig(scale=scale))
            with pytest.raises(ValueError, match=f"lidar_intensity.scale '{scale}' is not supported"):
                CalibrationPipeline(runtime)
    finally:
        runtime.close()


def test_sweeps_that_could_not_be_deskewed_are_not_refined_on():
    """With de-skewing on, the first sweep (no odometry velocity yet) is marked skewed and kept out
    of the refinement window (counted); the next one, de-skewed, goes in."""
    from crossi2p.deskew import DeskewConfig
    from crossi2p_training.sim import SimConfig, simulate_drive

    drive = simulate_drive(SimConfig.preset("small"), seed=3, frames=3)
    pipeline = CalibrationPipeline(None, deskew=DeskewConfig(mode="azimuth"),
                                   schedule=RefinementScheduleConfig(**EVERY_PAIR))   # one image for every sweep
    sweeps = [pipeline.deskew_sweep(t, LidarSweep(p, "lidar")) for t, p in drive.lidar_sweeps]
    assert [s.skewed for s in sweeps] == [True, False, False]
    assert not np.array_equal(sweeps[1].points[:, :3], drive.lidar_sweeps[1][1][:, :3])   # moved
    image = CameraFrame(drive.camera_frames[0][1], drive.camera, "camera")
    fake = FrameEstimate(valid=False, reason="scripted")
    for k, s in enumerate(sweeps):
        pipeline.fuse(StampedPair(drive.lidar_sweeps[k][0], image, drive.lidar_sweeps[k][0], s), fake)
    assert pipeline.pairs_skewed == 1 and len(pipeline.window) == 2


def test_a_per_frame_estimate_that_drives_the_camera_backwards_is_refused_before_fusion():
    """The direction-of-travel check (crossi2p.travel_check) in the pipeline: every sweep offered
    goes through the odometry (de-skewing off), and an estimate turned 180 deg about the camera's
    vertical, which a single frame of a street alike ahead and behind cannot tell apart, is made
    invalid with its reason once the LiDAR has travelled; the truth is fused."""
    from crossi2p_training.sim import SimConfig, simulate_drive

    samples = simulate_drive(SimConfig.preset("small"), seed=11, frames=8).paired_samples()
    T_gt = samples[0].T_cam_lidar
    flip = make_transform(Rotation.from_euler("y", 180, degrees=True), np.zeros(3)) @ T_gt
    pipeline = CalibrationPipeline(ScriptedRuntime([T_gt, flip] * 4), fusion=FusionConfig(min_inliers_to_converge=50))
    outcomes = []
    for s in samples:
        sweep = pipeline.deskew_sweep(s.lidar_stamp_s, LidarSweep(s.points, "lidar"))
        assert sweep.T_odom_lidar is not None and np.array_equal(sweep.points, s.points)
        pair = StampedPair(s.stamp_s, CameraFrame(s.image, s.camera, "camera"), s.lidar_stamp_s, sweep)
        outcomes.append(pipeline.process(pair))
    truth, flipped = outcomes[2::2], outcomes[1::2]           # the first pair has nothing to compare with
    assert all(o.estimate.valid and o.fused and o.estimate.travel_angle_deg < 20.0 for o in truth)
    assert all(not o.estimate.valid and not o.fused and o.estimate.reason.startswith("direction of travel")
               and o.estimate.travel_angle_deg > 150.0 for o in flipped), [o.estimate.reason for o in flipped]
    assert pipeline.travel_check.refused == len(flipped) == 4


def _view_pair(s, k: int, shift_px: int = 0) -> StampedPair:
    """Pair k (stamps 0.1 s apart) with the sample's image shifted ``shift_px`` to the right."""
    return StampedPair(0.1 * k, CameraFrame(np.roll(s.image, shift_px, axis=1), s.camera, "camera"), 0.1 * k,
                       LidarSweep(s.points, "lidar"))


def test_only_keyframes_join_the_window_while_the_view_stands_still_one_a_second(sim):
    """Keyframes (RefinementScheduleConfig.keyframe_parallax_px, 2 px at 640 px wide): the same
    view repeated adds one pair a second (keyframe_max_gap_s); a view whose corners moved 8 px
    (12 px at 640 wide: this image is 416 px) joins at once, one moved 1 px (1.5 px) does not;
    0 turns the rule off."""
    samples, T_gt = sim
    s = samples[0]
    fake = FrameEstimate(valid=False, reason="scripted")
    pipeline = CalibrationPipeline(ScriptedRuntime([T_gt]),
                                   schedule=RefinementScheduleConfig(enabled=False, window_frames=100))
    for k in range(25):                                   # 2.4 s of one view: pairs 0, 10, 20 join
        pipeline.fuse(_view_pair(s, k), fake)
    assert [round(p.lidar_stamp_s * 10) for p in pipeline.window] == [0, 10, 20]
    assert pipeline.pairs_not_keyframes == 22
    pipeline.fuse(_view_pair(s, 25, 1), fake)             # 1.5 px at 640 wide: not yet
    pipeline.fuse(_view_pair(s, 26, 8), fake)             # 12 px: joins
    pipeline.fuse(_view_pair(s, 27, 16), fake)            # 8 px (12 at 640) from the last one kept: joins
    assert [round(p.lidar_stamp_s * 10) for p in pipeline.window][-3:] == [20, 26, 27]
    every = CalibrationPipeline(ScriptedRuntime([T_gt]),
                                schedule=RefinementScheduleConfig(enabled=False, keyframe_parallax_px=0.0))
    for k in range(5):
        every.fuse(_view_pair(s, k), fake)
    assert len(every.window) == 5 and every.pairs_not_keyframes == 0
    with pytest.raises(ValueError, match="keyframe_parallax_px"):
        RefinementScheduleConfig(keyframe_parallax_px=-1.0)
