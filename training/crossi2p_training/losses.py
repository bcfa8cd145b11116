"""Self-supervised losses of CrossI2PNet, from the recording's own calibration, and GradNorm.

Ground truth comes only from ``T_cam_lidar`` of each (perturbed) frame: projecting the points
with it and the preprocessed K gives every point's pixel and visibility (``build_targets``). No
manual labels.

Loss terms (``CrossI2PLoss``), in three groups balanced by ``GradNorm``:

**alignment** (the shared embedding, CrossI2P's dual-path contrastive learning)

- ``cross_modal``: point <-> pixel InfoNCE in both directions over ``contrastive_samples``
  in-view fine points per frame. The positive of a point is the fine pixel feature at its
  ground-truth pixel (bilinear); the other sampled points' pixels are the negatives, except
  those within ``safe_radius_px`` of the positive (they show the same content: false negatives).
  Mean of the point->pixel and pixel->point cross-entropies.
- ``intra_modal``: within each modality, features of *different places* are pushed apart:
  the uniformity loss of Wang & Isola (2020), ``log mean exp(-t |f_i - f_k|^2)`` over pairs of
  unit features, on ``contrastive_samples`` random fine points (pairs closer than
  ``safe_radius_m`` in 3D excluded) and as many random fine pixels (pairs closer than
  ``safe_radius_px`` excluded); the mean of the two, shifted by ``+2t`` (its lower bound for
  well-spread features) so that the term stays >= 0 as GradNorm's loss ratios need. This is our
  reading of the paper's intra-modal path: the cross-modal path aligns the two modalities, the
  intra-modal path keeps each modality's embedding discriminative (no collapse of the many
  similar-looking road/wall points and pixels onto one code). It needs no second
  (augmented) forward pass, which matters on CPU.

**correspondence**

- ``inview``: class-balanced BCE of the in-view logits: fine points and superpoints (projects
  into the image) and superpixels (holds a LiDAR return).
- ``coarse``: negative log dual-softmax confidence of each in-view superpoint's ground-truth
  superpixel, as LoFTR's coarse loss. ``coarse_target`` ``overlap``: the cell holding most of its
  member points' projections, if >= ``coarse_min_overlap`` of them; ``centre``: the cell its
  centre projects into (for superpoints much wider than a superpixel, as in the ``paper``
  configuration, where no cell holds 30 % of 32 members).
- ``fine``: L2 pixel error of the refined correspondences, divided by the window half size,
  over those whose ground-truth pixel lies inside the window.

**pose**

- ``pose``: geodesic rotation error (radians) + ``translation_weight_per_m`` x translation error
  (metres, capped at ``translation_cap_m``) of the PnP output, per frame, averaged. Gradients
  reach the correspondence weights and pixels through the differentiable PnP.

``GradNorm`` (Chen et al., ICML 2018) learns the weights of the three groups so that their
gradient norms on the network's last shared layer stay proportional to each group's relative
training rate; ``fixed_weights`` switches it off.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossi2p_training.model import ops
from crossi2p_training.model.crossi2p_net import CrossI2POutput

__all__ = ["LossConfig", "Targets", "ModelGeometry", "build_targets", "CrossI2PLoss", "LossOutput",
           "GradNorm", "LOSS_GROUPS", "info_nce", "uniformity", "balanced_bce", "coarse_nll",
           "fine_loss", "pose_errors"]

LOSS_GROUPS = ("alignment", "correspondence", "pose")


@dataclass
class LossConfig:
    """Loss terms and their weighting."""

    # alignment
    contrastive_samples: int = 256
    """In-view fine points sampled per frame for the cross-modal InfoNCE (and per modality for
    the intra-modal term)."""
    contrastive_temperature: float = 0.07
    """InfoNCE temperature on cosine similarities."""
    safe_radius_px: float = 6.0
    """Pixel negatives closer than this to the positive are not negatives (same content)."""
    safe_radius_m: float = 1.0
    """Point pairs closer than this are left out of the intra-modal term."""
    uniformity_t: float = 2.0
    """t of the uniformity loss."""
    intra_modal_weight: float = 0.5
    """Weight of the intra-modal term inside the alignment group."""
    # correspondence
    inview_weight: float = 1.0
    """Weight of the in-view BCE inside the correspondence group."""
    coarse_weight: float = 1.0
    """Weight of the coarse NLL inside the correspondence group."""
    fine_weight: float = 1.0
    """Weight of the fine pixel loss inside the correspondence group."""
    coarse_target: Literal["overlap", "centre"] = "overlap"
    """Which superpixel is a superpoint's ground truth: ``overlap``, the cell holding most of its
    members' projections (at least ``coarse_min_overlap`` of them); ``centre``, the cell its centre
    projects into. ``overlap`` needs superpoints about as wide as a superpixel in the image: with the
    ``paper`` model (coarse stride 8, 32 members per superpoint) the best cell holds a median 3 of
    32 members (0.094) on simulated KITTI-resolution frames, so no superpoint had a ground truth
    (0 of 524 in 3 frames) and the coarse loss was 0; the ``paper`` configuration uses ``centre``.
    The ``cpu`` model: median 0.375, 210 of 260 with a ground truth
    (``bench/bench_coarse_targets.py --kitti out/simk3/sequences/00``, drive 900207)."""
    coarse_min_overlap: float = 0.3
    """A superpoint has a ground-truth superpixel when at least this fraction of its members
    project into that one cell (``coarse_target: overlap``)."""
    # pose
    translation_weight_per_m: float = 0.2
    """Pose loss = rotation (rad) + this x translation error (m)."""
    translation_cap_m: float = 30.0
    """Translation errors above this count as this (no gradient): keeps wild early poses finite."""
    # weighting of the groups
    gradnorm: bool = True
    """Balance the groups with GradNorm; off: ``fixed_weights``."""
    gradnorm_alpha: float = 1.5
    """GradNorm's restoring-force strength alpha."""
    gradnorm_lr: float = 0.025
    """Learning rate (Adam) of the GradNorm weights."""
    gradnorm_every: int = 1
    """Update the GradNorm weights every this many calls (1: every step; >1 saves CPU time)."""
    fixed_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Weights of alignment, correspondence, pose (GradNorm's starting weights when on)."""


class ModelGeometry(NamedTuple):
    """The static geometry of a model that the targets depend on (``from_net``)."""

    coarse_stride: int
    """Stride (pixels) of the superpixel map."""
    fine_stride: int
    """Stride (pixels) of the fine pixel map."""
    window_half_px: float
    """Half the side of a fine-matching window (pixels)."""

    @classmethod
    def from_net(cls, net) -> "ModelGeometry":
        fm = net.fine_matcher
        return cls(fm.coarse_stride, fm.fine_stride, fm.window_half_px)


class Targets(NamedTuple):
    """Ground truth of one batch from ``T_cam_lidar`` (``B`` first; sizes as in CrossI2POutput)."""

    fine_uv: Tensor
    """(B, M1, 2) pixel of every fine point."""
    fine_inview: Tensor
    """(B, M1) bool: in front of the camera and inside the image."""
    superpoint_inview: Tensor
    """(B, M) bool: the superpoint centre projects into the image."""
    superpoint_cell: Tensor
    """(B, M) int64 ground-truth superpixel of each superpoint, -1 where none."""
    superpoint_overlap: Tensor
    """(B, M, P) fraction of each superpoint's members projecting into each superpixel."""
    pixel_occupied: Tensor
    """(B, P) bool: at least one input point projects into the superpixel."""
    corr_uv: Tensor
    """(B, C, 2) ground-truth pixel of every predicted correspondence's point."""
    corr_valid: Tensor
    """(B, C) bool: that point is in view and its true pixel lies inside the search window."""
    T_cam_lidar: Tensor
    """(B, 4, 4) ground truth."""


@torch.no_grad()
def build_targets(points: Tensor, T_cam_lidar: Tensor, K: Tensor, image_hw: tuple[int, int],
                  out: CrossI2POutput, geometry: ModelGeometry, min_overlap: float = 0.3,
                  coarse_target: str = "overlap") -> Targets:
    """Ground truth for one batch.

    Args:
        points: (B, N, 4) the network's input points (LiDAR frame, as perturbed).
        T_cam_lidar: (B, 4, 4) their ground-truth extrinsic (after the perturbation).
        K: (B, 3, 3) preprocessed pinhole intrinsics.
        image_hw: (H, W) of the network's input image.
        out: the network's output for this batch (fine points, superpoints, correspondences).
        geometry: ``ModelGeometry.from_net(net)``.
        min_overlap: least fraction of a superpoint's members in one superpixel for that cell
            to be its ground truth (``LossConfig.coarse_min_overlap``).
        coarse_target: ``overlap`` or ``centre`` (``LossConfig.coarse_target``).
    Raises:
        ValueError: an unknown ``coarse_target``.

    "In view" means in front of the camera and inside the ``H x W`` image, padding rows
    included (``PreprocessedFrame.valid_rows``; a few rows at most with the default anchor).
    """
    if coarse_target not in ("overlap", "centre"):
        raise ValueError(f"coarse_target: expected 'overlap' or 'centre', got {coarse_target!r}")
    H, W = image_hw
    sc = geometry.coarse_stride
    Hc, Wc = H // sc, W // sc
    B = points.shape[0]

    def project(xyz):
        uv, _, front = ops.project_points(K, ops.transform_points(T_cam_lidar, xyz))
        inside = front & (uv[..., 0] >= -0.5) & (uv[..., 0] < W - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] < H - 0.5)
        cell = (torch.div(uv[..., 1] + 0.5, sc, rounding_mode="floor").clamp(0, Hc - 1) * Wc
                + torch.div(uv[..., 0] + 0.5, sc, rounding_mode="floor").clamp(0, Wc - 1)).long()
        return uv, inside, cell

    fine_uv, fine_in, fine_cell = project(out.fine_xyz)                          # (B, M1)
    _, sp_in, sp_centre_cell = project(out.superpoint_xyz)
    # superpoint-superpixel overlap from the members' projections
    mem_in = ops.gather_points(fine_in[..., None].float(), out.superpoint_members)[..., 0]   # (B, M, k2)
    mem_cell = ops.gather_points(fine_cell[..., None], out.superpoint_members)[..., 0]
    P = Hc * Wc
    overlap = torch.zeros(B, mem_cell.shape[1], P, device=points.device)
    overlap.scatter_add_(2, mem_cell, mem_in)
    overlap = overlap / mem_cell.shape[2]
    best, cell = overlap.max(dim=2)
    if coarse_target == "centre":
        sp_cell = torch.where(sp_in, sp_centre_cell, torch.full_like(sp_centre_cell, -1))
    else:
        sp_cell = torch.where(sp_in & (best >= min_overlap), cell, torch.full_like(cell, -1))
    # superpixel occupancy from all input points
    _, all_in, all_cell = project(points[..., :3])
    occ = torch.zeros(B, P, device=points.device).scatter_add_(1, all_cell, all_in.float()) > 0
    # correspondences: true pixel of each matched point, inside its window?
    c_uv = ops.gather_points(fine_uv, out.corr_point_index)
    c_in = torch.gather(fine_in, 1, out.corr_point_index)
    d = (c_uv - out.corr_window_center_uv).abs().amax(-1)
    c_valid = c_in & (d <= geometry.window_half_px)
    return Targets(fine_uv, fine_in, sp_in, sp_cell, overlap, occ, c_uv, c_valid, T_cam_lidar)


# ------------------------------------------------------------------------------ loss terms
def info_nce(a: Tensor, b: Tensor, valid: Tensor, negative_ok: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between paired unit features.

    Args:
        a, b: (B, S, D) unit features; ``a_i`` and ``b_i`` are positives.
        valid: (B, S) bool, pairs that take part.
        negative_ok: (B, S, S) bool, ``b_k`` may serve as a negative of ``a_i`` (and ``a_i`` of
            ``b_k``); the diagonal is ignored (always the positive).
    Returns:
        scalar: mean over valid pairs of (CE(a->b) + CE(b->a)) / 2; 0 without valid pairs.
    """
    S = a.shape[1]
    eye = torch.eye(S, dtype=torch.bool, device=a.device)
    logits = a @ b.transpose(1, 2) / temperature                                  # (B, S, S)
    keep = (negative_ok | eye) & valid[:, :, None] & valid[:, None, :]
    logits = logits.masked_fill(~keep, -1e4)
    diag = torch.diagonal(logits, dim1=1, dim2=2)                                 # (B, S)
    ce_ab = torch.logsumexp(logits, dim=2) - diag
    ce_ba = torch.logsumexp(logits, dim=1) - diag
    n = valid.sum().clamp_min(1)
    return (((ce_ab + ce_ba) * 0.5) * valid).sum() / n


def uniformity(x: Tensor, pair_ok: Tensor, t: float) -> Tensor:
    """Wang & Isola uniformity ``log mean_{i != k, pair_ok} exp(-t |x_i - x_k|^2)`` + 2t.

    Args:
        x: (B, S, D) unit features; pair_ok: (B, S, S) bool pairs to use (diagonal ignored).
    Returns:
        scalar (mean over frames with at least one pair; 0 if none).
    """
    S = x.shape[1]
    eye = torch.eye(S, dtype=torch.bool, device=x.device)
    ok = pair_ok & ~eye
    d2 = (2.0 - 2.0 * (x @ x.transpose(1, 2))).clamp_min(0.0)                    # (B, S, S)
    logits = (-t * d2).masked_fill(~ok, -1e4)
    n = ok.flatten(1).sum(1)                                                      # (B,)
    per = torch.logsumexp(logits.flatten(1), dim=1) - torch.log(n.clamp_min(1).float()) + 2.0 * t
    has = n > 0
    return (per * has).sum() / has.sum().clamp_min(1)


def balanced_bce(logit: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Class-balanced BCE: ``(mean over positives + mean over negatives) / 2`` of BCE-with-logits;
    a class absent from the batch drops out of the average. Shapes: any, equal; target bool."""
    loss = F.binary_cross_entropy_with_logits(logit, target.float(), reduction="none")
    m = torch.ones_like(target) if mask is None else mask
    pos, neg = target & m, (~target) & m
    count = 0
    out = loss.new_zeros(())
    for sel in (pos, neg):
        k = sel.sum()
        out = out + torch.where(k > 0, (loss * sel).sum() / k.clamp_min(1), loss.new_zeros(()))
        count = count + (k > 0).float()
    return out / count.clamp_min(1.0)


def coarse_nll(log_conf: Tensor, gt_cell: Tensor) -> Tensor:
    """Mean ``-log_conf[j, gt_j]`` over superpoints with ``gt_j >= 0``. log_conf (B, M, P); gt (B, M)."""
    valid = gt_cell >= 0
    lc = torch.gather(log_conf, 2, gt_cell.clamp_min(0)[..., None])[..., 0]      # (B, M)
    return -(lc * valid).sum() / valid.sum().clamp_min(1)


def fine_loss(uv: Tensor, gt_uv: Tensor, valid: Tensor, window_half_px: float) -> Tensor:
    """Mean L2 pixel error / window half size over valid correspondences. uv, gt (B, C, 2)."""
    err = torch.sqrt(((uv - gt_uv) ** 2).sum(-1) + 1e-8) / window_half_px
    return (err * valid).sum() / valid.sum().clamp_min(1)


def pose_errors(T_est: Tensor, T_gt: Tensor) -> tuple[Tensor, Tensor]:
    """Geodesic rotation error (rad, smooth at 0) and translation error (m) of the relative
    transform ``inv(T_est) @ T_gt``. (B, 4, 4) each -> (B,), (B,)."""
    Re, Rg = T_est[:, :3, :3], T_gt[:, :3, :3]
    A = Re.transpose(1, 2) @ Rg
    cos = (A[:, 0, 0] + A[:, 1, 1] + A[:, 2, 2] - 1.0) * 0.5
    skew = A - A.transpose(1, 2)
    sin = torch.sqrt((skew ** 2).sum((1, 2)) / 8.0 + 1e-12)                      # |A - A^T|_F / (2 sqrt 2)
    rot = torch.atan2(sin, cos)
    dt = (Re.transpose(1, 2) @ (T_gt[:, :3, 3] - T_est[:, :3, 3])[..., None])[..., 0]
    trans = torch.sqrt((dt ** 2).sum(-1) + 1e-12)
    return rot, trans


class LossOutput(NamedTuple):
    terms: dict
    """Every term (scalars): cross_modal, intra_modal, inview, coarse, fine, pose."""
    groups: dict
    """The three GradNorm groups (scalars): alignment, correspondence, pose."""
    stats: dict
    """Detached figures for logging: rre_deg, rte_m (batch means), inview points, valid corr."""


class CrossI2PLoss(nn.Module):
    """All loss terms of one batch (no parameters).

    Usage::

        crit = CrossI2PLoss(LossConfig(), ModelGeometry.from_net(net))
        out = net(image, points, K)
        tg = crit.targets(points, T_cam_lidar, K, image.shape[-2:], out)
        lo = crit(out, tg)            # lo.groups -> GradNorm, lo.terms / lo.stats -> logs
    """

    def __init__(self, config: LossConfig | None = None, geometry: ModelGeometry | None = None):
        super().__init__()
        self.config = config or LossConfig()
        self.geometry = geometry

    def targets(self, points: Tensor, T_cam_lidar: Tensor, K: Tensor, image_hw: tuple[int, int],
                out: CrossI2POutput) -> Targets:
        """``build_targets`` with this loss's geometry, ``coarse_min_overlap`` and ``coarse_target``."""
        return build_targets(points, T_cam_lidar, K, image_hw, out, self.geometry,
                             self.config.coarse_min_overlap, self.config.coarse_target)

    def forward(self, out: CrossI2POutput, tg: Targets, generator: torch.Generator | None = None) -> LossOutput:
        c = self.config
        geo = self.geometry
        B, M1 = out.fine_xyz.shape[:2]
        S = min(c.contrastive_samples, M1)
        dev = out.fine_xyz.device
        # --- alignment: cross-modal InfoNCE on sampled in-view fine points
        r = torch.rand(B, M1, device=dev, generator=generator)
        _, pick = torch.topk(r + tg.fine_inview.float(), S, dim=1)              # in-view first, random
        valid = torch.gather(tg.fine_inview, 1, pick)
        f_pt = ops.gather_points(out.point_fine_feat, pick)                     # (B, S, D)
        uv = ops.gather_points(tg.fine_uv, pick)
        f_px = F.normalize(ops.bilinear_sample(out.pixel_fine_feat, uv, geo.fine_stride), dim=-1)
        far_px = ops.pairwise_sq_distance(uv, uv) > c.safe_radius_px ** 2
        cross = info_nce(f_pt, f_px, valid, far_px, c.contrastive_temperature)
        # --- alignment: intra-modal uniformity (random fine points; random fine pixels)
        _, rp = torch.topk(torch.rand(B, M1, device=dev, generator=generator), S, dim=1)
        xp = ops.gather_points(out.fine_xyz, rp)
        intra_pt = uniformity(ops.gather_points(out.point_fine_feat, rp),
                              ops.pairwise_sq_distance(xp, xp) > c.safe_radius_m ** 2, c.uniformity_t)
        Hf, Wf = out.pixel_fine_feat.shape[-2:]
        cells = torch.randint(0, Hf * Wf, (B, S), device=dev, generator=generator)
        cuv = ops.cell_centers_px(Hf, Wf, geo.fine_stride, dev)[cells]          # (B, S, 2)
        fmap = out.pixel_fine_feat.flatten(2).transpose(1, 2)                    # (B, Hf*Wf, D)
        intra_px = uniformity(ops.gather_points(fmap, cells),
                              ops.pairwise_sq_distance(cuv, cuv) > c.safe_radius_px ** 2, c.uniformity_t)
        intra = 0.5 * (intra_pt + intra_px)
        # --- correspondence
        inview = (balanced_bce(out.point_inview_logit, tg.fine_inview)
                  + balanced_bce(out.superpoint_inview_logit, tg.superpoint_inview)
                  + balanced_bce(out.pixel_inview_logit, tg.pixel_occupied)) / 3.0
        coarse = coarse_nll(out.coarse_log_conf, tg.superpoint_cell)
        fine = fine_loss(out.corr_uv, tg.corr_uv, tg.corr_valid, geo.window_half_px)
        # --- pose
        rot, trans = pose_errors(out.T_cam_lidar, tg.T_cam_lidar)
        finite = torch.isfinite(rot) & torch.isfinite(trans)
        trans_c = torch.where(trans < c.translation_cap_m, trans, trans.detach().clamp_max(c.translation_cap_m))
        per = torch.where(finite, rot + c.translation_weight_per_m * trans_c, torch.zeros_like(rot))
        pose = per.sum() / finite.sum().clamp_min(1)
        terms = {"cross_modal": cross, "intra_modal": intra, "inview": inview, "coarse": coarse,
                 "fine": fine, "pose": pose}
        groups = {"alignment": cross + c.intra_modal_weight * intra,
                  "correspondence": c.inview_weight * inview + c.coarse_weight * coarse + c.fine_weight * fine,
                  "pose": pose}
        stats = {"rre_deg": float(torch.rad2deg(rot.detach()).mean()), "rte_m": float(trans.detach().mean()),
                 "inview_points": float(tg.fine_inview.float().sum(1).mean()),
                 "valid_corr": float(tg.corr_valid.float().sum(1).mean()),
                 "coarse_gt": float((tg.superpoint_cell >= 0).float().sum(1).mean())}
        return LossOutput(terms, groups, stats)


# ------------------------------------------------------------------------------ GradNorm
class GradNorm(nn.Module):
    """GradNorm (Chen et al., ICML 2018): adaptive task weights ``w_i`` with ``sum w = T``.

    Each call: ``G_i = w_i |d L_i / d W|`` on the shared parameter ``W``; target
    ``mean(G) * r_i^alpha`` with ``r_i`` the task's loss ratio ``L_i / L_i(0)`` relative to the
    mean ratio; the weights take an Adam step on ``sum_i |G_i - target_i|`` (targets constant) and
    are renormalised to sum to ``T``. Returns ``sum_i w_i L_i`` with the weights detached, for the
    network's own backward. ``enabled=False`` (or ``LossConfig.gradnorm``) keeps fixed weights.
    The weights have their own Adam optimiser inside this module: do not add ``parameters()``
    to the network's optimiser. ``state_dict`` keeps the weights and ``L(0)``; the Adam moments
    are not saved (a resumed run restarts them).

    Usage per training step::

        total = gradnorm(loss_out.groups, net.last_shared_layer())
        total.backward(); optimizer.step()
        log(gradnorm.weight_dict())
    """

    def __init__(self, task_names: Sequence[str] = LOSS_GROUPS, alpha: float = 1.5, lr: float = 0.025,
                 enabled: bool = True, initial_weights: Sequence[float] | None = None, every: int = 1):
        super().__init__()
        self.task_names = tuple(task_names)
        T = len(self.task_names)
        w0 = torch.tensor(list(initial_weights) if initial_weights is not None else [1.0] * T, dtype=torch.float32)
        if w0.shape != (T,) or bool((w0 < 0).any()):
            raise ValueError(f"GradNorm: need {T} non-negative initial weights, got {w0.tolist()}")
        self.weights = nn.Parameter(w0)
        self.register_buffer("initial_losses", torch.full((T,), float("nan")))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.alpha, self.lr, self.enabled, self.every = alpha, lr, enabled, max(1, int(every))
        self._sum = float(w0.sum())
        self._opt = torch.optim.Adam([self.weights], lr=lr)

    @classmethod
    def from_config(cls, c: LossConfig) -> "GradNorm":
        return cls(LOSS_GROUPS, c.gradnorm_alpha, c.gradnorm_lr, c.gradnorm, c.fixed_weights, c.gradnorm_every)

    def weight_dict(self) -> dict[str, float]:
        return {n: float(w) for n, w in zip(self.task_names, self.weights.detach())}

    def forward(self, losses: dict[str, Tensor], shared: Tensor) -> Tensor:
        L = torch.stack([losses[n] for n in self.task_names])                    # (T,)
        w_now = self.weights.detach().clone()
        total = (w_now.to(L.dtype) * L).sum()
        if not (self.enabled and self.training and torch.is_grad_enabled()):
            return total
        self.calls += 1
        if torch.isnan(self.initial_losses).any():
            self.initial_losses.copy_(L.detach().clamp_min(1e-8))
        if int(self.calls - 1) % self.every:
            return total
        norms = []
        for i in range(len(self.task_names)):
            if L[i].requires_grad:
                g, = torch.autograd.grad(L[i], shared, retain_graph=True, allow_unused=True)
            else:
                g = None
            norms.append(torch.zeros((), device=L.device) if g is None else g.detach().norm())
        gnorm = torch.stack(norms).to(self.weights.dtype)                         # (T,)
        G = self.weights * gnorm
        ratio = L.detach().to(G.dtype) / self.initial_losses
        r = ratio / ratio.mean().clamp_min(1e-12)
        target = (G.mean() * r ** self.alpha).detach()
        gn_loss = (G - target).abs().sum()
        self._opt.zero_grad(set_to_none=True)
        self.weights.grad, = torch.autograd.grad(gn_loss, self.weights)
        self._opt.step()
        with torch.no_grad():
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(self._sum / self.weights.sum())
        return total
