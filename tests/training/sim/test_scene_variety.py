"""Scene variety (issue 14: vegetation, clutter, overpasses): the ``_varied`` presets add hedges
and bushes, street clutter and bridges to the street; everything else of a seed's street stays
as it was, and both sensors see the new objects consistently."""
import dataclasses

import numpy as np

from crossi2p_training.sim import SceneConfig, SimConfig, simulate_frame
from crossi2p_training.sim.config import VARIED_SCENE
from crossi2p_training.sim.materials import Material as M
from crossi2p_training.sim.scene import generate_scene

from .projection_check import projection_agreement


def street(cfg: SceneConfig, seed: int):
    return generate_scene(cfg, np.random.default_rng([seed, 1]), -100.0, 100.0, 400.0)


def test_variety_only_adds_objects_to_the_same_street():
    for seed in range(3):
        plain, varied = street(SceneConfig(), seed), street(dataclasses.replace(SceneConfig(), **VARIED_SCENE), seed)
        n = len(plain.static.triangles)
        assert len(varied.static.triangles) > n
        np.testing.assert_array_equal(varied.static.triangles[:n], plain.static.triangles)
        np.testing.assert_array_equal(varied.sun_direction, plain.sun_direction)


def test_varied_streets_have_low_vegetation_clutter_and_bridges():
    cfg = dataclasses.replace(SceneConfig(), **VARIED_SCENE)
    low_foliage = clutter = bridges = 0
    for seed in range(12):
        plain, varied = street(SceneConfig(), seed), street(cfg, seed)
        new = slice(len(plain.static.triangles), None)
        tris, mat = varied.static.triangles[new], varied.static.material[new]
        z_top = tris[:, :, 2].max(axis=1)
        low_foliage += np.any((mat == M.FOLIAGE) & (z_top < 2.0))  # street-tree crowns start at 2.6 m
        clutter += np.any((mat == M.POLE) & (z_top < 1.4))  # lamps and sign posts are taller
        # a bridge: concrete spanning the road's centreline 5-9 m up
        bridges += np.any((mat == M.KERB) & (tris[:, :, 2].min(axis=1) > 4.9) & (z_top < 10.0))
    assert low_foliage >= 3 and clutter >= 10 and 1 <= bridges <= 9, (low_foliage, clutter, bridges)


def test_nothing_new_stands_on_the_road():
    """Hedges, clutter and a bridge's pillars stay off the carriageway (below the deck height)."""
    cfg = dataclasses.replace(SceneConfig(), **VARIED_SCENE)
    for seed in range(12):
        plain, varied = street(SceneConfig(), seed), street(cfg, seed)
        tris = varied.static.triangles[len(plain.static.triangles):].reshape(-1, 3).astype(np.float64)
        low = tris[tris[:, 2] < 4.5]            # a bridge deck passes over the road higher up
        lay = varied.layout
        # lateral offset of each vertex from the (gently curving) centreline, through its nearest centreline point
        s = np.linspace(-110.0, 110.0, 4401)
        centre = varied.road.point(s, np.zeros_like(s))
        nearest = np.argmin(((low[:, None, :2] - centre[None]) ** 2).sum(-1), axis=1)
        left = varied.road.point(s[nearest], np.ones_like(nearest, float)) - centre[nearest]
        d = ((low[:, :2] - centre[nearest]) * left).sum(-1)
        on_road = (d > -lay.half_width_right + 0.05) & (d < lay.half_width_left - 0.05)
        assert not on_road.any(), (seed, low[on_road][:3])


def test_ground_truth_projects_points_onto_the_varied_street():
    frame = simulate_frame(SimConfig.preset("small_varied"), 5)  # seed 5 has a bridge ahead
    in_view, agree = projection_agreement(frame)
    assert in_view > 2000 and agree > 0.95
