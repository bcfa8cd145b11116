"""Ray casting with Embree (``embreex``) against a static soup plus an optional dynamic one.

The static scene (road, buildings, parked cars, ...) is built into a BVH once; moving cars go
into a small second BVH per time instant, cast with the static hit distance as the far limit,
so the per-frame cost of traffic stays small.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from embreex import rtcore_scene as rtcs
from embreex.mesh_construction import TriangleMesh

from .mesh import TriangleSoup
from .textures import RoadMarkings


def _embree_scene(soup: TriangleSoup):
    scene = rtcs.EmbreeScene()
    if len(soup):
        TriangleMesh(scene, np.ascontiguousarray(soup.triangles, np.float32))
    return scene


@dataclass
class Hits:
    """Result of casting N rays."""

    prim: np.ndarray
    """(N,) int32 index of the hit triangle in the geometry's ``soup``; -1: no hit."""
    t: np.ndarray
    """(N,) float32 distance along the (unit) ray; the far limit where nothing was hit."""

    @property
    def hit(self) -> np.ndarray:
        return self.prim >= 0


class StaticGeometry:
    """The static part of a scene with its BVH (built once)."""

    def __init__(self, soup: TriangleSoup, markings: RoadMarkings, sun_direction: np.ndarray):
        self.soup = soup
        self.markings = markings
        self.sun_direction = np.asarray(sun_direction, np.float32)
        self._scene = _embree_scene(soup)

    def with_dynamic(self, dynamic: TriangleSoup | None) -> "SceneGeometry":
        """Geometry at one time instant: the static scene plus ``dynamic`` triangles."""
        return SceneGeometry(self, dynamic)


class SceneGeometry:
    """All triangles at one time instant; ``cast`` finds the nearest hits."""

    def __init__(self, static: StaticGeometry, dynamic: TriangleSoup | None = None):
        self.static = static
        self.markings = static.markings
        self.sun_direction = static.sun_direction
        self._n_static = len(static.soup)
        if dynamic is not None and len(dynamic):
            self.soup = TriangleSoup.concatenate([static.soup, dynamic])
            self._dynamic_scene = _embree_scene(dynamic)
        else:
            self.soup = static.soup
            self._dynamic_scene = None

    def cast(self, origins: np.ndarray, directions: np.ndarray, max_t: float | np.ndarray) -> Hits:
        """Nearest hit of each ray ``origins + t * directions``, 0 < t <= max_t.

        Args:
            origins: (N, 3) or (1, 3) float32 ray origins (world frame).
            directions: (N, 3) or (1, 3) float32 unit directions.
            max_t: far limit, scalar or (N,).
        """
        d = np.asarray(directions, np.float32)
        o = np.asarray(origins, np.float32)
        n = max(len(o), len(d))
        if len(o) != n:  # embreex reads strided (read-only) arrays; one direction serves all rays
            o = np.broadcast_to(o, (n, 3))
        far = np.empty(n, np.float32)
        far[:] = max_t
        res = self.static._scene.run(o, d, dists=far, output=1)
        prim, t = res["primID"], res["tfar"]
        prim = np.where(res["geomID"] >= 0, prim, -1).astype(np.int32)
        if self._dynamic_scene is not None:
            res2 = self._dynamic_scene.run(o, d, dists=t.copy(), output=1)
            closer = res2["geomID"] >= 0
            prim[closer] = res2["primID"][closer] + self._n_static
            t = np.where(closer, res2["tfar"], t)
        return Hits(prim, t)

    def occluded(self, origins: np.ndarray, directions: np.ndarray, max_t: float) -> np.ndarray:
        """(N,) bool: something lies on the segment ``origins + t * directions``, 0 < t < max_t
        (any-hit query: cheaper than ``cast``)."""
        d = np.asarray(directions, np.float32)
        o = np.asarray(origins, np.float32)
        n = max(len(o), len(d))
        if len(o) != n:
            o = np.broadcast_to(o, (n, 3))
        far = np.full(n, max_t, np.float32)
        blocked = self.static._scene.run(o, d, dists=far, query="OCCLUDED") >= 0
        if self._dynamic_scene is not None:
            far[:] = max_t
            blocked |= self._dynamic_scene.run(o, d, dists=far, query="OCCLUDED") >= 0
        return blocked
