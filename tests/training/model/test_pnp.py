"""Differentiable multi-hypothesis PnP (model/pnp.py): exact recovery of known poses (any yaw,
+-10 m), robustness to outliers, the prior hypothesis, gradients, and its small algebra."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from crossi2p_training.model.pnp import (CANONICAL_R_CAM_LIDAR, MultiHypothesisPnP, PnPConfig, so3_exp,
                                         solve3_adjugate, solve_spd)

K_CPU = np.array([[220.0, 0.0, 191.5], [0.0, 220.0, 63.5], [0.0, 0.0, 1.0]])  # 384x128 image


def make_case(seed: int, n: int = 300, outlier_ratio: float = 0.0, dtype=torch.float64):
    """Points seen by a camera at a random ``global``-protocol pose: the canonical mount, a few
    degrees of mounting tilt, any yaw about the camera's vertical axis, +-10 m horizontally."""
    rng = np.random.default_rng(seed)
    R = (Rotation.from_euler("y", rng.uniform(-np.pi, np.pi)).as_matrix() @ np.array(CANONICAL_R_CAM_LIDAR)
         @ Rotation.from_euler("xyz", rng.uniform(-3, 3, 3), degrees=True).as_matrix())
    t = np.array([rng.uniform(-10, 10), rng.uniform(-0.5, 0.5), rng.uniform(-10, 10)])
    u, v, z = rng.uniform(0, 383, n), rng.uniform(0, 127, n), rng.uniform(4, 40, n)
    P_cam = np.stack([(u - K_CPU[0, 2]) / K_CPU[0, 0] * z, (v - K_CPU[1, 2]) / K_CPU[1, 1] * z, z], 1)
    X = (P_cam - t) @ R                                    # LiDAR frame: R^T (p - t)
    uv = np.stack([u, v], 1)
    k = int(outlier_ratio * n)
    uv[:k] = np.stack([rng.uniform(0, 383, k), rng.uniform(0, 127, k)], 1)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    as_t = lambda a: torch.tensor(a, dtype=dtype)[None]
    return as_t(X), as_t(uv), torch.ones(1, n, dtype=dtype), as_t(K_CPU), T


def pose_error(T_est: torch.Tensor, T_gt: np.ndarray) -> tuple[float, float]:
    D = np.linalg.inv(T_est.detach().double().numpy()) @ T_gt
    return float(Rotation.from_matrix(D[:3, :3]).magnitude()), float(np.linalg.norm(D[:3, 3]))


@pytest.mark.parametrize("outlier_ratio", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_recovers_known_pose_at_any_yaw_within_1e4(outlier_ratio, dtype):
    pnp = MultiHypothesisPnP(PnPConfig())
    for seed in range(12):
        X, uv, w, K, T = make_case(seed, outlier_ratio=outlier_ratio, dtype=dtype)
        rot, trans = pose_error(pnp(X, uv, w, K).T_cam_lidar[0], T)
        assert rot < 1e-4 and trans < 1e-4, f"seed {seed}: {rot:.2e} rad, {trans:.2e} m"


def test_batch_elements_are_solved_independently():
    cases = [make_case(s, outlier_ratio=0.2) for s in range(3)]
    X, uv, w, K = (torch.cat([c[i] for c in cases]) for i in range(4))
    res = MultiHypothesisPnP()(X, uv, w, K)
    assert res.T_cam_lidar.shape == (3, 4, 4) and res.hypothesis_cost.shape == (3, 12)
    for b, c in enumerate(cases):
        rot, trans = pose_error(res.T_cam_lidar[b], c[4])
        assert rot < 1e-4 and trans < 1e-4
    # inlier statistics: 80 % of the correspondences are exact
    assert torch.allclose(res.inlier_ratio, torch.full((3,), 0.8, dtype=torch.float64), atol=0.02)


def test_zero_weights_remove_outliers_completely():
    X, uv, w, K, T = make_case(5, outlier_ratio=0.6)
    w[:, :180] = 0.0  # exactly the outliers
    res = MultiHypothesisPnP(PnPConfig(kernel="cauchy"))(X, uv, w, K)
    rot, trans = pose_error(res.T_cam_lidar[0], T)
    assert rot < 1e-6 and trans < 1e-6
    assert float(res.confidence[0]) == pytest.approx(1.0)


def test_prior_hypothesis_solves_poses_outside_the_yaw_family():
    """A LiDAR mounted rolled by 90 deg is not reachable from the yaw hypotheses; a prior near it is."""
    X, uv, w, K, T = make_case(3, outlier_ratio=0.2)
    roll = np.eye(4)
    roll[:3, :3] = Rotation.from_euler("x", 90, degrees=True).as_matrix()
    T_rolled = T @ roll                                   # camera sees the points of inv(roll) @ X
    Xr = torch.tensor((np.linalg.inv(roll)[:3, :3] @ X[0].numpy().T).T)[None]
    T_prior = T_rolled.copy()
    T_prior[:3, :3] = T_rolled[:3, :3] @ Rotation.from_euler("xyz", [8, -6, 5], degrees=True).as_matrix()
    T_prior[:3, 3] += [0.8, -0.5, 1.0]
    pnp = MultiHypothesisPnP(PnPConfig(yaw_hypotheses=4))
    with_prior = pnp(Xr, uv, w, K, torch.tensor(T_prior)[None], torch.ones(1, dtype=torch.float64))
    rot, trans = pose_error(with_prior.T_cam_lidar[0], T_rolled)
    assert rot < 1e-4 and trans < 1e-4
    assert int(with_prior.hypothesis_cost[0].argmin()) == 4  # the prior won
    ignored = pnp(Xr, uv, w, K, torch.tensor(T_prior)[None], torch.zeros(1, dtype=torch.float64))
    assert float(ignored.hypothesis_cost[0, 4]) > 1e9      # prior_weight 0: never selected


def test_gradcheck_float64():
    X, uv, w, K, _ = make_case(1, n=10, outlier_ratio=0.2)
    w = (torch.rand(1, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5)
    pnp = MultiHypothesisPnP(PnPConfig(yaw_hypotheses=3, hypothesis_iters=2, refine_iters=2,
                                       translation_irls_iters=1, kernel="cauchy", kernel_scale_px=(30.0, 10.0)))

    def f(weight, pixels, points):
        return pnp(points, pixels, weight, K).T_cam_lidar[:, :3, :]

    assert torch.autograd.gradcheck(f, (w.requires_grad_(), uv.clone().requires_grad_(), X.clone().requires_grad_()),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


def test_pose_gradient_reaches_the_correspondence_weights():
    X, uv, w, K, T = make_case(2, n=50, outlier_ratio=0.3, dtype=torch.float32)
    w = w.clone().requires_grad_()
    res = MultiHypothesisPnP(PnPConfig(kernel_scale_px=(40.0, 10.0)))(X, uv + torch.randn_like(uv), w, K)
    (res.T_cam_lidar[0, :3, 3] - torch.tensor(T[:3, 3], dtype=torch.float32)).norm().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_small_algebra_matches_reference_solvers():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 6, 6, dtype=torch.float64, generator=g)
    A = A @ A.transpose(1, 2) + 0.1 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(5, 6, dtype=torch.float64, generator=g)
    torch.testing.assert_close(solve_spd(A, b), torch.linalg.solve(A, b))
    A3 = torch.randn(5, 3, 3, dtype=torch.float64, generator=g) + 3 * torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(solve3_adjugate(A3, b[:, :3]), torch.linalg.solve(A3, b[:, :3]))
    phi = torch.cat([torch.randn(4, 3, dtype=torch.float64, generator=g), torch.zeros(1, 3, dtype=torch.float64)])
    ref = torch.tensor(Rotation.from_rotvec(phi.numpy()).as_matrix())
    torch.testing.assert_close(so3_exp(phi), ref)
