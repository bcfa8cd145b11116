"""The node's other cameras of a rig (the ``rig_calibration`` parameter): their pairs for the refinement.

A rig's cameras usually have known poses relative to each other; what is unknown is where the
LiDAR sits. One camera alone leaves a rotation open on real data (docs/benchmarks.md section 8,
"A rig of cameras"), so the node can refine its own camera together with the rig's others, as
``crossi2p-calibrate --rig-camera`` does offline (``pipeline.RigCamera``).

The rig file (YAML) lists the other cameras::

    cameras:
      - image_topic: /camera_05/image_raw
        camera_info_topic: /camera_05/camera_info
        prior_calibration: rig_prior_camera_05.yaml     # relative paths: from the rig file's folder

Each camera's pose relative to the node's camera comes from the two priors
(``T_cam_ref = T_prior_cam @ inv(T_prior_ref)``, the node's ``prior_calibration`` being the
reference), so the priors must agree on where the cameras sit; they may share any error in where
the LiDAR is, which is what is refined.

No network runs on these cameras: their images are only paired (``StampPairer``) with the node's
own de-skewed sweeps, and a pair is held while its sweep is in the node's refinement window (those
are keyframes already). Held images are scaled to at most ``max_width_px`` (the refinement's
working width) so that a rig of six 2-megapixel cameras holds about 20 x 5 x 2.4 MB, not 7 MB each.
Pure Python (no rclpy): the node feeds it; tests call it directly.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from crossi2p.calib_io import read_yaml
from crossi2p.camera import CameraModel
from crossi2p.geometry import invert_transform
from crossi2p.prior import Prior, load_prior

from .pairing import PairingConfig, StampedPair, StampPairer
from .pipeline import CameraFrame, LidarSweep, RefinementScheduleConfig, RigCamera, synchronised


@dataclass(frozen=True)
class RigCameraSpec:
    """One other camera of the rig, from the rig file."""

    image_topic: str
    camera_info_topic: str
    prior: Prior
    """Its prior (``crossi2p.prior.load_prior``): the rig's relative pose comes from it."""
    T_cam_ref: np.ndarray
    """(4, 4) its pose from the node's camera: ``T_prior_cam @ inv(T_prior_ref)``."""


def load_rig_file(path: str | Path, reference: Prior, reference_topic: str) -> list[RigCameraSpec]:
    """The rig file's cameras (module docstring).

    Args:
        path: the rig YAML.
        reference: the node's own prior (``prior_calibration``), the rig's reference.
        reference_topic: the node's ``image_topic`` (a rig camera must not be it).
    Raises:
        ValueError: one line naming the file (and the entry): not found, not YAML, no
            ``cameras`` list, a missing key, a camera given twice or the node's own, a prior that
            cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"rig_calibration {path}: file not found")
    data = read_yaml(path, f"rig_calibration {path}", "a rig YAML")
    cameras = data.get("cameras") if isinstance(data, dict) else None
    if not isinstance(cameras, list) or not cameras:
        raise ValueError(f"rig_calibration {path}: expected a non-empty list 'cameras' of {{image_topic, "
                         f"camera_info_topic, prior_calibration}}")
    specs: list[RigCameraSpec] = []
    for k, entry in enumerate(cameras):
        where = f"rig_calibration {path}: cameras[{k}]"
        keys = ("image_topic", "camera_info_topic", "prior_calibration")
        if not isinstance(entry, dict) or any(not isinstance(entry.get(key), str) or not entry[key] for key in keys):
            raise ValueError(f"{where}: expected the strings {', '.join(keys)}")
        topic = entry["image_topic"]
        if topic == reference_topic:
            raise ValueError(f"{where}: {topic} is the node's own camera (image_topic)")
        if any(s.image_topic == topic for s in specs):
            raise ValueError(f"{where}: {topic} given twice (each camera once)")
        prior_path = Path(entry["prior_calibration"])
        prior_path = prior_path if prior_path.is_absolute() else path.parent / prior_path
        try:
            prior = load_prior(prior_path)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        specs.append(RigCameraSpec(topic, entry["camera_info_topic"], prior,
                                   prior.T_cam_lidar @ invert_transform(reference.T_cam_lidar)))
    return specs


class RigInput:
    """One other camera of the rig: its images paired with the node's sweeps, and the pairs of
    the sweeps in the node's refinement window held for the refinement (module docstring)."""

    def __init__(self, spec: RigCameraSpec, pairing: PairingConfig | None = None,
                 schedule: RefinementScheduleConfig | None = None, max_width_px: int = 1024, recent: int = 20):
        """``schedule``: the node's refinement schedule; a pair whose image and sweep stamps differ
        by more than its ``max_pair_offset_s`` is not held, unless its ``compensate_pair_offset``
        moves the sweep to the image's stamp (``pipeline.synchronised``, as the node's own pairs);
        ``recent``: pairs kept while their sweep may still join the window."""
        self.spec = spec
        self.schedule = schedule or RefinementScheduleConfig()
        self.max_width_px = max_width_px
        self._pairer: StampPairer[CameraFrame, LidarSweep] = StampPairer(pairing)
        self._recent: deque[StampedPair] = deque(maxlen=recent)
        self._held: dict[float, StampedPair] = {}
        self._window: set[float] = set()          # the sweep stamps of the node's window
        self.images_in = 0
        """Images offered (decoded and checked)."""
        self.images_received = 0
        """Messages on ``image_topic``, usable or not (the node's silent-input watch)."""
        self.camera_infos_received = 0
        """Messages on ``camera_info_topic``."""
        self.pairs_unsynchronised = 0
        # its CameraInfo, as the node keeps its own (the node's callbacks set these)
        self.info = None
        """The newest CameraInfo message (None: none yet)."""
        self.info_key: tuple | None = None
        self.camera: CameraModel | None = None
        self.camera_error: ValueError | None = None
        self._frame_id = ""

    @property
    def frame_id(self) -> str:
        """The camera's optical frame: its images' frame_id, else its prior's camera frame, else
        the image topic's name with '/' as '_'."""
        return self._frame_id or self.spec.prior.camera_frame or self.spec.image_topic.strip("/").replace("/", "_")

    def scaled(self, frame: CameraFrame) -> CameraFrame:
        """``frame`` scaled to at most ``max_width_px`` wide, its camera with it (what is held;
        milliseconds for a large image: the node calls it outside its lock)."""
        scale = self.max_width_px / frame.camera.width
        if scale >= 1.0:
            return frame
        w, h = int(round(frame.camera.width * scale)), int(round(frame.camera.height * scale))
        return CameraFrame(cv2.resize(frame.image_rgb, (w, h), interpolation=cv2.INTER_AREA),
                           frame.camera.resized(w, h), frame.frame_id)

    def offer_image(self, stamp_s: float, frame: CameraFrame) -> None:
        """An image of this camera (its CameraInfo's camera), as ``scaled`` gives it."""
        self.images_in += 1
        self._frame_id = frame.frame_id
        self._keep(self._pairer.add_image(stamp_s, frame))

    def offer_lidar(self, stamp_s: float, sweep: LidarSweep) -> None:
        """A sweep of the node's LiDAR, de-skewed as the node's own pairs get it."""
        self._keep(self._pairer.add_lidar(stamp_s, sweep))

    def _keep(self, pairs: list[StampedPair]) -> None:
        for pair in pairs:
            pair = synchronised(pair, self.schedule)
            if pair is None:
                self.pairs_unsynchronised += 1
            elif pair.lidar_stamp_s in self._window:
                self._held[pair.lidar_stamp_s] = pair
            else:
                self._recent.append(pair)

    def follow_window(self, window: list[StampedPair]) -> None:
        """The node's refinement window changed: hold this camera's pairs of its sweeps (from
        the recent ones), let go of those whose sweep left it."""
        self._window = {p.lidar_stamp_s for p in window}
        for pair in self._recent:
            if pair.lidar_stamp_s in self._window:
                self._held[pair.lidar_stamp_s] = pair
        self._held = {s: p for s, p in self._held.items() if s in self._window}

    @property
    def held(self) -> int:
        """Pairs held for the refinement."""
        return len(self._held)

    def rig_camera(self, window: list[StampedPair]) -> RigCamera | None:
        """This camera's pairs of ``window``'s sweeps, in its order (None: none held)."""
        pairs = [self._held[p.lidar_stamp_s] for p in window if p.lidar_stamp_s in self._held]
        return RigCamera(pairs, self.spec.T_cam_ref) if pairs else None

    def reset(self) -> None:
        """Forget every pair (the node's ``~/reset``)."""
        self._pairer.reset()
        self._recent.clear()
        self._held.clear()
        self._window = set()
