"""The simulator is deterministic by seed, its sensors obey their configuration, and its camera
and LiDAR see the same world through the ground-truth extrinsic (edges, depths, materials)."""
import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from crossi2p.camera import CameraModel
from crossi2p.geometry import transform_points
from crossi2p.sample import Sample
from crossi2p_training.sim import LidarConfig, Material, SimConfig, simulate_drive, simulate_frame, simulate_sample
from crossi2p_training.sim.cli import main as sim_main

SMALL = SimConfig.preset("small")
NOISE_FREE = SMALL.replace(lidar=dataclasses.replace(SMALL.lidar, range_noise_m=0.0))


def agreement(frame, T_cam_lidar=None) -> tuple[float, int]:
    """Fraction of in-view LiDAR points that, projected with ``T_cam_lidar``, land on a pixel
    whose centre ray sees the same object at the same depth (5 % + 5 cm); and the count."""
    s = frame.sample
    T = s.T_cam_lidar if T_cam_lidar is None else T_cam_lidar
    uv, depth, in_view = s.camera.project_in_image(transform_points(T, s.points[:, :3].astype(np.float64)))
    px = np.rint(uv[in_view]).astype(int)
    same_id = frame.render.object_id[px[:, 1], px[:, 0]] == frame.scan.object_id[in_view]
    same_depth = np.abs(frame.render.depth[px[:, 1], px[:, 0]] - depth[in_view]) < 0.05 * depth[in_view] + 0.05
    return float(np.mean(same_id & same_depth)), int(in_view.sum())


@pytest.fixture(scope="module")
def frames():
    return [simulate_frame(NOISE_FREE, seed) for seed in range(3)]


@pytest.fixture(scope="module")
def drive():
    return simulate_drive(SMALL, seed=5, frames=7, keep_buffers=True)


# ----------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_arrays():
    a, b = simulate_sample(SMALL, 11), simulate_sample(SMALL, 11)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.points, b.points)
    assert np.array_equal(a.T_cam_lidar, b.T_cam_lidar)


def test_same_seed_gives_identical_drives(drive):
    again = simulate_drive(SMALL, seed=5, frames=7)
    for (ta, ia), (tb, ib) in zip(drive.camera_frames, again.camera_frames, strict=True):
        assert ta == tb and np.array_equal(ia, ib)
    for (ta, pa), (tb, pb) in zip(drive.lidar_sweeps, again.lidar_sweeps, strict=True):
        assert ta == tb and np.array_equal(pa, pb)
    assert np.array_equal(drive.T_cam_lidar, again.T_cam_lidar)


def test_different_seeds_give_different_scenes_and_rigs():
    a, b = simulate_sample(SMALL, 11), simulate_sample(SMALL, 12)
    assert not np.array_equal(a.image, b.image)
    assert a.points.shape != b.points.shape or not np.array_equal(a.points, b.points)
    assert not np.allclose(a.T_cam_lidar, b.T_cam_lidar)


def test_sample_is_a_valid_core_sample(frames):
    s = frames[0].sample
    assert isinstance(s, Sample)
    assert s.image.shape == (128, 416, 3) and s.image.dtype == np.uint8
    assert s.points.dtype == np.float32 and s.points.shape[1] == 4 and len(s.points) > 10000
    assert s.stamp_s == s.lidar_stamp_s
    # a street: sky at the top, ground at the bottom, a rich image
    assert (frames[0].render.object_id[0] == 0).any() and (frames[0].render.object_id[-1] > 0).all()
    assert s.image.std() > 20


def test_rig_is_lidar_ahead_above_convention():
    cfg = SMALL.replace(rig=dataclasses.replace(SMALL.rig, rotation_jitter_deg=0.0, translation_jitter_m=0.0))
    T = simulate_sample(cfg, 0).T_cam_lidar
    # LiDAR x (forward) is camera z, LiDAR y (left) is camera -x, LiDAR z (up) is camera -y
    assert np.allclose(T[:3, :3], [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=1e-12)
    # the camera sits 0.27 m ahead of and 0.08 m below the LiDAR
    lidar_in_cam = T[:3, 3]
    assert np.allclose(lidar_in_cam, [0.0, -0.08, -0.27], atol=1e-12)


# --------------------------------------------------------------------------------- LiDAR
@pytest.mark.parametrize("beams", [32, 64, 128])
def test_lidar_points_lie_on_the_beams_within_range(beams):
    lidar = LidarConfig.preset(beams, azimuth_step_deg=1.0, max_range_m=60.0)
    cfg = SMALL.replace(lidar=lidar, camera=SMALL.camera.scaled_to(64, 20))
    frame = simulate_frame(cfg, 3)
    p = frame.sample.points
    r = np.linalg.norm(p[:, :3], axis=1)
    assert r.min() >= lidar.min_range_m and r.max() <= lidar.max_range_m
    elevation = np.degrees(np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1])))
    beam_el = np.degrees(lidar.elevations_rad())
    assert elevation.max() <= lidar.elevation_max_deg + 1e-3 and elevation.min() >= lidar.elevation_min_deg - 1e-3
    assert np.abs(elevation - beam_el[frame.scan.beam]).max() < 1e-3
    assert len(np.unique(frame.scan.beam)) > 0.9 * beams
    assert 0.0 <= p[:, 3].min() and p[:, 3].max() <= 1.0
    # about one point per beam and column (minus sky, dropouts)
    assert len(p) <= beams * 360


def test_range_noise_follows_its_sigma():
    cfg = SMALL.replace(lidar=dataclasses.replace(SMALL.lidar, range_noise_m=0.05, dropout_probability=0.0))
    frame = simulate_frame(cfg, 2)
    err = np.linalg.norm(frame.sample.points[:, :3], axis=1) - frame.scan.range_true_m
    assert abs(err.std() - 0.05) < 0.005 and abs(err.mean()) < 0.005


def test_per_point_time_follows_the_rotation():
    lidar = dataclasses.replace(SMALL.lidar, with_time=True)
    drive = simulate_drive(SMALL.replace(lidar=lidar), seed=1, frames=1)
    pts = drive.lidar_sweeps[0][1]
    assert pts.shape[1] == 5
    t, azimuth = pts[:, 4], np.arctan2(pts[:, 1], pts[:, 0])
    period = 1.0 / lidar.rate_hz
    assert t.min() >= -period / 2 and t.max() < period / 2
    assert np.all(np.diff(t) >= 0)  # firing order
    # clockwise from behind: facing forward at the stamp, left before it, right after it
    expected = -azimuth / (2 * np.pi) * period
    assert np.abs(t - expected).max() < np.radians(lidar.azimuth_step_deg) / (2 * np.pi) * period + 1e-6
    sample = drive.paired_samples()[0]
    assert sample.points.shape[1] == 4 and np.array_equal(sample.meta["point_time_s"], t)


def test_motion_during_sweep_skews_all_but_the_forward_column():
    lidar = dataclasses.replace(SMALL.lidar, with_time=True, range_noise_m=0.0, intensity_noise=0.0)
    still = simulate_drive(SMALL.replace(lidar=lidar), seed=4, frames=2).lidar_sweeps[1][1]
    moving = simulate_drive(SMALL.replace(lidar=dataclasses.replace(lidar, motion_during_sweep=True)), seed=4,
                            frames=2).lidar_sweeps[1][1]

    def by_ray(points):  # {(firing time in us, elevation in 0.01 deg): point}
        el = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
        keys = zip(np.round(points[:, 4] * 1e6).astype(int).tolist(), np.round(el, 2).tolist(), strict=True)
        return dict(zip(keys, points[:, :3], strict=True))

    a, b = by_ray(still), by_ray(moving)
    common = sorted(a.keys() & b.keys())  # random dropouts (glass) may differ
    t = np.array([k[0] for k in common]) * 1e-6
    shift = np.array([np.linalg.norm(a[k] - b[k]) for k in common])
    # the column firing at the stamp sees the world from the stamp's pose ...
    assert (np.abs(t) < 3e-4).sum() > 10 and shift[np.abs(t) < 3e-4].max() < 0.02
    # ... columns fired up to 50 ms before/after it from up to 0.3..0.6 m back/ahead (6..12 m/s):
    # flat ground and walls along the road keep their range, everything else moves
    assert np.mean(shift[np.abs(t) > 0.04] > 0.1) > 0.05


# ------------------------------------------------------------------------ cross-modal
def test_projected_points_agree_with_rendered_depth_and_object(frames):
    for frame in frames:
        frac, n = agreement(frame)
        assert n > 2000
        assert frac > 0.95, f"seed {frame.sample.meta['seed']}: only {frac:.3f} of {n} points agree"


def test_agreement_detects_a_two_degree_extrinsic_error(frames):
    frame = frames[0]
    T = frame.sample.T_cam_lidar.copy()
    T[:3, :3] = Rotation.from_euler("y", 2.0, degrees=True).as_matrix() @ T[:3, :3]
    assert agreement(frame, T)[0] < agreement(frame)[0] - 0.1


def test_lane_markings_are_bright_in_image_and_intensity(frames):
    for frame in frames:
        grey = frame.sample.image.astype(float).mean(axis=2)
        mat_px = frame.render.material
        marking_px, asphalt_px = grey[mat_px == Material.LANE_MARKING], grey[mat_px == Material.ASPHALT]
        intensity = frame.sample.points[:, 3]
        marking_pt = intensity[frame.scan.material == Material.LANE_MARKING]
        asphalt_pt = intensity[frame.scan.material == Material.ASPHALT]
        assert marking_px.size > 50 and marking_pt.size > 20
        assert marking_px.mean() > 1.8 * asphalt_px.mean()
        assert marking_pt.mean() > 3.0 * asphalt_pt.mean()


def test_image_and_intensity_rank_materials_alike(frames):
    """Across materials, brighter in the image means brighter in the LiDAR (except glass, which
    returns little, and foliage, bright in the near infrared)."""
    img, inten = [], []
    for m in (Material.ASPHALT, Material.LANE_MARKING, Material.SIDEWALK, Material.FACADE, Material.KERB):
        px = np.concatenate([f.sample.image.astype(float).mean(axis=2)[f.render.material == m] for f in frames])
        pt = np.concatenate([f.sample.points[f.scan.material == m, 3] for f in frames])
        if px.size > 100 and pt.size > 100:
            img.append(px.mean())
            inten.append(pt.mean())
    assert len(img) >= 4
    assert np.corrcoef(img, inten)[0, 1] > 0.7


# ------------------------------------------------------------------------------ drives
def test_stamps_follow_the_configured_rates(drive):
    lidar_t = np.array([t for t, _ in drive.lidar_sweeps])
    cam_t = np.array([t for t, _ in drive.camera_frames])
    assert len(lidar_t) == 7 and np.allclose(np.diff(lidar_t), 0.1)
    assert np.allclose(np.diff(cam_t), 1 / 15) and cam_t[0] == 0.0
    assert len(cam_t) == 10 and cam_t[-1] <= lidar_t[-1]  # 0.6 s at 15 Hz
    samples = drive.paired_samples()
    assert [s.frame_id for s in samples] == [f"{k:06d}" for k in range(7)]
    for s, t in zip(samples, lidar_t, strict=True):
        assert s.lidar_stamp_s == t
        dt = np.abs(cam_t - t)
        assert s.stamp_s == cam_t[dt <= dt.min() + 1e-9][0]  # the nearest image; ties: the earlier
        assert abs(s.stamp_s - t) <= 0.5 / 15 + 1e-9


def test_other_rates_and_offsets():
    cfg = SMALL.replace(camera=dataclasses.replace(SMALL.camera, rate_hz=20.0, time_offset_s=0.01),
                        lidar=dataclasses.replace(SMALL.lidar, rate_hz=5.0),
                        drive=dataclasses.replace(SMALL.drive, start_time_s=100.0))
    d = simulate_drive(cfg, seed=2, frames=2)
    assert [t for t, _ in d.lidar_sweeps] == [100.0, 100.2]
    cam_t = np.array([t for t, _ in d.camera_frames])
    assert np.allclose(cam_t, 100.01 + np.arange(4) * 0.05)


def test_the_vehicle_moves_and_the_extrinsic_stays(drive):
    pos = np.array([T[:3, 3] for T in drive.T_world_lidar])
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    assert np.all(step > 0.5) and np.all(step < 1.5)  # 6..12 m/s at 10 Hz
    for s in drive.paired_samples():
        assert np.array_equal(s.T_cam_lidar, drive.T_cam_lidar)
    # image stamps coinciding with a sweep stamp see the scene from T_world_lidar @ inv(T_cam_lidar)
    from crossi2p.geometry import invert_transform
    cam_t = [t for t, _ in drive.camera_frames]
    j = cam_t.index(drive.lidar_sweeps[2][0])
    assert np.allclose(drive.T_world_cam[j], drive.T_world_lidar[2] @ invert_transform(drive.T_cam_lidar))


def test_drive_sweeps_agree_with_images_at_the_same_stamp(drive):
    cam_t = [t for t, _ in drive.camera_frames]
    for k, (t, pts) in enumerate(drive.lidar_sweeps):
        if t not in cam_t:
            continue
        j = cam_t.index(t)
        frame = _FrameView(Sample(drive.camera_frames[j][1], pts[:, :4], drive.camera, drive.T_cam_lidar),
                           drive.camera_buffers[j], drive.lidar_scans[k])
        # range noise (2 cm) included: the 5 % + 5 cm depth tolerance still holds
        assert agreement(frame)[0] > 0.95


@dataclasses.dataclass
class _FrameView:
    sample: Sample
    render: object
    scan: object


# ------------------------------------------------------------------------------ cameras
@pytest.mark.parametrize("model, coeffs", [
    ("plumb_bob", (-0.3, 0.1, 0.001, -0.0005, -0.02)),
    ("rational_polynomial", (0.3, -0.05, 0.0005, 0.0003, 0.01, 0.6, -0.02, 0.03)),
])
def test_distorted_cameras_render_and_agree(model, coeffs):
    cam = dataclasses.replace(SMALL.camera, distortion_model=model, distortion=coeffs)
    frame = simulate_frame(NOISE_FREE.replace(camera=cam), 0)
    assert frame.sample.camera.distortion_model == model
    assert agreement(frame)[0] > 0.95


def test_fisheye_camera_renders_and_agrees():
    fisheye = SimConfig.preset("fisheye")
    cam = dataclasses.replace(fisheye.camera.scaled_to(320, 240), shadows=False)
    frame = simulate_frame(NOISE_FREE.replace(camera=cam), 1)
    assert isinstance(frame.sample.camera, CameraModel) and frame.sample.camera.is_fisheye
    assert frame.sample.image.shape == (240, 320, 3)
    # a wide view: sky, road and both sides of the street in one image
    assert (frame.render.object_id == 0).mean() > 0.05 and (frame.render.object_id > 0).mean() > 0.5
    frac, n = agreement(frame)
    assert n > 3000 and frac > 0.95


def test_antialiasing_keeps_the_buffers():
    cam = dataclasses.replace(SMALL.camera.scaled_to(128, 40), antialias=True)
    plain = simulate_frame(SMALL.replace(camera=dataclasses.replace(cam, antialias=False)), 4)
    smooth = simulate_frame(SMALL.replace(camera=cam), 4)
    assert np.array_equal(plain.render.object_id, smooth.render.object_id)
    assert not np.array_equal(plain.sample.image, smooth.sample.image)


def test_presets():
    for name, beams, width in [("kitti", 64, 1242), ("lidar32", 32, 1242), ("lidar128", 128, 1242),
                               ("small", 32, 416), ("fisheye", 64, 640)]:
        cfg = SimConfig.preset(name)
        assert cfg.lidar.beams == beams and cfg.camera.width == width
    assert SimConfig.preset("kitti").camera.camera_model().fx == 720.0
    with pytest.raises(ValueError, match="unknown preset"):
        SimConfig.preset("nope")


# ---------------------------------------------------------------------------------- CLI
def test_cli_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        sim_main(["--help"])
    assert e.value.code == 0
    assert "--kitti" in capsys.readouterr().out


def test_cli_writes_kitti_sequence_and_bag(tmp_path, capsys):
    from crossi2p.datasets.kitti import read_kitti_sequence
    from crossi2p.datasets.rosbag2 import read_bag_ground_truth

    seq, bag = tmp_path / "sequences" / "00", tmp_path / "bag"
    assert sim_main(["--seed", "3", "--frames", "3", "--preset", "small", "--width", "208", "--no-shadows",
                     "--kitti", str(seq), "--bag", str(bag), "--storage", "sqlite3", "--compressed"]) == 0
    out = capsys.readouterr().out
    assert "3 LiDAR sweeps" in out and "wrote KITTI sequence" in out and "wrote rosbag2" in out
    read = read_kitti_sequence(seq)
    assert len(read) == 3
    assert (read.camera.width, read.camera.height) == (208, 64)
    expected = SMALL.replace(camera=dataclasses.replace(SMALL.camera.scaled_to(208, 64), shadows=False))
    truth = simulate_drive(expected, 3, 3)
    assert np.allclose(read.T_cam_lidar, truth.T_cam_lidar, atol=1e-6)
    assert np.array_equal(read[1].points, truth.lidar_sweeps[1][1])
    assert np.allclose(read_bag_ground_truth(bag), truth.T_cam_lidar, atol=1e-6)


def test_cli_camera_time_offset_shifts_every_camera_frame(capsys):
    """A 10 Hz camera 35 ms after a 10 Hz LiDAR: no pair is synchronised (what
    ``RefinementScheduleConfig.compensate_pair_offset`` is for)."""
    assert sim_main(["--seed", "3", "--frames", "3", "--preset", "small", "--width", "208", "--no-shadows",
                     "--camera-rate", "10", "--camera-time-offset", "0.035"]) == 0
    out = capsys.readouterr().out
    assert "3 LiDAR sweeps (0.000..0.200 s), 2 camera frames (0.035..0.135 s)" in out, out   # up to the last sweep


def test_cli_rejects_an_existing_bag_folder(tmp_path):
    with pytest.raises(SystemExit) as e:
        sim_main(["--frames", "1", "--bag", str(tmp_path)])
    assert e.value.code == 2


@pytest.mark.parametrize("args, message", [
    (["--kitti", "FULL"], "already exists and is not an empty folder"),     # it would mix two drives
    (["--kitti", "A_FILE"], "already exists and is not an empty folder"),
    (["--kitti", "A_FILE/seq"], "cannot create its folder"),
    (["--seed", "-1"], "--seed: expected an integer >= 0"),
    (["--camera-rate", "0"], "--camera-rate: expected a value > 0"),
    (["--width", "-5"], "--width: expected a value > 0"),
    (["--camera-time-offset", "-0.1"], "--camera-time-offset: expected 0 <= S < 1 seconds, got -0.1"),
])
def test_cli_refuses_bad_values_and_output_folders_in_one_line(tmp_path, capsys, args, message):
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "times.txt").write_text("0.0\n")
    (tmp_path / "A_FILE").write_text("")
    args = [a.replace("FULL", str(tmp_path / "FULL")).replace("A_FILE", str(tmp_path / "A_FILE")) for a in args]
    with pytest.raises(SystemExit) as e:
        sim_main(["--frames", "1", "--preset", "small", *args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "FULL" / "times.txt").read_text() == "0.0\n"          # nothing overwritten


def test_cli_ctrl_c_exits_130_with_one_line(tmp_path):
    """Ctrl-C while a drive is written: one line saying the output is incomplete, exit 130 (it was a
    traceback)."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "seq"
    proc = subprocess.Popen([sys.executable, "-m", "crossi2p_training.sim.cli", "--frames", "100", "--preset", "small",
                             "--kitti", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "stamp" not in seen:                            # its progress bar: simulating, inside main
        char = proc.stderr.read(1)
        assert char, seen
        seen += char
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    stderr = seen + stderr
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == ("crossi2p-sim: interrupted (Ctrl-C): the drive written so far is "
                                               "incomplete; write it again") and "Traceback" not in stderr, stderr
