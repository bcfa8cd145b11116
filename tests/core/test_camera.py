"""Camera models project exactly as OpenCV does and reject what would fold into the image."""
import cv2
import numpy as np
import pytest

from crossi2p.camera import CameraModel

K = np.array([[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]])
CAMERAS = {
    "none": CameraModel(K, 1242, 375),
    "plumb_bob": CameraModel(K, 1242, 375, "plumb_bob", [-0.36, 0.16, 0.0008, -0.0004, -0.04]),
    "rational_polynomial": CameraModel(K, 1242, 375, "rational_polynomial",
                                       [0.5, -0.1, 0.001, 0.0005, 0.02, 0.8, -0.05, 0.04]),
    "equidistant": CameraModel(K, 1242, 375, "equidistant", [0.05, -0.01, 0.003, -0.0005]),
}


def points_in_front(n=2000, seed=0):
    """Points inside the KITTI camera's field of view (|x/z| < 0.85, |y/z| < 0.25), 2-50 m deep."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(2.0, 50.0, n)
    xy = rng.uniform([-0.85, -0.25], [0.85, 0.25], size=(n, 2))
    return np.column_stack([xy * z[:, None], z])


@pytest.mark.parametrize("name", ["none", "plumb_bob", "rational_polynomial"])
def test_pinhole_models_match_cv2_project_points(name):
    cam = CAMERAS[name]
    P = points_in_front()
    uv, depth, valid = cam.project(P)
    ref, _ = cv2.projectPoints(P, np.zeros(3), np.zeros(3), cam.K,
                               cam.distortion if cam.distortion.size else None)
    assert valid.all()
    assert np.abs(uv - ref.reshape(-1, 2)).max() < 1e-6
    assert np.allclose(depth, P[:, 2])


def test_equidistant_matches_cv2_fisheye_project_points():
    cam = CAMERAS["equidistant"]
    P = points_in_front()
    uv, _, valid = cam.project(P)
    ref, _ = cv2.fisheye.projectPoints(P.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.distortion)
    assert valid.all()
    assert np.abs(uv - ref.reshape(-1, 2)).max() < 1e-6


@pytest.mark.parametrize("name", list(CAMERAS))
def test_unproject_inverts_project(name):
    cam = CAMERAS[name]
    P = points_in_front(500, seed=1)
    uv, depth, valid = cam.project(P)
    back = cam.unproject(uv[valid], depth[valid])
    # Iterative undistortion: sub-millimetre at up to 50 m.
    assert np.abs(back - P[valid]).max() < 1e-3
    uv2, _, _ = cam.project(back)
    assert np.abs(uv2 - uv[valid]).max() < 0.01


def test_points_behind_the_camera_or_non_finite_are_invalid():
    cam = CAMERAS["plumb_bob"]
    P = np.array([[0.0, 0.0, -5.0], [0.0, 0.0, 0.0], [np.nan, 0.0, 5.0], [0.0, 0.0, 5.0]])
    _, _, valid = cam.project(P)
    assert valid.tolist() == [False, False, False, True]


def test_far_off_axis_points_do_not_fold_back_into_the_image():
    # k1 < 0 with no higher terms: r_d = r (1 + k1 r^2) peaks at r = 1/sqrt(3 |k1|) and then
    # folds back; a point far off-axis must be invalid, not projected inside the image.
    cam = CameraModel(K, 1242, 375, "plumb_bob", [-0.4, 0.0, 0.0, 0.0, 0.0])
    r_max = 1 / np.sqrt(3 * 0.4)
    P = np.array([[3.0 * r_max, 0.0, 1.0], [0.5 * r_max, 0.0, 1.0]])
    uv, _, valid = cam.project(P)
    assert valid.tolist() == [False, True]


def test_in_image_uses_pixel_centre_convention():
    cam = CameraModel(K, 100, 50)
    uv = np.array([[-0.5, 0.0], [-0.51, 0.0], [99.49, 49.49], [99.5, 10.0]])
    assert cam.in_image(uv).tolist() == [True, False, True, False]


def test_resized_camera_projects_to_scaled_pixels():
    cam = CAMERAS["none"]
    small = cam.resized(621, 187)
    P = points_in_front(100)
    uv, _, _ = cam.project(P)
    uv_s, _, _ = small.project(P)
    sx, sy = 621 / 1242, 187 / 375
    assert np.allclose(uv_s, np.stack([(uv[:, 0] + 0.5) * sx - 0.5, (uv[:, 1] + 0.5) * sy - 0.5], 1))
    cropped = cam.cropped(left=10, top=50, width=1000, height=300)
    assert np.allclose(cropped.project(P)[0], uv - [10, 50])


def test_camera_info_fields_build_a_model():
    cam = CameraModel.from_camera_info(K.reshape(-1).tolist(), [], "plumb_bob", 1242, 375)
    assert cam.distortion_model == "none"
    cam = CameraModel.from_camera_info(K.reshape(-1), [0.1, 0.0, 0.0, 0.0], "plumb_bob", 1242, 375)
    assert cam.distortion.tolist() == [0.1, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(K=np.eye(2)), "K"),
    (dict(distortion_model="kannala"), "distortion_model"),
    (dict(distortion_model="equidistant", distortion=[0.1, 0.2]), "expects 4"),
    (dict(width=0), "size"),
])
def test_bad_camera_parameters_are_named(kwargs, message):
    args = dict(K=K, width=1242, height=375, distortion_model="none", distortion=[])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        CameraModel(**args)
