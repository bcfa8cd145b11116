"""Simulator throughput: frame pairs (camera image + LiDAR sweep) per second on one CPU core.

    .venv/bin/python bench/bench_sim.py            # pins itself to one core
    .venv/bin/python bench/bench_sim.py --frames 10 --all-cores

For the KITTI-size default (1242x375 camera with shadows, 64-beam LiDAR at 0.2 deg, 120 m) and
the small training config (416x128, 32 beams at 0.35 deg, 80 m), it prints the median over
several frames of:

- drive frame pair: one camera render + one LiDAR sweep at a stamp of a drive (the street is
  generated once per drive; moving cars are placed per stamp);
- independent sample: ``simulate_sample`` (a new street, BVH, render and sweep per seed), which
  is what training draws.

Target (the project issue): one KITTI-size frame pair in under 0.5 s on one core.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def _pin_to_one_core() -> str:
    # before numpy loads: no BLAS / OpenMP thread pools
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=7, help="frames per measurement (median over them)")
    p.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    args = p.parse_args(argv)
    where = "all cores" if args.all_cores else _pin_to_one_core()

    import numpy as np

    from crossi2p_training.sim import SimConfig, simulate_sample
    from crossi2p_training.sim.drive import DriveSimulator, drive_stamps
    from crossi2p_training.sim.lidar import lidar_rays
    from crossi2p_training.sim.render import camera_rays

    print(f"crossi2p-sim benchmark ({where}, median over {args.frames} frames)")
    print("wall-clock ms (and CPU ms of this process: equal on an idle core, lower when other "
          "processes share it)")
    print(f"{'config':<8} {'what':<20} {'camera ms':>9} {'lidar ms':>9} {'total ms':>9} {'cpu ms':>7} "
          f"{'pairs/s':>8}  points")
    for name in ("kitti", "small"):
        cfg = SimConfig.preset(name)
        camera_rays(cfg.camera.camera_model(), cfg.camera.antialias)  # per-camera ray cache, built once
        lidar_rays(cfg.lidar)
        # drive frame pairs: stamps 0.2 s apart (moving cars move between them)
        lidar_t, _ = drive_stamps(cfg, 2 * args.frames)
        sim = DriveSimulator(cfg, seed=0, duration_s=float(lidar_t[-1] - lidar_t[0]))
        cam_ms, lid_ms, tot_ms, cpu_ms, npts = [], [], [], [], []
        for k in range(0, 2 * args.frames, 2):
            t = float(lidar_t[k])
            t0, c0 = time.perf_counter(), time.process_time()
            sim.geometry_at(t)
            sim.render_camera(t, k)
            t1 = time.perf_counter()
            scan = sim.scan_lidar(t, k)
            t2, c2 = time.perf_counter(), time.process_time()
            cam_ms.append((t1 - t0) * 1e3)
            lid_ms.append((t2 - t1) * 1e3)
            tot_ms.append((t2 - t0) * 1e3)
            cpu_ms.append((c2 - c0) * 1e3)
            npts.append(len(scan.points))
        med = float(np.median(tot_ms))
        print(f"{name:<8} {'drive frame pair':<20} {np.median(cam_ms):9.1f} {np.median(lid_ms):9.1f} "
              f"{med:9.1f} {np.median(cpu_ms):7.1f} {1e3 / med:8.2f}  {int(np.median(npts))}")
        # independent samples (training): everything per seed
        simulate_sample(cfg, 0)
        times, cpu = [], []
        for seed in range(1, args.frames + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            s = simulate_sample(cfg, seed)
            times.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        med = float(np.median(times))
        print(f"{name:<8} {'independent sample':<20} {'':>9} {'':>9} {med:9.1f} {np.median(cpu):7.1f} "
              f"{1e3 / med:8.2f}  {len(s.points)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
