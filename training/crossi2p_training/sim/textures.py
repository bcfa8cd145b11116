"""Procedural textures evaluated at ray hit points, identical for the camera and the LiDAR.

``surface_at(soup, prim, points, markings)`` returns, for each hit, the linear RGB albedo and
the refined material (a facade point may turn out to be a window, an asphalt point a lane
marking). The camera shades the albedo; the LiDAR turns material + albedo into reflectivity
(``materials.lidar_reflectivity``). Both read the same function of the surface point, so
texture edges sit at the same place for both sensors.

Noise is a hash of integer lattice coordinates (no state): deterministic, seed-free, and the
same wherever the point is seen from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .materials import Material as M
from .mesh import TriangleSoup

_U32 = np.uint32


@dataclass(frozen=True)
class RoadMarkings:
    """Painted markings on the asphalt, in road coordinates (s along, d to the left)."""

    lines: np.ndarray
    """(L, 4) lateral centre d, width, dash length (0: solid), dash period."""
    zebras: np.ndarray
    """(Z, 2) start s and length of zebra crossings."""
    zebra_half_width_m: float
    """Zebra stripes span |d| below this."""


def _as_u32(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.int32:
        return x.view(_U32)
    if x.dtype.kind == "f":  # floored lattice coordinates: |x| < 2**31 in any scene
        return x.astype(np.int32).view(_U32)
    return x.astype(np.int64).astype(_U32)


def hash2(ix: np.ndarray, iy: np.ndarray, salt: int = 0) -> np.ndarray:
    """Uniform [0, 1) float32 from integer lattice coordinates (any int dtype, wrapping)."""
    h = _as_u32(ix) * _U32(0x8DA6B343)
    h ^= _as_u32(iy) * _U32(0xD8163841)
    h ^= _U32((salt * 0x9E3779B1) & 0xFFFFFFFF)
    h ^= h >> _U32(13)
    h *= _U32(0x5BD1E995)
    h ^= h >> _U32(15)
    return (h >> _U32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(x: np.ndarray, y: np.ndarray, salt: int = 0) -> np.ndarray:
    """Smooth 2D value noise in [0, 1) with unit lattice spacing."""
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = (x - fx).astype(np.float32), (y - fy).astype(np.float32)
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    ix, iy = fx.astype(np.int32), fy.astype(np.int32)
    a, b = hash2(ix, iy, salt), hash2(ix + 1, iy, salt)
    c, d = hash2(ix, iy + 1, salt), hash2(ix + 1, iy + 1, salt)
    top = a + (b - a) * tx
    return top + (c + (d - c) * tx - top) * ty


def _tex_coords(soup: TriangleSoup, prim: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rel = points - soup.tex_origin[prim]
    a = np.einsum("ij,ij->i", rel, soup.tex_u[prim])
    b = np.einsum("ij,ij->i", rel, soup.tex_v[prim])
    return a, b


def _asphalt(soup, prim, p, markings):
    a, d = _tex_coords(soup, prim, p)
    a += soup.tex_params[prim, 0]
    grain = hash2(np.floor(a * 30), np.floor(d * 30), 1)
    patch = value_noise(a * 0.15, d * 0.15, 2)
    albedo = soup.color[prim] * ((0.82 + 0.36 * grain) * (0.8 + 0.4 * patch))[:, None]
    paint = np.zeros(len(a), bool)
    for dc, w, dash, period in markings.lines:
        m = np.abs(d - dc) < w / 2
        if dash > 0:
            m &= np.mod(a, period) < dash
        paint |= m
    for z0, zl in markings.zebras:
        paint |= (a >= z0) & (a < z0 + zl) & (np.abs(d) < markings.zebra_half_width_m) & (np.mod(d, 1.0) < 0.5)
    albedo[paint] = (0.72 * (0.9 + 0.15 * grain[paint]))[:, None]
    mat = np.where(paint, M.LANE_MARKING, M.ASPHALT).astype(np.uint8)
    return albedo, mat


def _sidewalk(soup, prim, p, markings):
    a, d = _tex_coords(soup, prim, p)
    a += soup.tex_params[prim, 0]
    ia, idd = np.floor(a / 0.5), np.floor(d / 0.5)
    slab = 0.88 + 0.24 * hash2(ia, idd, 3)
    joint = ((a / 0.5 - ia) < 0.05) | ((d / 0.5 - idd) < 0.05)
    f = slab * np.where(joint, 0.55, 1.0) * (0.9 + 0.2 * hash2(np.floor(a * 40), np.floor(d * 40), 4))
    return soup.color[prim] * f[:, None], None


def _kerb(soup, prim, p, markings):
    a, _ = _tex_coords(soup, prim, p)
    a += soup.tex_params[prim, 0]
    ia = np.floor(a)
    f = (0.9 + 0.2 * hash2(ia, ia * 7, 5)) * np.where((a - ia) < 0.02, 0.6, 1.0)
    return soup.color[prim] * f[:, None], None


def _ground(soup, prim, p, markings):
    a, d = _tex_coords(soup, prim, p)
    a += soup.tex_params[prim, 0]
    n = value_noise(a * 0.25, d * 0.25, 6)
    grain = hash2(np.floor(a * 20), np.floor(d * 20), 7)
    dirt = np.array([0.20, 0.16, 0.11], np.float32)
    w = np.clip((n - 0.45) * 3.0, 0.0, 1.0)[:, None]
    albedo = soup.color[prim] * (1 - w) + dirt * w
    return albedo * (0.75 + 0.5 * grain)[:, None], None


def _facade(soup, prim, p, markings):
    a, b = _tex_coords(soup, prim, p)
    P = soup.tex_params[prim]
    spacing, fh = P[:, 0], P[:, 3]
    x = a - P[:, 1]
    col = np.floor(x / spacing)
    dx = np.abs(x - (col + 0.5) * spacing)  # from the window column's centre line
    fl = np.floor(b / fh)
    ly = b - fl * fh  # height within the storey
    in_cols = (col >= 0) & (col < P[:, 2])
    ground = fl == 0
    shop = ground & (P[:, 10] > 0)
    # signed distance outside the window rectangle (negative inside): shop windows on the
    # ground floor of shops, regular windows elsewhere below the roof
    ex = np.where(shop, dx - 0.42 * spacing, dx - P[:, 5] * spacing * 0.5)
    ey = np.where(shop, np.maximum(0.45 - b, b - np.minimum(fh - 0.35, 2.7)),
                  np.maximum(P[:, 7] - ly, ly - P[:, 7] - P[:, 6]))
    e = np.maximum(ex, ey)
    region = in_cols & (fl < P[:, 4])
    win = region & (e < 0)
    frame = region & (e >= 0) & (e < 0.08)
    door_col = in_cols & ground & (col == P[:, 8])
    door = door_col & (dx < 0.6) & (b < 2.2)
    door_frame = door_col & ~door & (dx < 0.68) & (b < 2.28)
    win &= ~(door | door_frame)
    frame = (frame & ~door) | door_frame
    # wall: plaster variation, a dark plinth, a band under the roof
    wall = 0.9 + 0.15 * value_noise(a * 0.3, b * 0.3, 8) + 0.06 * hash2(np.floor(a * 25), np.floor(b * 25), 9)
    wall[b < 0.45] *= 0.6
    top = P[:, 4] * fh
    wall[(b > top) & (b < top + 0.25)] *= 0.75
    albedo = soup.color[prim] * wall[:, None]
    # glass: a tint per window, some with light curtains
    w = np.flatnonzero(win)
    h = hash2(col[w] + P[w, 9] * 131, fl[w], 10)
    glass = np.array([0.035, 0.045, 0.06], np.float32) * (0.6 + 0.8 * h)[:, None]
    glass[h > 0.8] = (0.35, 0.33, 0.3)
    albedo[w] = glass
    albedo[frame] = (0.62, 0.62, 0.6)
    dd = np.flatnonzero(door)
    bh = P[dd, 9].astype(np.int64)
    albedo[dd] = np.array([0.14, 0.08, 0.045], np.float32) * (0.7 + 0.6 * hash2(bh, bh, 11))[:, None]
    mat = np.full(len(a), M.FACADE, np.uint8)
    mat[frame] = M.WINDOW_FRAME
    mat[w] = M.WINDOW
    mat[dd] = M.DOOR
    return albedo, mat


def _plate(soup, prim, p, markings):
    a, b = _tex_coords(soup, prim, p)
    cell = np.floor((a - 0.06) / 0.045)
    glyph = (a > 0.06) & (a < 0.46) & (b > 0.025) & (b < 0.095) & (np.mod(a - 0.06, 0.045) < 0.03) \
        & (hash2(cell, np.floor(b / 0.035), 12) > 0.3)
    albedo = soup.color[prim].copy()
    albedo[glyph] = (0.03, 0.03, 0.03)
    mat = np.where(glyph, M.CAR_PAINT, M.PLATE).astype(np.uint8)
    return albedo, mat


def _sign(soup, prim, p, markings):
    a, b = _tex_coords(soup, prim, p)
    P = soup.tex_params[prim]
    shape, size, border, extra = P[:, 0], P[:, 1], P[:, 2:5], P[:, 5]
    r = np.hypot(a, b)
    is_border = (shape == 0) & (r > 0.4 * size)
    # triangle with circumradius R = size / 1.6: distance to the nearest edge
    R = size / 1.6
    flip = np.where(extra > 0, -1.0, 1.0)
    edge = np.full(len(a), np.inf, np.float32)
    for ang in (270.0, 30.0, 150.0):
        nx, ny = np.cos(np.radians(ang)), np.sin(np.radians(ang))
        edge = np.minimum(edge, R / 2 - (a * nx + b * ny * flip))
    is_border |= (shape == 1) & (edge < 0.17 * R)
    aspect = np.where(extra > 0, extra, 1.0)
    is_border |= (shape == 2) & ((np.abs(a) > 0.43 * size) | (np.abs(b) > size / 2 * aspect - 0.07 * size))
    albedo = soup.color[prim].copy()
    albedo[is_border] = border[is_border]
    return albedo, None


def _trunk(soup, prim, p, markings):
    f = 0.7 + 0.6 * value_noise(p[:, 2] * 8.0, (p[:, 0] + p[:, 1]) * 6.0, 13)
    return soup.color[prim] * f[:, None], None


def _foliage(soup, prim, p, markings):
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    n = 0.6 * value_noise(x * 2.2 + z * 1.3, y * 2.2 - z * 0.7, 14)
    n += 0.4 * value_noise(x * 7 - z * 3, y * 7 + z * 5, 15)
    return soup.color[prim] * (0.45 + 1.1 * n)[:, None], None


def _roof(soup, prim, p, markings):
    n = 0.85 + 0.3 * value_noise(p[:, 0] * 0.5, p[:, 1] * 0.5, 16)
    return soup.color[prim] * n[:, None], None


_TEXTURES = {
    M.ASPHALT: _asphalt, M.SIDEWALK: _sidewalk, M.KERB: _kerb, M.GROUND: _ground, M.FACADE: _facade,
    M.PLATE: _plate, M.SIGN: _sign, M.TRUNK: _trunk, M.FOLIAGE: _foliage, M.ROOF: _roof,
}


def surface_at(soup: TriangleSoup, prim: np.ndarray, points: np.ndarray,
               markings: RoadMarkings) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (M, 3) float32 linear RGB and material (M,) uint8 at hit points.

    Args:
        soup: the triangles that were hit.
        prim: (M,) index of the hit triangle in ``soup`` (all valid).
        points: (M, 3) float32 world hit points.
        markings: road markings for the asphalt texture.
    """
    mat = soup.material[prim]
    albedo = soup.color[prim]
    out_mat = mat.copy()
    order = np.argsort(mat, kind="stable")
    bounds = np.searchsorted(mat[order], np.arange(len(_M_ALL) + 1))
    for m in _TEXTURES:
        idx = order[bounds[m]:bounds[m + 1]]
        if idx.size:
            alb, refined = _TEXTURES[m](soup, prim[idx], points[idx], markings)
            albedo[idx] = alb
            if refined is not None:
                out_mat[idx] = refined
    return albedo, out_mat


_M_ALL = list(M)
