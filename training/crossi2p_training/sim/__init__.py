"""Procedural driving-scene sensor simulator: camera images and LiDAR sweeps with a known
extrinsic, deterministic by seed (training data, test fixtures, demo drives).

Public API::

    from crossi2p_training.sim import SimConfig, simulate_drive, simulate_sample
    drive = simulate_drive(SimConfig.preset("small"), seed=0, frames=10)
    samples = drive.paired_samples()
    sample = simulate_sample(SimConfig.preset("small"), seed=123)
"""
from .config import PRESETS, CameraConfig, DriveConfig, LidarConfig, RigConfig, SceneConfig, SimConfig
from .drive import DriveSimulator, SimDrive, SimFrame, simulate_drive, simulate_frame, simulate_sample
from .materials import Material

__all__ = [
    "PRESETS", "CameraConfig", "DriveConfig", "LidarConfig", "RigConfig", "SceneConfig", "SimConfig",
    "DriveSimulator", "SimDrive", "SimFrame", "simulate_drive", "simulate_frame", "simulate_sample", "Material",
]
