"""Simulator presets named after real rigs (``kitti_hdl64``, ``nuscenes_hdl32``,
``ouster_os1_128``): their sweeps follow the sensor's beam elevation table, their images have the
sensor's size and camera model, the ground truth projects each point onto what the camera sees,
and the intensity comes in the imitated driver's units."""
import dataclasses

import numpy as np
import pytest

from crossi2p_training.sim import LidarConfig, SimConfig, simulate_frame
from crossi2p_training.sim.cli import build_parser, config_from_args
from crossi2p_training.sim.cli import main as sim_main
from crossi2p_training.sim.config import HDL32E_ELEVATIONS_DEG, HDL64E_ELEVATIONS_DEG, OS1_128_ELEVATIONS_DEG

from .projection_check import projection_agreement

# name: (elevation table, (height, width), distortion model, intensity full scale)
RIGS = {
    "kitti_hdl64": (HDL64E_ELEVATIONS_DEG, (375, 1242), "none", 1.0),
    "nuscenes_hdl32": (HDL32E_ELEVATIONS_DEG, (900, 1600), "none", 255.0),
    "ouster_os1_128": (OS1_128_ELEVATIONS_DEG, (1200, 1920), "plumb_bob", 65535.0),
}


@pytest.fixture(scope="module", params=sorted(RIGS))
def rig_frame(request):
    """One full-size frame of each rig preset (seed 0): 1-6 s each on one core."""
    return request.param, simulate_frame(SimConfig.preset(request.param), 0)


def elevation_deg(points: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))


def test_elevation_tables_are_the_published_ones():
    hdl64 = np.array(HDL64E_ELEVATIONS_DEG)
    assert len(hdl64) == 64 and hdl64[0] == 2.0 and hdl64[-1] == -24.9
    steps = -np.diff(hdl64)
    assert np.allclose(steps[:31], 1 / 3, atol=1e-3) and np.allclose(steps[32:], 0.518, atol=1e-3)  # two blocks
    hdl32 = np.array(HDL32E_ELEVATIONS_DEG)
    assert len(hdl32) == 32 and (hdl32[0], hdl32[-1]) == (10.67, -30.67)
    assert np.allclose(-np.diff(hdl32), 4 / 3, atol=0.01)
    os1 = np.array(OS1_128_ELEVATIONS_DEG)
    assert len(os1) == 128 and (os1[0], os1[-1]) == (22.5, -22.5)


def test_sweep_follows_the_beam_elevation_table(rig_frame):
    name, frame = rig_frame
    table = np.array(RIGS[name][0])
    lidar = SimConfig.preset(name).lidar
    assert lidar.beams == len(table) and np.allclose(np.degrees(lidar.elevations_rad()), table)
    el = elevation_deg(frame.sample.points)
    # every point lies on its beam's tabulated elevation (range noise is along the ray)
    assert np.abs(el - table[frame.scan.beam]).max() < 1e-3
    assert el.max() <= table[0] + 1e-3 and el.min() >= table[-1] - 1e-3
    # most beams return something (upward beams may see only sky)
    assert len(np.unique(frame.scan.beam)) >= 0.75 * len(table)


def test_image_has_the_rigs_size_and_camera_model(rig_frame):
    name, frame = rig_frame
    (h, w), model = RIGS[name][1], RIGS[name][2]
    s = frame.sample
    assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
    assert (s.camera.width, s.camera.height) == (w, h) and s.camera.distortion_model == model
    assert np.array_equal(s.camera.K, SimConfig.preset(name).camera.camera_model().K)
    # the whole image is rendered (a distortion model invertible up to the corners)
    assert (frame.render.depth[[0, 0, -1, -1], [0, -1, 0, -1]] > 0).all()


def test_ground_truth_projects_points_onto_what_the_camera_sees(rig_frame):
    name, frame = rig_frame
    in_view, agree = projection_agreement(frame)
    assert in_view > 2000
    assert agree > 0.95, name


def test_intensity_comes_in_the_drivers_units(rig_frame):
    name, frame = rig_frame
    full = RIGS[name][3]
    i = frame.sample.points[:, 3]
    assert i.min() >= 0.0 and i.max() <= full
    if full > 1:
        assert np.array_equal(i, np.round(i)) and i.max() > 0.1 * full  # integers spread over the scale
    else:
        assert i.max() > 0.5


def test_uncompensated_intensity_falls_off_with_range():
    base = SimConfig.preset("small")
    flat = dataclasses.replace(base.lidar, intensity_noise=0.0)
    falling = dataclasses.replace(flat, intensity_range_exponent=2.0, intensity_range_ref_m=5.0)
    a = simulate_frame(base.replace(lidar=flat), 4)
    b = simulate_frame(base.replace(lidar=falling), 4)
    assert np.array_equal(a.sample.points[:, :3], b.sample.points[:, :3])
    r = a.scan.range_true_m
    expected = a.sample.points[:, 3] * (5.0 / np.maximum(r, 5.0)) ** 2
    np.testing.assert_allclose(b.sample.points[:, 3], expected, rtol=1e-5, atol=1e-7)


def test_elevation_table_is_checked():
    with pytest.raises(ValueError, match="3 entries for 4 beams"):
        LidarConfig(beams=4, elevation_max_deg=1.0, elevation_min_deg=-1.0, elevation_table_deg=(1.0, 0.0, -1.0))
    with pytest.raises(ValueError, match="strictly decreasing"):
        LidarConfig.from_elevation_table([1.0, 2.0, -1.0])
    with pytest.raises(ValueError, match="use LidarConfig.from_elevation_table"):
        LidarConfig(beams=2, elevation_table_deg=(1.0, -1.0))
    with pytest.raises(ValueError, match="empty elevation table"):
        LidarConfig.from_elevation_table([])


def test_cli_lists_the_rig_presets_and_overrides_their_beams(capsys):
    with pytest.raises(SystemExit):
        sim_main(["--help"])
    out = capsys.readouterr().out
    for name in RIGS:
        assert name in out
    cfg = config_from_args(build_parser().parse_args(["--preset", "nuscenes_hdl32", "--lidar-beams", "64"]))
    assert cfg.lidar.beams == 64 and cfg.lidar.elevation_table_deg == () and cfg.lidar.intensity_units == "byte"
