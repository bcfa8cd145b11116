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


# ----------------------------------------------------------------------------- CameraInfo as image_geometry reads it
from types import SimpleNamespace  # noqa: E402

from crossi2p.camera import UncalibratedCameraError, camera_from_camera_info, normalise_distortion  # noqa: E402

PLUMB = [-0.36, 0.16, 0.0008, -0.0004, -0.04]
RATIONAL = [0.5, -0.1, 0.001, 0.0005, 0.02, 0.8, -0.05, 0.04]


def info(k=K, d=(), model="plumb_bob", width=1242, height=375, binning=(0, 0), roi=(0, 0, 0, 0)):
    """A duck-typed sensor_msgs/CameraInfo."""
    return SimpleNamespace(k=list(np.asarray(k, float).reshape(-1)), d=list(d), distortion_model=model, width=width,
                           height=height, binning_x=binning[0], binning_y=binning[1],
                           roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3],
                                               do_rectify=False))


def cv2_pixels(P, D):
    out, _ = cv2.projectPoints(P, np.zeros(3), np.zeros(3), K, np.asarray(D, float) if len(D) else None)
    return out.reshape(-1, 2)


@pytest.mark.parametrize("n_extra", [3, 7, 9])  # 8, 12 and 14 coefficients (OpenCV's vector lengths)
def test_plumb_bob_with_zero_extras_is_the_5_coefficient_model(n_extra):
    notes = []
    cam = camera_from_camera_info(info(d=PLUMB + [0.0] * n_extra), on_note=notes.append)
    assert cam.distortion_model == "plumb_bob" and cam.distortion.tolist() == PLUMB and notes == []
    P = points_in_front(300)
    np.testing.assert_allclose(cam.project(P)[0], cv2_pixels(P, PLUMB + [0.0] * n_extra), atol=1e-9)


def test_plumb_bob_with_non_zero_k4_k6_is_opencvs_rational_model_with_one_note():
    notes = []
    cam = camera_from_camera_info(info(d=RATIONAL, model="plumb_bob"), on_note=notes.append)
    assert cam.distortion_model == "rational_polynomial" and cam.distortion.tolist() == RATIONAL
    assert len(notes) == 1 and "plumb_bob" in notes[0] and "rational" in notes[0]
    P = points_in_front(300)
    # image_geometry hands all 8 coefficients to OpenCV: the pixels must be OpenCV's 8-coefficient ones.
    np.testing.assert_allclose(cam.project(P)[0], cv2_pixels(P, RATIONAL), atol=1e-9)
    assert np.abs(cv2_pixels(P, RATIONAL) - cv2_pixels(P, RATIONAL[:5])).max() > 5.0  # dropping k4..k6 would be wrong


def test_rational_polynomial_stays_rational():
    cam = camera_from_camera_info(info(d=RATIONAL[:5] + [0.0, 0.0, 0.0], model="rational_polynomial"))
    assert cam.distortion_model == "rational_polynomial" and cam.distortion.tolist() == RATIONAL[:5] + [0.0] * 3
    cam = camera_from_camera_info(info(d=RATIONAL + [0.0] * 4, model="rational_polynomial"))
    assert cam.distortion.tolist() == RATIONAL


def test_thin_prism_or_tilt_terms_are_refused_by_name():
    with pytest.raises(ValueError, match=r"CameraInfo d: thin-prism/tilt coefficients .* \[0\.001, 0\.0, 0\.0, 0\.0\]"):
        camera_from_camera_info(info(d=RATIONAL + [0.001, 0, 0, 0]))
    with pytest.raises(ValueError, match="CameraInfo d: plumb_bob with 6 coefficients; OpenCV reads 4, 5, 8, 12 or 14"):
        camera_from_camera_info(info(d=PLUMB + [0.1]))


def test_empty_model_with_5_coefficients_is_plumb_bob_with_one_warning(caplog):
    notes = []
    cam = camera_from_camera_info(info(d=PLUMB, model=""), on_note=notes.append)
    assert cam.distortion_model == "plumb_bob" and cam.distortion.tolist() == PLUMB
    assert len(notes) == 1 and "empty distortion_model with 5 coefficients, read as plumb_bob" in notes[0]
    P = points_in_front(200)
    np.testing.assert_allclose(cam.project(P)[0], cv2_pixels(P, PLUMB), atol=1e-9)
    # Default: logged once however many messages repeat it.
    with caplog.at_level("WARNING", logger="crossi2p.camera"):
        for _ in range(20):
            camera_from_camera_info(info(d=PLUMB[:4] + [0.0123], model=""))
    assert sum("empty distortion_model" in r.getMessage() for r in caplog.records) == 1
    assert camera_from_camera_info(info(d=RATIONAL, model=""), on_note=notes.append).distortion_model == \
        "rational_polynomial"


@pytest.mark.parametrize("d", [[], [0.0] * 5, [0.0] * 8])
@pytest.mark.parametrize("model", ["", "plumb_bob", "rational_polynomial"])
def test_no_or_all_zero_coefficients_are_a_pinhole(model, d):
    notes = []
    cam = camera_from_camera_info(info(d=d, model=model), on_note=notes.append)
    assert cam.distortion_model == "none" and cam.distortion.size == 0 and notes == []


@pytest.mark.parametrize("k, size, what", [
    (np.zeros(9), (1242, 375), "k is all zeros"),
    (K, (0, 0), "image size 0x0"),
    (K, (1242, 0), "image size 1242x0"),
])
def test_uncalibrated_camera_info_raises_its_own_error(k, size, what):
    with pytest.raises(UncalibratedCameraError, match=f"CameraInfo: uncalibrated camera \\({what}\\)"):
        camera_from_camera_info(info(k=k, width=size[0], height=size[1]))
    assert issubclass(UncalibratedCameraError, ValueError)


def test_binning_follows_image_geometry():
    """Full-resolution K (fx 1200, cx 1031.5) of a 2064x1544 sensor binned 2x2: 1032x772 images with
    fx 600, cx 1031.5 / 2 = 515.75 (image_geometry: no half-pixel term)."""
    Kf = np.array([[1200.0, 0, 1031.5], [0, 1180.0, 771.5], [0, 0, 1]])
    cam = camera_from_camera_info(info(k=Kf, d=PLUMB, width=2064, height=1544, binning=(2, 2)))
    assert (cam.width, cam.height) == (1032, 772)
    assert cam.fx == pytest.approx(600.0, abs=1e-12) and cam.fy == pytest.approx(590.0, abs=1e-12)
    assert cam.K[0, 2] == pytest.approx(515.75, abs=0.3) and cam.K[0, 2] == pytest.approx(515.75, abs=1e-12)
    assert cam.K[1, 2] == pytest.approx(385.75, abs=1e-12)
    # Binning 0 means 1; different factors per axis.
    cam = camera_from_camera_info(info(k=Kf, width=2064, height=1544, binning=(0, 4)))
    assert (cam.width, cam.height) == (2064, 386) and cam.fx == 1200.0 and cam.fy == pytest.approx(295.0)


def test_roi_then_binning_maps_full_resolution_pixels():
    """A point's pixel in the published image is (full-resolution pixel - roi offset) / binning."""
    Kf = np.array([[1200.0, 0, 1031.5], [0, 1180.0, 771.5], [0, 0, 1]])
    full = camera_from_camera_info(info(k=Kf, d=PLUMB, width=2064, height=1544))
    cam = camera_from_camera_info(info(k=Kf, d=PLUMB, width=2064, height=1544, binning=(2, 2),
                                       roi=(100, 60, 1600, 1200)))
    assert (cam.width, cam.height) == (800, 600)
    np.testing.assert_allclose([cam.K[0, 2], cam.K[1, 2]], [(1031.5 - 100) / 2, (771.5 - 60) / 2], atol=1e-12)
    P = points_in_front(300, seed=4)
    uv_full, uv = full.project(P)[0], cam.project(P)[0]
    np.testing.assert_allclose(uv, (uv_full - [100, 60]) / 2, atol=1e-9)


@pytest.mark.parametrize("roi", [(1000, 0, 1200, 1544), (0, 0, 0, 10), (-1, 0, 10, 10)])
def test_roi_outside_the_image_is_named(roi):
    with pytest.raises(ValueError, match="CameraInfo roi: .* does not fit the calibrated 2064x1544 image"):
        camera_from_camera_info(info(width=2064, height=1544, roi=roi))


def test_skew_is_refused_by_name_and_never_dropped():
    Ks = K.copy()
    Ks[0, 1] = 2.5
    with pytest.raises(ValueError, match=r"K\[0,1\] \(skew\) = 2.5 is not supported"):
        camera_from_camera_info(info(k=Ks))
    with pytest.raises(ValueError, match=r"K\[0,1\] \(skew\)"):
        CameraModel(Ks, 1242, 375)
    # Numerical noise (1e-9 fx, a millionth of a pixel here) is zero.
    Ks[0, 1] = 1e-9 * K[0, 0]
    assert CameraModel(Ks, 1242, 375).K[0, 1] == 0.0
    bad = K.copy()
    bad[2, 2] = 2.0
    with pytest.raises(ValueError, match=r"expected the last row \[0, 0, 1\]"):
        CameraModel(bad, 1242, 375)


def test_equidistant_takes_4_coefficients():
    cam = camera_from_camera_info(info(d=[0.05, -0.01, 0.003, -0.0005, 0.0], model="equidistant"))
    assert cam.distortion.tolist() == [0.05, -0.01, 0.003, -0.0005]
    with pytest.raises(ValueError, match="CameraInfo d: equidistant .* takes 4 coefficients"):
        camera_from_camera_info(info(d=[0.05, -0.01, 0.003, -0.0005, 0.1], model="equidistant"))


def test_unknown_model_name_is_named():
    with pytest.raises(ValueError, match="CameraInfo distortion_model: expected one of .* got 'mei'"):
        camera_from_camera_info(info(d=PLUMB, model="mei"))
    assert normalise_distortion("radtan", PLUMB)[0] == "plumb_bob"


def test_rosbags_camera_info_message_converts():
    from rosbags.typesys import Stores, get_typestore

    T = get_typestore(Stores.ROS2_JAZZY).types
    msg = T["sensor_msgs/msg/CameraInfo"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam"),
        height=1544, width=2064, distortion_model="", d=np.array(PLUMB), k=np.array([1200.0, 0, 1031.5, 0, 1180, 771.5,
                                                                                      0, 0, 1]),
        r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=2, binning_y=2,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    cam = camera_from_camera_info(msg, on_note=lambda _: None)
    assert (cam.width, cam.height, cam.distortion_model) == (1032, 772, "plumb_bob")
    assert cam.K[0, 2] == pytest.approx(515.75, abs=1e-12)
