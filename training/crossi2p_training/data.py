"""Training and evaluation data: ONE torch ``Dataset`` over any source of ``crossi2p.sample.Sample``.

Sources (each is a sequence: ``len(source)`` and ``source[i] -> Sample``):

- ``SimulatorSource``: the simulator on the fly; frame ``i`` is
  ``simulate_sample(config, base_seed + i)`` (deterministic, nothing stored);
- ``SimCacheSource``: the same frames written once to disk as ``.npz`` files
  (``<cache_dir>/sim-<config hash>/seed_<seed>.npz``) and reused by every later run. Simulating
  is the expensive part of training on a CPU; a cache is built with a tqdm bar, resumes where an
  interrupted build stopped, and is keyed by the simulator configuration and the simulator's
  source code, so frames of two configurations or two simulator versions never mix;
- ``KittiSource``: KITTI Odometry sequence or raw drive folders (``crossi2p.datasets.kitti``);
- ``NuScenesSource``: nuScenes-format folders (``crossi2p.datasets.nuscenes``);
- ``Rosbag2Source``: rosbag2 recordings, camera/LiDAR paired by stamp, ground truth from
  ``/tf_static`` (``crossi2p.datasets.rosbag2``); the pairs are decoded once into memory;
- ``SampleFolderSource``: sample folders (``crossi2p.datasets.sample_folder``: a calib.yaml naming
  an image and a cloud beside it, as the shared real frames are laid out);
- ``ConcatSource`` / ``SubsetSource``: several folders as one, an evenly spaced subset.

``CalibrationDataset`` turns a source into network inputs, per item ``i`` of epoch ``e``:

1. ``sample = source[i]``; optional photometric augmentation of the image (brightness/contrast;
   optionally exposure, white balance, vignetting, blur, noise, JPEG: ``PhotometricAugment``);
2. ``crossi2p.preprocess.preprocess_frame`` (the ONE preprocessing, shared with the runtime);
3. the protocol augmentation (``crossi2p.metrics.sample_perturbation``, ``global`` or
   ``refine``) is applied to the preprocessed POINTS: ``points' = T_pert @ points``, so the
   item's ground truth becomes ``T_cam_lidar' = T_cam_lidar @ inv(T_pert)``; ``refine`` also
   gives a prior ``T_prior`` (``prior_weight = 1``), ``global`` none (identity, weight 0).

All randomness of an item (point subsample, perturbation, photometric) comes from one
``numpy.random.Generator`` seeded with ``(seed, epoch, i)``: the same item of the same epoch is
the same on any machine, any worker count and any DDP rank layout.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np
import torch
from tqdm import tqdm

from crossi2p.camera import CameraModel
from crossi2p.geometry import invert_transform, transform_points
from crossi2p.metrics import sample_perturbation
from crossi2p.preprocess import PreprocessConfig, preprocess_frame
from crossi2p.sample import Sample

__all__ = [
    "SampleSource",
    "SimulatorSource",
    "SimCacheSource",
    "KittiSource",
    "NuScenesSource",
    "Rosbag2Source",
    "ConcatSource",
    "SubsetSource",
    "PhotometricAugment",
    "CalibrationDataset",
    "collate_items",
    "seed_worker",
    "save_sample_npz",
    "load_sample_npz",
    "build_sim_cache",
    "sim_cache_folder",
]


class SampleSource(Protocol):
    """Anything indexable that yields Samples with a ground truth."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


# ============================================================================ npz records
def save_sample_npz(path: str | os.PathLike, sample: Sample) -> None:
    """Write a Sample to one ``.npz`` (written to a temporary name, then renamed: never half a file)."""
    path = Path(path)
    cam = sample.camera
    arrays = {
        "image": np.ascontiguousarray(sample.image, dtype=np.uint8),
        "points": np.ascontiguousarray(sample.points, dtype=np.float32),
        "K": cam.K,
        "size": np.array([cam.width, cam.height], np.int64),
        "distortion_model": np.array(cam.distortion_model),
        "distortion": cam.distortion,
        "T_cam_lidar": np.full((4, 4), np.nan) if sample.T_cam_lidar is None else sample.T_cam_lidar,
        "stamp_s": np.array(sample.stamp_s, np.float64),
        "lidar_stamp_s": np.array(np.nan if sample.lidar_stamp_s is None else sample.lidar_stamp_s),
        "frame_id": np.array(sample.frame_id),
        "meta_json": np.array(json.dumps(sample.meta, default=str)),
    }
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_sample_npz(path: str | os.PathLike) -> Sample:
    """Read a Sample written by ``save_sample_npz``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            width, height = (int(v) for v in z["size"])
            camera = CameraModel(z["K"], width, height, str(z["distortion_model"]), z["distortion"])
            T = z["T_cam_lidar"]
            lidar_stamp = float(z["lidar_stamp_s"])
            return Sample(image=z["image"], points=z["points"], camera=camera,
                          T_cam_lidar=None if np.isnan(T).any() else T, stamp_s=float(z["stamp_s"]),
                          lidar_stamp_s=None if np.isnan(lidar_stamp) else lidar_stamp,
                          frame_id=str(z["frame_id"]), meta=json.loads(str(z["meta_json"])))
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable sample record ({exc}); delete it to regenerate") from None


# ============================================================================ simulator
def _simulate_sample(config, seed: int) -> Sample:
    from crossi2p_training.sim import simulate_sample  # the simulator is only imported when used

    return simulate_sample(config, seed)


class _SeededSimFrames:
    """Frames indexed by simulator seed: ``source[i]`` is the frame of seed ``base_seed + i``.
    Subclasses say how a seed's frame is obtained (``_frame``)."""

    base_seed: int
    frames: int

    def seed(self, index: int) -> int:
        """Simulator seed of frame ``index``."""
        return self.base_seed + index

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.frames:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {self.frames} frames")
        sample = self._frame(self.seed(index))
        sample.meta = {**sample.meta, "sim_seed": self.seed(index)}
        return sample

    def _frame(self, seed: int) -> Sample:
        raise NotImplementedError


class SimulatorSource(_SeededSimFrames):
    """Simulated frames on the fly: ``source[i] = simulate_sample(config, base_seed + i)``."""

    def __init__(self, config, base_seed: int, frames: int):
        if frames <= 0:
            raise ValueError(f"SimulatorSource: frames must be positive, got {frames}")
        self.config, self.base_seed, self.frames = config, int(base_seed), int(frames)

    def _frame(self, seed: int) -> Sample:
        return _simulate_sample(self.config, seed)

    def __repr__(self) -> str:
        return f"SimulatorSource(seeds {self.base_seed}..{self.base_seed + self.frames - 1})"


def _simulator_code_digest() -> str:
    """sha256 of the simulator's source files: a cache made by other simulator code is not reused."""
    h = hashlib.sha256()
    for path in sorted((Path(__file__).parent / "sim").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _config_hash(config) -> str:
    d = config.to_dict() if hasattr(config, "to_dict") else config
    key = json.dumps({"config": d, "code": _simulator_code_digest()}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def sim_cache_folder(cache_dir: str | os.PathLike, config) -> Path:
    """``<cache_dir>/sim-<hash of the simulator configuration and of the simulator's code>``."""
    return Path(cache_dir) / f"sim-{_config_hash(config)}"


def _cache_file(folder: Path, seed: int) -> Path:
    return folder / f"seed_{seed:08d}.npz"


def _simulate_to(args) -> int:
    config, seed, path = args
    save_sample_npz(path, _simulate_sample(config, seed))
    return seed


def build_sim_cache(cache_dir: str | os.PathLike, config, seeds: Iterable[int], workers: int = 1,
                    progress: bool = True) -> Path:
    """Simulate the frames of ``seeds`` not yet in the cache (tqdm bar); returns the cache folder.

    Args:
        cache_dir: parent folder; the frames go to ``sim_cache_folder(cache_dir, config)``.
        config: the simulator's ``SimConfig``.
        workers: simulator processes (1: in this process).
    """
    folder = sim_cache_folder(cache_dir, config)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "sim_config.json"
    if not manifest.is_file():
        d = config.to_dict() if hasattr(config, "to_dict") else config
        manifest.write_text(json.dumps({"config": d, "simulator_code_sha256": _simulator_code_digest()},
                                       indent=1, sort_keys=True, default=str))
    todo = [s for s in seeds if not _cache_file(folder, s).is_file()]
    if not todo:
        return folder
    jobs = [(config, s, _cache_file(folder, s)) for s in todo]
    bar = tqdm(total=len(jobs), desc=f"simulating {len(jobs)} frames into {folder}", disable=not progress,
               unit="frame")
    if workers <= 1:
        for job in jobs:
            _simulate_to(job)
            bar.update()
    else:
        import multiprocessing as mp

        # fork (Linux): workers need not re-import __main__; called before any torch work, so no
        # OpenMP pool is inherited. Elsewhere spawn (the caller needs the __main__ guard).
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            for _ in pool.imap_unordered(_simulate_to, jobs):
                bar.update()
    bar.close()
    return folder


class SimCacheSource(_SeededSimFrames):
    """Simulated frames cached on disk: ``source[i]`` is the frame of seed ``base_seed + i``
    (identical to ``SimulatorSource``'s), read from ``.npz``; missing frames are simulated first."""

    def __init__(self, cache_dir: str | os.PathLike, config, base_seed: int, frames: int,
                 workers: int = 1, progress: bool = True, build: bool = True):
        if frames <= 0:
            raise ValueError(f"SimCacheSource: frames must be positive, got {frames}")
        self.base_seed, self.frames = int(base_seed), int(frames)
        seeds = range(self.base_seed, self.base_seed + self.frames)
        if build:
            self.folder = build_sim_cache(cache_dir, config, seeds, workers, progress)
        else:
            self.folder = sim_cache_folder(cache_dir, config)
            missing = [s for s in seeds if not _cache_file(self.folder, s).is_file()]
            if missing:
                raise ValueError(f"{self.folder}: {len(missing)} of {self.frames} frames missing "
                                 f"(first seed {missing[0]}); build the cache first")

    def _frame(self, seed: int) -> Sample:
        return load_sample_npz(_cache_file(self.folder, seed))

    def __repr__(self) -> str:
        return f"SimCacheSource({str(self.folder)!r}, seeds {self.base_seed}..{self.base_seed + self.frames - 1})"


# ============================================================================ recorded data
class ConcatSource:
    """Several sources as one (indices run through them in order)."""

    def __init__(self, sources: Sequence[SampleSource]):
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("ConcatSource: no source given")
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"ConcatSource: index {index} out of range for {len(self)} frames")
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[k][index - int(self.offsets[k])]

    def __repr__(self) -> str:
        return f"ConcatSource({self.sources!r})"


class SubsetSource:
    """At most ``frames`` frames of a source, evenly spaced over it (all of them when ``frames <= 0``)."""

    def __init__(self, source: SampleSource, frames: int):
        self.source = source
        n = len(source)
        self.indices = (np.arange(n) if frames <= 0 or frames >= n
                        else np.unique(np.linspace(0, n - 1, frames).round().astype(int)))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.source[int(self.indices[index])]

    def __repr__(self) -> str:
        return f"SubsetSource({self.source!r}, {len(self)} frames)"


def KittiSource(seq_dirs: Sequence[str | os.PathLike], camera_index: int = 2) -> SampleSource:
    """KITTI folders, read lazily, as one source: Odometry sequences (``.../sequences/NN``) and/or
    raw drives (``<date>_drive_XXXX_sync``, or a date folder holding one), ``crossi2p.datasets.kitti.read_kitti``."""
    from crossi2p.datasets.kitti import read_kitti

    seqs = [read_kitti(d, camera_index) for d in seq_dirs]
    return seqs[0] if len(seqs) == 1 else ConcatSource(seqs)


def NuScenesSource(roots: Sequence[str | os.PathLike], camera_channel: str = "CAM_FRONT") -> SampleSource:
    """nuScenes-format folders (key-frame camera/LiDAR pairs), read lazily, as one source."""
    from crossi2p.datasets.nuscenes import read_nuscenes

    sets = [read_nuscenes(r, camera_channel=camera_channel) for r in roots]
    return sets[0] if len(sets) == 1 else ConcatSource(sets)


class SampleFolderSource:
    """Every sample folder (``calib.yaml`` naming an image and a cloud beside it:
    ``crossi2p.datasets.sample_folder``, the layout of the shared real frames) under the given
    roots, each one frame with its ground truth; read lazily."""

    def __init__(self, roots: Sequence[str | os.PathLike]):
        from crossi2p.datasets.sample_folder import find_sample_folders

        self.folders = [f for root in roots for f in find_sample_folders(root)]
        if not self.folders:
            raise ValueError(f"{', '.join(str(r) for r in roots)}: no sample folder (a folder with a calib.yaml "
                             f"naming image_file and points_file) found")

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> Sample:
        from crossi2p.datasets.sample_folder import load_sample_folder

        return load_sample_folder(self.folders[index])

    def __repr__(self) -> str:
        return f"SampleFolderSource({len(self)} folders)"


class Rosbag2Source:
    """Camera/LiDAR pairs of rosbag2 recordings (images + CameraInfo + PointCloud2 + /tf_static).

    Each LiDAR sweep is paired with the image closest in stamp within ``slop_s``
    (``crossi2p_ros.pairing.StampPairer``, the node's own pairing) and the CameraInfo of that
    image's stamp (else the latest one). The ground truth of each bag comes from its
    ``/tf_static`` (``read_bag_ground_truth``). All pairs are decoded into memory once
    (``max_frames`` per bag, ``0``: all); for long recordings convert them to a KITTI folder.
    """

    def __init__(self, bag_dirs: Sequence[str | os.PathLike], image_topic: str = "/camera/image_raw",
                 info_topic: str = "/camera/camera_info", lidar_topic: str = "/lidar/points",
                 slop_s: float = 0.05, max_frames: int = 0, progress: bool = False):
        from crossi2p.datasets.rosbag2 import (CameraInfoRecord, ImageRecord, PointCloudRecord,
                                               read_bag_ground_truth, read_bag_messages)
        from crossi2p_ros.pairing import PairingConfig, StampPairer

        self.samples: list[Sample] = []
        self.left_out: dict[str, int] = {}
        """What was not made a training pair, counted by reason (shown by ``repr``)."""
        for bag in bag_dirs:
            T_cam_lidar = read_bag_ground_truth(bag)
            infos: dict[float, CameraModel] = {}
            latest: CameraModel | None = None
            pairer = StampPairer(PairingConfig(slop_s=slop_s, queue_size=50))
            count = 0
            records = read_bag_messages(bag, image_topic, info_topic, lidar_topic)
            for rec in tqdm(records, desc=f"reading {Path(bag).name}", disable=not progress, unit="msg"):
                if isinstance(rec, CameraInfoRecord):
                    infos[rec.stamp_s] = latest = rec.camera
                    continue
                if isinstance(rec, ImageRecord):
                    pairs = pairer.add_image(rec.stamp_s, rec)
                elif isinstance(rec, PointCloudRecord):
                    pairs = pairer.add_lidar(rec.stamp_s, rec)
                else:
                    continue
                if max_frames and count >= max_frames:
                    break
                for pair in pairs:
                    camera = infos.get(pair.image_stamp_s, latest)
                    if camera is None:
                        self._leave_out("pairs before any CameraInfo")
                        continue
                    img = pair.image.image
                    if (img.shape[1], img.shape[0]) != (camera.width, camera.height):
                        self._leave_out("pairs whose image size differs from its CameraInfo")
                        continue
                    self.samples.append(Sample(
                        image=img, points=pair.lidar.points[:, :4], camera=camera, T_cam_lidar=T_cam_lidar,
                        stamp_s=pair.image_stamp_s, lidar_stamp_s=pair.lidar_stamp_s,
                        frame_id=f"{Path(bag).name}:{count}",
                        meta={"bag": str(bag), "camera_frame": pair.image.frame_id,
                              "lidar_frame": pair.lidar.frame_id}))
                    count += 1
            else:      # read to the end: the sweeps left are the recording's last, or had no image in time
                self._leave_out(f"sweeps without an image within {slop_s} s",
                                pairer.counters.lidar_unmatched + pairer.sweeps_waiting)
            if count == 0:
                raise ValueError(f"bag {bag}: no camera/LiDAR pair within {slop_s} s with a CameraInfo")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def _leave_out(self, reason: str, count: int = 1) -> None:
        if count:
            self.left_out[reason] = self.left_out.get(reason, 0) + count

    def __repr__(self) -> str:
        left = "; ".join(f"{n} {reason}" for reason, n in self.left_out.items())
        return f"Rosbag2Source({len(self)} pairs" + (f"; left out: {left})" if left else ")")


# ============================================================================ dataset
@dataclass(frozen=True)
class PhotometricAugment:
    """Random photometric changes of the captured image (training only).

    Always: brightness/contrast ``c * (rgb - mean) + mean + b`` (drawn first, as before the other
    options existed). Each further option is off at 0 and draws its values only when on, after
    brightness and contrast and in this order, so switching one on changes neither those draws nor
    the output of a configuration without it (the ``cpu`` config's images are bit for bit the
    same). Applied in camera order, with linear light from the 8-bit values by gamma 2.2:

    1. exposure (``2**ev``) and white balance (red/blue gains) in linear light, vignetting;
    2. blur (Gaussian, captured-image pixels);
    3. sensor noise (Gaussian, 8-bit levels);
    4. brightness/contrast;
    5. rounding to 8 bits, then JPEG compression.
    """

    brightness_max: float = 0.2
    """Largest brightness shift ``|b|`` as a fraction of 255 (uniform in ``[-max, max]``)."""
    contrast_range: tuple[float, float] = (0.8, 1.2)
    """Contrast factor ``c`` drawn uniformly from this range."""
    exposure_ev_max: float = 0.0
    """Exposure change in stops, uniform in ``[-max, max]`` (0: off)."""
    white_balance_max: float = 0.0
    """Red and blue gains relative to green, each ``exp(uniform(-max, max))`` (0: off)."""
    vignetting_max: float = 0.0
    """Strength ``v`` uniform in ``[0, max]``: linear light x ``1 - v * (r / r_corner)**2`` (0: off)."""
    blur_sigma_max_px: float = 0.0
    """Gaussian blur, sigma uniform in ``[0, max]`` pixels of the captured image (0: off)."""
    noise_sigma_max: float = 0.0
    """Gaussian noise, sigma uniform in ``[0, max]`` 8-bit levels (0: off)."""
    jpeg_quality_range: tuple[int, int] = (0, 0)
    """JPEG quality drawn uniformly from this integer range, 1..100 (``(0, 0)``: off)."""

    def __post_init__(self):
        lo, hi = (int(q) for q in self.jpeg_quality_range)
        if (lo, hi) != (0, 0) and not 1 <= lo <= hi <= 100:
            raise ValueError(f"PhotometricAugment: jpeg_quality_range must be (0, 0) or within 1..100 "
                             f"with min <= max, got {self.jpeg_quality_range}")
        for name in ("exposure_ev_max", "white_balance_max", "vignetting_max", "blur_sigma_max_px",
                     "noise_sigma_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"PhotometricAugment: {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.vignetting_max <= 1.0:
            raise ValueError(f"PhotometricAugment: vignetting_max must be in [0, 1], got {self.vignetting_max}")

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b = rng.uniform(-self.brightness_max, self.brightness_max) * 255.0
        c = rng.uniform(*self.contrast_range)
        x = self._camera(rgb, rng)
        mean = x.mean(axis=(0, 1), keepdims=True)
        out = np.clip(c * (x - mean) + mean + b, 0, 255).round().astype(np.uint8)
        if tuple(self.jpeg_quality_range) != (0, 0):
            out = self._jpeg(out, int(rng.integers(self.jpeg_quality_range[0], self.jpeg_quality_range[1] + 1)))
        return out

    def _camera(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Steps 1-3 as float32 8-bit levels (the plain float image when they are all off)."""
        gains = np.ones(3)
        if self.exposure_ev_max > 0:
            gains *= 2.0 ** rng.uniform(-self.exposure_ev_max, self.exposure_ev_max)
        if self.white_balance_max > 0:
            gains[[0, 2]] *= np.exp(rng.uniform(-self.white_balance_max, self.white_balance_max, size=2))
        vignetting = rng.uniform(0.0, self.vignetting_max) if self.vignetting_max > 0 else 0.0
        if not np.all(gains == 1.0):
            # per-channel lookup table: 8-bit -> linear (gamma 2.2) x gain -> 8-bit levels (float)
            levels = (np.arange(256, dtype=np.float64) / 255.0) ** 2.2
            luts = (np.clip(levels[:, None] * gains[None, :], 0.0, 1.0) ** (1 / 2.2) * 255.0).astype(np.float32)
            x = np.stack([luts[rgb[..., k], k] for k in range(3)], axis=-1)
        else:
            x = rgb.astype(np.float32)
        if vignetting > 0:
            h, w = x.shape[:2]
            yy, xx = np.ogrid[:h, :w]
            r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
            # linear-light factor 1 - v r^2, applied to the gamma-encoded levels as its 1/2.2 power
            x *= ((1.0 - vignetting * r2) ** (1 / 2.2)).astype(np.float32)[..., None]
        if self.blur_sigma_max_px > 0:
            sigma = rng.uniform(0.0, self.blur_sigma_max_px)
            if sigma > 0.05:
                x = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
        if self.noise_sigma_max > 0:
            sigma = rng.uniform(0.0, self.noise_sigma_max)
            x = x + np.float32(sigma) * rng.standard_normal(size=x.shape, dtype=np.float32)
        return x

    @staticmethod
    def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("PhotometricAugment: JPEG encoding failed")
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


class CalibrationDataset(torch.utils.data.Dataset):
    """Network inputs + ground truth of a source's frames under a protocol (module docstring).

    Item (a dict of tensors; batch with ``collate_items``):

    - ``image`` (3, H, W) float32, ``points`` (N, 4) float32 (perturbed), ``K`` (3, 3) float32;
    - ``T_cam_lidar`` (4, 4) float32: ground truth for the perturbed points;
    - ``T_prior`` (4, 4) float32 and ``prior_weight`` () float32 (``refine``: the prior and 1;
      ``global``: identity and 0);
    - ``T_pert`` (4, 4) float32 (points' = T_pert @ points); ``index`` () int64;
      ``frame_id`` str.
    """

    def __init__(self, source: SampleSource, preprocess: PreprocessConfig,
                 protocol: Literal["global", "refine", "none"] = "global", seed: int = 0,
                 photometric: PhotometricAugment | None = None):
        if protocol not in ("global", "refine", "none"):
            raise ValueError(f"CalibrationDataset: protocol must be global|refine|none, got {protocol!r}")
        self.source, self.preprocess, self.protocol = source, preprocess, protocol
        self.seed, self.photometric, self.epoch = int(seed), photometric, 0
        self.unreadable: set[int] = set()
        """Frames that could not be read (skipped; ``readable``)."""

    def set_epoch(self, epoch: int) -> None:
        """Draw the next epoch's augmentations (call before creating the DataLoader iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def item_rngs(self, index: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
        """Generators of item ``index`` in the current epoch: point subsample, perturbation,
        photometric (independent streams of ``SeedSequence((seed, epoch, index))``, so switching
        one augmentation on or off does not change the others)."""
        seq = np.random.SeedSequence([self.seed, self.epoch, int(index)])
        return tuple(np.random.default_rng(s) for s in seq.spawn(3))

    def readable(self, index: int) -> tuple[int, Sample]:
        """``(index, sample)`` of frame ``index``, or of the next frame that can be read: a corrupt
        or missing file of one frame (a truncated scan, an unreadable image) is skipped with a
        warning on stderr, once per frame, instead of ending a training run at a random step.

        Raises:
            ValueError: no frame of the source can be read (the first frame's reason).
        """
        first_error = None
        for k in range(len(self.source)):
            i = (index + k) % len(self.source)
            try:
                return i, self.source[i]
            except (ValueError, OSError) as exc:
                first_error = first_error or exc
                if i not in self.unreadable:
                    self.unreadable.add(i)
                    print(f"warning: training frame {i} skipped: {exc}", file=sys.stderr, flush=True)
        raise ValueError(f"no frame of {self.source!r} can be read ({first_error})")

    def __getitem__(self, index: int) -> dict:
        index, sample = self.readable(index)
        if sample.T_cam_lidar is None:
            raise ValueError(f"{self.source!r} frame {index} ({sample.frame_id}): no ground-truth T_cam_lidar")
        rng_points, rng_pert, rng_photo = self.item_rngs(index)
        image = sample.image if self.photometric is None else self.photometric(sample.image, rng_photo)
        frame = preprocess_frame(image, sample.points, sample.camera, self.preprocess, rng_points)
        T_gt = sample.T_cam_lidar
        if self.protocol == "none":
            T_pert, T_prior, prior_weight = np.eye(4), np.eye(4), 0.0
        else:
            pert = sample_perturbation(self.protocol, rng_pert, T_gt)
            T_pert = pert.T_pert
            T_prior = np.eye(4) if pert.T_prior is None else pert.T_prior
            prior_weight = 0.0 if pert.T_prior is None else 1.0
        points = frame.points.copy()
        points[:, :3] = transform_points(T_pert, frame.points[:, :3].astype(np.float64)).astype(np.float32)
        return {
            "image": torch.from_numpy(frame.image),
            "points": torch.from_numpy(points),
            "K": torch.from_numpy(frame.K.astype(np.float32)),
            "T_cam_lidar": torch.from_numpy((T_gt @ invert_transform(T_pert)).astype(np.float32)),
            "T_prior": torch.from_numpy(T_prior.astype(np.float32)),
            "prior_weight": torch.tensor(prior_weight, dtype=torch.float32),
            "T_pert": torch.from_numpy(T_pert.astype(np.float32)),
            "index": torch.tensor(int(index), dtype=torch.int64),
            "frame_id": str(sample.frame_id),
        }


def collate_items(items: list[dict]) -> dict:
    """Stack items into a batch: tensors along a new first axis, strings into lists."""
    out = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch / OpenCV thread per worker, leaving the cores to
    the training process (items are seeded by index, not by worker: the worker count does not
    change the data). A worker ignores SIGINT / SIGTERM: Ctrl-C in a terminal reaches the whole
    process group, and the training process finishes its step and saves before it stops
    (``crossi2p_training.train``); the loader ends its workers."""
    import cv2

    from crossi2p.interrupt import ignore_termination_signals

    ignore_termination_signals()      # a worker's loop runs in its process's main thread
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
