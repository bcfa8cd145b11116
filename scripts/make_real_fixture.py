#!/usr/bin/env python3
"""Write the committed real recording (data/real/tri_dgp_scene_02/) from the shared TRI DGP sample.

    .venv/bin/python scripts/make_real_fixture.py [--source DIR] [--out DIR] [--offset-deg D --offset-m M]

Input: ``--source`` (default ``../shared/data/real/tri_dgp_scene_02``), the 18 sample folders
``f{0,1,2}_CAMERA_XX`` of TRI-ML/dgp ``tests/data/dgp/test_scene/scene_02`` (MIT), each with the
camera's JPEG, the sweep's float32 ``x, y, z, intensity`` ``.bin`` and ``calib.yaml`` (``K``, size,
``T_cam_lidar_static`` in its metadata, timestamps).

Output (``--out``, default ``data/real/tri_dgp_scene_02``; its ``bag/`` is replaced):

- ``bag/``: a rosbag2 (MCAP) written by ``crossi2p.datasets.rosbag2.write_rig_bag``:
  per camera ``/camera_XX/image_raw/compressed`` (the original JPEG bytes, not re-encoded) and
  ``/camera_XX/camera_info``; ``/lidar/points`` (PointCloud2 x, y, z, intensity, the 3 sweeps);
  ``/tf_static``: per camera parent ``lidar`` -> child ``camera_XX_optical`` carrying
  ``inv(T_cam_lidar_static)`` (the rig calibration, not the per-sample motion-compensated one).
- ``prior_camera_XX.yaml``: per camera a calibration YAML (``crossi2p.calib_io``) whose
  ``T_cam_lidar`` is the ground truth moved by a fixed, stated offset (``--offset-deg`` about a
  fixed axis, ``--offset-m`` along a fixed direction, both in the camera frame): the prior the
  demo refines from. Its metadata states the offset; its bounds are the prior's default.
- ``rig_prior_camera_XX.yaml``: the priors of the rig (``crossi2p-calibrate --rig-camera``): every
  camera's ground truth moved by one offset of the LiDAR (the same ``--offset-deg`` / ``--offset-m``,
  axis and direction, in the LiDAR frame: ``T_prior = T_true @ D``), so the priors agree on where
  the cameras sit relative to each other and share one error in where the LiDAR is.
- ``dgp/``: the original DGP calibration and scene JSON (provenance; not read by the product).

Stamps: DGP timestamps (the file names) are stored as integer "microseconds"; read so they
decode to the year 2464 and do not fit a ROS ``builtin_interfaces/Time`` (int32 seconds). They
are written here read as 100 ns ticks (``stamp_s = value * 1e-7``: 2019-06-27, LiDAR sweeps
0.1 s apart, each camera ~9 ms before its sweep); this reading is not documented by DGP.
Deterministic: the same input gives the same bytes.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CAMERAS = ("CAMERA_01", "CAMERA_05", "CAMERA_06", "CAMERA_07", "CAMERA_08", "CAMERA_09")
SWEEPS = (0, 1, 2)
TICK_S = 1e-7
"""Seconds per unit of the DGP timestamps as written here (module docstring)."""
OFFSET_AXIS = np.array([1.0, -2.0, 1.0]) / np.sqrt(6.0)
"""Rotation axis of the prior offset, camera optical frame (unit; pitch and yaw mixed with roll)."""
OFFSET_DIRECTION = np.array([2.0, -1.0, 2.0]) / 3.0
"""Direction of the prior's translation offset, camera optical frame (unit)."""


def prior_offset(offset_deg: float, offset_m: float) -> np.ndarray:
    """(4, 4) ``T_prior_true`` in the camera optical frame: the prior is ``T_prior_true @ T_cam_lidar_true``
    (a rotation of ``offset_deg`` about ``OFFSET_AXIS`` and a translation of ``offset_m`` along
    ``OFFSET_DIRECTION``), so the prior's RRE is ``offset_deg`` and its RTE about ``offset_m``."""
    from scipy.spatial.transform import Rotation

    D = np.eye(4)
    D[:3, :3] = Rotation.from_rotvec(np.radians(offset_deg) * OFFSET_AXIS).as_matrix()
    D[:3, 3] = offset_m * OFFSET_DIRECTION
    return D


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make_real_fixture.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "real" / "tri_dgp_scene_02",
                   help="the shared scene_02 sample folders (default %(default)s)")
    p.add_argument("--out", type=Path, default=REPO / "data" / "real" / "tri_dgp_scene_02",
                   help="output folder (default %(default)s)")
    p.add_argument("--offset-deg", type=float, default=3.0, help="prior's rotation offset, deg (default %(default)s)")
    p.add_argument("--offset-m", type=float, default=0.2, help="prior's translation offset, m (default %(default)s)")
    return p


def _read_folder(folder: Path) -> dict:
    from crossi2p.calib_io import load_calibration_yaml

    calib = load_calibration_yaml(folder / "calib.yaml")
    meta = calib.metadata
    for key in ("image_file", "points_file", "camera_timestamp_us", "lidar_timestamp_us", "T_cam_lidar_static"):
        if key not in meta:
            raise ValueError(f"{folder / 'calib.yaml'}: missing key {key!r}")
    return {"calib": calib, "jpeg": (folder / meta["image_file"]).read_bytes(),
            "points": np.fromfile(folder / meta["points_file"], dtype="<f4").reshape(-1, 4),
            "t_cam_s": int(meta["camera_timestamp_us"]) * TICK_S, "t_lidar_s": int(meta["lidar_timestamp_us"]) * TICK_S,
            "T_static": np.asarray(meta["T_cam_lidar_static"], dtype=np.float64)}


def make_fixture(source: Path, out: Path, offset_deg: float, offset_m: float) -> Path:
    """Write ``out/bag``, ``out/prior_camera_XX.yaml``, ``out/rig_prior_camera_XX.yaml`` and ``out/dgp/``
    (module docstring); returns the bag."""
    from crossi2p.calib_io import save_calibration_yaml
    from crossi2p.datasets.rosbag2 import RigCamera, write_rig_bag

    if not source.is_dir():
        raise ValueError(f"--source {source}: not found (expected the shared tri_dgp_scene_02 folders)")
    samples = {(k, cam): _read_folder(source / f"f{k}_{cam}") for k in SWEEPS for cam in CAMERAS
               if (source / f"f{k}_{cam}").is_dir()}
    missing = [f"f{k}_{cam}" for k in SWEEPS for cam in CAMERAS if (k, cam) not in samples]
    if missing:
        raise ValueError(f"--source {source}: missing sample folders {missing}")
    sweeps = []
    for k in SWEEPS:
        first = samples[(k, CAMERAS[0])]
        for cam in CAMERAS[1:]:  # every camera of a sample names the same sweep
            if samples[(k, cam)]["t_lidar_s"] != first["t_lidar_s"]:
                raise ValueError(f"f{k}_{cam}: LiDAR timestamp differs from f{k}_{CAMERAS[0]}'s")
        sweeps.append((first["t_lidar_s"], first["points"]))
    rig = []
    for cam in CAMERAS:
        s0 = samples[(0, cam)]
        for k in SWEEPS[1:]:
            if not np.allclose(samples[(k, cam)]["T_static"], s0["T_static"], atol=1e-9):
                raise ValueError(f"f{k}_{cam}: T_cam_lidar_static differs from f0_{cam}'s")
        rig.append(RigCamera(name=cam.lower(), camera=s0["calib"].camera, T_cam_lidar=s0["T_static"],
                             frames=[(samples[(k, cam)]["t_cam_s"], samples[(k, cam)]["jpeg"]) for k in SWEEPS]))
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "bag"
    if bag.exists():
        shutil.rmtree(bag)
    write_rig_bag(bag, rig, sweeps, lidar_topic="/lidar/points", lidar_frame="lidar")
    D = prior_offset(offset_deg, offset_m)
    for c in rig:
        save_calibration_yaml(out / f"prior_{c.name}.yaml", D @ c.T_cam_lidar, c.camera, lidar_frame="lidar",
                              camera_frame=c.optical_frame,
                              metadata={"prior_of": "the rig calibration on the bag's /tf_static "
                                                    f"(lidar -> {c.optical_frame})",
                                        "offset_deg": offset_deg, "offset_m": offset_m,
                                        "offset": f"T_prior = D @ T_true, D a rotation of {offset_deg:g} deg about "
                                                  f"{np.round(OFFSET_AXIS, 4).tolist()} and a translation of "
                                                  f"{offset_m:g} m along {np.round(OFFSET_DIRECTION, 4).tolist()} "
                                                  "(camera optical frame)",
                                        "written_by": "scripts/make_real_fixture.py"})
        save_calibration_yaml(out / f"rig_prior_{c.name}.yaml", c.T_cam_lidar @ D, c.camera, lidar_frame="lidar",
                              camera_frame=c.optical_frame,
                              metadata={"prior_of": "the rig calibration on the bag's /tf_static "
                                                    f"(lidar -> {c.optical_frame}), the LiDAR's pose off alike for "
                                                    "every camera (crossi2p-calibrate --rig-camera)",
                                        "offset_deg": offset_deg, "offset_m": offset_m,
                                        "offset": f"T_prior = T_true @ D, D a rotation of {offset_deg:g} deg about "
                                                  f"{np.round(OFFSET_AXIS, 4).tolist()} and a translation of "
                                                  f"{offset_m:g} m along {np.round(OFFSET_DIRECTION, 4).tolist()} "
                                                  "(LiDAR frame)",
                                        "written_by": "scripts/make_real_fixture.py"})
    dgp = out / "dgp"
    dgp.mkdir(exist_ok=True)
    for f in sorted((source / f"f0_{CAMERAS[0]}").glob("scene_*.json")):
        shutil.copyfile(f, dgp / f.name)
    for cam in CAMERAS:  # the calibration JSON (same file in every folder of the scene)
        for f in sorted((source / f"f0_{cam}").glob("*.json")):
            if not f.name.startswith("scene_"):
                shutil.copyfile(f, dgp / f.name)
    return bag


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        bag = make_fixture(args.source, args.out, args.offset_deg, args.offset_m)
    except (ValueError, OSError) as exc:
        print(f"make_real_fixture.py: error: {exc}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in bag.rglob("*") if f.is_file())
    print(f"wrote {bag} ({size / 1e6:.1f} MB) and the priors in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
