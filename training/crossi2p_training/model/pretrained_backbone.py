"""A pretrained image backbone for the image encoder: PP-OCRv4's text-detection backbone.

Issue 14 asks for image features that know real images, with weights that ship inside a
well-kept wheel (licence BSD, MIT or Apache), nothing downloaded at run time, and the weights in
the exported ONNX graph. ``rapidocr-onnxruntime`` (Apache-2.0) carries PaddleOCR's PP-OCRv4
detection model (``models/ch_PP-OCRv4_det_infer.onnx``, 4.7 MB, Apache-2.0): a PP-LCNetV3
backbone trained on real photographs (scene text: signs, plates, shop fronts) with a DB head.
Only its backbone is taken, up to the stride-16 stage:

- the graph is cut at the three stage outputs the detector's neck reads (strides 4, 8 and 16;
  48, 96 and 192 channels at the wheel's version), with ``onnx.utils.Extractor``;
- the cut graph is run as a PyTorch module (``OnnxConvNet``), so it trains (when not frozen) and
  exports with the rest of the network: its weights go into the product's ONNX graph and the
  runtime needs no extra wheel.

``OnnxConvNet`` is written here, for the six operators the cut graph holds (Conv,
BatchNormalization, Add, Mul, Div, Clip): the installable converters (``onnx2torch``,
``onnx2pytorch``) import torchvision at start-up, and no torchvision build for the project's
CPU torch 2.13.0 is installable here (the PyPI wheel links the CUDA libraries). The rapidocr
wheel is installed without its dependencies (only the model file is used); importing its package
would need them, so the file is found with ``importlib.util.find_spec``.

The detector was trained on BGR images scaled as ``(x / 255 - 0.5) / 0.5``; the network's input
is ImageNet-normalised RGB (``PreprocessConfig``), so a fixed per-channel affine map with a
channel swap comes first, inside the module (and so inside the graph).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PPOCR_STAGE_CHANNELS", "ppocr_det_onnx_path", "OnnxConvNet", "PPOCRBackbone"]

PPOCR_STAGE_CHANNELS = (48, 96, 192)
"""Channels of the PP-OCRv4 detection backbone at strides 4, 8 and 16."""
_NECK_INPUT_WEIGHTS = ("conv2d_131.w_0", "conv2d_132.w_0", "conv2d_133.w_0")
"""The neck's first 1x1 convolutions on the stride-4, 8 and 16 stage outputs (their inputs are
the cut points), as named in the wheel's graph."""


def ppocr_det_onnx_path() -> Path:
    """Path of ``ch_PP-OCRv4_det_infer.onnx`` inside the installed ``rapidocr-onnxruntime`` wheel.

    Raises:
        FileNotFoundError: the wheel is not installed, or holds no such file.
    """
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("image backbone ppocrv4_det: the rapidocr-onnxruntime wheel is not installed "
                                "(pip install --no-deps rapidocr-onnxruntime==1.4.4)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "ch_PP-OCRv4_det_infer.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"image backbone ppocrv4_det: {path} is missing from the rapidocr-onnxruntime wheel")
    return path


def _cut_backbone(path: Path):
    """The detector graph cut at the stride-4, 8 and 16 stage outputs (an ``onnx.ModelProto``)."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))  # the Extractor needs value_info
    outputs = []
    for w in _NECK_INPUT_WEIGHTS:
        convs = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] == w]
        if len(convs) != 1:
            raise ValueError(f"image backbone ppocrv4_det: {path.name} has no single Conv on {w}; "
                             "expected rapidocr-onnxruntime 1.4.4's PP-OCRv4 detection graph")
        outputs.append(convs[0].input[0])
    return Extractor(model).extract_model([model.graph.input[0].name], outputs)


class OnnxConvNet(nn.Module):
    """An ONNX graph of Conv / BatchNormalization / Add / Mul / Div / Clip nodes as a PyTorch module.

    Convolution weights and biases, BatchNorm scales and shifts and the graph's other learnable
    constants (PP-LCNetV3's learnable affine blocks) become parameters; BatchNorm statistics and
    the exporter's helper constants (``p2o.helper.*``: clip bounds, the 6 of hard-swish) are
    buffers. BatchNorm always uses its stored statistics (the backbone is a pretrained feature
    extractor). Input: the graph's single 4-D input; output: its outputs, in order.

    Raises:
        ValueError: a node whose operator is not one of the six (names it), or a Conv with
            asymmetric padding.
    """

    OPS = ("Constant", "Conv", "BatchNormalization", "Add", "Mul", "Div", "Clip")

    def __init__(self, model):
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        self.input_name = graph.input[0].name
        self.output_names = [o.name for o in graph.output]
        self.nodes = []
        stats = {n.input[k] for n in graph.node if n.op_type == "BatchNormalization" for k in (3, 4)}
        self._key = {}
        self.weights = nn.ParameterDict()
        for n in graph.node:
            if n.op_type not in self.OPS:
                raise ValueError(f"OnnxConvNet: node {n.name or n.output[0]}: operator {n.op_type} is not one of {self.OPS}")
            if n.op_type == "Constant":
                value = torch.from_numpy(numpy_helper.to_array(n.attribute[0].t).copy())
                key = "c%d" % len(self._key)
                self._key[n.output[0]] = key
                if n.output[0] in stats or n.output[0].startswith("p2o.helper") or not value.is_floating_point():
                    self.register_buffer(key, value)
                else:
                    self.weights[key] = nn.Parameter(value.float())
                continue
            attrs = {a.name: _attribute(a) for a in n.attribute}
            if n.op_type == "Conv":
                pads = attrs.get("pads", [0, 0, 0, 0])
                if pads[:2] != pads[2:]:
                    raise ValueError(f"OnnxConvNet: Conv {n.name}: asymmetric pads {pads}")
                attrs["pads"] = pads[:2]
            self.nodes.append((n.op_type, list(n.input), n.output[0], attrs))

    def _value(self, env: dict, name: str) -> Tensor:
        if name in env:
            return env[name]
        key = self._key[name]
        return self.weights[key] if key in self.weights else getattr(self, key)

    def forward(self, x: Tensor) -> list[Tensor]:
        env = {self.input_name: x}
        for op, ins, out, a in self.nodes:
            v = [self._value(env, i) if i else None for i in ins]
            if op == "Conv":
                env[out] = F.conv2d(v[0], v[1], v[2] if len(v) > 2 else None, a.get("strides", [1, 1]),
                                    a["pads"], a.get("dilations", [1, 1]), a.get("group", 1))
            elif op == "BatchNormalization":
                env[out] = F.batch_norm(v[0], v[3], v[4], v[1], v[2], False, 0.0, a.get("epsilon", 1e-5))
            elif op == "Add":
                env[out] = v[0] + v[1]
            elif op == "Mul":
                env[out] = v[0] * v[1]
            elif op == "Div":
                env[out] = v[0] / v[1]
            else:  # Clip
                env[out] = torch.clamp(v[0], v[1] if len(v) > 1 else None, v[2] if len(v) > 2 else None)
        return [env[o] for o in self.output_names]


def _attribute(a):
    from onnx import helper
    return helper.get_attribute_value(a)


class PPOCRBackbone(nn.Module):
    """(B, 3, H, W) ImageNet-normalised RGB -> features at strides 4, 8, 16:
    (B, 48, H/4, W/4), (B, 96, H/8, W/8), (B, 192, H/16, W/16).

    ``frozen``: no gradient reaches the backbone's weights.

    Raises:
        FileNotFoundError: the rapidocr-onnxruntime wheel is not installed.
    """

    def __init__(self, mean_rgb: tuple[float, float, float], std_rgb: tuple[float, float, float],
                 frozen: bool = True):
        super().__init__()
        self.net = OnnxConvNet(_cut_backbone(ppocr_det_onnx_path()))
        # ImageNet-normalised RGB -> the detector's BGR (x - 0.5) / 0.5: y_c = a_c * x_{2-c} + b_c
        mean, std = torch.tensor(mean_rgb).flip(0), torch.tensor(std_rgb).flip(0)
        self.register_buffer("in_scale", (std / 0.5).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((mean - 0.5) / 0.5).view(1, 3, 1, 1), persistent=False)
        if frozen:
            for p in self.net.parameters():
                p.requires_grad_(False)

    def forward(self, image: Tensor) -> list[Tensor]:
        return self.net(image.flip(1) * self.in_scale + self.in_shift)
