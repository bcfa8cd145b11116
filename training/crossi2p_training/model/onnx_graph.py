"""The whole CrossI2PNet (encoders, matching AND the PnP) as one ONNX graph for the runtime.

Interface (names from ``crossi2p.model_card``, which the runtime checks):

inputs
    ``image`` (B, 3, H, W) float32 normalised image (fixed H, W: the export size);
    ``points`` (B, N, 4) float32 LiDAR-frame ``x, y, z, intensity`` (N dynamic, >= num_fine_points);
    ``K`` (B, 3, 3) float32 pinhole intrinsics of ``image``;
    ``T_prior`` (B, 4, 4) float32 prior ``T_cam_lidar`` (ignored where ``prior_weight`` is 0);
    ``prior_weight`` (B,) float32, 1 to add ``T_prior`` as a PnP hypothesis, 0 not to.
outputs
    ``T_cam_lidar`` (B, 4, 4), ``confidence`` (B,), ``inlier_ratio`` (B,),
    ``corr_points`` (B, C, 3), ``corr_uv`` (B, C, 2), ``corr_weight`` (B, C)
    [+ ``point_fine_feat`` (B, M1, D), ``pixel_fine_feat`` (B, D, Hf, Wf) with ``with_features``].

Exported with ``torch.onnx.export(..., opset_version=17, dynamo=False)``; the batch and the point
count are dynamic axes. The graph has no custom ops and no SVD/eig/solve/inverse.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from crossi2p.model_card import GRAPH_INPUTS, GRAPH_OUTPUTS

from .crossi2p_net import CrossI2PNet

__all__ = ["CrossI2PGraph", "export_onnx", "example_inputs", "FEATURE_OUTPUTS", "ONNX_OPSET"]

FEATURE_OUTPUTS = ("point_fine_feat", "pixel_fine_feat")
ONNX_OPSET = 17


class CrossI2PGraph(nn.Module):
    """Positional-tensor wrapper of ``CrossI2PNet`` with the runtime's interface."""

    def __init__(self, net: CrossI2PNet, with_features: bool = False):
        super().__init__()
        self.net = net
        self.with_features = with_features

    @property
    def output_names(self) -> tuple[str, ...]:
        return GRAPH_OUTPUTS + (FEATURE_OUTPUTS if self.with_features else ())

    def forward(self, image: Tensor, points: Tensor, K: Tensor, T_prior: Tensor,
                prior_weight: Tensor) -> tuple[Tensor, ...]:
        o = self.net(image, points, K, T_prior, prior_weight)
        out = (o.T_cam_lidar, o.confidence, o.inlier_ratio, o.corr_xyz, o.corr_uv, o.corr_weight)
        return out + ((o.point_fine_feat, o.pixel_fine_feat) if self.with_features else ())


def example_inputs(net: CrossI2PNet | None, image_hw: tuple[int, int], num_points: int,
                   batch: int = 1, seed: int = 0) -> tuple[Tensor, ...]:
    """Plausible random inputs ``(image, points, K, T_prior, prior_weight)`` for tracing and
    tests: points within 30 m, a pinhole K, no prior. On ``net``'s device (CPU if None)."""
    g = torch.Generator().manual_seed(seed)
    H, W = image_hw
    image = torch.randn(batch, 3, H, W, generator=g)
    xyz = (torch.rand(batch, num_points, 3, generator=g) - 0.5) * torch.tensor([60.0, 60.0, 4.0])
    points = torch.cat([xyz, torch.rand(batch, num_points, 1, generator=g)], -1)
    f = 0.55 * W
    K = torch.tensor([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]]).expand(batch, 3, 3).clone()
    T_prior = torch.eye(4).expand(batch, 4, 4).clone()
    prior_weight = torch.zeros(batch)
    dev = next(net.parameters()).device if net is not None else torch.device("cpu")
    return tuple(x.to(dev) for x in (image, points, K, T_prior, prior_weight))


def export_onnx(net: CrossI2PNet, path: str | Path, image_hw: tuple[int, int], num_points: int,
                with_features: bool = False) -> tuple[str, ...]:
    """Export ``net`` (left in eval mode) to ``path``; returns the output names.

    ``image_hw`` is fixed in the graph; ``num_points`` only sets the tracing example (N is a
    dynamic axis, as is the batch).
    """
    graph = CrossI2PGraph(net, with_features).eval()  # export restores the wrapper's mode: eval
    args = example_inputs(net, image_hw, num_points)
    names = graph.output_names
    dyn = {"image": {0: "batch"}, "points": {0: "batch", 1: "num_points"}, "K": {0: "batch"},
           "T_prior": {0: "batch"}, "prior_weight": {0: "batch"}}
    for n in names:
        dyn[n] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # dynamo=False is the legacy exporter
        torch.onnx.export(graph, args, str(path), input_names=list(GRAPH_INPUTS), output_names=list(names),
                          dynamic_axes=dyn, opset_version=ONNX_OPSET, dynamo=False, do_constant_folding=True)
    return names
