"""Triangle soups with per-triangle surface attributes, and the primitives scenes are built from.

Every triangle carries a material id, an object id, a base colour and a texture frame
(origin, u and v axes) and a few material-specific parameters: the procedural textures
(``textures.py``) read the surface coordinates ``a = (p - origin) . u`` and
``b = (p - origin) . v`` of a hit point ``p``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

N_TEX_PARAMS = 12
"""Per-triangle texture parameters (meaning depends on the material; see textures.py)."""


@dataclass
class TriangleSoup:
    """Independent triangles and their surface attributes (T triangles)."""

    triangles: np.ndarray
    """(T, 3, 3) float32 vertices."""
    normals: np.ndarray
    """(T, 3) float32 unit geometric normals (orientation arbitrary; shading faces them to the ray)."""
    material: np.ndarray
    """(T,) uint8 ``Material`` id."""
    object_id: np.ndarray
    """(T,) int32 id of the object the triangle belongs to (> 0)."""
    color: np.ndarray
    """(T, 3) float32 linear RGB base colour in [0, 1]."""
    tex_origin: np.ndarray
    """(T, 3) float32 origin of the texture frame."""
    tex_u: np.ndarray
    """(T, 3) float32 first texture axis (unit)."""
    tex_v: np.ndarray
    """(T, 3) float32 second texture axis (unit)."""
    tex_params: np.ndarray
    """(T, N_TEX_PARAMS) float32 material-specific texture parameters."""

    def __len__(self) -> int:
        return len(self.triangles)

    @classmethod
    def concatenate(cls, soups: list["TriangleSoup"]) -> "TriangleSoup":
        soups = [s for s in soups if s is not None]
        return cls(*(np.concatenate([getattr(s, f) for s in soups]) for f in cls.__dataclass_fields__))

    @classmethod
    def empty(cls) -> "TriangleSoup":
        return MeshBuilder().build()


class MeshBuilder:
    """Accumulates triangles with their attributes; ``build()`` returns a ``TriangleSoup``."""

    def __init__(self):
        self._parts: list[tuple] = []

    def add(self, triangles, material, object_id: int, color, tex_origin=None, tex_u=None, tex_v=None,
            tex_params=None) -> None:
        """Add triangles (n, 3, 3). ``material`` is an int or (n,); ``color`` (3,) or (n, 3);
        texture frame arrays are (3,) or (n, 3) (default: world x/y axes at the origin);
        ``tex_params`` (k,) or (n, k) with k <= N_TEX_PARAMS."""
        tris = np.asarray(triangles, np.float32).reshape(-1, 3, 3)
        n = len(tris)
        if n == 0:
            return
        params = np.zeros((n, N_TEX_PARAMS), np.float32)
        if tex_params is not None:
            p = np.atleast_2d(np.asarray(tex_params, np.float32))
            params[:, :p.shape[1]] = p
        self._parts.append((
            tris,
            np.broadcast_to(np.asarray(material, np.uint8), (n,)),
            np.full(n, object_id, np.int32),
            np.broadcast_to(np.asarray(color, np.float32), (n, 3)),
            np.broadcast_to(np.asarray(tex_origin if tex_origin is not None else (0, 0, 0), np.float32), (n, 3)),
            np.broadcast_to(np.asarray(tex_u if tex_u is not None else (1, 0, 0), np.float32), (n, 3)),
            np.broadcast_to(np.asarray(tex_v if tex_v is not None else (0, 1, 0), np.float32), (n, 3)),
            params,
        ))

    def add_quads(self, quads, material, object_id: int, color, tex_origin=None, tex_u=None, tex_v=None,
                  tex_params=None) -> None:
        """Add quads (n, 4, 3) (corners in order around the quad); per-quad attributes as
        (n, ...) arrays or shared scalars/vectors."""
        quads = np.asarray(quads, np.float32).reshape(-1, 4, 3)
        self.add(quads_to_triangles(quads), _repeat2(material, 1), object_id, _repeat2(color),
                 _repeat2(tex_origin), _repeat2(tex_u), _repeat2(tex_v), _repeat2(tex_params))

    def build(self) -> TriangleSoup:
        if not self._parts:
            z = np.zeros
            return TriangleSoup(z((0, 3, 3), np.float32), z((0, 3), np.float32), z(0, np.uint8), z(0, np.int32),
                                z((0, 3), np.float32), z((0, 3), np.float32), z((0, 3), np.float32),
                                z((0, 3), np.float32), z((0, N_TEX_PARAMS), np.float32))
        cols = [np.concatenate(c) for c in zip(*self._parts, strict=True)]
        tris = cols[0]
        return TriangleSoup(tris, triangle_normals(tris), *cols[1:])


def _repeat2(x, per_quad_ndim: int = 2):
    """Per-quad attribute (``ndim == per_quad_ndim``) -> per-triangle (each quad gives two
    triangles); shared values pass through."""
    if x is None:
        return None
    a = np.asarray(x)
    return np.repeat(a, 2, axis=0) if a.ndim == per_quad_ndim else a


def triangle_normals(tris: np.ndarray) -> np.ndarray:
    """(T, 3) float32 unit normals of triangles (T, 3, 3) (degenerate ones: +z)."""
    n = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    bad = norm[:, 0] < 1e-12
    n = n / np.where(bad[:, None], 1.0, norm)
    n[bad] = (0.0, 0.0, 1.0)
    return n.astype(np.float32)


def quads_to_triangles(quads: np.ndarray) -> np.ndarray:
    """(n, 4, 3) quads -> (2n, 3, 3) triangles (0, 1, 2) and (0, 2, 3) of each quad."""
    q = np.asarray(quads)
    out = np.empty((len(q), 2, 3, 3), q.dtype)
    out[:, 0] = q[:, [0, 1, 2]]
    out[:, 1] = q[:, [0, 2, 3]]
    return out.reshape(-1, 3, 3)


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Faces:
    """Quads of a solid with a texture frame per face (origin at the bottom-left corner seen
    from outside, u along the bottom edge, v up the face)."""

    quads: np.ndarray  # (F, 4, 3)
    origin: np.ndarray  # (F, 3)
    u: np.ndarray  # (F, 3)
    v: np.ndarray  # (F, 3)
    length: np.ndarray  # (F,) length of the bottom edge
    is_top: np.ndarray  # (F,) bool


def frustum_faces(center_xy, yaw: float, z0: float, z1: float, length0: float, width0: float,
                  length1: float | None = None, width1: float | None = None, top_shift_x: float = 0.0,
                  bottom: bool = False) -> Faces:
    """Side and top faces (and the bottom one if asked) of a box whose top rectangle may be
    smaller than its bottom one (car cabins), aligned with ``yaw`` about z.

    The footprint is centred on ``center_xy``; ``top_shift_x`` moves the top rectangle forward.
    """
    l1 = length0 if length1 is None else length1
    w1 = width0 if width1 is None else width1
    b = np.array([[-length0 / 2, -width0 / 2], [length0 / 2, -width0 / 2], [length0 / 2, width0 / 2],
                  [-length0 / 2, width0 / 2]])
    t = np.array([[-l1 / 2, -w1 / 2], [l1 / 2, -w1 / 2], [l1 / 2, w1 / 2], [-l1 / 2, w1 / 2]])
    t[:, 0] += top_shift_x
    R = yaw_matrix(yaw)
    c = np.array([center_xy[0], center_xy[1], 0.0])
    B = np.column_stack([b, np.full(4, z0)]) @ R.T + c
    T = np.column_stack([t, np.full(4, z1)]) @ R.T + c
    quads, origin, u, v, length, top = [], [], [], [], [], []
    for i in range(4):
        j = (i + 1) % 4
        quads.append([B[i], B[j], T[j], T[i]])
        e = B[j] - B[i]
        L = np.linalg.norm(e)
        up = (T[i] - B[i]) - np.dot(T[i] - B[i], e / L) * e / L
        origin.append(B[i]), u.append(e / L), v.append(up / max(np.linalg.norm(up), 1e-9)), length.append(L)
        top.append(False)
    quads.append([T[0], T[1], T[2], T[3]])
    origin.append(T[0]), u.append(R[:, 0]), v.append(R[:, 1]), length.append(l1), top.append(True)
    if bottom:
        quads.append([B[3], B[2], B[1], B[0]])
        origin.append(B[0]), u.append(R[:, 0]), v.append(R[:, 1]), length.append(length0), top.append(False)
    return Faces(np.array(quads), np.array(origin), np.array(u), np.array(v), np.array(length), np.array(top))


def cylinder_triangles(p0, p1, radius: float, sides: int = 8, caps: bool | str = True) -> np.ndarray:
    """Triangles (n, 3, 3) of a prism with ``sides`` around the axis ``p0 -> p1``; ``caps``:
    True (both ends), False, or ``"start"`` (only the end at ``p0``)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    axis /= np.linalg.norm(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    ang = np.arange(sides) * 2 * np.pi / sides
    ring = radius * (np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2)
    r0, r1 = p0 + ring, p1 + ring
    nxt = np.roll(np.arange(sides), -1)
    quads = np.stack([r0, r0[nxt], r1[nxt], r1], axis=1)
    tris = [quads_to_triangles(quads)]
    if caps:
        for centre, r in ((p0, r0), (p1, r1))[:1 if caps == "start" else 2]:
            tris.append(np.stack([np.broadcast_to(centre, r.shape), r, r[nxt]], axis=1))
    return np.concatenate(tris)


def polygon_triangles(center, corners) -> np.ndarray:
    """Fan triangulation (n, 3, 3) of a convex polygon given its centre (3,) and corners (n, 3)."""
    corners = np.asarray(corners, float)
    nxt = np.roll(np.arange(len(corners)), -1)
    return np.stack([np.broadcast_to(np.asarray(center, float), corners.shape), corners, corners[nxt]], axis=1)


@lru_cache(maxsize=4)
def unit_icosphere(subdivisions: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) on the unit sphere and faces (F, 3) of an icosphere."""
    t = (1.0 + 5 ** 0.5) / 2.0
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
             (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
             (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(v, float) / np.linalg.norm(v) for v in verts]
    def midpoint(i: int, j: int, cache: dict[tuple[int, int], int]) -> int:
        key = (min(i, j), max(i, j))
        if key not in cache:
            m = verts[i] + verts[j]
            verts.append(m / np.linalg.norm(m))
            cache[key] = len(verts) - 1
        return cache[key]

    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}
        new = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b, cache), midpoint(b, c, cache), midpoint(c, a, cache)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(verts), np.array(faces)
