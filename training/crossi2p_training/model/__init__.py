"""CrossI2PNet: the learned core of crossi2p (PyTorch; never imported by the ROS node).

Public API::

    from crossi2p.preprocess import PreprocessConfig, preprocess_frame      # core, numpy
    from crossi2p_training.model import CrossI2PNet, ModelConfig, export_onnx
    from crossi2p_training.losses import (CrossI2PLoss, LossConfig, ModelGeometry, GradNorm,
                                          build_targets)

    net = CrossI2PNet(ModelConfig.cpu())            # pairs with PreprocessConfig.cpu()
    out = net(image, points, K)                     # CrossI2POutput (every field documented)
    out.T_cam_lidar, out.confidence                 # (B, 4, 4), (B,)

    crit = CrossI2PLoss(LossConfig(), ModelGeometry.from_net(net))
    gradnorm = GradNorm.from_config(crit.config)    # has its own optimiser for its 3 weights
    tg = crit.targets(points, T_cam_lidar_gt, K, image.shape[-2:], out)
    lo = crit(out, tg)                              # .terms, .groups, .stats
    total = gradnorm(lo.groups, net.last_shared_layer())
    total.backward(); optimizer.step()

    export_onnx(net, "model.onnx", image_hw=(128, 384), num_points=4096)

Stages (one module each, wired in crossi2p_net.py; numbered like ModelConfig's sections):
image_encoder, point_encoder, coarse_matching (transformer + dual-softmax), intersection,
fine_matching, pnp; stateless tensor helpers in ops.py; the ONNX wrapper in onnx_graph.py.
"""
from .coarse_matching import CoarseMatchingConfig, CoarseTransformerConfig
from .crossi2p_net import CHECKPOINT_FORMAT, CrossI2PNet, CrossI2POutput, ModelConfig
from .fine_matching import FineMatchingConfig
from .image_encoder import ImageEncoderConfig
from .intersection import IntersectionConfig
from .onnx_graph import CrossI2PGraph, export_onnx
from .pnp import MultiHypothesisPnP, PnPConfig, PnPResult
from .point_encoder import PointEncoderConfig

__all__ = [
    "CrossI2PNet", "CrossI2POutput", "ModelConfig", "CHECKPOINT_FORMAT",
    "ImageEncoderConfig", "PointEncoderConfig", "CoarseTransformerConfig", "IntersectionConfig",
    "CoarseMatchingConfig", "FineMatchingConfig", "PnPConfig",
    "MultiHypothesisPnP", "PnPResult", "CrossI2PGraph", "export_onnx",
]
