"""6. Fine matching: soft-argmax inside the matched superpixel's window."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from crossi2p_training.model.fine_matching import FineMatcher, FineMatchingConfig


def test_soft_argmax_lands_on_the_matching_fine_pixel():
    # coarse stride 16, fine stride 4 (ratio 4); coarse map 2 x 3 -> fine map 8 x 12
    D, Hf, Wf = 16, 8, 12
    torch.manual_seed(0)
    fine_map = F.normalize(torch.randn(1, D, Hf, Wf), dim=1)
    # fine point 0 looks exactly like fine pixel (row 6, col 5); point 1 like (row 5, col 7)
    fine_feat = torch.stack([fine_map[0, :, 6, 5], fine_map[0, :, 5, 7], torch.zeros(D)])[None]
    fine_xyz = torch.randn(1, 3, 3)
    members = torch.tensor([[[0, 1], [2, 2]]])                  # superpoint 0 = points 0, 1
    fm = FineMatcher(FineMatchingConfig(points_per_match=2, window_margin=2, temperature=0.005), 16, 4)
    out = fm(fine_map, fine_feat, fine_xyz, members, torch.tensor([[0]]), torch.tensor([[4]]),  # cell (1, 1)
             torch.tensor([[0.0]]), torch.full((1, 3), 20.0), coarse_width=3)
    # fine cell (x, y) has its centre at image pixel (x + 0.5) * 4 - 0.5
    torch.testing.assert_close(out.uv[0], torch.tensor([[5 * 4 + 1.5, 6 * 4 + 1.5], [7 * 4 + 1.5, 5 * 4 + 1.5]]),
                               atol=0.05, rtol=0)
    assert bool((out.fine_conf > 0.9).all()) and bool((out.weight > 0.9).all())
    torch.testing.assert_close(out.window_center_uv[0], torch.tensor([[23.5, 23.5], [23.5, 23.5]]))
    assert out.point_index.tolist() == [[0, 1]]
    torch.testing.assert_close(out.xyz[0], fine_xyz[0, :2])


def test_pixels_outside_the_window_are_never_chosen():
    D = 8
    fine_map = torch.zeros(1, D, 8, 12)
    fine_map[0, 0, 0, 11] = 1.0                                  # the only match: far from cell (1, 0)
    fine_map[0, 1] = 1.0
    fine_map = F.normalize(fine_map + 1e-3, dim=1)
    fine_feat = F.normalize(torch.eye(D)[:1][None], dim=-1)
    fm = FineMatcher(FineMatchingConfig(points_per_match=1, window_margin=1, temperature=0.01), 16, 4)
    out = fm(fine_map, fine_feat, torch.zeros(1, 1, 3), torch.zeros(1, 1, 1, dtype=torch.long),
             torch.tensor([[0]]), torch.tensor([[3]]), torch.tensor([[0.0]]), torch.zeros(1, 1), coarse_width=3)
    u, v = out.uv[0, 0].tolist()
    assert -0.5 <= u <= 5 * 4 and 2 * 4 <= v <= 8 * 4       # window of cell (1, 0): cols 0..4, rows 3..8


def test_disabled_fine_stage_gives_one_coarse_correspondence_per_match():
    """The coarse-only ablation: superpoint centre at its superpixel's centre pixel."""
    D, Hf, Wf = 16, 8, 12
    torch.manual_seed(0)
    fine_map = F.normalize(torch.randn(1, D, Hf, Wf), dim=1)
    fine_feat = F.normalize(torch.randn(1, 3, D), dim=-1)
    fine_xyz = torch.randn(1, 3, 3)
    members = torch.tensor([[[0, 1], [2, 1]]])
    fm = FineMatcher(FineMatchingConfig(points_per_match=2, enabled=False), 16, 4)
    out = fm(fine_map, fine_feat, fine_xyz, members, torch.tensor([[0, 1]]), torch.tensor([[4, 2]]),
             torch.log(torch.tensor([[0.5, 1.0]])), torch.zeros(1, 3), coarse_width=3)
    assert out.point_index.tolist() == [[0, 2]]                         # the centres only
    torch.testing.assert_close(out.xyz[0], fine_xyz[0, [0, 2]])
    # cell 4 = (row 1, col 1) -> centre (23.5, 23.5); cell 2 = (row 0, col 2) -> (39.5, 7.5)
    torch.testing.assert_close(out.uv[0], torch.tensor([[23.5, 23.5], [39.5, 7.5]]))
    torch.testing.assert_close(out.weight[0], torch.tensor([0.25, 0.5]))  # exp(score) * sigmoid(0)
    torch.testing.assert_close(out.fine_conf, torch.ones(1, 2))


def test_peak_radius_mean_ignores_the_tail_that_pulls_the_whole_window_mean():
    """A point matching fine pixel (row 6, col 5) exactly and (row 3, col 3) almost: the
    whole-window mean is pulled towards the second match; the mean around the peak (radius 1)
    stays within a fraction of a cell of the peak."""
    D, Hf, Wf = 8, 8, 12
    fine_map = torch.zeros(1, D, Hf, Wf)
    fine_map[0, 0] = 1.0                                         # background: unlike the point (cos 0)
    fine_map[0, :2, 6, 5] = torch.tensor([0.0, 1.0])             # the peak (cos 1)
    fine_map[0, :2, 3, 3] = torch.tensor([0.45, 0.89])           # the tail (cos 0.89), same window
    fine_map = F.normalize(fine_map, dim=1)
    fine_feat = F.normalize(torch.eye(D)[1:2][None], dim=-1)     # the point: feature channel 1
    args = (fine_map, fine_feat, torch.zeros(1, 1, 3), torch.zeros(1, 1, 1, dtype=torch.long),
            torch.tensor([[0]]), torch.tensor([[4]]), torch.tensor([[0.0]]), torch.zeros(1, 1))
    peak_uv = torch.tensor([5 * 4 + 1.5, 6 * 4 + 1.5])
    whole = FineMatcher(FineMatchingConfig(points_per_match=1, window_margin=2, temperature=0.1), 16, 4)(
        *args, coarse_width=3)
    local = FineMatcher(FineMatchingConfig(points_per_match=1, window_margin=2, temperature=0.1, peak_radius=1),
                        16, 4)(*args, coarse_width=3)
    assert float((whole.uv[0, 0] - peak_uv).norm()) > 2.0        # pulled by more than half a fine cell
    assert float((local.uv[0, 0] - peak_uv).norm()) < 0.5
    # the spread (confidence) is the whole window's in both
    torch.testing.assert_close(local.fine_conf, whole.fine_conf)
