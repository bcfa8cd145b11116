"""A stub model for node tests: the runtime's graph interface, loaded in milliseconds, and a
``session.run`` that lasts as long as asked (a loop of small matrix products), so a test can
act while a frame is in the middle of onnxruntime.

Its estimate is the prior (identity in global mode) with no correspondences: every frame comes
out invalid ("0 correspondences ..."), which is all a start-up / shutdown test needs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from crossi2p.model_card import GRAPH_INPUTS, GRAPH_OUTPUTS, ModelCard, TensorSpec, sha256_of_file

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CARD = REPO / "models" / "crossi2p_cpu.yaml"


def _slow_loop(iterations: int) -> list:
    """Nodes computing ``loop_out`` (256, 256) from the image by ``iterations`` products with a
    fixed matrix: ~0.3 ms each on one core, never constant-folded (it depends on the input)."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_in", "W"], ["xw"]), helper.make_node("Tanh", ["xw"], ["x_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "slow_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [256, 256])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [256, 256])])
    return [
        helper.make_node("ReduceMean", ["image"], ["image_mean"], keepdims=0),
        helper.make_node("Mul", ["W", "image_mean"], ["x0"]),
        helper.make_node("Loop", ["trip_count", "keep_going", "x0"], ["loop_out"], body=body),
        helper.make_node("ReduceMean", ["loop_out"], ["loop_mean"], keepdims=1, axes=[0, 1]),
        helper.make_node("Reshape", ["loop_mean", "shape_1"], ["loop_scalar"]),
        helper.make_node("Sigmoid", ["loop_scalar"], ["confidence_raw"]),
    ]


def _slow_to_load(n: int) -> list:
    """``n`` Mul + Relu pairs on ``prior_weight`` whose result is added (times 0) to the
    confidence: nothing for onnxruntime to fold away, so creating a session walks all of them
    (60,000 pairs: about 4 s on 2 cores), which gives a subprocess test a load to interrupt."""
    nodes, prev = [], "prior_weight"
    for i in range(n):
        nodes += [helper.make_node("Mul", [prev, "one_f"], [f"slow_m{i}"]),
                  helper.make_node("Relu", [f"slow_m{i}"], [f"slow_r{i}"])]
        prev = f"slow_r{i}"
    return nodes + [helper.make_node("Mul", [prev, "zero_f"], ["slow_zero"]),
                    helper.make_node("Add", ["confidence_raw", "slow_zero"], ["confidence"])]


def write_stub_model(folder: Path, frame_iterations: int = 1, load_nodes: int = 0) -> Path:
    """Write ``stub.onnx`` + ``stub.yaml`` (the shipped card's preprocessing) into ``folder``;
    returns the card path. ``frame_iterations``: matrix products per frame (10**8: a frame that
    never ends within a test); ``load_nodes``: pairs of nodes that only make the session slow to
    create (``_slow_to_load``)."""
    folder.mkdir(parents=True, exist_ok=True)
    shipped = ModelCard.load(SHIPPED_CARD)
    pre = shipped.preprocess
    h, w = pre["image_height"], pre["image_width"]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((256, 256)) / 16).astype(np.float32), "W"),
             numpy_helper.from_array(np.array(frame_iterations, np.int64), "trip_count"),
             numpy_helper.from_array(np.array(True), "keep_going"),
             numpy_helper.from_array(np.array([1], np.int64), "shape_1"),
             numpy_helper.from_array(np.array([0, 0], np.int64), "zero_2"),
             numpy_helper.from_array(np.array([0, 3], np.int64), "end_xyz"),
             numpy_helper.from_array(np.array([0, 2], np.int64), "end_uv"),
             numpy_helper.from_array(np.array([0, 1], np.int64), "end_w"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "axes_12"),
             numpy_helper.from_array(np.array([2], np.int64), "axis_2"),
             numpy_helper.from_array(np.ones(1, np.float32), "one_f"),
             numpy_helper.from_array(np.zeros(1, np.float32), "zero_f")]
    nodes = _slow_loop(frame_iterations) + _slow_to_load(load_nodes) + [
        helper.make_node("Identity", ["T_prior"], ["T_cam_lidar"]),
        helper.make_node("Identity", ["confidence"], ["inlier_ratio"]),
        helper.make_node("Slice", ["points", "zero_2", "end_xyz", "axes_12"], ["corr_points"]),
        helper.make_node("Slice", ["points", "zero_2", "end_uv", "axes_12"], ["corr_uv"]),
        helper.make_node("Slice", ["points", "zero_2", "end_w", "axes_12"], ["corr_w3"]),
        helper.make_node("Squeeze", ["corr_w3", "axis_2"], ["corr_weight"]),
    ]
    shapes_in = {"image": [1, 3, h, w], "points": [1, "num_points", 4], "K": [1, 3, 3], "T_prior": [1, 4, 4],
                 "prior_weight": [1]}
    shapes_out = {"T_cam_lidar": [1, 4, 4], "confidence": [1], "inlier_ratio": [1], "corr_points": [1, 0, 3],
                  "corr_uv": [1, 0, 2], "corr_weight": [1, 0]}
    graph = helper.make_graph(
        nodes, "crossi2p_stub",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes_in[n]) for n in GRAPH_INPUTS],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes_out[n]) for n in GRAPH_OUTPUTS],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx_path = folder / "stub.onnx"
    onnx.save(model, onnx_path)
    card = folder / "stub.yaml"
    ModelCard(name="stub", onnx_file=onnx_path.name, onnx_sha256=sha256_of_file(onnx_path), preprocess=pre,
              inputs=[TensorSpec(n, shapes_in[n]) for n in GRAPH_INPUTS],
              outputs=[TensorSpec(n, shapes_out[n]) for n in GRAPH_OUTPUTS]).save(card)
    return card
