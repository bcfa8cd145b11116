"""``crossi2p-overlay``: PNG of LiDAR points projected on an image with a given extrinsic.

Examples::

    # a frame with its calibration YAML (crossi2p schema; ../shared/data/real/*/calib.yaml)
    crossi2p-overlay --image 0.png --points 0.pcd --calib calib.yaml --out overlay.png
    # frame 5 of a KITTI Odometry sequence folder, with its own calibration
    crossi2p-overlay --kitti sequences/00 --frame 5 --out overlay.png
    # the same frame with another extrinsic (e.g. an estimate saved by the node)
    crossi2p-overlay --kitti sequences/00 --frame 5 --extrinsic estimate.yaml --out overlay.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from ..calib_io import load_calibration_input
from ..datasets.kitti import read_kitti_sequence, read_rgb, read_velodyne_bin
from ..datasets.pcd import read_pcd_xyzi
from ..overlay import draw_projected_points, project_lidar_points
from . import ArgumentParser, check_writable


def read_points(path: Path) -> np.ndarray:
    """KITTI ``.bin`` (float32 x,y,z,i) or ``.pcd`` -> (N, 4) float32."""
    if path.suffix == ".bin":
        return read_velodyne_bin(path)
    if path.suffix == ".pcd":
        return read_pcd_xyzi(path)
    raise ValueError(f"{path}: expected a KITTI .bin or a .pcd point cloud")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="crossi2p-overlay", description=__doc__.split("\n\n")[0],
        epilog="Points are coloured by depth (near red, far blue). Exit code 1 with a one-line reason on bad input.")
    src = parser.add_argument_group("input (either --image/--points/--calib or --kitti/--frame)")
    src.add_argument("--image", type=Path, help="image file (PNG/JPEG)")
    src.add_argument("--points", type=Path, help="point cloud: KITTI .bin or .pcd, LiDAR frame")
    src.add_argument("--calib", type=Path, help="calibration YAML (camera intrinsics + T_cam_lidar)")
    src.add_argument("--kitti", type=Path, help="KITTI Odometry sequence folder (sequences/NN)")
    src.add_argument("--frame", type=int, default=0,
                     help="frame number within --kitti, as in its file names (5: 000005.png + 000005.bin; default 0)")
    parser.add_argument("--extrinsic", type=Path,
                        help="calibration YAML whose T_cam_lidar replaces the input's (e.g. an estimate)")
    parser.add_argument("--out", type=Path, default=Path("overlay.png"), help="output PNG (default overlay.png)")
    parser.add_argument("--max-depth-m", type=float, default=60.0,
                        help="depth of the far end of the colour map, metres (default %(default)s)")
    parser.add_argument("--radius-px", type=int, default=1, help="point radius in pixels (0: single pixels)")
    return parser


def _frame_index(frame_ids: list[str], frame: int, folder: Path) -> int:
    """Index into ``frame_ids`` (the sequence's frames that have both an image and a scan, file
    names without extension) of frame number ``frame``; ValueError naming the frames there are
    when it has none (a gap in the sequence, or past its end)."""
    numbers = [int(f) if f.isdigit() else None for f in frame_ids]
    if frame in numbers:
        return numbers.index(frame)
    there = [n for n in numbers if n is not None]
    if not there:
        span = "none numbered"
    elif len(there) == there[-1] - there[0] + 1:
        span = f"{there[0]} to {there[-1]}"
    else:
        span = f"{there[0]} to {there[-1]}, {len(there)} of them"
    raise ValueError(f"--frame {frame}: {folder} has no frame {frame} with both an image and a scan "
                     f"(frames {span})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise ValueError(f"--out {args.out}: expected a .png (or .jpg) file path")
        check_writable(args.out, "--out")
        if args.frame < 0:
            raise ValueError(f"--frame: expected an index >= 0, got {args.frame}")
        if args.radius_px < 0:
            raise ValueError(f"--radius-px: expected >= 0 pixels, got {args.radius_px}")
        if not args.max_depth_m > 0:
            raise ValueError(f"--max-depth-m: expected a depth > 0 m, got {args.max_depth_m}")
        mixed = [f"--{n}" for n in ("image", "points", "calib") if getattr(args, n) is not None]
        if args.kitti is not None and mixed:
            raise ValueError(f"{' '.join(mixed)} with --kitti: give either --image/--points/--calib or "
                             f"--kitti/--frame, not both")
        for flag in ("image", "points", "calib", "extrinsic"):
            path = getattr(args, flag)
            if path is not None and not path.is_file():
                why = "is a folder" if path.is_dir() else "not a regular file" if path.exists() else "not found"
                raise ValueError(f"--{flag} {path}: {why}, expected a file")
        if args.kitti is not None and not args.kitti.is_dir():
            raise ValueError(f"--kitti {args.kitti}: {'not found' if not args.kitti.exists() else 'not a folder'}, "
                             f"expected a KITTI Odometry sequence folder (image_2/, velodyne/, calib.txt)")
        if args.kitti is not None:
            sequence = read_kitti_sequence(args.kitti)
            sample = sequence[_frame_index(sequence.frame_ids, args.frame, args.kitti)]
            image, points, camera, T = sample.image, sample.points, sample.camera, sample.T_cam_lidar
        else:
            missing = [n for n in ("image", "points", "calib") if getattr(args, n) is None]
            if missing:
                raise ValueError(f"missing --{', --'.join(missing)} (or use --kitti DIR --frame I)")
            calib = load_calibration_input(args.calib, "--calib")
            image, points, camera, T = read_rgb(args.image), read_points(args.points), calib.camera, calib.T_cam_lidar
            if (image.shape[1], image.shape[0]) != (camera.width, camera.height):
                raise ValueError(f"{args.image}: {image.shape[1]}x{image.shape[0]} but {args.calib} describes a "
                                 f"{camera.width}x{camera.height} camera")
        if args.extrinsic is not None:          # its T_cam_lidar only: the camera is the input's
            T = load_calibration_input(args.extrinsic, "--extrinsic", require_camera=False).T_cam_lidar
        if not len(points):
            raise ValueError(f"{args.points or args.kitti}: the point cloud is empty (nothing to draw)")
        if T is None:
            raise ValueError("no extrinsic: the input has no T_cam_lidar and --extrinsic was not given")
        drawn = draw_projected_points(image, points, camera, T, args.max_depth_m, args.radius_px)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.out), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
            raise ValueError(f"{args.out}: could not write the PNG")
    except (ValueError, FileNotFoundError, IndexError, OSError) as exc:
        print(f"crossi2p-overlay: error: {exc}", file=sys.stderr)
        return 1
    in_view = len(project_lidar_points(points, camera, T)[1])
    print(f"crossi2p-overlay: {in_view} of {len(points)} points in view -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
