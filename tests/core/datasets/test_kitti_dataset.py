"""crossi2p.datasets.kitti: KITTI Odometry sequences (write / lazy read) and real KITTI frames."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from crossi2p.calib_io import load_calibration_yaml, parse_kitti_calib
from crossi2p.camera import CameraModel
from crossi2p.datasets.kitti import (
    KittiRawDrive,
    KittiSequence,
    kitti_raw_calibration,
    load_kitti_frame,
    parse_kitti_raw_timestamps,
    read_kitti,
    read_kitti_raw,
    read_kitti_sequence,
    read_velodyne_bin,
    write_kitti_sequence,
    write_velodyne_bin,
)
from crossi2p.geometry import se3_exp, transform_points
from crossi2p.sample import Sample
from tests.fixtures import kitti_raw


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


# --------------------------------------------------------------------------- KITTI raw layout
def test_kitti_raw_2011_09_26_calibration_projects_velodyne_10_0_0_to_613_96_175_01(tmp_path):
    camera, T_cam_lidar = kitti_raw_calibration(kitti_raw.write_calibration(tmp_path / "2011_09_26"))
    assert (camera.width, camera.height) == (1242, 375) and camera.distortion_model == "none"
    np.testing.assert_allclose(camera.K, [[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]], atol=1e-9)
    uv, depth, in_view = camera.project_in_image(transform_points(T_cam_lidar, np.array([[10.0, 0.0, 0.0]])))
    np.testing.assert_allclose(uv[0], [613.96, 175.01], atol=0.01)
    assert in_view[0] and depth[0] == pytest.approx(9.7296, abs=1e-3)
    # exactly the devkit's P_rect_02 @ R_rect_00 @ [R|T]_velo_to_cam, whatever the point
    c2c = parse_kitti_calib(tmp_path / "2011_09_26" / "calib_cam_to_cam.txt")
    v2c = parse_kitti_calib(tmp_path / "2011_09_26" / "calib_velo_to_cam.txt")
    R0 = np.eye(4)
    R0[:3, :3] = c2c["R_rect_00"].reshape(3, 3)
    Tr = np.vstack([np.c_[v2c["R"].reshape(3, 3), v2c["T"]], [0, 0, 0, 1]])
    np.testing.assert_allclose(camera.K @ T_cam_lidar[:3], c2c["P_rect_02"].reshape(3, 4) @ R0 @ Tr, atol=1e-9)
    # camera 2 sits 6 cm from rectified camera 0: K^-1 P_rect_02[:, 3] = ((44.85728 - 609.5593 * 0.002745884)
    # / 721.5377, (0.2163791 - 172.854 * 0.002745884) / 721.5377, 0.002745884) m
    np.testing.assert_allclose(T_cam_lidar[:3, 3] - (R0 @ Tr)[:3, 3], [0.059849, -0.000358, 0.002746], atol=1e-6)


def test_kitti_raw_timestamps_parse_to_integer_nanoseconds(tmp_path):
    path = tmp_path / "timestamps.txt"
    path.write_text("2011-09-26 13:02:25.964389445\n2011-09-26 13:02:26.067574687\n2011-09-27 00:00:00\n")
    ns = parse_kitti_raw_timestamps(path)
    assert ns.dtype == np.int64
    assert ns.tolist() == [1317042145_964389445, 1317042146_067574687, 1317081600_000000000]
    assert (ns[1] - ns[0]) * 1e-9 == pytest.approx(0.103185242, abs=1e-12)
    path.write_text("2011-09-26 13:02:25.964389445\n0.103\n")
    with pytest.raises(ValueError, match=r"timestamps.txt: line 2 '0.103' is not a KITTI raw timestamp "
                                         r"'YYYY-MM-DD HH:MM:SS.nnnnnnnnn'"):
        parse_kitti_raw_timestamps(path)
    path.write_text("2011-02-30 13:02:25.5\n")
    with pytest.raises(ValueError, match="line 1 .* not a valid date"):
        parse_kitti_raw_timestamps(path)


def test_kitti_raw_drive_gives_samples_with_image_and_sweep_stamps(tmp_path):
    drive = kitti_raw.write_kitti_raw(tmp_path, frames=3)
    _, T_expected = kitti_raw_calibration(drive.parent)
    for path in (drive, drive.parent):  # the drive folder, or its date folder holding one drive
        ds = read_kitti_raw(path)
        assert isinstance(ds, KittiRawDrive) and ds.drive_dir == drive
        assert len(ds) == 3 and ds.frame_ids == ["0000000000", "0000000001", "0000000002"]
        for k, s in enumerate(ds):
            np.testing.assert_array_equal(s.image, kitti_raw.frame_image(k))
            np.testing.assert_array_equal(s.points, kitti_raw.frame_points(k))
            np.testing.assert_allclose(s.T_cam_lidar, T_expected, atol=1e-12)
            assert s.stamp_s == pytest.approx(kitti_raw.image_stamp_ns(k) * 1e-9, abs=1e-6)
            assert s.stamp_s - s.lidar_stamp_s == pytest.approx(0.0032, abs=1e-6)
        assert ds.times_ns[2] - ds.times_ns[0] == 2 * kitti_raw.PERIOD_NS  # exact, in integer ns
        assert (ds.camera.width, ds.camera.height) == (1242, 375)
    assert isinstance(read_kitti(drive), KittiRawDrive) and isinstance(read_kitti(drive.parent), KittiRawDrive)


def test_kitti_raw_calibration_copied_into_the_drive_folder_is_used(tmp_path):
    drive = kitti_raw.write_kitti_raw(tmp_path / "a", frames=2)
    moved = tmp_path / "b" / drive.name
    shutil.copytree(drive, moved)
    kitti_raw.write_calibration(moved)
    assert read_kitti_raw(moved).calib_dir == moved
    np.testing.assert_allclose(read_kitti_raw(moved).T_cam_lidar, read_kitti_raw(drive).T_cam_lidar, atol=0)


def test_kitti_raw_bad_layouts_name_what_is_missing(tmp_path):
    drive = kitti_raw.write_kitti_raw(tmp_path, frames=2)
    shutil.copytree(drive, drive.parent / "2011_09_26_drive_0002_sync")
    with pytest.raises(ValueError, match=r"KITTI raw date folder with 2 drives \(2011_09_26_drive_0001_sync, "
                                         r"2011_09_26_drive_0002_sync\); pass one drive folder"):
        read_kitti(drive.parent)
    (drive.parent / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(ValueError, match="no calib_cam_to_cam.txt"):
        read_kitti_raw(drive)[0]
    with pytest.raises(ValueError, match="neither a KITTI Odometry sequence .* nor a KITTI raw drive"):
        read_kitti(tmp_path / "2011_09_26" / "2011_09_26_drive_0001_sync" / "image_02")
    (drive / "velodyne_points" / "timestamps.txt").write_text("2011-09-26 13:02:25.9\n")
    with pytest.raises(ValueError, match=r"velodyne_points/timestamps.txt: 1 timestamps, but frame 0000000001 exists"):
        read_kitti_raw(drive)
    # one stamps file missing: the sweeps would be stamped from 1970, the images from 2011
    (drive / "velodyne_points" / "timestamps.txt").unlink()
    with pytest.raises(ValueError, match=r"velodyne_points/timestamps.txt: not found, while image_02/timestamps.txt is"):
        read_kitti_raw(drive)
    (drive / "image_02" / "timestamps.txt").unlink()       # both missing: frame numbers x 0.1 s for both
    assert read_kitti_raw(drive).lidar_times_s[1] == pytest.approx(0.1)


def test_read_kitti_still_opens_odometry_sequences(tmp_path):
    camera = CameraModel(np.array([[60.0, 0, 31.5], [0, 61.0, 11.5], [0, 0, 1]]), 64, 24)
    write_kitti_sequence(tmp_path / "00", synthetic_samples(camera, 2), camera, T_EXAMPLE)
    ds = read_kitti(tmp_path / "00")
    assert type(ds) is KittiSequence and len(ds) == 2
