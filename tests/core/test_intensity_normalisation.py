"""Per-sensor LiDAR intensity normalisation, part of the preprocessing contract
(``preprocess.lidar_intensity``): each policy maps real-like sweeps (KITTI reflectance 0-1,
nuScenes 0-255, Ouster 16-bit, no intensity) to [0, 1]; a card without the key behaves exactly as
before; the decoders' rule is the ``auto`` policy."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from crossi2p.pointcloud2 import normalise_intensity
from crossi2p.preprocess import (LidarIntensityConfig, PreprocessConfig, detect_intensity_scale,
                                 normalise_lidar_intensity, preprocess_frame, select_points)
from crossi2p_training.sim import SimConfig, simulate_sample

CARD = Path(__file__).resolve().parents[2] / "models" / "crossi2p_cpu.yaml"


def sweep(units: str, seed: int = 0) -> np.ndarray:
    """(N, 4) a real-like sweep: a simulated street with the intensity in ``units``."""
    preset = {"unit": "kitti_hdl64", "byte": "nuscenes_hdl32", "uint16": "ouster_os1_128"}[units]
    cfg = SimConfig.preset(preset)
    small_camera = cfg.camera.scaled_to(64, int(round(64 * cfg.camera.height / cfg.camera.width)))
    return simulate_sample(cfg.replace(camera=small_camera), seed).points


def policy(scale: str, **kw) -> PreprocessConfig:
    return dataclasses.replace(PreprocessConfig.cpu(), lidar_intensity=LidarIntensityConfig(scale=scale, **kw))


@pytest.fixture(scope="module")
def sweeps():
    return {u: sweep(u) for u in ("unit", "byte", "uint16")}


def test_real_like_sweeps_are_on_their_drivers_scales(sweeps):
    assert detect_intensity_scale(sweeps["unit"][:, 3]) == "unit"
    assert detect_intensity_scale(sweeps["byte"][:, 3]) == "byte"
    assert detect_intensity_scale(sweeps["uint16"][:, 3]) == "uint16"
    assert detect_intensity_scale(None) == "missing"
    assert detect_intensity_scale(np.zeros(5)) == "missing"
    assert detect_intensity_scale(np.array([0, 1e6])) == "other"


@pytest.mark.parametrize("units, scale, divisor", [
    ("unit", "unit", 1.0), ("byte", "byte", 255.0), ("uint16", "uint16", 65535.0),
    ("unit", "auto", 1.0), ("byte", "auto", 255.0),
])
def test_named_scales_divide_by_their_full_scale(sweeps, units, scale, divisor):
    raw = sweeps[units][:, 3]
    values, applied = normalise_lidar_intensity(raw, policy(scale))
    assert values.dtype == np.float32 and values.min() >= 0.0 and values.max() <= 1.0
    np.testing.assert_allclose(values, raw / divisor, rtol=1e-6, atol=1e-7)
    assert applied.endswith(f"/{divisor:g}")


def test_auto_reads_16_bit_by_the_sweeps_maximum(sweeps):
    raw = sweeps["uint16"][:, 3]
    values, applied = normalise_lidar_intensity(raw, policy("auto"))
    np.testing.assert_allclose(values, raw / raw.max(), rtol=1e-6)
    assert applied == f"auto -> max /{raw.max():g}"


def test_percentile_maps_each_sweep_by_its_own_statistics(sweeps):
    """Calibrated reflectivities on 0-1 and 0-255 land on the same footing; the uncompensated
    16-bit signal (falls as 1/r^2) is brighter than divided by its full scale."""
    medians = {}
    for units, pts in sweeps.items():
        values, applied = normalise_lidar_intensity(pts[:, 3], policy("percentile", percentile=99.0))
        assert applied.startswith("percentile 99 /")
        assert values.max() == 1.0 and np.mean(values == 1.0) < 0.02  # ~1 % at or above the 99th percentile
        medians[units] = float(np.median(values))
    assert 0.05 < medians["unit"] < 0.6 and 0.05 < medians["byte"] < 0.6
    assert abs(medians["unit"] - medians["byte"]) < 0.1, medians
    full_scale = np.median(normalise_lidar_intensity(sweeps["uint16"][:, 3], policy("uint16"))[0])
    assert medians["uint16"] > full_scale, (medians, full_scale)


def test_missing_intensity_gets_the_missing_value(sweeps):
    xyz = sweeps["unit"][:, :3]
    out, _ = select_points(xyz, policy("auto", missing_value=0.5), np.random.default_rng(0))
    assert np.all(out[:, 3] == 0.5)
    out, _ = select_points(xyz, PreprocessConfig.cpu(), np.random.default_rng(0))
    assert np.all(out[:, 3] == 0.0)


def test_default_policy_is_the_former_contract_bit_for_bit(sweeps):
    """``fixed``: intensity x ``intensity_scale``, non-finite mapped, clipped: as before the key."""
    cfg = PreprocessConfig.cpu()
    assert cfg.lidar_intensity.scale == "fixed"
    for pts in sweeps.values():
        pts = pts.copy()
        pts[:5, 3] = [np.nan, np.inf, -np.inf, -2.0, 300.0]
        out, idx = select_points(pts, cfg, np.random.default_rng(3))
        former = np.clip(np.nan_to_num(pts[idx, 3].astype(np.float64) * cfg.intensity_scale, nan=0.0, posinf=1.0,
                                       neginf=0.0), 0.0, 1.0).astype(np.float32)
        assert np.array_equal(out[:, 3], former)


def test_shipped_card_states_its_policy_and_a_card_without_one_loads_as_fixed():
    """The shipped card states its policy (``auto`` since the rig fine-tune: its training mix had
    0-1, 0-255 and 0-65535 clouds) and loads as stated; an older card without the key loads as
    ``fixed``, the behaviour before the policy existed."""
    card = yaml.safe_load(CARD.read_text())
    stated = card["preprocess"]["lidar_intensity"]
    cfg = PreprocessConfig.from_dict(card["preprocess"])
    assert cfg.lidar_intensity.scale == stated["scale"]
    older = {k: v for k, v in card["preprocess"].items() if k != "lidar_intensity"}
    assert PreprocessConfig.from_dict(older).lidar_intensity == LidarIntensityConfig()
    assert LidarIntensityConfig().scale == "fixed"


def test_policy_round_trips_through_a_card_and_bad_values_are_refused():
    cfg = policy("percentile", percentile=95.0)
    text = yaml.safe_dump({"preprocess": cfg.to_dict()})
    assert "lidar_intensity" in text
    assert PreprocessConfig.from_dict(yaml.safe_load(text)["preprocess"]) == cfg
    with pytest.raises(ValueError, match="lidar_intensity.scale: expected one of"):
        PreprocessConfig.from_dict({"lidar_intensity": {"scale": "uint8"}})
    with pytest.raises(ValueError, match="applies only with lidar_intensity.scale: fixed"):
        PreprocessConfig.from_dict({"intensity_scale": 0.5, "lidar_intensity": {"scale": "byte"}})
    with pytest.raises(ValueError, match="percentile"):
        LidarIntensityConfig(scale="percentile", percentile=0.0)


def test_decoders_rule_is_the_auto_policy(sweeps):
    for pts in sweeps.values():
        raw = pts[:, 3]
        assert np.array_equal(normalise_intensity(raw), normalise_lidar_intensity(raw, policy("auto"))[0])


def test_preprocessed_frame_reports_detected_and_applied_scales(sweeps):
    cfg = policy("byte")
    sample = simulate_sample(SimConfig.preset("small"), 1)
    frame = preprocess_frame(sample.image, sweeps["byte"], sample.camera, cfg, np.random.default_rng(0))
    assert (frame.intensity_detected, frame.intensity_applied) == ("byte", "byte /255")
    assert 0.0 <= frame.points[:, 3].min() and frame.points[:, 3].max() <= 1.0
    frame = preprocess_frame(sample.image, sweeps["byte"][:, :3], sample.camera, PreprocessConfig.cpu(),
                             np.random.default_rng(0))
    assert (frame.intensity_detected, frame.intensity_applied) == ("missing", "missing -> 0")
