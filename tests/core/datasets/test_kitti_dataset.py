"""crossi2p.datasets.kitti: KITTI Odometry sequences (write / lazy read) and real KITTI frames."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from crossi2p.calib_io import load_calibration_yaml, parse_kitti_calib
from crossi2p.camera import CameraModel
from crossi2p.datasets.kitti import (
    load_kitti_frame,
    read_kitti_sequence,
    read_velodyne_bin,
    write_kitti_sequence,
    write_velodyne_bin,
)
from crossi2p.geometry import se3_exp, transform_points
from crossi2p.sample import Sample


@pytest.fixture
def kitti(shared_data):
    """The real KITTI object-benchmark frame 000000 (../shared/data/real/kitti_000000)."""
    return shared_data / "real" / "kitti_000000"


T_EXAMPLE = se3_exp([0.27, -0.08, -0.06, 1.2, -1.2, 1.2])


def synthetic_samples(camera: CameraModel, n: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [Sample(image=rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8),
                   points=np.c_[rng.normal(0, 10, (100 + k, 3)), rng.uniform(0, 1, 100 + k)].astype(np.float32),
                   camera=camera, T_cam_lidar=T_EXAMPLE, stamp_s=0.1037 * k)
            for k in range(n)]


def test_write_then_read_sequence_round_trip(tmp_path):
    camera = CameraModel(np.array([[60.0, 0, 31.5], [0, 61.0, 11.5], [0, 0, 1]]), 64, 24)
    samples = synthetic_samples(camera, 3)
    seq = tmp_path / "sequences" / "00"
    assert write_kitti_sequence(seq, iter(samples), camera, T_EXAMPLE) == 3
    for name in ("image_2/000002.png", "velodyne/000002.bin", "calib.txt", "times.txt", "calib.yaml"):
        assert (seq / name).is_file(), name
    assert sorted(parse_kitti_calib(seq / "calib.txt")) == ["P0", "P1", "P2", "P3", "Tr"]

    ds = read_kitti_sequence(seq)
    assert len(ds) == 3 and ds.frame_ids == ["000000", "000001", "000002"]
    for k, s in enumerate(ds):
        np.testing.assert_array_equal(s.image, samples[k].image)
        np.testing.assert_array_equal(s.points, samples[k].points)
        np.testing.assert_allclose(s.T_cam_lidar, T_EXAMPLE, atol=1e-12)
        np.testing.assert_array_equal(s.camera.K, camera.K)
        assert s.stamp_s == pytest.approx(0.1037 * k, abs=1e-6) and s.frame_id == f"{k:06d}"
    assert ds[-1].frame_id == "000002"
    with pytest.raises(IndexError):
        ds[3]


def test_calib_txt_alone_gives_the_same_calibration(tmp_path):
    camera = CameraModel(np.array([[60.0, 0, 31.5], [0, 61.0, 11.5], [0, 0, 1]]), 64, 24)
    seq = tmp_path / "00"
    write_kitti_sequence(seq, synthetic_samples(camera, 1), camera, T_EXAMPLE)
    (seq / "calib.yaml").unlink()  # as in real KITTI
    ds = read_kitti_sequence(seq)
    np.testing.assert_allclose(ds.T_cam_lidar, T_EXAMPLE, atol=1e-11)
    np.testing.assert_allclose(ds.camera.K, camera.K, atol=1e-9)
    assert (ds.camera.width, ds.camera.height) == (64, 24)  # from the first image


def test_distortion_survives_through_calib_yaml(tmp_path):
    camera = CameraModel(np.array([[60.0, 0, 31.5], [0, 61.0, 11.5], [0, 0, 1]]), 64, 24, "plumb_bob",
                         np.array([-0.2, 0.05, 0.001, 0.002, 0.0]))
    write_kitti_sequence(tmp_path / "00", synthetic_samples(camera, 1), camera, T_EXAMPLE)
    got = read_kitti_sequence(tmp_path / "00").camera
    assert got.distortion_model == "plumb_bob"
    np.testing.assert_array_equal(got.distortion, camera.distortion)


def test_reading_is_lazy(tmp_path):
    camera = CameraModel(np.array([[60.0, 0, 31.5], [0, 61.0, 11.5], [0, 0, 1]]), 64, 24)
    write_kitti_sequence(tmp_path / "00", synthetic_samples(camera, 2), camera, T_EXAMPLE)
    ds = read_kitti_sequence(tmp_path / "00")
    replacement = np.ones((5, 4), np.float32)
    write_velodyne_bin(tmp_path / "00" / "velodyne" / "000001.bin", replacement)  # after opening
    np.testing.assert_array_equal(ds[1].points, replacement)


def test_truncated_bin_names_the_file(tmp_path):
    path = tmp_path / "000007.bin"
    path.write_bytes(np.zeros(10, "<f4").tobytes()[:-3])
    with pytest.raises(ValueError, match=r"000007\.bin: 37 bytes is not a multiple of 16"):
        read_velodyne_bin(path)
    camera = CameraModel(np.array([[60.0, 0, 31.5], [0, 61.0, 11.5], [0, 0, 1]]), 64, 24)
    write_kitti_sequence(tmp_path / "00", synthetic_samples(camera, 1), camera, T_EXAMPLE)
    bad = tmp_path / "00" / "velodyne" / "000000.bin"
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(ValueError, match=str(bad)):
        read_kitti_sequence(tmp_path / "00")[0]


def test_not_a_sequence_folder(tmp_path):
    with pytest.raises(ValueError, match=r"not a KITTI Odometry sequence folder \(no image_2/\)"):
        read_kitti_sequence(tmp_path)
    (tmp_path / "image_2").mkdir()
    (tmp_path / "velodyne").mkdir()
    with pytest.raises(ValueError, match="no frame has both"):
        read_kitti_sequence(tmp_path)


def test_real_kitti_frame_loads_and_projects(kitti):
    s = load_kitti_frame(kitti / "000000.png", kitti / "000000.bin", kitti / "000000.txt")
    assert s.image.shape == (370, 1224, 3)
    assert s.points.shape == (115384, 4) and 0 <= s.points[:, 3].min() and s.points[:, 3].max() <= 1
    record = load_calibration_yaml(kitti / "calib.yaml")
    np.testing.assert_allclose(s.T_cam_lidar, record.T_cam_lidar, atol=1e-6)

    uv, depth, in_view = s.camera.project_in_image(transform_points(s.T_cam_lidar, s.points))
    # Independent count with KITTI's own formula x = P2 @ R0_rect @ Tr_velo_to_cam @ X.
    raw = parse_kitti_calib(kitti / "000000.txt")
    R0 = np.eye(4)
    R0[:3, :3] = raw["R0_rect"].reshape(3, 3)
    Tr = np.vstack([raw["Tr_velo_to_cam"].reshape(3, 4), [0, 0, 0, 1]])
    x = (raw["P2"].reshape(3, 4) @ R0 @ Tr @ np.c_[s.points[:, :3], np.ones(len(s.points))].T).T
    front = x[:, 2] > 1e-3
    u, v = x[:, 0] / x[:, 2], x[:, 1] / x[:, 2]
    expected = front & (u >= -0.5) & (u < 1223.5) & (v >= -0.5) & (v < 369.5)
    assert abs(int(in_view.sum()) - int(expected.sum())) <= 2  # float32 vs float64 at the border
    assert 18_000 < in_view.sum() < 23_000  # ~18% of a 360 deg HDL-64E sweep falls in the image
    assert np.all(depth[in_view] > 0) and np.median(depth[in_view]) > 5


def test_real_kitti_files_as_an_odometry_sequence(tmp_path, kitti):
    """The real frame laid out as an Odometry sequence (Tr = R0_rect @ Tr_velo_to_cam) reads back."""
    seq = tmp_path / "sequences" / "00"
    (seq / "image_2").mkdir(parents=True)
    (seq / "velodyne").mkdir()
    shutil.copy(kitti / "000000.png", seq / "image_2")
    shutil.copy(kitti / "000000.bin", seq / "velodyne")
    raw = parse_kitti_calib(kitti / "000000.txt")
    R0 = np.eye(4)
    R0[:3, :3] = raw["R0_rect"].reshape(3, 3)
    Tr = (R0 @ np.vstack([raw["Tr_velo_to_cam"].reshape(3, 4), [0, 0, 0, 1]]))[:3]
    lines = [f"P{i}: " + " ".join(f"{v:.12e}" for v in raw[f"P{i}"]) for i in range(4)]
    (seq / "calib.txt").write_text("\n".join(lines + ["Tr: " + " ".join(f"{v:.12e}" for v in Tr.reshape(-1))]) + "\n")
    (seq / "times.txt").write_text("0.000000e+00\n")
    s = read_kitti_sequence(seq)[0]
    assert (s.camera.width, s.camera.height) == (1224, 370)
    np.testing.assert_allclose(s.T_cam_lidar, load_calibration_yaml(kitti / "calib.yaml").T_cam_lidar, atol=1e-6)
