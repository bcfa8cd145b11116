"""CrossI2PNet: image + LiDAR points -> coarse-to-fine 2D-3D correspondences -> T_cam_lidar.

The file only wires the stages; each lives in its own module, and the numbered stage comments in
``CrossI2PNet.forward`` mirror the numbered sections of ``ModelConfig``::

    1. image        image_encoder.py     coarse (superpixel) + fine (pixel) maps in D
    2. point        point_encoder.py     superpoints + per-point fine features in D
    3. transformer  coarse_matching.py   intra-modal self- / cross-modal cross-attention
    4. intersection intersection.py      in-view logits of points, superpoints, superpixels
    5. coarse       coarse_matching.py   dual-softmax superpoint-superpixel matches (top-k)
    6. fine         fine_matching.py     point-to-pixel soft-argmax in the matched windows
    7. pnp          pnp.py               multi-hypothesis robust Gauss-Newton PnP

Usage::

    cfg = ModelConfig.cpu()                      # or ModelConfig.paper(), or ModelConfig.from_dict(d)
    net = CrossI2PNet(cfg)
    out = net(image, points, K)                  # tensors from crossi2p.preprocess, batched
    out.T_cam_lidar                              # (B, 4, 4)

The input contract (image size, point count, normalisation) is NOT part of ModelConfig: it is
``crossi2p.preprocess.PreprocessConfig`` (core), which the network does not need to know (image
size and point count are free). The presets pair up: ``ModelConfig.cpu()`` with
``PreprocessConfig.cpu()`` (128x384, 4096 points), ``ModelConfig.paper()`` with
``PreprocessConfig.paper()`` (160x512, 40960 points). Image sides must be multiples of
``image.coarse_stride``; the point count at least ``point.num_fine_points``.

Checkpoints: ``net.checkpoint()`` -> ``{"format": 1, "model_config": dict, "state_dict": ...}``;
``CrossI2PNet.from_checkpoint(obj_or_path)`` rebuilds the model. Checkpoint files are read with
``torch.load(..., weights_only=True)`` only (``read_checkpoint``): tensors, dicts, lists, numbers and
strings; a file that carries other pickled objects is refused with an error naming it. Parameter names are part of the
contract (old checkpoints must keep loading): rename nothing, add new modules under new names.
The ONNX graph is built by ``onnx_graph.py`` from the same module.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossi2p.config_schema import config_from_dict, config_to_dict

from .coarse_matching import CoarseMatcher, CoarseMatchingConfig, CoarseTransformer, CoarseTransformerConfig
from .fine_matching import FineMatcher, FineMatchingConfig
from .image_encoder import ImageEncoder, ImageEncoderConfig
from .intersection import IntersectionConfig, IntersectionHeads
from .pnp import MultiHypothesisPnP, PnPConfig
from .point_encoder import PointEncoder, PointEncoderConfig

__all__ = ["ModelConfig", "CrossI2PNet", "CrossI2POutput", "CHECKPOINT_FORMAT", "read_checkpoint"]

CHECKPOINT_FORMAT = 1


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint file's dict, read with ``torch.load(weights_only=True)``: tensors, dicts, lists,
    tuples, numbers and strings only, so no pickled code runs.

    Raises FileNotFoundError for a missing file and ValueError naming the file for one that holds
    other pickled objects (e.g. a dataclass instance instead of its ``to_dict()``), is not a
    checkpoint, or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: file not found")
    if not zipfile.is_zipfile(path):      # torch.save writes a zip archive (PyTorch >= 1.6)
        what = "an exported ONNX graph" if path.suffix == ".onnx" else "not a zip archive"
        raise ValueError(f"checkpoint {path}: not a PyTorch checkpoint ({what}; expected a .pt written by "
                         f"crossi2p-train)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # torch's own text advises weights_only=False (arbitrary code) or allow-listing: not ours
        why = next((ln for ln in lines if "Unsupported global" in ln), "")
        why = why.split(" Please use")[0]
        raise ValueError(f"checkpoint {path}: holds pickled objects other than tensors and plain containers, "
                         f"which are not loaded (torch.load weights_only=True): {why}") from None
    except Exception as exc:  # torch.load raises many types on a file that is not a checkpoint
        raise ValueError(f"checkpoint {path}: not a readable PyTorch checkpoint "
                         f"({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {path}: expected a dict, found {type(obj).__name__}")
    return obj


@dataclass
class ModelConfig:
    """The whole model, one section per stage (numbers as in ``CrossI2PNet.forward``)."""

    dim: int = 128
    """D: width of the shared embedding (paper 256)."""
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    """1. Image encoder."""
    point: PointEncoderConfig = field(default_factory=PointEncoderConfig)
    """2. Point encoder."""
    transformer: CoarseTransformerConfig = field(default_factory=CoarseTransformerConfig)
    """3. Coarse transformer."""
    intersection: IntersectionConfig = field(default_factory=IntersectionConfig)
    """4. In-view heads."""
    coarse: CoarseMatchingConfig = field(default_factory=CoarseMatchingConfig)
    """5. Coarse matching."""
    fine: FineMatchingConfig = field(default_factory=FineMatchingConfig)
    """6. Fine matching."""
    pnp: PnPConfig = field(default_factory=PnPConfig)
    """7. PnP."""

    # ------------------------------------------------------------------ presets
    @classmethod
    def cpu(cls) -> "ModelConfig":
        """Trains on 2 CPU cores; ~75 ms per frame there with onnxruntime, preprocessing included
        (128x384 image, 4096 points; bench/bench_model_latency.py)."""
        return cls(
            dim=96,
            image=ImageEncoderConfig(stem_channels=24, stage_channels=(32, 64, 128), coarse_stride=16,
                                     fine_stride=4, fpn_channels=48),
            point=PointEncoderConfig(num_fine_points=2048, fine_neighbors=16, num_superpoints=256,
                                     superpoint_neighbors=8, local_channels=(32, 64), fine_channels=64,
                                     superpoint_channels=(96, 128)),
            transformer=CoarseTransformerConfig(num_heads=4, layer_types=("self", "cross") * 2),
            intersection=IntersectionConfig(hidden=64),
            coarse=CoarseMatchingConfig(num_matches=64),
            fine=FineMatchingConfig(points_per_match=8, window_margin=4),
            pnp=PnPConfig(yaw_hypotheses=12),
        )

    @classmethod
    def paper(cls) -> "ModelConfig":
        """Paper-sized (GPU): D = 256, 160x512 image, 40960 points, coarse 1/8, fine 1/2."""
        return cls(
            dim=256,
            image=ImageEncoderConfig(stem_channels=64, stage_channels=(128, 256), coarse_stride=8,
                                     fine_stride=2, fpn_channels=128, blocks_per_stage=2),
            point=PointEncoderConfig(num_fine_points=4096, fine_neighbors=16, num_superpoints=512,
                                     superpoint_neighbors=32, local_channels=(64, 128), fine_channels=128,
                                     superpoint_channels=(192, 256)),
            transformer=CoarseTransformerConfig(num_heads=8, layer_types=("self", "cross") * 4),
            intersection=IntersectionConfig(hidden=128),
            coarse=CoarseMatchingConfig(num_matches=256),
            fine=FineMatchingConfig(points_per_match=16, window_margin=2),
            pnp=PnPConfig(yaw_hypotheses=12),
        )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """Nested dict of builtins (tuples as lists), for checkpoints and YAML model cards."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of ``to_dict``. Missing keys take their defaults (older configs keep
        loading); unknown keys and wrong types are errors naming the key."""
        return config_from_dict(cls, d, "model")


class CrossI2POutput(NamedTuple):
    """Everything the losses, the evaluators and the export need (``B`` first everywhere).

    Sizes: ``M1`` fine points, ``M`` superpoints, ``k2`` members per superpoint,
    ``P = Hc * Wc`` superpixels (row-major), ``Kc`` coarse matches, ``C = Kc * kf``
    correspondences, ``H' `` PnP hypotheses. Features in the shared embedding are L2-normalised.
    """

    # shared embedding (alignment losses)
    pixel_fine_feat: Tensor
    """(B, D, Hf, Wf) fine pixel features (stride ``image.fine_stride``)."""
    point_fine_feat: Tensor
    """(B, M1, D) fine point features."""
    superpixel_feat: Tensor
    """(B, P, D) superpixel features after the transformer."""
    superpoint_feat: Tensor
    """(B, M, D) superpoint features after the transformer."""
    # point geometry (targets)
    fine_index: Tensor
    """(B, M1) int64 rows of the input points used as fine points."""
    fine_xyz: Tensor
    """(B, M1, 3) fine points (LiDAR frame)."""
    superpoint_index: Tensor
    """(B, M) int64 fine-point rows of the superpoint centres."""
    superpoint_xyz: Tensor
    """(B, M, 3) superpoint centres (LiDAR frame)."""
    superpoint_members: Tensor
    """(B, M, k2) int64 fine-point rows of each superpoint's members, nearest first."""
    # in-view logits
    point_inview_logit: Tensor
    """(B, M1) logit of P(fine point projects into the image)."""
    superpoint_inview_logit: Tensor
    """(B, M) logit of P(superpoint centre projects into the image)."""
    pixel_inview_logit: Tensor
    """(B, P) logit of P(superpixel holds a LiDAR return)."""
    # coarse matching
    coarse_log_conf: Tensor
    """(B, M, P) log dual-softmax confidence."""
    match_superpoint: Tensor
    """(B, Kc) int64 matched superpoints."""
    match_superpixel: Tensor
    """(B, Kc) int64 their superpixels (row-major cell index)."""
    match_score: Tensor
    """(B, Kc) selection log-score of the coarse matches."""
    # correspondences (fine matching)
    corr_point_index: Tensor
    """(B, C) int64 fine-point rows of the correspondences."""
    corr_xyz: Tensor
    """(B, C, 3) correspondence points (LiDAR frame)."""
    corr_uv: Tensor
    """(B, C, 2) correspondence pixels (preprocessed image)."""
    corr_weight: Tensor
    """(B, C) PnP weights in [0, 1]."""
    corr_window_center_uv: Tensor
    """(B, C, 2) centre pixel of each correspondence's search window."""
    # pose
    T_cam_lidar: Tensor
    """(B, 4, 4) estimated LiDAR -> camera transform."""
    confidence: Tensor
    """(B,) weighted fraction of correspondences within the PnP inlier threshold."""
    inlier_ratio: Tensor
    """(B,) unweighted fraction of correspondences within the PnP inlier threshold."""
    hypothesis_cost: Tensor
    """(B, H') robust cost of each PnP hypothesis after its Gauss-Newton iterations."""
    corr_residual_px: Tensor
    """(B, C) reprojection error of each correspondence under ``T_cam_lidar`` (pixels)."""


class CrossI2PNet(nn.Module):
    """See the module docstring. ``forward(image, points, K, T_prior=None, prior_weight=None)``."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = c = config or ModelConfig()
        self.image_encoder = ImageEncoder(c.image, c.dim)
        self.point_encoder = PointEncoder(c.point, c.dim)
        self.transformer = CoarseTransformer(c.transformer, c.dim)
        self.intersection = IntersectionHeads(c.intersection, c.dim)
        self.coarse_matcher = CoarseMatcher(c.coarse)
        self.fine_matcher = FineMatcher(c.fine, c.image.coarse_stride, c.image.fine_stride)
        self.pnp = MultiHypothesisPnP(c.pnp)
        if c.fine.points_per_match > c.point.superpoint_neighbors:
            raise ValueError("ModelConfig: fine.points_per_match exceeds point.superpoint_neighbors")
        if c.coarse.num_matches > c.point.num_superpoints:
            raise ValueError("ModelConfig: coarse.num_matches exceeds point.num_superpoints")

    def forward(self, image: Tensor, points: Tensor, K: Tensor, T_prior: Tensor | None = None,
                prior_weight: Tensor | None = None) -> CrossI2POutput:
        """
        Args:
            image: (B, 3, H, W) normalised image (crossi2p.preprocess), H, W multiples of the
                coarse stride.
            points: (B, N, 4) LiDAR-frame ``x, y, z, intensity``, ``N >= point.num_fine_points``.
            K: (B, 3, 3) pinhole intrinsics of ``image``.
            T_prior: optional (B, 4, 4) prior ``T_cam_lidar`` (refine mode): one more PnP hypothesis.
            prior_weight: optional (B,) 1 where ``T_prior`` is to be used, 0 where not (default 1).
        """
        # 1. image encoder: superpixel (coarse) and pixel (fine) maps
        px_coarse, px_fine = self.image_encoder(image)
        Wc = px_coarse.shape[-1]
        # 2. point encoder: fine points, superpoints and their features
        pts = self.point_encoder(points)
        # 3. coarse transformer: intra-modal self- and cross-modal cross-attention
        sp, px = self.transformer(pts.superpoint_feat, pts.superpoint_xyz, px_coarse)
        # 4. in-view heads
        inview = self.intersection(sp, px, pts.fine_feat, pts.interp_index, pts.interp_weight)
        # 5. coarse matching (dual-softmax, top-k)
        sp, px = F.normalize(sp, dim=-1), F.normalize(px, dim=-1)
        coarse = self.coarse_matcher(sp, px, inview.superpoint_logit, inview.pixel_logit)
        # 6. fine matching in the matched superpixels' windows
        fine_map, fine_feat = F.normalize(px_fine, dim=1), F.normalize(pts.fine_feat, dim=-1)
        fine = self.fine_matcher(fine_map, fine_feat, pts.fine_xyz, pts.superpoint_members,
                                 coarse.superpoint, coarse.superpixel, coarse.score,
                                 inview.point_logit, Wc)
        # 7. PnP
        pose = self.pnp(fine.xyz, fine.uv, fine.weight, K, T_prior, prior_weight)
        return CrossI2POutput(
            fine_map, fine_feat, px, sp,
            pts.fine_index, pts.fine_xyz, pts.superpoint_index, pts.superpoint_xyz, pts.superpoint_members,
            inview.point_logit, inview.superpoint_logit, inview.pixel_logit,
            coarse.log_conf, coarse.superpoint, coarse.superpixel, coarse.score,
            fine.point_index, fine.xyz, fine.uv, fine.weight, fine.window_center_uv,
            pose.T_cam_lidar, pose.confidence, pose.inlier_ratio, pose.hypothesis_cost, pose.residual_px)

    # ------------------------------------------------------------------ helpers
    def last_shared_layer(self) -> Tensor:
        """The parameter GradNorm measures task gradients on (see point_encoder.py)."""
        return self.point_encoder.last_shared_layer()

    def checkpoint(self, **extra) -> dict:
        """``{"format", "model_config", "state_dict", **extra}`` for ``torch.save``."""
        return {"format": CHECKPOINT_FORMAT, "model_config": self.config.to_dict(),
                "state_dict": self.state_dict(), **extra}

    @classmethod
    def from_checkpoint(cls, ckpt, map_location="cpu") -> "CrossI2PNet":
        """Rebuild from ``checkpoint()``'s dict or a path to it (``read_checkpoint``: weights only)."""
        if not isinstance(ckpt, dict):
            ckpt = read_checkpoint(ckpt, map_location=map_location)
        if ckpt.get("format", 0) > CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {ckpt.get('format')} is newer than this code "
                             f"({CHECKPOINT_FORMAT})")
        net = cls(ModelConfig.from_dict(ckpt["model_config"]))
        net.load_state_dict(ckpt["state_dict"])
        return net

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
