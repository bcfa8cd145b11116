"""Training-free multi-frame refinement of ``T_cam_lidar``: normalised information distance + image segments.

The network gives a global estimate (decimetres, degrees); this stage takes a converged fused
estimate, or a user's prior, to calibration grade. It has no learned weights, so it works on
sensors the network never saw. Its objective combines targetless cues, written here from the
papers (no installable package provides them):

- **NID of intensity** (Pandey et al., "Automatic extrinsic calibration of vision and lidar by
  maximizing mutual information", JFR 2015; NID as in Koide et al., ICRA 2023): the normalised
  information distance ``NID = (H(X, Y) - I(X; Y)) / H(X, Y)`` between the LiDAR return
  intensity of the points and the grey value of the pixels they project to, over all frames of
  the window (one joint histogram; soft, bilinear binning so the cost is continuous). Paint,
  signs and number plates are bright for both sensors. Since this release it is the mean of two
  such NIDs, over the nearer and the farther half of each frame's points (``nid_depth_bands``),
  so that a rotation cannot absorb a translation error at one depth and win (parallax).
- **Segment consistency** (after Calib-Anything, Luo et al. 2023, which uses SAM masks; here
  Felzenszwalb-Huttenlocher segments, IJCV 2004, from scikit-image): an image segment is usually
  one surface, so the points landing in it should agree in surface normal and intensity. The
  cost is ``1 - eta^2``, the share of the points' feature variance that their segments do not
  explain (the correlation ratio, Roche et al., MICCAI 1998). It sees geometry (normals) that
  the intensity NID does not.
- **Depth edges on image edges** (Levinson & Thrun, "Automatic online calibration of cameras and
  lasers", RSS 2013): LiDAR points at depth discontinuities should land on image edges. The
  score is contrasted with the same map sampled at the ordinary (non-edge) points, so landing the
  whole cloud on a textured region (foliage) gains nothing.

``cost = nid_weight * NID + segment_weight * (1 - eta^2) + gradient_nid_weight * NID(depth
discontinuity, image gradient magnitude) - edge_weight * (mean edge nearness of edge points -
mean of ordinary points)`` plus a weak prior term towards the start, lower is better. The
defaults use the NID and the segment term (``segment_weight = 0.1``: its values vary about 10x
more than the NID's over the prior's range); the last two terms are off by default: on the shared
real samples the edge term made results worse and the gradient NID helped single frames only
(docs/benchmarks.md, section 8); they stay available and tested.

Per frame, once (``prepare_frame``):

1. The image is undistorted to its pinhole camera (``preprocess.undistort_to_pinhole``, the code
   the network's input uses, so every CameraInfo model works), scaled to at most
   ``max_width_px``, cut into segments (segment term), turned grey and histogram-equalised, and
   blurred with each level's ``sigma`` (4, 2 and 1 px at 1000 px width: wider blurs were tried
   and their minima lie away from the truth; the 1 px level brings it closer); with the edge
   term on, scale-space Canny edges give the edge-nearness maps.
2. The LiDAR points well inside the image at the start pose are kept (``view_margin``; a fixed
   set, so a pose cannot improve the NID by pushing a group of points out of the image;
   optionally without the points hidden from the camera, ``remove_hidden_points``), a
   random subsample of ``max_points_per_frame``, their intensities rank-normalised per frame (so
   KITTI's 0-1, nuScenes' 0-255 or a 16-bit Ouster all become uniform in [0, 1]) and, for the
   segment term, their surface normals (a plane fit to each point's ``normal_neighbors``
   nearest points in view, turned to face the LiDAR); with the edge term on,
   depth-discontinuity points are found in the angular image seen from the camera
   (``lidar_depth_edges``).

Over the window (``refine_extrinsic``):

3. A grid of rotations around the start (``grid_rotation_deg``), each also shifted by
   ``grid_translation_m`` along the camera's axes (so that a start whose translation is off
   does not rank its seeds by rotations that absorb the translation), scored on the first
   level with every ``grid_points_every``-th point; the
   start and the ``multi_starts`` best grid seeds each descend the levels with Nelder-Mead
   (rotation only, then the whole pose on the last ``full_pose_levels``; the blurred levels on
   every ``coarse_points_every``-th point; after each blurred level a seed that ended next to a
   better one, ``merge_deg`` / ``merge_m``, is dropped), and the seeds are
   compared on the finest level (with ``extra_starts``, e.g. the pipeline's previous accepted
   result, descending as further seeds). The pose is parametrised about the camera centre
   (``T = [Exp(phi) | rho] @ T0``) and kept within ``max_rotation_deg`` / ``max_translation_m``
   of the start (the prior's bounds); the prior term's weight shrinks as 1 / frames.
   A window of at most ``fine_search_max_frames`` frames (3: a single frame or a short
   recording) is searched on the finest level only instead: a 0.5 deg rotation grid there,
   whose best seeds
   descend on that level (on real images the blurred levels' minima lie away from the truth and
   few frames do not average that out), then the best end shifted by ``translation_hops_m`` along
   each camera axis descends again (translation is weakly observed in a few frames).
   Then (windows searched coarse to fine) each of the best ``polish_ends`` distinct ends is
   polished by CMA-ES on the finest level (the ``cma`` package), which follows the curved, noisy
   rotation-translation valley where Nelder-Mead stalls. Options, off by default: a grid of translations around the best ends, each
   grid's best descending again (``translation_grid_m``), and the whole multi-start search
   repeated around the best end (``search_passes``).
4. Honest output: the finest-level objective at the start and at the end (a result that is not
   better than its start is never accepted); ambiguity (a distinct other seed's result within
   ``min_ambiguity_margin`` of the best: several poses explain the window alike; in windows of
   few frames the result moved ``profile_rival_m`` both ways along each camera axis with its
   rotation re-optimised is a rival too; when all such
   rivals agree on the rotation and differ only in translation, the result is accepted with
   their spread in its covariance, ``accept_translation_ambiguity``); a covariance from a cluster
   bootstrap (clusters = image cells of each frame, resampled with replacement; each replicate's
   optimum by one Newton step with the finite-difference Hessian) plus the spread of the
   search's equivalent ends (every seed's end within ``min_ambiguity_margin`` of the best:
   poses the window cannot tell apart, ``end_spread_covariance``; where the search left only one,
   that set as the curvature bounds it, ``margin_covariance``); an observability check
   (enough points in view; every direction of the pose constrained: standard deviations below
   ``max_std_*``). A degenerate window (no texture, only flat ground, too few points) keeps the
   start, with the reason.
   Measured against ground truth (docs/benchmarks.md, section 8, "An honest covariance"): on
   simulated 40-pair windows the errors are about one standard deviation (RMS 0.5-0.9; the
   bootstrap alone: 4-6); on real frames, where a result is accepted only with
   ``accept_translation_ambiguity``, about 2-3: a minimum in the wrong place (the objective's
   own bias) is not in it.

A rig: frames of several cameras whose poses relative to one reference camera are known
(``prepare_frame(..., T_cam_ref=)``) form one window; each is projected with ``T_cam_ref @ T``,
and the search refines the reference camera's ``T`` (the LiDAR's one pose for all of them).

``alignment_check`` reuses the objective as a per-frame validity test of a network estimate;
``translation_profile`` tells how well a window observes each axis of the translation (the
objective with the translation shifted and the rotation re-optimised).

Frames: points are in the LiDAR frame, ``T_cam_lidar`` maps them into the camera optical frame
(REP 103: x right, y down, z forward); pixels follow OpenCV. The covariance order is
``(x, y, z, rot_x, rot_y, rot_z)`` (geometry_msgs/PoseWithCovariance), m^2 / rad^2, in the
perturbation convention of ``crossi2p.fusion``: ``R = Exp(d_rot) R_est``, ``t = t_est + d_t``.
"""
from __future__ import annotations

import copy
import dataclasses
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
from scipy import ndimage, optimize
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from scipy.stats import rankdata
from skimage.segmentation import felzenszwalb

from .camera import CameraModel
from .fusion import perturbations
from .geometry import check_transform, make_transform, rotation_angle_deg, skew, transform_points
from .preprocess import undistort_to_pinhole
from .prior import pose_distance

__all__ = ["RefinementConfig", "PreparedFrame", "RefinementResult", "AlignmentCheck", "Progress", "alignment_check",
           "prepare_frame", "refine_extrinsic", "refinement_cost", "lidar_depth_edges", "image_edge_maps", "hidden_from_view"]


@dataclass
class RefinementConfig:
    """Parameters of the training-free refinement (the node's ``refinement_*`` parameters set its
    schedule, ``crossi2p_ros.pipeline.RefinementScheduleConfig``; these keep their defaults there)."""

    max_width_px: int = 1024
    """Images wider than this are scaled down to it first (speed)."""
    sigmas_px: tuple[float, ...] = (4.0, 2.0, 1.0)
    """Gaussian blur per level, coarse to fine, in pixels at 1000 px image width (scaled with
    the working width). The 1 px level (added in this release; before: 4 and 2) brought the
    objective's minimum closer to the truth: refined from the truth on KITTI-resolution simulated
    windows 0.025 m / 0.19 deg -> 0.014 m / 0.096 deg, real single frames searched 3.85 -> 3.00 deg,
    real 3-sweep windows 2.62 -> 1.29 deg (docs/benchmarks.md, section 8)."""
    histogram_bins: int = 24
    """Bins per axis of the joint intensity / grey histogram of the NID."""
    nid_depth_bands: int = 2
    """The NID is the mean of the NIDs of this many bands of the points' range (equal counts per
    frame: 2 splits each frame at its median range), so that a pose must align near and far points
    alike: a rotation that absorbs a translation error aligns one depth only (parallax). 1: one
    NID over all points (before this release). Measured from +-5 deg / 0.3 m priors on the real
    samples (docs/benchmarks.md section 8, "Depth bands in the NID"): single frames' searched
    rotation 1.21 -> 0.81 deg median (42 draws better, 16 worse), 3-sweep windows 0.77 -> 0.51 deg,
    the demo's six cameras 0.71 -> 0.35 deg; simulated 40-pair windows 0.013 m / 0.058 deg ->
    0.015 m / 0.054 deg (3 bands: between the two)."""
    nid_weight: float = 1.0
    """Weight of the NID term (LiDAR intensity vs image grey level)."""
    gradient_nid_weight: float = 0.0
    """Weight of the NID between each point's depth discontinuity (the range jump to its
    farthest angular neighbour) and the image gradient magnitude under it: occluding contours
    are image edges, and a statistical measure does not care how much texture there is
    elsewhere. Off by default (0): on the shared real single frames it helped (searched median
    3.85 -> 3.00 deg), on the real 3-sweep windows and the simulated drives it did not, and it
    costs about 40 % more time (docs/benchmarks.md, section 8). It needs no LiDAR intensity. It was
    measured with the 4 and 2 px levels; with the 1 px level its minimum on the synthetic test
    scene moves 1.1 deg from the truth (tests/core/test_refinement.py), so use it with
    ``sigmas_px=(4.0, 2.0)``."""
    discontinuity_scale_m: float = 0.5
    """A point's depth discontinuity ``jump`` enters the gradient NID as ``1 - exp(-jump / scale)``
    (0 on a continuous surface, near 1 on an object's rim)."""
    edge_weight: float = 0.0
    """Weight of the edge-contrast term."""
    segment_weight: float = 0.1
    """Weight of the segment-consistency term: ``1 - eta^2``, where eta is the correlation ratio
    (Roche et al., MICCAI 1998) of the LiDAR points' surface normals and intensities given the
    image segment each lands in (Felzenszwalb-Huttenlocher segments of the working image), after
    Calib-Anything (Luo et al., 2023), which uses SAM masks. A segment is usually one surface,
    so when aligned the points inside it agree. Its values vary about 10x more than the NID's
    over the prior's range (measured on the real samples), hence 0.1: the two then weigh alike.
    On (since this release): real single frames searched 2.03 -> 1.19 deg, real 3-sweep windows
    4.65 -> 1.07 deg, simulated drives unchanged; about 0.4 s per frame to prepare and 1.6x the
    search time (docs/benchmarks.md, section 8). 0 turns it off."""
    segment_dof_correction: bool = False
    """The segment term as ``1 - epsilon^2`` (Kelley, "An unbiased correlation ratio measure", PNAS
    1935): within-segment and total variance each divided by its degrees of freedom (points minus
    occupied segments, points minus one). The plain ``1 - eta^2`` is biased towards poses that
    scatter the points over many small segments (a segment holding one point explains all of its
    variance), the more so the fewer points: on a real KITTI sequence the subsets the search
    ranks its seeds on had their minimum elsewhere than all the window's points."""
    segment_scale: float = 200.0
    """Felzenszwalb-Huttenlocher ``scale`` (larger: bigger segments; about 300-500 segments on a
    1024 px wide street image), on the working image (at most ``max_width_px`` wide; Gaussian
    pre-smoothing sigma 0.8 px)."""
    segment_min_size_px: int = 100
    """Smallest segment, pixels of the working image."""
    normal_neighbors: int = 10
    """Points per local plane fit of the surface normals (segment term)."""
    remove_hidden_points: bool = False
    """Leave out the points the camera cannot see at the start pose (``hidden_from_view``: behind
    a nearer surface within ``hidden_point_angle_deg``, nearer by ``min_discontinuity_m`` and
    ``min_discontinuity_rel``). Off by default: on the shared real single frames it helped a
    little (searched median 3.85 -> 3.39 deg, 0.335 -> 0.317 m; 37 and 39 of 69 draws better), on
    the real 3-sweep windows it made rotation worse (2.62 -> 3.23 deg) and on simulated drives it
    changed nothing beyond the noise (docs/benchmarks.md, section 8)."""
    hidden_point_angle_deg: float = 0.5
    """Viewing-angle radius of that test (degrees)."""
    max_points_per_frame: int = 20000
    """Random subsample of the points in view kept per frame for the NID (speed)."""
    max_edge_points_per_frame: int = 3000
    """Strongest depth-edge points kept per frame."""
    max_window_points: int = 20000
    """Points of the whole window used by the NID, shared out evenly over its frames (speed)."""
    max_window_edge_points: int = 10000
    """Depth-edge points of the whole window, shared out evenly over its frames (speed)."""
    canny_high_percentile: float = 92.0
    """Canny's high threshold: this percentile of the image's gradient magnitude."""
    canny_low_ratio: float = 0.4
    """Canny's low threshold as a fraction of the high one."""
    min_range_m: float = 1.0
    """LiDAR points closer than this are ignored (ego vehicle, mixed pixels)."""
    max_range_m: float = 80.0
    """LiDAR points farther than this are ignored."""
    neighbors: int = 8
    """Angular neighbours compared to find depth discontinuities."""
    max_neighbor_angle_deg: float = 1.0
    """Neighbours farther apart than this (angle seen from the camera) are not compared."""
    min_discontinuity_m: float = 0.5
    """A neighbour must be at least this much farther for the point to be an edge point."""
    min_discontinuity_rel: float = 0.1
    """... and at least this fraction of the point's range farther."""
    continuity_ratio: float = 0.3
    """The opposite neighbour continues the surface when its range changes by less than this
    fraction of the jump."""
    view_margin: float = -0.12
    """Points are kept when they project within this fraction of the image size beyond its border
    at the start pose (negative: only points that far inside, so that few leave the image within
    the search box and the NID's point set stays the same)."""
    max_rotation_deg: float = 8.0
    """The result stays within this rotation of the start (the search box; a prior's bound)."""
    max_translation_m: float = 0.5
    """The result stays within this translation of the start, per axis (the search box)."""
    prior_weight: float = 0.005
    """Weight of the start as a prior: ``prior_weight / frames * ((|d_rot| / max_rotation)^2 +
    sum_axes (d_t / max_translation)^2)`` is added to the cost (MAP instead of ML: far minima of
    a noisy single-frame objective, and translation along poorly observed axes, stay near it;
    a window of many frames outweighs it)."""
    grid_rotation_deg: float = 4.0
    """Half-width of the rotation grid around the start, scored on the first level."""
    grid_steps: int = 5
    """Grid points per rotation axis (odd: the start itself is one of them)."""
    grid_translation_m: float = 0.15
    """Every rotation of the grid is also scored shifted by this much along +-x, +-y and +-z of
    the camera (7 translations in all): a start whose translation is off then finds seeds whose
    rotation does not absorb the translation error (0: rotations at the start's translation
    only, the default before this option; docs/benchmarks.md section 8 has both)."""
    grid_points_every: int = 3
    """The grid is scored on every n-th point of the window only (speed: the first level is
    blurred and the grid only ranks seeds; it keeps a 20-pair window under 5 s with the
    translated grid; 1: all points)."""
    coarse_points_every: int = 2
    """The descents on the blurred levels (all but the finest) use every n-th point of the
    window only (speed: those levels only lead the seeds into their basins; 1: all points).
    Measured (docs/benchmarks.md section 8): a de-skewed 20-pair window 5.3 -> 4.8 s, simulated
    40-pair windows (18 priors) 0.012 m / 0.063 deg -> 0.013 m / 0.058 deg. Windows searched on
    the fine grid (``fine_search_max_frames``) never use the blurred levels."""
    fine_search_max_frames: int = 3
    """Windows of at most this many frames (a single frame, a short recording) are searched on
    the finest level only: a rotation grid of ``fine_grid_steps`` per axis over +-``fine_grid_rotation_deg``
    at the start's translation, scored on the finest level, whose ``fine_multi_starts`` best (and
    the start) descend on the finest level, translation included. On a real image the blurred
    levels' minima lie away from the truth (texture), while the finest level's is near it but
    narrow (about +-0.5 deg on the OpenCalib frame), so its grid must be that fine. Measured from
    +-5 deg / 0.3 m priors (docs/benchmarks.md section 8): the shared real single frames' searched
    rotation median 3.88 -> 2.03 deg (42 of 69 draws better). Real 3-sweep windows: with the NID
    alone mixed (4.65 -> 1.26 deg on 18 draws, but 5 of the demo's 6 cameras worse); with the
    segment term (this release) 0.251 m / 1.07 deg -> 0.213 m / 0.77 deg on the 18 draws and the
    demo's six cameras' translation all better than their prior (median 0.171 -> 0.128 m), so 3
    since this release. Simulated 40-pair windows were no more accurate and more often refused
    as ambiguous (8 of 18 accepted against 15): longer windows keep the coarse-to-fine search.
    0: never."""
    fine_grid_rotation_deg: float = 4.5
    """Half-width of the fine search's rotation grid (degrees)."""
    fine_grid_steps: int = 19
    """Grid points per rotation axis of the fine search (19 over +-4.5 deg: 0.5 deg apart)."""
    fine_multi_starts: int = 10
    """Best fine-grid seeds that descend (with the start itself)."""
    multi_starts: int = 6
    """Best grid seeds that descend all levels (with the start itself); compared on the finest."""
    distinct_seeds: bool = False
    """Take the best grid seeds that are distinct from every better one taken (farther than
    ``ambiguity_deg`` / ``ambiguity_m``: non-maximum suppression), instead of the best grid
    points, which on the fine grid are mostly neighbours in one basin. Measured on the real
    samples and not adopted (docs/benchmarks.md section 8): single frames 1.21 -> 1.26 deg,
    3-sweep windows 0.77 -> 1.32 deg (median searched RRE, paired draws)."""
    translation_hops_m: float = 0.1
    """After the seeds' descents, the best result shifted by this much along each camera axis
    (six starts) descends again, and those ends join the others (an iterated local search in
    the weakly observed translation); on windows searched on the fine grid only
    (``fine_search_max_frames``: single frames, short recordings). 0: off (before this release).
    With one NID it did not help (single frames 1.21 -> 1.16 deg, 3-sweep windows 0.77 -> 0.81
    deg: the lower minima it found were as often away from the truth). With the depth bands
    (``nid_depth_bands``; docs/benchmarks.md section 8, "Translation hops on the fine search"),
    from +-5 deg / 0.3 m priors on the real samples: 3-sweep windows 0.236 m / 0.51 deg -> 0.232 m
    / 0.46 deg (rotation 7 draws better, 1 worse), single frames 0.287 m / 0.81 deg -> 0.266 m /
    0.82 deg (rotation 15 better, 16 worse), and the hops find the rivals of the single frames that
    were accepted with their translation 0.15-0.46 m wrong, which are then refused (3 -> 0); the
    demo's six cameras 0.35 -> 0.28 deg median. Longer windows (the node's 20 pairs) keep the
    coarse-to-fine search without hops (they would nearly double its time)."""
    translation_grid_m: float = 0.0
    """After the seeds' descents, a grid of translations (half-width in metres, per camera axis;
    the rotation kept) around each of the best ``translation_grid_ends`` distinct ends, scored on
    the finest level with all the window's points; the best grid pose of each end that scores
    lower than the end descends the finest level again (whole pose), and those ends join the
    others. Nelder-Mead's steps (centimetres at the finest level) leave a translation that is
    decimetres off where it is: on a real KITTI sequence the descents ended 0.2-0.3 m off with the
    rotation within 0.4 deg, where the truth's translation scored lower (docs/benchmarks.md section
    8, "A real KITTI sequence"; shifts along the parallax valley, each with the rotation that keeps
    the median depth in place, were tried on one draw there and found nothing the plain shifts did
    not). 0: off."""
    translation_grid_steps: int = 5
    """Grid points per axis of ``translation_grid_m`` (5: -1, -0.5, 0, 0.5, 1 x the half-width)."""
    translation_grid_ends: int = 3
    """How many of the best distinct ends (``ambiguity_deg`` / ``ambiguity_m`` apart) get the
    translation grid."""
    search_passes: int = 1
    """Times the multi-start search (grid, descents, translation grid) runs: each pass after the
    first centres the grid on the best end so far (the box and the prior term stay the start's).
    A grid centred on a start decimetres off in translation ranks its rotations by how well they
    absorb that; centred on the first pass's best end it ranks them nearer the truth."""
    polish_ends: int = 3
    """After the search, the best ``polish_ends`` distinct ends (``ambiguity_deg`` / ``ambiguity_m``
    apart) are each polished by CMA-ES on the finest level, whole pose (Hansen's ``cma`` package;
    Hansen & Ostermeier, Evolutionary Computation 2001): a population samples a Gaussian around the
    end and adapts its covariance, so it follows a curved, noisy valley (rotation against
    translation: parallax) that Nelder-Mead's simplex stalls in. Each polished end replaces the end
    it started from, so the rivals of the ambiguity test are polished alike (polishing the best end
    only would widen its margin by construction). Windows searched coarse to fine only (more than
    ``fine_search_max_frames`` frames): on single frames and 3-sweep windows, whose translation the
    objective hardly observes, it moved the ends along that flat floor and their rotation got
    worse. 0: off (before this release). Measured (docs/benchmarks.md section 8, "A CMA-ES
    polish"), from +-4 deg / 0.25 m priors: a real KITTI sequence's 20-pair windows searched
    0.167 m / 0.67 deg -> 0.067 m / 0.31 deg (9 draws; all still refused as ambiguous);
    KITTI-resolution simulated 20-pair windows 0.016 m / 0.093 deg -> 0.020 m / 0.089 deg, accepted
    18 -> 23 of 24; about 2 s more per 20-pair window (1200 more evaluations; idle machine 4.35 ->
    6.46 s, over the issue's 5 s). Applied to every
    window, from +-5 deg / 0.3 m priors: the shared real single frames 0.27 m / 0.82 deg -> 0.261 m
    / 0.88 deg, their 3-sweep windows 0.23 m / 0.46 deg -> 0.213 m / 0.52 deg, the real demo's six
    cameras' translation 0.154 -> 0.230 m (median)."""
    polish_sigma: float = 3.0
    """CMA-ES's initial step, in search units of the finest level (one unit: a one-sigma image
    shift; about 0.1 deg / 2 cm on a 1000 px wide KITTI image)."""
    polish_evaluations: int = 400
    """Objective evaluations per polished end."""
    decoupled_translation: bool = False
    """The descents move the translation along the parallax valley: a translation step comes with
    the rotation that keeps the points at the median depth where they project (for a shift
    ``rho`` about the camera centre, ``phi_x += rho_y / d``, ``phi_y -= rho_x / d``), so that
    Nelder-Mead can change the translation without first undoing the rotation that absorbed the
    start's translation error (the false minima of the real samples). Only the search's
    coordinates change, not the objective. Off: on the real samples, from +-5 deg / 0.3 m priors,
    it moves translation within the objective's own flat floor (its minimum next to the truth is
    about 0.1 m away, ``bench/bench_objective_minimum.py``, which uses this option), so single
    frames went 0.287 m / 0.81 deg -> 0.256 m / 0.77 deg (``translation_step=4``), within the
    draws' noise (docs/benchmarks.md section 8, "Where the single frames' translation goes")."""
    translation_step: float = 1.0
    """Nelder-Mead's first step in translation, in search units (one unit: the shift that moves a
    point at the median depth by one blur sigma)."""
    merge_deg: float = 0.3
    """After each blurred level, a seed that ended within this rotation (and ``merge_m``) of a
    better seed's end is dropped: the finer levels would almost always take both into the same
    minimum (speed; well inside ``ambiguity_deg``, though a merged seed could have parted on the
    finest level and been a rival). 0: off (before this release). Measured (docs/benchmarks.md
    section 8, "Fewer descents"): a de-skewed 20-pair window 5.3 -> 4.55 s on an idle machine,
    the same poses on all 3 draws; simulated 40-pair windows (18 priors) 0.015 m / 0.054 deg ->
    0.014 m / 0.056 deg, 14 of 18 draws at the same pose, 15 accepted either way. Windows searched
    on the fine grid (``fine_search_max_frames``) have no blurred level to merge after."""
    merge_m: float = 0.03
    """... and within this translation, per axis."""
    max_evaluations_per_level: int = 250
    """Nelder-Mead objective evaluations per level and seed."""
    search_fatol: float = 1e-6
    """A Nelder-Mead descent stops once its simplex's objective values agree within this (and the
    simplex is within 0.02 search units). 1e-7 before this release; the minima a window can tell
    apart differ by about 1e-3. Measured with ``merge_deg`` (docs/benchmarks.md section 8, "Fewer
    descents"): a de-skewed 20-pair window 4.55 -> 4.1-4.2 s; simulated 40-pair windows 0.014 m /
    0.056 deg -> 0.015 m / 0.062 deg (rotation 6 draws better, 5 worse), real samples the same
    poses on 86 of 87 draws. 1e-5: 3.7 s, translation 2 mm worse on average on the simulated
    windows."""
    full_pose_levels: int = 1
    """The finest levels on which translation is searched too (rotation only before them)."""
    min_points_in_view: int = 500
    """Observability: fewer LiDAR points in view over the window is degenerate."""
    min_improvement: float = 1e-5
    """The finest-level objective must drop by at least this much below its start value."""
    ambiguity_deg: float = 1.0
    """Two search results farther apart than this rotation (or ``ambiguity_m``) are distinct."""
    ambiguity_m: float = 0.1
    """... or than this translation along an axis."""
    min_ambiguity_margin: float = 0.005
    """A distinct other solution must cost at least this much more than the best, else the
    window is ambiguous (several poses explain it alike) and the result is not accepted."""
    profile_rival_m: float = 0.15
    """Windows of at most ``profile_rival_max_frames`` frames: the result is also compared with
    the poses ``profile_rival_m`` along each camera axis from it, each with its rotation
    re-optimised (``translation_profile``: a rotation absorbs a translation error in few frames).
    One that scores within ``min_ambiguity_margin`` of the result is a rival as those of the
    search are, and the window is ambiguous. 0: off. Measured on the shared real single frames
    (docs/benchmarks.md section 8, "Profile rivals"): the one real frame accepted 0.23 m / 0.79
    deg off had none of the search's ends as a rival (margin 0.0051), while 0.2 m along z with the
    rotation re-optimised scored 0.0003 above it."""
    rival_support: float = 0.0
    """A rival (a distinct solution within ``min_ambiguity_margin`` of the best) is dismissed when
    the best beats it in at least this fraction of the replicates of a paired cluster bootstrap:
    the window's image cells (``cluster_cells``) resampled with replacement, both poses' costs
    recomputed with the same resample (``_rival_support``). A fixed margin says the two costs
    are close; this asks whether the scene's parts agree on which is lower. 0: off (a rival within
    the margin always makes the window ambiguous). Off by default: on the real KITTI sequence the
    parts agree (support 0.95-1.0) on every rival of every window, the wrong best ends too, so the
    test accepted a result 2.04 deg off (docs/benchmarks.md section 8, "A paired bootstrap of the
    rivals")."""
    profile_rival_max_frames: int = 3
    """The profile rivals are sought in windows of at most this many frames (the few-frame
    windows searched on the finest level only, ``fine_search_max_frames``; six more descents,
    about 1 s on a single frame: the node's 20-pair windows, which observe the translation over
    their motion, are not slowed)."""
    accept_translation_ambiguity: bool = False
    """When every rival solution within ``min_ambiguity_margin`` agrees with the best on the
    rotation (within ``ambiguity_deg``) and differs only in translation, accept the result with
    the rivals' spread in its covariance (``end_spread_covariance``; without it, their largest
    per-axis translation difference; the observability check then decides) instead of refusing
    it as ambiguous. Off: on the real samples (docs/benchmarks.md section 8) it accepts 16 of 87
    draws, 0.04-0.50 m / 0.06-1.48 deg off, with errors about 2-3 standard deviations (RMS;
    before the end spread: 13 draws, rotation 10-150 standard deviations off)."""
    max_std_rotation_deg: float = 0.5
    """Observability: a rotation standard deviation above this is degenerate."""
    max_std_translation_m: float = 0.2
    """Observability: a translation standard deviation above this is degenerate."""
    cluster_cells: int = 4
    """Each frame is cut into cluster_cells x cluster_cells image cells for the bootstrap."""
    bootstrap_replicates: int = 64
    """Replicates of the cluster bootstrap of the covariance."""
    end_spread_covariance: bool = True
    """Add to the bootstrap covariance the spread of the search's equivalent ends: every seed's
    end whose cost is within ``min_ambiguity_margin`` of the best (the best included), as their
    second moment about the result in ``(d_t, d_rot)``. Those are poses the window cannot tell
    apart, so the result is only known to within their spread (the bootstrap alone measures the
    curvature of one minimum: on simulated 40-pair windows its errors were 4-6 standard deviations,
    with the spread about one; docs/benchmarks.md section 8, "An honest covariance"). False: the
    bootstrap alone (before this release; translation-only rivals then added their largest
    per-axis translation difference)."""
    margin_covariance: bool = True
    """Where the search left only one end within ``min_ambiguity_margin`` (so the end spread has
    no sample of the poses the window cannot tell apart), add that set as the objective's
    curvature sees it instead: ``2 * min_ambiguity_margin * H^-1`` (``H``: the bootstrap's
    finite-difference Hessian; the ellipsoid over which the cost rises by the margin, taken as one
    standard deviation). It is wider than the spread where both exist (median 8 cm / 0.29 deg
    against errors of 1-2 cm / 0.06-0.08 deg), so it is the fallback, not a term of every result.
    Measured on KITTI-resolution 20-pair windows (docs/benchmarks.md section 8, "An honest
    covariance"): the two accepted results whose search ended in one place were 9-15 standard
    deviations off and are now within one; over all 41 accepted results the RMS went 2.56 / 2.19 ->
    0.97 / 1.33 (translation / rotation); the 40-pair windows had none (unchanged). False: the
    bootstrap alone there (before this release)."""
    rig_check: bool = True
    """A rig's window (frames of several cameras, ``prepare_frame(..., T_cam_ref=)``): before it is
    accepted, each camera's frames alone descend from the result (``_rig_disagreement``); a camera
    whose own descent ends farther than ``ambiguity_deg`` / ``ambiguity_m`` away and scores better
    by more than ``min_ambiguity_margin`` disagrees with the rig (its relative pose, which the
    priors give, is likely wrong), and the result is not accepted. False: no such check."""
    seed: int = 0
    """Seed of the point subsample and of the bootstrap (same input, same result)."""
    workers: int = 1
    """Processes for the search's independent parts (the grid's scores, each level's descents,
    the polished ends, the profile rivals, the bootstrap's replicates, a rig's per-camera
    checks): forked workers that inherit the window (``_run_all``). The result is the same for
    any number; 1: all in this process. Where fork is not available (not Linux), and in a process
    that is not a program's main process, it runs in one process (``_run_all`` says why). Opt-in
    (``crossi2p-calibrate --workers 2``, ``crossi2p-evaluate-bag --refine-workers 2``); the node
    keeps 1 (``crossi2p_ros.pipeline.OFFLINE_WORKERS`` says why). On a 20-pair window, 1.5x faster
    with 2 (docs/benchmarks.md section 8, "Measured at stop 35")."""


@dataclass
class PreparedFrame:
    """One frame made ready for the objective (``prepare_frame``)."""

    gray_levels: np.ndarray
    """(L, H, W) float32 equalised grey image in [0, 1], blurred per level (working pinhole image)."""
    gradient_levels: np.ndarray
    """(L, H, W) float32 rank-equalised gradient magnitude in [0, 1], blurred per level ((L, 1, 1)
    zeros when the gradient term is off: never sampled then)."""
    edge_maps: np.ndarray
    """(L, H, W) float32 edge nearness in [0, 1] per level ((L, 1, 1) zeros when the edge term
    is off: never sampled then)."""
    K: np.ndarray
    """(3, 3) pinhole intrinsics of the working image."""
    points: np.ndarray
    """(N, 3) float64 LiDAR points (LiDAR frame, metres) for the NID."""
    intensity: np.ndarray
    """(N,) float64 their rank-normalised intensities in [0, 1]."""
    discontinuity: np.ndarray
    """(N,) float64 their depth discontinuities mapped to [0, 1) (``point_discontinuity``, then
    ``1 - exp(-jump / discontinuity_scale_m)``)."""
    edge_points: np.ndarray
    """(M, 3) float64 LiDAR depth-edge points (LiDAR frame)."""
    edge_weights: np.ndarray
    """(M,) float64 edge strengths."""
    image_rgb: np.ndarray
    """(H, W, 3) uint8 working pinhole image (for overlays)."""
    camera: CameraModel
    """The working pinhole camera."""
    segments: np.ndarray | None = None
    """(H, W) int32 image segment labels of the working image (segment term only)."""
    features: np.ndarray | None = None
    """(N, 4) float64 per point: rank intensity and the surface normal (LiDAR frame) halved, each
    in [-0.5, 1] (segment term only)."""
    T_cam_ref: np.ndarray | None = None
    """(4, 4) this frame's camera from the window's reference camera (``prepare_frame``'s
    ``T_cam_ref``: a rig of cameras with known relative poses, refined as one); None: the frame is
    the reference camera's."""


@dataclass
class RefinementResult:
    """What the refinement did. ``accepted`` is False with a ``reason`` when it must not be used."""

    T_cam_lidar: np.ndarray
    """(4, 4) refined estimate when ``accepted``, else the start."""
    T_start: np.ndarray
    """(4, 4) where it started (fused estimate or prior)."""
    accepted: bool
    reason: str = ""
    T_searched: np.ndarray | None = None
    """(4, 4) what the search found, accepted or not (for reports; never publish it unaccepted)."""
    cost_start: float = 0.0
    """Finest-level objective at the start (lower is better)."""
    cost_final: float = 0.0
    """Finest-level objective at the searched estimate."""
    covariance: np.ndarray | None = None
    """(6, 6) covariance, order (x, y, z, rot_x, rot_y, rot_z), m^2 / rad^2 (None if not computed)."""
    frames: int = 0
    """Frames in the window with points in view."""
    points_in_view: int = 0
    """LiDAR points in view over the window at the start."""
    edge_points: int = 0
    """Depth-edge points over the window."""
    evaluations: int = 0
    """Objective evaluations spent."""
    ambiguity_margin: float | None = None
    """Cost of the best distinct other solution minus the best one's (None: no distinct one)."""
    equivalent_ends: int = 0
    """Search ends within ``min_ambiguity_margin`` of the best cost, the best included (0: the
    search did not run)."""
    time_s: float = 0.0
    """Wall time of ``refine_extrinsic`` (excluding ``prepare_frame``)."""
    std_m: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    """(3,) translation standard deviations (x, y, z), metres."""
    std_deg: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    """(3,) rotation standard deviations about x, y, z, degrees."""
    margin_covariance: np.ndarray | None = None
    """(6, 6) ``2 * min_ambiguity_margin * H^-1`` in the covariance's convention (computed with
    the bootstrap; part of ``covariance`` where the search left one end within the margin,
    ``RefinementConfig.margin_covariance``)."""
    rival_support: list[float] = field(default_factory=list)
    """Per rival within ``min_ambiguity_margin`` (in the order found), the fraction of the paired
    cluster-bootstrap replicates in which the result costs less than it (``_rival_support``;
    empty: no rival, or ``RefinementConfig.rival_support`` is 0)."""


# ----------------------------------------------------------------------------- per frame
def _level_gradient(gray: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Sobel gradient (gx, gy) (H, W) float32 of ``gray`` smoothed with ``sigma / 2`` (at least 1
    px), so that fine texture does not dominate a coarse level."""
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), max(1.0, 0.5 * sigma))
    return cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)


def image_edge_maps(gray: np.ndarray, sigmas_px: Sequence[float], high_percentile: float = 92.0,
                    low_ratio: float = 0.4) -> np.ndarray:
    """Edge nearness maps of a grey image, one per scale (a scale space of Canny edges).

    At each level the image is first smoothed with ``sigma / 2`` (so fine texture, foliage,
    gravel, does not make edges at the coarse levels: only object-scale boundaries remain),
    Canny runs with thresholds from that level's gradient-magnitude percentiles, and the edge
    lines are blurred with ``sigma`` and scaled so that a line itself scores 1.

    Args:
        gray: (H, W) uint8 image.
        sigmas_px: Gaussian sigma per level, pixels.
    Returns:
        (L, H, W) float32 in [0, 1].
    """
    out = np.zeros((len(sigmas_px),) + gray.shape, np.float32)
    for i, s in enumerate(sigmas_px):
        gx, gy = _level_gradient(gray, s)
        high = float(np.percentile(np.hypot(gx, gy), high_percentile))
        if high <= 0:
            continue
        scale = 1000.0 / high                    # Canny wants int16 gradients: rescale first
        edges = cv2.Canny(np.clip(gx * scale, -32767, 32767).astype(np.int16),
                          np.clip(gy * scale, -32767, 32767).astype(np.int16),
                          low_ratio * 1000.0, 1000.0, L2gradient=True).astype(np.float32) / 255.0
        out[i] = np.minimum(cv2.GaussianBlur(edges, (0, 0), s) * (np.sqrt(2 * np.pi) * s), 1.0)
    return out


def lidar_depth_edges(points: np.ndarray, T_view_lidar: np.ndarray, config: RefinementConfig
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Foreground depth-discontinuity points of one sweep (after Levinson & Thrun 2013, eq. 1).

    Works on the sweep's angular image seen from the viewpoint ``T_view_lidar`` (the camera
    at the start pose: the occluding edges that matter are the camera's, and a cloud's frame
    origin need not be the LiDAR's optical centre, e.g. a vehicle frame on the ground), so it
    needs no ring field and accepts any scan pattern. A point is an edge point when one angular neighbour is farther by
    a jump (more than ``min_discontinuity_m`` and ``min_discontinuity_rel`` of its range) while
    a neighbour on the opposite side continues its surface (range change under
    ``continuity_ratio`` of the jump). The one-sided test is what keeps a grazing ground plane,
    whose range grows steadily from ring to ring on both sides, from counting as an edge.

    Args:
        points: (N, 3+) LiDAR points in the LiDAR frame, metres (NaN/Inf allowed).
        T_view_lidar: (4, 4) viewpoint; points behind it (z <= 0.5 m) are dropped.
    Returns:
        edge_points: (M, 3) float64 LiDAR-frame points at the near side of a range jump,
        weights: (M,) float64 ``sqrt(jump_m)``, capped at ``sqrt(10)``.
    """
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    r_lidar = np.linalg.norm(xyz, axis=1)
    ok = np.isfinite(r_lidar) & (r_lidar >= config.min_range_m) & (r_lidar <= config.max_range_m)
    xyz = xyz[ok]
    p = transform_points(T_view_lidar, xyz)
    front = p[:, 2] > 0.5
    xyz, p = xyz[front], p[front]
    k = config.neighbors
    if len(xyz) < k + 1:
        return np.zeros((0, 3)), np.zeros(0)
    r = np.linalg.norm(p, axis=1)
    # Angular image of the viewpoint (radians).
    ang = np.column_stack([np.arctan2(p[:, 0], p[:, 2]), np.arctan2(p[:, 1], np.hypot(p[:, 0], p[:, 2]))])
    dist, idx = cKDTree(ang).query(ang, k=k + 1, distance_upper_bound=np.radians(config.max_neighbor_angle_deg))
    dist, idx = dist[:, 1:], idx[:, 1:]                                      # (N, k)
    valid = np.isfinite(dist)
    idx = np.minimum(idx, len(r) - 1)
    dr = np.where(valid, r[idx] - r[:, None], np.nan)                        # (N, k) range change
    d = ang[idx] - ang[:, None, :]                                           # (N, k, 2) direction
    d /= np.linalg.norm(d, axis=-1, keepdims=True).clip(1e-12)
    opposite = np.einsum("nid,njd->nij", d, d) < -0.5                        # (N, k, k)
    thr = np.maximum(config.min_discontinuity_m, config.min_discontinuity_rel * r)[:, None]
    jump = np.where(valid & (dr > thr), dr, 0.0)                             # (N, k)
    continues = np.abs(np.nan_to_num(dr, nan=np.inf))[:, None, :] < config.continuity_ratio * jump[:, :, None]
    one_sided = jump * np.any(opposite & continues, axis=2)                  # (N, k)
    best = one_sided.max(axis=1)
    edge = best > 0
    return xyz[edge], np.sqrt(np.minimum(best[edge], 10.0))


def point_discontinuity(points: np.ndarray, T_view_lidar: np.ndarray, max_neighbor_angle_deg: float = 1.0,
                        neighbors: int = 8) -> np.ndarray:
    """Depth discontinuity of every point: how much farther its farthest angular neighbour is.

    The points are seen from ``T_view_lidar`` (the camera at the start pose), so the value is the
    camera's occluding contour, large on the near side of an object boundary and about zero on a
    continuous surface; no ring field is needed. It is the per-point counterpart of
    ``lidar_depth_edges`` for the gradient NID.

    Args:
        points: (N, 3) LiDAR-frame points, metres, all in front of the viewpoint.
        T_view_lidar: (4, 4) viewpoint.
    Returns:
        (N,) float64 range jump in metres (>= 0; 0 without a neighbour within the angle).
    """
    if len(points) < neighbors + 1:
        return np.zeros(len(points))
    r, dist, idx = _angular_neighbours(points, T_view_lidar, max_neighbor_angle_deg, neighbors)
    return np.where(np.isfinite(dist), r[idx] - r[:, None], 0.0).max(axis=1).clip(0.0)


def hidden_from_view(points: np.ndarray, T_view_lidar: np.ndarray, max_neighbor_angle_deg: float = 1.0,
                     neighbors: int = 8, min_gap_m: float = 0.5, min_gap_rel: float = 0.1) -> np.ndarray:
    """Points the LiDAR saw that the camera cannot: hidden behind a nearer surface seen from
    ``T_view_lidar`` (the two sensors look from different places, so near an object's rim the
    LiDAR reaches what the camera sees only the object in front of). Such a point projects onto
    the occluder's pixels and pairs its own intensity with the occluder's grey value: a false
    sample of the NID, biased near every depth edge. A z-buffer test on the points themselves
    (hidden-point removal, as the NID of Koide et al., ICRA 2023, renders only visible points): a
    point is hidden when one of its ``neighbors`` nearest neighbours in viewing angle (within
    ``max_neighbor_angle_deg``) is nearer by more than ``min_gap_m`` and ``min_gap_rel`` of its range.

    Args:
        points: (N, 3) LiDAR-frame points, metres, in front of the viewpoint.
        T_view_lidar: (4, 4) viewpoint (the camera at the start pose).
    Returns:
        (N,) bool, True for a hidden point.
    """
    if len(points) < neighbors + 1:
        return np.zeros(len(points), bool)
    r, dist, idx = _angular_neighbours(points, T_view_lidar, max_neighbor_angle_deg, neighbors)
    nearer = np.where(np.isfinite(dist), r[:, None] - r[idx], 0.0).max(axis=1)
    return nearer > np.maximum(min_gap_m, min_gap_rel * r)


def _angular_neighbours(points: np.ndarray, T_view_lidar: np.ndarray, max_angle_deg: float, k: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Range (N,) of each point seen from ``T_view_lidar``, and the angular distance (N, k) and
    index (N, k) of its ``k`` nearest neighbours in viewing angle (inf / clipped index beyond
    ``max_angle_deg``)."""
    p = transform_points(T_view_lidar, np.asarray(points, np.float64)[:, :3])
    r = np.linalg.norm(p, axis=1)
    ang = np.column_stack([np.arctan2(p[:, 0], p[:, 2]), np.arctan2(p[:, 1], np.hypot(p[:, 0], p[:, 2]))])
    dist, idx = cKDTree(ang).query(ang, k=k + 1, distance_upper_bound=np.radians(max_angle_deg))
    return r, dist[:, 1:], np.minimum(idx[:, 1:], len(r) - 1)


def image_gradient_levels(gray: np.ndarray, sigmas_px: Sequence[float]) -> np.ndarray:
    """Rank-equalised gradient magnitude of a grey image, one blurred map per level: the
    level's gradient (as in ``image_edge_maps``), its magnitude replaced by its rank in the image
    (uniform in [0, 1], whatever the camera's contrast), blurred with ``sigma``. Arguments and
    the (L, H, W) float32 result in [0, 1] as ``image_edge_maps``."""
    out = np.zeros((len(sigmas_px),) + gray.shape, np.float32)
    for i, s in enumerate(sigmas_px):
        m = np.hypot(*_level_gradient(gray, s))
        rank = (rankdata(m.ravel()) / m.size).reshape(m.shape).astype(np.float32)
        out[i] = cv2.GaussianBlur(rank, (0, 0), s)
    return out


def _pinhole(p_cam: np.ndarray, fx, fy, cx, cy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pinhole pixels ``u, v`` (N,) of camera-frame points (N, 3) and (N,) ``front`` (z > 0.5 m);
    the intrinsics are scalars or (N,) arrays (one per point: the window's frames). The images
    are undistorted first, so no distortion here; vectorised, not CameraModel.project. The
    pixels keep the points' dtype (``_Stack.project``, the objective's hot path, passes float32)."""
    z = p_cam[:, 2]
    front = z > 0.5
    inv = np.divide(1.0, z, out=np.ones_like(z), where=front)
    return p_cam[:, 0] * inv * fx + cx, p_cam[:, 1] * inv * fy + cy, front


def _in_view_mask(points: np.ndarray, T: np.ndarray, K: np.ndarray, width: int, height: int,
                  margin: float) -> np.ndarray:
    """(N,) bool: points in front of the camera projecting within ``margin`` x size of the image."""
    u, v, front = _pinhole(transform_points(T, points), K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    mw, mh = margin * width, margin * height
    return front & (u > -mw) & (u < width + mw) & (v > -mh) & (v < height + mh)


def prepare_frame(image_rgb: np.ndarray, points: np.ndarray, camera: CameraModel,
                  T_start: np.ndarray, config: RefinementConfig | None = None,
                  T_cam_ref: np.ndarray | None = None) -> PreparedFrame:
    """Image levels and LiDAR points of one frame (steps 1-2 of the module docstring).

    Args:
        image_rgb: (H, W, 3) uint8 RGB matching ``camera`` (distorted as captured).
        points: (N, 3+) LiDAR points ``x, y, z[, intensity]``, LiDAR frame, metres (no
            intensity: the NID term sees a constant; ``refine_extrinsic`` then refuses the window
            unless the edge term is on).
        camera: the image's camera model (any CameraInfo model).
        T_start: (4, 4) start ``T_cam_lidar``; only used to keep the points that can be in view.
        T_cam_ref: (4, 4) a rig's frame: this camera's pose from the rig's reference camera
            (``T_cam_ref @ T_ref_lidar = T_cam_lidar``, known, e.g. from the rig's camera
            calibration); ``T_start`` is then the reference camera's ``T_ref_lidar``, and
            ``refine_extrinsic`` refines that one pose over every camera's frames.
    Raises:
        ValueError: image and camera disagree, malformed points or transform.
    """
    cfg = config or RefinementConfig()
    T_start = check_transform(T_start, "T_start")
    if T_cam_ref is not None:
        T_cam_ref = check_transform(T_cam_ref, "T_cam_ref")
        T_start = T_cam_ref @ T_start                  # this camera's own start
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 3:
        raise ValueError(f"refinement: points must be (N, 3+) x, y, z[, intensity], got shape {P.shape}")
    rgb, pin = undistort_to_pinhole(image_rgb, camera)
    scale = min(1.0, cfg.max_width_px / pin.width)
    if scale < 1.0:
        w, h = int(round(pin.width * scale)), int(round(pin.height * scale))
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        pin = pin.resized(w, h)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    sigmas = [s * pin.width / 1000.0 for s in cfg.sigmas_px]
    if cfg.edge_weight:
        edge_maps = image_edge_maps(gray, sigmas, cfg.canny_high_percentile, cfg.canny_low_ratio)
    else:                                   # the edge term is off: skip its (costly) inputs
        edge_maps = np.zeros((len(sigmas), 1, 1), np.float32)   # placeholder, never sampled
    eq = cv2.equalizeHist(gray).astype(np.float32) / 255.0
    gray_levels = np.stack([cv2.GaussianBlur(eq, (0, 0), s) for s in sigmas])
    gradient_levels = (image_gradient_levels(gray, sigmas) if cfg.gradient_nid_weight
                       else np.zeros((len(sigmas), 1, 1), np.float32))    # placeholder, never sampled
    # points for the NID: finite, in range, can be in view; rank-normalised intensity
    r = np.linalg.norm(P[:, :3], axis=1)
    ok = np.isfinite(P[:, :3]).all(axis=1) & (r >= cfg.min_range_m) & (r <= cfg.max_range_m)
    P = P[ok]
    P = P[_in_view_mask(P[:, :3], T_start, pin.K, pin.width, pin.height, cfg.view_margin)]
    P_view = P[:, :3]
    if cfg.remove_hidden_points:
        P = P[~hidden_from_view(P[:, :3], T_start, cfg.hidden_point_angle_deg, cfg.neighbors,
                                cfg.min_discontinuity_m, cfg.min_discontinuity_rel)]
    # discontinuities among all the points in view, before the subsample thins the neighbours
    jump = (point_discontinuity(P[:, :3], T_start, cfg.max_neighbor_angle_deg, cfg.neighbors)
            if cfg.gradient_nid_weight else np.zeros(len(P)))
    rng = np.random.default_rng(cfg.seed)
    if len(P) > cfg.max_points_per_frame:
        keep = np.sort(rng.choice(len(P), cfg.max_points_per_frame, replace=False))
        P, jump = P[keep], jump[keep]
    inten = np.nan_to_num(P[:, 3]) if P.shape[1] >= 4 else np.zeros(len(P))
    inten = (rankdata(inten) - 0.5) / max(len(inten), 1) if len(inten) else inten
    jump = 1.0 - np.exp(-jump / cfg.discontinuity_scale_m)     # metres -> [0, 1): a jump is physical, not a rank
    segments = features = None
    if cfg.segment_weight:
        segments = felzenszwalb(rgb, scale=cfg.segment_scale, sigma=0.8,
                                min_size=cfg.segment_min_size_px).astype(np.int32)
        features = np.column_stack([inten, 0.5 * _normals_at(P_view, P[:, :3], cfg.normal_neighbors)])
    if cfg.edge_weight:
        e_pts, e_w = lidar_depth_edges(np.asarray(points)[:, :3], T_start, cfg)
    else:
        e_pts, e_w = np.zeros((0, 3)), np.zeros(0)
    keep = _in_view_mask(e_pts, T_start, pin.K, pin.width, pin.height, cfg.view_margin) if len(e_pts) else []
    e_pts, e_w = (e_pts[keep], e_w[keep]) if len(e_pts) else (e_pts, e_w)
    if len(e_pts) > cfg.max_edge_points_per_frame:
        top = np.sort(np.argsort(-e_w, kind="stable")[:cfg.max_edge_points_per_frame])
        e_pts, e_w = e_pts[top], e_w[top]
    return PreparedFrame(gray_levels=gray_levels, gradient_levels=gradient_levels, edge_maps=edge_maps,
                         K=pin.K.copy(), points=P[:, :3].copy(), intensity=np.asarray(inten, np.float64),
                         discontinuity=np.asarray(jump, np.float64), edge_points=e_pts, edge_weights=e_w,
                         image_rgb=rgb, camera=pin, segments=segments, features=features,
                         T_cam_ref=None if T_cam_ref is None else T_cam_ref.copy())


def _normals_at(cloud: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """(M, 3) unit surface normals at ``query`` (M, 3) from a plane fit to their ``k`` nearest
    points of ``cloud`` (N, 3), turned to face the LiDAR origin (a plane seen from one side gets
    one orientation)."""
    if len(cloud) < 3 or not len(query):
        return np.zeros((len(query), 3))
    _, idx = cKDTree(cloud).query(query, min(k, len(cloud)))
    nb = cloud[idx] - cloud[idx].mean(axis=1, keepdims=True)
    _, vec = np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))
    n = vec[:, :, 0]
    return n * np.where((n * query).sum(axis=1, keepdims=True) > 0, -1.0, 1.0)


# ----------------------------------------------------------------------------- objective
class _Stack:
    """Points of every frame stacked with per-point intrinsics; per-level images stacked into
    one tall image (one ``cv2.remap`` call samples all frames). ``T_cam_ref``: each frame's
    (4, 4) camera from the reference camera, or None (a rig's frames, ``PreparedFrame.T_cam_ref``;
    None for every frame: one camera)."""

    def __init__(self, points: list[np.ndarray], Ks: list[np.ndarray], images: list[np.ndarray],
                 T_cam_ref: Sequence[np.ndarray | None] = ()):
        n = [len(p) for p in points]
        self.fid = np.repeat(np.arange(len(points)), n)
        self.T_cam_ref = list(T_cam_ref) if any(A is not None for A in T_cam_ref) else None
        self.points = np.vstack(points) if points else np.zeros((0, 3))
        K = np.stack(Ks)[self.fid] if len(self.fid) else np.zeros((0, 3, 3))
        self.fx, self.fy, self.cx, self.cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
        H = max(im.shape[1] for im in images)
        W = max(im.shape[2] for im in images)
        self.frame_rows = H + 2                  # rows per frame in the tall stack (2 rows of padding)
        self.stack = np.zeros((images[0].shape[0], len(images) * self.frame_rows, W), np.float32)
        for k, im in enumerate(images):
            self.stack[:, k * self.frame_rows:k * self.frame_rows + im.shape[1], :im.shape[2]] = im
        self.w_img = np.array([im.shape[2] for im in images], float)[self.fid]
        self.h_img = np.array([im.shape[1] for im in images], float)[self.fid]
        self.row0 = (self.fid * self.frame_rows).astype(float)
        self._maps: tuple[np.ndarray, np.ndarray] | None = None   # sample()'s remap maps, reused
        self._p32 = self._k32 = None                  # project()'s float32 inputs, made on first use
        self._run_cache = None                        # _runs(), made on first use

    def subset(self, idx: np.ndarray) -> "_Stack":
        """The points ``idx`` only, sharing this stack's images (no copy of them)."""
        out = object.__new__(_Stack)
        for name in ("fid", "points", "fx", "fy", "cx", "cy", "w_img", "h_img", "row0"):
            setattr(out, name, getattr(self, name)[idx])
        out.stack, out.frame_rows, out._maps, out._p32, out._k32 = self.stack, self.frame_rows, None, None, None
        out.T_cam_ref, out._run_cache = self.T_cam_ref, None
        return out

    def _runs(self) -> list[tuple[slice, np.ndarray | None]]:
        """(points, T_cam_ref) of each run of consecutive frames with the same camera (a rig)."""
        if self._run_cache is None:
            runs: list[tuple[int, np.ndarray | None]] = []
            for a in (np.flatnonzero(np.r_[True, self.fid[1:] != self.fid[:-1]]) if len(self.fid) else []):
                A = self.T_cam_ref[self.fid[a]]
                B = runs[-1][1] if runs else 0
                if not runs or not (A is B or (A is not None and B is not None and np.array_equal(A, B))):
                    runs.append((int(a), A))
            ends = [a for a, _ in runs[1:]] + [len(self.fid)]
            self._run_cache = [(slice(a, b), A) for (a, A), b in zip(runs, ends)]
        return self._run_cache

    def camera_points(self, T: np.ndarray, dtype=np.float64) -> np.ndarray:
        """(N, 3) the points in their frame's camera under ``T`` (the reference camera's
        ``T_cam_lidar``; a rig frame's own is ``T_cam_ref @ T``), as ``dtype`` (float32: the
        objective's hot path, one ``cv2.transform`` per camera)."""
        if dtype == np.float32:
            if self._p32 is None:
                self._p32 = self.points.astype(np.float32).reshape(-1, 1, 3)
            if self.T_cam_ref is None:
                return cv2.transform(self._p32, T[:3].astype(np.float32)).reshape(-1, 3)
            out = np.empty((len(self.points), 3), np.float32)
            for sl, A in self._runs():
                out[sl] = cv2.transform(self._p32[sl], (T if A is None else A @ T)[:3].astype(np.float32)).reshape(-1, 3)
            return out
        if self.T_cam_ref is None:
            return transform_points(T, self.points)
        out = np.empty((len(self.points), 3))
        for sl, A in self._runs():
            out[sl] = transform_points(T if A is None else A @ T, self.points[sl])
        return out

    def project(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixels (u, v) (N,) float32 of the points under ``T`` and (N,) whether each is in its
        image. The objective's hot path (thousands of poses per window), so: ``cv2.transform``
        for the rigid motion (one C loop, about 10x numpy's matmul on (N, 3)) and float32 pixels
        (``cv2.remap`` samples at float32 pixels anyway)."""
        if self._k32 is None:
            self._k32 = [np.asarray(a, np.float32) for a in (self.fx, self.fy, self.cx, self.cy,
                                                              self.w_img - 1, self.h_img - 1)]
        fx, fy, cx, cy, u_max, v_max = self._k32
        if not len(self.points):
            return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, bool)
        u, v, front = _pinhole(self.camera_points(T, np.float32), fx, fy, cx, cy)
        inside = u >= 0
        inside &= front
        inside &= u <= u_max
        inside &= v >= 0
        inside &= v <= v_max
        return u, v, inside

    def sample(self, T: np.ndarray, level: int, stacks: Sequence[np.ndarray] | None = None,
               projected: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
               ) -> tuple[list[np.ndarray], np.ndarray]:
        """Image values under every point at ``level`` (one (N,) array per stack, default this
        one's images) and the (N,) in-image mask. Bilinear, with cv2.remap (fast).
        ``projected``: ``project(T)`` when the caller has it already. The pixels stay in
        ``self._maps`` (rows, cols; -10 off the image) until the next call: the segment term's
        label lookup reuses them."""
        u, v, inside = projected if projected is not None else self.project(T)
        # cv2.remap takes maps and images below 32767 on a side: the N samples are laid out as a
        # (rows, 8192) map (allocated once, padded with an off-image -10), and a stack taller
        # than that falls back to scipy.
        n, width = len(u), 8192
        if self._maps is None:
            shape = (max(-(-n // width), 1), width)
            self._maps = (np.full(shape, -10.0, np.float32), np.full(shape, -10.0, np.float32))
        rows, cols = self._maps
        outside = ~inside
        r, c = rows.ravel()[:n], cols.ravel()[:n]
        np.add(v, self.row0, out=r, casting="unsafe")
        np.copyto(c, u)
        np.copyto(r, -10.0, where=outside)
        np.copyto(c, -10.0, where=outside)
        stacks = stacks if stacks is not None else [self.stack]
        if stacks[0].shape[1] < 32767:
            out = [cv2.remap(st[level], cols, rows, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT).ravel()[:n] for st in stacks]
        else:
            out = [ndimage.map_coordinates(st[level], [rows.ravel()[:n], cols.ravel()[:n]], order=1,
                                           mode="constant") for st in stacks]
        return out, inside

    def cells(self, T: np.ndarray, c: int) -> np.ndarray:
        """(N,) cluster id of every point: frame x (c x c image cell) under ``T``."""
        u, v, _ = self.project(T)
        cu = np.clip((u / self.w_img * c).astype(int), 0, c - 1)
        cv_ = np.clip((v / self.h_img * c).astype(int), 0, c - 1)
        return (self.fid * c + cv_) * c + cu


def _entropies(p: np.ndarray) -> np.ndarray:
    """(K,) Shannon entropies (nats) of the K distributions in the rows of ``p`` (K, M)."""
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)


class _Window:
    """The objective over a window of prepared frames (module docstring)."""

    def __init__(self, frames: Sequence[PreparedFrame], cfg: RefinementConfig):
        self.cfg = cfg
        frames = [f for f in frames if len(f.points)]
        self.frames = frames
        self.levels = frames[0].gray_levels.shape[0] if frames else 0
        if not frames:
            return
        Ks = [f.K for f in frames]
        rig = [f.T_cam_ref for f in frames]          # a rig's cameras (None: one camera)
        # The window's point budget (speed: the cost is linear in it), shared out evenly.
        rng = np.random.default_rng(cfg.seed)
        pick = [self._budget(len(f.points), cfg.max_window_points // len(frames), rng) for f in frames]
        epick = [self._budget(len(f.edge_points), cfg.max_window_edge_points // len(frames), rng) for f in frames]
        points = [f.points[i] for f, i in zip(frames, pick)]
        self.pts = _Stack(points, Ks, [f.gray_levels for f in frames], rig)
        self.intensity = np.concatenate([f.intensity[i] for f, i in zip(frames, pick)])
        self.discontinuity = np.concatenate([f.discontinuity[i] for f, i in zip(frames, pick)])
        # the NID's depth band of every point: range quantiles within its own frame
        bands = []
        for p in points:
            r = np.linalg.norm(p, axis=1)
            edges = np.quantile(r, np.linspace(0, 1, cfg.nid_depth_bands + 1)[1:-1]) if len(r) else []
            bands.append(np.searchsorted(edges, r))
        self.band = np.concatenate(bands).astype(np.intp)
        # the gradient term's stack: same points, other images (only when it is on)
        self.gradient = (_Stack(points, Ks, [f.gradient_levels for f in frames]).stack
                         if cfg.gradient_nid_weight else None)
        self.edge_w = np.concatenate([f.edge_weights[i] for f, i in zip(frames, epick)])
        self.surface = self.edges = None              # the edge term's stacks: only when it is on
        if cfg.edge_weight:
            self.surface = _Stack(points, Ks, [f.edge_maps for f in frames], rig)  # same points: its stack only
            self.edges = _Stack([f.edge_points[i] for f, i in zip(frames, epick)], Ks, [f.edge_maps for f in frames],
                                rig)
        self.labels = None                            # the segment term's inputs: only when it is on
        if cfg.segment_weight:
            if any(f.segments is None for f in frames):
                raise ValueError("refinement: segment_weight > 0 needs frames prepared with it "
                                 "(prepare_frame with the same RefinementConfig)")
            features = np.concatenate([f.features[i] for f, i in zip(frames, pick)])
            self.features_t = np.ascontiguousarray(features.T)          # (4, N): one row per feature
            self.features_sq = (features ** 2).sum(axis=1)
            # one tall label image, frames one under the other as in the stacks, labels offset per frame
            H = self.pts.frame_rows
            self.labels = np.zeros((len(frames) * H, self.pts.stack.shape[2]), np.int32)  # int32: half the memory
            offset = 0
            for k, f in enumerate(frames):
                h, w = f.segments.shape
                self.labels[k * H:k * H + h, :w] = f.segments + offset
                offset += int(f.segments.max()) + 1
            self.n_labels = offset
        self.bins = cfg.histogram_bins
        self._x_bins: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # _nid's LiDAR-side bins, by attribute

    @staticmethod
    def _budget(n: int, budget: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted indices of at most ``budget`` of ``n`` items (all of them when they fit)."""
        if n <= budget:
            return np.arange(n)
        return np.sort(rng.choice(n, max(budget, 1), replace=False))

    def subset(self, every: int) -> "_Window":
        """This window with every ``every``-th of its points (same images; the edge term's
        points all kept): a cheaper objective for ranking seeds."""
        if every <= 1:
            return self
        out = copy.copy(self)
        idx = np.arange(0, len(self.intensity), every)
        out.pts, out.intensity, out.discontinuity = self.pts.subset(idx), self.intensity[idx], self.discontinuity[idx]
        out.band = self.band[idx]
        if self.labels is not None:
            out.features_t, out.features_sq = self.features_t[:, idx], self.features_sq[idx]
        out._x_bins = {}
        return out

    def samples(self, T: np.ndarray, level: int) -> tuple:
        """Everything the cost needs at ``T`` (so that re-weighted costs need no re-projection):
        grey, gradient and edge-nearness values under the points (gradient / edge-nearness: empty
        when their term is off), the in-image mask, the depth-edge points' values and mask, and
        the image segment label under each point (empty when the segment term is off)."""
        stacks = [self.pts.stack] + [st for st in (self.gradient, self.surface and self.surface.stack)
                                     if st is not None]
        u, v, inside = projected = self.pts.project(T)
        values, _ = self.pts.sample(T, level, stacks, projected)
        lab = np.zeros(0, np.intp)
        if self.labels is not None:                      # nearest label under each point
            rows, cols = (m.ravel()[:len(u)] for m in self.pts._maps)   # sample()'s pixels, -10 outside
            flat = np.rint(rows).astype(np.intp)
            flat *= self.labels.shape[1]
            flat += np.rint(cols).astype(np.intp)
            lab = self.labels.take(flat, mode="clip").astype(np.intp)   # off-image: clipped to label 0,
            # weight 0 (inside); intp: what bincount takes without a copy
        g = values.pop(0)
        gm = values.pop(0) if self.gradient is not None else np.zeros(0)
        s = values.pop(0) if self.surface is not None else np.zeros(0)
        if self.cfg.edge_weight and len(self.edge_w):
            (e,), e_in = self.edges.sample(T, level)
        else:
            e, e_in = np.zeros(0), np.zeros(0, bool)
        return g, gm, inside, s, e, e_in, lab

    def cost_of(self, samples: tuple, w_pts: np.ndarray | None = None, w_edges: np.ndarray | None = None) -> float:
        """Cost from ``samples``, with optional per-point multiplicities (the bootstrap)."""
        g, gm, inside, s, e, e_in, lab = samples
        wi = inside.astype(np.float64) if w_pts is None else inside * w_pts      # (N,) weight of each point
        w_in = float(wi.sum())
        if w_in < 10:
            return 2.0
        nid = self.cfg.nid_weight * self._nid("intensity", g, wi) if self.cfg.nid_weight else 0.0
        if self.gradient is not None:
            nid += self.cfg.gradient_nid_weight * self._nid("discontinuity", gm, wi)
        if self.labels is not None:
            nid += self.cfg.segment_weight * self._unexplained(lab, inside, wi if w_pts is not None else None)
        kept = w_in / (float(len(g)) if w_pts is None else float(w_pts.sum()))
        if kept < 0.5:                                   # most of the point set left the image
            nid += 0.5 - kept
        contrast = 0.0
        if self.cfg.edge_weight and len(e):
            we = self.edge_w if w_edges is None else self.edge_w * w_edges
            if we.sum() > 0:
                contrast = float(we @ (e * e_in)) / float(we.sum()) - float(wi @ s) / w_in
        return nid - self.cfg.edge_weight * contrast

    def _nid(self, lidar: str, y: np.ndarray, wi: np.ndarray) -> float:
        """NID of the (x, y) pairs in [0, 1]^2 of the points, weights ``wi`` (zero for the points
        outside the image), soft (bilinear) binning; ``x`` is this window's (N,) array named
        ``lidar`` ("intensity" or "discontinuity"), fixed over the window, so its bins are
        computed once. With ``nid_depth_bands`` > 1: the mean of one NID per depth band (each
        band its own b x b histogram; a band without points is left out).

        Only points inside the image take part. (Giving the points that leave it a grey bin of
        their own was tried and is wrong: a pose that pushes a homogeneous group, e.g. the road,
        out of the image then *gains* information, and the search finds such poses.) The point
        set is fixed by ``prepare_frame`` to points well inside the image at the start, so few
        leave within the search box; a pose that loses more than half of them is penalised in
        ``cost_of``."""
        b = self.bins
        if lidar not in self._x_bins:
            fx = getattr(self, lidar) * (b - 1)
            ix = np.minimum(fx.astype(np.intp), b - 2)
            ax = fx - ix
            self._x_bins[lidar] = (ix * b + self.band * (b * b), 1.0 - ax, ax)   # one b x b block per band
        ixb, ax0, ax1 = self._x_bins[lidar]
        fy = np.clip(y, 0.0, 1.0).astype(np.float64)
        fy *= b - 1
        iy = fy.astype(np.intp)
        np.minimum(iy, b - 2, out=iy)
        wy1 = fy - iy                                    # the y fraction, then its weight
        wy1 *= wi
        wy0 = wi - wy1
        iy += ixb                                        # the (x, y) bin of the lower corner
        # one bincount per corner on the same index, shifted afterwards (a shift of b*b counts
        # costs less than a shifted copy of the N indices)
        # (a corner's shift never leaves its band's block: the lower corner is at most b*b - b - 2)
        bb = b * b
        nb = self.cfg.nid_depth_bands
        size = nb * bb + b + 2
        hist = np.bincount(iy, wy0 * ax0, size)[:nb * bb]
        hist[1:] += np.bincount(iy, wy1 * ax0, size)[:nb * bb - 1]
        hist[b:] += np.bincount(iy, wy0 * ax1, size)[:nb * bb - b]
        hist[b + 1:] += np.bincount(iy, wy1 * ax1, size)[:nb * bb - b - 1]
        h = hist.reshape(nb, b, b)
        total = h.sum(axis=(1, 2))
        full = total > 0                                 # bands with points in the image
        if not full.any():
            return 1.0
        p = h[full] / total[full, None, None]
        h_xy = _entropies(p.reshape(len(p), -1))
        h_x, h_y = _entropies(p.sum(axis=2)), _entropies(p.sum(axis=1))
        nid = np.where(h_xy > 0, (2.0 * h_xy - h_x - h_y) / np.where(h_xy > 0, h_xy, 1.0), 1.0)
        return float(nid.mean())

    def _unexplained(self, lab: np.ndarray, inside: np.ndarray, wi: np.ndarray | None) -> float:
        """``1 - eta^2``: the share of the variance of the points' features (intensity, normal)
        that their image segments do not explain (within-segment / total sum of squares), over
        the points inside the image, weights ``wi`` (None: weight 1 inside, 0 outside)."""
        n = self.n_labels
        if wi is None:           # unit weights: the points outside go to an extra label, dropped
            lab = np.where(inside, lab, n)
            cnt = np.bincount(lab, minlength=n + 1)[:n].astype(np.float64)
            s1 = np.empty((len(self.features_t), n))                                  # feature x segment
            for k, y in enumerate(self.features_t):
                s1[k] = np.bincount(lab, y, n + 1)[:n]
            sum_sq = float(np.bincount(lab, self.features_sq, n + 1)[:n].sum())
        else:
            cnt = np.bincount(lab, wi, n)
            s1 = np.stack([np.bincount(lab, wi * y, n) for y in self.features_t])
            sum_sq = float((wi * self.features_sq).sum())
        mean_sum = s1.sum(axis=1)
        within = sum_sq - float((s1 ** 2 / np.maximum(cnt, 1e-12)).sum())
        total = sum_sq - float(mean_sum @ mean_sum) / max(float(cnt.sum()), 1e-12)
        if self.cfg.segment_dof_correction:   # epsilon^2: each segment's mean costs a degree of freedom
            n_pts, groups = float(cnt.sum()), float(np.count_nonzero(cnt > 0))
            if total > 0 and n_pts > groups + 1:
                return (within / (n_pts - groups)) / (total / (n_pts - 1.0))
            return 1.0
        return within / total if total > 0 else 1.0

    def cost(self, T: np.ndarray, level: int) -> float:
        return self.cost_of(self.samples(T, level))

    def in_view(self, T: np.ndarray) -> int:
        return int(self.pts.project(T)[2].sum())

    def blind(self) -> str | None:
        """Why the objective cannot see anything in this window, or None: the intensity NID needs
        LiDAR intensity (a cloud without an intensity field reads as all zeros: that NID is 1 at
        every pose), unless a geometric term (gradient NID or edge term) is on. The segment term
        sees normals too, but it was measured only beside the NID (on no cloud without
        intensity), so it does not count here."""
        if (self.cfg.edge_weight or self.cfg.gradient_nid_weight
                or not self.cfg.nid_weight or np.ptp(self.intensity) > 0):
            return None
        return ("the LiDAR points carry no intensity (the intensity NID needs it; the geometric terms, "
                "gradient_nid_weight > 0 or edge_weight > 0, do not)")


def _perturb(T0: np.ndarray, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``[Exp(phi) | rho] @ T0`` with ``(rho, phi) = x * scale`` (rotation about the camera centre)."""
    d = x * scale
    # cv2.Rodrigues: the same rotation as scipy's Rotation.from_rotvec, about 20x faster (this
    # runs once per evaluation of the objective)
    return make_transform(cv2.Rodrigues(d[3:])[0], d[:3]) @ T0


def _translation_grid_best(win: "_Window", T: np.ndarray, level: int,
                           cfg: RefinementConfig) -> tuple[np.ndarray, float]:
    """The pose of lowest cost (and that cost) on a grid of translation shifts ``rho`` around
    ``T`` (``translation_grid_m``, ``translation_grid_steps`` per camera axis, rotation kept):
    ``[I | rho] @ T``."""
    g = np.linspace(-cfg.translation_grid_m, cfg.translation_grid_m, cfg.translation_grid_steps)
    best, best_cost = T, np.inf
    for rho in np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3):
        Tg = T.copy()
        Tg[:3, 3] += rho
        c = win.cost(Tg, level)
        if c < best_cost:
            best, best_cost = Tg, c
    return best, best_cost


def refinement_cost(frames: Sequence[PreparedFrame], T_cam_lidar: np.ndarray, level: int = -1,
                    config: RefinementConfig | None = None) -> float:
    """The objective (module docstring) of ``T_cam_lidar`` over ``frames`` at one level (lower is
    better; 2.0 when fewer than 10 points are in view).

    Raises:
        ValueError: the segment term is on and ``frames`` were prepared without it.
    """
    win = _Window(frames, config or RefinementConfig())
    if not win.frames:
        return 2.0
    return win.cost(check_transform(T_cam_lidar, "T_cam_lidar"), level % win.levels)


# ----------------------------------------------------------------------------- parallel parts
_FORKED_TASKS: Sequence[Callable[[], object]] = ()
"""The tasks of the running ``_run_all``: its forked workers inherit them (only indices are sent)."""


def _run_forked(k: int) -> object:
    return _FORKED_TASKS[k]()


def _ignore_sigint() -> None:
    """A worker leaves Ctrl-C to its parent, which stops the pool (and them) on its way out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_all(tasks: Sequence[Callable[[], object]], workers: int) -> list:
    """``[task() for task in tasks]``, on up to ``workers`` forked processes.

    The tasks are closures over the window (tens of megabytes of image stacks): forked workers
    inherit them copy-on-write, so only an index goes to a worker and only its result (poses,
    costs) comes back; nothing is pickled but those. Each task is deterministic, so the results
    are those of one process, in the same order. In one process when ``workers`` <= 1, for a
    single task, where fork is not available, and in any process that is not a program's main
    process (a pool's worker, this one's included: no nested pools). That last rule is from a
    hang: ``crossi2p-calibrate`` run inside a ``ProcessPoolExecutor`` worker
    (``scripts/real_demo.py``) forked while that worker's queue threads held a lock, and the
    forked worker waited on it forever (a multiprocessing semaphore; once in three runs of the
    demo's test). Forking a process whose other threads hold locks is unsafe in general, which is
    why ``workers`` is 1 by default everywhere. Python's standard ``multiprocessing``; the GIL
    keeps threads from helping here (the objective is many small numpy calls: 1.1x with two
    threads, measured)."""
    global _FORKED_TASKS
    if (workers <= 1 or len(tasks) <= 1 or multiprocessing.current_process().name != "MainProcess"
            or "fork" not in multiprocessing.get_all_start_methods()):
        return [task() for task in tasks]
    _FORKED_TASKS = tasks
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(tasks)), initializer=_ignore_sigint) as pool:
            return pool.map(_run_forked, range(len(tasks)), chunksize=1)
    finally:
        _FORKED_TASKS = ()


def _chunks(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into at most ``parts`` contiguous, near-equal, non-empty ranges."""
    bounds = np.linspace(0, n, min(max(parts, 1), max(n, 1)) + 1).round().astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


# ----------------------------------------------------------------------------- search
def _distinct_best(ranked: Sequence[np.ndarray], n: int, min_deg: float, min_m: float) -> list[np.ndarray]:
    """The first ``n`` of ``ranked`` (4, 4) poses, best first, skipping each pose within
    ``min_deg`` and ``min_m`` (``pose_distance``) of one already taken (non-maximum suppression)."""
    taken: list[np.ndarray] = []
    for T in ranked:
        if len(taken) == n:
            break
        if not any(rot <= min_deg and trans <= min_m for rot, trans in (pose_distance(T, Tt) for Tt in taken)):
            taken.append(T)
    return taken


def _distinct_best_ends(ends: Sequence[tuple[np.ndarray, float]], min_deg: float, min_m: float
                        ) -> list[tuple[np.ndarray, float]]:
    """``(pose, cost)`` pairs best first, without those within ``min_deg`` and ``min_m`` of a
    better one kept (``_distinct_best`` on the costs' ranking)."""
    ranked = sorted(ends, key=lambda e: e[1])
    kept = _distinct_best([T for T, _ in ranked], len(ranked), min_deg, min_m)
    return [e for e in ranked if any(e[0] is T for T in kept)]


def _nelder_mead(fun, x0: np.ndarray, step: np.ndarray, max_evals: int, fatol: float
                 ) -> tuple[np.ndarray, float, int]:
    """scipy's Nelder-Mead from the simplex ``x0 + step_i e_i``; ``step`` (len(x0),) per axis; it
    stops when the simplex is within 2 % of the smallest step and its values within ``fatol``,
    or after ``max_evals`` evaluations."""
    simplex = np.vstack([x0] + [x0 + s * e for s, e in zip(step, np.eye(len(x0)))])
    res = optimize.minimize(fun, x0, method="Nelder-Mead",
                            options={"initial_simplex": simplex, "maxfev": max_evals,
                                     "xatol": 0.02 * float(np.min(step)), "fatol": fatol})
    return res.x, float(res.fun), int(res.nfev)


def _cma():
    """The ``cma`` module, imported here, not at the top: it imports matplotlib.pyplot and
    scipy.stats (about 1 s of every start-up of a command or node that imports this module), and
    only the polish uses it (imported before the polish's workers fork, so that each does not
    import it again; ``preload`` imports it ahead)."""
    import cma
    return cma


def preload() -> None:
    """Import now what the first refinement would otherwise import when it polishes (``cma``:
    about 1 s measured on 2 shared cores, ``python -X importtime -c 'import cma'``), e.g. on a
    node's model-loading thread, so that the first refinement's time is the refinement's."""
    _cma()


def _cma_es(fun, x0: np.ndarray, sigma0: float, max_evals: int, seed: int) -> tuple[np.ndarray, float, int]:
    """CMA-ES (the ``cma`` package, Hansen) from ``x0`` with initial step ``sigma0`` (the same in
    every coordinate) for at most ``max_evals`` evaluations; returns the best point seen, its
    value and the evaluations used."""
    options = {"maxfevals": max_evals, "seed": seed + 1, "verbose": -9, "tolfun": 1e-7, "tolx": 1e-3}
    es = _cma().CMAEvolutionStrategy(x0, sigma0, options)
    while not es.stop():
        X = es.ask()
        es.tell(X, [fun(x) for x in X])
    return np.asarray(es.result.xbest, float), float(es.result.fbest), int(es.result.evaluations)


def _clusters(win: _Window, T: np.ndarray, cfg: RefinementConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The cluster bootstrap's clusters at ``T``: (N,) cluster of each window point, (E,) of each
    depth-edge point (frame x ``cluster_cells`` x ``cluster_cells`` image cell), and their number."""
    c = cfg.cluster_cells
    cl_p = win.pts.cells(T, c)
    cl_e = win.edges.cells(T, c) if win.edges is not None and len(win.edge_w) else np.zeros(0, int)
    return cl_p, cl_e, int(max(cl_p.max(initial=0), cl_e.max(initial=0))) + 1


def _bootstrap_covariance(win: _Window, T: np.ndarray, level: int, scale: np.ndarray,
                          cfg: RefinementConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cluster-bootstrap covariance of the camera-centred perturbation ``(rho, phi)`` at ``T``
    (metres, radians): each replicate resamples the clusters with replacement and moves by one
    Newton step ``-H^-1 g_b`` (``H``: the full window's finite-difference Hessian). Returns it and
    ``H^-1`` (6, 6) in the same units (per unit of cost)."""
    h = 0.5
    E = np.eye(6) * h
    S = {}

    def samp(x):
        key = tuple(np.round(x / h).astype(int))
        if key not in S:
            S[key] = win.samples(_perturb(T, x, scale), level)
        return S[key]

    def f(x, wp=None, we=None):
        return win.cost_of(samp(x), wp, we)

    f0 = f(np.zeros(6))
    H = np.zeros((6, 6))
    for i in range(6):
        H[i, i] = (f(E[i]) - 2 * f0 + f(-E[i])) / h**2
        for j in range(i + 1, 6):
            H[i, j] = H[j, i] = (f(E[i] + E[j]) - f(E[i] - E[j]) - f(E[j] - E[i]) + f(-E[i] - E[j])) / (4 * h**2)
    evals, evecs = np.linalg.eigh(H)
    evals = np.maximum(evals, 1e-9 * max(evals.max(), 1e-12))   # a flat direction -> huge variance
    Hinv = (evecs / evals) @ evecs.T
    cl_p, cl_e, n_cl = _clusters(win, T, cfg)
    rng = np.random.default_rng(cfg.seed)
    resamples = [np.bincount(rng.integers(0, n_cl, n_cl), minlength=n_cl).astype(float)
                 for _ in range(cfg.bootstrap_replicates)]

    def step(m: np.ndarray) -> np.ndarray:
        """One replicate's Newton step (the samples at +-E_i are cached: only re-weighted)."""
        wp, we = m[cl_p], m[cl_e]
        g = np.array([(f(E[i], wp, we) - f(-E[i], wp, we)) / (2 * h) for i in range(6)])
        return -Hinv @ g

    parts = _run_all([lambda part=part: [step(resamples[k]) for k in part]
                      for part in _chunks(len(resamples), cfg.workers)], cfg.workers)
    steps = [x for part in parts for x in part]
    D = np.diag(scale)
    return D @ np.cov(np.array(steps), rowvar=False) @ D, D @ Hinv @ D


def _rival_support(win: _Window, T: np.ndarray, rivals: Sequence[np.ndarray], level: int,
                   cfg: RefinementConfig) -> np.ndarray:
    """(R,) for each (4, 4) rival pose, the fraction of ``cfg.bootstrap_replicates`` paired
    cluster-bootstrap replicates in which ``T`` costs less than it on ``level`` (the data term:
    the prior term is left out). Clusters: frame x image cell at ``T`` (``cluster_cells``), as in
    ``_bootstrap_covariance``; one resample weights both poses' points, so the test is of the
    cost difference (a paired bootstrap, Efron & Tibshirani 1993, ch. 9), not of either cost."""
    if not len(rivals):
        return np.zeros(0)
    cl_p, cl_e, n_cl = _clusters(win, T, cfg)
    best = win.samples(T, level)
    others = [win.samples(Te, level) for Te in rivals]
    rng = np.random.default_rng(cfg.seed + 1)
    wins = np.zeros(len(rivals))
    for _ in range(cfg.bootstrap_replicates):
        m = np.bincount(rng.integers(0, n_cl, n_cl), minlength=n_cl).astype(float)
        cost = win.cost_of(best, m[cl_p], m[cl_e])
        wins += [win.cost_of(s, m[cl_p], m[cl_e]) > cost for s in others]
    return wins / cfg.bootstrap_replicates


_CAMERA_ROTATION_AXES = ("about the camera's x axis: a tilt up or down",
                         "about the camera's y axis: a pan left or right",
                         "about the camera's optical axis: a roll of the image")
"""How a rotation about each axis of the camera optical frame (x right, y down, z forward) moves the
image, for the reasons given to users."""


def _ambiguity_reason(rivals: Sequence[np.ndarray], rotation_rivals: Sequence[np.ndarray], T: np.ndarray,
                      margin: float, cfg: RefinementConfig, rig: bool = False) -> str:
    """The refusal's reason: what the rivals (4, 4) of ``T`` disagree on, a rotation or only the
    translation (then by how much and mostly along which camera axis: what the window leaves
    undetermined), and the cost margin; ``rig``: a window of several cameras, whose relative
    poses may be what is wrong."""
    also = "; in a rig, also check the cameras' relative poses the priors give" if rig else ""
    within = (f"within {margin:.4f} of the best cost (need {cfg.min_ambiguity_margin})" if margin >= 0 else
              f"{-margin:.4f} below the best cost (the search stopped short of the window's minimum)")
    if rotation_rivals:
        rot_deg, trans_m = max(pose_distance(Te, T) for Te in rotation_rivals)
        # the farthest rotation rival's rotation vector, camera frame (x right, y down, z forward)
        far = max(rotation_rivals, key=lambda Te: pose_distance(Te, T)[0])
        axis = int(np.argmax(np.abs(Rotation.from_matrix(far[:3, :3] @ T[:3, :3].T).as_rotvec())))
        return (f"ambiguous: {len(rivals)} other solution(s), up to {rot_deg:.1f} deg / {trans_m:.2f} m away, "
                f"score {within}: the rotation is not determined (mostly {_CAMERA_ROTATION_AXES[axis]}; "
                f"more varied scenes, or a prior that fixes it{also})")
    d = np.array([Te[:3, 3] - T[:3, 3] for Te in rivals])
    worst = np.abs(d[np.argmax(np.abs(d).max(axis=1))])         # the farthest rival's per-axis offset
    return (f"ambiguous: {len(rivals)} other solution(s) within {cfg.ambiguity_deg} deg in rotation but up to "
            f"{worst.max():.2f} m away in translation (mostly along camera {'xyz'[int(np.argmax(worst))]}) "
            f"score {within}: the translation is not determined (too little parallax; a prior that fixes "
            f"it, or more motion{also})")


def _equivalent_spread(poses: Sequence[np.ndarray], T: np.ndarray) -> np.ndarray:
    """(6, 6) second moment of the (4, 4) ``poses`` about ``T``, in the covariance convention of
    the module docstring: ``d_t = t_i - t`` (m), ``d_rot = Log(R_i R^T)`` (rad)."""
    D = perturbations(np.array(poses), T)
    return D.T @ D / len(D)


def _to_fusion_convention(cov_cam: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Camera-centred ``(rho, phi)`` covariance -> ``(d_t, d_rot)`` of ``t = t_est + d_t``.

    ``t = Exp(phi) t0 + rho`` so ``d_t = rho - [t0]x phi``; the rotation part is the same.
    """
    t0 = T[:3, 3]
    J = np.eye(6)
    J[:3, 3:] = -skew(t0)
    return J @ cov_cam @ J.T


Progress = Callable[[str, int, int], None]
"""``progress(what, done, total)``: a long step's progress (``what``: e.g. ``"refining"``; ``done``
of ``total`` steps), for a progress bar."""


def refine_extrinsic(frames: Sequence[PreparedFrame], T_start: np.ndarray,
                     config: RefinementConfig | None = None,
                     extra_starts: Sequence[np.ndarray] = (), progress: Progress | None = None) -> RefinementResult:
    """Refine ``T_cam_lidar`` over a window of prepared frames (steps 3-4 of the module docstring).

    Args:
        frames: K >= 1 frames from ``prepare_frame`` (a single frame is a window of 1); frames
            of a rig's other cameras (prepared with ``T_cam_ref``) join the window, each projected
            with ``T_cam_ref @ T``.
        T_start: (4, 4) start ``T_cam_lidar`` (fused estimate or prior; with a rig, the reference
            camera's, as is the result); the search box, the prior term and the "better than its
            start" test are about it.
        extra_starts: (4, 4) poses that descend all levels as further seeds, compared with the
            others on the finest level (the pipeline passes its previous accepted refinement, so
            that a re-run on a new window does not lose it to a farther start); those outside
            the search box are left out.
        progress: called as ``progress("refining", done, total)`` after each stage of the search
            (the grid, each level of the descents, the polish, the checks; ``done == total`` at
            the end, whatever the outcome).
    Returns:
        A ``RefinementResult``; ``accepted`` is False (and ``T_cam_lidar`` is the start), with the
        reason, when the window is degenerate (too few points in view, no intensity), the
        objective did not improve, another distinct pose explains the window almost as well
        (ambiguous), or the covariance is too wide (unobservable).
    Raises:
        ValueError: ``T_start`` is not a rigid transform, or no frame is given, or the
            segment term is on and the frames were prepared without it.
    """
    cfg = config or RefinementConfig()
    t0 = time.perf_counter()
    T_start = check_transform(T_start, "T_start")
    if not frames:
        raise ValueError("refine_extrinsic: no frames given")
    win = _Window(frames, cfg)
    res = RefinementResult(T_cam_lidar=T_start.copy(), T_start=T_start.copy(), accepted=False,
                           frames=len(win.frames))

    step, steps = 0, 1

    def advance(last: bool = False) -> None:
        """One more stage of the search done (``progress``)."""
        nonlocal step
        step = steps if last else min(step + 1, steps - 1)
        if progress is not None:
            progress("refining", step, steps)

    def done(reason: str = "") -> RefinementResult:
        advance(last=True)
        res.reason, res.accepted = reason, not reason
        if not res.accepted:
            res.T_cam_lidar = T_start.copy()
        res.time_s = time.perf_counter() - t0
        return res

    if not win.frames:
        return done(f"degenerate window: no LiDAR point in view, need {cfg.min_points_in_view}")
    res.points_in_view = win.in_view(T_start)
    res.edge_points = int(win.edges.project(T_start)[2].sum()) if win.edges is not None and len(win.edge_w) else 0
    if win.blind():
        return done(f"degenerate window: {win.blind()}")
    if res.points_in_view < cfg.min_points_in_view:
        return done(f"degenerate window: {res.points_in_view} LiDAR points in view, need {cfg.min_points_in_view}")
    finest = win.levels - 1
    res.cost_start = win.cost(T_start, finest)
    # Search units: one unit = the image shift of one blur sigma (rotation: sigma / f;
    # translation: sigma / f at the median depth of the points in view).
    f_med = float(np.median(win.pts.fx))
    in_view = win.pts.project(T_start)[2]
    depth = float(np.median(win.pts.camera_points(T_start)[in_view, 2]))
    width = float(np.median(win.pts.w_img))
    R0inv = T_start[:3, :3].T
    max_rot = np.radians(cfg.max_rotation_deg)
    # The data term is a mean over the window's points (it does not grow with the frames), so
    # the prior's weight shrinks as 1 / frames: a MAP estimate whose likelihood counts frames.
    prior_weight = cfg.prior_weight / len(win.frames)
    evals = 0

    def scale_for(level: int) -> np.ndarray:
        a = cfg.sigmas_px[level] * width / 1000.0 / f_med
        return np.array([a * depth] * 3 + [a] * 3)

    coarse = win.subset(cfg.coarse_points_every)

    def bounded(Tc: np.ndarray, level: int) -> float:
        """The objective, plus the prior term (a quadratic in the distance from the start,
        normalised by the search box) and a wall outside the box (the blurred levels on
        ``coarse_points_every``-th points)."""
        d_rot = np.radians(rotation_angle_deg(Tc[:3, :3] @ R0inv)) / max_rot
        d_t = np.abs(Tc[:3, 3] - T_start[:3, 3]) / cfg.max_translation_m
        excess = max(d_rot - 1.0, d_t.max() - 1.0, 0.0)
        prior = prior_weight * (d_rot**2 + float(d_t @ d_t))
        return (win if level == finest else coarse).cost(Tc, level) + prior + (1.0 + excess if excess > 0 else 0.0)

    # 3a. rotation grid, also shifted in translation, on the widest level (multi-start); for a
    # window of few frames a fine rotation grid on the finest level instead (fine_search_max_frames)
    fine = len(win.frames) <= cfg.fine_search_max_frames
    half_deg, steps = (cfg.fine_grid_rotation_deg, cfg.fine_grid_steps) if fine else (cfg.grid_rotation_deg,
                                                                                       cfg.grid_steps)
    g = np.radians(np.linspace(-half_deg, half_deg, steps)) if steps > 1 else np.zeros(1)  # 1: the start's rotation
    rotations = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    shifts = np.vstack([np.zeros(3)] + ([cfg.grid_translation_m * s * e for e in np.eye(3) for s in (-1.0, 1.0)]
                                        if cfg.grid_translation_m > 0 and not fine else []))
    scorer = win.subset(cfg.grid_points_every)
    grid_level = finest if fine else 0
    descents = 1 + (1 if cfg.translation_hops_m > 0 and fine else 0)     # the seeds', the hops'
    polished = cfg.polish_ends > 0 and not fine
    steps = cfg.search_passes * (1 + descents * (win.levels - grid_level)) + int(polished) + 1

    def search(T0: np.ndarray, level: int, dof: int) -> tuple[np.ndarray, float, int]:
        """Nelder-Mead at one level over the rotation (dof 3) or the whole pose (dof 6):
        ``(pose, cost, evaluations)``."""
        sc = scale_for(level)

        def pose(y):
            x = np.concatenate([np.zeros(3), y]) if dof == 3 else y.copy()
            if dof == 6 and cfg.decoupled_translation:    # (rho, phi) in units of sc: rho / depth = phi
                x[3] += y[1]
                x[4] -= y[0]
            return _perturb(T0, x, sc)

        step = np.ones(dof) if dof == 3 else np.r_[np.full(3, cfg.translation_step), np.ones(3)]
        y, fval, n = _nelder_mead(lambda y: bounded(pose(y), level), np.zeros(dof), step,
                                  cfg.max_evaluations_per_level, cfg.search_fatol)
        return pose(y), fval, n

    def searched(runs: list[tuple[np.ndarray, float, int]]) -> list[tuple[np.ndarray, float]]:
        """``search``'s ``(pose, cost)`` ends, its evaluations counted."""
        nonlocal evals
        evals += sum(n for _, _, n in runs)
        return [(T, f) for T, f, _ in runs]

    # 3b. rotation first (it moves every pixel; translation only through parallax), coarse to
    # fine; the whole pose only on the finest levels.
    # Every seed (the start and the best grid points) descends through all levels on its own;
    # the seeds are compared on the finest level only (the wide levels widen the basin but
    # their minima are biased towards dense image texture).
    first_full = max(0, win.levels - cfg.full_pose_levels)

    def descend(poses: Sequence[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """Every pose down the levels, level by level (the fine search: the finest level only);
        after each blurred level, a pose that ended within ``merge_deg`` / ``merge_m`` of a
        better one is dropped (it would descend the next levels into the same minimum)."""
        ends = [(T, 0.0) for T in poses]
        for level in range(grid_level, win.levels):
            dof = 6 if level >= first_full else 3
            ends = searched(_run_all([lambda T=T, level=level, dof=dof: search(T, level, dof) for T, _ in ends],
                                      cfg.workers))
            advance()
            if level < finest and cfg.merge_deg > 0:
                ends = _distinct_best_ends(ends, cfg.merge_deg, cfg.merge_m)
        return ends

    def multi_start(center: np.ndarray, extra: Sequence[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """Steps 3a-3b around ``center``: the grid's best seeds, ``center`` and ``extra`` descend;
        then the translation grid and the translation hops; ``(pose, cost)`` ends, best first."""
        nonlocal evals
        grid = [make_transform(Rotation.from_rotvec(rv), dt) @ center for dt in shifts for rv in rotations]
        scores = _run_all([lambda part=part: [scorer.cost(grid[k], grid_level) for k in part]
                           for part in _chunks(len(grid), cfg.workers)], cfg.workers)
        seeds = sorted(zip((c for part in scores for c in part), range(len(grid))))
        evals += len(grid)
        advance()
        n_starts = cfg.fine_multi_starts if fine else cfg.multi_starts
        picked = (_distinct_best([grid[k] for _, k in seeds], n_starts, cfg.ambiguity_deg, cfg.ambiguity_m)
                  if cfg.distinct_seeds else [grid[k] for _, k in seeds[:n_starts]])
        starts = [center] + [Tg for Tg in picked if not np.array_equal(Tg, center)] + list(extra)
        ends = sorted(descend(starts), key=lambda r: r[1])
        if cfg.translation_grid_m > 0 and cfg.translation_grid_steps > 1:
            regridded = []
            for Te, _ in _distinct_best_ends(ends, cfg.ambiguity_deg, cfg.ambiguity_m)[:cfg.translation_grid_ends]:
                # all the window's points: the segment term on a subset has its minimum elsewhere
                Tg, cost_g = _translation_grid_best(win, Te, finest, cfg)
                evals += cfg.translation_grid_steps ** 3
                if cost_g < win.cost(Te, finest):
                    regridded += searched([search(Tg, finest, 6)])
            ends = sorted(ends + regridded, key=lambda r: r[1])
        if cfg.translation_hops_m > 0 and fine:
            hops = [make_transform(np.eye(3), cfg.translation_hops_m * sign * axis) @ ends[0][0]
                    for axis in np.eye(3) for sign in (-1.0, 1.0)]
            ends = sorted(ends + descend(hops), key=lambda r: r[1])
        return ends

    extra_in_box = []
    for Te in extra_starts:
        Te = check_transform(Te, "extra start")
        rot_deg, trans_m = pose_distance(Te, T_start)        # trans_m: the largest per-axis difference
        if rot_deg <= cfg.max_rotation_deg and trans_m <= cfg.max_translation_m:
            extra_in_box.append(Te)
    ends = multi_start(T_start, extra_in_box)
    for _ in range(cfg.search_passes - 1):      # again around the best end (box and prior stay the start's)
        ends = sorted(ends + multi_start(ends[0][0], []), key=lambda r: r[1])
    if polished:                              # windows searched coarse to fine only (see polish_ends)
        sc = scale_for(finest)
        chosen = _distinct_best_ends(ends, cfg.ambiguity_deg, cfg.ambiguity_m)[:cfg.polish_ends]
        rest = [e for e in ends if not any(e[0] is Tc for Tc, _ in chosen)]
        _cma()                                # imported once, before any worker forks
        polished_ends = _run_all([lambda Te=Te: _cma_es(lambda y: bounded(_perturb(Te, y, sc), finest), np.zeros(6),
                                                        cfg.polish_sigma, cfg.polish_evaluations, cfg.seed)
                                  for Te, _ in chosen], cfg.workers)
        for (Te, fe), (y, fy, n) in zip(chosen, polished_ends):   # each end replaced by its polished self
            evals += n
            rest.append((_perturb(Te, y, sc), fy) if fy < fe else (Te, fe))
        ends = sorted(rest, key=lambda r: r[1])
        advance()
    T = ends[0][0]
    # Ambiguity: the best other solution farther than ambiguity_deg / ambiguity_m from the best.
    def distinct(Te: np.ndarray) -> bool:
        rot_deg, trans_m = pose_distance(Te, T)
        return rot_deg > cfg.ambiguity_deg or trans_m > cfg.ambiguity_m

    far = [(Te, f) for Te, f in ends[1:] if distinct(Te)]
    res.ambiguity_margin = float(far[0][1] - ends[0][1]) if far else None
    # rivals: distinct solutions within the margin; those that agree on the rotation (within
    # ambiguity_deg) and differ only in translation leave the rotation determined
    rivals = [Te for Te, f in far if f - ends[0][1] < cfg.min_ambiguity_margin]
    if not rivals and cfg.profile_rival_m > 0 and len(win.frames) <= cfg.profile_rival_max_frames:
        profile = _profile_rivals(lambda Tc: bounded(Tc, finest), T, cfg)   # as the ends were scored
        evals += profile.evaluations
        rivals = [Te for Te, f in profile.poses if f - ends[0][1] < cfg.min_ambiguity_margin]
        best_other = min(f for _, f in profile.poses) - ends[0][1]        # six poses: never empty
        res.ambiguity_margin = best_other if res.ambiguity_margin is None else min(res.ambiguity_margin, best_other)
    if cfg.rival_support > 0:
        res.rival_support = [float(x) for x in _rival_support(win, T, rivals, finest, cfg)]
    dismissed = [Te for Te, sup in zip(rivals, res.rival_support) if sup >= cfg.rival_support]
    rivals = [Te for Te in rivals if not any(Te is D for D in dismissed)]
    rotation_rivals = [Te for Te in rivals if pose_distance(Te, T)[0] > cfg.ambiguity_deg]
    equivalent = [Te for Te, f in ends                                                  # the best included
                  if f - ends[0][1] < cfg.min_ambiguity_margin and not any(Te is D for D in dismissed)]
    res.equivalent_ends = len(equivalent)
    res.evaluations = evals
    res.cost_final = win.cost(T, finest)
    res.T_cam_lidar, res.T_searched = T, T.copy()
    # 4. honest output
    if not res.cost_final < res.cost_start - cfg.min_improvement:
        return done(f"objective not better than its start ({res.cost_final:.5f} vs {res.cost_start:.5f})")
    if rivals and (rotation_rivals or not cfg.accept_translation_ambiguity):
        return done(_ambiguity_reason(rivals, rotation_rivals, T, res.ambiguity_margin, cfg,
                                      rig=len(_by_camera(win.frames)) > 1))
    if win.in_view(T) < cfg.min_points_in_view:
        return done(f"degenerate window: {win.in_view(T)} LiDAR points in view at the result, "
                    f"need {cfg.min_points_in_view}")
    if cfg.rig_check:
        disagreement = _rig_disagreement(win.frames, T, cfg)
        if disagreement:
            return done(disagreement)
    boot, Hinv = _bootstrap_covariance(win, T, finest, scale_for(finest), cfg)
    cov = _to_fusion_convention(boot, T)
    res.margin_covariance = _to_fusion_convention(2.0 * cfg.min_ambiguity_margin * Hinv, T)
    if cfg.end_spread_covariance:
        if len(equivalent) > 1:               # poses the window cannot tell apart, as the search found them
            cov += _equivalent_spread(equivalent, T)
        elif cfg.margin_covariance:           # none found: as the curvature bounds them
            cov += res.margin_covariance
    elif rivals:              # translation-only rivals: their spread is the translation's uncertainty
        spread = np.max([np.abs(Te[:3, 3] - T[:3, 3]) for Te in rivals], axis=0)
        cov[:3, :3] += np.diag(spread**2)
    res.covariance = cov
    std = np.sqrt(np.maximum(np.diag(cov), 0.0))
    res.std_m, res.std_deg = std[:3], np.degrees(std[3:])
    if res.std_deg.max() > cfg.max_std_rotation_deg or res.std_m.max() > cfg.max_std_translation_m:
        axis = "xyz"
        worst = (f"rotation about {axis[int(np.argmax(res.std_deg))]} +-{res.std_deg.max():.2f} deg"
                 if res.std_deg.max() > cfg.max_std_rotation_deg
                 else f"translation along {axis[int(np.argmax(res.std_m))]} +-{res.std_m.max():.3f} m")
        return done(f"unobservable in this window: {worst} (limits {cfg.max_std_rotation_deg} deg, "
                    f"{cfg.max_std_translation_m} m)")
    return done()


def _by_camera(frames: Sequence[PreparedFrame]) -> dict[bytes | None, list[PreparedFrame]]:
    """A window's frames by camera (their ``T_cam_ref``; None: the reference camera), in order."""
    cameras: dict[bytes | None, list[PreparedFrame]] = {}
    for f in frames:
        cameras.setdefault(None if f.T_cam_ref is None else f.T_cam_ref.tobytes(), []).append(f)
    return cameras


def _rig_disagreement(frames: Sequence[PreparedFrame], T: np.ndarray, cfg: RefinementConfig) -> str:
    """Why a rig's result ``T`` (4, 4, the reference camera's) is not to be trusted, or '': each
    camera's frames alone (those sharing one ``T_cam_ref``) are searched from ``T`` (coarse to fine,
    from ``T`` and a coarse rotation grid about it; no polish; the search box about ``T``), and a
    camera that ends
    farther than ``ambiguity_deg`` / ``ambiguity_m`` away with a cost lower by more than
    ``min_ambiguity_margin`` (its own frames' objective) disagrees with the rig. A window of one
    camera: ''."""
    cameras = _by_camera(frames)
    if len(cameras) < 2:
        return ""
    # coarse to fine from T and the best 2 of a 3 x 3 x 3 rotation grid (+-grid_rotation_deg): the
    # finest level alone has a basin of about half a degree, too narrow to leave T for a camera
    # whose relative pose is degrees off
    local = dataclasses.replace(cfg, fine_search_max_frames=0, grid_steps=3, multi_starts=2, grid_translation_m=0.0,
                                translation_hops_m=0.0, polish_ends=0, profile_rival_m=0.0, bootstrap_replicates=2,
                                rig_check=False)
    alone_runs = _run_all([lambda own=own: refine_extrinsic(own, T, local) for own in cameras.values()],
                          cfg.workers)
    for k, (own, alone) in enumerate(zip(cameras.values(), alone_runs)):
        if alone.T_searched is None or not alone.cost_start - alone.cost_final > cfg.min_ambiguity_margin:
            continue
        rot_deg, trans_m = pose_distance(alone.T_searched, T)
        if rot_deg > cfg.ambiguity_deg or trans_m > cfg.ambiguity_m:
            who = "the reference camera" if own[0].T_cam_ref is None else f"rig camera {k} (the k-th after the reference)"
            return (f"rig inconsistent: {who}'s {len(own)} frame(s) alone score "
                    f"{alone.cost_start - alone.cost_final:.4f} better {rot_deg:.1f} deg / {trans_m:.2f} m away from "
                    f"the rig's result (need within {cfg.ambiguity_deg} deg / {cfg.ambiguity_m} m or less than "
                    f"{cfg.min_ambiguity_margin} better): check the cameras' relative poses the priors give")
    return ""


def translation_profile(frames: Sequence[PreparedFrame], T_cam_lidar: np.ndarray,
                        offsets_m: Sequence[float] = (-0.2, -0.1, 0.0, 0.1, 0.2),
                        config: RefinementConfig | None = None) -> np.ndarray:
    """How well does the window observe each axis of the translation? (a profile of the objective)

    For each camera axis (x right, y down, z forward) and each offset, the translation of
    ``T_cam_lidar`` is shifted by that many metres and the rotation re-optimised (Nelder-Mead,
    finest level, no prior term); the cost at that best rotation is the profile (profile
    likelihood). A profile that rises by less than the ambiguity margin over +-0.2 m means the
    window cannot tell those translations apart: a rotation absorbs the shift (parallax only).

    Args:
        frames: K >= 1 frames from ``prepare_frame``.
        T_cam_lidar: (4, 4) the pose to profile around (e.g. the ground truth or a result).
        offsets_m: shifts along each axis (metres).
    Returns:
        (3, len(offsets_m)) costs, rows x / y / z (2.0 where fewer than 10 points are in view).
    Raises:
        ValueError: malformed ``T_cam_lidar``; no frame given.
    """
    cfg = config or RefinementConfig()
    T = check_transform(T_cam_lidar, "T_cam_lidar")
    if not frames:
        raise ValueError("translation_profile: no frames given")
    win = _Window(frames, cfg)
    if not win.frames:
        return np.full((3, len(offsets_m)), 2.0)
    out = np.zeros((3, len(offsets_m)))
    for axis in range(3):
        for j, d in enumerate(offsets_m):
            _, out[axis, j], _ = _shifted_best_rotation(lambda Tc: win.cost(Tc, win.levels - 1), T, axis, d, cfg)
    return out


def _shifted_best_rotation(cost, T: np.ndarray, axis: int, offset_m: float,
                           cfg: RefinementConfig) -> tuple[np.ndarray, float, int]:
    """``T`` (4, 4) moved ``offset_m`` along camera ``axis``, its rotation re-optimised on
    ``cost`` (a function of a (4, 4) pose; Nelder-Mead): ``(pose, cost, evaluations)``."""
    Ts = make_transform(np.eye(3), offset_m * np.eye(3)[axis]) @ T
    step = np.full(6, np.radians(0.05))      # search units of the rotation: 0.05 deg
    y, f, n = _nelder_mead(lambda y: cost(_perturb(Ts, np.r_[0.0, 0.0, 0.0, y], step)),
                           np.zeros(3), np.full(3, 4.0), cfg.max_evaluations_per_level, cfg.search_fatol)
    return _perturb(Ts, np.r_[0.0, 0.0, 0.0, y], step), f, n


@dataclass
class _ProfileRivals:
    poses: list[tuple[np.ndarray, float]]
    """(pose (4, 4), finest-level cost) per axis and sign."""
    evaluations: int


def _profile_rivals(cost, T: np.ndarray, cfg: RefinementConfig) -> _ProfileRivals:
    """The poses ``profile_rival_m`` along each camera axis from ``T``, rotation re-optimised on
    ``cost`` (``RefinementConfig.profile_rival_m``)."""
    runs = _run_all([lambda axis=axis, sign=sign: _shifted_best_rotation(cost, T, axis, sign * cfg.profile_rival_m, cfg)
                     for axis in range(3) for sign in (-1.0, 1.0)], cfg.workers)
    return _ProfileRivals([(Tr, f) for Tr, f, _ in runs], sum(n for _, _, n in runs))


# ----------------------------------------------------------------------------- validity
@dataclass
class AlignmentCheck:
    """Result of ``alignment_check``."""

    passed: bool
    margin: float
    """Lowest cost among the offset poses minus the cost at the estimate (> 0: the estimate
    explains the image better than every pose around it)."""
    reason: str = ""


def alignment_check(frame: PreparedFrame, T_cam_lidar: np.ndarray, offset_deg: float = 3.0,
                    offset_m: float = 0.3, min_margin: float = 0.0,
                    config: RefinementConfig | None = None) -> AlignmentCheck:
    """Does the image agree with the LiDAR at ``T_cam_lidar`` better than at poses around it?

    A training-free check of a per-frame estimate: the objective (finest level) at the estimate
    must be lower, by ``min_margin``, than at each of the 10 poses rotated by ``offset_deg`` about
    +-x, +-y, +-z (camera centre) or shifted by ``offset_m`` along +-x, +-y. A wrong estimate
    (tens of degrees off: the network on a sensor it never saw) sits on no such minimum; a
    right one, within about half the offset of the truth, does.

    Args:
        frame: from ``prepare_frame`` (with ``T_start`` = the estimate).
        T_cam_lidar: (4, 4) the estimate.
    Returns:
        ``AlignmentCheck``; ``passed`` False with the reason when not. A cloud without intensity
        cannot be checked: it passes, with margin NaN and the reason "not applicable: ..." (the
        network's own checks then decide alone, as before this check existed).
    """
    cfg = config or RefinementConfig()
    T = check_transform(T_cam_lidar, "T_cam_lidar")
    win = _Window([frame], cfg)
    if win.frames and win.blind():
        return AlignmentCheck(True, float("nan"), f"not applicable: {win.blind()}")
    if not win.frames or win.in_view(T) < cfg.min_points_in_view:
        n = win.in_view(T) if win.frames else 0
        return AlignmentCheck(False, float("nan"), f"{n} LiDAR points in view, need {cfg.min_points_in_view}")
    finest = win.levels - 1
    c0 = win.cost(T, finest)
    offsets = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            rv = np.zeros(3)
            rv[axis] = sign * np.radians(offset_deg)
            offsets.append(make_transform(Rotation.from_rotvec(rv), np.zeros(3)) @ T)
            if axis < 2:
                d = np.zeros(3)
                d[axis] = sign * offset_m
                offsets.append(make_transform(np.eye(3), d) @ T)
    margin = min(win.cost(To, finest) for To in offsets) - c0
    if margin > min_margin:
        return AlignmentCheck(True, float(margin))
    return AlignmentCheck(False, float(margin),
                          f"image and LiDAR agree no better at the estimate than {offset_deg} deg / "
                          f"{offset_m} m away (margin {margin:.6f}, need > {min_margin:g})")
