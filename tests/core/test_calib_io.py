"""crossi2p.calib_io: calibration YAML, URDF snippet, KITTI and nuScenes calibration."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from crossi2p.calib_io import (
    kitti_calib_txt,
    kitti_calibration,
    load_calibration_yaml,
    normalise_distortion_model,
    nuscenes_camera,
    nuscenes_transform,
    parse_kitti_calib,
    save_calibration_yaml,
    urdf_joint_snippet,
)
from crossi2p.camera import CameraModel
from crossi2p.geometry import invert_transform, make_transform, se3_exp, transform_points

T_EXAMPLE = se3_exp([0.05, -0.3, -0.2, 1.2, -1.1, 1.3])
CAMERA = CameraModel(np.array([[700.0, 0, 640.5], [0, 702.0, 360.25], [0, 0, 1]]), 1280, 720, "plumb_bob",
                     np.array([-0.1, 0.02, 0.001, -0.0005, 0.003]))


def test_yaml_round_trip_is_exact_and_documents_frames(tmp_path):
    cov = np.diag([1e-4, 2e-4, 3e-4, 1e-6, 2e-6, 3e-6])
    path = save_calibration_yaml(tmp_path / "sub" / "calib.yaml", T_EXAMPLE, CAMERA, lidar_frame="velodyne",
                                 camera_frame="cam_front_optical", covariance=cov, metadata={"model": "x.onnx"})
    calib = load_calibration_yaml(path)
    np.testing.assert_array_equal(calib.T_cam_lidar, T_EXAMPLE)
    np.testing.assert_array_equal(calib.camera.K, CAMERA.K)
    np.testing.assert_array_equal(calib.camera.distortion, CAMERA.distortion)
    assert (calib.camera.width, calib.camera.height, calib.camera.distortion_model) == (1280, 720, "plumb_bob")
    assert (calib.lidar_frame, calib.camera_frame) == ("velodyne", "cam_front_optical")
    np.testing.assert_array_equal(calib.covariance, cov)
    assert calib.metadata == {"model": "x.onnx"} and calib.version == 1
    raw = yaml.safe_load(path.read_text())
    assert raw["frames"] == {"parent": "velodyne", "child": "cam_front_optical"}
    q = Rotation.from_matrix(T_EXAMPLE[:3, :3]).as_quat()
    assert np.allclose(raw["translation"], T_EXAMPLE[:3, 3]) and np.allclose(np.abs(raw["quaternion_xyzw"]), np.abs(q))
    assert "inv(T_cam_lidar)" in path.read_text()  # the header comment states the tf direction


def test_translation_quaternion_alone_define_the_extrinsic(tmp_path):
    save_calibration_yaml(tmp_path / "c.yaml", T_EXAMPLE, CAMERA)
    raw = yaml.safe_load((tmp_path / "c.yaml").read_text())
    del raw["T_cam_lidar"]
    (tmp_path / "tq.yaml").write_text(yaml.safe_dump(raw))
    np.testing.assert_allclose(load_calibration_yaml(tmp_path / "tq.yaml").T_cam_lidar, T_EXAMPLE, atol=1e-12)


def test_disagreeing_quaternion_is_rejected(tmp_path):
    save_calibration_yaml(tmp_path / "c.yaml", T_EXAMPLE, CAMERA)
    raw = yaml.safe_load((tmp_path / "c.yaml").read_text())
    raw["quaternion_xyzw"] = [0, 0, 0, 1]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="bad.yaml: translation/quaternion_xyzw disagree .* deg, .* m apart"):
        load_calibration_yaml(tmp_path / "bad.yaml")


def test_a_translation_without_its_quaternion_is_not_ignored(tmp_path):
    """Editing ``translation`` alone (T_cam_lidar is what is read) would otherwise do nothing."""
    save_calibration_yaml(tmp_path / "c.yaml", T_EXAMPLE, CAMERA)
    raw = yaml.safe_load((tmp_path / "c.yaml").read_text())
    del raw["quaternion_xyzw"]
    raw["translation"] = [5.0, 5.0, 5.0]
    (tmp_path / "lone.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="lone.yaml: 'translation' without 'quaternion_xyzw'"):
        load_calibration_yaml(tmp_path / "lone.yaml")


@pytest.mark.parametrize("drop, key", [("K", "'K'"), ("width", "'width'"), ("T_cam_lidar", "'T_cam_lidar'")])
def test_missing_key_names_file_and_key(tmp_path, drop, key):
    save_calibration_yaml(tmp_path / "c.yaml", T_EXAMPLE, CAMERA)
    raw = yaml.safe_load((tmp_path / "c.yaml").read_text())
    del raw[drop]
    raw.pop("translation")
    path = tmp_path / "wrong_keys.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as info:
        load_calibration_yaml(path)
    assert str(path) in str(info.value) and f"missing key {key}" in str(info.value)


@pytest.mark.parametrize("content, message", [
    ("- 1\n- 2\n", "expected a YAML mapping"),
    ("K: [[1, 0, 0], [0, 1, 0]]\nwidth: 2\nheight: 2\nT_cam_lidar: [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]\n",
     r"key 'K' expected shape \(3, 3\)"),
    ("K: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\nwidth: 2\nheight: 2\nT_cam_lidar: [[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]\n",
     "not a proper rotation"),
    ("K: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\nwidth: 2\nheight: 2\nT_cam_lidar: [[1,0,0,0],[0,1,0],[0,0,1,0],[0,0,0,1]]\n",
     r"key 'T_cam_lidar' expected a numeric 4x4 matrix \(4 rows of 4 numbers\), got \[\[1, 0, 0, 0\], \[0, 1, 0\]"),
    ("version: 7\n", "schema version 7 is newer"),
    ("a: [\n", "not valid YAML"),
])
def test_malformed_yaml_names_the_file(tmp_path, content, message):
    path = tmp_path / "broken.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_calibration_yaml(path)
    assert str(path) in str(info.value)


def test_distortion_model_aliases():
    assert normalise_distortion_model("radtan (OpenCV plumb_bob: k1, k2, p1, p2)") == "plumb_bob"
    assert normalise_distortion_model("Fisheye") == "equidistant"
    assert normalise_distortion_model(None) == "none"
    assert normalise_distortion_model("rational_polynomial") == "rational_polynomial"


def test_real_normalised_records_load(shared_data):
    real = shared_data / "real"
    kitti = load_calibration_yaml(real / "kitti_000000" / "calib.yaml")
    assert (kitti.camera.width, kitti.camera.height, kitti.camera.distortion_model) == (1224, 370, "none")
    assert kitti.camera.K[0, 0] == pytest.approx(707.0493)
    assert "derivation" in kitti.metadata
    oc = load_calibration_yaml(real / "opencalib_manual_0" / "calib.yaml")
    assert oc.camera.distortion_model == "plumb_bob" and oc.camera.distortion.size == 5
    assert oc.camera.distortion[4] == 0.0 and oc.camera.distortion[0] == pytest.approx(-0.10814499855)
    assert oc.T_cam_lidar[2, 0] == pytest.approx(0.99985)


def test_urdf_joint_carries_the_camera_pose_in_the_lidar_frame():
    # LiDAR x forward, y left, z up; camera 1.5 m ahead, 0.2 m up, looking forward (optical axes).
    R_lidar_cam = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=float)  # columns: cam axes in lidar
    T_lidar_cam = make_transform(R_lidar_cam, [1.5, 0.0, 0.2])
    snippet = urdf_joint_snippet(invert_transform(T_lidar_cam), "velodyne", "camera_optical")
    joint = ET.fromstring(snippet[snippet.index("<joint"):])
    assert joint.get("type") == "fixed"
    assert joint.find("parent").get("link") == "velodyne" and joint.find("child").get("link") == "camera_optical"
    xyz = np.array(joint.find("origin").get("xyz").split(), float)
    rpy = np.array(joint.find("origin").get("rpy").split(), float)
    np.testing.assert_allclose(xyz, [1.5, 0.0, 0.2], atol=1e-9)
    np.testing.assert_allclose(rpy, [-np.pi / 2, 0.0, -np.pi / 2], atol=1e-8)  # the usual optical-frame rpy
    # URDF rpy: R = Rz(yaw) Ry(pitch) Rx(roll); a point on the optical axis lands ahead of the LiDAR.
    r, p, y = rpy
    R = Rotation.from_euler("z", y).as_matrix() @ Rotation.from_euler("y", p).as_matrix() @ Rotation.from_euler("x", r).as_matrix()
    np.testing.assert_allclose(R @ [0, 0, 10.0] + xyz, [11.5, 0, 0.2], atol=1e-7)
    # General transform: the joint origin rebuilds inv(T_cam_lidar).
    j = ET.fromstring(urdf_joint_snippet(T_EXAMPLE).split("-->\n")[1])
    rebuilt = make_transform(Rotation.from_euler("xyz", np.array(j.find("origin").get("rpy").split(), float)),
                             np.array(j.find("origin").get("xyz").split(), float))
    np.testing.assert_allclose(rebuilt, invert_transform(T_EXAMPLE), atol=1e-8)


# ------------------------------------------------------------------ KITTI
def test_kitti_object_calib_matches_the_normalised_record_and_p2(shared_data):
    real = shared_data / "real"
    calib_txt = real / "kitti_000000" / "000000.txt"
    camera, T = kitti_calibration(calib_txt, 1224, 370)
    record = load_calibration_yaml(real / "kitti_000000" / "calib.yaml")
    np.testing.assert_allclose(T, record.T_cam_lidar, atol=1e-6)
    np.testing.assert_allclose(camera.K, record.camera.K, atol=1e-9)
    raw = parse_kitti_calib(calib_txt)
    P2 = raw["P2"].reshape(3, 4)
    R0 = np.eye(4)
    R0[:3, :3] = raw["R0_rect"].reshape(3, 3)
    Tr = np.vstack([raw["Tr_velo_to_cam"].reshape(3, 4), [0, 0, 0, 1]])
    np.testing.assert_allclose(camera.K @ T[:3], P2 @ R0 @ Tr, atol=1e-9)
    # camera 2 sits at K^-1 P2[:, 3] from rectified camera 0: mostly the baseline P2[0,3]/fx (6 cm)
    offset = (T @ np.linalg.inv(R0 @ Tr))[:3, 3]
    np.testing.assert_allclose(offset, np.linalg.solve(camera.K, P2[:, 3]), atol=1e-12)
    np.testing.assert_allclose(offset, [0.0604617, -0.00176016, 0.00498102], atol=1e-7)  # calib.yaml's derivation
    assert offset[0] == pytest.approx(P2[0, 3] / P2[0, 0], abs=5e-3)  # P2[0,3]/fx alone misses cx * t_z


ODOMETRY_CALIB = """\
P0: 7.188560000000e+02 0.000000000000e+00 6.071928000000e+02 0.000000000000e+00 0.000000000000e+00 7.188560000000e+02 1.852157000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P1: 7.188560000000e+02 0.000000000000e+00 6.071928000000e+02 -3.861448000000e+02 0.000000000000e+00 7.188560000000e+02 1.852157000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P2: 7.188560000000e+02 0.000000000000e+00 6.071928000000e+02 4.538225000000e+01 0.000000000000e+00 7.188560000000e+02 1.852157000000e+02 -1.130887000000e-01 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 3.779761000000e-03
P3: 7.188560000000e+02 0.000000000000e+00 6.071928000000e+02 -3.372877000000e+02 0.000000000000e+00 7.188560000000e+02 1.852157000000e+02 2.369057000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 4.915215000000e-03
Tr: 4.276802385584e-04 -9.999672484946e-01 -8.084491683471e-03 -1.198459927713e-02 -7.210626507497e-03 8.081198471645e-03 -9.999413164504e-01 -5.403984729748e-02 9.999738645903e-01 4.859485810390e-04 -7.206933692422e-03 -2.921968648686e-01
"""


def test_kitti_odometry_calib_includes_the_camera_offset(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(ODOMETRY_CALIB)
    camera, T = kitti_calibration(path, 1241, 376, camera_index=2)
    raw = parse_kitti_calib(path)
    Tr = np.vstack([raw["Tr"].reshape(3, 4), [0, 0, 0, 1]])
    np.testing.assert_allclose(camera.K @ T[:3], raw["P2"].reshape(3, 4) @ Tr, atol=1e-9)
    offset = T[:3, 3] - Tr[:3, 3]  # rotation of [I | t] is I: the offset adds to Tr's translation
    np.testing.assert_allclose(offset, np.linalg.solve(camera.K, raw["P2"].reshape(3, 4)[:, 3]), atol=1e-12)
    assert offset[0] == pytest.approx(4.538225e01 / 7.18856e02, abs=5e-3)  # ~ baseline P2[0,3] / fx
    cam0, T0 = kitti_calibration(path, 1241, 376, camera_index=0)
    np.testing.assert_allclose(T0, Tr, atol=1e-12)
    assert (camera.width, camera.height, camera.distortion_model) == (1241, 376, "none")


def test_kitti_calib_txt_round_trip(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(kitti_calib_txt(CAMERA, T_EXAMPLE))
    assert [line.split(":")[0] for line in path.read_text().splitlines()] == ["P0", "P1", "P2", "P3", "Tr"]
    camera, T = kitti_calibration(path, CAMERA.width, CAMERA.height)
    np.testing.assert_allclose(T, T_EXAMPLE, atol=1e-11)
    np.testing.assert_allclose(camera.K, CAMERA.K, atol=1e-9)


@pytest.mark.parametrize("text, key", [
    (ODOMETRY_CALIB.replace("Tr:", "Tx:"), "'Tr'"),
    (ODOMETRY_CALIB.replace("Tr:", "Tr_velo_to_cam:"), "'R0_rect'"),
    (ODOMETRY_CALIB.replace("P2: 7.188560000000e+02", "P2: 0"), "P2"),
    (ODOMETRY_CALIB.replace("P2:", "PX:"), "'P2'"),
    ("calib_time: 09-Jan-2012 13:57:47\n", "no 'KEY: numbers' lines"),
])
def test_kitti_calib_wrong_keys_name_file_and_key(tmp_path, text, key):
    path = tmp_path / "calib_wrong.txt"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        kitti_calibration(path, 100, 100)
    assert str(path) in str(info.value) and key in str(info.value)


@pytest.mark.parametrize("old, new, message", [
    # a value that is not a number: the file, the line, the key, what was expected (not "missing key")
    ("P2: 7.188560000000e+02", "P2: 7.188560000000e+02 abc", r"line 3, key 'P2': 'abc' is not a number \(expected 12 numbers\)"),
    ("Tr: 4.276802385584e-04", "Tr: x4.276802385584e-04", r"line 5, key 'Tr': 'x4.276802385584e-04' is not a number \(expected 12 numbers\)"),
    # the wrong number of values
    ("P2: 7.188560000000e+02 0.000000000000e+00", "P2:", r"line 3, key 'P2' has 10 values, expected 12 numbers"),
])
def test_kitti_calib_malformed_line_names_file_line_and_expected_count(tmp_path, old, new, message):
    path = tmp_path / "calib.txt"
    path.write_text(ODOMETRY_CALIB.replace(old, new, 1))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: {message}$"):
        kitti_calibration(path, 1241, 376, camera_index=2)


def test_kitti_calib_only_malformed_lines_names_the_first(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("P2: 1 2 abc\n")
    with pytest.raises(ValueError, match=r"no 'KEY: numbers' lines found; .* \(line 1 'P2': 'abc' is not a number\)"):
        kitti_calibration(path, 100, 100)


def test_kitti_raw_calib_malformed_line_names_file_and_key(tmp_path):
    from crossi2p.datasets.kitti import kitti_raw_calibration
    (tmp_path / "calib_velo_to_cam.txt").write_text(
        "calib_time: 15-Mar-2012 11:37:16\nR: 1 0 0 0 1 0 0 0 1\nT: 0 0 oops\n")
    (tmp_path / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\nR_rect_00: 1 0 0 0 1 0 0 0 1\n"
        "P_rect_02: 700 0 600 0 0 700 180 0 0 0 1 0\nS_rect_02: 1242 375 1\n")
    with pytest.raises(ValueError, match=r"calib_velo_to_cam.txt: line 3, key 'T': 'oops' is not a number "
                                         r"\(expected 3 numbers\)$"):
        kitti_raw_calibration(tmp_path)
    (tmp_path / "calib_velo_to_cam.txt").write_text("R: 1 0 0 0 1 0 0 0 1\nT: 0 0 0\n")
    with pytest.raises(ValueError, match=r"calib_cam_to_cam.txt: line 4, key 'S_rect_02' has 3 values, "
                                         r"expected 2 numbers$"):
        kitti_raw_calibration(tmp_path)


# ------------------------------------------------------------------ nuScenes
def test_nuscenes_records_use_wxyz_quaternions():
    record = {"translation": [1.0, 2.0, 3.0], "rotation": [np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]}
    T_ego_sensor = nuscenes_transform(record)
    np.testing.assert_allclose(transform_points(T_ego_sensor, np.array([[1.0, 0, 0]])), [[1.0, 3.0, 3.0]], atol=1e-12)
    camera = nuscenes_camera({"camera_intrinsic": [[1266.4, 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]]}, 1600, 900)
    assert camera.distortion_model == "none" and camera.fx == pytest.approx(1266.4)


def test_nuscenes_record_without_key_names_source():
    with pytest.raises(ValueError, match="calibrated_sensor.json record abc: missing key 'rotation'"):
        nuscenes_transform({"translation": [0, 0, 0]}, source="calibrated_sensor.json record abc")
    with pytest.raises(ValueError, match="missing key 'camera_intrinsic'"):
        nuscenes_camera({"camera_intrinsic": []}, 10, 10)



@pytest.mark.parametrize("K, got", [
    ([1266.4, 0, 816.3, 0, 1266.4, 491.5, 0, 0, 1], r"shape \(9,\)"),
    ([[1266.4, 0, 816.3], [0, 1266.4, 491.5]], r"shape \(2, 3\)"),
    ([[1266.4, 0, 816.3], [0, 1266.4], [0, 0, 1]], "not numbers in rows of equal length"),
    ([["a", 0, 816.3], [0, 1266.4, 491.5], [0, 0, 1]], "not numbers in rows of equal length"),
])
def test_nuscenes_malformed_camera_intrinsic_names_source_and_3x3(K, got):
    with pytest.raises(ValueError, match=rf"^calibrated_sensor.json record abc: expected a 3x3 camera_intrinsic "
                                         rf"\(3 rows of 3 numbers\), got {got}$"):
        nuscenes_camera({"camera_intrinsic": K}, 1600, 900, source="calibrated_sensor.json record abc")


def test_nuscenes_malformed_rotation_names_source_and_expected_count():
    with pytest.raises(ValueError, match=r"^rec: rotation: expected 4 numbers \(a \(w, x, y, z\) quaternion\), "
                                         r"got shape \(3,\)$"):
        nuscenes_transform({"translation": [0, 0, 0], "rotation": [1, 0, 0]}, source="rec")

def _record(tmp_path, **changes):
    path = save_calibration_yaml(tmp_path / "calib.yaml", T_EXAMPLE, CAMERA)
    record = yaml.safe_load(path.read_text())
    record.update(changes)
    path.write_text(yaml.safe_dump(record))
    return path


def test_yaml_distortion_is_read_as_camera_info_is(tmp_path):
    """The same coefficient reading as CameraInfo: plumb_bob with zero extras is 5 coefficients,
    with non-zero k4..k6 OpenCV's rational model, all zeros a pinhole."""
    d5 = CAMERA.distortion.tolist()
    cam = load_calibration_yaml(_record(tmp_path, distortion=d5 + [0.0, 0.0, 0.0])).camera
    assert cam.distortion_model == "plumb_bob" and cam.distortion.tolist() == d5
    cam = load_calibration_yaml(_record(tmp_path, distortion=d5 + [0.1, 0.0, 0.02])).camera
    assert cam.distortion_model == "rational_polynomial" and cam.distortion.tolist() == d5 + [0.1, 0.0, 0.02]
    cam = load_calibration_yaml(_record(tmp_path, distortion=[0.0] * 5)).camera
    assert cam.distortion_model == "none" and cam.distortion.size == 0


def test_yaml_with_skew_or_thin_prism_names_file_and_field(tmp_path):
    K = CAMERA.K.tolist()
    K[0][1] = 1.5
    path = _record(tmp_path, K=K)
    with pytest.raises(ValueError, match=rf"{path}: camera K\[0,1\] \(skew\) = 1.5 is not supported"):
        load_calibration_yaml(path)
    path = _record(tmp_path, distortion=CAMERA.distortion.tolist() + [0, 0, 0, 0.01, 0, 0, 0])
    with pytest.raises(ValueError, match=rf"{path} key 'distortion': thin-prism/tilt coefficients"):
        load_calibration_yaml(path)
