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

Compact graph: the iterative parts (farthest point sampling, the PnP's Gauss-Newton stages and
translation IRLS) are TorchScript loops at export time (``ops.scripted_when_exporting``), so each
is one ONNX ``Loop`` whose body holds one iteration; ``compact_onnx`` then simplifies the exported
graph (onnxslim: constant folding, shape-arithmetic and dead-node elimination on the outer graph)
and folds the constant sub-expressions inside the loop bodies (which onnxslim leaves). For the
``cpu`` model that is ~1.8k nodes (subgraphs included) instead of 16.7k unrolled, and onnxruntime
creates a session in well under a second instead of 21.5-50 s on 2 cores (docs/benchmarks.md).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from crossi2p.model_card import GRAPH_INPUTS, GRAPH_OUTPUTS

from .crossi2p_net import CrossI2PNet

__all__ = ["CrossI2PGraph", "export_onnx", "example_inputs", "compact_onnx", "count_nodes", "FEATURE_OUTPUTS",
           "ONNX_OPSET"]

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
                with_features: bool = False, compact: bool = True) -> tuple[str, ...]:
    """Export ``net`` (left in eval mode) to ``path``; returns the output names.

    ``image_hw`` is fixed in the graph; ``num_points`` only sets the tracing example (N is a
    dynamic axis, as is the batch). ``compact``: simplify the exported graph (``compact_onnx``;
    same outputs, fewer nodes); False writes the exporter's graph as it is.
    """
    graph = CrossI2PGraph(net, with_features).eval()  # export restores the wrapper's mode: eval
    args = example_inputs(net, image_hw, num_points)
    names = graph.output_names
    dyn = {"image": {0: "batch"}, "points": {0: "batch", 1: "num_points"}, "K": {0: "batch"},
           "T_prior": {0: "batch"}, "prior_weight": {0: "batch"}}
    for n in names:
        dyn[n] = {0: "batch"}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # dynamo=False is the legacy exporter
        torch.onnx.export(graph, args, buf, input_names=list(GRAPH_INPUTS), output_names=list(names),
                          dynamic_axes=dyn, opset_version=ONNX_OPSET, dynamo=False, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    if compact:
        model = compact_onnx(model)
    onnx.save(model, str(path))
    return names


# ------------------------------------------------------------------------------ graph compaction
def count_nodes(model: onnx.ModelProto) -> int:
    """Number of nodes of ``model``, those inside subgraphs (``Loop`` / ``If`` bodies) included."""
    def walk(g: onnx.GraphProto) -> int:
        n = len(g.node)
        for node in g.node:
            for a in node.attribute:
                n += walk(a.g) if a.type == onnx.AttributeProto.GRAPH else 0
                n += sum(walk(sg) for sg in a.graphs)
        return n
    return walk(model.graph)


def compact_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same computation in fewer nodes: onnxslim (constant folding, shape-arithmetic
    simplification, dead nodes: on the outer graph), then the constant sub-expressions inside
    subgraphs folded into subgraph initializers (``fold_subgraph_constants``). Deterministic (the
    release flow re-exports and compares sha256). Inputs, outputs and their names are unchanged."""
    import onnxslim  # training-side dependency only (requirements.txt); the runtime never compacts

    slim = onnxslim.slim(model)
    fold_subgraph_constants(slim)
    return slim


_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                 "Bernoulli"}


def fold_subgraph_constants(model: onnx.ModelProto, max_elements: int = 65536) -> int:
    """Evaluate, once, the nodes inside subgraphs whose inputs are all constants (initializers or
    ``Constant`` outputs, of the subgraph or of a scope around it) and store their values as
    initializers of that subgraph; drop what is then unused. In place; returns the number of nodes
    removed. Needed because the legacy exporter does not constant-fold inside ``Loop`` bodies
    (their ``narrow`` / ``select`` index arithmetic stays as Unsqueeze/Add chains) and onnxslim
    leaves subgraphs alone. Outputs larger than ``max_elements`` are left to be computed."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    opsets = list(model.opset_import)
    removed = 0

    def const_value(node: onnx.NodeProto):
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def evaluate(node: onnx.NodeProto, values: list[np.ndarray]) -> list[np.ndarray]:
        ins = [f"i{k}" for k in range(len(node.input))]
        outs = [f"o{k}" for k in range(len(node.output))]
        one = helper.make_node(node.op_type, [n if x else "" for n, x in zip(ins, node.input)], outs,
                               domain=node.domain)
        one.attribute.extend(node.attribute)
        g = helper.make_graph([one], "fold", [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None)
                                              for n, x in zip(ins, node.input) if x],
                              [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in outs])
        m = helper.make_model(g, opset_imports=opsets, ir_version=model.ir_version)
        feed = {n: v for n, x, v in zip(ins, node.input, values) if x}
        return [np.asarray(v) for v in ReferenceEvaluator(m).run(None, feed)]

    def used_names(g: onnx.GraphProto) -> set[str]:
        used = {o.name for o in g.output}
        for node in g.node:
            used.update(node.input)
            for a in node.attribute:
                for sg in ([a.g] if a.type == onnx.AttributeProto.GRAPH else []) + list(a.graphs):
                    used |= used_names(sg)
        return used

    def fold(g: onnx.GraphProto, outer: dict[str, np.ndarray], is_subgraph: bool) -> None:
        nonlocal removed
        consts = dict(outer)
        consts.update({i.name: numpy_helper.to_array(i) for i in g.initializer})
        graph_outputs = {o.name for o in g.output}
        kept: list[onnx.NodeProto] = []
        for node in g.node:
            subgraphs = [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
            subgraphs += [sg for a in node.attribute for sg in a.graphs]
            value = const_value(node)
            if value is not None:
                consts[node.output[0]] = value
            if subgraphs:
                for sg in subgraphs:
                    fold(sg, consts, True)
                kept.append(node)
                continue
            foldable = (is_subgraph and node.domain in ("", "ai.onnx") and node.op_type not in _NOT_FOLDABLE
                        and not graph_outputs.intersection(node.output)
                        and all(x == "" or x in consts for x in node.input))
            if foldable:
                outs = [value] if value is not None else evaluate(node, [consts.get(x) for x in node.input])
                if all(o.size <= max_elements for o in outs):
                    for name, v in zip(node.output, outs):
                        consts[name] = v
                        g.initializer.append(numpy_helper.from_array(v, name))
                    removed += 1
                    continue
            kept.append(node)
        del g.node[:]
        g.node.extend(kept)
        if is_subgraph:  # drop the initializers nothing reads any more (folded intermediates)
            used = used_names(g)
            keep_init = [i for i in g.initializer if i.name in used]
            del g.initializer[:]
            g.initializer.extend(keep_init)

    fold(model.graph, {}, False)
    return removed
