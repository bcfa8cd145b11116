"""CrossI2PNet: the output contract, configs (presets, dict/YAML round trip) and checkpoints."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from crossi2p_training.model.crossi2p_net import CrossI2PNet, CrossI2POutput, ModelConfig


def test_output_fields_have_the_documented_shapes(tiny_cfg, tiny_inputs):
    image, points, K = tiny_inputs
    net = CrossI2PNet(tiny_cfg).eval()
    with torch.no_grad():
        out = net(image, points, K)
    assert isinstance(out, CrossI2POutput)
    B, D = 2, tiny_cfg.dim
    M1, M, k2 = tiny_cfg.point.num_fine_points, tiny_cfg.point.num_superpoints, tiny_cfg.point.superpoint_neighbors
    Hc, Wc = 64 // 16, 192 // 16
    Hf, Wf = 64 // 4, 192 // 4
    Kc = tiny_cfg.coarse.num_matches
    C = Kc * tiny_cfg.fine.points_per_match
    expect = {
        "pixel_fine_feat": (B, D, Hf, Wf), "point_fine_feat": (B, M1, D), "superpixel_feat": (B, Hc * Wc, D),
        "superpoint_feat": (B, M, D), "fine_index": (B, M1), "fine_xyz": (B, M1, 3), "superpoint_index": (B, M),
        "superpoint_xyz": (B, M, 3), "superpoint_members": (B, M, k2), "point_inview_logit": (B, M1),
        "superpoint_inview_logit": (B, M), "pixel_inview_logit": (B, Hc * Wc), "coarse_log_conf": (B, M, Hc * Wc),
        "match_superpoint": (B, Kc), "match_superpixel": (B, Kc), "match_score": (B, Kc),
        "corr_point_index": (B, C), "corr_xyz": (B, C, 3), "corr_uv": (B, C, 2), "corr_weight": (B, C),
        "corr_window_center_uv": (B, C, 2), "T_cam_lidar": (B, 4, 4), "confidence": (B,), "inlier_ratio": (B,),
        "hypothesis_cost": (B, tiny_cfg.pnp.yaw_hypotheses), "corr_residual_px": (B, C),
    }
    assert set(expect) == set(CrossI2POutput._fields)
    for name, shape in expect.items():
        v = getattr(out, name)
        assert tuple(v.shape) == shape, name
        assert torch.isfinite(v.float()).all(), name
    torch.testing.assert_close(out.point_fine_feat.norm(dim=-1), torch.ones(B, M1))
    torch.testing.assert_close(out.pixel_fine_feat.norm(dim=1), torch.ones(B, Hf, Wf))
    assert bool(((out.corr_weight >= 0) & (out.corr_weight <= 1)).all())
    torch.testing.assert_close(out.T_cam_lidar[:, 3], torch.tensor([[0.0, 0, 0, 1]] * B))
    R = out.T_cam_lidar[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(B, 3, 3), atol=1e-4, rtol=0)


def test_prior_pose_becomes_an_extra_hypothesis(tiny_cfg, tiny_inputs):
    image, points, K = tiny_inputs
    net = CrossI2PNet(tiny_cfg).eval()
    with torch.no_grad():
        out = net(image, points, K, torch.eye(4).expand(2, 4, 4), torch.tensor([1.0, 0.0]))
    assert out.hypothesis_cost.shape == (2, tiny_cfg.pnp.yaw_hypotheses + 1)
    assert float(out.hypothesis_cost[1, -1]) > 1e9


def test_gradients_reach_every_parameter(tiny_cfg, tiny_inputs):
    image, points, K = tiny_inputs
    net = CrossI2PNet(tiny_cfg).train()
    out = net(image, points, K)
    loss = (out.T_cam_lidar[:, :3].sum() + out.coarse_log_conf.mean() + out.point_inview_logit.mean()
            + out.pixel_inview_logit.mean() + out.superpoint_inview_logit.mean()
            + out.point_fine_feat.sum() + out.pixel_fine_feat.sum())
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_config_round_trips_through_yaml(preset):
    cfg = getattr(ModelConfig, preset)()
    text = yaml.safe_dump(cfg.to_dict())
    assert ModelConfig.from_dict(yaml.safe_load(text)) == cfg


def test_older_configs_missing_keys_take_defaults_and_unknown_keys_are_errors():
    d = ModelConfig.cpu().to_dict()
    del d["pnp"]["refine_iters"]
    del d["fine"]
    cfg = ModelConfig.from_dict(d)
    assert cfg.pnp.refine_iters == ModelConfig().pnp.refine_iters and cfg.fine == ModelConfig().fine
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({"pnp": {"yaw_hypothesis": 3}})


def test_checkpoint_reloads_to_identical_outputs(tiny_cfg, tiny_inputs, tmp_path):
    image, points, K = tiny_inputs
    net = CrossI2PNet(tiny_cfg).eval()
    torch.save(net.checkpoint(step=3), tmp_path / "c.pt")
    again = CrossI2PNet.from_checkpoint(tmp_path / "c.pt").eval()
    assert again.config == tiny_cfg
    with torch.no_grad():
        a, b = net(image, points, K), again(image, points, K)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@dataclasses.dataclass
class _TrainSettings:  # a config saved as an object instead of its to_dict(): a pickled custom class
    lr: float = 1e-3


def test_checkpoint_with_a_pickled_object_is_refused_naming_the_file(tiny_cfg, tmp_path):
    """Checkpoints are read with torch.load(weights_only=True): a file that carries a pickled
    object (here a dataclass) is a ValueError that names the file, never unpickled."""
    from crossi2p_training.train import load_checkpoint

    path = tmp_path / "pickled_object.pt"
    torch.save(CrossI2PNet(tiny_cfg).checkpoint(config=_TrainSettings()), path)
    for load in (CrossI2PNet.from_checkpoint, load_checkpoint):
        with pytest.raises(ValueError, match=r"checkpoint .*pickled_object\.pt: holds pickled objects") as err:
            load(path)
        assert "_TrainSettings" in str(err.value)
    (tmp_path / "not_a_checkpoint.pt").write_text("hello")
    with pytest.raises(ValueError, match=r"not_a_checkpoint\.pt: not a PyTorch checkpoint \(not a zip archive"):
        load_checkpoint(tmp_path / "not_a_checkpoint.pt")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")      # an exported graph given as the checkpoint
    with pytest.raises(ValueError, match=r"model\.onnx: not a PyTorch checkpoint \(an exported ONNX graph") as err:
        load_checkpoint(tmp_path / "model.onnx")
    assert "weights_only" not in str(err.value)             # never torch's advice to unpickle it anyway


def test_parameter_names_are_stable():
    """Checkpoints rely on these names: renaming a module breaks every saved model."""
    names = {n.split(".")[0] for n, _ in CrossI2PNet(ModelConfig.cpu()).named_parameters()}
    assert names == {"image_encoder", "point_encoder", "transformer", "intersection"}


def test_preset_sizes():
    cpu, paper = CrossI2PNet(ModelConfig.cpu()), CrossI2PNet(ModelConfig.paper())
    assert 0.3e6 < cpu.num_parameters() < 3e6
    assert paper.num_parameters() > 3 * cpu.num_parameters()
    assert cpu.config.dim == 96 and paper.config.dim == 256
    with pytest.raises(ValueError, match="points_per_match"):
        CrossI2PNet(dataclasses.replace(ModelConfig.cpu(), fine=dataclasses.replace(ModelConfig.cpu().fine,
                                                                                    points_per_match=99)))
