"""6. Differentiable multi-hypothesis PnP: weighted 2D-3D correspondences -> ``T_cam_lidar``.

Plain tensor ops only (exports to ONNX opset 17; no SVD/eig/solve/inverse): the 3x3 systems are
solved with the adjugate, the 6x6 Gauss-Newton systems by unrolled Gauss-Jordan elimination
(no pivoting: the damped normal matrix is symmetric positive definite). Gradients flow from the
returned pose into the correspondence weights, pixels and points through every iteration.

Algorithm (all hypotheses in parallel, then the best one refined):

1. **Hypotheses.** ``yaw_hypotheses`` rotations ``R_h = R_y(2 pi h / H) @ R_canonical`` about the
   camera's vertical axis, from the canonical LiDAR -> camera axis permutation
   (``x_cam = -y_lidar, y_cam = -z_lidar, z_cam = x_lidar``: a forward camera on a z-up,
   x-forward LiDAR). This covers the ``global`` protocol (any yaw about the camera's y, +-10 m).
   An optional prior pose (refine mode) is one more hypothesis, kept where ``prior_weight``.
2. **Translation in closed form** for each yaw hypothesis: weighted linear least squares on the
   bearing constraints ``p_x - x p_z = 0, p_y - y p_z = 0`` (``p = R X + t``, ``x, y`` normalised
   image coordinates), re-weighted ``translation_irls_iters`` times by the robust kernel of the
   reprojection error and ``1/depth^2`` (which turns the algebraic error into an image error).
3. **Gauss-Newton / Levenberg-Marquardt on SE(3)** (left update rotating about the points'
   weighted centroid ``p0``: ``R <- exp(dphi) R``, ``t <- exp(dphi) (t - p0) + p0 + dt``; Jacobi
   scaling of the normal equations) on the pixel reprojection error with IRLS weights of a robust kernel
   (``cauchy``, ``geman_mcclure`` or ``huber``) whose scale is annealed geometrically from
   ``kernel_scale_px[0]`` to ``kernel_scale_px[1]``. Points behind the camera get zero weight.
4. **Selection**: the hypothesis of least robust cost (``argmin``, then gather: the gradient
   follows the chosen hypothesis), then ``refine_iters`` more IRLS iterations on it, and
   ``polish_iters`` Gauss-Newton iterations with the IRLS weights frozen at the final scale
   (weighted least squares: converges quadratically to a pose that depends smoothly on the
   inputs, instead of stopping mid-way through IRLS's slow, linear convergence).

ONNX export: the iterations are Python loops in functions written for TorchScript
(``_gauss_newton``, ``_translation_irls``); ``ops.scripted_when_exporting`` runs them as they are
in eager mode (training: ordinary autograd through every iteration) and compiles them while
``torch.onnx.export`` traces, so each loop becomes one ONNX ``Loop`` node whose body holds one
iteration (three ``Loop`` nodes for the Gauss-Newton stages, one for the translation IRLS)
instead of every iteration unrolled. The per-iteration kernel scales are a tensor indexed by the
iteration, the same in both modes, so eager PyTorch and the graph compute the same arithmetic.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, NamedTuple, Tuple

import torch
from torch import Tensor, nn

from .ops import scripted_when_exporting

__all__ = ["PnPConfig", "PnPResult", "MultiHypothesisPnP", "so3_exp", "solve_spd",
           "solve3_adjugate", "yaw_hypotheses", "CANONICAL_R_CAM_LIDAR"]

CANONICAL_R_CAM_LIDAR = ((0.0, -1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0))
"""R_cam_lidar of a forward-looking camera on a z-up, x-forward LiDAR (no lever arm)."""

Kernel = Literal["cauchy", "geman_mcclure", "huber"]


@dataclass
class PnPConfig:
    """Section 7 of ModelConfig: the differentiable PnP."""

    yaw_hypotheses: int = 12
    """Number of yaw hypotheses spread over 360 deg about the camera's vertical axis."""
    canonical_R_cam_lidar: tuple[tuple[float, float, float], ...] = CANONICAL_R_CAM_LIDAR
    """Rotation the yaw hypotheses start from (row-major 3x3)."""
    translation_irls_iters: int = 3
    """Re-weighted closed-form translation solves per yaw hypothesis."""
    hypothesis_iters: int = 6
    """Gauss-Newton iterations run on every hypothesis."""
    refine_iters: int = 6
    """Gauss-Newton (IRLS) iterations run on the selected hypothesis."""
    polish_iters: int = 4
    """Final Gauss-Newton iterations with the IRLS weights frozen (computed once at the final
    scale): a plain weighted least squares that converges quadratically, so the pose is a
    converged, smooth function of the inputs rather than a mid-way IRLS iterate."""
    kernel: Kernel = "geman_mcclure"
    """Robust kernel of the IRLS weights and of the selection cost."""
    kernel_scale_px: tuple[float, float] = (40.0, 2.0)
    """Kernel scale (pixels) of the first and of the last IRLS iteration (annealed geometrically)."""
    damping: float = 1e-3
    """Levenberg-Marquardt damping, relative to the normal matrix's diagonal."""
    max_step_rad: float = 0.5
    """Largest rotation update of one iteration (radians)."""
    max_step_m: float = 5.0
    """Largest translation update of one iteration (metres)."""
    min_depth_m: float = 0.1
    """Points closer than this in front of the camera get no weight (behind-camera guard)."""
    behind_penalty_px: float = 100.0
    """Residual charged in the selection cost for a point behind the camera."""
    inlier_threshold_px: float = 4.0
    """Reprojection error under which a correspondence counts as an inlier (confidence)."""


class PnPResult(NamedTuple):
    """Output of ``MultiHypothesisPnP``."""

    T_cam_lidar: Tensor
    """(B, 4, 4) estimated transform mapping LiDAR points into the camera frame."""
    cost: Tensor
    """(B,) weighted mean robust cost (pixels^2 scale) of the final pose."""
    inlier_ratio: Tensor
    """(B,) fraction of correspondences within ``inlier_threshold_px`` (unweighted)."""
    confidence: Tensor
    """(B,) weight-weighted fraction of correspondences within ``inlier_threshold_px``."""
    hypothesis_cost: Tensor
    """(B, H') selection cost of every hypothesis (``H' = yaw_hypotheses [+ 1 prior]``)."""
    residual_px: Tensor
    """(B, C) reprojection error of every correspondence under the final pose (pixels)."""


# ------------------------------------------------------------------------------ small algebra
# Written for TorchScript as well as eager mode (the Gauss-Newton loops are compiled for the ONNX
# export): components are taken with ``select`` / ``narrow`` and axes added with ``unsqueeze``,
# which export to one op each, where ``x[..., i]`` inside a compiled function exports to a chain
# of Unsqueeze / Slice nodes.
def _skew(v: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix."""
    x, y, z = v.select(-1, 0), v.select(-1, 1), v.select(-1, 2)
    o = torch.zeros_like(x)
    return torch.stack([torch.stack([o, -z, y], -1), torch.stack([z, o, -x], -1),
                        torch.stack([-y, x, o], -1)], -2)


def so3_exp(phi: Tensor) -> Tensor:
    """Rodrigues: rotation vectors (..., 3) -> rotation matrices (..., 3, 3) (safe at 0)."""
    t2 = (phi * phi).sum(-1).unsqueeze(-1).unsqueeze(-1)            # (..., 1, 1)
    small = t2 < 1e-8
    t2s = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2s)
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2s)
    W = _skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return eye + a * W + b * (W @ W)


def solve3_adjugate(A: Tensor, b: Tensor) -> Tensor:
    """Solve (..., 3, 3) x = (..., 3) by the adjugate (Cramer). Caller keeps A well conditioned."""
    r0, r1, r2 = A.select(-2, 0), A.select(-2, 1), A.select(-2, 2)
    a00, a01, a02 = r0.select(-1, 0), r0.select(-1, 1), r0.select(-1, 2)
    a10, a11, a12 = r1.select(-1, 0), r1.select(-1, 1), r1.select(-1, 2)
    a20, a21, a22 = r2.select(-1, 0), r2.select(-1, 1), r2.select(-1, 2)
    c00 = a11 * a22 - a12 * a21
    c01 = a12 * a20 - a10 * a22
    c02 = a10 * a21 - a11 * a20
    c10 = a02 * a21 - a01 * a22
    c11 = a00 * a22 - a02 * a20
    c12 = a01 * a20 - a00 * a21
    c20 = a01 * a12 - a02 * a11
    c21 = a02 * a10 - a00 * a12
    c22 = a00 * a11 - a01 * a10
    det = a00 * c00 + a01 * c01 + a02 * c02
    # adj = cofactor^T: x_i = sum_j C_ji b_j / det
    b0, b1, b2 = b.select(-1, 0), b.select(-1, 1), b.select(-1, 2)
    x0 = c00 * b0 + c10 * b1 + c20 * b2
    x1 = c01 * b0 + c11 * b1 + c21 * b2
    x2 = c02 * b0 + c12 * b1 + c22 * b2
    return torch.stack([x0, x1, x2], -1) / det.unsqueeze(-1)


def _gauss_jordan_pivot(M: Tensor, k: int, eye: Tensor) -> Tensor:
    """One Gauss-Jordan step on the augmented (..., n, n+1) matrix with ``eye`` the (n, n)
    identity: eliminate column ``k`` from every row but ``k``, which becomes the normalised
    pivot row."""
    row = M.narrow(-2, k, 1)                                         # (..., 1, n+1)
    piv = row / row.narrow(-1, k, 1)
    return M - M.narrow(-1, k, 1) * piv + eye.narrow(1, k, 1) * piv  # row k := pivot row


def solve_spd(A: Tensor, b: Tensor) -> Tensor:
    """Solve symmetric positive definite (..., n, n) x = (..., n) by Gauss-Jordan elimination
    without pivoting (n steps of a few whole-matrix tensor ops)."""
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    M = torch.cat([A, b.unsqueeze(-1)], -1)                          # (..., n, n+1)
    for k in range(n):
        M = _gauss_jordan_pivot(M, k, eye)
    return M.select(-1, n)


def _solve_spd6(A: Tensor, b: Tensor, eye: Tensor) -> Tensor:
    """``solve_spd`` for the 6x6 Gauss-Newton systems (``eye``: the 6x6 identity), its six steps
    written out (constant slices in the exported loop body, not a nested Loop). Same arithmetic."""
    M = torch.cat([A, b.unsqueeze(-1)], -1)                          # (..., 6, 7)
    M = _gauss_jordan_pivot(M, 0, eye)
    M = _gauss_jordan_pivot(M, 1, eye)
    M = _gauss_jordan_pivot(M, 2, eye)
    M = _gauss_jordan_pivot(M, 3, eye)
    M = _gauss_jordan_pivot(M, 4, eye)
    M = _gauss_jordan_pivot(M, 5, eye)
    return M.select(-1, 6)


def yaw_hypotheses(n: int, canonical: Tensor) -> Tensor:
    """(n, 3, 3) rotations ``R_y(2 pi h / n) @ canonical``, h = 0..n-1."""
    ang = torch.arange(n, dtype=canonical.dtype, device=canonical.device) * (2 * math.pi / n)
    c, s = torch.cos(ang), torch.sin(ang)
    o, one = torch.zeros_like(c), torch.ones_like(c)
    Ry = torch.stack([c, o, s, o, one, o, -s, o, c], -1).reshape(n, 3, 3)
    return Ry @ canonical


# ------------------------------------------------------------------------------ robust kernels
def _irls_weight(e2: Tensor, c: Tensor, kernel: str) -> Tensor:
    """IRLS weight of squared pixel errors ``e2`` (...) at kernel scale ``c`` (0-dim, pixels)."""
    c2 = c * c
    if kernel == "cauchy":
        return 1.0 / (1.0 + e2 / c2)
    if kernel == "geman_mcclure":
        return 1.0 / (1.0 + e2 / c2) ** 2
    if kernel == "huber":
        return torch.where(e2 <= c2, torch.ones_like(e2), c / torch.sqrt(torch.maximum(e2, c2)))
    raise ValueError("PnPConfig.kernel: unknown kernel " + kernel)


def _robust_cost(e2: Tensor, c: float, kernel: str) -> Tensor:
    """Robust cost rho of squared pixel errors ``e2`` (...) at kernel scale ``c`` (pixels)."""
    if kernel == "cauchy":
        return 0.5 * c * c * torch.log1p(e2 / (c * c))
    if kernel == "geman_mcclure":
        return 0.5 * e2 / (1.0 + e2 / (c * c))
    e = torch.sqrt(e2.clamp_min(c * c))
    return torch.where(e2 <= c * c, 0.5 * e2, c * (e - 0.5 * c))


# ------------------------------------------------------------------------------ residuals
def _residual(X: Tensor, R: Tensor, t: Tensor, uv_obs: Tensor, f: Tensor, c: Tensor,
              min_depth: float) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Camera-frame points ``P`` (..., C, 3), guarded depths ``zs`` (..., C) (1 where not in front),
    ``front`` (..., C) bool (z > ``min_depth``), pixel residuals ``r`` (..., C, 2) and their
    squared norms ``e2`` (..., C), for X (B, 1, C, 3) or (B, C, 3), R (..., 3, 3), t (..., 3),
    observed pixels ``uv_obs`` and pinhole focal lengths ``f`` / principal point ``c`` (..., 2)."""
    P = X @ R.transpose(-1, -2) + t.unsqueeze(-2)                    # (..., C, 3)
    z = P.select(-1, 2)
    front = z > min_depth
    zs = torch.where(front, z, torch.ones_like(z))
    uv = P.narrow(-1, 0, 2) / zs.unsqueeze(-1) * f.unsqueeze(-2) + c.unsqueeze(-2)
    r = uv - uv_obs                                                  # (..., C, 2)
    e2 = (r * r).sum(-1)
    return P, zs, front, r, e2


# ------------------------------------------------------------------------------ Gauss-Newton
def _gauss_newton(X: Tensor, R: Tensor, t: Tensor, uv_obs: Tensor, w: Tensor, f: Tensor, c: Tensor,
                  scales: Tensor, freeze: Tensor, kernel: str, damping: float, max_step_rad: float,
                  max_step_m: float, min_depth: float) -> Tuple[Tensor, Tensor]:
    """``len(scales)`` damped Gauss-Newton / LM steps on the robust reprojection error.

    Args:
        X: (B, 1, C, 3) or (B, C, 3) LiDAR points; R (..., 3, 3), t (..., 3) the start poses
            (one per hypothesis: (B, H, 3, 3), (B, H, 3); or (B, 3, 3), (B, 3)).
        uv_obs: observed pixels (like X, 2 columns); w: correspondence weights (..., C);
        f, c: focal lengths, principal point (..., 2) (pixels).
        scales: (n,) kernel scale of each step's IRLS weights (pixels).
        freeze: (n,) bool; where true, the step keeps the previous step's IRLS weights instead
            (polish: weighted least squares with the weights frozen at the final scale).
    Returns:
        R (..., 3, 3), t (..., 3) after the n steps.

    (``fx``, ``fy`` are sliced from ``f`` inside the loop: sliced outside, they are outer-scope
    values of the exported loop body that onnxruntime's Concat/Slice elimination tries, and
    fails, to rename, with a warning at every session creation.)
    """
    eye = torch.eye(6, dtype=X.dtype, device=X.device)
    robust = torch.zeros_like(X.select(-1, 0) * t.narrow(-1, 2, 1))  # (..., C) IRLS weights
    for i in range(scales.shape[0]):
        P, zs, front, r, e2 = _residual(X, R, t, uv_obs, f, c, min_depth)
        robust = torch.where(freeze[i], robust, _irls_weight(e2, scales[i], kernel))
        W = w * robust * front.to(w.dtype)                           # (..., C)
        iz = 1.0 / zs
        fx, fy = f.narrow(-1, 0, 1), f.narrow(-1, 1, 1)              # (..., 1) (in the loop: see below)
        px, py = P.select(-1, 0), P.select(-1, 1)
        # d(u, v)/dP = (du_x, 0, du_z), (0, dv_y, dv_z)
        du_x, du_z = fx * iz, -fx * px * iz * iz
        dv_y, dv_z = fy * iz, -fy * py * iz * iz
        # rotate about the weighted centroid p0 of the points (not the camera centre): this
        # decouples rotation from translation for distant points and keeps the system well
        # conditioned in float32. P' = exp(dphi) (P - p0) + p0 + dt, so dP/dphi = -[P - p0]x
        # and d(u)/dphi = du @ (-[P - p0]x) = (P - p0) x du (the cross products below, with the
        # zero components of du, dv dropped).
        p0 = ((W.unsqueeze(-1) * P).sum(-2) / W.sum(-1, keepdim=True).clamp_min(1e-12)).detach()   # (..., 3)
        Q = P - p0.unsqueeze(-2)
        qx, qy, qz = Q.select(-1, 0), Q.select(-1, 1), Q.select(-1, 2)
        o = torch.zeros_like(iz)
        Ju = torch.stack([qy * du_z, qz * du_x - qx * du_z, -(qy * du_x), du_x, o, du_z], -1)   # (..., C, 6)
        Jv = torch.stack([qy * dv_z - qz * dv_y, -(qx * dv_z), qx * dv_y, o, dv_y, dv_z], -1)
        J = torch.cat([Ju, Jv], -2)                                  # (..., 2C, 6)
        Wr = torch.cat([W, W], -1)                                   # (..., 2C)
        res = torch.cat([r.select(-1, 0), r.select(-1, 1)], -1)      # (..., 2C)
        JW = J * Wr.unsqueeze(-1)
        H = JW.transpose(-1, -2) @ J                                 # (..., 6, 6)
        g = (JW * res.unsqueeze(-1)).sum(-2)                         # (..., 6)
        # Jacobi scaling (unit diagonal) + Levenberg-Marquardt damping, then solve
        d = torch.sqrt((H * eye).sum(-1) + 1e-12)                    # (..., 6)
        Hs = H / (d.unsqueeze(-1) * d.unsqueeze(-2)) + eye * (damping + 1e-6)
        delta = -_solve_spd6(Hs, g / d, eye) / d                     # (..., 6)
        dphi, dt = delta.narrow(-1, 0, 3), delta.narrow(-1, 3, 3)
        # trust region: scale the step down to the per-iteration limits
        nphi = torch.sqrt((dphi * dphi).sum(-1, keepdim=True) + 1e-18)
        nt = torch.sqrt((dt * dt).sum(-1, keepdim=True) + 1e-18)
        sc = torch.minimum(torch.clamp(max_step_rad / nphi, max=1.0),
                           torch.clamp(max_step_m / nt, max=1.0))
        dphi, dt = dphi * sc, dt * sc
        dR = so3_exp(dphi)
        R = dR @ R
        t = (dR @ (t - p0).unsqueeze(-1)).select(-1, 0) + p0 + dt
    return R, t


# ------------------------------------------------------------------------------ closed-form translation
def _translation_solve(Wt: Tensor, x: Tensor, y: Tensor, b1: Tensor, b2: Tensor) -> Tensor:
    """Weighted linear LS of the bearing constraints for t (..., 3); weights ``Wt`` (..., C)."""
    S = Wt.sum(-1)
    Sx, Sy = (Wt * x).sum(-1), (Wt * y).sum(-1)
    Sxx = (Wt * (x * x + y * y)).sum(-1)
    o = torch.zeros_like(S)
    A = torch.stack([torch.stack([S, o, -Sx], -1), torch.stack([o, S, -Sy], -1),
                     torch.stack([-Sx, -Sy, Sxx], -1)], -2)          # (..., 3, 3)
    A = A + torch.eye(3, dtype=A.dtype, device=A.device) * (1e-6 * (S + Sxx) + 1e-12).unsqueeze(-1).unsqueeze(-1)
    rhs = torch.stack([(Wt * b1).sum(-1), (Wt * b2).sum(-1), -(Wt * (x * b1 + y * b2)).sum(-1)], -1)
    return solve3_adjugate(A, rhs)


def _translation_irls(X: Tensor, R: Tensor, xy: Tensor, w: Tensor, f: Tensor, c: Tensor, uv_obs: Tensor,
                      iters: int, scale: Tensor, kernel: str, min_depth: float) -> Tensor:
    """Weighted LS translation (..., 3) for fixed rotations R (..., 3, 3); X (B, 1, C, 3), normalised
    image coordinates ``xy`` (B, 1, C, 2), weights ``w`` (B, 1, C); then ``iters`` re-solves with
    the robust kernel (``scale`` 0-dim, pixels) of the reprojection error and ``1/depth^2``."""
    q = X @ R.transpose(-1, -2)                                       # (..., C, 3)
    x, y = xy.select(-1, 0), xy.select(-1, 1)                         # (B, 1, C)
    b1 = x * q.select(-1, 2) - q.select(-1, 0)
    b2 = y * q.select(-1, 2) - q.select(-1, 1)
    t = _translation_solve(w.expand_as(b1), x, y, b1, b2)
    for _ in range(iters):
        _, zs, front, _, e2 = _residual(X, R, t, uv_obs, f, c, min_depth)
        Wt = w * _irls_weight(e2, scale, kernel) * front.to(w.dtype) / (zs * zs)
        t = _translation_solve(Wt, x, y, b1, b2)
    return t


def _constant(values: list[float], like: Tensor) -> Tensor:
    """(n,) tensor of ``values`` in ``like``'s dtype and device, rounded from float64 as Python
    floats are; a constant of the graph when traced (the warning saying so is expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.tensor(values, dtype=torch.float64).to(device=like.device, dtype=like.dtype)


_gauss_newton_exportable = scripted_when_exporting(_gauss_newton)
_translation_irls_exportable = scripted_when_exporting(_translation_irls)


# ------------------------------------------------------------------------------ the solver
class MultiHypothesisPnP(nn.Module):
    """Differentiable robust PnP (no learnable parameters; see the module docstring)."""

    def __init__(self, config: PnPConfig | None = None):
        super().__init__()
        self.config = config or PnPConfig()
        self.register_buffer("canonical", torch.tensor(self.config.canonical_R_cam_lidar,
                                                       dtype=torch.float32), persistent=False)

    def _scales(self) -> list[float]:
        """Kernel scale (pixels) of each IRLS iteration: hypothesis, then refine iterations."""
        cfg = self.config
        n = cfg.hypothesis_iters + cfg.refine_iters
        c0, c1 = cfg.kernel_scale_px
        if n <= 1:
            return [c1] * n
        return [c0 * (c1 / c0) ** (i / (n - 1)) for i in range(n)]

    def _selection_cost(self, e2: Tensor, front: Tensor, w: Tensor, c: float) -> Tensor:
        pen = torch.full_like(e2, self.config.behind_penalty_px ** 2)
        e2b = torch.where(front, e2, pen)
        return (w * _robust_cost(e2b, c, self.config.kernel)).sum(-1) / w.sum(-1).clamp_min(1e-9)

    def _gauss_newton(self, X, R, t, uv_obs, w, f, c, scales: list[float], frozen_after: int):
        """``len(scales)`` Gauss-Newton steps (``_gauss_newton``); the steps after the first
        ``frozen_after + 1`` keep the IRLS weights of step ``frozen_after``."""
        cfg = self.config
        sc = _constant(scales, X)
        freeze = torch.arange(len(scales), device=X.device) > frozen_after
        return _gauss_newton_exportable(X, R, t, uv_obs, w, f, c, sc, freeze, cfg.kernel, float(cfg.damping),
                                        float(cfg.max_step_rad), float(cfg.max_step_m), float(cfg.min_depth_m))

    # forward ----------------------------------------------------------------------------------
    def forward(self, xyz: Tensor, uv: Tensor, weight: Tensor, K: Tensor,
                T_prior: Tensor | None = None, prior_weight: Tensor | None = None) -> PnPResult:
        """Estimate ``T_cam_lidar`` from weighted correspondences.

        Args:
            xyz: (B, C, 3) points in the LiDAR frame.
            uv: (B, C, 2) their pixels in the (pinhole) image.
            weight: (B, C) non-negative correspondence weights (0 = ignore; only their ratios
                matter, they are normalised to mean 1).
            K: (B, 3, 3) pinhole intrinsics of the image.
            T_prior: optional (B, 4, 4) prior ``T_cam_lidar`` added as a hypothesis.
            prior_weight: optional (B,) 1 where ``T_prior`` is to be used, 0 where not (default 1).
        """
        cfg = self.config
        scales = self._scales()
        dt = xyz.dtype
        min_depth = float(cfg.min_depth_m)
        # only relative weights matter: normalise to mean 1 (keeps the damping terms scale-free)
        weight = weight / weight.mean(-1, keepdim=True).clamp_min(1e-12)
        f = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)                 # (B, 2)
        c = torch.stack([K[:, 0, 2], K[:, 1, 2]], -1)                 # (B, 2)
        xy = (uv - c[:, None, :]) / f[:, None, :]                     # (B, C, 2) normalised
        # 1. hypotheses: (B, H, ...) with correspondences broadcast as (B, 1, C, ...)
        Xh, uvh, xyh, wh = xyz[:, None], uv[:, None], xy[:, None], weight[:, None]
        fh, ch = f[:, None], c[:, None]
        R0 = yaw_hypotheses(cfg.yaw_hypotheses, self.canonical.to(dt))  # (H, 3, 3)
        R = R0[None].expand(xyz.shape[0], -1, -1, -1)                 # (B, H, 3, 3)
        # 2. closed-form translation per yaw hypothesis
        s0 = _constant([scales[0] if scales else cfg.kernel_scale_px[1]], xyz)[0]
        t = _translation_irls_exportable(Xh, R, xyh, wh, fh, ch, uvh, int(cfg.translation_irls_iters), s0,
                                         cfg.kernel, min_depth)
        if T_prior is not None:
            R = torch.cat([R, T_prior[:, None, :3, :3].to(dt)], 1)
            t = torch.cat([t, T_prior[:, None, :3, 3].to(dt)], 1)
        # 3. Gauss-Newton on every hypothesis
        n_hyp = cfg.hypothesis_iters
        R, t = self._gauss_newton(Xh, R, t, uvh, wh, fh, ch, scales[:n_hyp], n_hyp)
        # 4. select the hypothesis of least robust cost
        s_sel = scales[n_hyp - 1] if n_hyp else scales[0]
        _, _, front, _, e2 = _residual(Xh, R, t, uvh, fh, ch, min_depth)
        hcost = self._selection_cost(e2, front, wh, s_sel)            # (B, H')
        if T_prior is not None and prior_weight is not None:
            invalid = (1.0 - prior_weight.to(dt))[:, None] * 1e12
            pad = torch.zeros_like(hcost[:, :-1])
            hcost = hcost + torch.cat([pad, invalid], 1)
        best = torch.argmin(hcost, dim=1)                             # (B,)
        R = torch.gather(R, 1, best.view(-1, 1, 1, 1).expand(-1, 1, 3, 3))[:, 0]
        t = torch.gather(t, 1, best.view(-1, 1, 1).expand(-1, 1, 3))[:, 0]
        # refine (IRLS, annealed scales), then polish: the IRLS weights of the first polish step
        # (at the final scale, from the refined pose) frozen for the remaining ones
        last_scale = scales[-1] if scales else cfg.kernel_scale_px[1]
        n_ref = cfg.refine_iters
        tail = scales[n_hyp:] + [last_scale] * cfg.polish_iters
        R, t = self._gauss_newton(xyz, R, t, uv, weight, f, c, tail, n_ref)
        # final statistics
        _, _, front, _, e2 = _residual(xyz, R, t, uv, f, c, min_depth)
        cost = self._selection_cost(e2, front, weight, scales[-1] if scales else 1.0)
        err = torch.sqrt(e2 + 1e-12)
        inl = (front & (err < cfg.inlier_threshold_px)).to(dt)
        inlier_ratio = inl.mean(-1)
        confidence = (weight * inl).sum(-1) / weight.sum(-1).clamp_min(1e-9)
        bottom = torch.cat([torch.zeros_like(t[:, None, :]), torch.ones_like(t[:, None, :1])], -1)  # (B, 1, 4)
        T = torch.cat([torch.cat([R, t[..., None]], -1), bottom], 1)
        return PnPResult(T, cost, inlier_ratio, confidence, hcost, torch.where(front, err, torch.full_like(err, 1e4)))
