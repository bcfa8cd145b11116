"""Stateless tensor ops (model/ops.py) against brute-force references."""
from __future__ import annotations

import numpy as np
import torch

from crossi2p_training.model import ops


def test_transform_and_project_points():
    T = torch.eye(4)[None].repeat(2, 1, 1)
    T[1, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    p = torch.tensor([[[1.0, 2.0, 5.0], [0.0, 0.0, -1.0]]]).repeat(2, 1, 1)
    q = ops.transform_points(T, p)
    torch.testing.assert_close(q[1, 0], torch.tensor([2.0, 4.0, 8.0]))
    K = torch.tensor([[[100.0, 0, 50], [0, 200.0, 20], [0, 0, 1]]]).repeat(2, 1, 1)
    uv, depth, front = ops.project_points(K, q)
    torch.testing.assert_close(uv[0, 0], torch.tensor([100.0 * 0.2 + 50, 200.0 * 0.4 + 20]))
    assert front.tolist() == [[True, False], [True, True]] and torch.isfinite(uv).all()
    torch.testing.assert_close(depth[1], torch.tensor([8.0, 2.0]))


def test_pairwise_distance_and_knn_match_brute_force():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 50, 3, generator=g) * 10, torch.randn(2, 80, 3, generator=g) * 10
    ref = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(ops.pairwise_sq_distance(a, b), ref, atol=1e-3, rtol=1e-4)
    d, idx = ops.knn(a, b, 5)
    ref_d, ref_i = ref.topk(5, largest=False)
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(d, ref_d, atol=1e-3, rtol=1e-4)


def test_gather_points_any_index_shape():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    idx = torch.tensor([[[0, 4], [1, 1]], [[3, 2], [0, 0]]])
    out = ops.gather_points(x, idx)
    assert out.shape == (2, 2, 2, 3)
    assert torch.equal(out[1, 0, 0], x[1, 3]) and torch.equal(out[0, 0, 1], x[0, 4])


def test_strided_indices_spread_over_any_point_count():
    for n in (256, 300, 1000):
        idx = ops.strided_indices(torch.zeros(1, n, 4), 256)
        assert idx.shape == (256,) and idx[0] == 0 and idx[-1] < n
        assert len(set(idx.tolist())) == 256


def test_farthest_point_sampling_matches_a_numpy_reference():
    g = torch.Generator().manual_seed(1)
    xyz = torch.randn(2, 200, 3, generator=g)
    idx = ops.farthest_point_sample(xyz, 20)
    for b in range(2):
        P = xyz[b].numpy().astype(np.float64)
        chosen = [0]
        dist = ((P - P[0]) ** 2).sum(1)
        for _ in range(19):
            chosen.append(int(dist.argmax()))
            dist = np.minimum(dist, ((P - P[chosen[-1]]) ** 2).sum(1))
        assert idx[b].tolist() == chosen


def test_window_indices_cover_the_superpixel_and_its_margin():
    # coarse map 2 x 3 (stride 16), fine map 8 x 12 (stride 4): ratio 4, margin 1 -> 6 x 6 windows
    cell = torch.tensor([[4, 0]])  # (1, 1) and (0, 0)
    flat, xy, inside = ops.window_indices(cell, 3, 4, 1, 8, 12)
    assert flat.shape == (1, 2, 36)
    # cell (1, 1) spans fine rows/cols 4..7 -> window 3..8; row 8 is below the 8-row map
    assert xy[0, 0, :, 0].min() == 3 and xy[0, 0, :, 0].max() == 8
    assert xy[0, 0, :, 1].min() == 3 and xy[0, 0, :, 1].max() == 8
    assert int(inside[0, 0].sum()) == 30 and not bool(inside[0, 0][xy[0, 0, :, 1] == 8].any())
    # cell (0, 0): the margin falls off the map on the top and the left
    assert int(inside[0, 1].sum()) == 25
    ok = inside[0, 1]
    assert torch.equal(flat[0, 1][ok], (xy[0, 1, ok, 1] * 12 + xy[0, 1, ok, 0]).long())


def test_cell_centers_and_bilinear_sampling_agree():
    feat = torch.randn(1, 5, 4, 6)
    uv = ops.cell_centers_px(4, 6, 4)[None]  # (1, 24, 2)
    assert torch.equal(uv[0, 0], torch.tensor([1.5, 1.5])) and torch.equal(uv[0, 7], torch.tensor([5.5, 5.5]))
    torch.testing.assert_close(ops.bilinear_sample(feat, uv, 4), feat.flatten(2).transpose(1, 2))


def test_sine_position_encoding_shape_and_distinct_positions():
    pe = ops.sine_position_encoding_2d(32, 4, 6)
    assert pe.shape == (32, 4, 6)
    flat = pe.flatten(1).T
    assert torch.cdist(flat, flat).add(torch.eye(24) * 10).min() > 0.1
