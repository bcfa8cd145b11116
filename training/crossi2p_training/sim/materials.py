"""Surface materials: what each one looks like to the camera and to the LiDAR.

One table drives both sensors, so an edge between two materials is an edge in the image and
in the LiDAR intensity alike. The LiDAR reflectivity of a surface point follows its visible
albedo (``gain * luminance(albedo) + bias``), except where real surfaces differ on purpose:
retro-reflective paint, signs and number plates return far more than their albedo says and
hardly depend on the incidence angle; glass returns little and often nothing; foliage is
brighter in the near infrared than in the visible.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np


class Material(IntEnum):
    """Material ids (per triangle, or per surface point once textures refine them)."""

    SKY = 0  # no hit
    ASPHALT = 1
    LANE_MARKING = 2
    KERB = 3
    SIDEWALK = 4
    GROUND = 5
    FACADE = 6
    WINDOW = 7
    WINDOW_FRAME = 8
    DOOR = 9
    ROOF = 10
    CAR_PAINT = 11
    CAR_GLASS = 12
    TYRE = 13
    PLATE = 14
    POLE = 15
    SIGN = 16
    SIGN_BACK = 17
    TRUNK = 18
    FOLIAGE = 19


N_MATERIALS = max(Material) + 1

# name: (reflectivity gain on luminance, reflectivity bias, retro-reflective, extra dropout)
_LIDAR = {
    Material.ASPHALT: (0.8, 0.0, False, 0.0),
    Material.LANE_MARKING: (0.6, 0.45, True, 0.0),
    Material.KERB: (0.9, 0.0, False, 0.0),
    Material.SIDEWALK: (0.9, 0.0, False, 0.0),
    Material.GROUND: (0.8, 0.12, False, 0.0),
    Material.FACADE: (0.9, 0.0, False, 0.0),
    Material.WINDOW: (0.3, 0.0, False, 0.5),
    Material.WINDOW_FRAME: (0.9, 0.0, False, 0.0),
    Material.DOOR: (0.9, 0.0, False, 0.0),
    Material.ROOF: (0.9, 0.0, False, 0.0),
    Material.CAR_PAINT: (0.8, 0.05, False, 0.0),
    Material.CAR_GLASS: (0.3, 0.0, False, 0.5),
    Material.TYRE: (0.8, 0.02, False, 0.0),
    Material.PLATE: (0.4, 0.6, True, 0.0),
    Material.POLE: (0.9, 0.0, False, 0.0),
    Material.SIGN: (0.5, 0.55, True, 0.0),
    Material.SIGN_BACK: (0.9, 0.0, False, 0.0),
    Material.TRUNK: (0.9, 0.05, False, 0.0),
    Material.FOLIAGE: (0.8, 0.2, False, 0.05),
}

REFLECTIVITY_GAIN = np.zeros(N_MATERIALS, np.float32)
REFLECTIVITY_BIAS = np.zeros(N_MATERIALS, np.float32)
RETRO_REFLECTIVE = np.zeros(N_MATERIALS, bool)
EXTRA_DROPOUT = np.zeros(N_MATERIALS, np.float32)
for _m, (_g, _b, _r, _d) in _LIDAR.items():
    REFLECTIVITY_GAIN[_m], REFLECTIVITY_BIAS[_m], RETRO_REFLECTIVE[_m], EXTRA_DROPOUT[_m] = _g, _b, _r, _d

GLASS = np.zeros(N_MATERIALS, bool)
GLASS[[Material.WINDOW, Material.CAR_GLASS]] = True

LUMINANCE_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], np.float32)


def lidar_reflectivity(material: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """(M,) reflectivity in [0, 1] of surface points with ``material`` (M,) and linear RGB
    ``albedo`` (M, 3)."""
    lum = albedo @ LUMINANCE_WEIGHTS
    return np.clip(REFLECTIVITY_GAIN[material] * lum + REFLECTIVITY_BIAS[material], 0.0, 1.0)
