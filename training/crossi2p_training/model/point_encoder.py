"""2. Point encoder: a two-level PointNet++-style set abstraction on LiDAR-frame points.

- **Fine points** (``M1 = num_fine_points``): picked in the graph with an even stride over the
  input cloud (``ops.strided_indices``; the preprocessing hands a random order, so this is a
  uniform random subsample, and a ring-ordered cloud is still covered). Each fine point encodes
  its ``fine_neighbors`` nearest raw points (relative offsets, offsets scaled by the
  neighbourhood radius, intensity) with a shared MLP + max-pool, plus its own intensity, the log
  of its neighbourhood radius and (``use_height``) its height ``z``.
- **Superpoints** (``M = num_superpoints``): deterministic farthest point sampling over the fine
  points, IN the graph (``ops.farthest_point_sample``: M unrolled argmax steps starting from
  fine point 0; it exports to plain ops and costs ~7 ms for M = 256 over 2048 points on CPU).
  Each superpoint pools its ``superpoint_neighbors`` nearest fine points (its *members*).
- **Per-point fine features**: the fine point's own features concatenated with the superpoint
  features interpolated from its 3 nearest superpoints (inverse distance), projected to ``D``.

Pose invariance: every geometric input is relative (offsets between points, radii), except the
optional height ``z``. The ``global`` protocol rotates the cloud about the camera's vertical
axis (about the LiDAR's z for a level rig) and shifts it horizontally, which leaves ``z`` and
all relative geometry unchanged; absolute ``x, y`` (which would encode the view direction) are
never used. The point positional encoding of the transformer follows the same rule
(coarse_matching.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import ops

__all__ = ["PointEncoderConfig", "PointEncoder", "PointEncoderOutput", "mlp"]


@dataclass
class PointEncoderConfig:
    """Section 2 of ModelConfig: the point encoder."""

    num_fine_points: int = 1024
    """M1: fine points (the points that get per-point features and can be matched)."""
    fine_neighbors: int = 16
    """Raw points grouped around each fine point."""
    num_superpoints: int = 256
    """M: superpoints (farthest point sampling over the fine points)."""
    superpoint_neighbors: int = 16
    """Fine points grouped into each superpoint (its members, nearest first)."""
    local_channels: tuple[int, ...] = (32, 64)
    """Shared MLP of the fine-point grouping (last entry: pooled width)."""
    fine_channels: int = 64
    """Width of the fine-point trunk features (the last layer shared by all losses)."""
    superpoint_channels: tuple[int, ...] = (96, 128)
    """Shared MLP of the superpoint grouping (last entry: pooled width)."""
    use_height: bool = True
    """Feed the absolute height ``z`` (invariant under the global protocol's yaw + horizontal shift)."""


class PointEncoderOutput(NamedTuple):
    """Outputs of ``PointEncoder`` (all batched, ``B`` first)."""

    fine_index: Tensor
    """(B, M1) int64 rows of the input cloud picked as fine points."""
    fine_xyz: Tensor
    """(B, M1, 3) fine point coordinates (LiDAR frame)."""
    fine_feat: Tensor
    """(B, M1, D) per-point fine features (not normalised)."""
    superpoint_index: Tensor
    """(B, M) int64 fine-point rows of the superpoint centres."""
    superpoint_xyz: Tensor
    """(B, M, 3) superpoint centres (LiDAR frame)."""
    superpoint_members: Tensor
    """(B, M, k2) int64 fine-point rows of each superpoint's members (nearest first)."""
    superpoint_feat: Tensor
    """(B, M, D) superpoint features (not normalised)."""
    interp_index: Tensor
    """(B, M1, 3) int64 the 3 superpoints nearest to each fine point."""
    interp_weight: Tensor
    """(B, M1, 3) their inverse-distance weights (sum to 1)."""


def mlp(channels: list[int], last_act: bool = True) -> nn.Sequential:
    """Linear-LayerNorm-ReLU stack over the last axis (``channels[0]`` in, ``channels[-1]`` out)."""
    layers: list[nn.Module] = []
    for i in range(len(channels) - 1):
        layers.append(nn.Linear(channels[i], channels[i + 1]))
        if i < len(channels) - 2 or last_act:
            layers += [nn.LayerNorm(channels[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers)


def _relative_geometry(center: Tensor, neigh: Tensor, sq_dist: Tensor) -> tuple[Tensor, Tensor]:
    """Offsets (B, M, k, 3), offsets / radius (B, M, k, 3) and log radius (B, M, 1)."""
    rel = neigh - center[:, :, None, :]                              # (B, M, k, 3)
    radius = torch.sqrt(sq_dist.amax(-1, keepdim=True) + 1e-8)        # (B, M, 1), farthest neighbour
    return torch.cat([rel, rel / radius[..., None]], -1), torch.log(radius + 1e-3)


class PointEncoder(nn.Module):
    """(B, N, 4) LiDAR points ``x, y, z, intensity`` -> ``PointEncoderOutput``."""

    def __init__(self, config: PointEncoderConfig, dim: int):
        super().__init__()
        c = config
        if c.num_superpoints > c.num_fine_points:
            raise ValueError("PointEncoderConfig: num_superpoints must not exceed num_fine_points")
        self.config = c
        self.local = mlp([7] + list(c.local_channels))
        n_self = 2 + int(c.use_height)                                # intensity, log radius[, z]
        self.fine_trunk = nn.Sequential(nn.Linear(c.local_channels[-1] + n_self, c.fine_channels),
                                        nn.LayerNorm(c.fine_channels), nn.ReLU())
        self.group = mlp([6 + c.fine_channels] + list(c.superpoint_channels))
        self.superpoint_proj = nn.Linear(c.superpoint_channels[-1] + 1, dim)
        self.fine_proj = mlp([c.fine_channels + c.superpoint_channels[-1], dim, dim], last_act=False)

    def forward(self, points: Tensor) -> PointEncoderOutput:
        c = self.config
        B = points.shape[0]
        xyz = points[..., :3]
        # fine points: even stride over the cloud
        fi = ops.strided_indices(points, c.num_fine_points)[None].expand(B, -1)    # (B, M1)
        fine_pts = ops.gather_points(points, fi)                                  # (B, M1, 4)
        fxyz = fine_pts[..., :3]
        # level 1: group raw points around fine points
        d1, n1 = ops.knn(fxyz, xyz, c.fine_neighbors)                              # (B, M1, k1)
        nb = ops.gather_points(points, n1)                                        # (B, M1, k1, 4)
        geo, logr1 = _relative_geometry(fxyz, nb[..., :3], d1)
        h = self.local(torch.cat([geo, nb[..., 3:4]], -1)).amax(2)                 # (B, M1, C)
        own = [fine_pts[..., 3:4], logr1] + ([fxyz[..., 2:3]] if c.use_height else [])
        f1 = self.fine_trunk(torch.cat([h] + own, -1))                            # (B, M1, C1)
        # level 2: superpoints by farthest point sampling over the fine points
        si = ops.farthest_point_sample(fxyz, c.num_superpoints)                   # (B, M)
        sxyz = ops.gather_points(fxyz, si)                                        # (B, M, 3)
        d2, members = ops.knn(sxyz, fxyz, c.superpoint_neighbors)                 # (B, M, k2)
        geo2, logr2 = _relative_geometry(sxyz, ops.gather_points(fxyz, members), d2)
        g = self.group(torch.cat([geo2, ops.gather_points(f1, members)], -1)).amax(2)  # (B, M, C2)
        sfeat = self.superpoint_proj(torch.cat([g, logr2], -1))                   # (B, M, D)
        # per-point fine features: own + interpolated superpoint context
        d3, i3 = ops.knn(fxyz, sxyz, 3)                                           # (B, M1, 3)
        w3 = 1.0 / (torch.sqrt(d3 + 1e-8) + 1e-3)
        w3 = w3 / w3.sum(-1, keepdim=True)
        ctx = (ops.gather_points(g, i3) * w3[..., None]).sum(2)                   # (B, M1, C2)
        ffeat = self.fine_proj(torch.cat([f1, ctx], -1))                          # (B, M1, D)
        return PointEncoderOutput(fi, fxyz, ffeat, si, sxyz, members, sfeat, i3, w3)

    def last_shared_layer(self) -> Tensor:
        """Weight of the fine-point trunk: every loss (alignment, correspondence, pose) flows
        through it, so GradNorm measures the task gradients there."""
        return self.fine_trunk[0].weight
