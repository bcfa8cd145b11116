"""Photometric domain randomisation (issue 14): PhotometricAugment's exposure, white balance,
vignetting, blur, noise and JPEG options. Off by default, so the ``cpu`` config's augmented images
are bit for bit what they were before the options existed; each option is seeded by the item's
generator like the brightness/contrast draw."""
from __future__ import annotations

import numpy as np
import pytest

from crossi2p_training.config import load_train_config
from crossi2p_training.data import PhotometricAugment
from crossi2p_training.train import _photometric

EXTRAS = {"exposure_ev_max": 1.0, "white_balance_max": 0.2, "vignetting_max": 0.4, "blur_sigma_max_px": 1.5,
          "noise_sigma_max": 6.0, "jpeg_quality_range": (40, 95)}


def _image(seed: int = 0, h: int = 60, w: int = 90) -> np.ndarray:
    """A textured test image: a smooth gradient plus blocks of random colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 128.0)], axis=-1)
    blocks = np.kron(rng.uniform(-60, 60, size=(h // 10, w // 10, 3)), np.ones((10, 10, 1)))
    return np.clip(base + blocks, 0, 255).astype(np.uint8)


def _former_brightness_contrast(rgb, rng, brightness_max, contrast_range):
    """PhotometricAugment.__call__ as it was before the options (commit 91db63c)."""
    b = rng.uniform(-brightness_max, brightness_max) * 255.0
    c = rng.uniform(*contrast_range)
    x = rgb.astype(np.float32)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return np.clip(c * (x - mean) + mean + b, 0, 255).round().astype(np.uint8)


def test_defaults_reproduce_the_former_brightness_contrast_bit_for_bit():
    rgb = _image()
    for seed in range(5):
        new_rng, old_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        out = PhotometricAugment(0.15, (0.8, 1.2))(rgb, new_rng)
        np.testing.assert_array_equal(out, _former_brightness_contrast(rgb, old_rng, 0.15, (0.8, 1.2)))
        assert new_rng.random() == old_rng.random()  # the same draws were consumed


def test_cpu_config_keeps_the_new_options_off():
    aug = _photometric(load_train_config("cpu"))
    assert aug == PhotometricAugment(0.15, (0.8, 1.2))


def test_options_are_seeded_by_the_items_generator():
    rgb, aug = _image(), PhotometricAugment(0.15, (0.8, 1.2), **EXTRAS)
    a = aug(rgb, np.random.default_rng(3))
    np.testing.assert_array_equal(a, aug(rgb, np.random.default_rng(3)))
    assert not np.array_equal(a, aug(rgb, np.random.default_rng(4)))
    assert a.dtype == np.uint8 and a.shape == rgb.shape


@pytest.mark.parametrize("option", sorted(EXTRAS))
def test_each_option_changes_the_image_and_keeps_its_shape(option):
    rgb = _image()
    plain = PhotometricAugment(0.0, (1.0, 1.0))
    aug = PhotometricAugment(0.0, (1.0, 1.0), **{option: EXTRAS[option]})
    np.testing.assert_array_equal(plain(rgb, np.random.default_rng(0)), rgb)  # identity without options
    outs = [aug(rgb, np.random.default_rng(seed)) for seed in range(5)]  # strengths drawn from [0, max]
    assert all(out.shape == rgb.shape and out.dtype == np.uint8 for out in outs)
    assert np.mean([np.abs(out.astype(int) - rgb).mean() for out in outs]) > 0.2, option


def test_exposure_brightens_or_darkens_in_linear_light():
    rgb = np.full((8, 8, 3), 100, np.uint8)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        out = PhotometricAugment(0.0, (1.0, 1.0), exposure_ev_max=1.0)(rgb, rng)
        ev = np.random.default_rng(seed)
        ev.uniform(), ev.uniform()                        # brightness, contrast
        gain = 2.0 ** ev.uniform(-1.0, 1.0)
        expected = 255 * min(1.0, (100 / 255) ** 2.2 * gain) ** (1 / 2.2)
        assert out[0, 0, 0] == pytest.approx(expected, abs=0.6)


def test_white_balance_changes_red_and_blue_but_not_green():
    rgb = np.full((8, 8, 3), 120, np.uint8)
    out = PhotometricAugment(0.0, (1.0, 1.0), white_balance_max=0.3)(rgb, np.random.default_rng(1))
    assert out[0, 0, 1] == 120 and (out[0, 0, 0] != 120 or out[0, 0, 2] != 120)


def test_vignetting_darkens_the_corners_not_the_centre():
    rgb = np.full((41, 61, 3), 200, np.uint8)
    out = PhotometricAugment(0.0, (1.0, 1.0), vignetting_max=0.8)(rgb, np.random.default_rng(2)).astype(int)
    # contrast 1 about the (darker) mean leaves the levels; the centre keeps its level
    assert out[20, 30, 0] == 200 and out[0, 0, 0] < 195 and out[40, 60, 0] == out[0, 0, 0]


def test_blur_smooths_and_noise_roughens():
    rgb = _image()
    grad = lambda im: np.abs(np.diff(im.astype(float), axis=1)).mean()  # noqa: E731
    blur = PhotometricAugment(0.0, (1.0, 1.0), blur_sigma_max_px=3.0)
    grads = [grad(blur(rgb, np.random.default_rng(seed))) for seed in range(5)]
    assert max(grads) <= grad(rgb) and min(grads) < 0.8 * grad(rgb)
    flat = np.full((40, 40, 3), 128, np.uint8)
    noise = PhotometricAugment(0.0, (1.0, 1.0), noise_sigma_max=8.0)
    stds = [noise(flat, np.random.default_rng(seed)).astype(float).std() for seed in range(5)]
    assert max(stds) > 1.0 and max(stds) < 8.5  # sigma drawn from [0, 8] levels


def test_jpeg_quality_is_drawn_from_the_range_and_lower_quality_loses_more():
    rgb = _image(h=60, w=90)
    err = {}
    for q in (10, 95):
        out = PhotometricAugment(0.0, (1.0, 1.0), jpeg_quality_range=(q, q))(rgb, np.random.default_rng(0))
        err[q] = np.abs(out.astype(int) - rgb).mean()
    assert 0 < err[95] < err[10]


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="jpeg_quality_range"):
        PhotometricAugment(jpeg_quality_range=(50, 101))
    with pytest.raises(ValueError, match="noise_sigma_max"):
        PhotometricAugment(noise_sigma_max=-1.0)
