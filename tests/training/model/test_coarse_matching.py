"""3. Coarse transformer and 5. dual-softmax coarse matching."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from crossi2p_training.model.coarse_matching import (CoarseMatcher, CoarseMatchingConfig, CoarseTransformer,
                                                     CoarseTransformerConfig)


def test_transformer_keeps_shapes_and_mixes_the_modalities():
    torch.manual_seed(0)
    tr = CoarseTransformer(CoarseTransformerConfig(num_heads=4, layer_types=("self", "cross")), 32).eval()
    sp, xyz, px = torch.randn(2, 10, 32), torch.randn(2, 10, 3) * 5, torch.randn(2, 32, 3, 4)
    with torch.no_grad():
        a_sp, a_px = tr(sp, xyz, px)
        b_sp, _ = tr(sp, xyz, px + torch.randn_like(px))
    assert a_sp.shape == (2, 10, 32) and a_px.shape == (2, 12, 32)
    assert not torch.allclose(a_sp, b_sp)  # cross-attention: superpoints see the image


def test_point_positional_encoding_ignores_yaw_and_horizontal_shift():
    tr = CoarseTransformer(CoarseTransformerConfig(point_pe="height_radius"), 32)
    xyz = torch.randn(1, 20, 3) * 10
    a = 0.7
    R = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    moved = xyz @ R.T + torch.tensor([6.0, -8.0, 0.0])
    torch.testing.assert_close(tr.point_encoding_inputs(xyz), tr.point_encoding_inputs(moved), atol=1e-5, rtol=1e-5)


def test_dual_softmax_is_the_product_of_row_and_column_softmax():
    torch.manual_seed(1)
    sp, px = F.normalize(torch.randn(2, 6, 8), dim=-1), F.normalize(torch.randn(2, 5, 8), dim=-1)
    m = CoarseMatcher(CoarseMatchingConfig(temperature=0.2, num_matches=3, inview_gating=False))
    out = m(sp, px, torch.zeros(2, 6), torch.zeros(2, 5))
    s = sp @ px.transpose(1, 2) / 0.2
    torch.testing.assert_close(out.log_conf.exp(), s.softmax(2) * s.softmax(1))
    best, q = out.log_conf.max(2)
    top = best.topk(3, dim=1)
    assert torch.equal(out.superpoint, top.indices) and torch.equal(out.superpixel, torch.gather(q, 1, top.indices))
    torch.testing.assert_close(out.score, top.values)


def test_inview_gating_keeps_out_of_view_superpoints_out_of_the_matches():
    sp = F.normalize(torch.randn(1, 6, 8), dim=-1)
    px = sp[:, :5].clone()                         # superpoint j matches superpixel j perfectly
    m = CoarseMatcher(CoarseMatchingConfig(temperature=0.05, num_matches=2))
    logit = torch.tensor([[-10.0, -10.0, -10.0, 5.0, 5.0, -10.0]])
    out = m(sp, px, logit, torch.zeros(1, 5))
    assert sorted(out.superpoint[0].tolist()) == [3, 4] and sorted(out.superpixel[0].tolist()) == [3, 4]
