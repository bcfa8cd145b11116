"""crossi2p.datasets.pcd and the OpenCalib sample reader."""
from __future__ import annotations

import numpy as np
import pytest

from crossi2p.calib_io import load_calibration_yaml
from crossi2p.datasets.opencalib import load_opencalib_frame, read_opencalib_calibration
from crossi2p.datasets.pcd import read_pcd, read_pcd_xyzi, write_pcd
from crossi2p.geometry import transform_points

POINTS = np.array([[1.5, -2.25, 0.125, 0.5], [10.0, 0.0, -1.0, 1.0], [np.nan, np.nan, np.nan, 0.0]], np.float32)


@pytest.mark.parametrize("binary", [True, False])
def test_write_read_round_trip(tmp_path, binary):
    path = write_pcd(tmp_path / "c.pcd", POINTS, binary=binary)
    arr = read_pcd(path)
    assert arr.dtype.names == ("x", "y", "z", "intensity") and len(arr) == 3
    np.testing.assert_array_equal(read_pcd_xyzi(path), POINTS[:2])  # NaN point dropped


def test_binary_with_mixed_types_and_count(tmp_path):
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"), ("ring", "<u2"),
                   ("rgb", "<f8", (2,))])
    rec = np.zeros(4, dt)
    rec["x"], rec["intensity"], rec["ring"] = [1, 2, 3, 4], [0, 51, 102, 255], [7, 8, 9, 10]
    rec["rgb"] = np.arange(8).reshape(4, 2)
    header = ("VERSION .7\nFIELDS x y z intensity ring rgb\nSIZE 4 4 4 1 2 8\nTYPE F F F U U F\n"
              "COUNT 1 1 1 1 1 2\nWIDTH 4\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA binary\n")
    path = tmp_path / "mixed.pcd"
    path.write_bytes(header.encode() + rec.tobytes())
    arr = read_pcd(path)
    np.testing.assert_array_equal(arr["ring"], [7, 8, 9, 10])
    np.testing.assert_array_equal(arr["rgb"], rec["rgb"])
    np.testing.assert_allclose(read_pcd_xyzi(path)[:, 3], [0, 0.2, 0.4, 1.0])


def test_ascii_with_count_field(tmp_path):
    path = tmp_path / "a.pcd"
    path.write_text("FIELDS x y z normal\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 3\nWIDTH 2\nHEIGHT 1\n"
                    "POINTS 2\nDATA ascii\n1 2 3 0 0 1\n4 5 6 0 1 0\n")
    arr = read_pcd(path)
    np.testing.assert_array_equal(arr["normal"], [[0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(read_pcd_xyzi(path), [[1, 2, 3, 0], [4, 5, 6, 0]])


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-5], "expected POINTS 3 x 16 = 48 (truncated?)"),
    (lambda b: b.replace(b"FIELDS x y z intensity\n", b""), "header has no FIELDS line"),
    (lambda b: b.replace(b"DATA binary", b"DATA binary_compressed"), "'binary_compressed' is not supported"),
    (lambda b: b.replace(b"TYPE F F F F", b"TYPE F F Q F"), "bad SIZE/TYPE/COUNT"),
    (lambda b: b.split(b"DATA")[0], "header ends before a DATA line"),
])
def test_corrupt_binary_pcd_names_the_file(tmp_path, mutate, message):
    path = tmp_path / "corrupt.pcd"
    path.write_bytes(mutate(write_pcd(tmp_path / "ok.pcd", POINTS).read_bytes()))
    with pytest.raises(ValueError) as info:
        read_pcd(path)
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("body, message", [
    ("1 2 3 4\n5 6 7\n", "7 ascii values, expected POINTS 2 x 4 = 8"),
    ("1 2 3 4\n5 6 seven 8\n", "non-numeric value"),
])
def test_corrupt_ascii_pcd_names_the_file(tmp_path, body, message):
    path = tmp_path / "corrupt_ascii.pcd"
    path.write_text("FIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nWIDTH 2\nPOINTS 2\nDATA ascii\n" + body)
    with pytest.raises(ValueError) as info:
        read_pcd(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_xyz_in_pcd_names_the_file(tmp_path):
    path = tmp_path / "noz.pcd"
    path.write_text("FIELDS x y\nSIZE 4 4\nTYPE F F\nPOINTS 1\nDATA ascii\n1 2\n")
    with pytest.raises(ValueError, match=f"{path}: no field"):
        read_pcd_xyzi(path)


@pytest.fixture
def opencalib(shared_data):
    """The real OpenCalib lidar2camera sample (../shared/data/real/opencalib_manual_0)."""
    return shared_data / "real" / "opencalib_manual_0"


def test_real_opencalib_pcd_ascii(opencalib):
    arr = read_pcd(opencalib / "0.pcd")
    assert len(arr) == 78238 and arr.dtype.names == ("x", "y", "z", "intensity")
    np.testing.assert_allclose([arr["x"][0], arr["y"][0], arr["z"][0], arr["intensity"][0]],
                               [21.647913, 0.19822195, -1.8524752, 11], rtol=1e-6)
    xyzi = read_pcd_xyzi(opencalib / "0.pcd")
    assert xyzi.dtype == np.float32 and xyzi[:, 3].max() <= 1.0
    assert xyzi[0, 3] == pytest.approx(11 / 255)


def test_real_opencalib_frame_matches_its_record_and_projects(opencalib):
    s = load_opencalib_frame(opencalib)
    record = load_calibration_yaml(opencalib / "calib.yaml")
    assert s.image.shape == (1200, 1920, 3) and (s.camera.width, s.camera.height) == (1920, 1200)
    np.testing.assert_allclose(s.T_cam_lidar, record.T_cam_lidar, atol=1e-9)
    np.testing.assert_allclose(s.camera.K, record.camera.K, atol=1e-9)
    np.testing.assert_allclose(s.camera.distortion, record.camera.distortion, atol=1e-9)
    _, depth, in_view = s.camera.project_in_image(transform_points(s.T_cam_lidar, s.points))
    assert 8_000 < in_view.sum() < 12_000 and np.all(depth[in_view] > 0)


def test_opencalib_json_without_key_names_the_file(tmp_path):
    (tmp_path / "cam-intrinsic.json").write_text('{"cam-intrinsic": {"param": {"cam_K": {"data": [[1,0,0],[0,1,0],[0,0,1]]}}}}')
    (tmp_path / "lidar-to-cam-extrinsic.json").write_text('{"x": {"param": {"sensor_calib": {"data": []}}}}')
    with pytest.raises(ValueError, match=r"cam-intrinsic\.json: missing key 'param\.cam_dist\.data'"):
        read_opencalib_calibration(tmp_path, 10, 10)
