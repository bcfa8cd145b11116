"""Rotating multi-beam LiDAR: one ray per beam and firing column.

Columns fire clockwise seen from above, starting behind the sensor; the sweep's stamp is the
moment the beams face forward (+x), so firing times run over [-T/2, T/2) around the stamp
(T = 1 / rate). Points are returned in firing order (column by column), in the LiDAR frame at
firing time, with an intensity from the same surface model the camera shades
(``materials.lidar_reflectivity`` of the textured material and albedo) times an incidence
term (retro-reflective surfaces hardly depend on it) and, with
``LidarConfig.intensity_range_exponent``, a range fall-off; it is written in the imitated
driver's units (``intensity_units``: [0, 1], 0..255 or 0..65535). Beams follow
``LidarConfig.elevations_rad`` (a sensor's non-uniform table or an even spread). Range noise is
Gaussian along the ray; returns drop out at random, more on glass and at grazing incidence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import LidarConfig
from .materials import EXTRA_DROPOUT, RETRO_REFLECTIVE, lidar_reflectivity
from .raycast import SceneGeometry
from .textures import surface_at


@dataclass
class LidarScan:
    """One sweep and its ground truth per point (N points)."""

    points: np.ndarray
    """(N, 4) float32 x, y, z (metres, LiDAR frame), intensity (in ``intensity_units``), or
    (N, 5) with the firing time relative to the stamp (seconds)."""
    object_id: np.ndarray
    """(N,) int32 id of the object each point lies on."""
    material: np.ndarray
    """(N,) uint8 ``Material`` of each point's surface."""
    range_true_m: np.ndarray
    """(N,) float32 noise-free range."""
    beam: np.ndarray
    """(N,) int16 beam (row) index, 0 = top."""


_RAY_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
# full scale of the intensity column per ``LidarConfig.intensity_units``
_UNITS_MAX = {"byte": 255.0, "uint16": 65535.0}


def lidar_rays(cfg: LidarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions (C, B, 3) float32 in the LiDAR frame (columns in firing order, beams
    top first) and each column's firing time relative to the stamp (C,) in seconds."""
    key = (cfg.beams, cfg.elevation_max_deg, cfg.elevation_min_deg, cfg.elevation_table_deg, cfg.azimuth_step_deg,
           cfg.rate_hz)
    if key not in _RAY_CACHE:
        el = cfg.elevations_rad()
        az = cfg.azimuths_rad()
        ce, se = np.cos(el), np.sin(el)
        d = np.stack([np.cos(az)[:, None] * ce, np.sin(az)[:, None] * ce, np.broadcast_to(se, (len(az), len(el)))],
                     axis=-1)
        wrapped = np.angle(np.exp(1j * az))  # (-pi, pi]
        t_rel = -wrapped / (2 * np.pi * cfg.rate_hz)
        if len(_RAY_CACHE) > 16:
            _RAY_CACHE.clear()
        _RAY_CACHE[key] = (d.astype(np.float32), t_rel)
    return _RAY_CACHE[key]


def scan_lidar(geometry: SceneGeometry, cfg: LidarConfig, T_world_lidar: np.ndarray,
               rng: np.random.Generator) -> LidarScan:
    """One sweep from pose ``T_world_lidar``: (4, 4) for the whole sweep, or (C, 4, 4), one pose
    per firing column (motion during the sweep)."""
    dirs, t_rel = lidar_rays(cfg)
    C, B = dirs.shape[:2]
    T = np.asarray(T_world_lidar, np.float64)
    if T.ndim == 2:
        d_world = dirs.reshape(-1, 3) @ T[:3, :3].T.astype(np.float32)
        origins = T[:3, 3].astype(np.float32)[None]
    else:
        d_world = np.einsum("cij,cbj->cbi", T[:, :3, :3].astype(np.float32), dirs).reshape(-1, 3)
        origins = np.repeat(T[:, :3, 3].astype(np.float32), B, axis=0)
    hits = geometry.cast(origins, d_world, cfg.max_range_m)
    keep = hits.hit & (hits.t >= cfg.min_range_m)
    idx = np.flatnonzero(keep)
    prim, r = hits.prim[idx], hits.t[idx]
    dw = d_world[idx]
    o = origins[idx] if len(origins) > 1 else origins
    p = o + dw * r[:, None]
    soup = geometry.soup
    albedo, mat = surface_at(soup, prim, p, geometry.markings)
    cos_i = np.abs(np.einsum("ij,ij->i", soup.normals[prim], dw))
    refl = lidar_reflectivity(mat, albedo)
    retro = RETRO_REFLECTIVE[mat]
    intensity = refl * np.where(retro, 0.85 + 0.15 * cos_i, 0.25 + 0.75 * cos_i)
    if cfg.intensity_range_exponent > 0:
        ref = np.float32(cfg.intensity_range_ref_m)
        intensity *= (ref / np.maximum(r, ref)) ** np.float32(cfg.intensity_range_exponent)
    n = len(idx)
    if cfg.intensity_noise > 0:
        intensity *= 1.0 + cfg.intensity_noise * rng.standard_normal(n, dtype=np.float32)
    intensity = np.clip(intensity, 0.0, 1.0)
    p_drop = cfg.dropout_probability + EXTRA_DROPOUT[mat] + np.where(cos_i < 0.03, 0.8, 0.0)
    survive = rng.random(n, dtype=np.float32) >= p_drop
    r_meas = r + (cfg.range_noise_m * rng.standard_normal(n, dtype=np.float32) if cfg.range_noise_m > 0 else 0.0)
    survive &= (r_meas >= cfg.min_range_m) & (r_meas <= cfg.max_range_m)
    idx, r, r_meas, intensity, mat, prim = idx[survive], r[survive], r_meas[survive], intensity[survive], \
        mat[survive], prim[survive]
    if cfg.intensity_units != "unit":
        intensity = np.round(intensity * np.float32(_UNITS_MAX[cfg.intensity_units]))
    d_local = dirs.reshape(-1, 3)[idx]
    cols = [d_local * r_meas[:, None], intensity[:, None]]
    if cfg.with_time:
        cols.append(t_rel[idx // B][:, None])
    points = np.hstack(cols).astype(np.float32)
    return LidarScan(points, soup.object_id[prim], mat, r.astype(np.float32), (idx % B).astype(np.int16))
