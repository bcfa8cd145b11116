"""crossi2p.datasets.nuscenes on the committed fixture tests/fixtures/nuscenes_mini."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_generator_is_deterministic(tmp_path):
    subprocess.run([sys.executable, str(FIXTURES / "make_nuscenes_mini.py"), str(tmp_path)], check=True)
    for name in ["expected.json", *(p.relative_to(MINI).as_posix() for p in MINI.rglob("*.json")),
                 *(p.relative_to(MINI).as_posix() for p in MINI.rglob("*.pcd.bin"))]:
        assert (tmp_path / name).read_bytes() == (MINI / name).read_bytes(), name
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
