"""The whole CrossI2PNet (encoders, matching and PnP) exported to ONNX (opset 17, dynamo=False)
and run in onnxruntime, against PyTorch, with a point count other than the traced one."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from scipy.spatial.transform import Rotation

from crossi2p.model_card import GRAPH_INPUTS, GRAPH_OUTPUTS
from crossi2p_training.model.crossi2p_net import CrossI2PNet
from crossi2p_training.model.onnx_graph import CrossI2PGraph, compact_onnx, count_nodes, example_inputs, export_onnx
from crossi2p_training.model.pnp import MultiHypothesisPnP, PnPConfig

from conftest import TINY_IMAGE_HW, TINY_POINTS, tiny_config
from test_pnp import make_case

FORBIDDEN_OPS = {"SVD", "Eig", "Inverse", "Det"}  # Det is fine in ONNX, but we promise none


def _session(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = CrossI2PNet(tiny_config()).eval()
    path = tmp_path_factory.mktemp("onnx") / "crossi2p.onnx"
    names = export_onnx(net, path, TINY_IMAGE_HW, TINY_POINTS, with_features=True)
    return net, path, names


def test_graph_has_the_runtime_interface_and_only_standard_ops(exported):
    net, path, names = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == list(GRAPH_INPUTS)
    assert [o.name for o in model.graph.output] == list(GRAPH_OUTPUTS) + ["point_fine_feat", "pixel_fine_feat"]
    ops_used = {n.op_type for n in model.graph.node}
    assert not ops_used & FORBIDDEN_OPS
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)           # no custom ops
    points_dims = model.graph.input[1].type.tensor_type.shape.dim
    assert points_dims[1].dim_param == "num_points"


@pytest.mark.parametrize("num_points, batch", [(TINY_POINTS, 1), (TINY_POINTS + 317, 1), (2 * TINY_POINTS, 2)])
def test_onnxruntime_matches_pytorch_for_other_point_counts(exported, num_points, batch):
    """Features to 1e-5, pixels to 1e-3 px, weights to 1e-6; pose to 1e-3 rad and 1 mm plus
    5e-5 of the translation's length. The slack is for this random-weight network only: its
    matches are garbage, its PnP problem nearly degenerate (translations of tens to hundreds of
    metres), and float32 rounding differences between the runtimes (5e-5 px in the pixels) move
    such a pose by up to ~2 mm. On well-posed input the exported PnP agrees to 1e-5 rad / 0.1 mm
    (below); a network trained for a few minutes on simulated frames agreed to 3e-6 rad / 0.08 mm."""
    net, path, names = exported
    args = example_inputs(net, TINY_IMAGE_HW, num_points, batch=batch, seed=num_points)
    got = dict(zip(names, _session(path).run(None, dict(zip(GRAPH_INPUTS, (a.numpy() for a in args))))))
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in zip(names, CrossI2PGraph(net, with_features=True)(*args))}
    np.testing.assert_allclose(got["point_fine_feat"], ref["point_fine_feat"], atol=1e-5)
    np.testing.assert_allclose(got["pixel_fine_feat"], ref["pixel_fine_feat"], atol=1e-5)
    np.testing.assert_allclose(got["corr_points"], ref["corr_points"], atol=1e-5)
    np.testing.assert_allclose(got["corr_uv"], ref["corr_uv"], atol=1e-3)
    np.testing.assert_allclose(got["corr_weight"], ref["corr_weight"], atol=1e-6)
    np.testing.assert_allclose(got["confidence"], ref["confidence"], atol=1e-3)
    for b in range(batch):
        D = np.linalg.inv(got["T_cam_lidar"][b].astype(np.float64)) @ ref["T_cam_lidar"][b].astype(np.float64)
        assert Rotation.from_matrix(D[:3, :3]).magnitude() < 1e-3
        assert np.linalg.norm(D[:3, 3]) < 1e-3 + 5e-5 * np.linalg.norm(ref["T_cam_lidar"][b, :3, 3])


class _PnPGraph(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pnp = MultiHypothesisPnP(PnPConfig())

    def forward(self, xyz, uv, w, K):
        r = self.pnp(xyz, uv, w, K)
        return r.T_cam_lidar, r.confidence


def _export_pnp(path, X, uv, w, K) -> None:
    """The PnP alone to ONNX (legacy exporter, opset 17), the correspondence count dynamic."""
    with torch.no_grad():
        torch.onnx.export(_PnPGraph().eval(), (X, uv, w, K), str(path), input_names=["xyz", "uv", "w", "K"],
                          output_names=["T", "conf"], opset_version=17, dynamo=False,
                          dynamic_axes={"xyz": {1: "c"}, "uv": {1: "c"}, "w": {1: "c"}})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_exported_pnp_recovers_well_posed_poses_like_pytorch(tmp_path):
    """The PnP alone (dynamic correspondence count): 30 % outliers, any yaw, +-10 m."""
    X, uv, w, K, _ = make_case(0, n=200, outlier_ratio=0.3, dtype=torch.float32)
    path = tmp_path / "pnp.onnx"
    _export_pnp(path, X, uv, w, K)
    sess = _session(path)
    for seed in range(1, 6):
        X, uv, w, K, T = make_case(seed, n=150 + 40 * seed, outlier_ratio=0.3, dtype=torch.float32)
        T_onnx = sess.run(None, {"xyz": X.numpy(), "uv": uv.numpy(), "w": w.numpy(), "K": K.numpy()})[0][0]
        with torch.no_grad():
            T_torch = _PnPGraph()(X, uv, w, K)[0][0].double().numpy()
        for T_est in (T_onnx.astype(np.float64), T_torch):
            D = np.linalg.inv(T_est) @ T
            assert Rotation.from_matrix(D[:3, :3]).magnitude() < 1e-4 and np.linalg.norm(D[:3, 3]) < 1e-4
        D = np.linalg.inv(T_onnx.astype(np.float64)) @ T_torch
        assert Rotation.from_matrix(D[:3, :3]).magnitude() < 1e-5 and np.linalg.norm(D[:3, 3]) < 1e-4


def _subgraph_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from ((n, a.g) for n in a.g.node)
                yield from _subgraph_nodes(a.g)


def test_exported_graph_is_compact(exported):
    """Farthest point sampling and the PnP's iterations are ONNX Loop nodes (one iteration per
    body), not unrolled: the whole network stays under 2,000 nodes, subgraphs included (the
    unrolled graph of the cpu model had 16,707), and no loop body recomputes a constant."""
    net, path, names = exported
    model = onnx.load(str(path))
    assert count_nodes(model) < 2000
    # FPS (4 steps per iteration + the remainder), translation IRLS, 2 Gauss-Newton stages
    assert [n.op_type for n in model.graph.node].count("Loop") == 5
    outer = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                          for o in n.output}
    for node, body in _subgraph_nodes(model.graph):
        consts = outer | {i.name for i in body.initializer}
        assert node.op_type == "Identity" or not all(x in consts for x in node.input if x), node


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compaction_changes_no_output(tmp_path):
    """compact_onnx (onnxslim + folding inside loop bodies) computes exactly what the exporter's
    graph computes: the PnP alone, both graphs in onnxruntime."""
    X, uv, w, K, _ = make_case(4, n=120, outlier_ratio=0.3, dtype=torch.float32)
    raw = tmp_path / "raw.onnx"
    _export_pnp(raw, X, uv, w, K)
    compact = compact_onnx(onnx.load(str(raw)))
    onnx.checker.check_model(compact)
    assert count_nodes(compact) < count_nodes(onnx.load(str(raw)))
    onnx.save(compact, str(tmp_path / "compact.onnx"))
    for seed in (5, 6):
        X, uv, w, K, _ = make_case(seed, n=90 + 30 * seed, outlier_ratio=0.3, dtype=torch.float32)
        feed = {"xyz": X.numpy(), "uv": uv.numpy(), "w": w.numpy(), "K": K.numpy()}
        a = _session(raw).run(None, feed)
        b = _session(tmp_path / "compact.onnx").run(None, feed)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("compact", [False, True])
def test_weights_recovered_from_a_graph_reproduce_the_network(tmp_path, compact):
    """weights_from_onnx reads a CrossI2PNet state_dict back from a legacy-exporter graph (Linear
    weights stored transposed, BatchNorm folded into the convolutions), uncompacted (as the graphs
    shipped before the compact export) or compacted (onnxslim keeps the node names it relies on):
    the rebuilt network gives the original's outputs (eval mode)."""
    from crossi2p_training.weights_from_onnx import state_dict_from_onnx

    torch.manual_seed(1)
    net = CrossI2PNet(tiny_config()).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.2, 0.2)
    path = tmp_path / "legacy.onnx"
    export_onnx(net, path, TINY_IMAGE_HW, TINY_POINTS, compact=compact)
    sd, report = state_dict_from_onnx(onnx.load(str(path)), tiny_config(), TINY_IMAGE_HW, TINY_POINTS)
    assert report["conv+BatchNorm folded"] == 24 and report["transposed"] > 0
    again = CrossI2PNet(tiny_config())
    again.load_state_dict(sd)
    again.eval()
    args = example_inputs(net, TINY_IMAGE_HW, TINY_POINTS, seed=7)
    with torch.no_grad():
        ref, got = CrossI2PGraph(net)(*args), CrossI2PGraph(again)(*args)
    np.testing.assert_allclose(got[4].numpy(), ref[4].numpy(), atol=1e-3)       # corr_uv (pixels)
    np.testing.assert_allclose(got[5].numpy(), ref[5].numpy(), atol=1e-5)       # corr_weight
    np.testing.assert_allclose(got[3].numpy(), ref[3].numpy(), atol=1e-5)       # corr_points
