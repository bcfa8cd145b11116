"""6. Fine (point-to-pixel) matching inside the window of each coarse match.

For each of the ``Kc`` coarse matches (superpoint ``j`` -> superpixel ``q``), the superpoint's
``points_per_match`` nearest member fine points (the centre first) are matched against the fine
pixel features of the window around ``q``: the superpixel's ``r x r`` fine cells plus
``window_margin`` cells on each side (``r = coarse_stride / fine_stride``). The geometric
constraint is the window itself: a point can only land near the superpixel its superpoint was
matched to. Per point, a softmax over the window (cosine similarity / ``temperature``) gives
the soft-argmax pixel (LoFTR's fine expectation) and its spread ``std`` (fine cells); the
confidence is ``exp(-std / (r / 2))``.

Each correspondence's weight for PnP is
``exp(coarse score) * sigmoid(point in-view logit) * fine confidence``, all differentiable, so
the pose loss trains the matching through the PnP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import ops

__all__ = ["FineMatchingConfig", "FineMatcher", "FineMatches"]


@dataclass
class FineMatchingConfig:
    """Section 6 of ModelConfig: fine matching."""

    points_per_match: int = 8
    """kf: member fine points refined per coarse match (<= superpoint_neighbors)."""
    window_margin: int = 4
    """Extra fine cells on each side of the matched superpixel's cells."""
    temperature: float = 0.1
    """Softmax temperature on cosine similarities inside the window."""
    peak_radius: int = 0
    """0: the expectation over the whole window (LoFTR). ``r > 0``: the expectation over the
    ``(2r+1)^2`` cells around the window's most probable cell (re-normalised), the spread still
    over the whole window. A whole-window mean is pulled towards the window's inside wherever the
    window is cut by the image border or the distribution has a second mode; the local mean
    around the peak is not. Measured effect on the shipped model: docs/benchmarks.md, section 1.1."""
    enabled: bool = True
    """``false``: the coarse-only ablation (``ablation.fine_stage=false``): no point-to-pixel
    refinement; each coarse match gives one correspondence, its superpoint centre at the
    centre pixel of its superpixel (``C = Kc``), weighted ``exp(coarse score) * sigmoid(in-view)``."""


class FineMatches(NamedTuple):
    """Output of ``FineMatcher``; ``C = Kc * kf`` correspondences, match-major order."""

    point_index: Tensor
    """(B, C) int64 fine-point rows."""
    xyz: Tensor
    """(B, C, 3) their LiDAR-frame coordinates."""
    uv: Tensor
    """(B, C, 2) soft-argmax pixels in the preprocessed image."""
    weight: Tensor
    """(B, C) PnP weights in [0, 1]."""
    fine_conf: Tensor
    """(B, C) fine confidence ``exp(-std / (r / 2))`` in (0, 1]."""
    window_center_uv: Tensor
    """(B, C, 2) pixel at the centre of the matched superpixel (the window centre)."""


class FineMatcher(nn.Module):
    """Soft-argmax of fine point features over fine pixel windows (no parameters)."""

    def __init__(self, config: FineMatchingConfig, coarse_stride: int, fine_stride: int):
        super().__init__()
        self.config = config
        self.coarse_stride, self.fine_stride = coarse_stride, fine_stride
        self.ratio = coarse_stride // fine_stride

    @property
    def window_half_px(self) -> float:
        """Half the window side in image pixels (normaliser of the fine loss)."""
        return (self.ratio / 2 + self.config.window_margin) * self.fine_stride

    def forward(self, fine_map: Tensor, fine_feat: Tensor, fine_xyz: Tensor, members: Tensor,
                match_superpoint: Tensor, match_superpixel: Tensor, match_score: Tensor,
                point_logit: Tensor, coarse_width: int) -> FineMatches:
        """fine_map (B, D, Hf, Wf) and fine_feat (B, M1, D) L2-normalised; members (B, M, k2);
        matches (B, Kc); point_logit (B, M1)."""
        c = self.config
        B, D, Hf, Wf = fine_map.shape
        Kc = match_superpoint.shape[1]
        kf = c.points_per_match if c.enabled else 1
        pts = ops.gather_points(members, match_superpoint)[..., :kf]                   # (B, Kc, kf)
        # window centre = centre of the matched superpixel
        qi = torch.div(match_superpixel, coarse_width, rounding_mode="floor")
        qj = match_superpixel - qi * coarse_width
        centre = (torch.stack([qj, qi], -1).to(fine_map.dtype) + 0.5) * self.coarse_stride - 0.5  # (B, Kc, 2)
        p_in = torch.sigmoid(ops.gather_points(point_logit[..., None], pts)[..., 0])    # (B, Kc, kf)
        C = Kc * kf
        centre_c = centre[:, :, None, :].expand(-1, -1, kf, -1).reshape(B, C, 2)
        xyz = ops.gather_points(fine_xyz, pts).reshape(B, C, 3)
        if not c.enabled:                                   # coarse-only ablation
            weight = torch.exp(match_score)[..., None] * p_in
            return FineMatches(pts.reshape(B, C), xyz, centre_c, weight.reshape(B, C),
                               torch.ones_like(weight).reshape(B, C), centre_c)
        pf = ops.gather_points(fine_feat, pts)                                         # (B, Kc, kf, D)
        flat, xy, inside = ops.window_indices(match_superpixel, coarse_width, self.ratio,
                                              c.window_margin, Hf, Wf)                 # (B, Kc, w2)
        win = ops.gather_points(fine_map.flatten(2).transpose(1, 2), flat)            # (B, Kc, w2, D)
        sim = pf @ win.transpose(-1, -2) / c.temperature                               # (B, Kc, kf, w2)
        sim = torch.where(inside[:, :, None, :], sim, torch.full_like(sim, -1e4))
        p = torch.softmax(sim, dim=-1)
        xy = xy.to(p.dtype)[:, :, None]                                                # (B, Kc, 1, w2, 2)
        mu = (p[..., None] * xy).sum(-2)                                               # (B, Kc, kf, 2)
        var = (p[..., None] * (xy - mu[..., None, :]) ** 2).sum(-2).sum(-1)            # (B, Kc, kf)
        if c.peak_radius > 0:                               # local expectation around the peak
            peak = torch.gather(xy.expand(-1, -1, kf, -1, -1), 3,
                                p.argmax(-1)[..., None, None].expand(-1, -1, -1, 1, 2))  # (B, Kc, kf, 1, 2)
            near = ((xy - peak).abs() <= c.peak_radius).all(-1)                        # (B, Kc, kf, w2)
            p_near = p * near.to(p.dtype)
            mu = (p_near[..., None] * xy).sum(-2) / p_near.sum(-1, keepdim=True).clamp_min(1e-12)
        std = torch.sqrt(var + 1e-6)
        fine_conf = torch.exp(-std / (self.ratio / 2))
        uv = (mu + 0.5) * self.fine_stride - 0.5
        weight = torch.exp(match_score)[..., None] * p_in * fine_conf
        return FineMatches(pts.reshape(B, C), xyz, uv.reshape(B, C, 2), weight.reshape(B, C),
                           fine_conf.reshape(B, C), centre_c)
