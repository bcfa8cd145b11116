"""3. Coarse transformer and 5. coarse (superpoint-superpixel) matching.

**Transformer** (LoFTR-style): alternating intra-modal self-attention (superpoints with
superpoints, superpixels with superpixels) and cross-modal cross-attention (each side attends to
the other), ``layer_types`` deep. Positional encodings, added once before the first layer:

- superpixels: 2D sine encoding of the coarse grid (``ops.sine_position_encoding_2d``);
- superpoints (``point_pe``): a learned MLP of pose-invariant inputs by default
  (``height_radius``: height ``z`` and horizontal distance to the superpoints' mean ``x, y``),
  because under the ``global`` protocol the cloud's yaw and horizontal offset relative to the
  camera are unknown: an encoding of absolute ``x, y`` would teach the network the training
  rig's view direction. ``xyz`` (MLP of centred ``x, y, z``) is offered for rigs where the
  LiDAR frame is trusted; ``none`` disables it.

**Matching**: dual-softmax (``softmax`` over superpixels times ``softmax`` over superpoints of
``<f_j, g_q> / temperature`` with L2-normalised features) gives ``log_conf (B, M, P)``. Each
superpoint's best superpixel is scored by ``log_conf`` plus, with ``inview_gating``, the log
in-view probabilities of both (intersection.py), and the ``num_matches`` best superpoints are kept
(``topk`` with a constant k: exports with any point count).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops

__all__ = ["CoarseTransformerConfig", "CoarseTransformer", "CoarseMatchingConfig", "CoarseMatcher",
           "CoarseMatches", "AttentionLayer"]


@dataclass
class CoarseTransformerConfig:
    """Section 3 of ModelConfig: the coarse transformer."""

    num_heads: int = 4
    """Attention heads (D must be divisible by it)."""
    layer_types: tuple[str, ...] = ("self", "cross", "self", "cross")
    """Sequence of ``self`` (intra-modal) and ``cross`` (cross-modal) attention layers."""
    point_pe: Literal["height_radius", "xyz", "none"] = "height_radius"
    """Superpoint positional encoding (see the module docstring)."""


class AttentionLayer(nn.Module):
    """LoFTR encoder layer: multi-head attention message, merged, MLP on ``[x, message]``, residual."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.h, self.dh = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.merge = nn.Linear(dim, dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim, bias=False), nn.ReLU(),
                                 nn.Linear(2 * dim, dim, bias=False))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, source: Tensor) -> Tensor:
        """x (B, L, D) attends to source (B, S, D) -> (B, L, D)."""
        B, L, D = x.shape
        q = self.q(x).reshape(B, L, self.h, self.dh).transpose(1, 2)            # (B, h, L, dh)
        k = self.k(source).reshape(B, -1, self.h, self.dh).transpose(1, 2)      # (B, h, S, dh)
        v = self.v(source).reshape(B, -1, self.h, self.dh).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dh), dim=-1)  # (B, h, L, S)
        msg = (a @ v).transpose(1, 2).reshape(B, L, D)
        msg = self.norm1(self.merge(msg))
        msg = self.norm2(self.mlp(torch.cat([x, msg], -1)))
        return x + msg


class CoarseTransformer(nn.Module):
    """Superpoint (B, M, D) and superpixel (B, D, Hc, Wc) features -> context-aware (B, M, D), (B, P, D)."""

    def __init__(self, config: CoarseTransformerConfig, dim: int):
        super().__init__()
        for t in config.layer_types:
            if t not in ("self", "cross"):
                raise ValueError(f"CoarseTransformerConfig.layer_types: unknown layer {t!r}")
        self.config, self.dim = config, dim
        self.layers = nn.ModuleList([AttentionLayer(dim, config.num_heads) for _ in config.layer_types])
        n_in = {"height_radius": 2, "xyz": 3, "none": 0}[config.point_pe]
        self.point_pe = (nn.Sequential(nn.Linear(n_in, dim), nn.ReLU(), nn.Linear(dim, dim))
                         if n_in else None)

    def point_encoding_inputs(self, sxyz: Tensor) -> Tensor:
        """(B, M, 3) superpoint centres -> (B, M, n_in) inputs of the point positional MLP."""
        centre = sxyz.mean(1, keepdim=True)                                      # (B, 1, 3)
        if self.config.point_pe == "xyz":
            return sxyz - centre
        r = torch.sqrt(((sxyz[..., :2] - centre[..., :2]) ** 2).sum(-1, keepdim=True) + 1e-8)
        return torch.cat([sxyz[..., 2:3], r], -1) / 10.0                         # ~unit scale

    def forward(self, sp_feat: Tensor, sp_xyz: Tensor, px_map: Tensor) -> tuple[Tensor, Tensor]:
        Hc, Wc = px_map.shape[-2:]
        pe = ops.sine_position_encoding_2d(self.dim, Hc, Wc, px_map.device, px_map.dtype)
        px = (px_map + pe[None]).flatten(2).transpose(1, 2)                      # (B, P, D)
        sp = sp_feat
        if self.point_pe is not None:
            sp = sp + self.point_pe(self.point_encoding_inputs(sp_xyz))
        for layer, kind in zip(self.layers, self.config.layer_types):
            if kind == "self":
                sp, px = layer(sp, sp), layer(px, px)
            else:
                sp, px = layer(sp, px), layer(px, sp)
        return sp, px


@dataclass
class CoarseMatchingConfig:
    """Section 5 of ModelConfig: dual-softmax coarse matching."""

    temperature: float = 0.1
    """Dual-softmax temperature on cosine similarities."""
    num_matches: int = 64
    """Kc: superpoint-superpixel matches kept (top-k superpoints by score)."""
    inview_gating: bool = True
    """Add both sides' log in-view probabilities to the selection score."""


class CoarseMatches(NamedTuple):
    """Output of ``CoarseMatcher``."""

    log_conf: Tensor
    """(B, M, P) log dual-softmax confidence of every superpoint-superpixel pair."""
    superpoint: Tensor
    """(B, Kc) int64 selected superpoints (rows of the superpoints)."""
    superpixel: Tensor
    """(B, Kc) int64 their best superpixel (row-major coarse cell)."""
    score: Tensor
    """(B, Kc) selection score: log confidence [+ log in-view probabilities], <= 0."""


class CoarseMatcher(nn.Module):
    """Dual-softmax + top-k (no parameters)."""

    def __init__(self, config: CoarseMatchingConfig):
        super().__init__()
        self.config = config

    def forward(self, sp: Tensor, px: Tensor, sp_logit: Tensor, px_logit: Tensor) -> CoarseMatches:
        """sp (B, M, D), px (B, P, D) L2-normalised; in-view logits (B, M), (B, P)."""
        c = self.config
        sim = sp @ px.transpose(1, 2) / c.temperature                            # (B, M, P)
        log_conf = F.log_softmax(sim, dim=2) + F.log_softmax(sim, dim=1)
        sel = log_conf
        if c.inview_gating:
            sel = sel + F.logsigmoid(sp_logit)[:, :, None] + F.logsigmoid(px_logit)[:, None, :]
        best, q = sel.max(dim=2)                                                 # (B, M)
        score, j = torch.topk(best, c.num_matches, dim=1)                        # (B, Kc)
        return CoarseMatches(log_conf, j, torch.gather(q, 1, j), score)
