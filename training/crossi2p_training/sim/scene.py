"""Procedural street scene, deterministic by its random generator.

A gently curving road (arc length ``s`` along its centreline, lateral offset ``d`` to the left)
with lanes, lane markings, zebra crossings, kerbs and sidewalks; buildings with textured facades
along both sides; parked cars, moving cars, street lamps, traffic signs and trees; optionally
hedges and bushes, street clutter and bridges over the road (``SceneConfig``). The ground is
flat (z = 0 on the road, the kerb height beside it). World frame: x, y horizontal, z up.

Static geometry is one ``TriangleSoup``; moving cars are a ``Traffic`` that gives their
triangles at any time.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .config import SceneConfig
from .materials import Material as M
from .textures import RoadMarkings
from .mesh import MeshBuilder, TriangleSoup, cylinder_triangles, frustum_faces, polygon_triangles, \
    unit_icosphere, yaw_matrix

# Object ids below FIRST_OBJECT_ID name the road corridor surfaces.
ROAD_ID, KERB_ID, SIDEWALK_ID, GROUND_ID = 1, 2, 3, 4
FIRST_OBJECT_ID = 10

FACADE_COLOURS = np.array([
    (0.75, 0.72, 0.64), (0.62, 0.52, 0.36), (0.50, 0.50, 0.50), (0.40, 0.16, 0.10), (0.74, 0.60, 0.30),
    (0.36, 0.44, 0.52), (0.26, 0.13, 0.09), (0.68, 0.42, 0.30), (0.58, 0.60, 0.55), (0.80, 0.78, 0.74),
])
CAR_COLOURS = np.array([
    (0.80, 0.80, 0.80), (0.03, 0.03, 0.03), (0.35, 0.36, 0.38), (0.55, 0.56, 0.58), (0.45, 0.03, 0.02),
    (0.04, 0.10, 0.35), (0.90, 0.88, 0.82), (0.08, 0.20, 0.10), (0.55, 0.35, 0.05), (0.15, 0.15, 0.17),
])


# ---------------------------------------------------------------------------------------- road
@dataclass
class Road:
    """Road centreline sampled every ``step`` metres of arc length ``s``; ``s = 0`` lies at the
    world origin with heading 0 (along +x)."""

    s: np.ndarray  # (M,)
    xy: np.ndarray  # (M, 2)
    heading: np.ndarray  # (M,) radians, unwrapped
    curvature_terms: np.ndarray  # (K, 3) amplitude (1/m), angular wavenumber (rad/m), phase

    @classmethod
    def random(cls, rng: np.random.Generator, s_min: float, s_max: float, max_curvature_per_m: float,
               step: float = 0.25) -> "Road":
        k = 3
        wavelength = rng.uniform(200.0, 900.0, k)
        amp = rng.normal(size=k)
        amp *= max_curvature_per_m * rng.uniform(0.3, 1.0) / np.abs(amp).sum()
        terms = np.column_stack([amp, 2 * np.pi / wavelength, rng.uniform(0, 2 * np.pi, k)])
        i0, i1 = int(np.floor(s_min / step)) - 1, int(np.ceil(s_max / step)) + 1
        s = np.arange(i0, i1 + 1) * step
        A, w, ph = terms[:, 0:1], terms[:, 1:2], terms[:, 2:3]
        heading = np.sum(-A / w * (np.cos(w * s + ph) - np.cos(ph)), axis=0)
        dxy = np.column_stack([np.cos(heading), np.sin(heading)])
        mid = 0.5 * (dxy[1:] + dxy[:-1]) * step
        xy = np.vstack([np.zeros((1, 2)), np.cumsum(mid, axis=0)])
        xy -= xy[-i0]  # s = 0 at the origin
        return cls(s, xy, heading, terms)

    def frame(self, s) -> tuple[np.ndarray, np.ndarray]:
        """Centreline point (N, 2) and heading (N,) at arc lengths ``s`` (N,)."""
        s = np.atleast_1d(np.asarray(s, float))
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        return np.column_stack([x, y]), np.interp(s, self.s, self.heading)

    def point(self, s, d) -> np.ndarray:
        """World xy (N, 2) at arc length ``s`` and lateral offset ``d`` (left positive)."""
        c, h = self.frame(s)
        d = np.asarray(d, float)
        return c + d[..., None] * np.column_stack([-np.sin(h), np.cos(h)])


@dataclass
class RoadLayout:
    """Cross-section of the road and its markings."""

    lanes_per_direction: int
    lane_width_m: float
    parking_left: bool
    parking_right: bool
    parking_width_m: float
    kerb_height_m: float
    sidewalk_left_m: float
    sidewalk_right_m: float
    lines: np.ndarray
    """(L, 4) painted lines: lateral centre d, width, dash length (0: solid), dash period (m)."""
    zebras: np.ndarray
    """(Z, 2) zebra crossings: start s and length along the road (m)."""

    @property
    def half_width_left(self) -> float:
        return self.lanes_per_direction * self.lane_width_m + (self.parking_width_m if self.parking_left else 0.0)

    @property
    def half_width_right(self) -> float:
        return self.lanes_per_direction * self.lane_width_m + (self.parking_width_m if self.parking_right else 0.0)

    def lane_centre(self, lane: int, side: int) -> float:
        """Lateral offset of driving lane ``lane`` (0 = innermost) on ``side`` (+1 left, -1 right)."""
        return side * (lane + 0.5) * self.lane_width_m


def random_layout(cfg: SceneConfig, rng: np.random.Generator, s_min: float, s_max: float) -> RoadLayout:
    lanes = int(rng.choice(cfg.lanes_per_direction))
    lane_w = rng.uniform(*cfg.lane_width_m)
    park_l, park_r = rng.random(2) < cfg.parking_lane_probability
    lines = []
    if lanes == 1:
        lines.append((0.0, 0.12, 3.0, 9.0))  # dashed centre line
    else:
        lines += [(-0.1, 0.12, 0.0, 1.0), (0.1, 0.12, 0.0, 1.0)]  # double solid centre line
        for i in range(1, lanes):
            lines += [(i * lane_w, 0.12, 3.0, 9.0), (-i * lane_w, 0.12, 3.0, 9.0)]
    for side, park in ((1, park_l), (-1, park_r)):
        edge = lanes * lane_w
        lines.append((side * (edge - 0.1) if not park else side * edge, 0.15, 0.0, 1.0))
    n_zebra = rng.poisson(cfg.zebra_crossings_per_100m * (s_max - s_min) / 100.0)
    zebras = np.column_stack([rng.uniform(s_min, s_max, n_zebra), rng.uniform(3.0, 4.5, n_zebra)])
    return RoadLayout(lanes, lane_w, bool(park_l), bool(park_r), cfg.parking_lane_width_m, cfg.kerb_height_m,
                      rng.uniform(*cfg.sidewalk_width_m), rng.uniform(*cfg.sidewalk_width_m),
                      np.asarray(lines, np.float32).reshape(-1, 4), zebras.astype(np.float32).reshape(-1, 2))


def corridor_stations(s_min: float, s_max: float, fine_min: float, fine_max: float, fine_step: float,
                      coarse_step: float = 10.0) -> np.ndarray:
    """Arc lengths of the road mesh cross-sections: every ``fine_step`` over [fine_min,
    fine_max], every ``coarse_step`` beyond it out to [s_min, s_max]."""
    n = max(int(np.ceil((fine_max - fine_min) / fine_step)), 1)
    fine = np.linspace(fine_min, fine_max, n + 1)
    before = fine_min - coarse_step * np.arange(int(np.ceil((fine_min - s_min) / coarse_step)), 0, -1)
    after = fine_max + coarse_step * np.arange(1, int(np.ceil((s_max - fine_max) / coarse_step)) + 1)
    return np.concatenate([before, fine, after])


def road_corridor(builder: MeshBuilder, road: Road, layout: RoadLayout, s_min: float, s_max: float,
                  side_extent_m: float, step_m: float, rng: np.random.Generator,
                  fine_range: tuple[float, float] | None = None) -> None:
    """Road, kerbs, sidewalks and ground as strips along the centreline between s_min and s_max
    (segments of ``step_m`` within ``fine_range``, coarser beyond).

    Texture frame of every strip quad: origin on the centreline, u along the road, v to the
    left, ``tex_params[0]`` = s of the origin, so the textures read (s, d) surface coordinates.
    """
    fine_range = fine_range or (s_min, s_max)
    hk, hl, hr = layout.kerb_height_m, layout.half_width_left, layout.half_width_right
    kt = 0.15  # kerb top width
    # cross-section polyline (d, z) from the far right to the far left, and the segment materials
    prof = [(-side_extent_m, hk), (-(hr + layout.sidewalk_right_m), hk), (-(hr + kt), hk), (-hr, hk), (-hr, 0.0),
            (hl, 0.0), (hl, hk), (hl + kt, hk), (hl + layout.sidewalk_left_m, hk), (side_extent_m, hk)]
    mats = [M.GROUND, M.SIDEWALK, M.KERB, M.KERB, M.ASPHALT, M.KERB, M.KERB, M.SIDEWALK, M.GROUND]
    ids = [GROUND_ID, SIDEWALK_ID, KERB_ID, KERB_ID, ROAD_ID, KERB_ID, KERB_ID, SIDEWALK_ID, GROUND_ID]
    colours = {
        M.GROUND: np.array([0.16, 0.17, 0.09]) * rng.uniform(0.8, 1.2),
        M.SIDEWALK: np.array([0.42, 0.40, 0.37]) * rng.uniform(0.8, 1.15),
        M.KERB: np.array([0.50, 0.50, 0.48]) * rng.uniform(0.9, 1.1),
        M.ASPHALT: np.array([0.11, 0.11, 0.115]) * rng.uniform(0.8, 1.25),
    }
    s = corridor_stations(s_min, s_max, fine_range[0], fine_range[1], step_m)
    n_seg = len(s) - 1
    c, h = road.frame(s)
    t = np.column_stack([np.cos(h), np.sin(h), np.zeros_like(h)])
    nrm = np.column_stack([-np.sin(h), np.cos(h), np.zeros_like(h)])
    origin = np.column_stack([c, np.zeros(len(s))])
    params = np.zeros((n_seg, 1))
    params[:, 0] = s[:-1]
    for j, (mat, oid) in enumerate(zip(mats, ids, strict=True)):
        (d0, z0), (d1, z1) = prof[j], prof[j + 1]
        p0 = origin + d0 * nrm + [0, 0, z0]
        p1 = origin + d1 * nrm + [0, 0, z1]
        quads = np.stack([p0[:-1], p1[:-1], p1[1:], p0[1:]], axis=1)
        builder.add_quads(quads, mat, oid, colours[mat], origin[:-1], t[:-1], nrm[:-1], params)


# ------------------------------------------------------------------------------ object meshes
def place(soup: TriangleSoup, R: np.ndarray, t: np.ndarray) -> TriangleSoup:
    """The soup moved by rotation R (3, 3) and translation t (3,)."""
    R32 = R.astype(np.float32)
    t32 = np.asarray(t, np.float32)
    return TriangleSoup(soup.triangles @ R32.T + t32, soup.normals @ R32.T, soup.material, soup.object_id,
                        soup.color, soup.tex_origin @ R32.T + t32, soup.tex_u @ R32.T, soup.tex_v @ R32.T,
                        soup.tex_params)


def car_mesh(rng: np.random.Generator, object_id: int, kind: str | None = None) -> TriangleSoup:
    """A car (sedan/hatchback/van) in its own frame: x forward, y left, z up, centred on its
    footprint at ground level."""
    b = MeshBuilder()
    kind = kind or rng.choice(["sedan", "sedan", "hatch", "van"])
    paint = CAR_COLOURS[rng.integers(len(CAR_COLOURS))] * rng.uniform(0.85, 1.1)
    glass = np.array([0.04, 0.05, 0.06])
    if kind == "van":
        L, W, clear, body_h = rng.uniform(4.8, 5.6), rng.uniform(1.9, 2.05), 0.3, rng.uniform(1.6, 1.9)
    else:
        L, W, clear, body_h = rng.uniform(3.9, 4.8), rng.uniform(1.7, 1.88), 0.28, rng.uniform(0.55, 0.7)
    z_body = clear + body_h
    f = frustum_faces((0, 0), 0.0, clear, z_body, L, W)
    b.add_quads(f.quads, M.CAR_PAINT, object_id, paint, tex_params=[1.0])  # tex_params[0] = 1: paint
    if kind == "van":
        # windscreen and side windows as glass panels just outside the body
        hx, hw = L / 2 + 0.01, W / 2 + 0.01
        z0, z1 = z_body - 0.75, z_body - 0.12
        b.add_quads([[(hx, -hw + 0.12, z0), (hx, hw - 0.12, z0), (hx, hw - 0.12, z1), (hx, -hw + 0.12, z1)]],
                    M.CAR_GLASS, object_id, glass)
        for sy in (-1, 1):
            b.add_quads([[(L / 2 - 1.5, sy * hw, z0), (L / 2 - 0.2, sy * hw, z0), (L / 2 - 0.2, sy * hw, z1),
                          (L / 2 - 1.5, sy * hw, z1)]], M.CAR_GLASS, object_id, glass)
    else:
        cab_h = rng.uniform(0.45, 0.58)
        if kind == "hatch":
            cab = frustum_faces((-0.12 * L, 0), 0.0, z_body, z_body + cab_h, 0.62 * L, W - 0.08, 0.5 * L, W - 0.3,
                                top_shift_x=-0.02 * L)
        else:
            cab = frustum_faces((-0.05 * L, 0), 0.0, z_body, z_body + cab_h, 0.55 * L, W - 0.08, 0.36 * L, W - 0.3,
                                top_shift_x=-0.03 * L)
        mats = np.where(cab.is_top, M.CAR_PAINT, M.CAR_GLASS)
        cols = np.where(cab.is_top[:, None], paint, glass)
        b.add_quads(cab.quads, mats, object_id, cols, tex_params=cab.is_top[:, None].astype(float))
    # wheels
    r, wheel_w = 0.32, 0.22
    for x in (L / 2 - 0.8, -L / 2 + 0.8):
        for sy in (-1, 1):
            y_out = sy * (W / 2 + 0.005)
            b.add(cylinder_triangles((x, y_out, r), (x, y_out - sy * wheel_w, r), r, 8, "start"), M.TYRE, object_id,
                  (0.03, 0.03, 0.03))
    # number plates (retro-reflective), lights
    pz0, pz1 = clear + 0.12, clear + 0.24
    for sx in (-1, 1):
        x = sx * (L / 2 + 0.012)
        b.add_quads([[(x, -0.26, pz0), (x, 0.26, pz0), (x, 0.26, pz1), (x, -0.26, pz1)]], M.PLATE, object_id,
                    (0.85, 0.85, 0.82), (x, -0.26, pz0), (0, 1, 0), (0, 0, 1), [1.0])
        lz0, lz1 = z_body - 0.2, z_body - 0.06
        light = (0.85, 0.82, 0.75) if sx > 0 else (0.6, 0.03, 0.02)
        for sy in (-1, 1):
            y0, y1 = sy * (W / 2 - 0.08), sy * (W / 2 - 0.38)
            b.add_quads([[(x, y0, lz0), (x, y1, lz0), (x, y1, lz1), (x, y0, lz1)]], M.CAR_PAINT, object_id, light)
    return b.build()


def tree_mesh(rng: np.random.Generator, object_id: int) -> TriangleSoup:
    """A tree: hexagonal trunk and a lumpy ellipsoidal crown (80-triangle icosphere) whose
    lowest point is 2.6..4 m up (clear of the sensors and of parked vans under it)."""
    b = MeshBuilder()
    crown_base = rng.uniform(2.6, 4.0)
    r_crown = rng.uniform(1.3, 2.6)
    r_v = r_crown * rng.uniform(1.0, 1.5)
    trunk_r = rng.uniform(0.1, 0.2)
    cz = crown_base + 1.15 * r_v
    b.add(cylinder_triangles((0, 0, 0.0), (0, 0, cz), trunk_r, 6, caps=False), M.TRUNK, object_id,
          np.array([0.16, 0.11, 0.07]) * rng.uniform(0.7, 1.3))
    V, F = unit_icosphere(1)
    V = V * rng.uniform(0.8, 1.15, (len(V), 1)) * [r_crown, r_crown * rng.uniform(0.85, 1.15), r_v] + [0, 0, cz]
    foliage = np.array([0.05, 0.13, 0.035]) * rng.uniform(0.7, 1.4) * rng.uniform(0.85, 1.15, 3)
    b.add(V[F], M.FOLIAGE, object_id, foliage)
    return b.build()


def lamp_mesh(rng: np.random.Generator, object_id: int) -> TriangleSoup:
    """A street lamp standing at the origin with its arm reaching along +y (toward the road)."""
    b = MeshBuilder()
    h = rng.uniform(6.0, 8.0)
    arm = rng.uniform(1.2, 2.0)
    grey = np.array([0.32, 0.33, 0.34]) * rng.uniform(0.8, 1.3)
    b.add(cylinder_triangles((0, 0, 0), (0, 0, h), 0.08, 8, caps=True), M.POLE, object_id, grey)
    b.add(cylinder_triangles((0, 0, h - 0.1), (0, arm, h - 0.1), 0.04, 6, caps=True), M.POLE, object_id, grey)
    head = frustum_faces((0, arm), 0.0, h - 0.25, h - 0.05, 0.3, 0.6, bottom=True)
    b.add_quads(head.quads, M.POLE, object_id, grey * 0.8)
    return b.build()


def sign_mesh(rng: np.random.Generator, object_id: int) -> TriangleSoup:
    """A traffic sign facing -x (toward traffic coming along +x), post at the origin."""
    b = MeshBuilder()
    size = rng.uniform(0.6, 0.8)
    z_c = rng.uniform(2.2, 2.7) + size / 2
    grey = np.array([0.35, 0.35, 0.36])
    b.add(cylinder_triangles((0, 0, 0), (0, 0, z_c + size / 2), 0.035, 6), M.POLE, object_id, grey)
    shape = int(rng.integers(3))  # 0 circle, 1 triangle, 2 rectangle
    kind = rng.random()
    extra = 0.0
    if shape == 0:
        ang = np.linspace(0, 2 * np.pi, 17)[:-1]
        pts = np.column_stack([np.cos(ang), np.sin(ang)]) * size / 2
        inner, border = ((0.80, 0.80, 0.78), (0.55, 0.03, 0.02)) if kind < 0.6 else ((0.03, 0.12, 0.45),) * 2
    elif shape == 1:
        extra = 1.0 if kind < 0.3 else 0.0  # 1: pointing down
        ang = np.radians([90, 210, 330]) + np.pi * extra
        pts = np.column_stack([np.cos(ang), np.sin(ang)]) * size / 1.6
        inner, border = (0.80, 0.80, 0.78), (0.55, 0.03, 0.02)
    else:
        extra = 0.8 if kind < 0.5 else 1.0  # aspect ratio
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * size / 2 * [1.0, extra]
        inner, border = ((0.03, 0.12, 0.45), (0.80, 0.80, 0.78)) if kind < 0.7 else ((0.7, 0.55, 0.02),) * 2
    # plate in the y-z plane: local (u, v) = (-y, z) so that u points right for a viewer at -x
    x_front, x_back = -0.06, -0.05
    front = np.column_stack([np.full(len(pts), x_front), -pts[:, 0], z_c + pts[:, 1]])
    back = np.column_stack([np.full(len(pts), x_back), -pts[:, 0], z_c + pts[:, 1]])
    b.add(polygon_triangles((x_front, 0, z_c), front), M.SIGN, object_id, inner, (x_front, 0, z_c), (0, -1, 0),
          (0, 0, 1), [shape, size, *border, extra])
    b.add(polygon_triangles((x_back, 0, z_c), back), M.SIGN_BACK, object_id, grey)
    return b.build()


def building_mesh(rng: np.random.Generator, object_id: int, length: float, depth: float, floors: int,
                  floor_height: float, front_door: bool = True) -> TriangleSoup:
    """A building in its own frame: footprint [-length/2, length/2] x [0, depth] (x along the
    road, y away from it: the front at y = 0 faces -y), flat roof.

    Facade texture parameters of each wall (see ``textures.facade``): window column spacing,
    first column offset, column count, storey height, storeys, window width fraction, window
    height, sill height, door column (-1: none), building hash, shop-front flag, wall length.
    """
    b = MeshBuilder()
    height = floors * floor_height + rng.uniform(0.3, 1.2)
    f = frustum_faces((0.0, depth / 2), 0.0, 0.0, height, length, depth)
    wall = FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))] * rng.uniform(0.85, 1.1, 3)
    spacing = rng.uniform(2.2, 3.6)
    win_w, win_h, sill = rng.uniform(0.35, 0.6), rng.uniform(1.2, 1.7), rng.uniform(0.7, 1.0)
    win_h = min(win_h, floor_height - sill - 0.3)
    shop = float(rng.random() < 0.4)
    bhash = float(rng.integers(1 << 20))
    params = []
    for i in range(4):
        n_cols = max(int((f.length[i] - 0.8) // spacing), 0)
        a0 = (f.length[i] - n_cols * spacing) / 2
        door = float(rng.integers(n_cols)) if (i == 0 and front_door and n_cols > 0) else -1.0
        params.append([spacing, a0, n_cols, floor_height, floors, win_w, win_h, sill, door, bhash + i,
                       shop if i == 0 else 0.0, f.length[i]])
    side = ~f.is_top
    b.add_quads(f.quads[side], M.FACADE, object_id, wall, f.origin[side], f.u[side], f.v[side], np.array(params))
    roof = np.array([0.14, 0.13, 0.12]) * rng.uniform(0.7, 1.6)
    b.add_quads(f.quads[f.is_top], M.ROOF, object_id, roof, f.origin[f.is_top], f.u[f.is_top], f.v[f.is_top])
    return b.build()


def hedge_mesh(rng: np.random.Generator, object_id: int, length: float) -> TriangleSoup:
    """A hedge along x, centred on the origin: ``length`` m long, 0.6-1.6 m high, 0.6-1.2 m deep,
    in 1.5 m blocks of uneven height and width (a lumpy top and sides)."""
    b = MeshBuilder()
    h, w = rng.uniform(0.6, 1.6), rng.uniform(0.6, 1.2)
    n = max(1, int(round(length / 1.5)))
    seg = length / n
    foliage = np.array([0.05, 0.13, 0.035]) * rng.uniform(0.6, 1.3) * rng.uniform(0.85, 1.15, 3)
    for k in range(n):
        hk, wk = h * rng.uniform(0.85, 1.15), w * rng.uniform(0.9, 1.1)
        f = frustum_faces((-length / 2 + (k + 0.5) * seg, rng.uniform(-0.05, 0.05)), 0.0, 0.0, hk, seg, wk,
                          seg * 0.92, wk * 0.8)
        b.add_quads(f.quads, M.FOLIAGE, object_id, foliage)
    return b.build()


def bush_mesh(rng: np.random.Generator, object_id: int) -> TriangleSoup:
    """A bush standing on the origin: a lumpy ellipsoid 0.5-1.2 m in radius."""
    b = MeshBuilder()
    r = rng.uniform(0.5, 1.2)
    V, F = unit_icosphere(1)
    V = V * rng.uniform(0.8, 1.15, (len(V), 1)) * [r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.6, 0.9)]
    V[:, 2] += 0.7 * r
    b.add(V[F], M.FOLIAGE, object_id, np.array([0.05, 0.13, 0.035]) * rng.uniform(0.6, 1.4) * rng.uniform(0.85, 1.15, 3))
    return b.build()


def clutter_mesh(rng: np.random.Generator, object_id: int) -> TriangleSoup:
    """Street clutter standing on the origin (x along the kerb): a bollard, a bin, a bench or a
    railing segment."""
    b = MeshBuilder()
    kind = int(rng.integers(4))
    colour = np.array([(0.30, 0.31, 0.32), (0.10, 0.25, 0.12), (0.08, 0.08, 0.09), (0.12, 0.20, 0.45),
                       (0.55, 0.38, 0.20)][rng.integers(5)]) * rng.uniform(0.8, 1.2)
    if kind == 0:  # bollard
        b.add(cylinder_triangles((0, 0, 0), (0, 0, rng.uniform(0.8, 1.1)), rng.uniform(0.06, 0.12), 8), M.POLE,
              object_id, colour)
    elif kind == 1:  # bin
        side = rng.uniform(0.45, 0.7)
        b.add_quads(frustum_faces((0, 0), 0.0, 0.0, rng.uniform(0.9, 1.2), side, side, side * 1.05, side * 1.05).quads,
                    M.POLE, object_id, colour)
    elif kind == 2:  # bench: seat, back rest, two legs
        L = rng.uniform(1.5, 2.2)
        b.add_quads(frustum_faces((0, 0), 0.0, 0.42, 0.48, L, 0.45, bottom=True).quads, M.POLE, object_id, colour)
        b.add_quads(frustum_faces((0, 0.2), 0.0, 0.5, 0.9, L, 0.06, bottom=True).quads, M.POLE, object_id, colour)
        for x in (-0.4 * L, 0.4 * L):
            b.add_quads(frustum_faces((x, 0), 0.0, 0.0, 0.42, 0.08, 0.4).quads, M.POLE, object_id, colour * 0.6)
    else:  # railing: posts and two rails
        L, h = rng.uniform(2.0, 6.0), rng.uniform(0.9, 1.2)
        for x in np.linspace(-L / 2, L / 2, max(2, int(L / 1.5) + 1)):
            b.add(cylinder_triangles((x, 0, 0), (x, 0, h), 0.03, 6), M.POLE, object_id, colour)
        for z in (0.5 * h, h):
            b.add(cylinder_triangles((-L / 2, 0, z), (L / 2, 0, z), 0.025, 6), M.POLE, object_id, colour)
    return b.build()


def overpass_mesh(rng: np.random.Generator, object_id: int, half_width_m: float) -> TriangleSoup:
    """A bridge crossing the street, centred on the origin with x along the road: a deck 8-14 m
    wide (along the road) reaching ``half_width_m`` to each side, its underside 5-7 m up, parapets
    on it and pairs of pillars at both ends."""
    b = MeshBuilder()
    concrete = np.array([0.55, 0.54, 0.50]) * rng.uniform(0.75, 1.15)
    deck_w = rng.uniform(8.0, 14.0)
    z0 = rng.uniform(5.0, 7.0)
    z1 = z0 + rng.uniform(1.0, 1.8)
    b.add_quads(frustum_faces((0, 0), 0.0, z0, z1, deck_w, 2 * half_width_m, bottom=True).quads, M.KERB,
                object_id, concrete)
    for x in (-deck_w / 2 + 0.15, deck_w / 2 - 0.15):  # parapets
        b.add_quads(frustum_faces((x, 0), 0.0, z1, z1 + 1.0, 0.3, 2 * half_width_m).quads, M.KERB, object_id,
                    concrete * 0.9)
    for y in (-half_width_m + 0.6, half_width_m - 0.6):  # pillars
        for x in (-deck_w / 3, deck_w / 3):
            b.add_quads(frustum_faces((x, y), 0.0, 0.0, z0, 0.9, 0.9).quads, M.KERB, object_id, concrete * 0.95)
    return b.build()


def _scene_variety(cfg: SceneConfig, rng: np.random.Generator, put, ids, layout: "RoadLayout",
                   s_min: float, s_max: float) -> None:
    """Hedges and bushes, street clutter and an overpass (``SceneConfig`` hedge / clutter /
    overpass options; nothing is drawn from ``rng`` when they are all 0)."""
    if cfg.hedge_probability <= 0 and cfg.clutter_per_100m <= 0 and cfg.overpass_probability <= 0:
        return
    hk = layout.kerb_height_m
    for side in (1, -1):
        hw = layout.half_width_left if side > 0 else layout.half_width_right
        sw = layout.sidewalk_left_m if side > 0 else layout.sidewalk_right_m
        if rng.random() < cfg.hedge_probability:
            s = s_min + rng.uniform(0, 10)
            while s < s_max:
                if rng.random() < 0.6:
                    length = rng.uniform(4.0, 16.0)
                    put(hedge_mesh(rng, ids(), length), s + length / 2, side * (hw + sw - 0.6), 0.0, hk)
                    s += length
                else:
                    put(bush_mesh(rng, ids()), s, side * (hw + sw - rng.uniform(0.5, 1.2)), rng.uniform(0, 2 * np.pi), hk)
                    s += rng.uniform(1.5, 4.0)
                s += rng.uniform(2.0, 12.0)
        for s in rng.uniform(s_min, s_max, rng.poisson(cfg.clutter_per_100m * (s_max - s_min) / 200.0)):
            # along the kerb (x of the mesh along the road): a railing or bench never reaches the road
            put(clutter_mesh(rng, ids()), s, side * (hw + rng.uniform(0.4, max(0.5, sw - 0.4))),
                np.radians(rng.uniform(-5, 5)), hk)
    if rng.random() < cfg.overpass_probability:
        half = max(layout.half_width_left + layout.sidewalk_left_m, layout.half_width_right + layout.sidewalk_right_m)
        put(overpass_mesh(rng, ids(), half), rng.uniform(0.6 * s_min, 0.6 * s_max), 0.0, 0.0, 0.0)


# ----------------------------------------------------------------------------- object library
# Cars, trees, lamps and signs are drawn from fixed libraries of meshes (built once per process
# from a fixed seed, so independent of the scene seed and of call order), then recoloured,
# scaled and placed per instance: generating a scene stays cheap.
_LIBRARY_SEED = 20261122
_LIBRARY = {"car": (car_mesh, 64), "tree": (tree_mesh, 48), "lamp": (lamp_mesh, 16), "sign": (sign_mesh, 48)}


@lru_cache(maxsize=None)
def object_library(kind: str) -> tuple[TriangleSoup, ...]:
    """The library meshes of one kind (``car``, ``tree``, ``lamp``, ``sign``), in object frame."""
    maker, n = _LIBRARY[kind]
    rng = np.random.default_rng([_LIBRARY_SEED, list(_LIBRARY).index(kind)])
    return tuple(maker(rng, 0) for _ in range(n))


def object_instance(kind: str, rng: np.random.Generator, object_id: int) -> TriangleSoup:
    """A library object with its own id (and, for cars, paint colour; for trees, foliage colour
    and size)."""
    lib = object_library(kind)
    soup = lib[int(rng.integers(len(lib)))]
    out = dataclasses.replace(soup, object_id=np.full(len(soup), object_id, np.int32))
    if kind == "car":
        paint = (soup.material == M.CAR_PAINT) & (soup.tex_params[:, 0] == 1.0)
        out.color = soup.color.copy()
        out.color[paint] = CAR_COLOURS[rng.integers(len(CAR_COLOURS))] * rng.uniform(0.85, 1.1)
    elif kind == "tree":
        leaves = soup.material == M.FOLIAGE
        out.color = soup.color.copy()
        out.color[leaves] = np.array([0.05, 0.13, 0.035]) * rng.uniform(0.7, 1.4) * rng.uniform(0.85, 1.15, 3)
        k = np.float32(rng.uniform(0.9, 1.2))
        out.triangles = soup.triangles * k
        out.tex_origin = soup.tex_origin * k
    return out


# ------------------------------------------------------------------------------ scene assembly
@dataclass
class TrafficCar:
    soup: TriangleSoup  # in the car frame
    s0: float  # arc length at time 0
    d: float  # lateral offset
    speed_mps: float  # along +s (negative: driving toward -s)


@dataclass
class Traffic:
    """Moving cars: each keeps its lane at constant speed along the road."""

    road: Road
    cars: list[TrafficCar] = field(default_factory=list)

    def soup_at(self, t: float) -> TriangleSoup:
        if not self.cars:
            return TriangleSoup.empty()
        parts = []
        for car in self.cars:
            s = car.s0 + car.speed_mps * t
            xy = self.road.point([s], [car.d])[0]
            _, h = self.road.frame([s])
            yaw = h[0] + (np.pi if car.speed_mps < 0 else 0.0)
            parts.append(place(car.soup, yaw_matrix(yaw), (xy[0], xy[1], 0.0)))
        return TriangleSoup.concatenate(parts)


@dataclass
class Scene:
    """A generated street: static geometry, moving traffic, light."""

    road: Road
    layout: RoadLayout
    static: TriangleSoup
    traffic: Traffic
    sun_direction: np.ndarray
    """(3,) unit vector toward the sun (world frame)."""
    ego_lane_d: float
    """Lateral offset of the ego vehicle's lane centre (right-hand traffic: d < 0, driving
    toward +s)."""

    def markings(self) -> RoadMarkings:
        lay = self.layout
        return RoadMarkings(lay.lines, lay.zebras, lay.lanes_per_direction * lay.lane_width_m)


class _Ids:
    def __init__(self):
        self.next = FIRST_OBJECT_ID

    def __call__(self) -> int:
        self.next += 1
        return self.next - 1


def _free(taken: list[float], s: float, clearance: float) -> bool:
    return all(abs(s - o) >= clearance for o in taken)


def generate_scene(cfg: SceneConfig, rng: np.random.Generator, s_min: float, s_max: float, far_m: float,
                   ego_s0: float = 0.0, ego_speed_mps: float = 0.0, ego_duration_s: float = 0.0) -> Scene:
    """Generate a street whose objects fill arc lengths [s_min, s_max]; the road and ground go on
    ``far_m`` beyond both ends (seen by the camera, out of the LiDAR's range).

    The ego vehicle gets one of the right-hand lanes (``Scene.ego_lane_d``); it will drive from
    ``ego_s0`` at ``ego_speed_mps`` for ``ego_duration_s``, and the traffic in its lane keeps
    at least 10 m away from it all along.
    """
    road = Road.random(rng, s_min - far_m - 5.0, s_max + far_m + 5.0, cfg.max_curvature_per_m)
    layout = random_layout(cfg, rng, s_min, s_max)
    ego_lane = int(rng.integers(layout.lanes_per_direction))
    b = MeshBuilder()
    ids = _Ids()
    road_corridor(b, road, layout, s_min - far_m, s_max + far_m, cfg.side_extent_m, cfg.mesh_step_m, rng,
                  (s_min, s_max))

    def put(soup: TriangleSoup, s: float, d: float, yaw_offset: float, z: float = 0.0):
        xy = road.point([s], [d])[0]
        _, h = road.frame([s])
        b_parts.append(place(soup, yaw_matrix(h[0] + yaw_offset), (xy[0], xy[1], z)))

    b_parts: list[TriangleSoup] = []
    hk = layout.kerb_height_m
    kappa = cfg.max_curvature_per_m
    for side in (1, -1):  # +1 left, -1 right
        hw = layout.half_width_left if side > 0 else layout.half_width_right
        sw = layout.sidewalk_left_m if side > 0 else layout.sidewalk_right_m
        furniture: list[float] = []
        # street trees near the kerb
        if rng.random() < cfg.street_tree_probability:
            s = s_min + rng.uniform(0, 8)
            while s < s_max:
                put(object_instance("tree", rng, ids()), s, side * (hw + rng.uniform(0.7, 1.1)),
                    rng.uniform(0, 2 * np.pi), hk)
                furniture.append(s)
                s += rng.uniform(*cfg.tree_spacing_m)
        # street lamps, arm toward the road
        s = s_min + rng.uniform(0, 20)
        while s < s_max:
            if _free(furniture, s, 2.5):
                put(object_instance("lamp", rng, ids()), s, side * (hw + 0.45), np.pi if side > 0 else 0.0, hk)
                furniture.append(s)
            s += rng.uniform(*cfg.lamp_spacing_m)
        # traffic signs facing the traffic on this side
        for s in rng.uniform(s_min, s_max, rng.poisson(cfg.signs_per_100m * (s_max - s_min) / 200.0)):
            if _free(furniture, s, 2.0):
                put(object_instance("sign", rng, ids()), s, side * (hw + 0.35), np.pi if side > 0 else 0.0, hk)
                furniture.append(s)
        # buildings (front row, then a taller row behind), trees in the gaps
        for row in range(2):
            s = s_min - 10.0 + rng.uniform(0, 10)
            while s < s_max + 10.0:
                if rng.random() < cfg.building_gap_probability:
                    gap = rng.uniform(5.0, 18.0)
                    if row == 0:
                        for _ in range(rng.integers(0, 3)):
                            put(object_instance("tree", rng, ids()), s + rng.uniform(1, gap - 1),
                                side * (hw + sw + rng.uniform(2.0, 9.0)), rng.uniform(0, 2 * np.pi), hk)
                    s += gap
                    continue
                length = rng.uniform(*cfg.building_length_m)
                depth = rng.uniform(*cfg.building_depth_m)
                floors = int(rng.integers(cfg.building_floors[0], cfg.building_floors[1] + 1)) + 2 * row
                front = hw + sw + rng.uniform(*cfg.building_setback_m) + length ** 2 * kappa / 8
                if row == 1:
                    front += cfg.building_depth_m[1] + rng.uniform(4.0, 25.0)
                soup = building_mesh(rng, ids(), length, depth, floors, rng.uniform(*cfg.floor_height_m), row == 0)
                put(soup, s + length / 2, side * front, 0.0 if side > 0 else np.pi, hk)
                s += length + (rng.uniform(0.5, 4.0) if rng.random() < 0.4 else 0.0)
        # parked cars in the parking lane, not on zebra crossings
        if (layout.parking_left if side > 0 else layout.parking_right):
            occupancy = rng.uniform(*cfg.parked_car_occupancy)
            d = side * (layout.lanes_per_direction * layout.lane_width_m + layout.parking_width_m / 2)
            s = s_min + rng.uniform(0, 6)
            while s < s_max:
                slot = rng.uniform(5.3, 6.8)
                clear = all(not (z0 - 4.0 < s < z0 + zl + 4.0) for z0, zl in layout.zebras)
                if rng.random() < occupancy and clear:
                    put(object_instance("car", rng, ids()), s + slot / 2, d + rng.uniform(-0.15, 0.15),
                        (0.0 if side < 0 else np.pi) + np.radians(rng.uniform(-2.5, 2.5)))
                s += slot
    # moving traffic, one speed per lane so that cars never run into each other
    traffic = Traffic(road)
    span = s_max - s_min
    for side in (-1, 1):
        for lane in range(layout.lanes_per_direction):
            d = layout.lane_centre(lane, side)
            in_ego_lane = side < 0 and lane == ego_lane
            v = ego_speed_mps + rng.uniform(-0.5, 0.5) if in_ego_lane else rng.uniform(6.0, 14.0)
            v = v if side < 0 else -v
            last = -np.inf
            for s0 in np.sort(rng.uniform(s_min, s_max, rng.poisson(cfg.moving_cars_per_100m * span / 100.0))):
                if s0 - last < 12.0:
                    continue
                if in_ego_lane:  # keep >= 10 m from the ego vehicle over the whole drive
                    gap0 = s0 - ego_s0
                    gap1 = gap0 + (v - ego_speed_mps) * ego_duration_s
                    if np.sign(gap0) != np.sign(gap1) or min(abs(gap0), abs(gap1)) < 10.0:
                        continue
                traffic.cars.append(TrafficCar(object_instance("car", rng, ids()), float(s0), float(d), float(v)))
                last = s0
    sun_el = np.radians(rng.uniform(*cfg.sun_elevation_deg))
    sun_az = rng.uniform(0, 2 * np.pi)
    _scene_variety(cfg, rng, put, ids, layout, s_min, s_max)  # draws after all the others: earlier streets stay
    static = TriangleSoup.concatenate([b.build(), *b_parts])
    sun = np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)])
    return Scene(road, layout, static, traffic, sun, layout.lane_centre(ego_lane, -1))
