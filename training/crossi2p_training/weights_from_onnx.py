"""Recover a CrossI2PNet checkpoint from an exported graph's initializers (when the training
checkpoint is gone: ``runs/`` is not in git), so the model can be re-exported from the same weights.

    .venv/bin/python -m crossi2p_training.weights_from_onnx models/crossi2p_cpu.yaml \
        --out runs/crossi2p_cpu_recovered/recovered.pt

The card gives the architecture (``training.model_config``) and the graph (``onnx_file``, checked
against ``onnx_sha256``). The legacy exporter (``dynamo=False``) keeps most parameters under their
state_dict names but stores Linear weights transposed (``onnx::MatMul_*``) and folds each
BatchNorm into the convolution before it (``onnx::Conv_*``). Which initializer feeds which
parameter is found with a *probe*: a network of the same config with distinct random values is
exported the same way, and every (consuming node, input slot) of the probe graph is traced back to
the parameter whose value it holds (as is, transposed, or conv+BatchNorm folded). The recovered
state_dict is then read from the same (node, slot) of the graph (the node names are the
exporter's module scopes: the same in a compacted graph, whose onnxslim pass keeps them; the
shipped graph before and after compaction give bit-identical state_dicts). Every initializer must be
accounted for, and every parameter must come from the graph or be a folded BatchNorm's
(set to the identity: weight 1, mean 0, variance 1 - eps, the folded bias in ``bias``), else the
script stops.

What it recovers is the network's eval-mode function, exactly; not the training state: no
optimiser, and the BatchNorm statistics are folded into the convolutions (fine for export and
evaluation; resuming training from it would start BatchNorm from those folded values).

Before writing, the recovered PyTorch network is run against the graph on simulated frames
(``export.check_parity``: the product's preprocessing, correspondences on every frame, the pose
where float32 determines it); it must agree as closely as an export's parity check demands.

The checkpoint holds what ``crossi2p-export`` reads (format, model_config, state_dict, config with
the card's preprocess / data / optim / loss sections, step, train_seconds) plus
``card_training``: the card's training section, which ``crossi2p-export`` then writes into the new
card unchanged (the provenance of the weights is the original training run, not this file), and
``weights_source``: the graph and sha256 the weights were read from.
"""
from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from crossi2p.cli import ArgumentParser
from crossi2p.model_card import GRAPH_INPUTS, ModelCard, sha256_of_file
from crossi2p.preprocess import PreprocessConfig

from .model.crossi2p_net import CrossI2PNet, ModelConfig
from .model.onnx_graph import CrossI2PGraph, example_inputs

__all__ = ["state_dict_from_onnx", "recover_checkpoint", "main"]


def _consumers(model: onnx.ModelProto) -> dict[tuple[str, int], str]:
    """(node name, input slot) -> initializer name, for the outer graph's nodes. An initializer read
    through an ``Identity`` (the exporter adds some, numbered globally) counts as read by the
    Identity's consumers, whose names are scoped by module and so stable between exports."""
    alias = {i.name: i.name for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Identity" and n.input[0] in alias:
            alias[n.output[0]] = alias[n.input[0]]
    return {(n.name, k): alias[x] for n in model.graph.node if n.op_type != "Identity"
            for k, x in enumerate(n.input) if x in alias}


def _conv_bn_pairs(net: nn.Module) -> dict[str, str]:
    """Conv2d name -> the BatchNorm2d registered right after it (the exporter folds these)."""
    mods = list(net.named_modules())
    return {name: mods[i + 1][0] for i, (name, m) in enumerate(mods[:-1])
            if isinstance(m, nn.Conv2d) and isinstance(mods[i + 1][1], nn.BatchNorm2d)
            and mods[i + 1][1].num_features == m.out_channels}


def _identity_bn_variance(eps: float) -> float:
    """A float32 variance v with float32(v + eps) == 1 exactly (folding then scales by exactly 1)."""
    v = np.float32(1.0) - np.float32(eps)
    while np.float32(v + np.float32(eps)) != np.float32(1.0):
        v = np.nextafter(v, np.float32(2.0) if np.float32(v + np.float32(eps)) < 1 else np.float32(0.0))
    return float(v)


def _export_bytes(net: CrossI2PNet, image_hw: tuple[int, int], num_points: int) -> onnx.ModelProto:
    """``net`` exported as ``export_onnx`` does, before compaction (the exporter's own naming)."""
    from crossi2p.model_card import GRAPH_OUTPUTS

    buf = io.BytesIO()
    dyn = {"points": {0: "batch", 1: "num_points"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(CrossI2PGraph(net).eval(), example_inputs(net, image_hw, num_points), buf,
                          input_names=list(GRAPH_INPUTS), output_names=list(GRAPH_OUTPUTS), dynamic_axes=dyn,
                          opset_version=17, dynamo=False, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def state_dict_from_onnx(graph: onnx.ModelProto, config: ModelConfig, image_hw: tuple[int, int],
                         num_points: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    """The state_dict of ``config``'s CrossI2PNet held by ``graph`` (a legacy-exporter graph of it).

    Returns ``(state_dict, report)``; ``report`` counts the parameters read as is, transposed and
    conv+BatchNorm folded, and lists the BatchNorm entries set to the identity. Raises ValueError
    on anything not accounted for (an initializer the probe does not explain, a parameter no
    initializer holds, a shape mismatch)."""
    torch.manual_seed(seed)
    probe = CrossI2PNet(config).eval()
    pairs = _conv_bn_pairs(probe)
    bns = {bn: probe.get_submodule(bn) for bn in pairs.values()}
    with torch.no_grad():
        for p in probe.parameters():  # distinct values everywhere (LayerNorm's ones/zeros included)
            p.copy_(torch.randn_like(p))
        for bn in bns.values():       # folded BatchNorm = identity scale, so the conv weight shows as is
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(_identity_bn_variance(bn.eps))
    sd = probe.state_dict()
    by_value: dict[tuple, tuple[str, str]] = {}
    for key, v in sd.items():
        if v.dtype.is_floating_point and v.numel() >= 1:
            by_value.setdefault((tuple(v.shape), v.numpy().tobytes()), (key, "as is"))
            if v.dim() == 2:
                vt = v.t().contiguous()
                by_value.setdefault((tuple(vt.shape), vt.numpy().tobytes()), (key, "transposed"))
    probe_graph = _export_bytes(probe, image_hw, num_points)
    probe_init = {i.name: numpy_helper.to_array(i) for i in probe_graph.graph.initializer}
    graph_init = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    graph_consumers = _consumers(graph)
    fused_bias_of = {bn + ".bias": conv for conv, bn in pairs.items()}
    out: dict[str, torch.Tensor] = {}
    how: dict[str, str] = {}
    read: set[str] = set()
    for (node, slot), pname in sorted(_consumers(probe_graph).items()):
        pv = probe_init[pname]
        hit = by_value.get((pv.shape, np.ascontiguousarray(pv).tobytes()))
        if hit is None:
            if pv.size <= 1 or not pname.startswith(("net.", "onnx::")):
                continue  # a scalar / shape constant the exporter folded, not a parameter
            raise ValueError(f"probe initializer {pname} (input {slot} of {node}, shape {pv.shape}) "
                             f"matches no parameter: the exporter transformed it in an unknown way")
        key, mode = hit
        if (node, slot) not in graph_consumers:
            raise ValueError(f"graph has no initializer at input {slot} of node {node} (parameter {key}): "
                             f"the graph was not exported from this architecture")
        read.add(graph_consumers[(node, slot)])
        value = graph_init[graph_consumers[(node, slot)]]
        conv = key.rsplit(".", 1)[0]
        if mode == "as is" and conv in pairs and key.endswith(".weight") and pname.startswith("onnx::"):
            mode = "conv+BatchNorm folded"
        if key in fused_bias_of:
            mode = "conv+BatchNorm folded"
        t = torch.from_numpy(np.array(value, dtype=np.float32))
        t = t.t().contiguous() if mode == "transposed" else t
        if tuple(t.shape) != tuple(sd[key].shape):
            raise ValueError(f"{key}: graph holds shape {tuple(t.shape)}, the architecture {tuple(sd[key].shape)}")
        if key in out and not torch.equal(out[key], t):
            raise ValueError(f"{key}: two different values in the graph (inputs of different nodes)")
        out[key], how[key] = t, mode
    identity = []
    for conv, bn in pairs.items():
        if conv + ".weight" not in out:
            continue
        m = bns[bn]
        defaults = {"weight": torch.ones(m.num_features), "running_mean": torch.zeros(m.num_features),
                    "running_var": torch.full((m.num_features,), _identity_bn_variance(m.eps)),
                    "bias": torch.zeros(m.num_features)}
        for name, v in defaults.items():
            if f"{bn}.{name}" not in out:
                out[f"{bn}.{name}"] = v
                identity.append(f"{bn}.{name}")
        out[f"{bn}.num_batches_tracked"] = sd[f"{bn}.num_batches_tracked"].clone()
    missing = [k for k in sd if k not in out]
    if missing:
        raise ValueError(f"{len(missing)} parameter(s) not found in the graph: {missing}")
    # every initializer that can hold a parameter (the exporter names them after the parameter, or
    # after the op that consumes a transformed one) must have been read
    weight_like = {n for n in graph_init if n.startswith("net.") or n.split("_")[0] in
                   ("onnx::Conv", "onnx::MatMul", "onnx::Gemm")}
    unexplained = sorted(weight_like - read)
    if unexplained:
        raise ValueError(f"graph initializers not explained by any parameter: {unexplained}")
    report = {m: sum(1 for v in how.values() if v == m) for m in ("as is", "transposed", "conv+BatchNorm folded")}
    report["batchnorm_set_to_identity"] = len(identity)
    report["state_dict_entries"] = len(out)
    return {k: out[k] for k in sd}, report


def recover_checkpoint(card_path: Path, parity_check: bool = True) -> tuple[dict, dict]:
    """The checkpoint dict (see the module docstring) recovered from the card's graph, and a report
    (counts of ``state_dict_from_onnx`` + the parity of the recovered network against the graph)."""
    from .export import check_parity

    card = ModelCard.load(card_path)
    graph_path = card_path.parent / card.onnx_file
    digest = sha256_of_file(graph_path)
    if digest != card.onnx_sha256:
        raise ValueError(f"{graph_path}: sha256 {digest[:12]}... is not the card's {card.onnx_sha256[:12]}...")
    training = dict(card.training or {})
    if "model_config" not in training:
        raise ValueError(f"{card_path}: the card has no training.model_config (the architecture)")
    config = ModelConfig.from_dict(training["model_config"])
    pre = PreprocessConfig.from_dict(card.preprocess)
    sd, report = state_dict_from_onnx(onnx.load(str(graph_path)), config, (pre.image_height, pre.image_width),
                                      pre.num_points)
    net = CrossI2PNet(config)
    net.load_state_dict(sd)  # strict: every key, right shapes
    net.eval()
    if parity_check:
        parity = check_parity(net, graph_path, pre)
        report["parity_vs_graph"] = parity
        if parity["rotation_rad"] > 1e-3 or parity["translation_m"] > 1e-3 or parity["corr_uv_px_max"] > 0.05:
            raise ValueError(f"recovered network does not reproduce {graph_path}: {parity}")
    card_training = {k: v for k, v in training.items() if k != "parity_torch_vs_onnxruntime"}
    ckpt = net.checkpoint(
        config={"preprocess": card.preprocess, "data": training.get("data", {}), "optim": training.get("optim", {}),
                "loss": training.get("loss", {})},
        step=int(training.get("step", 0)), train_seconds=training.get("wall_time_s"),
        card_training=card_training,
        weights_source={"onnx_file": str(graph_path), "onnx_sha256": digest,
                        "method": "crossi2p_training.weights_from_onnx"})
    return ckpt, report


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m crossi2p_training.weights_from_onnx",
                        description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("card", type=Path, help="model card (.yaml) whose graph holds the weights")
    ap.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    args = ap.parse_args(argv)
    try:
        ckpt, report = recover_checkpoint(args.card)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"weights_from_onnx: error: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, args.out)
    p = report.get("parity_vs_graph", {})
    print(f"weights_from_onnx: {args.out}: {report['state_dict_entries']} state_dict entries "
          f"({report['as is']} as is, {report['transposed']} transposed, {report['conv+BatchNorm folded']} "
          f"conv+BatchNorm folded, {report['batchnorm_set_to_identity']} BatchNorm entries set to identity); "
          f"vs the graph on {len(p.get('frames', []))} simulated frames: corr_uv {p.get('corr_uv_px_max', 0):.2e} px, "
          f"rotation {p.get('rotation_rad', 0):.2e} rad, translation {p.get('translation_m', 0):.2e} m "
          f"({p.get('pose_frames', 0)} pose frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
