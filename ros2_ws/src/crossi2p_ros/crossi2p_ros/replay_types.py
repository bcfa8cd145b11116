"""What a replay of a recording gives, shared by the offline replay (``evaluate_bag``), the live
replay (``live_replay``) and ``crossi2p-calibrate``: the per-pair records, the refinement runs,
and the decalibration injection (``Knock``). Plain Python (no rclpy), so the offline tools never
import the ROS side.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from crossi2p.geometry import invert_transform, make_transform, transform_points

from .frame_report import FrameReport
from .pipeline import CalibrationPipeline, RefinementRun

__all__ = ["Knock", "knocked_points", "FrameRecord", "StampSpan", "ReplayResult"]


@dataclass
class Knock:
    """A decalibration injected at ``at_s`` (bag time): the camera turns about its optical axis."""

    at_s: float
    rotation_deg: float
    translation_m: float = 0.0

    def E(self) -> np.ndarray:
        """(4, 4) camera-frame change: T_cam_lidar after = E @ T_cam_lidar before."""
        return make_transform(Rotation.from_euler("z", self.rotation_deg, degrees=True),
                              [self.translation_m, 0.0, 0.0])


def knocked_points(points: np.ndarray, knock: Knock, T_gt: np.ndarray) -> np.ndarray:
    """(N, 4) points as the knocked camera sees them: the same pixels, p' = inv(E T) T p."""
    M = invert_transform(knock.E() @ T_gt) @ T_gt
    return np.hstack([transform_points(M, points), points[:, 3:]]).astype(np.float32)


@dataclass
class FrameRecord:
    """One processed pair with its ground truth, as written to frames.csv: the ``FrameReport``
    (offline: from the pipeline; live: as the node published it) and ``T_gt``, the ground truth of
    that pair (a knock already applied; None for ``crossi2p-calibrate``, which has none). The
    report's fields read through (``record.confidence``)."""

    report: FrameReport
    T_gt: np.ndarray | None

    def __getattr__(self, name: str):  # only called for names not defined here: the report's fields
        if name == "report":  # not yet set (copy / unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.report, name)

    @property
    def T_frame(self) -> np.ndarray | None:
        """(4, 4) the per-frame estimate, None when the frame was rejected."""
        return self.report.T_cam_lidar if self.report.valid else None

    @property
    def T_fused(self) -> np.ndarray | None:
        """(4, 4) the fused estimate once converged, else None."""
        return self.report.fused_T_cam_lidar if self.report.status == "converged" else None


@dataclass
class StampSpan:
    """The stamps a stream's messages carried: how many, the first and the last (seconds)."""

    count: int = 0
    first_s: float = float("inf")
    last_s: float = float("-inf")

    def add(self, stamp_s: float) -> None:
        self.count += 1
        self.first_s, self.last_s = min(self.first_s, stamp_s), max(self.last_s, stamp_s)

    def describe(self) -> str:
        """``"3 stamped 1000.000-1000.200 s"`` (``"none"`` when empty)."""
        return f"{self.count} stamped {self.first_s:.3f}-{self.last_s:.3f} s" if self.count else "none"


def unpaired_reason(images: StampSpan, sweeps: StampSpan, slop_s: float) -> str:
    """Why images and sweeps that were read gave no pair: which stream is empty, or both stamp
    spans and the gap between them when they are farther apart than ``slop_s`` (seconds; two
    clocks, e.g. one on sensor time and one on the host's). '' when neither explains it."""
    if not images.count or not sweeps.count:
        return (f"images read: {images.describe()}; sweeps read: {sweeps.describe()}")
    gap = max(images.first_s - sweeps.last_s, sweeps.first_s - images.last_s)
    if gap <= slop_s:
        return ""
    return (f"images {images.describe()}, sweeps {sweeps.describe()}: {gap:.3f} s apart, more than the pairing "
            f"slop {slop_s:g} s (camera and LiDAR stamped on different clocks?)")


@dataclass
class ReplayResult:
    frames: list[FrameRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Problems met while reading (partial results are kept)."""
    interrupted: bool = False
    """Ctrl-C stopped the replay: ``frames`` are the pairs processed until then."""
    refused: dict[str, int] = field(default_factory=dict)
    """Messages left out, counted by reason: a cloud or image in a frame that cannot be expressed in
    the evaluated one (``crossi2p.tf_tree``'s rule, as the node applies it)."""
    sweeps_unpaired_at_end: int = 0
    """Sweeps still waiting for a later image when the bag ended (offline, without ``pair_at_end``:
    left unpaired, as the live node leaves them)."""
    first_sample: tuple | None = None
    last_sample: tuple | None = None
    image_stamps: StampSpan = field(default_factory=StampSpan)
    """The stamps of the images read (offline rosbag2 replay; before any check)."""
    lidar_stamps: StampSpan = field(default_factory=StampSpan)
    """The stamps of the sweeps read (offline rosbag2 replay; before any check)."""
    knock: Knock | None = None
    refinements: list[RefinementRun] = field(default_factory=list)
    """Every refinement run of the replay (offline), accepted or not, in order."""
    pipeline: CalibrationPipeline | None = field(default=None, repr=False)
    """The pipeline the pairs went through (offline; None for a live replay): its final state
    (``refined``, ``published_estimate()``, the refinement window)."""

    def no_pairs_reason(self, slop_s: float) -> str:
        """Why the replay gave no pair, for the one-line error: the read errors and refusals, else
        the streams' stamps (``unpaired_reason``; offline rosbag2 replays record them), else ''."""
        reasons = self.errors + list(self.refused)
        if not reasons and (self.image_stamps.count or self.lidar_stamps.count):
            reasons.append(unpaired_reason(self.image_stamps, self.lidar_stamps, slop_s))
        return "; ".join(r for r in reasons if r)

    @property
    def reports(self) -> list[FrameReport]:
        """Per processed pair, everything the pipeline (offline) or the node (live) gave."""
        return [f.report for f in self.frames]

    @property
    def refined(self) -> RefinementRun | None:
        """The accepted refinement in force at the end of the replay (None: none, or forgotten at a
        drift event)."""
        return self.pipeline.refined_run if self.pipeline is not None else None

    @property
    def frames_to_refine(self) -> int | None:
        """Pairs processed when the first accepted refinement ran (None: none was accepted)."""
        return self.pipeline.first_refined_at if self.pipeline is not None else None

    def add(self, report: FrameReport, T_gt: np.ndarray | None) -> None:
        """Append a processed pair with its ground truth before any knock (applied here)."""
        knocked = self.knock is not None and report.lidar_stamp_s >= self.knock.at_s
        self.frames.append(FrameRecord(report, self.knock.E() @ T_gt if knocked else T_gt))
