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
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

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
def _skew(v: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(v.shape + (3,))


def so3_exp(phi: Tensor) -> Tensor:
    """Rodrigues: rotation vectors (..., 3) -> rotation matrices (..., 3, 3) (safe at 0)."""
    t2 = (phi * phi).sum(-1)[..., None, None]                       # (..., 1, 1)
    small = t2 < 1e-8
    t2s = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2s)
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2s)
    W = _skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand(W.shape)
    return eye + a * W + b * (W @ W)


def solve3_adjugate(A: Tensor, b: Tensor) -> Tensor:
    """Solve (..., 3, 3) x = (..., 3) by the adjugate (Cramer). Caller keeps A well conditioned."""
    a = A
    c00 = a[..., 1, 1] * a[..., 2, 2] - a[..., 1, 2] * a[..., 2, 1]
    c01 = a[..., 1, 2] * a[..., 2, 0] - a[..., 1, 0] * a[..., 2, 2]
    c02 = a[..., 1, 0] * a[..., 2, 1] - a[..., 1, 1] * a[..., 2, 0]
    c10 = a[..., 0, 2] * a[..., 2, 1] - a[..., 0, 1] * a[..., 2, 2]
    c11 = a[..., 0, 0] * a[..., 2, 2] - a[..., 0, 2] * a[..., 2, 0]
    c12 = a[..., 0, 1] * a[..., 2, 0] - a[..., 0, 0] * a[..., 2, 1]
    c20 = a[..., 0, 1] * a[..., 1, 2] - a[..., 0, 2] * a[..., 1, 1]
    c21 = a[..., 0, 2] * a[..., 1, 0] - a[..., 0, 0] * a[..., 1, 2]
    c22 = a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
    det = a[..., 0, 0] * c00 + a[..., 0, 1] * c01 + a[..., 0, 2] * c02
    # adj = cofactor^T: x_i = sum_j C_ji b_j / det
    x0 = c00 * b[..., 0] + c10 * b[..., 1] + c20 * b[..., 2]
    x1 = c01 * b[..., 0] + c11 * b[..., 1] + c21 * b[..., 2]
    x2 = c02 * b[..., 0] + c12 * b[..., 1] + c22 * b[..., 2]
    return torch.stack([x0, x1, x2], -1) / det[..., None]


def solve_spd(A: Tensor, b: Tensor) -> Tensor:
    """Solve symmetric positive definite (..., n, n) x = (..., n) by unrolled Gauss-Jordan
    elimination without pivoting (n steps of a few whole-matrix tensor ops)."""
    n = A.shape[-1]
    M = torch.cat([A, b[..., None]], -1)                             # (..., n, n+1)
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    for k in range(n):
        piv = M[..., k:k + 1, :] / M[..., k:k + 1, k:k + 1]          # (..., 1, n+1)
        M = M - M[..., :, k:k + 1] * piv + eye[:, k:k + 1] * piv    # row k := pivot row
    return M[..., :, n]


def yaw_hypotheses(n: int, canonical: Tensor) -> Tensor:
    """(n, 3, 3) rotations ``R_y(2 pi h / n) @ canonical``, h = 0..n-1."""
    ang = torch.arange(n, dtype=canonical.dtype, device=canonical.device) * (2 * math.pi / n)
    c, s = torch.cos(ang), torch.sin(ang)
    o, one = torch.zeros_like(c), torch.ones_like(c)
    Ry = torch.stack([c, o, s, o, one, o, -s, o, c], -1).reshape(n, 3, 3)
    return Ry @ canonical


# ------------------------------------------------------------------------------ the solver
class MultiHypothesisPnP(nn.Module):
    """Differentiable robust PnP (no learnable parameters; see the module docstring)."""

    def __init__(self, config: PnPConfig | None = None):
        super().__init__()
        self.config = config or PnPConfig()
        self.register_buffer("canonical", torch.tensor(self.config.canonical_R_cam_lidar,
                                                       dtype=torch.float32), persistent=False)

    # robust kernel ------------------------------------------------------------------------
    def _irls_weight(self, e2: Tensor, c: float) -> Tensor:
        k = self.config.kernel
        if k == "cauchy":
            return 1.0 / (1.0 + e2 / (c * c))
        if k == "geman_mcclure":
            return 1.0 / (1.0 + e2 / (c * c)) ** 2
        if k == "huber":
            return torch.where(e2 <= c * c, torch.ones_like(e2), c / torch.sqrt(e2.clamp_min(c * c)))
        raise ValueError(f"PnPConfig.kernel: unknown kernel {k!r}")

    def _rho(self, e2: Tensor, c: float) -> Tensor:
        k = self.config.kernel
        if k == "cauchy":
            return 0.5 * c * c * torch.log1p(e2 / (c * c))
        if k == "geman_mcclure":
            return 0.5 * e2 / (1.0 + e2 / (c * c))
        e = torch.sqrt(e2.clamp_min(c * c))
        return torch.where(e2 <= c * c, 0.5 * e2, c * (e - 0.5 * c))

    def _scales(self) -> list[float]:
        cfg = self.config
        n = cfg.hypothesis_iters + cfg.refine_iters
        c0, c1 = cfg.kernel_scale_px
        if n <= 1:
            return [c1] * n
        return [c0 * (c1 / c0) ** (i / (n - 1)) for i in range(n)]

    # residuals ------------------------------------------------------------------------------
    @staticmethod
    def _project(X: Tensor, R: Tensor, t: Tensor, f: Tensor, c: Tensor, min_depth: float):
        """X (B,1,C,3) or (B,C,3) with R (...,3,3), t (...,3) -> P, z-guard, predicted px."""
        P = X @ R.transpose(-1, -2) + t[..., None, :]               # (..., C, 3)
        z = P[..., 2]
        front = z > min_depth
        zs = torch.where(front, z, torch.ones_like(z))
        uv = P[..., :2] / zs[..., None] * f[..., None, :] + c[..., None, :]
        return P, zs, front, uv

    def _residual(self, X, R, t, uv_obs, f, c):
        P, zs, front, uv = self._project(X, R, t, f, c, self.config.min_depth_m)
        r = uv - uv_obs                                              # (..., C, 2)
        e2 = (r * r).sum(-1)
        return P, zs, front, r, e2

    def _selection_cost(self, e2: Tensor, front: Tensor, w: Tensor, c: float) -> Tensor:
        pen = torch.full_like(e2, self.config.behind_penalty_px ** 2)
        e2b = torch.where(front, e2, pen)
        return (w * self._rho(e2b, c)).sum(-1) / w.sum(-1).clamp_min(1e-9)

    # one Gauss-Newton / LM step --------------------------------------------------------------
    def _gn_step(self, X, R, t, uv_obs, w, f, c, scale: float, frozen: Tensor | None = None):
        """One damped Gauss-Newton step; IRLS weights at ``scale``, or ``w * frozen`` if given."""
        cfg = self.config
        P, zs, front, r, e2 = self._residual(X, R, t, uv_obs, f, c)
        robust = self._irls_weight(e2, scale) if frozen is None else frozen
        W = w * robust * front.to(w.dtype)                           # (..., C)
        fx, fy = f[..., 0, None], f[..., 1, None]                    # (..., 1)
        iz = 1.0 / zs
        px, py = P[..., 0], P[..., 1]
        # d(u, v)/dP (..., C, 3 each)
        du = torch.stack([fx * iz, torch.zeros_like(iz), -fx * px * iz * iz], -1)
        dv = torch.stack([torch.zeros_like(iz), fy * iz, -fy * py * iz * iz], -1)
        # rotate about the weighted centroid p0 of the points (not the camera centre): this
        # decouples rotation from translation for distant points and keeps the system well
        # conditioned in float32. P' = exp(dphi) (P - p0) + p0 + dt, so dP/dphi = -[P - p0]x
        # and d(u)/dphi = du @ (-[P - p0]x) = (P - p0) x du.
        p0 = ((W[..., None] * P).sum(-2) / W.sum(-1, keepdim=True).clamp_min(1e-12)).detach()   # (..., 3)
        Q = P - p0[..., None, :]
        Ju = torch.cat([torch.cross(Q, du, dim=-1), du], -1)         # (..., C, 6)
        Jv = torch.cat([torch.cross(Q, dv, dim=-1), dv], -1)
        J = torch.cat([Ju, Jv], -2)                                  # (..., 2C, 6)
        Wr = torch.cat([W, W], -1)                                   # (..., 2C)
        res = torch.cat([r[..., 0], r[..., 1]], -1)                  # (..., 2C)
        JW = J * Wr[..., None]
        H = JW.transpose(-1, -2) @ J                                 # (..., 6, 6)
        g = (JW * res[..., None]).sum(-2)                            # (..., 6)
        # Jacobi scaling (unit diagonal) + Levenberg-Marquardt damping, then solve
        eye = torch.eye(6, dtype=H.dtype, device=H.device)
        d = torch.sqrt((H * eye).sum(-1) + 1e-12)                    # (..., 6)
        Hs = H / (d[..., :, None] * d[..., None, :]) + eye * (cfg.damping + 1e-6)
        delta = -solve_spd(Hs, g / d) / d                            # (..., 6)
        dphi, dt = delta[..., :3], delta[..., 3:]
        # trust region: scale the step down to the per-iteration limits
        nphi = torch.sqrt((dphi * dphi).sum(-1, keepdim=True) + 1e-18)
        nt = torch.sqrt((dt * dt).sum(-1, keepdim=True) + 1e-18)
        sc = torch.minimum(torch.clamp(cfg.max_step_rad / nphi, max=1.0),
                           torch.clamp(cfg.max_step_m / nt, max=1.0))
        dphi, dt = dphi * sc, dt * sc
        dR = so3_exp(dphi)
        R = dR @ R
        t = (dR @ (t - p0)[..., None])[..., 0] + p0 + dt
        return R, t

    # closed-form translation -----------------------------------------------------------------
    def _translation(self, X, R, xy, w, f, c, uv_obs, iters: int, scale: float) -> Tensor:
        """Weighted LS translation for fixed rotations R (..., 3, 3); X (B,1,C,3)."""
        q = X @ R.transpose(-1, -2)                                   # (..., C, 3)
        x, y = xy[..., 0], xy[..., 1]                                 # (B, 1, C)
        b1 = x * q[..., 2] - q[..., 0]
        b2 = y * q[..., 2] - q[..., 1]
        Wt = w.expand(q.shape[:-1])
        t = None
        for it in range(iters + 1):
            if it > 0:
                _, zs, front, _, e2 = self._residual(X, R, t, uv_obs, f, c)
                Wt = w * self._irls_weight(e2, scale) * front.to(w.dtype) / (zs * zs)
            S = Wt.sum(-1)
            Sx, Sy = (Wt * x).sum(-1), (Wt * y).sum(-1)
            Sxx = (Wt * (x * x + y * y)).sum(-1)
            o = torch.zeros_like(S)
            A = torch.stack([S, o, -Sx, o, S, -Sy, -Sx, -Sy, Sxx], -1).reshape(S.shape + (3, 3))
            A = A + torch.eye(3, dtype=A.dtype, device=A.device) * (1e-6 * (S + Sxx) + 1e-12)[..., None, None]
            rhs = torch.stack([(Wt * b1).sum(-1), (Wt * b2).sum(-1),
                               -(Wt * (x * b1 + y * b2)).sum(-1)], -1)
            t = solve3_adjugate(A, rhs)
        return t

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
        t = self._translation(Xh, R, xyh, wh, fh, ch, uvh, cfg.translation_irls_iters, scales[0])
        if T_prior is not None:
            R = torch.cat([R, T_prior[:, None, :3, :3].to(dt)], 1)
            t = torch.cat([t, T_prior[:, None, :3, 3].to(dt)], 1)
        # 3. Gauss-Newton on every hypothesis
        for i in range(cfg.hypothesis_iters):
            R, t = self._gn_step(Xh, R, t, uvh, wh, fh, ch, scales[i])
        # 4. select the hypothesis of least robust cost
        s_sel = scales[cfg.hypothesis_iters - 1] if cfg.hypothesis_iters else scales[0]
        _, _, front, _, e2 = self._residual(Xh, R, t, uvh, fh, ch)
        hcost = self._selection_cost(e2, front, wh, s_sel)            # (B, H')
        if T_prior is not None and prior_weight is not None:
            invalid = (1.0 - prior_weight.to(dt))[:, None] * 1e12
            pad = torch.zeros_like(hcost[:, :-1])
            hcost = hcost + torch.cat([pad, invalid], 1)
        best = torch.argmin(hcost, dim=1)                             # (B,)
        R = torch.gather(R, 1, best.view(-1, 1, 1, 1).expand(-1, 1, 3, 3))[:, 0]
        t = torch.gather(t, 1, best.view(-1, 1, 1).expand(-1, 1, 3))[:, 0]
        for i in range(cfg.refine_iters):
            R, t = self._gn_step(xyz, R, t, uv, weight, f, c, scales[cfg.hypothesis_iters + i])
        if cfg.polish_iters:
            _, _, _, _, e2 = self._residual(xyz, R, t, uv, f, c)
            frozen = self._irls_weight(e2, scales[-1] if scales else cfg.kernel_scale_px[1])
            for _ in range(cfg.polish_iters):
                R, t = self._gn_step(xyz, R, t, uv, weight, f, c, 0.0, frozen)
        # final statistics
        _, _, front, _, e2 = self._residual(xyz, R, t, uv, f, c)
        cost = self._selection_cost(e2, front, weight, scales[-1] if scales else 1.0)
        err = torch.sqrt(e2 + 1e-12)
        inl = (front & (err < cfg.inlier_threshold_px)).to(dt)
        inlier_ratio = inl.mean(-1)
        confidence = (weight * inl).sum(-1) / weight.sum(-1).clamp_min(1e-9)
        bottom = torch.cat([torch.zeros_like(t[:, None, :]), torch.ones_like(t[:, None, :1])], -1)  # (B, 1, 4)
        T = torch.cat([torch.cat([R, t[..., None]], -1), bottom], 1)
        return PnPResult(T, cost, inlier_ratio, confidence, hcost, torch.where(front, err, torch.full_like(err, 1e4)))
