"""The preprocessing contract (crossi2p.preprocess): geometry of the fitted image, the fixed point
count, determinism and the errors on bad input."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from crossi2p.camera import CameraModel
from crossi2p.preprocess import (PreprocessConfig, fit_image, pinhole_camera, preprocess_frame,
                                 select_points)

K640 = np.array([[500.0, 0.0, 322.0], [0.0, 505.0, 236.0], [0.0, 0.0, 1.0]])
CAMERAS = {
    "none": CameraModel(K640, 640, 480),
    "plumb_bob": CameraModel(K640, 640, 480, "plumb_bob", np.array([-0.25, 0.08, 0.001, -0.0005, 0.0])),
    "rational_polynomial": CameraModel(K640, 640, 480, "rational_polynomial",
                                       np.array([0.3, -0.1, 0.0005, 0.0002, 0.01, 0.55, -0.05, 0.02])),
    "equidistant": CameraModel(np.array([[300.0, 0, 318.0], [0, 301.0, 242.0], [0, 0, 1]]), 640, 480,
                               "equidistant", np.array([0.05, -0.01, 0.002, -0.0005])),
}
# Directions (x/z, y/z) in the lower part of the view: the default bottom anchor keeps those rows.
RAYS = np.array([[0.0, 0.25], [-0.35, 0.3], [0.3, 0.18], [0.15, 0.38], [-0.2, 0.12]])


def _blob_image(camera: CameraModel, uv: np.ndarray, sigma_px: float = 4.0) -> np.ndarray:
    yy, xx = np.mgrid[0:camera.height, 0:camera.width]
    g = np.exp(-((xx - uv[0]) ** 2 + (yy - uv[1]) ** 2) / (2 * sigma_px**2))
    return np.repeat((g * 250.0).round().astype(np.uint8)[..., None], 3, axis=2)


def _centroid(rgb: np.ndarray) -> np.ndarray:
    w = rgb[..., 0].astype(np.float64)
    w = np.where(w > 0.05 * w.max(), w, 0.0)
    yy, xx = np.mgrid[0:rgb.shape[0], 0:rgb.shape[1]]
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


@pytest.mark.parametrize("model", sorted(CAMERAS))
def test_point_projects_onto_the_same_image_content_after_preprocessing(model):
    """Project with the original (distorted) camera, draw a blob there, preprocess the image:
    the blob's centre in the output image is where the preprocessed pinhole K projects the point."""
    cam = CAMERAS[model]
    cfg = PreprocessConfig(image_height=128, image_width=384)
    checked = 0
    for ray in RAYS:
        p_cam = np.array([[ray[0] * 12.0, ray[1] * 12.0, 12.0]])
        uv_src, _, valid = cam.project(p_cam)
        assert valid[0] and cam.in_image(uv_src, margin_px=15)[0]
        rgb, pin, _ = fit_image(_blob_image(cam, uv_src[0]), cam, cfg)
        uv_pin, _, ok = pin.project(p_cam)
        assert ok[0]
        if not pin.in_image(uv_pin, margin_px=6)[0]:
            continue  # cropped away by this camera's zoom (checked below: most rays are kept)
        checked += 1
        # the same through preprocess_frame's K (float32)
        Kf = preprocess_frame(_blob_image(cam, uv_src[0]), np.ones((3, 4)) * 5, cam, cfg,
                              np.random.default_rng(0)).K.astype(np.float64)
        uv_K = (Kf @ p_cam[0])[:2] / p_cam[0, 2]
        np.testing.assert_allclose(uv_K, uv_pin[0], atol=1e-3)
        err = np.linalg.norm(_centroid(rgb) - uv_pin[0])
        assert err < 0.5, f"{model} ray {ray}: blob at {_centroid(rgb)}, K projects to {uv_pin[0]} ({err:.2f} px)"
    assert checked >= 4


def test_preprocessed_camera_is_pinhole_of_the_output_size():
    cfg = PreprocessConfig(image_height=128, image_width=384)
    for cam in CAMERAS.values():
        img = np.zeros((cam.height, cam.width, 3), np.uint8)
        fr = preprocess_frame(img, np.ones((10, 4)) * 3, cam, cfg, np.random.default_rng(0))
        assert fr.camera.distortion_model == "none"
        assert (fr.camera.width, fr.camera.height) == (384, 128)
        assert fr.image.shape == (3, 128, 384) and fr.image.dtype == np.float32
        assert fr.K.dtype == np.float32 and fr.K.shape == (3, 3)
        np.testing.assert_allclose(fr.K, fr.camera.K, rtol=1e-6)


def test_undistortion_maps_are_cached_per_camera():
    cam = CAMERAS["plumb_bob"]
    assert pinhole_camera(cam) is pinhole_camera(cam)
    assert pinhole_camera(CAMERAS["none"]) is CAMERAS["none"]


def test_rows_are_bottom_aligned_and_short_images_padded_with_zeros():
    # 640x480 -> width 384 -> 288 rows; bottom anchor keeps rows 160..287
    cam = CAMERAS["none"]
    img = np.zeros((480, 640, 3), np.uint8)
    img[:, :, 0] = (np.arange(480) * 255 // 479)[:, None]  # row ramp
    rgb, pin, rows = fit_image(img, cam, PreprocessConfig(image_height=128, image_width=384))
    assert rows == (0, 128)
    assert rgb[-1, :, 0].mean() > 250 and rgb[0, :, 0].mean() > 120  # lower half of the ramp
    assert pin.K[1, 2] == pytest.approx(cam.resized(384, 288).K[1, 2] - 160)
    # a wide image (KITTI-like 1226x370 -> 512x155) is padded to 160 rows at the top
    kitti = CameraModel(np.array([[718.9, 0, 607.2], [0, 718.9, 185.2], [0, 0, 1]]), 1226, 370)
    fr = preprocess_frame(np.full((370, 1226, 3), 200, np.uint8), np.ones((5, 4)) * 4, kitti,
                          PreprocessConfig(), np.random.default_rng(0))
    assert fr.valid_rows == (5, 160)
    assert np.all(fr.image[:, :5] == 0.0) and np.all(fr.image[:, 5:] > 1.0)
    assert fr.camera.K[1, 2] == pytest.approx(kitti.resized(512, 155).K[1, 2] + 5)


def test_fixed_point_count_by_subsampling_or_repeat_padding():
    rng = np.random.default_rng(1)
    cloud = np.c_[rng.uniform(-30, 30, (1000, 3)), rng.uniform(0, 1, 1000)].astype(np.float32)
    cfg = PreprocessConfig(num_points=256, min_range_m=0.0, max_range_m=1e3)
    pts, idx = select_points(cloud, cfg, np.random.default_rng(0))
    assert pts.shape == (256, 4) and pts.dtype == np.float32
    assert len(np.unique(idx)) == 256  # without replacement
    np.testing.assert_array_equal(pts, cloud[idx])
    pts, idx = select_points(cloud[:100], cfg, np.random.default_rng(0))
    assert pts.shape == (256, 4)
    assert set(idx.tolist()) == set(range(100))  # every point kept, then repeats
    np.testing.assert_array_equal(pts, cloud[idx])


def test_points_filtered_by_range_and_finiteness_and_intensity_scaled():
    cloud = np.array([[0.0, 0.0, 0.0, 10],      # no return
                      [0.5, 0.0, 0.0, 10],      # too close
                      [5.0, 0.0, 0.0, 100],     # kept, 100/255
                      [np.nan, 1.0, 1.0, 10],   # NaN
                      [0.0, 90.0, 0.0, 10],     # too far
                      [0.0, 3.0, 4.0, 300]])    # kept, clipped to 1
    cfg = PreprocessConfig(num_points=4, min_range_m=1.0, max_range_m=80.0, intensity_scale=1 / 255)
    pts, idx = select_points(cloud, cfg, np.random.default_rng(0))
    assert set(idx.tolist()) == {2, 5}
    np.testing.assert_allclose(pts[idx == 2, 3], 100 / 255, rtol=1e-6)
    np.testing.assert_allclose(pts[idx == 5, 3], 1.0)


def test_preprocessing_is_deterministic_given_the_seed():
    rng = np.random.default_rng(2)
    cloud = np.c_[rng.uniform(-30, 30, (5000, 3)), rng.uniform(0, 1, 5000)]
    img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    cfg = PreprocessConfig(image_height=128, image_width=384, num_points=1024)
    a = preprocess_frame(img, cloud, CAMERAS["plumb_bob"], cfg, np.random.default_rng(7))
    b = preprocess_frame(img, cloud, CAMERAS["plumb_bob"], cfg, np.random.default_rng(7))
    c = preprocess_frame(img, cloud, CAMERAS["plumb_bob"], cfg, np.random.default_rng(8))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.point_index, b.point_index)
    assert not np.array_equal(a.point_index, c.point_index)


@pytest.mark.parametrize("points, image, match", [
    (np.zeros((0, 4)), None, "empty"),
    (np.full((10, 4), np.nan), None, "NaN"),
    (np.ones((10, 4)) * 500, None, "no point within"),
    (np.ones((10,)), None, r"\(N, 3\+\)"),
    (np.ones((10, 4)) * 5, np.zeros((480, 640), np.uint8), "uint8 RGB"),
    (np.ones((10, 4)) * 5, np.zeros((480, 640, 3), np.float32), "uint8 RGB"),
    (np.ones((10, 4)) * 5, np.zeros((240, 320, 3), np.uint8), "camera is 640x480"),
])
def test_bad_input_raises_a_clear_value_error(points, image, match):
    img = np.zeros((480, 640, 3), np.uint8) if image is None else image
    with pytest.raises(ValueError, match=match):
        preprocess_frame(img, points, CAMERAS["none"], PreprocessConfig(), np.random.default_rng(0))


def test_config_round_trips_through_a_yaml_model_card():
    cfg = PreprocessConfig.cpu()
    text = yaml.safe_dump({"preprocess": cfg.to_dict()})
    assert PreprocessConfig.from_dict(yaml.safe_load(text)["preprocess"]) == cfg
    assert PreprocessConfig.from_dict({}) == PreprocessConfig()
    with pytest.raises(ValueError, match="unknown keys"):
        PreprocessConfig.from_dict({"image_hieght": 3})
    with pytest.raises(ValueError):
        PreprocessConfig(min_range_m=5, max_range_m=1)
