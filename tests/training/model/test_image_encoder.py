"""1. Image encoder: coarse / fine maps at the configured strides, in D channels."""
from __future__ import annotations

import pytest
import torch

from crossi2p_training.model.crossi2p_net import ModelConfig
from crossi2p_training.model.image_encoder import ImageEncoder, ImageEncoderConfig


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_maps_have_the_configured_strides_and_width(preset):
    cfg = getattr(ModelConfig, preset)()
    enc = ImageEncoder(cfg.image, cfg.dim).eval()
    with torch.no_grad():
        coarse, fine = enc(torch.randn(2, 3, 64, 192))
    sc, sf = cfg.image.coarse_stride, cfg.image.fine_stride
    assert coarse.shape == (2, cfg.dim, 64 // sc, 192 // sc)
    assert fine.shape == (2, cfg.dim, 64 // sf, 192 // sf)


def test_inconsistent_strides_are_rejected():
    with pytest.raises(ValueError, match="stage_channels"):
        ImageEncoder(ImageEncoderConfig(coarse_stride=16, stage_channels=(32, 64)), 32)
    with pytest.raises(ValueError, match="fine_stride"):
        ImageEncoder(ImageEncoderConfig(coarse_stride=8, stage_channels=(32, 64), fine_stride=8), 32)
