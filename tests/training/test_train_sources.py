"""Training data of a mix of simulator presets (``data.sim_presets``) and fine-tuning from a
checkpoint's weights (``init_weights``)."""
from __future__ import annotations

import pytest
import torch

from crossi2p_training.config import load_train_config
from crossi2p_training.train import _photometric, build_sources, main


def test_a_mix_of_presets_concatenates_each_presets_frames():
    cfg = load_train_config("cpu", {"data.source": "sim", "data.sim_presets": ["small", "kitti_hdl64"],
                                    "data.sim_preset_frames": [5, 3], "data.val_frames": 2})
    train, val = build_sources(cfg, progress=False)   # `sim` renders lazily: nothing is simulated here
    assert len(train) == 8 and len(val) == 4
    assert [len(s) for s in train.sources] == [5, 3] and [s.base_seed for s in train.sources] == [0, 0]


def test_one_preset_without_a_mix_is_the_former_source():
    train, _ = build_sources(load_train_config("cpu", {"data.source": "sim", "data.train_frames": 4}), progress=False)
    assert type(train).__name__ == "SimulatorSource" and len(train) == 4


def test_preset_frame_counts_must_match_the_presets():
    with pytest.raises(ValueError, match="sim_preset_frames"):
        load_train_config("cpu", {"data.sim_presets": ["small", "kitti_hdl64"], "data.sim_preset_frames": [5]})


def test_init_weights_starts_from_the_checkpoints_weights(tmp_path, tiny_overrides, tiny_checkpoint):
    out = tmp_path / "ft"
    args = ["--config", "tiny", "--out", str(out), "--steps", "1", "--set", f"init_weights={tiny_checkpoint}",
            "--set", "optim.lr=0", "--set", "optim.weight_decay=0", "--set", "log.tensorboard=false"]
    for k, v in tiny_overrides.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 0
    init = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    tuned = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert tuned["step"] == 1  # the step count starts afresh
    params = dict(torch.nn.Module.named_parameters(_model(init)))
    for name in params:  # learning rate 0: the parameters are the checkpoint's (buffers: BatchNorm statistics move)
        assert torch.equal(init["state_dict"][name], tuned["state_dict"][name]), name


def _model(ckpt):
    from crossi2p_training.train import model_from_checkpoint

    return model_from_checkpoint(ckpt)


def test_the_issue_14_variant_config_mixes_rig_presets_with_photometric_randomisation():
    cfg = load_train_config("cpu_rigs_finetune")
    assert cfg.data.sim_presets == ["small", "kitti_hdl64", "nuscenes_hdl32", "ouster_os1_128"]
    assert cfg.preprocess.lidar_intensity.scale == "auto" and cfg.init_weights
    aug = _photometric(cfg)
    assert aug.exposure_ev_max > 0 and aug.noise_sigma_max > 0 and tuple(aug.jpeg_quality_range) != (0, 0)
