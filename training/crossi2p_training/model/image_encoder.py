"""1. Image encoder: a small ResNet (BasicBlocks, written here; no torchvision) with a top-down
feature pyramid, giving

- a **coarse** map at stride ``coarse_stride`` (8 or 16): one superpixel per cell, and
- a **fine** map at stride ``fine_stride`` (2 or 4),

both projected to the shared embedding dimension ``D`` (1x1 convolutions, no normalisation of
the output here; the caller L2-normalises where it needs to).

``backbone: ppocrv4_det`` replaces the residual stages by PP-OCRv4's pretrained text-detection
backbone (``pretrained_backbone.py``; strides 4, 8, 16, frozen unless ``freeze_backbone`` is
false); the pyramid and projections on top are the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ImageEncoderConfig", "ImageEncoder", "BasicBlock"]


@dataclass
class ImageEncoderConfig:
    """Section 1 of ModelConfig: the image encoder."""

    stem_channels: int = 32
    """Channels of the stride-2 stem convolution."""
    stage_channels: tuple[int, ...] = (48, 96, 128)
    """Channels of the residual stages, each halving the resolution (strides 4, 8, 16, ...)."""
    blocks_per_stage: int = 1
    """BasicBlocks per stage (the first one strided)."""
    coarse_stride: int = 16
    """Stride of the coarse (superpixel) map: the last stage's stride."""
    fine_stride: int = 4
    """Stride of the fine (pixel) map, reached top-down through the pyramid."""
    fpn_channels: int = 64
    """Channels of the top-down pyramid."""
    backbone: str = "resnet"
    """``resnet``: the stages above, trained from scratch. ``ppocrv4_det``: the pretrained PP-OCRv4
    detection backbone (needs ``coarse_stride`` 16 and ``fine_stride`` 4 or 8; the stem and stage
    settings are then unused)."""
    freeze_backbone: bool = True
    """With ``ppocrv4_det``: keep the pretrained weights fixed (False: fine-tune them)."""


class BasicBlock(nn.Module):
    """ResNet basic block: 3x3-BN-ReLU-3x3-BN + (projected) shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ImageEncoder(nn.Module):
    """(B, 3, H, W) normalised RGB -> coarse (B, D, H/sc, W/sc), fine (B, D, H/sf, W/sf).

    ``H`` and ``W`` must be multiples of ``coarse_stride``.
    """

    def __init__(self, config: ImageEncoderConfig, dim: int):
        super().__init__()
        c = config
        n_stages = int(round(math.log2(c.coarse_stride))) - 1
        if 2 ** (n_stages + 1) != c.coarse_stride or n_stages != len(c.stage_channels):
            raise ValueError(f"ImageEncoderConfig: coarse_stride {c.coarse_stride} needs "
                             f"{n_stages} stage_channels, got {len(c.stage_channels)}")
        if c.fine_stride not in (2, 4, 8) or c.fine_stride >= c.coarse_stride:
            raise ValueError(f"ImageEncoderConfig: fine_stride must be 2, 4 or 8 and < coarse_stride")
        self.config = c
        if c.backbone == "ppocrv4_det":
            from crossi2p.preprocess import PreprocessConfig

            from .pretrained_backbone import PPOCR_STAGE_CHANNELS, PPOCRBackbone
            if c.coarse_stride != 16 or c.fine_stride not in (4, 8):
                raise ValueError("ImageEncoderConfig: backbone ppocrv4_det gives strides 4, 8, 16: "
                                 f"coarse_stride must be 16 and fine_stride 4 or 8, got {c.coarse_stride} / {c.fine_stride}")
            pre = PreprocessConfig()
            self.pretrained = PPOCRBackbone(pre.mean_rgb, pre.std_rgb, frozen=c.freeze_backbone)
            chans = [0] + list(PPOCR_STAGE_CHANNELS)                   # strides 2 (unused), 4, 8, 16
        elif c.backbone == "resnet":
            self.pretrained = None
            self.stem = nn.Sequential(nn.Conv2d(3, c.stem_channels, 3, 2, 1, bias=False),
                                      nn.BatchNorm2d(c.stem_channels), nn.ReLU())
            stages, cin = [], c.stem_channels
            for cout in c.stage_channels:
                blocks = [BasicBlock(cin, cout, 2)] + [BasicBlock(cout, cout) for _ in range(c.blocks_per_stage - 1)]
                stages.append(nn.Sequential(*blocks))
                cin = cout
            self.stages = nn.ModuleList(stages)
            chans = [c.stem_channels] + list(c.stage_channels)       # channels at strides 2, 4, 8, ...
        else:
            raise ValueError(f"ImageEncoderConfig.backbone: expected resnet or ppocrv4_det, got {c.backbone!r}")
        # top-down pyramid from the coarse level to the fine level
        self.n_up = int(round(math.log2(c.coarse_stride // c.fine_stride)))
        self.top = nn.Conv2d(chans[-1], c.fpn_channels, 1)
        self.lateral = nn.ModuleList([nn.Conv2d(chans[-2 - i], c.fpn_channels, 1) for i in range(self.n_up)])
        self.smooth = nn.ModuleList([_conv_bn_relu(c.fpn_channels, c.fpn_channels) for _ in range(self.n_up)])
        self.coarse_proj = nn.Conv2d(chans[-1], dim, 1)
        self.fine_proj = nn.Conv2d(c.fpn_channels, dim, 1)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        if self.pretrained is not None:
            feats = [None] + self.pretrained(image)                   # strides (2), 4, 8, 16
        else:
            feats = [self.stem(image)]                                # stride 2
            for stage in self.stages:
                feats.append(stage(feats[-1]))                        # strides 4, 8, ...
        coarse = self.coarse_proj(feats[-1])                          # (B, D, H/sc, W/sc)
        y = self.top(feats[-1])
        for i in range(self.n_up):
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = self.smooth[i](y + self.lateral[i](feats[-2 - i]))
        fine = self.fine_proj(y)                                      # (B, D, H/sf, W/sf)
        return coarse, fine
