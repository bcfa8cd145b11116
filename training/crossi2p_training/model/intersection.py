"""4. In-view ("intersection") heads, VP2P-Match style, on the transformer's context-aware
features: the probability that a point projects into the image, and that a superpixel holds a
LiDAR return. Coarse matching uses the logits to gate its selection, fine matching and PnP to
down-weight correspondences of points that are probably out of view.

- ``superpoint_logit`` (B, M): MLP of the superpoint's transformer feature;
- ``point_logit`` (B, M1): MLP of ``[fine point feature, transformer feature interpolated from
  its 3 nearest superpoints]``;
- ``pixel_logit`` (B, P): MLP of the superpixel's transformer feature (P = Hc * Wc, row-major).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import ops

__all__ = ["IntersectionConfig", "IntersectionHeads", "InViewLogits"]


@dataclass
class IntersectionConfig:
    """Section 4 of ModelConfig: the in-view heads."""

    hidden: int = 64
    """Hidden width of each head's MLP."""


class InViewLogits(NamedTuple):
    superpoint_logit: Tensor
    """(B, M) logit of P(superpoint centre projects into the image)."""
    point_logit: Tensor
    """(B, M1) logit of P(fine point projects into the image)."""
    pixel_logit: Tensor
    """(B, P) logit of P(superpixel holds a LiDAR return)."""


def _head(cin: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class IntersectionHeads(nn.Module):
    def __init__(self, config: IntersectionConfig, dim: int):
        super().__init__()
        self.config = config
        self.superpoint = _head(dim, config.hidden)
        self.point = _head(2 * dim, config.hidden)
        self.pixel = _head(dim, config.hidden)

    def forward(self, sp: Tensor, px: Tensor, fine_feat: Tensor, interp_index: Tensor,
                interp_weight: Tensor) -> InViewLogits:
        """sp (B, M, D), px (B, P, D) transformer features; fine_feat (B, M1, D);
        interp_index / interp_weight (B, M1, 3) from the point encoder."""
        ctx = (ops.gather_points(sp, interp_index) * interp_weight[..., None]).sum(2)  # (B, M1, D)
        return InViewLogits(self.superpoint(sp)[..., 0],
                            self.point(torch.cat([fine_feat, ctx], -1))[..., 0],
                            self.pixel(px)[..., 0])
