"""Temporal fusion: robust to outliers, converges with a covariance, detects a knocked camera."""
import numpy as np
from scipy.spatial.transform import Rotation

from crossi2p.fusion import ExtrinsicFuser, FusionConfig, robust_se3_mean
from crossi2p.geometry import make_transform
from crossi2p.metrics import registration_error

T_GT = make_transform(Rotation.from_euler("xyz", [-90, 0, -90], degrees=True), [0.05, -0.08, -0.27])


def noisy(T, rng, rot_deg=0.5, trans_m=0.03):
    E = make_transform(Rotation.from_rotvec(np.radians(rot_deg) * rng.normal(size=3)),
                       trans_m * rng.normal(size=3))
    return E @ T


def wild(rng):
    return make_transform(Rotation.random(random_state=int(rng.integers(1 << 30))), rng.uniform(-10, 10, 3))


def test_robust_mean_ignores_a_third_of_wild_estimates():
    rng = np.random.default_rng(0)
    Ts = np.stack([noisy(T_GT, rng) for _ in range(40)] + [wild(rng) for _ in range(20)])
    mean = robust_se3_mean(Ts, np.ones(len(Ts)), np.radians(3.0), 0.3)
    err = registration_error(mean.T, T_GT)
    # 40 samples of 0.5 deg / 3 cm noise per axis: the mean is within ~0.3 deg / 2 cm.
    assert err.rre_geodesic_deg < 0.3 and err.rte_m < 0.02
    assert mean.inliers[:40].mean() > 0.9 and not mean.inliers[40:].any()
    # Covariance of the mean ~ per-axis variance / n: (0.03 m)^2 / 40.
    assert np.allclose(np.diag(mean.covariance)[:3], 0.03**2 / 40, rtol=0.8)


def test_fuser_converges_then_holds_against_outliers():
    rng = np.random.default_rng(1)
    fuser = ExtrinsicFuser(FusionConfig(min_inliers_to_converge=8))
    for i in range(60):
        T = wild(rng) if i % 4 == 3 else noisy(T_GT, rng)
        fuser.add(T, confidence=0.9, stamp_s=0.1 * i)
    st = fuser.state
    assert st.status == "converged"
    assert st.converged_at_frame is not None and st.converged_at_frame <= 30
    err = registration_error(st.T_cam_lidar, T_GT)
    assert err.rre_geodesic_deg < 0.3 and err.rte_m < 0.03
    assert st.frames_rejected >= 10 and st.drift_events == 0


def test_low_confidence_and_invalid_estimates_are_rejected_with_a_reason():
    fuser = ExtrinsicFuser(FusionConfig(min_confidence=0.5))
    assert not fuser.add(T_GT, confidence=0.1, stamp_s=0.0)
    assert "confidence" in fuser.state.last_reject_reason
    bad = T_GT.copy()
    bad[0, 0] = np.nan
    assert not fuser.add(bad, confidence=0.9, stamp_s=0.1)
    assert "NaN" in fuser.state.last_reject_reason
    assert fuser.state.status == "waiting" and fuser.state.T_cam_lidar is None


def test_drift_after_convergence_is_detected_and_reconverges():
    rng = np.random.default_rng(2)
    cfg = FusionConfig(drift_frames=10)
    fuser = ExtrinsicFuser(cfg)
    for i in range(40):
        fuser.add(noisy(T_GT, rng), 0.9, 0.1 * i)
    assert fuser.state.status == "converged"
    # The camera is knocked by 4 degrees about its optical axis.
    T_knocked = make_transform(Rotation.from_euler("z", 4, degrees=True), np.zeros(3)) @ T_GT
    for i in range(40, 100):
        fuser.add(noisy(T_knocked, rng), 0.9, 0.1 * i)
    st = fuser.state
    assert st.drift_events == 1
    assert st.last_drift_at_frame == 41 + cfg.drift_frames - 1
    assert st.status == "converged"
    assert registration_error(st.T_cam_lidar, T_knocked).rre_geodesic_deg < 0.4


def test_reset_forgets_everything():
    rng = np.random.default_rng(3)
    fuser = ExtrinsicFuser()
    for i in range(20):
        fuser.add(noisy(T_GT, rng), 0.9, 0.1 * i)
    fuser.reset()
    assert fuser.state.status == "waiting" and fuser.state.frames_in == 0


def test_published_covariance_adds_the_networks_systematic_error_not_to_convergence():
    """Estimates that share a bias: the covariance of the mean shrinks as 1 / n and would claim
    millimetres; the published covariance keeps the systematic part, convergence does not use it."""
    bias = make_transform(Rotation.from_euler("z", 0.4, degrees=True), [0.3, 0.0, 0.0])
    runs = {}
    for systematic in ((0.0, 0.0), (0.25, 0.3)):
        fuser = ExtrinsicFuser(FusionConfig(systematic_translation_m=systematic[0],
                                            systematic_rotation_deg=systematic[1]))
        for i in range(60):
            fuser.add(noisy(bias @ T_GT, np.random.default_rng(i), 0.5, 0.03), 0.9, 0.1 * i)
        runs[systematic] = fuser.state
    bare, honest = runs[(0.0, 0.0)], runs[(0.25, 0.3)]
    assert bare.status == honest.status == "converged" and bare.converged_at_frame == honest.converged_at_frame
    assert bare.translation_std_m == honest.translation_std_m                  # the convergence test's
    err = registration_error(honest.T_cam_lidar, T_GT)
    assert err.rte_m > 0.25                                                    # the bias stays
    assert np.sqrt(np.trace(bare.covariance[:3, :3])) < 0.02                   # what the window alone says
    assert np.allclose(np.diag(honest.covariance - bare.covariance), [0.25**2] * 3 + [np.radians(0.3)**2] * 3)
    assert err.rte_m / np.sqrt(np.trace(honest.covariance[:3, :3])) < 1.0      # about the error now
