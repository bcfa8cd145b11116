"""``crossi2p-export``: a training checkpoint -> one ONNX graph + its model card.

    crossi2p-export --checkpoint runs/crossi2p_cpu/checkpoints/last.pt --out models/crossi2p_cpu.onnx \
        [--evaluation out/eval_global.json --evaluation-command "crossi2p-evaluate ..."]

Writes ``<out>.onnx`` (opset 17, whole network including the PnP, dynamic point count; the compact
graph of ``model.onnx_graph``: iterations as ONNX ``Loop`` nodes, simplified) and
``<out>.yaml`` (crossi2p.model_card: interface, the checkpoint's preprocessing contract, training
provenance, evaluation figures with their commands, the graph's sha256). Before writing the card
it checks the graph: ``onnx.checker``, no custom op domains, and PyTorch vs onnxruntime parity on
the same inputs (pose within 1e-3 rad / 1 mm); a failed check exits 1 with the reason (a flag's
value out of its range, or flags that do not go together: exit 2).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from crossi2p.cli import ArgumentParser, UsageError, check_writable
from crossi2p.interrupt import exit_130_on_ctrl_c
from crossi2p.model_card import GRAPH_INPUTS, ModelCard, TensorSpec, sha256_of_file
from crossi2p.preprocess import PreprocessConfig

from .model.onnx_graph import ONNX_OPSET, CrossI2PGraph, export_onnx
from .train import load_checkpoint, model_from_checkpoint


PARITY_SIM_SEEDS = (900301, 900302, 900303)
"""Simulated frames (``small`` preset, seeds never used in training) the parity check runs on."""


def _rotation_diff_rad(T_a: np.ndarray, T_b: np.ndarray) -> float:
    """Angle between two rotations from the chordal distance, ||R1 - R2||_F = 2 sqrt(2) sin(angle / 2):
    well conditioned for small angles, unlike arccos of the trace (float32 rounding alone reads as
    ~5e-4 rad there)."""
    chord = np.linalg.norm(T_a[:3, :3].astype(np.float64) - T_b[:3, :3].astype(np.float64)) / (2 * np.sqrt(2))
    return float(2 * np.arcsin(min(chord, 1.0)))


def _same_pose(T_a: np.ndarray, T_b: np.ndarray, rot_rad: float = 1e-3, trans_m: float = 1e-3) -> bool:
    return _rotation_diff_rad(T_a, T_b) <= rot_rad and float(np.linalg.norm(T_a[:3, 3] - T_b[:3, 3])) <= trans_m


def check_parity(net, onnx_path: Path, pre: PreprocessConfig, sim_seeds=PARITY_SIM_SEEDS) -> dict:
    """Run the same real inputs through PyTorch and onnxruntime; return the largest differences.

    The inputs are simulated frames through the product's own preprocessing (crossi2p.preprocess),
    not random tensors: on noise a trained network's top-k coarse matches are near-ties that a
    float rounding difference flips, which says nothing about the graph. The correspondences are
    compared on every frame; the pose only where float32 itself determines it to the tolerance,
    i.e. where PyTorch in float32 and in float64 agree within 1e-3 rad / 1 mm: with an untrained
    network the Gauss-Newton cost is flat and float32 rounding alone moves its minimum by
    decimetres in PyTorch too (``pose_frames`` counts the frames whose pose was compared)."""
    from crossi2p.preprocess import preprocess_frame
    from crossi2p_training.sim import SimConfig, simulate_sample

    graph = CrossI2PGraph(net).eval()
    graph64 = CrossI2PGraph(copy.deepcopy(net).cpu().double()).eval()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = {"rotation_rad": 0.0, "translation_m": 0.0, "corr_uv_px_max": 0.0}
    pose_frames = 0
    dev = next(net.parameters()).device
    for seed in sim_seeds:
        s = simulate_sample(SimConfig.preset("small"), seed)
        f = preprocess_frame(s.image, s.points, s.camera, pre, np.random.default_rng(0))
        inputs = (torch.from_numpy(f.image)[None], torch.from_numpy(f.points)[None], torch.from_numpy(f.K)[None],
                  torch.eye(4)[None], torch.zeros(1))
        with torch.no_grad():
            ref = [t.cpu().numpy() for t in graph(*(x.to(dev) for x in inputs))]
        got = sess.run(None, {n: t.numpy() for n, t in zip(GRAPH_INPUTS, inputs)})
        diff = {"rotation_rad": _rotation_diff_rad(ref[0][0], got[0][0]),
                "translation_m": float(np.linalg.norm(ref[0][0, :3, 3] - got[0][0, :3, 3])),
                "corr_uv_px_max": float(np.abs(ref[4] - got[4]).max()) if ref[4].size else 0.0}
        with torch.no_grad():
            T64 = graph64(*(x.double() for x in inputs))[0][0].numpy()
        if not _same_pose(ref[0][0], T64):  # float32 does not determine this pose: nothing to compare
            diff["rotation_rad"] = diff["translation_m"] = 0.0
        else:
            pose_frames += 1
        worst = {k: max(worst[k], diff[k]) for k in worst}
    return {**worst, "pose_frames": pose_frames, "frames": [f"sim small seed {s}" for s in sim_seeds]}


def _training_section(ckpt: dict, args: argparse.Namespace, train_cfg: dict, parity: dict) -> dict:
    """The card's ``training`` section: the checkpoint's provenance, or, for a checkpoint recovered
    from an earlier graph (``weights_from_onnx``: it carries ``card_training``), that graph's card
    section unchanged (the weights still come from that training run) plus where they were read."""
    if ckpt.get("card_training"):
        section = {**ckpt["card_training"], "model_config": ckpt.get("model_config", {})}
        section["weights_recovered_from"] = ckpt.get("weights_source", {})
    else:
        section = {"checkpoint": str(args.checkpoint), "step": int(ckpt.get("step", 0)),
                   "command": args.training_command or ckpt.get("command", ""),   # the given one wins
                   "wall_time_s": ckpt.get("train_seconds"),  # steps 0..step, resumed runs summed
                   "data": train_cfg.get("data", {}), "optim": train_cfg.get("optim", {}),
                   "loss": train_cfg.get("loss", {}), "model_config": ckpt.get("model_config", {})}
    section["parity_torch_vs_onnxruntime"] = parity
    return section


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="crossi2p-export", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="output .onnx path (the card is written beside, .yaml)")
    p.add_argument("--name", help="model name in the card (default: the file stem)")
    p.add_argument("--evaluation", type=Path, action="append", default=[],
                   help="summary JSON of crossi2p-evaluate / crossi2p-evaluate-bag to record in the card (repeatable)")
    p.add_argument("--evaluation-command", action="append", default=[],
                   help="the command that made each --evaluation JSON (same order)")
    p.add_argument("--training-command", default="",
                   help="the command that trained the checkpoint (default: the one the checkpoint recorded)")
    p.add_argument("--fine-peak-radius", type=int, metavar="R",
                   help="fine matching: mean over the (2R+1)^2 cells around each window's peak instead of the "
                        "whole window (model.fine.peak_radius, an inference setting; default: the checkpoint's)")
    return p


@exit_130_on_ctrl_c("crossi2p-export", "interrupted (Ctrl-C): no model card written (the runtime refuses a graph "
                                      "without its card); export again")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # the inputs and outputs first: the export takes seconds to minutes
        if args.out.suffix != ".onnx":
            raise UsageError(f"--out {args.out}: expected a .onnx path (the card is written beside it, .yaml)")
        for option, path in (("--out", args.out), ("--out", args.out.with_suffix(".yaml"))):
            check_writable(path, option)
        if len(args.evaluation_command) not in (0, len(args.evaluation)):
            raise UsageError("give one --evaluation-command per --evaluation JSON")
        if args.fine_peak_radius is not None and args.fine_peak_radius < 0:
            raise UsageError(f"--fine-peak-radius: expected >= 0 fine cells, got {args.fine_peak_radius}")
        evaluation = []
        for i, path in enumerate(args.evaluation):
            try:
                entry = json.loads(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"--evaluation {path}: expected a crossi2p-evaluate summary JSON "
                                 f"({getattr(exc, 'strerror', None) or exc})") from None
            if not isinstance(entry, dict):
                raise ValueError(f"--evaluation {path}: expected a JSON object (a crossi2p-evaluate summary)")
            if args.evaluation_command:
                entry = {**entry, "command": args.evaluation_command[i]}  # the given command wins
            evaluation.append(entry)
        ckpt = load_checkpoint(args.checkpoint)
        net = model_from_checkpoint(ckpt, args.fine_peak_radius).eval()
        train_cfg = ckpt.get("config") or {}
        if "preprocess" not in train_cfg:
            raise ValueError(f"checkpoint {args.checkpoint}: has no training config with a preprocess section")
        pre = PreprocessConfig.from_dict(train_cfg["preprocess"])
        out = args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        image_hw = (pre.image_height, pre.image_width)
        print(f"crossi2p-export: tracing the network to ONNX (opset {ONNX_OPSET}) ...", flush=True)
        names = export_onnx(net, out, image_hw, pre.num_points)
        model = onnx.load(str(out))
        onnx.checker.check_model(model)
        custom = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
        if custom:
            raise ValueError(f"{out}: custom op domains {custom} in the graph")
        print("crossi2p-export: checking onnxruntime against PyTorch on simulated frames ...", flush=True)
        parity = check_parity(net, out, pre)
        if parity["rotation_rad"] > 1e-3 or parity["translation_m"] > 1e-3 or parity["corr_uv_px_max"] > 0.05:
            raise ValueError(f"{out}: PyTorch/onnxruntime parity failed: {parity}")
    except (ValueError, FileNotFoundError, KeyError, RuntimeError, onnx.checker.ValidationError) as exc:
        print(f"crossi2p-export: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1      # a flag's value or combination: exit 2
    H, W = image_hw
    inputs = [TensorSpec("image", [1, 3, H, W]), TensorSpec("points", [1, "num_points", 4]),
              TensorSpec("K", [1, 3, 3]), TensorSpec("T_prior", [1, 4, 4]), TensorSpec("prior_weight", [1])]
    outputs = [TensorSpec("T_cam_lidar", [1, 4, 4]), TensorSpec("confidence", [1]), TensorSpec("inlier_ratio", [1]),
               TensorSpec("corr_points", [1, "num_corr", 3]), TensorSpec("corr_uv", [1, "num_corr", 2]),
               TensorSpec("corr_weight", [1, "num_corr"])]
    assert [o.name for o in outputs] == list(names)
    card = ModelCard(
        name=args.name or out.stem, onnx_file=out.name, onnx_sha256=sha256_of_file(out), opset=ONNX_OPSET,
        preprocess=pre.to_dict(), inputs=inputs, outputs=outputs,
        training=_training_section(ckpt, args, train_cfg, parity),
        evaluation=evaluation)
    card_path = out.with_suffix(".yaml")
    card.save(card_path)
    size_mb = out.stat().st_size / 1e6
    print(f"crossi2p-export: {out} ({size_mb:.1f} MB, opset {ONNX_OPSET}), card {card_path}; "
          f"parity rot {parity['rotation_rad']:.2e} rad, trans {parity['translation_m']:.2e} m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
