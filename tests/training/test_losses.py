"""Loss terms against hand-computed values, the ground-truth builder, GradNorm's update."""
from __future__ import annotations

import math

import pytest
import torch

from crossi2p_training.losses import (CrossI2PLoss, GradNorm, LossConfig, ModelGeometry, balanced_bce,
                                      build_targets, coarse_nll, fine_loss, info_nce, pose_errors, uniformity)
from crossi2p_training.model.crossi2p_net import CrossI2PNet, CrossI2POutput, ModelConfig


def test_info_nce_by_hand():
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])
    b = a.clone()
    all_ok = torch.ones(1, 3, 3, dtype=torch.bool)
    valid = torch.ones(1, 3, dtype=torch.bool)
    # row 0 logits (tau = 1): [1, 0, 0.6]; row 1: [0, 1, 0.8]; row 2: [0.6, 0.8, 1]; symmetric
    rows = [[1, 0, 0.6], [0, 1, 0.8], [0.6, 0.8, 1]]
    ce = [math.log(sum(math.exp(x) for x in r)) - r[i] for i, r in enumerate(rows)]
    assert float(info_nce(a, b, valid, all_ok, 1.0)) == pytest.approx(sum(ce) / 3, rel=1e-5)
    # pairs (1, 2) not negatives (too close): rows 1, 2 lose one term each
    ok = all_ok.clone()
    ok[0, 1, 2] = ok[0, 2, 1] = False
    ce2 = [ce[0], math.log(math.exp(0) + math.exp(1)) - 1, math.log(math.exp(0.6) + math.exp(1)) - 1]
    assert float(info_nce(a, b, valid, ok, 1.0)) == pytest.approx(sum(ce2) / 3, rel=1e-5)
    # an invalid pair neither counts nor serves as a negative
    v = torch.tensor([[True, True, False]])
    ce3 = [math.log(math.e + 1) - 1] * 2
    assert float(info_nce(a, b, v, all_ok, 1.0)) == pytest.approx(sum(ce3) / 2, rel=1e-5)
    assert float(info_nce(a, b, torch.zeros_like(v), all_ok, 1.0)) == 0.0


def test_uniformity_by_hand():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    ok = torch.ones(1, 3, 3, dtype=torch.bool)
    x = torch.tensor([[e1, e1, e2]])
    # ordered pairs: (0,1),(1,0) at |d|^2 = 0; four pairs at |d|^2 = 2; t = 1
    expect = math.log((2 + 4 * math.exp(-2)) / 6) + 2
    assert float(uniformity(x, ok, 1.0)) == pytest.approx(expect, rel=1e-5)
    # orthogonal features reach the lower bound (0 after the +2t shift)
    assert float(uniformity(torch.tensor([[e1, e2]]), ok[:, :2, :2], 1.0)) == pytest.approx(0.0, abs=1e-6)
    # excluded pairs drop out
    ok2 = ok.clone()
    ok2[0, 0, 1] = ok2[0, 1, 0] = False
    assert float(uniformity(x, ok2, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_balanced_bce_by_hand():
    logit = torch.tensor([0.0, 0.0, 2.0])
    target = torch.tensor([True, False, False])
    pos = math.log(2)
    neg = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert float(balanced_bce(logit, target)) == pytest.approx((pos + neg) / 2, rel=1e-5)
    assert float(balanced_bce(logit[1:], target[1:])) == pytest.approx(neg, rel=1e-5)  # no positives


def test_coarse_nll_and_fine_loss_by_hand():
    log_conf = torch.log(torch.tensor([[[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]]))
    assert float(coarse_nll(log_conf, torch.tensor([[2, -1]]))) == pytest.approx(-math.log(0.7), rel=1e-5)
    assert float(coarse_nll(log_conf, torch.tensor([[2, 0]]))) == pytest.approx(
        -(math.log(0.7) + math.log(0.3)) / 2, rel=1e-5)
    uv = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [100.0, 0.0]]])
    gt = torch.zeros(1, 3, 2)
    valid = torch.tensor([[True, True, False]])
    assert float(fine_loss(uv, gt, valid, 10.0)) == pytest.approx((0 + 0.5) / 2, abs=1e-4)


def test_pose_errors_by_hand():
    c, s = math.cos(0.3), math.sin(0.3)
    T_gt = torch.tensor([[[c, -s, 0, 3.0], [s, c, 0, 4.0], [0, 0, 1, 0.0], [0, 0, 0, 1.0]]])
    rot, trans = pose_errors(torch.eye(4)[None], T_gt)
    assert float(rot) == pytest.approx(0.3, rel=1e-5) and float(trans) == pytest.approx(5.0, rel=1e-6)
    c, s = math.cos(3.0), math.sin(3.0)
    T_gt = torch.tensor([[[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]]])
    assert float(pose_errors(torch.eye(4)[None], T_gt)[0]) == pytest.approx(3.0, rel=1e-5)
    rot, trans = pose_errors(T_gt, T_gt)
    assert float(rot) < 1e-5 and float(trans) < 1e-5


def _fake_output(**fields) -> CrossI2POutput:
    return CrossI2POutput(*([None] * len(CrossI2POutput._fields)))._replace(**fields)


def test_build_targets_by_hand():
    """32x32 image, coarse stride 16 (2 x 2 superpixels), K with f = 10 and centre 15.5."""
    K = torch.tensor([[[10.0, 0, 15.5], [0, 10.0, 15.5], [0, 0, 1]]])
    T = torch.eye(4)[None]                                       # points given in the camera frame
    fine_xyz = torch.tensor([[[-1.0, -1.0, 10.0],               # uv (14.5, 14.5): cell 0
                              [1.0, 1.0, 10.0],                 # uv (16.5, 16.5): cell 3
                              [-2.0, -1.0, 10.0],               # uv (13.5, 14.5): cell 0
                              [0.0, 0.0, -5.0],                 # behind the camera
                              [20.0, 0.0, 10.0]]])              # u = 35.5: outside
    points = torch.cat([fine_xyz, torch.zeros(1, 5, 1)], -1)
    out = _fake_output(
        fine_xyz=fine_xyz,
        superpoint_xyz=fine_xyz[:, [0, 1, 3]],
        superpoint_members=torch.tensor([[[0, 2, 1], [1, 0, 2], [3, 4, 0]]]),
        corr_point_index=torch.tensor([[0, 1, 3]]),
        corr_window_center_uv=torch.tensor([[[7.5, 7.5], [7.5, 7.5], [7.5, 7.5]]]))
    tg = build_targets(points, T, K, (32, 32), out, ModelGeometry(16, 4, 8.0), min_overlap=0.5)
    torch.testing.assert_close(tg.fine_uv[0, :3], torch.tensor([[14.5, 14.5], [16.5, 16.5], [13.5, 14.5]]))
    assert tg.fine_inview[0].tolist() == [True, True, True, False, False]
    assert tg.superpoint_inview[0].tolist() == [True, True, False]
    torch.testing.assert_close(tg.superpoint_overlap[0, 0], torch.tensor([2 / 3, 0, 0, 1 / 3]))
    torch.testing.assert_close(tg.superpoint_overlap[0, 2], torch.tensor([1 / 3, 0, 0, 0]))
    # superpoint 0: 2/3 of its members in cell 0; superpoint 1: 2/3 in cell 0 too (its centre is
    # in cell 3, the overlap decides); superpoint 2: centre behind the camera
    assert tg.superpoint_cell[0].tolist() == [0, 0, -1]
    assert tg.pixel_occupied[0].tolist() == [True, False, False, True]
    torch.testing.assert_close(tg.corr_uv[0, :2], torch.tensor([[14.5, 14.5], [16.5, 16.5]]))
    # window centre (7.5, 7.5) with half size 8: (14.5, 14.5) inside, (16.5, 16.5) not, point 3 not in view
    assert tg.corr_valid[0].tolist() == [True, False, False]
    # coarse_target "centre": the cell of the centre's projection, whatever the members do
    tc = build_targets(points, T, K, (32, 32), out, ModelGeometry(16, 4, 8.0), min_overlap=0.9, coarse_target="centre")
    assert tc.superpoint_cell[0].tolist() == [0, 3, -1]
    with pytest.raises(ValueError, match="coarse_target"):
        build_targets(points, T, K, (32, 32), out, ModelGeometry(16, 4, 8.0), coarse_target="center")


def _quadratic_tasks(W):
    return {"a": 3.0 * W.sum(), "b": (W ** 2).sum()}


def test_gradnorm_first_update_by_hand():
    """L_a = 3 W, L_b = W^2 at W = 1: gradient norms 3 and 2, equal loss ratios, so the target
    is their mean 2.5 for both; GradNorm lowers w_a, raises w_b; Adam's first step is +-lr."""
    W = torch.ones(1, requires_grad=True)
    gn = GradNorm(("a", "b"), alpha=1.5, lr=0.1)
    total = gn(_quadratic_tasks(W), W)
    assert float(total.detach()) == pytest.approx(3.0 + 1.0)
    assert gn.weight_dict() == pytest.approx({"a": 0.9, "b": 1.1}, rel=1e-5)
    assert gn.initial_losses.tolist() == [3.0, 1.0]
    total.backward()                                            # network gradient uses the old weights
    assert float(W.grad) == pytest.approx(3.0 + 2.0)


def test_gradnorm_restores_a_lagging_task():
    """A task whose loss falls more slowly than the others gets a larger weight."""
    W = torch.ones(1, requires_grad=True)
    gn = GradNorm(("a", "b"), alpha=1.5, lr=0.05)
    gn({"a": 3.0 * W.sum(), "b": 3.0 * W.sum()}, W)            # L(0) = 3 for both
    for _ in range(20):
        gn({"a": 1.0 * W.sum(), "b": 3.0 * W.sum()}, W)        # a trained 3x faster
    w = gn.weight_dict()
    assert w["b"] > 1.2 > 0.8 > w["a"] and sum(w.values()) == pytest.approx(2.0)


def test_gradnorm_off_keeps_fixed_weights():
    W = torch.ones(1, requires_grad=True)
    gn = GradNorm(("a", "b"), enabled=False, initial_weights=(0.5, 2.0))
    total = gn(_quadratic_tasks(W), W)
    assert float(total.detach()) == pytest.approx(0.5 * 3 + 2.0 * 1)
    assert gn.weight_dict() == {"a": 0.5, "b": 2.0}
    gn.eval()
    gn2 = GradNorm(("a", "b"))
    gn2.eval()
    gn2(_quadratic_tasks(W), W)                                 # no update in eval mode
    assert gn2.weight_dict() == {"a": 1.0, "b": 1.0}


def test_full_loss_on_a_tiny_network_is_finite_and_trains_every_group():
    import dataclasses
    c = ModelConfig.cpu()
    cfg = dataclasses.replace(c, point=dataclasses.replace(c.point, num_fine_points=256, num_superpoints=64),
                              coarse=dataclasses.replace(c.coarse, num_matches=16),
                              fine=dataclasses.replace(c.fine, points_per_match=4))
    torch.manual_seed(0)
    net = CrossI2PNet(cfg)
    B, N = 2, 600
    xyz = torch.cat([torch.rand(B, N, 1) * 30 + 2, (torch.rand(B, N, 2) - 0.5) * torch.tensor([30.0, 4.0])], -1)
    points = torch.cat([xyz, torch.rand(B, N, 1)], -1)
    T = torch.tensor([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]).expand(B, 4, 4).clone()
    K = torch.tensor([[100.0, 0, 95.5], [0, 100.0, 31.5], [0, 0, 1]]).expand(B, 3, 3).clone()
    image = torch.randn(B, 3, 64, 192)
    crit = CrossI2PLoss(LossConfig(contrastive_samples=64), ModelGeometry.from_net(net))
    out = net(image, points, K)
    tg = crit.targets(points, T, K, (64, 192), out)
    assert int(tg.fine_inview.sum()) > 50
    lo = crit(out, tg, generator=torch.Generator().manual_seed(0))
    assert set(lo.groups) == {"alignment", "correspondence", "pose"}
    for name, v in {**lo.terms, **lo.groups}.items():
        assert torch.isfinite(v) and float(v.detach()) >= -1e-3, name
    gn = GradNorm.from_config(LossConfig())
    total = gn(lo.groups, net.last_shared_layer())
    total.backward()
    assert net.last_shared_layer().grad is not None and torch.isfinite(net.last_shared_layer().grad).all()
    assert sum(gn.weight_dict().values()) == pytest.approx(3.0)
