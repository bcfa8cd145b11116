"""2. Point encoder: shapes and index contracts, and invariance to horizontal shifts."""
from __future__ import annotations

import torch

from crossi2p_training.model.point_encoder import PointEncoder


def test_outputs_have_the_documented_shapes_and_indices(tiny_cfg, tiny_inputs):
    _, points, _ = tiny_inputs
    c = tiny_cfg.point
    enc = PointEncoder(c, tiny_cfg.dim).eval()
    with torch.no_grad():
        o = enc(points)
    B, N = points.shape[:2]
    M1, M, k2 = c.num_fine_points, c.num_superpoints, c.superpoint_neighbors
    assert o.fine_index.shape == (B, M1) and int(o.fine_index.max()) < N
    torch.testing.assert_close(o.fine_xyz, torch.gather(points[..., :3], 1, o.fine_index[..., None].expand(-1, -1, 3)))
    assert o.fine_feat.shape == (B, M1, tiny_cfg.dim)
    assert o.superpoint_index.shape == (B, M) and int(o.superpoint_index.max()) < M1
    assert all(len(set(r.tolist())) == M for r in o.superpoint_index)        # FPS picks distinct points
    assert o.superpoint_members.shape == (B, M, k2)
    assert torch.equal(o.superpoint_members[..., 0], o.superpoint_index)     # nearest member = centre
    assert o.superpoint_feat.shape == (B, M, tiny_cfg.dim)
    torch.testing.assert_close(o.interp_weight.sum(-1), torch.ones(B, M1))


def test_features_do_not_depend_on_where_the_cloud_is_horizontally(tiny_cfg, tiny_inputs):
    """The global protocol shifts the cloud by up to 10 m: no absolute x, y may enter."""
    _, points, _ = tiny_inputs
    enc = PointEncoder(tiny_cfg.point, tiny_cfg.dim).eval()
    shifted = points.clone()
    shifted[..., 0] += 7.0
    shifted[..., 1] -= 9.0
    with torch.no_grad():
        a, b = enc(points), enc(shifted)
    assert torch.equal(a.superpoint_index, b.superpoint_index)
    torch.testing.assert_close(a.fine_feat, b.fine_feat, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(a.superpoint_feat, b.superpoint_feat, atol=2e-4, rtol=1e-3)
