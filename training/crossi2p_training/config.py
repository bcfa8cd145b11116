"""Typed configuration of a training run (``crossi2p-train --config YAML``).

One dataclass per component, a docstring under every field (units in the names), loaded
strictly from YAML by ``crossi2p.config_schema`` (unknown keys and wrong types are errors that
name the key). Experiments and ablations are config overrides only
(``--set loss.pose_loss=false``), never copies of the code. The sections mirror the run:
data -> preprocess -> model -> loss/ablation -> optim -> log/checkpoint.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from crossi2p.calib_io import read_yaml
from crossi2p.config_schema import config_from_dict, config_to_dict, field_docs
from crossi2p.preprocess import PreprocessConfig
from crossi2p_training.losses import LossConfig
from crossi2p_training.model.crossi2p_net import ModelConfig

__all__ = [
    "DataConfig",
    "OptimConfig",
    "LossConfig",
    "AblationConfig",
    "LogConfig",
    "CheckpointConfig",
    "TrainConfig",
    "load_train_config",
    "train_config_from_dict",
    "preset_defaults",
    "parse_overrides",
    "config_help",
    "CONFIG_DIR",
]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""``training/configs``: the shipped YAML configurations (cpu, paper, tiny)."""

SourceType = Literal["sim", "sim_cache", "kitti", "nuscenes", "rosbag2"]


@dataclass
class DataConfig:
    """Where frames come from, how they are augmented, and which frames validate."""

    source: SourceType = "sim_cache"
    """``sim``: the simulator on the fly; ``sim_cache``: simulated once into ``cache_dir`` and
    reused; ``kitti``: KITTI Odometry sequence folders; ``nuscenes``: nuScenes-format folders;
    ``rosbag2``: rosbag2 recordings (pairs decoded into memory)."""
    protocol: Literal["global", "refine"] = "global"
    """Perturbation of the point clouds (``crossi2p.metrics``): ``global`` (no prior, yaw in
    [-2 pi, 2 pi), 10 m) or ``refine`` (prior off by <= 20 deg / 1.5 m)."""
    sim_preset: str = "small"
    """Simulator configuration (``SimConfig.preset``, one of ``crossi2p_training.sim.PRESETS``:
    kitti, small, lidar32, lidar64, lidar128, fisheye, kitti_hdl64, nuscenes_hdl32, ouster_os1_128
    and the variants small_surround, nuscenes_hdl32_surround, small_varied, kitti_hdl64_varied,
    small_surround_varied, nuscenes_hdl32_surround_varied; ``crossi2p-sim --help`` describes them).
    Unused when ``sim_presets`` is given."""
    sim_presets: list[str] = field(default_factory=list)
    """A mix of simulator presets (``sim`` / ``sim_cache``): when not empty, each preset gives
    ``train_frames`` training frames (seeds ``train_seed ..``) and ``val_frames`` validation
    frames (seeds ``val_seed ..``), concatenated in this order; ``sim_preset`` is then unused.
    Presets whose LiDAR writes driver units (0-255, 0-65535) need a ``preprocess.lidar_intensity``
    policy that reads them (``auto``)."""
    sim_preset_frames: list[int] = field(default_factory=list)
    """Training frames of each preset of ``sim_presets`` (same length), instead of ``train_frames``
    for every preset (e.g. many cheap ``small`` frames and fewer costly rig frames)."""
    train_seed: int = 0
    """Simulator seed of training frame 0; frame i has seed ``train_seed + i``."""
    train_frames: int = 2000
    """Number of simulated training frames (the cache size for ``sim_cache``)."""
    val_seed: int = 1_000_000
    """Simulator seed of validation frame 0; the range ``[val_seed, val_seed + val_frames)``
    must not overlap the training seeds (checked)."""
    val_frames: int = 32
    """Validation frames: the simulated count, or at most this many evenly spaced frames of
    ``val_paths`` (0: all of them)."""
    cache_dir: str = "runs/sim_cache"
    """Folder of the simulator cache (a sub-folder per simulator configuration)."""
    cache_workers: int = 1
    """Processes that build the simulator cache (1: the training process itself)."""
    root: str = ""
    """Folder that relative ``train_paths`` / ``val_paths`` are resolved against."""
    train_paths: list[str] = field(default_factory=list)
    """Recorded training data: KITTI sequence folders, nuScenes roots or rosbag2 folders."""
    val_paths: list[str] = field(default_factory=list)
    """Recorded validation data (same kind as ``train_paths``; never the same folders)."""
    photometric: bool = True
    """Random brightness/contrast of the training images (never of validation images)."""
    brightness_max: float = 0.15
    """Largest brightness shift as a fraction of 255."""
    contrast_range: tuple[float, float] = (0.8, 1.2)
    """Range of the random contrast factor."""
    exposure_ev_max: float = 0.0
    """Photometric domain randomisation (each option 0 / off by default; drawn after brightness
    and contrast, so switching them on does not change those draws): exposure change in stops,
    uniform in ``[-max, max]``, applied to linear light (sRGB gamma 2.2)."""
    white_balance_max: float = 0.0
    """Red and blue gains relative to green, each ``exp(uniform(-max, max))`` in linear light
    (0.2: about +-22 %)."""
    vignetting_max: float = 0.0
    """Light fall-off towards the corners: strength ``v`` uniform in ``[0, max]``, linear light
    scaled by ``1 - v * (r / r_corner)**2``."""
    blur_sigma_max_px: float = 0.0
    """Gaussian blur of the captured image (defocus, motion): sigma uniform in ``[0, max]``
    pixels of the captured image (before the resize to the network's input)."""
    noise_sigma_max: float = 0.0
    """Sensor noise: Gaussian, sigma uniform in ``[0, max]`` in 8-bit levels, per pixel and channel."""
    jpeg_quality_range: tuple[int, int] = (0, 0)
    """JPEG compression of the augmented image with a quality drawn uniformly from this range
    (integers in 1..100); ``(0, 0)``: no compression."""
    num_workers: int = 0
    """DataLoader worker processes per training process (0: load in the training process)."""

    def resolve(self, path: str) -> str:
        """``path`` resolved against ``root`` (absolute paths are kept)."""
        return str(Path(self.root) / path) if self.root and not Path(path).is_absolute() else path


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule, batch and length of the run."""

    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    """Optimiser of the network weights."""
    lr: float = 1e-3
    """Peak learning rate (after warm-up)."""
    weight_decay: float = 1e-4
    """Weight decay (decoupled for AdamW)."""
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    """Learning-rate schedule after warm-up: constant, cosine to ``min_lr_ratio * lr``, or
    multiplied by ``step_gamma`` at each of ``step_milestones``."""
    warmup_steps: int = 200
    """Linear warm-up from 0 to ``lr`` over this many steps."""
    min_lr_ratio: float = 0.02
    """Final learning rate of the cosine schedule as a fraction of ``lr``."""
    step_milestones: list[int] = field(default_factory=list)
    """Steps at which the ``step`` schedule multiplies the learning rate by ``step_gamma``."""
    step_gamma: float = 0.1
    """Factor of the ``step`` schedule."""
    restart_steps: list[int] = field(default_factory=list)
    """Cosine with warm restarts (SGDR, Loshchilov & Hutter 2017): steps at which the cosine
    starts a new cycle. Cycle ``i`` (0 = the first, after warm-up) anneals from
    ``lr * restart_decay**i`` to ``min_lr_ratio * lr`` by the next restart (or the end of the
    run). Adding a restart at a run's old last step extends it without changing its first part."""
    restart_decay: float = 0.5
    """Peak of each restarted cosine cycle relative to the one before."""
    batch_size: int = 8
    """Frames per step and process (the global batch is ``batch_size * world size``)."""
    steps: int = 10000
    """Optimiser steps of the run (overridden by ``epochs`` when that is > 0)."""
    epochs: int = 0
    """If > 0: train this many passes over the training frames instead of ``steps``."""
    grad_clip_norm: float = 10.0
    """Clip the global gradient norm of the network to this (0: no clipping)."""


@dataclass
class AblationConfig:
    """Switches of the ablation studies (each ``true`` in the full model)."""

    fine_stage: bool = True
    """The fine (point-to-pixel) stage: ``false`` builds the coarse-only model
    (``model.fine.enabled=false``: one correspondence per coarse match, superpoint centre at its
    superpixel's centre, into the PnP) and drops the fine loss (``loss.fine_weight`` taken as 0)."""
    pose_loss: bool = True
    """The pose loss through the differentiable PnP: ``false`` drops the ``pose`` group from the
    total loss and from GradNorm (matching losses only)."""


@dataclass
class LogConfig:
    """Progress, logs and validation."""

    every_steps: int = 10
    """Write the CSV/TensorBoard scalars every this many steps."""
    tensorboard: bool = True
    """Also write TensorBoard event files (``<out>/tensorboard``)."""
    val_every_steps: int = 500
    """Validate (pose errors on the validation frames) every this many steps (0: only at the end)."""
    val_batch_size: int = 4
    """Frames per validation forward pass."""
    progress: bool = True
    """Show tqdm bars (rank 0 only)."""


@dataclass
class CheckpointConfig:
    """Checkpoints (``<out>/checkpoints/step_<N>.pt`` and ``last.pt``)."""

    every_steps: int = 1000
    """Save every this many steps (and always at the end)."""
    keep_last: int = 3
    """Keep this many periodic checkpoints (older ones are deleted; ``last.pt`` always stays)."""


@dataclass
class TrainConfig:
    """A training run. Sections: data, preprocess, model, loss, ablation, optim, log, checkpoint."""

    name: str = "crossi2p"
    """Run name (default output folder ``runs/<name>``; the exported model's name)."""
    preset: Literal["cpu", "paper", "none"] = "cpu"
    """Starting point of the ``preprocess`` and ``model`` sections: ``cpu`` / ``paper``
    (``PreprocessConfig.cpu()`` + ``ModelConfig.cpu()``, or the ``paper()`` pair), ``none``
    (the dataclass defaults). Keys given in those sections override the preset's values."""
    seed: int = 0
    """Seed of the weights' initialisation and of every augmentation."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: CUDA when available, else CPU. Under torchrun each process takes GPU
    ``LOCAL_RANK``; DDP uses NCCL on GPUs, gloo on CPU."""
    threads: int = 0
    """torch intra-op threads per process (0: cores / processes on this machine)."""
    init_weights: str = ""
    """Fine-tuning: start the network from this checkpoint's weights (``state_dict`` only; the
    optimiser, GradNorm, step and schedule start afresh). Empty: initialise from ``seed``.
    ``--resume`` takes precedence (it restores everything)."""
    data: DataConfig = field(default_factory=DataConfig)
    """1. Data sources and augmentation."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig.cpu)
    """2. Input contract (``crossi2p.preprocess``: image size, point count, ranges,
    normalisation): applied by the data pipeline, recorded in checkpoints and the model card."""
    model: ModelConfig = field(default_factory=ModelConfig.cpu)
    """3. Network (``crossi2p_training.model``)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """4. Loss terms and their weighting (``crossi2p_training.losses``: GradNorm on/off, alpha,
    fixed weights)."""
    ablation: AblationConfig = field(default_factory=AblationConfig)
    """4b. Ablation switches (fine stage, pose loss)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """5. Optimisation."""
    log: LogConfig = field(default_factory=LogConfig)
    """6. Logging and validation."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """7. Checkpoints."""

    def check(self) -> "TrainConfig":
        """Cross-field checks (raise ValueError naming the keys); returns self."""
        d = self.data
        if d.source in ("sim", "sim_cache"):
            if d.sim_preset_frames and len(d.sim_preset_frames) != len(d.sim_presets):
                raise ValueError(f"data.sim_preset_frames: {len(d.sim_preset_frames)} counts for "
                                 f"{len(d.sim_presets)} data.sim_presets")
            train = range(d.train_seed, d.train_seed + max([d.train_frames, *d.sim_preset_frames]))
            val = range(d.val_seed, d.val_seed + d.val_frames)
            if d.train_frames <= 0 or d.val_frames < 0 or any(n <= 0 for n in d.sim_preset_frames):
                raise ValueError("data.train_frames (and data.sim_preset_frames) must be > 0 and data.val_frames >= 0")
            if val and max(train.start, val.start) < min(train.stop, val.stop):
                raise ValueError(f"data: validation seeds {val.start}..{val.stop - 1} overlap the training "
                                 f"seeds {train.start}..{train.stop - 1}")
        else:
            if not d.train_paths:
                raise ValueError(f"data.train_paths: empty, but data.source is {d.source!r}")
            shared = sorted(set(map(d.resolve, d.train_paths)) & set(map(d.resolve, d.val_paths)))
            if shared:
                raise ValueError(f"data: {shared} used for both training and validation")
        p, stride = self.preprocess, self.model.image.coarse_stride
        if p.image_height % stride or p.image_width % stride:
            raise ValueError(f"preprocess: image {p.image_width}x{p.image_height} must be a multiple of "
                             f"model.image.coarse_stride {stride} on both sides")
        if p.num_points < self.model.point.num_fine_points:
            raise ValueError(f"preprocess.num_points {p.num_points} < model.point.num_fine_points "
                             f"{self.model.point.num_fine_points}")
        if self.optim.batch_size <= 0 or (self.optim.steps <= 0 and self.optim.epochs <= 0):
            raise ValueError(f"optim: batch_size and steps (or epochs) must be positive, got batch_size "
                             f"{self.optim.batch_size}, steps {self.optim.steps}, epochs {self.optim.epochs}")
        return self

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/checkpoint-safe)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "TrainConfig":
        """Strict inverse of ``to_dict`` (unknown keys are errors; missing keys from the preset)."""
        return train_config_from_dict(d, where)


def _parse_value(text: str, verbatim: bool = False):
    """A ``--set`` value: parsed as YAML (numbers, booleans, lists), else kept as a string.
    ``1e-4`` is a number too (YAML 1.1 reads it as a string). ``verbatim`` (a key that holds
    strings, ``str`` or ``list[str]``): every scalar is kept as typed, so that
    ``data.train_paths=[00, 08]`` is ``["00", "08"]`` (plain YAML would read 00 as the number 0)."""
    try:
        value = yaml.load(text, Loader=yaml.BaseLoader) if verbatim else yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and not verbatim:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _override_hint(dotted: str):
    """The type of ``TrainConfig`` key ``dotted``, or None when it is not a key (reported later
    by ``_check_override_key``)."""
    cls: Any = TrainConfig
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cls):
            return None
        cls = typing.get_type_hints(cls).get(part)
        if cls is None:
            return None
    return cls


def _holds_strings(hint) -> bool:
    """``str``, ``list[str]`` or ``tuple[str, ...]``."""
    if hint is str:
        return True
    args = typing.get_args(hint)
    return typing.get_origin(hint) in (list, tuple) and bool(args) and args[0] is str


def parse_overrides(items: list[str] | None) -> dict:
    """``["optim.lr=1e-4", "data.train_paths=[a, b]"]`` -> ``{"optim.lr": 0.0001, ...}``.

    Values of keys that hold strings keep their text (``data.train_paths=[00]`` -> ``["00"]``);
    a single value for a list key is an error with the list form to write."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value (e.g. optim.lr=1e-4)")
        hint = _override_hint(key)
        parsed = _parse_value(value, verbatim=_holds_strings(hint))
        if (typing.get_origin(hint) in (list, tuple) and not isinstance(parsed, (list, tuple))
                and not value.strip().startswith("[")):
            raise ValueError(f"--set {key}={value}: expected a list, e.g. {key}=[{value.strip()}]")
        out[key] = parsed
    return out


def _set_dotted(d: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ValueError(f"--set {dotted}: {p!r} is not a section")
        d = nxt
    d[leaf] = value


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, recursively for sections (dicts); lists and values are replaced."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def preset_defaults(preset: str) -> dict:
    """The full config dict a ``preset`` starts from."""
    if preset == "none":
        return config_to_dict(TrainConfig(preset="none", preprocess=PreprocessConfig(), model=ModelConfig()))
    if preset not in ("cpu", "paper"):
        raise ValueError(f"preset: expected one of ['cpu', 'paper', 'none'], got {preset!r}")
    return config_to_dict(TrainConfig(preset=preset, preprocess=getattr(PreprocessConfig, preset)(),
                                      model=getattr(ModelConfig, preset)()))


def train_config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    """Strictly build a TrainConfig from a (partial) dict: the preset's values, overridden by
    ``data`` (unknown keys and wrong types are errors naming the key); checked."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping at the top level")
    merged = _merge(preset_defaults(data.get("preset", "cpu")), data)
    return config_from_dict(TrainConfig, merged, where).check()


def load_train_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Load a YAML training config strictly, apply dotted ``overrides``, check it.

    A name without a folder that is not a file (``cpu``, ``paper.yaml``) is looked up in
    ``training/configs``.
    """
    p = Path(path)
    if not p.is_file() and p.parent == Path("."):
        candidate = CONFIG_DIR / (p.name if p.suffix else p.name + ".yaml")
        if candidate.is_file():
            p = candidate
    if p.is_dir():
        raise ValueError(f"config {p}: is a folder, expected a YAML file (or a name in {CONFIG_DIR})")
    if not p.is_file():
        raise FileNotFoundError(f"config {p}: file not found (nor a name in {CONFIG_DIR})")
    data = read_yaml(p, f"config {p}", "a training config YAML") or {}   # one line, with the YAML's line
    if not isinstance(data, dict):
        raise ValueError(f"config {p}: expected a YAML mapping of config sections, got a {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _check_override_key(dotted)
        _set_dotted(data, dotted, value)
    try:
        return train_config_from_dict(data, str(p))
    except ValueError as exc:   # "<path>.<key>: why" reads like a file name: say whose value it is
        where, sep, why = str(exc).partition(": ")
        key = where[len(str(p)) + 1:] if where.startswith(f"{p}.") else ""
        if not (sep and key):
            raise
        source = f"--set {key}" if key in (overrides or {}) else f"config {p}, key {key}"
        raise ValueError(f"{source}: {why}") from None


def _check_override_key(dotted: str) -> None:
    """ValueError naming ``--set dotted`` when it is not a key of ``TrainConfig`` (a typo would
    otherwise be reported as an unknown key of the config file)."""
    cls: type | None = TrainConfig
    for depth, part in enumerate(dotted.split(".")):
        if cls is None or not dataclasses.is_dataclass(cls):
            raise ValueError(f"--set {dotted}: {'.'.join(dotted.split('.')[:depth])} is not a section")
        hints = typing.get_type_hints(cls)
        if part not in hints:
            close = difflib.get_close_matches(part, list(hints), n=1)
            hint = f"did you mean {'.'.join([*dotted.split('.')[:depth], close[0]])}? " if close else ""
            raise ValueError(f"--set {dotted}: unknown key {part!r} ({hint}known: {sorted(hints)})")
        cls = hints[part] if dataclasses.is_dataclass(hints[part]) else None


def config_help(cls: type = TrainConfig, prefix: str = "") -> str:
    """Every key of the config with its type, its default (what a config file that leaves the key
    out gets; the shipped configs set many) and its docstring (nested sections expanded), for
    ``--help``."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"{prefix}{f.name}: {docs.get(f.name, '')}")
            lines.append(config_help(hints[f.name], prefix + f.name + "."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {prefix}{f.name} ({_type_name(hints[f.name])}, default {default!r}): "
                         f"{docs.get(f.name, '')}")
    return "\n".join(lines)


def _type_name(hint) -> str:
    """A key's type as ``--set`` takes it: ``float``, ``list[str]``, ``one of a, b``."""
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if typing.get_origin(hint) in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"list[{_type_name(args[0])}]" if args else "list"
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))
