"""``crossi2p-sim``: simulate a drive and write it as a KITTI Odometry sequence and/or a rosbag2.

Example::

    crossi2p-sim --seed 7 --frames 20 --kitti out/sim/sequences/00 --bag out/sim/bag
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from crossi2p.cli import ArgumentParser, check_writable
from crossi2p.interrupt import exit_130_on_ctrl_c

from .config import PRESETS, LidarConfig, SimConfig


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="crossi2p-sim",
        description="Simulate a drive through a procedural street (camera + rotating LiDAR with a known "
                    "extrinsic, deterministic by seed) and write it as a KITTI Odometry sequence "
                    "(each sweep paired with the nearest image) and/or a rosbag2 (all frames at their "
                    "own rates, ground truth on /tf_static).")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same drive (default 0)")
    p.add_argument("--frames", type=int, default=20, help="number of LiDAR sweeps (default 20)")
    p.add_argument("--kitti", type=Path, metavar="DIR",
                   help="write a KITTI Odometry sequence folder (e.g. out/sim/sequences/00)")
    p.add_argument("--bag", type=Path, metavar="DIR", help="write a rosbag2 folder (must not exist)")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage (default mcap)")
    p.add_argument("--compressed", action="store_true", help="rosbag2: CompressedImage (JPEG) instead of raw rgb8")
    p.add_argument("--preset", choices=PRESETS, default="kitti", metavar="NAME",
                   help="base configuration, one of %(choices)s. kitti (default, = lidar64): 1242x375 camera "
                        "at 15 Hz, 64 evenly spaced beams at 10 Hz; lidar32 / lidar128: the same camera, 32 / 128 "
                        "beams; small: 416x128, 32 beams, fast (tests, training); fisheye: 640x480 equidistant "
                        "camera. Named after real rigs (the sensor's beam elevation table and intensity scale): "
                        "kitti_hdl64 (Velodyne HDL-64E, +2..-24.9 deg, reflectance 0-1; KITTI rectified "
                        "1242x375 camera at 10 Hz), nuscenes_hdl32 (HDL-32E, +10.67..-30.67 deg at 20 Hz, "
                        "intensity 0-255; 1600x900 camera at 12 Hz), ouster_os1_128 (128 beams over +-22.5 deg, "
                        "16-bit intensity falling off with range; 1920x1200 camera with strong barrel "
                        "distortion). Suffixes: _surround (small_surround, nuscenes_hdl32_surround) mounts the "
                        "camera at any heading of a six-camera ring (0, +-55, +-110, 180 deg), tilted -2..6 deg, "
                        "+-2 deg jitter, LiDAR height +-0.15 m; _varied adds hedges, street clutter and bridges "
                        "to the street. Details: SimConfig.preset, docs/training.md 3.1")
    p.add_argument("--width", type=int, help="image width in pixels (focal length scales with it)")
    p.add_argument("--height", type=int, help="image height in pixels")
    p.add_argument("--lidar-beams", type=int, choices=[32, 64, 128],
                   help="replace the preset's beams by 32, 64 or 128 evenly spaced ones (LidarConfig.preset)")
    p.add_argument("--azimuth-step", type=float, metavar="DEG", help="LiDAR azimuth step in degrees")
    p.add_argument("--max-range", type=float, metavar="M", help="LiDAR maximum range in metres")
    p.add_argument("--camera-rate", type=float, metavar="HZ", help="camera frame rate")
    p.add_argument("--lidar-rate", type=float, metavar="HZ", help="LiDAR sweep rate")
    p.add_argument("--camera-time-offset", type=float, metavar="S",
                   help="stamp of the first camera frame after the first sweep's, seconds (default 0: a camera "
                        "triggered with the LiDAR when the rates allow; e.g. 0.04 with --camera-rate 10: never)")
    p.add_argument("--with-time", action="store_true",
                   help="per-point firing time (bag: PointCloud2 field t; KITTI .bin stays x,y,z,i)")
    p.add_argument("--motion-during-sweep", action="store_true",
                   help="fire each LiDAR column from the vehicle pose at its own time (skewed sweeps)")
    p.add_argument("--no-shadows", action="store_true", help="skip shadow rays (faster)")
    p.add_argument("--antialias", action="store_true", help="5 rays per pixel (slower)")
    p.add_argument("--rig-jitter-deg", type=float, metavar="DEG",
                   help="per-seed random camera rotation about each axis, +/- DEG (default 1)")
    p.add_argument("--rig-jitter-m", type=float, metavar="M",
                   help="per-seed random camera offset along each axis, +/- M (default 0.05)")
    p.add_argument("--start-time", type=float, metavar="S", help="stamp of the first sweep in seconds (default 0)")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The ``SimConfig`` the command line describes (preset + overrides)."""
    cfg = SimConfig.preset(args.preset)
    cam, lidar, rig, drive = cfg.camera, cfg.lidar, cfg.rig, cfg.drive
    if args.width or args.height:
        w = args.width or int(round(args.height * cam.width / cam.height))
        h = args.height or int(round(args.width * cam.height / cam.width))
        cam = cam.scaled_to(w, h)
    if args.lidar_beams:
        preset = LidarConfig.preset(args.lidar_beams)
        lidar = dataclasses.replace(lidar, beams=preset.beams, elevation_max_deg=preset.elevation_max_deg,
                                    elevation_min_deg=preset.elevation_min_deg, elevation_table_deg=())
    changes = {"azimuth_step_deg": args.azimuth_step, "max_range_m": args.max_range, "rate_hz": args.lidar_rate}
    lidar = dataclasses.replace(lidar, **{k: v for k, v in changes.items() if v is not None})
    if args.with_time:
        lidar = dataclasses.replace(lidar, with_time=True)
    if args.motion_during_sweep:
        lidar = dataclasses.replace(lidar, motion_during_sweep=True)
    if args.camera_rate is not None:
        cam = dataclasses.replace(cam, rate_hz=args.camera_rate)
    if args.camera_time_offset is not None:
        cam = dataclasses.replace(cam, time_offset_s=args.camera_time_offset)
    if args.no_shadows:
        cam = dataclasses.replace(cam, shadows=False)
    if args.antialias:
        cam = dataclasses.replace(cam, antialias=True)
    if args.rig_jitter_deg is not None:
        rig = dataclasses.replace(rig, rotation_jitter_deg=args.rig_jitter_deg)
    if args.rig_jitter_m is not None:
        rig = dataclasses.replace(rig, translation_jitter_m=args.rig_jitter_m)
    if args.start_time is not None:
        drive = dataclasses.replace(drive, start_time_s=args.start_time)
    return cfg.replace(camera=cam, lidar=lidar, rig=rig, drive=drive)


@exit_130_on_ctrl_c("crossi2p-sim", "interrupted (Ctrl-C): the drive written so far is incomplete; write it again")
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    if args.camera_time_offset is not None and not 0 <= args.camera_time_offset < 1:
        parser.error(f"--camera-time-offset: expected 0 <= S < 1 seconds, got {args.camera_time_offset}")
    if args.seed < 0:
        parser.error(f"--seed: expected an integer >= 0, got {args.seed}")
    for flag, value in (("--width", args.width), ("--height", args.height), ("--azimuth-step", args.azimuth_step),
                        ("--max-range", args.max_range), ("--camera-rate", args.camera_rate),
                        ("--lidar-rate", args.lidar_rate)):
        if value is not None and not value > 0:
            parser.error(f"{flag}: expected a value > 0, got {value}")
    if args.bag is not None and args.bag.exists():
        parser.error(f"--bag {args.bag}: already exists (rosbag2 writes a new folder)")
    if args.kitti is not None and args.kitti.exists() and (not args.kitti.is_dir() or any(args.kitti.iterdir())):
        parser.error(f"--kitti {args.kitti}: already exists and is not an empty folder (a new sequence would mix "
                     f"with its frames; give a new folder)")
    try:
        for flag, path in (("--kitti", args.kitti), ("--bag", args.bag)):
            if path is not None:   # the folder (made when written) can be created, or written into
                check_writable(path / "calib.yaml" if path.is_dir() else path, flag)
    except ValueError as exc:
        parser.error(str(exc))
    if args.kitti is None and args.bag is None:
        print("crossi2p-sim: neither --kitti nor --bag given: simulating only (nothing is written)", file=sys.stderr)
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))

    from .drive import simulate_drive

    t0 = time.perf_counter()
    drive = simulate_drive(config, args.seed, args.frames, progress=True)
    sim_s = time.perf_counter() - t0
    written = []
    if args.kitti is not None:
        from crossi2p.datasets.kitti import write_kitti_sequence

        n = write_kitti_sequence(args.kitti, drive.paired_samples(), drive.camera, drive.T_cam_lidar,
                                 metadata={"source": "crossi2p-sim", "seed": args.seed, "preset": args.preset,
                                           # crossi2p-calibrate --deskew auto reads it (skewed: as real KITTI raw)
                                           "lidar_sweeps": "skewed" if config.lidar.motion_during_sweep
                                           else "at_stamp"},
                                 progress=True)
        written.append(f"KITTI sequence {args.kitti} ({n} frames)")
    if args.bag is not None:
        from crossi2p.datasets.rosbag2 import write_drive_bag

        write_drive_bag(args.bag, drive.camera_frames, drive.lidar_sweeps, drive.camera, drive.T_cam_lidar,
                        storage=args.storage, compressed=args.compressed, progress=True)
        written.append(f"rosbag2 {args.bag} ({args.storage}{', compressed' if args.compressed else ''})")
    print(summary(drive, args.seed, sim_s, written))
    return 0


def summary(drive, seed: int, sim_s: float, written: list[str]) -> str:
    """A few lines: what was simulated, how fast, where it went."""
    cam, T = drive.camera, drive.T_cam_lidar
    n_pts = [len(p) for _, p in drive.lidar_sweeps]
    cam_t = [t for t, _ in drive.camera_frames]
    lid_t = [t for t, _ in drive.lidar_sweeps]
    pairs = drive.paired_samples()
    dt = [abs(s.stamp_s - s.lidar_stamp_s) for s in pairs]
    lines = [
        f"crossi2p-sim seed {seed}: {len(drive.lidar_sweeps)} LiDAR sweeps ({lid_t[0]:.3f}..{lid_t[-1]:.3f} s), "
        f"{len(drive.camera_frames)} camera frames ({cam_t[0]:.3f}..{cam_t[-1]:.3f} s) in {sim_s:.1f} s",
        f"  camera {cam.width}x{cam.height} fx={cam.fx:.1f} {cam.distortion_model}; "
        f"points per sweep: median {int(np.median(n_pts))}, min {min(n_pts)}, max {max(n_pts)}",
        f"  sweep-image pairing: max |dt| {max(dt) * 1000:.1f} ms",
        f"  T_cam_lidar translation [{T[0, 3]:+.3f}, {T[1, 3]:+.3f}, {T[2, 3]:+.3f}] m",
    ]
    lines += [f"  wrote {w}" for w in written] or ["  wrote nothing (no --kitti / --bag)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
