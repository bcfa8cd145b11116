"""crossi2p.datasets.sample_folder: the real samples' layout (calib.yaml naming image and cloud)."""
from __future__ import annotations

import numpy as np
import pytest

from crossi2p.calib_io import load_calibration_yaml
from crossi2p.datasets.sample_folder import find_sample_folders, load_sample_folder


def test_every_shared_sample_loads_with_its_calibration(shared_data):
    folders = find_sample_folders(shared_data / "real")
    assert len(folders) >= 4
    for folder in folders:
        s = load_sample_folder(folder)
        calib = load_calibration_yaml(folder / "calib.yaml")
        np.testing.assert_allclose(s.T_cam_lidar, calib.T_cam_lidar, atol=1e-12)
        assert s.image.shape == (calib.camera.height, calib.camera.width, 3)
        assert s.points.shape[1] == 4 and len(s.points) > 1000


def test_missing_files_are_named(tmp_path, shared_data):
    with pytest.raises(ValueError, match="no calib.yaml"):
        load_sample_folder(tmp_path)
    src = shared_data / "real" / "kitti_000000"
    (tmp_path / "calib.yaml").write_text((src / "calib.yaml").read_text())
    with pytest.raises(ValueError, match="image_file '000000.png' not found"):
        load_sample_folder(tmp_path)
