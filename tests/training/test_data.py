"""The training dataset: deterministic by seed, the protocol perturbation keeps the geometry (the
perturbed ground truth projects the perturbed points onto the same pixels), and every source
(simulator on the fly, simulator cache, KITTI folders, rosbag2) yields the same kind of item."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from crossi2p.camera import CameraModel
from crossi2p.geometry import invert_transform, rotation_angle_deg, transform_points
from crossi2p.preprocess import PreprocessConfig
from crossi2p_training import data as data_mod
from crossi2p_training.data import (CalibrationDataset, KittiSource, PhotometricAugment, Rosbag2Source,
                                    SimCacheSource, SimulatorSource, collate_items, load_sample_npz,
                                    save_sample_npz)
from crossi2p_training.sim import SimConfig, simulate_drive, simulate_sample

SIM = SimConfig.preset("small")
PRE = PreprocessConfig(image_height=64, image_width=192, num_points=1024)


@pytest.fixture(scope="module")
def source():
    return SimulatorSource(SIM, base_seed=100, frames=3)


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


def test_item_is_deterministic_by_seed_epoch_and_index(source):
    ds = CalibrationDataset(source, PRE, "global", seed=7, photometric=PhotometricAugment())
    a, b = ds[1], CalibrationDataset(source, PRE, "global", seed=7, photometric=PhotometricAugment())[1]
    assert _equal(a, b)
    assert a["image"].shape == (3, 64, 192) and a["points"].shape == (1024, 4) and a["K"].shape == (3, 3)
    assert a["prior_weight"] == 0 and torch.equal(a["T_prior"], torch.eye(4))
    assert not torch.equal(ds[2]["T_pert"], a["T_pert"])                    # other index, other draw
    ds.set_epoch(1)
    c = ds[1]
    assert not torch.equal(c["T_pert"], a["T_pert"]) and not torch.equal(c["points"], a["points"])
    other = CalibrationDataset(source, PRE, "global", seed=8)[1]
    assert not torch.equal(other["T_pert"], a["T_pert"])


def test_simulator_source_frame_i_is_seed_base_plus_i(source):
    s = source[2]
    ref = simulate_sample(SIM, 102)
    assert np.array_equal(s.image, ref.image) and np.array_equal(s.points, ref.points)
    assert np.allclose(s.T_cam_lidar, ref.T_cam_lidar)


@pytest.mark.parametrize("protocol", ["global", "refine"])
def test_perturbed_ground_truth_projects_points_onto_the_same_pixels(source, protocol):
    plain = CalibrationDataset(source, PRE, "none", seed=3)[0]        # same point subsample, no perturbation
    item = CalibrationDataset(source, PRE, protocol, seed=3)[0]
    sample = source[0]
    camera = CameraModel(item["K"].double().numpy(), PRE.image_width, PRE.image_height)
    uv0, _, in0 = camera.project_in_image(transform_points(sample.T_cam_lidar, plain["points"].double().numpy()))
    uv1, _, in1 = camera.project_in_image(transform_points(item["T_cam_lidar"].double().numpy(),
                                                           item["points"].double().numpy()))
    assert in0.sum() > 50
    assert np.array_equal(in0, in1)
    assert np.abs(uv0[in0] - uv1[in1]).max() < 0.02
    T_pert = item["T_pert"].double().numpy()
    assert np.allclose(item["T_cam_lidar"].double().numpy(), sample.T_cam_lidar @ invert_transform(T_pert), atol=1e-5)
    if protocol == "global":
        assert not np.allclose(T_pert, np.eye(4), atol=1e-3)            # the cloud really moved
    else:
        assert np.allclose(T_pert, np.eye(4)) and item["prior_weight"] == 1
        D = invert_transform(item["T_prior"].double().numpy()) @ item["T_cam_lidar"].double().numpy()
        assert 0 < rotation_angle_deg(D[:3, :3]) < 20 * np.sqrt(3) + 1e-6


def test_photometric_augmentation_changes_only_the_image(source):
    a = CalibrationDataset(source, PRE, "global", seed=1)[0]
    b = CalibrationDataset(source, PRE, "global", seed=1, photometric=PhotometricAugment(0.2, (0.7, 1.3)))[0]
    assert not torch.equal(a["image"], b["image"])
    assert torch.equal(a["points"], b["points"]) and torch.equal(a["T_cam_lidar"], b["T_cam_lidar"])


def test_collate_stacks_tensors_and_lists_names(source):
    ds = CalibrationDataset(source, PRE, "refine", seed=0)
    batch = collate_items([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 64, 192) and batch["T_prior"].shape == (2, 4, 4)
    assert batch["prior_weight"].tolist() == [1.0, 1.0] and len(batch["frame_id"]) == 2


def test_cache_holds_the_same_frames_and_is_built_once(tmp_path, source):
    cached = SimCacheSource(tmp_path, SIM, base_seed=100, frames=2, progress=False)
    files = sorted(cached.folder.glob("seed_*.npz"))
    assert [f.name for f in files] == ["seed_00000100.npz", "seed_00000101.npz"]
    for i in range(2):
        a, b = cached[i], source[i]
        assert np.array_equal(a.image, b.image) and np.array_equal(a.points, b.points)
        assert np.allclose(a.T_cam_lidar, b.T_cam_lidar) and np.allclose(a.camera.K, b.camera.K)
    written = {f: f.stat().st_mtime_ns for f in files}
    again = SimCacheSource(tmp_path, SIM, base_seed=100, frames=3, progress=False)   # one frame more
    assert again.folder == cached.folder
    assert {f: f.stat().st_mtime_ns for f in files} == written                      # not rewritten
    assert len(list(again.folder.glob("seed_*.npz"))) == 3
    assert np.array_equal(again[2].points, source[2].points)
    other = data_mod.sim_cache_folder(tmp_path, SimConfig.preset("fisheye"))
    assert other != cached.folder                                       # another simulator config, another folder


def test_npz_record_round_trips_a_distorted_camera(tmp_path):
    sample = simulate_sample(SimConfig.preset("small"), 5)
    cam = CameraModel(sample.camera.K, sample.camera.width, sample.camera.height, "plumb_bob",
                      [0.1, -0.05, 0.001, 0.0, 0.01])
    sample.camera, sample.meta = cam, {"a": 1}
    save_sample_npz(tmp_path / "s.npz", sample)
    back = load_sample_npz(tmp_path / "s.npz")
    assert back.camera.distortion_model == "plumb_bob" and np.allclose(back.camera.distortion, cam.distortion)
    assert np.array_equal(back.points, sample.points) and back.meta == {"a": 1}


@pytest.fixture(scope="module")
def drive():
    return simulate_drive(SIM, 11, 3)


def test_kitti_folder_source_gives_items(tmp_path, drive):
    from crossi2p.datasets.kitti import write_kitti_sequence

    samples = drive.paired_samples()
    write_kitti_sequence(tmp_path / "00", samples, samples[0].camera, samples[0].T_cam_lidar)
    src = KittiSource([tmp_path / "00", tmp_path / "00"])
    assert len(src) == 2 * len(samples)
    item = CalibrationDataset(src, PRE, "global", seed=0)[len(samples)]
    assert item["points"].shape == (1024, 4)
    assert np.allclose(src[0].T_cam_lidar, samples[0].T_cam_lidar, atol=1e-6)


def test_rosbag2_source_pairs_camera_and_lidar(tmp_path, drive):
    from crossi2p.datasets.rosbag2 import write_drive_bag

    samples = drive.paired_samples()
    bag = write_drive_bag(tmp_path / "bag", [(s.stamp_s, s.image) for s in samples],
                          [(s.lidar_stamp_s or s.stamp_s, s.points) for s in samples],
                          samples[0].camera, samples[0].T_cam_lidar)
    src = Rosbag2Source([bag], slop_s=0.1)
    assert len(src) >= len(samples) - 1
    assert np.allclose(src[0].T_cam_lidar, samples[0].T_cam_lidar, atol=1e-6)
    item = CalibrationDataset(src, PRE, "refine", seed=0)[0]
    assert item["prior_weight"] == 1
    # every sweep is a pair or counted with the reason (the last waits for an image that never comes)
    left = sum(src.left_out.values())
    assert len(src) + left == len(samples)
    assert repr(src) == (f"Rosbag2Source({len(src)} pairs)" if not left else
                         f"Rosbag2Source({len(src)} pairs; left out: {left} sweeps without an image within 0.1 s)")


def test_nuscenes_folder_source_gives_items(repo_root):
    from crossi2p_training.data import NuScenesSource

    src = NuScenesSource([repo_root / "tests" / "fixtures" / "nuscenes_mini"])
    item = CalibrationDataset(src, PRE, "global", seed=0)[0]
    assert len(src) >= 1 and item["image"].shape == (3, 64, 192) and item["points"].shape == (1024, 4)


def test_a_frame_that_cannot_be_read_is_skipped_with_one_warning_and_none_readable_is_an_error(source, capsys):
    """A corrupt frame in a training source (a truncated scan) ended a training run at a random
    step: the dataset hands out the next readable frame instead, warning once per frame."""

    class OneCorrupt:
        def __init__(self, inner, bad):
            self.inner, self.bad = inner, set(bad)

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            if i in self.bad:
                raise ValueError(f"velodyne/{i:06d}.bin: 1001 bytes is not a multiple of 16")
            return self.inner[i]

    ds = CalibrationDataset(OneCorrupt(source, {1}), PRE, "global", seed=7)
    a, b = ds[1], ds[1]
    assert int(a["index"]) == 2 and _equal(a, b)
    err = capsys.readouterr().err
    assert err.count("training frame 1 skipped: velodyne/000001.bin") == 1, err
    with pytest.raises(ValueError, match="no frame of .* can be read"):
        CalibrationDataset(OneCorrupt(source, {0, 1, 2}), PRE, "global", seed=7)[0]
