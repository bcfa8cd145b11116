"""The PP-OCRv4 detection backbone (rapidocr-onnxruntime's model file) as the image encoder's
stages: the PyTorch module against onnxruntime on the cut graph, freezing, and the whole network
with it exported to ONNX and run in onnxruntime against PyTorch."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch

from crossi2p_training.model.crossi2p_net import CrossI2PNet
from crossi2p_training.model.image_encoder import ImageEncoder
from crossi2p.model_card import GRAPH_INPUTS
from crossi2p_training.model.onnx_graph import CrossI2PGraph, example_inputs, export_onnx
from crossi2p_training.model.pretrained_backbone import (PPOCR_STAGE_CHANNELS, OnnxConvNet, PPOCRBackbone,
                                                         _cut_backbone, ppocr_det_onnx_path)

from conftest import TINY_IMAGE_HW, TINY_POINTS, tiny_config


def _ppocr_config():
    c = tiny_config()
    return dataclasses.replace(c, image=dataclasses.replace(c.image, backbone="ppocrv4_det"))


def test_the_torch_module_computes_what_onnxruntime_computes_on_the_cut_graph():
    cut = _cut_backbone(ppocr_det_onnx_path())
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 192)).astype(np.float32)
    ref = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with torch.no_grad():
        out = OnnxConvNet(cut)(torch.from_numpy(x))
    for stride, c, r, o in zip((4, 8, 16), PPOCR_STAGE_CHANNELS, ref, out):
        assert o.shape == (2, c, 64 // stride, 192 // stride)
        # float32 through 20 convolutions: agree to 1e-5 of the features' scale
        np.testing.assert_allclose(o.numpy(), r, atol=1e-5 * float(np.abs(r).max()))


def test_a_frozen_backbone_gets_no_gradient_and_the_heads_do():
    torch.manual_seed(0)
    enc = ImageEncoder(_ppocr_config().image, 32).train()
    coarse, fine = enc(torch.randn(2, 3, *TINY_IMAGE_HW))
    assert coarse.shape == (2, 32, TINY_IMAGE_HW[0] // 16, TINY_IMAGE_HW[1] // 16)
    assert fine.shape == (2, 32, TINY_IMAGE_HW[0] // 4, TINY_IMAGE_HW[1] // 4)
    (coarse.square().mean() + fine.square().mean()).backward()
    assert all(p.grad is None for p in enc.pretrained.parameters())
    assert enc.fine_proj.weight.grad is not None and enc.fine_proj.weight.grad.abs().sum() > 0
    unfrozen = PPOCRBackbone((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), frozen=False)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_the_input_is_turned_into_the_detectors_bgr_scaling():
    bb = PPOCRBackbone((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rgb01 = torch.tensor([0.9, 0.5, 0.1]).view(1, 3, 1, 1)
    x = (rgb01 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    y = x.flip(1) * bb.in_scale + bb.in_shift
    np.testing.assert_allclose(y.flatten().numpy(), ((rgb01.flip(1) - 0.5) / 0.5).flatten().numpy(), atol=1e-6)


def test_the_network_with_the_pretrained_backbone_exports_and_matches_onnxruntime(tmp_path):
    """The backbone's weights go into the product's graph; onnxruntime's fine pixel features
    agree with PyTorch's to 1e-4 (the backbone's activations reach ~30, against ~1 in the
    project's own encoder; test_onnx_export.py holds the default encoder to 1e-5)."""
    torch.manual_seed(0)
    net = CrossI2PNet(_ppocr_config()).eval()
    path = tmp_path / "ppocr.onnx"
    names = export_onnx(net, path, TINY_IMAGE_HW, TINY_POINTS, with_features=True)
    assert path.stat().st_size > 4 * 209_000          # the backbone's 209k float32 weights are in it
    args = example_inputs(net, TINY_IMAGE_HW, TINY_POINTS, seed=1)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip(names, sess.run(None, dict(zip(GRAPH_INPUTS, (a.numpy() for a in args))))))
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in zip(names, CrossI2PGraph(net, with_features=True)(*args))}
    np.testing.assert_allclose(got["pixel_fine_feat"], ref["pixel_fine_feat"], atol=1e-4)
    np.testing.assert_allclose(got["point_fine_feat"], ref["point_fine_feat"], atol=1e-5)
