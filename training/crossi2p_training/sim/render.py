"""Camera rendering: one ray per pixel (through the exact distortion model), shaded.

Rays are the pixel centres unprojected with ``CameraModel.undistort_pixels``; a pixel whose
ray does not project back onto itself (outside the region where the distortion model is
invertible) stays black with no depth. Shading: Lambert sun light (with optional shadow rays)
plus a sky/ground hemisphere ambient, sky reflections on glass, distance haze, a sky gradient
where nothing is hit, sRGB gamma and sensor noise. Alongside the image come a z-depth buffer,
an object-id buffer and a material buffer from the ray through each pixel centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossi2p.camera import CameraModel

from .config import CameraConfig
from .materials import GLASS, Material
from .raycast import SceneGeometry
from .textures import surface_at

# Sub-pixel offsets for anti-aliasing (rotated grid), after the pixel centre.
_AA_OFFSETS = np.array([[0.0, 0.0], [0.125, 0.375], [-0.375, 0.125], [-0.125, -0.375], [0.375, -0.125]])
_SKY_ZENITH = np.array([0.16, 0.32, 0.72], np.float32)
_SKY_HORIZON = np.array([0.66, 0.75, 0.86], np.float32)
_SUN_COLOUR = np.array([1.05, 1.0, 0.92], np.float32)
_AMBIENT_SKY = np.array([0.30, 0.34, 0.42], np.float32)
_AMBIENT_GROUND = np.array([0.10, 0.09, 0.08], np.float32)
HAZE_DISTANCE_M = 450.0
# rows: constant ambient, ambient varying with the normal's z, sun (times n . sun)
_LIGHT_MATRIX = np.stack([_AMBIENT_SKY * 0.55 + _AMBIENT_GROUND * 0.5, _AMBIENT_SKY * 0.45 - _AMBIENT_GROUND * 0.5,
                          _SUN_COLOUR]).astype(np.float32)
_LUT_SIZE = 4096
_GAMMA_LUT = (np.power(np.arange(_LUT_SIZE) / (_LUT_SIZE - 1), 1 / 2.2) * 255.0).astype(np.float32)


@dataclass
class CameraRender:
    """A rendered camera frame and its ground-truth buffers (H x W)."""

    image: np.ndarray
    """(H, W, 3) uint8 RGB."""
    depth: np.ndarray
    """(H, W) float32 z depth in the camera optical frame (metres); inf where nothing was hit."""
    object_id: np.ndarray
    """(H, W) int32 id of the object seen through the pixel centre; 0: sky / no ray."""
    material: np.ndarray
    """(H, W) uint8 ``Material`` seen through the pixel centre (0: sky / no ray)."""


_RAY_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def camera_rays(camera: CameraModel, antialias: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions in the camera optical frame through every pixel (cached per camera).

    Returns:
        directions: (S, H*W, 3) float32, S = 1 (pixel centres) or 5 (centre + 4 anti-aliasing
            samples), pixels row-major;
        valid: (H*W,) bool, the pixel centre's ray projects back onto the pixel (< 0.05 px).
    """
    key = (camera.K.tobytes(), camera.distortion.tobytes(), camera.distortion_model, camera.width,
           camera.height, bool(antialias))
    if key in _RAY_CACHE:
        return _RAY_CACHE[key]
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    uv = np.column_stack([u.ravel(), v.ravel()]).astype(np.float64)
    offsets = _AA_OFFSETS if antialias else _AA_OFFSETS[:1]
    dirs = np.empty((len(offsets), len(uv), 3), np.float32)
    valid = None
    for i, off in enumerate(offsets):
        xy = camera.undistort_pixels(uv + off)
        d = np.column_stack([xy, np.ones(len(xy))])
        ok = np.all(np.isfinite(d), axis=1)
        d[~ok] = (0.0, 0.0, 1.0)
        if i == 0:
            back, _, proj_ok = camera.project(d)
            err = np.linalg.norm(back - uv, axis=1)
            with np.errstate(invalid="ignore"):
                valid = ok & proj_ok & (err < 0.05)
        dirs[i] = d / np.linalg.norm(d, axis=1, keepdims=True)
    if len(_RAY_CACHE) > 16:
        _RAY_CACHE.clear()
    _RAY_CACHE[key] = (dirs, valid)
    return dirs, valid


def sky_colour(directions: np.ndarray) -> np.ndarray:
    """(N, 3) linear sky radiance for world directions (N, 3)."""
    w = np.clip(directions[:, 2] / 0.45, 0.0, 1.0) ** 0.7
    return _SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * w[:, None]


def shade(geometry: SceneGeometry, prim: np.ndarray, t: np.ndarray, origins: np.ndarray, directions: np.ndarray,
          shadows: bool) -> tuple[np.ndarray, np.ndarray]:
    """Linear radiance (N, 3) float32 of N rays with hits ``prim`` / ``t``, and the material
    (N,) uint8 they see (0: sky)."""
    soup = geometry.soup
    hit = prim >= 0
    idx = np.flatnonzero(hit)
    p = np.multiply(directions, t[:, None])
    p += origins
    albedo = np.zeros((len(prim), 3), np.float32)
    material = np.zeros(len(prim), np.uint8)
    if idx.size:
        albedo[idx], material[idx] = surface_at(soup, prim[idx], p[idx], geometry.markings)
    n = soup.normals[np.maximum(prim, 0)]
    facing = np.einsum("ij,ij->i", n, directions)
    n[facing > 0] *= -1
    sun = geometry.sun_direction
    ndl = np.maximum(n @ sun, 0.0)
    if shadows:
        lit = np.flatnonzero(hit & (ndl > 0))
        if lit.size:
            blocked = geometry.occluded(p[lit] + n[lit] * 0.02, sun[None], 400.0)
            ndl[lit[blocked]] = 0.0
    # hemisphere ambient (sky above, ground bounce below) + sun, attenuated by the haze; one
    # (N, 3) @ (3, 3) product does it for all channels
    haze = 1.0 - np.exp(t * np.float32(-1.0 / HAZE_DISTANCE_M))
    keep = 1.0 - haze
    terms = np.column_stack([keep, n[:, 2] * keep, ndl * keep])
    colour = albedo * (terms @ _LIGHT_MATRIX)
    colour += haze[:, None] @ _SKY_HORIZON[None]
    shiny = np.flatnonzero(GLASS[material] | (material == Material.CAR_PAINT))
    if shiny.size:  # sky reflection on glass and paint
        ns, ds = n[shiny], directions[shiny]
        cos_i = np.abs(facing[shiny])
        r = ds - 2 * np.einsum("ij,ij->i", ds, ns)[:, None] * ns
        is_glass = GLASS[material[shiny]]
        k = (np.where(is_glass, 0.1, 0.04) + np.where(is_glass, 0.35, 0.2) * (1 - cos_i) ** 5) * keep[shiny]
        colour[shiny] += sky_colour(r) * k[:, None]
    miss = np.flatnonzero(~hit)
    colour[miss] = sky_colour(directions[miss])
    return colour, material


def render_camera(geometry: SceneGeometry, camera: CameraModel, T_world_cam: np.ndarray, cfg: CameraConfig,
                  rng: np.random.Generator) -> CameraRender:
    """Render ``camera`` at pose ``T_world_cam`` (camera optical frame -> world)."""
    dirs_cam, valid = camera_rays(camera, cfg.antialias)
    R = T_world_cam[:3, :3].astype(np.float32)
    origin = T_world_cam[:3, 3].astype(np.float32)[None]
    H, W = camera.height, camera.width
    accum = None
    for i in range(len(dirs_cam)):
        d = dirs_cam[i] @ R.T
        hits = geometry.cast(origin, d, 1e4)
        colour, mat = shade(geometry, hits.prim, hits.t, origin, d, cfg.shadows)
        accum = colour if accum is None else accum + colour
        if i == 0:
            prim0, t0, mat0 = hits.prim, hits.t, mat
    colour = accum / len(dirs_cam)
    srgb = _GAMMA_LUT[np.clip(colour * (_LUT_SIZE - 1), 0, _LUT_SIZE - 1).astype(np.int32)]
    if cfg.pixel_noise_sigma > 0:
        srgb += rng.standard_normal(srgb.shape, dtype=np.float32) * cfg.pixel_noise_sigma
    srgb[~valid] = 0.0
    image = np.clip(srgb + 0.5, 0, 255).astype(np.uint8).reshape(H, W, 3)
    hit = (prim0 >= 0) & valid
    depth = np.full(H * W, np.inf, np.float32)
    depth[hit] = t0[hit] * dirs_cam[0][hit, 2]
    object_id = np.zeros(H * W, np.int32)
    object_id[hit] = geometry.soup.object_id[prim0[hit]]
    mat0 = np.where(hit, mat0, 0).astype(np.uint8)
    return CameraRender(image, depth.reshape(H, W), object_id.reshape(H, W), mat0.reshape(H, W))
