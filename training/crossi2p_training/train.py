"""``crossi2p-train``: train CrossI2PNet from a YAML config, on one process or under torchrun.

Examples::

    crossi2p-train --config cpu                       # training/configs/cpu.yaml -> runs/crossi2p_cpu
    crossi2p-train --config paper --set data.root=/data/kitti/sequences --out runs/paper
    crossi2p-train --config cpu --resume runs/crossi2p_cpu/checkpoints/last.pt --steps 6000
    torchrun --nproc_per_node 4 -m crossi2p_training.train --config paper   # DDP (NCCL on GPUs)

What a run writes to ``--out`` (default ``runs/<config name>``):

- ``config.yaml``: the resolved configuration (overrides applied);
- ``train_log.csv`` and ``tensorboard/``: every loss term, the GradNorm weights, the learning
  rate, the batch's pose errors and the gradient norm, every ``log.every_steps`` steps;
- ``val_log.csv``: pose errors on the validation frames (``crossi2p.metrics.summarize_errors``);
- ``checkpoints/step_<N>.pt`` and ``checkpoints/last.pt``: ``torch.save`` of plain state dicts
  (model, optimiser, GradNorm, step, epoch, config dict), loadable with
  ``torch.load(weights_only=True)``;
- ``summary.json``: steps, wall time, seconds per step, final losses, validation errors.

Seeding: the weights from ``seed``; every item's augmentation from ``(seed, epoch, index)``
(``crossi2p_training.data``); the epoch order from ``(seed, epoch)``. Resuming continues with the
same order and augmentations as an uninterrupted run.

Distributed (``torchrun --nproc_per_node K``): one process per device, DistributedDataParallel
(NCCL on GPUs, gloo on CPU, chosen from the device), a DistributedSampler sharding every epoch,
``optim.batch_size`` frames per process. GradNorm measures each loss term's gradient norm on the
last shared layer from the process's own batch; its weights' update is averaged over the
processes (all-reduce), so every replica keeps identical weights and loss weights. Validation
is sharded over the processes and gathered; only rank 0 logs and saves.
"""
from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse when the cores are shared: on 2 cores with one
# other busy process, a cpu-config training step took 15-50 s instead of ~3.3 s. A short spin
# (GNU OpenMP, torch's runtime on Linux) keeps the idle speed (2.3 s/step vs 2.1 s spinning
# fully, 2.55 s with OMP_WAIT_POLICY=PASSIVE) and the shared one (3.5 s). Set before torch loads
# its OpenMP runtime; explicit GOMP_SPINCOUNT / OMP_WAIT_POLICY settings are kept.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

import argparse
import bisect
import csv
import dataclasses
import json
import math
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, DistributedSampler

from crossi2p.cli import ArgumentParser, check_writable
from crossi2p.interrupt import StopRequests, exit_130_on_ctrl_c, interrupt_exit_code, signal_name
from crossi2p.metrics import registration_error, summarize_errors
from crossi2p_training.config import CONFIG_DIR, TrainConfig, config_help, load_train_config, parse_overrides
from crossi2p_training.data import (CalibrationDataset, ConcatSource, KittiSource, NuScenesSource, PhotometricAugment,
                                    Rosbag2Source, SimCacheSource, SimulatorSource, SubsetSource, build_sim_cache,
                                    collate_items, seed_worker)
from crossi2p_training.model.crossi2p_net import CrossI2PNet, read_checkpoint

__all__ = ["main", "train", "load_checkpoint", "model_from_checkpoint", "build_sources", "lr_at",
           "DistContext", "init_distributed"]


# ================================================================================ distributed
@dataclass
class DistContext:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str = ""
    """``nccl``, ``gloo``, or empty for a single process."""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class SetupError(Exception):
    """Bad input found while ``train`` sets up (data, checkpoints, output folder): the CLI prints
    it as one line."""


def init_distributed(device_choice: str = "auto") -> DistContext:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); pick the device
    (GPU ``LOCAL_RANK`` or CPU) and the matching backend (NCCL / gloo); init the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if device_choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' asked for, but torch sees no GPU")
    if use_cuda:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = ""
    if world > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            # generous timeout: the processes wait for each other while a simulator cache is built
            dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(minutes=60),
                                    device_id=device if use_cuda else None)
    return DistContext(rank, world, local_rank, local_world, device, backend)


def _set_threads(threads: int, ctx: DistContext) -> int:
    """``threads`` or (cores / processes on this machine), at least 1."""
    n = threads if threads > 0 else max(1, (os.cpu_count() or 1) // max(1, ctx.local_world_size))
    torch.set_num_threads(n)
    return n


# ================================================================================ data
def _sim_config(cfg: TrainConfig, preset: str | None = None):
    from crossi2p_training.sim import SimConfig

    return SimConfig.preset(preset or cfg.data.sim_preset)


def _sim_presets(cfg: TrainConfig) -> list[tuple[str, int]]:
    """``(preset, training frames)`` of the run: ``data.sim_presets`` (a mix, with
    ``data.sim_preset_frames`` or ``data.train_frames`` each) or ``[(data.sim_preset, train_frames)]``."""
    d = cfg.data
    if not d.sim_presets:
        return [(d.sim_preset, d.train_frames)]
    return list(zip(d.sim_presets, d.sim_preset_frames or [d.train_frames] * len(d.sim_presets)))


def _concat(sources: list):
    return sources[0] if len(sources) == 1 else ConcatSource(sources)


def build_sources(cfg: TrainConfig, progress: bool = True, build_cache: bool = True):
    """``(train source, validation source or None)`` of ``cfg.data``; a mix of simulator presets
    (``data.sim_presets``) is the concatenation of each preset's frames."""
    d = cfg.data
    if d.source == "sim":
        sims = [(_sim_config(cfg, p), n) for p, n in _sim_presets(cfg)]
        return (_concat([SimulatorSource(sim, d.train_seed, n) for sim, n in sims]),
                _concat([SimulatorSource(sim, d.val_seed, d.val_frames) for sim, _ in sims])
                if d.val_frames > 0 else None)
    if d.source == "sim_cache":
        sims = [(_sim_config(cfg, p), n) for p, n in _sim_presets(cfg)]
        train = _concat([SimCacheSource(d.cache_dir, sim, d.train_seed, n, d.cache_workers, progress,
                                        build_cache) for sim, n in sims])
        val = (_concat([SimCacheSource(d.cache_dir, sim, d.val_seed, d.val_frames, d.cache_workers, progress,
                                       build_cache) for sim, _ in sims])
               if d.val_frames > 0 else None)
        return train, val

    def open_paths(paths):
        paths = [d.resolve(p) for p in paths]
        if d.source == "kitti":
            return KittiSource(paths)
        if d.source == "nuscenes":
            return NuScenesSource(paths)
        return Rosbag2Source(paths, progress=progress)

    train = open_paths(d.train_paths)
    val = SubsetSource(open_paths(d.val_paths), d.val_frames) if d.val_paths else None
    return train, val


def _photometric(cfg: TrainConfig) -> PhotometricAugment | None:
    d = cfg.data
    if not d.photometric:
        return None
    return PhotometricAugment(d.brightness_max, tuple(d.contrast_range), exposure_ev_max=d.exposure_ev_max,
                              white_balance_max=d.white_balance_max, vignetting_max=d.vignetting_max,
                              blur_sigma_max_px=d.blur_sigma_max_px, noise_sigma_max=d.noise_sigma_max,
                              jpeg_quality_range=tuple(d.jpeg_quality_range))


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler (also for one process) that can start an epoch part-way (resume)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this epoch's order (this rank's share)."""
        self.start = int(start)

    def __iter__(self):
        return islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(0, super().__len__() - self.start)


# ================================================================================ model, optimiser
def build_model(cfg: TrainConfig) -> CrossI2PNet:
    """The network of ``cfg.model`` with the ablation switches that change the model applied
    (``ablation.fine_stage=false`` -> ``model.fine.enabled=false``; the checkpoint records it)."""
    model_cfg = cfg.model
    if not cfg.ablation.fine_stage:
        model_cfg = dataclasses.replace(model_cfg, fine=dataclasses.replace(model_cfg.fine, enabled=False))
    return CrossI2PNet(model_cfg)


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # no decay on biases and norms
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr)
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, lr=o.lr)
    return torch.optim.SGD(groups, lr=o.lr, momentum=0.9)


def lr_at(step: int, o, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then the schedule."""
    if o.warmup_steps > 0 and step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    if o.schedule == "step":
        return o.lr * o.step_gamma ** sum(step >= m for m in o.step_milestones)
    # cosine, in cycles [warmup, r1), [r1, r2), ... [rn, total) (one cycle without restarts)
    bounds = [o.warmup_steps, *sorted(r for r in o.restart_steps if o.warmup_steps < r < total_steps), total_steps]
    cycle = max(0, bisect.bisect_right(bounds, step, hi=len(bounds) - 1) - 1)
    start, end = bounds[cycle], bounds[cycle + 1]
    peak = o.lr * o.restart_decay ** cycle
    floor = o.lr * o.min_lr_ratio
    progress = min(1.0, (step - start) / max(1, end - start))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


# ================================================================================ checkpoints
def save_checkpoint(path: Path, model: CrossI2PNet, optimizer, loss_state: dict | None, step: int, epoch: int,
                    cfg: TrainConfig, extra: dict | None = None) -> Path:
    """Plain state dicts only (``torch.load(weights_only=True)`` reads it back): the model's
    ``checkpoint()`` (format, model_config, state_dict) plus optimiser, loss (GradNorm) state,
    step, epoch, the training config dict and the torch RNG state."""
    obj = model.checkpoint(
        optimizer=optimizer.state_dict(),
        loss=loss_state,
        step=int(step), epoch=int(epoch), config=cfg.to_dict(),
        torch_rng_state=torch.get_rng_state(), **(extra or {}))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no pickled code is run); a file
    carrying other pickled objects is a ValueError naming it (``model.crossi2p_net.read_checkpoint``)."""
    return read_checkpoint(path, map_location=map_location)


def model_from_checkpoint(ckpt: dict, fine_peak_radius: int | None = None) -> CrossI2PNet:
    """The network of a checkpoint dict (``load_checkpoint``).

    ``fine_peak_radius``: the fine matcher's ``peak_radius`` (an inference setting, no weights)
    instead of the checkpoint's; written into ``ckpt["model_config"]`` so that what reads the
    config afterwards (the model card) records the value the network runs with."""
    if fine_peak_radius is not None:
        if int(fine_peak_radius) < 0:
            raise ValueError(f"fine peak radius: expected >= 0 fine cells, got {fine_peak_radius}")
        fine = ckpt.setdefault("model_config", {}).setdefault("fine", {})
        fine["peak_radius"] = int(fine_peak_radius)
    return CrossI2PNet.from_checkpoint(ckpt)


# ================================================================================ logging
class CsvLog:
    """Rows of scalars to a CSV; the columns are fixed by the first row (or the existing file's
    header when a resumed run appends)."""

    def __init__(self, path: Path):
        self.path, self.fields = path, None
        if path.is_file() and path.stat().st_size:
            with path.open() as f:
                self.fields = next(csv.reader(f), None)

    def drop_after(self, step: int) -> int:
        """Remove the rows whose ``step`` is above ``step`` (a resumed run logs them again);
        returns how many were removed."""
        if self.fields is None or "step" not in self.fields:
            return 0
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if not r["step"] or int(float(r["step"])) <= step]
        if len(kept) < len(rows):
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields)
                w.writeheader()
                w.writerows(kept)
        return len(rows) - len(kept)

    def write(self, row: dict) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _batch_pose_errors(T_est: torch.Tensor, T_gt: torch.Tensor) -> dict:
    errs = [registration_error(a, b) for a, b in zip(T_est.detach().double().cpu().numpy(),
                                                      T_gt.detach().double().cpu().numpy())
            if np.all(np.isfinite(a))]
    if not errs:
        return {}
    return {"pose/rte_m": float(np.mean([e.rte_m for e in errs])),
            "pose/rre_geodesic_deg": float(np.mean([e.rre_geodesic_deg for e in errs])),
            "pose/acc": float(np.mean([e.success for e in errs]))}


# ================================================================================ losses
class LossComputer:
    """Loss of a batch: ``crossi2p_training.losses`` terms, grouped, weighted by GradNorm (or fixed
    weights), with the ablation switches applied; keeps GradNorm identical on every DDP replica."""

    def __init__(self, cfg: TrainConfig, model: CrossI2PNet, device: torch.device):
        from crossi2p_training import losses

        lc = cfg.loss
        if not cfg.ablation.fine_stage:
            lc = dataclasses.replace(lc, fine_weight=0.0)
        self.criterion = losses.CrossI2PLoss(lc, losses.ModelGeometry.from_net(model))
        self.groups = tuple(g for g in losses.LOSS_GROUPS if g != "pose" or cfg.ablation.pose_loss)
        fixed = dict(zip(losses.LOSS_GROUPS, lc.fixed_weights))
        self.gradnorm = losses.GradNorm(self.groups, lc.gradnorm_alpha, lc.gradnorm_lr, lc.gradnorm,
                                        [fixed[g] for g in self.groups], lc.gradnorm_every).to(device)
        self.seed, self.device = cfg.seed, device

    def __call__(self, out, batch: dict, model: CrossI2PNet, step: int, ctx: DistContext):
        """``(total loss, LossOutput)``; GradNorm updates its weights here (training only)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(hash((self.seed, step, ctx.rank)) & 0x7FFFFFFF)  # loss sampling, per step and rank
        targets = self.criterion.targets(batch["points"], batch["T_cam_lidar"], batch["K"],
                                         tuple(batch["image"].shape[-2:]), out)
        lo = self.criterion(out, targets, gen)
        first = bool(torch.isnan(self.gradnorm.initial_losses).any())
        before = self.gradnorm.weights.detach().clone()
        total = self.gradnorm({g: lo.groups[g] for g in self.groups}, model.last_shared_layer())
        if not bool(torch.isfinite(self.gradnorm.weights).all()):  # a non-finite loss: keep the weights
            with torch.no_grad():
                self.gradnorm.weights.copy_(before)
        if ctx.distributed and self.gradnorm.enabled and model.training:
            # Each rank measured its own batch; average so that all replicas keep equal weights.
            with torch.no_grad():
                dist.all_reduce(self.gradnorm.weights.data)
                self.gradnorm.weights.data /= ctx.world_size
                if first:
                    dist.all_reduce(self.gradnorm.initial_losses)
                    self.gradnorm.initial_losses /= ctx.world_size
        return total, lo

    def weights(self) -> dict[str, float]:
        return self.gradnorm.weight_dict()

    def state_dict(self) -> dict:
        opt = getattr(self.gradnorm, "_opt", None)
        return {"gradnorm": self.gradnorm.state_dict(), "gradnorm_optimizer": opt.state_dict() if opt else None}

    def load_state_dict(self, d: dict) -> None:
        self.gradnorm.load_state_dict(d["gradnorm"])
        opt = getattr(self.gradnorm, "_opt", None)
        if opt is not None and d.get("gradnorm_optimizer"):
            opt.load_state_dict(d["gradnorm_optimizer"])


# ================================================================================ training
def _all_reduce_mean(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    if not ctx.distributed or not values:
        return values
    keys = list(values)  # the same keys in the same order on every process (same code path)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _forward(model, batch: dict):
    return model(batch["image"], batch["points"], batch["K"], batch["T_prior"], batch["prior_weight"])


@torch.no_grad()
def validate(model: CrossI2PNet, dataset: CalibrationDataset, cfg: TrainConfig, ctx: DistContext) -> dict:
    """Pose errors on the validation frames (sharded over the processes, summarised on all)."""
    was_training = model.training
    model.eval()
    indices = list(range(ctx.rank, len(dataset), ctx.world_size))
    errors = []
    bs = cfg.log.val_batch_size
    for k in range(0, len(indices), bs):
        batch = _to_device(collate_items([dataset[i] for i in indices[k:k + bs]]), ctx.device)
        out = _forward(model, batch)
        for T_est, T_gt in zip(out.T_cam_lidar.double().cpu().numpy(), batch["T_cam_lidar"].double().cpu().numpy()):
            errors.append(registration_error(T_est, T_gt) if np.all(np.isfinite(T_est)) else
                          registration_error(np.eye(4), T_gt))
    if ctx.distributed:
        gathered = [None] * ctx.world_size
        dist.all_gather_object(gathered, errors)
        errors = [e for part in gathered for e in part]
    model.train(was_training)
    return summarize_errors(errors)


def train(cfg: TrainConfig, out_dir: str | Path, resume: str | Path | None = None,
          ctx: DistContext | None = None, on_end=None, command: str = "") -> dict:
    """Run the training loop; returns the summary (also written to ``<out>/summary.json`` by rank 0).

    ``on_end(model, loss_computer)``, if given, is called on every process after the last step
    (tests compare the replicas with it). ``command``: the command line, kept in the checkpoints
    (``crossi2p-export`` writes it into the model card). SIGINT / SIGTERM (main thread) end the run
    after the step under way, with its checkpoint saved; the summary's ``interrupted`` names the
    signal (None when the run ended).

    Raises:
        SetupError: bad input found before the first step (data, checkpoints, output folder),
            with a one-line reason.
    """
    ctx = ctx or init_distributed(cfg.device)
    out_dir = Path(out_dir)
    threads = _set_threads(cfg.threads, ctx)
    show = cfg.log.progress and ctx.is_main
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    try:  # setting up: bad input here is a SetupError (one line in the CLI), not a traceback
        # 1. data (under DDP every process simulates its share of a missing cache, then all read it)
        if ctx.distributed and cfg.data.source == "sim_cache":
            d = cfg.data
            for preset, n in _sim_presets(cfg):
                seeds = [*range(d.train_seed, d.train_seed + n), *range(d.val_seed, d.val_seed + d.val_frames)]
                build_sim_cache(d.cache_dir, _sim_config(cfg, preset), seeds[ctx.rank::ctx.world_size],
                                d.cache_workers, show)
            dist.barrier()
        train_src, val_src = build_sources(cfg, progress=show)
        train_set = CalibrationDataset(train_src, cfg.preprocess, cfg.data.protocol, cfg.seed, _photometric(cfg))
        val_set = (CalibrationDataset(val_src, cfg.preprocess, cfg.data.protocol, cfg.seed + 1)
                   if val_src is not None else None)
        sampler = ResumableDistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                              seed=cfg.seed, drop_last=True)
        bs = cfg.optim.batch_size
        steps_per_epoch = (len(train_set) // ctx.world_size) // bs
        if steps_per_epoch < 1:
            raise ValueError(f"{len(train_set)} training frames are fewer than one batch of {bs} per process "
                             f"x {ctx.world_size} processes")
        total_steps = cfg.optim.epochs * steps_per_epoch if cfg.optim.epochs > 0 else cfg.optim.steps

        # 2. model, optimiser, losses
        model = build_model(cfg).to(ctx.device)
        optimizer = build_optimizer(cfg, model)
        loss = LossComputer(cfg, model, ctx.device)
        step = 0
        seconds_before: float | None = 0.0  # training time of the steps before this run (resume)
        if resume is not None:
            ckpt = load_checkpoint(resume, map_location=ctx.device)
            own = model.state_dict()
            other = ([k for k, v in ckpt["state_dict"].items() if k not in own or own[k].shape != v.shape]
                     + [k for k in own if k not in ckpt["state_dict"]])
            if other:
                raise ValueError(f"--resume {resume}: its network does not match this configuration "
                                 f"({len(other)} tensors missing or of another shape, e.g. {other[:1] or '-'}): "
                                 f"resume with the config it was trained with (its config.yaml)")
            model.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("loss"):
                loss.load_state_dict(ckpt["loss"])
            step = int(ckpt["step"])
            if total_steps <= step:        # nothing to run: the summary and checkpoint would be rewritten empty
                raise ValueError(f"--resume {resume}: the checkpoint is at step {step} and this run ends at step "
                                 f"{total_steps}: give more steps (--steps N with N > {step}) to continue it")
            if "torch_rng_state" in ckpt:
                torch.set_rng_state(ckpt["torch_rng_state"].cpu())
            seconds_before = ckpt.get("train_seconds")  # absent in checkpoints older than this field
        elif cfg.init_weights:
            # fine-tuning: the weights only; optimiser, GradNorm, step and schedule start afresh.
            # Tensors the checkpoint lacks or holds with another shape (a replaced stage, e.g. the
            # pretrained image backbone) keep what the network was built with, and are listed.
            state = load_checkpoint(cfg.init_weights, map_location=ctx.device)["state_dict"]
            own = model.state_dict()
            fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            stages = sorted({k.split(".")[0] for k in own if k not in fit})
            if len(stages) > 1:   # one replaced stage is fine-tuning; more is another model configuration
                raise ValueError(f"init_weights {cfg.init_weights}: only {len(fit)} of {len(own)} tensors fit this "
                                 f"network (stages {', '.join(stages)} differ): a checkpoint of another model "
                                 f"configuration? (fine-tuning may replace one stage, e.g. the image encoder)")
            model.load_state_dict(fit, strict=False)
            fresh = sorted({k.rsplit(".", 1)[0] for k in own if k not in fit})
            if ctx.is_main and fresh:
                print(f"init_weights: {len(fit)} of {len(own)} tensors from {cfg.init_weights}; kept as built: "
                      f"{', '.join(fresh[:8])}{' ...' if len(fresh) > 8 else ''}", flush=True)
        net = model
        if ctx.distributed:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=not (cfg.ablation.fine_stage and cfg.ablation.pose_loss))

        # 3. logs
        writer = None
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            train_log, val_log = CsvLog(out_dir / "train_log.csv"), CsvLog(out_dir / "val_log.csv")
            if resume is not None:   # rows an interrupted run wrote past its checkpoint are logged again
                train_log.drop_after(step)
                val_log.drop_after(step)
            if cfg.log.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=step if resume else None)
            print(f"crossi2p-train: {cfg.name}: {len(train_set)} training frames ({train_src!r}), "
                  f"{len(val_set) if val_set else 0} validation frames, "
                  f"{model.num_parameters() / 1e6:.2f} M parameters, "
                  f"{ctx.world_size} process(es) on {ctx.device} x {threads} threads, batch {bs}/process, "
                  f"steps {step} -> {total_steps}", flush=True)

        for dataset in (train_set, val_set):   # a source with no readable frame (no calib.txt): one line now
            if dataset:
                dataset.readable(0)
        loader = DataLoader(train_set, batch_size=bs, sampler=sampler, num_workers=cfg.data.num_workers,
                            collate_fn=collate_items, worker_init_fn=seed_worker, drop_last=True,
                            pin_memory=ctx.device.type == "cuda")
    except (ValueError, OSError) as exc:
        raise SetupError(str(exc)) from exc

    # 4. loop
    model.train()
    t_start = time.perf_counter()
    start_step = step
    recent: dict[str, list[float]] = defaultdict(list)
    last_val: dict = {}
    skipped = 0  # steps whose gradients were not finite (not applied)
    warned_coarse = False
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=cfg.name, unit="step", dynamic_ncols=True)
    epoch = step // steps_per_epoch
    skip = step % steps_per_epoch
    t_log = time.perf_counter()
    steps_since_log = 0
    # Ctrl-C / SIGTERM: the step under way finishes, its checkpoint is saved, the summary says so
    # (a second signal interrupts at once)
    stopping = False
    with StopRequests() as stop:
        while step < total_steps:
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            sampler.set_start(skip * bs)
            for batch in loader:
                batch = _to_device(batch, ctx.device)
                for g in optimizer.param_groups:
                    g["lr"] = lr_at(step, cfg.optim, total_steps)
                out = _forward(net, batch)
                total, lo = loss(out, batch, model, step, ctx)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), cfg.optim.grad_clip_norm if cfg.optim.grad_clip_norm > 0 else float("inf"))
                if torch.isfinite(grad_norm):  # all-reduced gradients: every process decides alike
                    optimizer.step()
                else:
                    skipped += 1
                step += 1
                steps_since_log += 1

                if step % cfg.log.every_steps == 0 or step == total_steps:
                    scalars = {f"loss/{k}": float(v.detach()) for k, v in lo.terms.items()}
                    scalars.update({f"loss/group_{k}": float(v.detach()) for k, v in lo.groups.items()})
                    scalars["loss/total"] = float(total.detach())
                    scalars.update({f"stats/{k}": float(v) for k, v in lo.stats.items()})
                    scalars.update(_batch_pose_errors(out.T_cam_lidar, batch["T_cam_lidar"]))
                    scalars["grad_norm"] = float(grad_norm)
                    scalars = _all_reduce_mean(scalars, ctx)
                    scalars["skipped_steps"] = skipped
                    scalars.update({f"gradnorm/w_{k}": v for k, v in loss.weights().items()})
                    scalars["lr"] = optimizer.param_groups[0]["lr"]
                    now = time.perf_counter()
                    scalars["s_per_step"] = (now - t_log) / steps_since_log
                    t_log, steps_since_log = now, 0
                    for k, v in scalars.items():
                        if k.startswith("loss/"):
                            recent[k] = (recent[k] + [v])[-10:]
                    if ctx.is_main and not warned_coarse and scalars.get("stats/coarse_gt", 1.0) == 0.0:
                        warned_coarse = True     # once: a geometry whose superpoints never get a superpixel
                        print(f"warning: step {step}: no in-view superpoint has a ground-truth superpixel, so the "
                              f"coarse loss is 0 (loss.coarse_target {cfg.loss.coarse_target!r}, coarse_min_overlap "
                              f"{cfg.loss.coarse_min_overlap}); if this persists, set --set loss.coarse_target=centre",
                              file=sys.stderr, flush=True)
                    if ctx.is_main:
                        train_log.write({"step": step, "epoch": epoch, **scalars})
                        if writer is not None:
                            for k, v in scalars.items():
                                writer.add_scalar(k, v, step)
                        if bar is not None:
                            bar.set_postfix(loss=f"{scalars['loss/total']:.3f}",
                                            rte=f"{scalars.get('pose/rte_m', float('nan')):.2f}", refresh=False)
                if bar is not None:
                    bar.update()

                do_val = val_set is not None and ((cfg.log.val_every_steps and step % cfg.log.val_every_steps == 0)
                                                  or step == total_steps)
                if do_val:
                    last_val = validate(model, val_set, cfg, ctx)
                    if ctx.is_main:
                        val_log.write({"step": step, **last_val})
                        if writer is not None:
                            for k, v in last_val.items():
                                writer.add_scalar(f"val/{k}", v, step)
                stopping = _stop_requested(stop, ctx)
                if ctx.is_main and (step % cfg.checkpoint.every_steps == 0 or step == total_steps or stopping):
                    ckdir = out_dir / "checkpoints"
                    elapsed = None if seconds_before is None else seconds_before + time.perf_counter() - t_start
                    save_checkpoint(ckdir / f"step_{step:07d}.pt", model, optimizer, loss.state_dict(), step, epoch, cfg,
                                    extra={"train_seconds": elapsed, "command": command})
                    shutil.copyfile(ckdir / f"step_{step:07d}.pt", ckdir / "last.pt.tmp")
                    os.replace(ckdir / "last.pt.tmp", ckdir / "last.pt")
                    periodic = sorted(ckdir.glob("step_*.pt"))
                    for old in periodic[:-cfg.checkpoint.keep_last] if cfg.checkpoint.keep_last > 0 else []:
                        old.unlink()
                if step >= total_steps or stopping:
                    break
            if stopping:
                break
            epoch += 1
            skip = 0
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    if ctx.distributed:
        dist.barrier()
    if on_end is not None:
        on_end(model, loss)

    summary = {
        "name": cfg.name, "steps": step, "steps_this_run": step - start_step, "wall_time_s": wall,
        "wall_time_total_s": None if seconds_before is None else seconds_before + wall,
        "s_per_step": wall / max(1, step - start_step), "world_size": ctx.world_size,
        "frames_seen_this_run": (step - start_step) * bs * ctx.world_size,
        "final_losses": {k.split("/", 1)[1]: float(np.mean(v)) for k, v in recent.items()},
        "loss_weights": loss.weights(), "skipped_steps": skipped, "val": last_val,
        "checkpoint": str(out_dir / "checkpoints" / "last.pt"),
        "interrupted": signal_name(stop.signum) if stopping else None,
    }
    if ctx.is_main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if writer is not None:
            writer.close()
        _print_summary(summary)
    return summary


def _stop_requested(stop: StopRequests, ctx: DistContext) -> bool:
    """Whether to stop after this step: a signal to this process or, under DDP, to any (every
    process must stop at the same step, or the next step's all-reduce would wait for ever)."""
    if not ctx.distributed:
        return stop.requested
    flag = torch.tensor([1.0 if stop.requested else 0.0], device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def _print_summary(s: dict) -> None:
    print(f"\ncrossi2p-train: {s['name']}: {s['steps_this_run']} steps (to step {s['steps']}) in "
          f"{s['wall_time_s']:.1f} s ({s['s_per_step']:.3f} s/step, {s['world_size']} process(es))"
          + (f"; {s['wall_time_total_s'] / 60:.1f} min of training from step 0"
             if s.get("wall_time_total_s") is not None and s["steps"] != s["steps_this_run"] else ""))
    print("  final losses (mean of the last logged steps): " +
          ", ".join(f"{k} {v:.4f}" for k, v in s["final_losses"].items()))
    print("  loss weights: " + ", ".join(f"{k} {v:.3f}" for k, v in s["loss_weights"].items()))
    if s["val"]:
        v = s["val"]
        print(f"  validation ({v['frames']} frames): Acc {v['acc']:.3f}, RTE median {v.get('rte_m_median', 0):.3f} m, "
              f"RRE median {v.get('rre_geodesic_deg_median', 0):.2f} deg (geodesic), "
              f"{v.get('rre_euler_sum_deg_median', 0):.2f} deg (Euler sum)")
    print(f"  checkpoint: {s['checkpoint']}", flush=True)
    if s.get("interrupted"):
        print(f"  stopped early ({s['interrupted']}) after step {s['steps']}: continue it with --resume "
              f"{s['checkpoint']}", flush=True)


# ================================================================================ CLI
def _config_names() -> list[str]:
    """The configs shipped in training/configs (``--config NAME``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="crossi2p-train",
        description=f"Train CrossI2PNet from a YAML config (training/configs: {', '.join(_config_names())}). "
                    "Runs on one process or under torchrun --nproc_per_node K (DDP).",
        epilog="examples:" + __doc__.split("Examples::")[1].split("What a run writes")[0].rstrip() +
               "\n\nconfig keys (--set KEY=VALUE):\n" + config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help=f"YAML file, or a name in training/configs "
                                                   f"({', '.join(_config_names())})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted, e.g. optim.lr=1e-4, loss.gradnorm=false); repeatable")
    p.add_argument("--out", help="output folder (default: runs/<name>; with --resume, the checkpoint's run folder); "
                                 "a folder that holds a run already is refused unless --resume or --overwrite")
    p.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint (model, optimiser, GradNorm, step); "
                                                    "the logs' rows after its step are dropped")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out (its checkpoints, "
                                                            "logs, summary and tensorboard files are deleted)")
    p.add_argument("--steps", type=int, help="total steps of the run (overrides optim.steps and optim.epochs)")
    return p


@exit_130_on_ctrl_c("crossi2p-train", "interrupted (Ctrl-C) before the first step: no checkpoint (frames already "
                                     "simulated into the cache are kept)")
def main(argv: list[str] | None = None) -> int:
    """The CLI. Exit 2: a bad config or override; 1: bad input found while setting up (data,
    checkpoints, output folder, device), one line each; errors during the steps keep their
    traceback (a bug, not an input). Ctrl-C / SIGTERM: during the steps, the step under way is
    finished and saved (``train``), exit 130 / 143; while setting up, one line, exit 130 / 143."""
    args = build_parser().parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        if args.steps is not None and args.steps <= 0:
            raise ValueError(f"--steps: expected > 0 steps, got {args.steps}")
        if args.steps is not None:
            overrides.update({"optim.steps": args.steps, "optim.epochs": 0})
        cfg = load_train_config(args.config, overrides)
    except (ValueError, FileNotFoundError) as exc:
        print(f"crossi2p-train: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else _default_out(cfg, args.resume)
    try:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out}: is a file, expected the run's folder")
        previous = [p for p in RUN_FILES if (out / p).exists()]
        if previous and args.resume is None:
            if not args.overwrite:
                raise ValueError(f"--out {out}: holds a run already ({', '.join(previous)}): continue it with "
                                 f"--resume {out / 'checkpoints' / 'last.pt'}, choose another --out, or replace it "
                                 f"with --overwrite")
            for p in previous:
                shutil.rmtree(out / p) if (out / p).is_dir() else (out / p).unlink()
        check_writable(out / "config.yaml", "--out")
        ctx = init_distributed(cfg.device)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"crossi2p-train: error: {exc}", file=sys.stderr)
        return 1
    if args.resume is not None and not args.out and ctx.is_main:
        print(f"crossi2p-train: resuming into {out} (the checkpoint's run folder)", flush=True)
    command = " ".join(["crossi2p-train", *(sys.argv[1:] if argv is None else argv)])
    try:
        summary = train(cfg, out, args.resume, ctx, command=command)
    except SetupError as exc:
        print(f"crossi2p-train: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()
    if summary.get("interrupted"):
        print(f"crossi2p-train: stopped by {summary['interrupted']} after step {summary['steps']}; saved "
              f"{summary['checkpoint']}", file=sys.stderr)
        return interrupt_exit_code()
    return 0


RUN_FILES = ("checkpoints", "train_log.csv", "val_log.csv", "summary.json", "tensorboard", "config.yaml")
"""What a run writes to its folder (module docstring): a folder holding any of them holds a run."""


def _default_out(cfg: TrainConfig, resume: str | None) -> Path:
    """``--out``'s default: the run folder of the ``--resume`` checkpoint (``<run>/checkpoints/x.pt``),
    else ``runs/<config name>``."""
    if resume is not None and Path(resume).parent.name == "checkpoints":
        return Path(resume).parent.parent
    return Path("runs") / cfg.name


if __name__ == "__main__":
    sys.exit(main())
