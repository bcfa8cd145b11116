"""crossi2p.datasets.nuscenes on the committed fixture tests/fixtures/nuscenes_mini."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from crossi2p.datasets.nuscenes import read_nuscenes, read_nuscenes_lidar_bin
from crossi2p.geometry import transform_points

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MINI = FIXTURES / "nuscenes_mini"
EXPECTED = json.loads((MINI / "expected.json").read_text())


def test_pairs_key_frames_of_the_same_sample():
    ds = read_nuscenes(MINI)
    assert ds.version == "v1.0-mini" and len(ds) == 2  # the non-key-frame camera image is skipped
    assert [s.frame_id for s in ds] == list(EXPECTED)
    for s in ds:
        assert s.image.shape == (48, 64, 3) and s.points.shape == (45, 4)
        assert s.stamp_s - s.lidar_stamp_s == pytest.approx(0.020, abs=1e-5)
        assert s.camera.distortion_model == "none" and s.camera.fx == 40.0


def test_extrinsic_is_ego_motion_compensated_ground_truth():
    ds = read_nuscenes(MINI)
    for k, s in enumerate(ds):
        np.testing.assert_allclose(s.T_cam_lidar, EXPECTED[s.frame_id]["T_cam_lidar"], atol=1e-9)
        # The car moves 10 m/s x 20 ms between the two captures: the rig-only extrinsic is 0.2 m off.
        gap = np.linalg.norm(ds.rig_T_cam_lidar(k)[:3, 3] - s.T_cam_lidar[:3, 3])
        assert gap == pytest.approx(0.2, abs=0.01)


def test_landmark_points_project_onto_the_white_squares():
    for s in read_nuscenes(MINI):
        bright = s.points[s.points[:, 3] > 0.5]  # the 5 landmarks (intensity 200/255)
        assert len(bright) == 5
        uv, _, in_view = s.camera.project_in_image(transform_points(s.T_cam_lidar, bright))
        assert in_view.sum() >= 4
        np.testing.assert_allclose(uv[in_view], np.array(EXPECTED[s.frame_id]["landmark_uv"])[in_view], atol=1e-6)
        for u, v in uv[in_view]:
            assert s.image[int(round(v)), int(round(u))].min() > 200  # white square (jpeg, dark background)


def assert_same_json(got, want, where: str, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    """Parsed JSON ``got`` equals ``want``: same keys, lengths, strings and integers; floats within
    ``rtol``/``atol`` (a float computed with another libm/BLAS may print a different last digit)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same_json(got[key], want[key], f"{where}.{key}", rtol, atol)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for k, (g, w) in enumerate(zip(got, want)):
            assert_same_json(g, w, f"{where}[{k}]", rtol, atol)
    elif isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), f"{where}: {got!r} is not a number"
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=where)
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def test_generator_is_deterministic(tmp_path):
    """Re-generating the fixture gives the committed one: the same tables and tokens, numbers equal
    to a tolerance (not the bytes of printed floats, whose last digit differs between machines)."""
    subprocess.run([sys.executable, str(FIXTURES / "make_nuscenes_mini.py"), str(tmp_path)], check=True)
    committed = sorted(p.relative_to(MINI).as_posix() for p in MINI.rglob("*") if p.is_file())
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == committed
    for name in committed:
        got, want = tmp_path / name, MINI / name
        if name.endswith(".json"):
            assert_same_json(json.loads(got.read_text()), json.loads(want.read_text()), name)
        elif name.endswith(".pcd.bin"):  # float32 x, y, z, intensity, ring
            a, b = (np.fromfile(f, dtype="<f4").reshape(-1, 5) for f in (got, want))
            assert a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5, err_msg=name)
        elif name.endswith(".jpg"):  # JPEG encoders differ by a few levels; a moved square by ~200
            a, b = (cv2.imread(str(f), cv2.IMREAD_COLOR).astype(np.int16) for f in (got, want))
            diff = np.abs(a - b)
            assert a.shape == b.shape and diff.max() <= 64 and np.percentile(diff, 99) <= 8, name
    total = sum(p.stat().st_size for p in MINI.rglob("*") if p.is_file())
    assert total < 40_000  # "few KB"


def test_truncated_lidar_file_names_it(tmp_path):
    path = tmp_path / "x.pcd.bin"
    path.write_bytes(b"\0" * 42)
    with pytest.raises(ValueError, match=r"x\.pcd\.bin: 42 bytes is not a multiple of 20"):
        read_nuscenes_lidar_bin(path)


@pytest.mark.parametrize("table, edit, message", [
    ("calibrated_sensor", lambda t: [{k: v for k, v in r.items() if k != "rotation"} for r in t],
     "calibrated_sensor.json record .*: missing key 'rotation'"),
    ("sample_data", lambda t: [{k: v for k, v in r.items() if k != "is_key_frame"} for r in t],
     "sample_data.json: record .* has no key 'is_key_frame'"),
    ("sensor", lambda t: [dict(r, channel="CAM_BACK") if r["channel"] == "CAM_FRONT" else r for r in t],
     r"sensor.json: no channel 'CAM_FRONT' \(channels: \['CAM_BACK', 'LIDAR_TOP'\]\)"),
    ("ego_pose", None, "ego_pose.json: missing nuScenes table"),
])
def test_wrong_tables_name_the_file_and_key(tmp_path, table, edit, message):
    root = tmp_path / "mini"
    shutil.copytree(MINI, root)
    path = root / "v1.0-mini" / f"{table}.json"
    if edit is None:
        path.unlink()
    else:
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(ValueError, match=message):
        ds = read_nuscenes(root)
        [ds.T_cam_lidar(k) for k in range(len(ds))]


def test_malformed_camera_intrinsic_names_file_sensor_and_3x3(tmp_path):
    root = tmp_path / "mini"
    shutil.copytree(MINI, root)
    path = root / "v1.0-mini" / "calibrated_sensor.json"
    records = json.loads(path.read_text())
    for r in records:
        if r["camera_intrinsic"]:
            r["camera_intrinsic"] = r["camera_intrinsic"][:2]
    path.write_text(json.dumps(records))
    with pytest.raises(ValueError, match=r"calibrated_sensor.json record \S+ \(CAM_FRONT\): expected a 3x3 "
                                         r"camera_intrinsic \(3 rows of 3 numbers\), got shape \(2, 3\)$"):
        read_nuscenes(root)[0]
