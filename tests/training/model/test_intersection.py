"""4. In-view heads: one logit per fine point, superpoint and superpixel."""
from __future__ import annotations

import torch

from crossi2p_training.model.intersection import IntersectionConfig, IntersectionHeads


def test_one_logit_per_point_superpoint_and_superpixel():
    heads = IntersectionHeads(IntersectionConfig(hidden=16), 24)
    idx = torch.randint(0, 7, (2, 40, 3))
    w = torch.full((2, 40, 3), 1 / 3)
    out = heads(torch.randn(2, 7, 24), torch.randn(2, 12, 24), torch.randn(2, 40, 24), idx, w)
    assert out.superpoint_logit.shape == (2, 7)
    assert out.point_logit.shape == (2, 40)
    assert out.pixel_logit.shape == (2, 12)
