"""Calibration files: the project's YAML record, URDF snippet, KITTI and nuScenes calibration.

The calibration YAML (``save_calibration_yaml`` / ``load_calibration_yaml``)
-----------------------------------------------------------------------------
One flat mapping, a superset of the normalised records in ``shared/data/real/*/calib.yaml``
(which load as they are: no ``version`` and no ``frames`` is fine)::

    version: 1                    # schema version (absent: the normalised record, read as 1)
    T_cam_lidar:                  # 4x4, maps LiDAR points into the camera optical frame:
      - [r00, r01, r02, tx]       #   p_cam = T_cam_lidar @ p_lidar
      - [...]
      - [0, 0, 0, 1]
    translation: [tx, ty, tz]     # of T_cam_lidar, metres (informative; checked against the matrix)
    quaternion_xyzw: [x, y, z, w] # of T_cam_lidar (informative; checked against the matrix)
    frames:
      parent: lidar               # LiDAR frame id = the tf parent
      child: camera_optical       # camera optical frame id (z forward, x right, y down) = tf child;
                                  # the tf transform parent -> child is inv(T_cam_lidar)
    width: 1224                   # camera image size, pixels
    height: 370
    K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
    distortion_model: plumb_bob   # none | plumb_bob | rational_polynomial | equidistant
                                  # (also read: radtan -> plumb_bob, fisheye/kannala_brandt
                                  #  -> equidistant; text after the first word is ignored)
    distortion: [k1, k2, p1, p2, k3]   # OpenCV order
    covariance: [[...6x6...]]     # optional: of the extrinsic, order (x, y, z, rot_x, rot_y, rot_z)
                                  # as geometry_msgs/PoseWithCovariance, units m^2 / rad^2
    prior_max_rotation_deg: 10    # optional: used as a prior (crossi2p.prior), the true extrinsic is
    prior_max_translation_m: 0.5  #   within this rotation (deg) / per-axis translation (m) of T_cam_lidar
    metadata: {...}               # optional, free-form (tool, model, frames used, date, ...)

``T_cam_lidar`` may be left out when ``translation`` and ``quaternion_xyzw`` are given.
Keys not listed above (``source``, ``derivation``, ... of the normalised records) are kept in
``Calibration.metadata`` on loading. A missing required key or a malformed value raises
``ValueError`` naming the file and the key.

Other formats
-------------
- ``urdf_joint_snippet``: a fixed URDF joint LiDAR -> camera optical frame.
- ``parse_kitti_calib`` / ``kitti_calibration``: KITTI Odometry ``calib.txt`` (``P0..P3``,
  ``Tr``) and KITTI object-benchmark calibration (``P0..P3``, ``R0_rect``,
  ``Tr_velo_to_cam``) -> camera of ``image_<i>`` (rectified, no distortion) + ``T_cam_lidar``.
- ``nuscenes_transform`` / ``nuscenes_camera``: nuScenes ``calibrated_sensor`` and
  ``ego_pose`` records -> transforms and the camera model.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from .camera import CameraModel, distortion_model_name, normalise_distortion
from .geometry import (check_transform, invert_transform, make_transform, rotation_angle_deg, transform_from_tq,
                       transform_to_tq)

__all__ = [
    "SCHEMA_VERSION",
    "Calibration",
    "save_calibration_yaml",
    "load_calibration_yaml", "load_calibration_input",
    "yaml_problem",
    "normalise_distortion_model",
    "urdf_joint_snippet",
    "parse_kitti_calib",
    "kitti_calibration",
    "kitti_calib_txt",
    "nuscenes_transform",
    "nuscenes_camera",
]

SCHEMA_VERSION = 1
_QUATERNION_NORM_ATOL = 1e-3
"""A ``quaternion_xyzw`` whose norm differs from 1 by more is refused (6 printed digits: 1e-6)."""
_KNOWN_KEYS = {"version", "T_cam_lidar", "translation", "quaternion_xyzw", "frames", "width", "height",
               "K", "distortion_model", "distortion", "covariance", "metadata", "prior_max_rotation_deg",
               "prior_max_translation_m"}
_TQ_ATOL = 1e-5  # as check_transform: a saved matrix may be that far from a rotation


@dataclass
class Calibration:
    """A camera-LiDAR calibration record (the content of the calibration YAML)."""

    T_cam_lidar: np.ndarray
    """(4, 4) maps LiDAR points into the camera optical frame."""
    camera: CameraModel | None
    """The camera's intrinsics, distortion and image size (None only for an extrinsic-only record
    read with ``require_camera=False``, e.g. a prior from a CAD drawing)."""
    lidar_frame: str = "lidar"
    """tf frame id of the LiDAR (tf parent)."""
    camera_frame: str = "camera_optical"
    """tf frame id of the camera optical frame (tf child)."""
    covariance: np.ndarray | None = None
    """Optional (6, 6) covariance of the extrinsic, order (x, y, z, rot_x, rot_y, rot_z), m^2 / rad^2."""
    metadata: dict = field(default_factory=dict)
    """Free-form provenance."""
    version: int = SCHEMA_VERSION
    """Schema version of the file it was read from."""
    prior_max_rotation_deg: float | None = None
    """Optional: as a prior, the true rotation is within this angle of ``T_cam_lidar`` (degrees)."""
    prior_max_translation_m: float | None = None
    """Optional: as a prior, the true translation is within this of ``T_cam_lidar`` per axis (metres)."""
    named_frames: dict = field(default_factory=dict)
    """The ``frames`` keys the file itself gives (``parent`` / ``child``; ``{}`` when it names none):
    ``lidar_frame`` and ``camera_frame`` fall back to defaults, a prior compares only these."""


# --------------------------------------------------------------------------- YAML record
class _CalibDumper(yaml.SafeDumper):
    """Lists of numbers in flow style (one matrix row per line), everything else block style."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flow = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_CalibDumper.add_representer(list, _represent_list)


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain Python for yaml.safe_dump."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


_HEADER = """\
# crossi2p calibration record (schema: crossi2p/calib_io.py docstring)
# T_cam_lidar maps LiDAR points into the camera optical frame: p_cam = T_cam_lidar @ p_lidar.
# On tf (parent = frames.parent = LiDAR, child = frames.child = camera optical) the transform is
# inv(T_cam_lidar). translation / quaternion_xyzw are those of T_cam_lidar.
"""


def save_calibration_yaml(path: str | os.PathLike, T_cam_lidar: np.ndarray, camera: CameraModel, *,
                          lidar_frame: str = "lidar", camera_frame: str = "camera_optical",
                          covariance: np.ndarray | None = None, metadata: Mapping | None = None,
                          prior_max_rotation_deg: float | None = None,
                          prior_max_translation_m: float | None = None) -> Path:
    """Write the calibration YAML (schema in the module docstring); returns the path written.

    Floats are written with full precision (``load_calibration_yaml`` gives back the same
    numbers). Parent folders are created.
    """
    T = check_transform(T_cam_lidar, "T_cam_lidar")
    t, q = transform_to_tq(T)
    record: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "T_cam_lidar": T,
        "translation": t,
        "quaternion_xyzw": q,
        "frames": {"parent": lidar_frame, "child": camera_frame},
        "width": camera.width,
        "height": camera.height,
        "K": camera.K,
        "distortion_model": camera.distortion_model,
        "distortion": camera.distortion,
    }
    if covariance is not None:
        record["covariance"] = _check_covariance(covariance, "covariance")
    for key, bound in (("prior_max_rotation_deg", prior_max_rotation_deg),
                       ("prior_max_translation_m", prior_max_translation_m)):
        if bound is not None:
            record[key] = _check_bound(bound, key, _BOUND_TOP[key])
    if metadata:
        record["metadata"] = dict(metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(_plain(record), Dumper=_CalibDumper, sort_keys=False, default_flow_style=False,
                     width=1000)
    path.write_text(_HEADER + text)
    return path


def _check_covariance(cov, where: str) -> np.ndarray:
    C = np.asarray(cov, dtype=np.float64)
    if C.shape == (36,):
        C = C.reshape(6, 6)
    if C.shape != (6, 6) or not np.all(np.isfinite(C)):
        raise ValueError(f"{where}: expected a finite 6x6 matrix (or 36 values), got shape {C.shape}")
    return C


_BOUND_TOP = {"prior_max_rotation_deg": 180.0, "prior_max_translation_m": np.inf}
"""The largest value of each prior bound (a rotation is at most 180 degrees from another)."""


def _check_bound(value, where: str, top: float = np.inf) -> float:
    """A prior bound: a finite number > 0 and at most ``top`` (180 for a rotation in degrees)."""
    expected = "a number > 0" + (f" and <= {top:g} (degrees)" if np.isfinite(top) else "")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected {expected}, got {value!r}") from None
    if not np.isfinite(v) or v <= 0 or v > top:
        raise ValueError(f"{where}: expected {expected}, got {value!r}")
    return v


def normalise_distortion_model(name: str | None) -> str:
    """Distortion model names seen in the wild -> the CameraInfo name ``CameraModel`` takes.

    Only the first word counts (``"radtan (OpenCV plumb_bob: ...)"`` -> ``plumb_bob``). The one
    table of aliases is ``crossi2p.camera.distortion_model_name``.
    """
    return distortion_model_name(name)


def _matrix(record: Mapping, key: str, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        M = np.asarray(record[key], dtype=np.float64)
    except (TypeError, ValueError):       # numpy's own wording (ragged rows, ...) says less than this
        raise ValueError(f"{where}: key {key!r} expected a numeric {shape[0]}x{shape[1]} matrix "
                         f"({shape[0]} rows of {shape[1]} numbers), got {record[key]!r}"[:300]) from None
    if M.size == shape[0] * shape[1] and M.ndim == 1:
        M = M.reshape(shape)
    if M.shape != shape:
        raise ValueError(f"{where}: key {key!r} expected shape {shape}, got {M.shape}")
    return M


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a PyYAML parse error: its problem and where (``"... at line L, column C"``),
    without the multi-line excerpt of the file that ``str(exc)`` carries."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or type(exc).__name__}{at}"


def read_yaml(path: Path, where: str, expected: str) -> object:
    """The YAML document of the text file ``path`` (None: empty). Raises ValueError, one line
    starting ``where``: not a text file (``expected`` says what was), or not valid YAML (the
    problem and its line, ``yaml_problem``); OSError as reading raises it."""
    try:
        return yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a text file (expected {expected})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML ({yaml_problem(exc)})") from None


def load_calibration_input(path: str | os.PathLike, what: str, require_camera: bool = True) -> Calibration:
    """``load_calibration_yaml`` for a file a user named, every error one line starting with
    ``what`` and the path (``--ground-truth calib.yaml: file not found ...``, ``prior p.yaml:
    unknown key ...``), so the user knows which of their inputs it is.

    Raises:
        ValueError: a folder, a missing file, or what ``load_calibration_yaml`` refuses.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder (expected a calibration YAML file)")
    if not path.is_file():
        raise ValueError(f"{what} {path}: file not found (expected a calibration YAML)")
    try:
        return load_calibration_yaml(path, require_camera=require_camera)  # its errors name the file and key
    except ValueError as exc:
        raise ValueError(f"{what} {exc}") from None
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror or exc}") from None


def load_calibration_yaml(path: str | os.PathLike, require_camera: bool = True) -> Calibration:
    """Read a calibration YAML written by ``save_calibration_yaml`` or a normalised record.

    Args:
        require_camera: False accepts an extrinsic-only record (no ``K`` / ``width`` /
            ``height``: a prior from a CAD drawing); its ``camera`` is then None.
    Raises ``ValueError`` (one line) naming the file and the key when a required key
    (``T_cam_lidar`` or ``translation`` + ``quaternion_xyzw``, ``K``, ``width``, ``height``) is
    missing or a value is malformed, when ``translation``/``quaternion_xyzw`` disagree with the
    matrix, and when the file is not a text YAML file.
    """
    path = Path(path)
    where = str(path)
    record = read_yaml(path, where, "a calibration YAML")
    if record is None:
        raise ValueError(f"{where}: the file is empty (expected a calibration YAML with T_cam_lidar)")
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a YAML mapping at the top level, got {type(record).__name__}")
    try:
        version = int(record.get("version", SCHEMA_VERSION))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: key 'version' must be an integer, got {record['version']!r}") from None
    if version > SCHEMA_VERSION:
        raise ValueError(f"{where}: schema version {version} is newer than this reader's {SCHEMA_VERSION}")
    camera_keys = ("K", "width", "height")
    has_camera = any(key in record for key in camera_keys)   # then all of them, checked here
    for key in camera_keys:
        if key not in record and (require_camera or has_camera):
            raise ValueError(f"{where}: missing key {key!r} (keys present: {sorted(record)})")

    has_tq = "translation" in record and "quaternion_xyzw" in record
    lone = [k for k in ("translation", "quaternion_xyzw") if k in record and not has_tq]
    if lone and "T_cam_lidar" in record:   # an edit of one of them alone would be ignored silently
        other = "quaternion_xyzw" if lone[0] == "translation" else "translation"
        raise ValueError(f"{where}: {lone[0]!r} without {other!r}: give both (they must agree with T_cam_lidar) "
                         f"or neither")
    if has_tq:
        try:
            q = np.asarray(record["quaternion_xyzw"], dtype=np.float64).reshape(4)
            T_tq = transform_from_tq(np.asarray(record["translation"], dtype=np.float64).reshape(3), q)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: keys 'translation' (3 numbers) / 'quaternion_xyzw' (4 numbers): "
                             f"{exc}") from None
        if abs(float(np.linalg.norm(q)) - 1.0) > _QUATERNION_NORM_ATOL:   # not silently normalised
            raise ValueError(f"{where}: quaternion_xyzw {q.tolist()} has norm {np.linalg.norm(q):.4g}: expected a unit "
                             f"quaternion (x, y, z, w; not angles in degrees)")
    if "T_cam_lidar" in record:
        T = _matrix(record, "T_cam_lidar", (4, 4), where)
        try:
            T = check_transform(T, f"{where}: T_cam_lidar")
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if has_tq and not np.allclose(T, T_tq, atol=_TQ_ATOL):
            d_t = float(np.abs(T[:3, 3] - T_tq[:3, 3]).max())
            d_r = rotation_angle_deg(T[:3, :3].T @ T_tq[:3, :3])
            raise ValueError(f"{where}: translation/quaternion_xyzw disagree with T_cam_lidar ({d_r:.3f} deg, "
                             f"{d_t:.3f} m apart): edit all three alike, or delete translation and "
                             f"quaternion_xyzw (T_cam_lidar is what is read)")
    elif has_tq:
        T = T_tq
    else:
        raise ValueError(f"{where}: missing key 'T_cam_lidar' (or 'translation' + 'quaternion_xyzw'); "
                         f"keys present: {sorted(record)}")

    dist = record.get("distortion") or []
    camera = None
    try:
        # The same reading of (model, coefficients) as CameraInfo's; an absent model is "none".
        model, D = normalise_distortion(distortion_model_name(record.get("distortion_model")), dist,
                                        source=where, d_name="key 'distortion'")
        if has_camera:
            camera = CameraModel(_matrix(record, "K", (3, 3), where), int(record["width"]), int(record["height"]),
                                 model, D)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from None

    frames = record.get("frames") or {}
    if not isinstance(frames, dict):
        raise ValueError(f"{where}: key 'frames' must be a mapping with 'parent' and 'child'")
    stray = sorted(set(frames) - {"parent", "child"})
    if stray:          # 'chld: camera' would leave the frame check out without a word
        raise ValueError(f"{where}: key 'frames' has {stray}, expected only 'parent' (the LiDAR frame) and "
                         f"'child' (the camera optical frame)")
    _refuse_misspelt_keys(record, where)
    covariance = record.get("covariance")
    if covariance is not None:
        covariance = _check_covariance(covariance, f"{where}: key 'covariance'")
    bounds = {k: _check_bound(record[k], f"{where}: key {k!r}", _BOUND_TOP[k])
              if record.get(k) is not None else None for k in ("prior_max_rotation_deg", "prior_max_translation_m")}
    metadata = dict(record.get("metadata") or {})
    metadata.update({k: v for k, v in record.items() if k not in _KNOWN_KEYS})
    return Calibration(T_cam_lidar=T, camera=camera, lidar_frame=str(frames.get("parent", "lidar")),
                       camera_frame=str(frames.get("child", "camera_optical")), covariance=covariance,
                       metadata=metadata, version=version,
                       named_frames={k: str(frames[k]) for k in ("parent", "child") if frames.get(k)}, **bounds)


def _refuse_misspelt_keys(record: dict, where: str) -> None:
    """ValueError for a top-level key that is not one of the record's but looks like one (a typo:
    ``T_cam_lidr``, ``prior_max_rotaton_deg``); other unknown keys are free-form provenance and go
    to ``metadata``."""
    from .config_schema import closest_name

    for key in sorted(str(k) for k in record if k not in _KNOWN_KEYS):
        close = closest_name(key, _KNOWN_KEYS, cutoff=0.8)
        if close or key.startswith("prior_max"):
            expected = close or "prior_max_rotation_deg, prior_max_translation_m"
            raise ValueError(f"{where}: unknown key {key!r} (expected {expected}; other keys go under 'metadata')")


# --------------------------------------------------------------------------- URDF
def urdf_joint_snippet(T_cam_lidar: np.ndarray, lidar_frame: str = "lidar",
                       camera_frame: str = "camera_optical", joint_name: str | None = None) -> str:
    """A fixed URDF joint with parent = ``lidar_frame`` and child = ``camera_frame``.

    Direction: a URDF joint's ``<origin>`` is the pose of the child in the parent frame, i.e.
    ``T_parent_child`` = ``T_lidar_cam = inv(T_cam_lidar)`` -- the same transform tf carries
    from parent ``lidar_frame`` to child ``camera_frame``. ``rpy`` is URDF's fixed-axis
    roll-pitch-yaw (``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``), radians; ``xyz`` in metres.
    Both links must exist in the robot description (the camera optical link is usually a
    child of a camera body link; attach it here only if it has no other parent).
    """
    T_lidar_cam = invert_transform(check_transform(T_cam_lidar, "T_cam_lidar"))
    xyz = T_lidar_cam[:3, 3]
    rpy = Rotation.from_matrix(T_lidar_cam[:3, :3]).as_euler("xyz")
    name = joint_name or f"{lidar_frame}_to_{camera_frame}"
    fmt = " ".join
    return (f'<!-- crossi2p calibration: origin = T_{lidar_frame}_{camera_frame} = inv(T_cam_lidar) -->\n'
            f'<joint name="{name}" type="fixed">\n'
            f'  <parent link="{lidar_frame}"/>\n'
            f'  <child link="{camera_frame}"/>\n'
            f'  <origin xyz="{fmt(f"{v:.9g}" for v in xyz)}" rpy="{fmt(f"{v:.9g}" for v in rpy)}"/>\n'
            f'</joint>\n')


# --------------------------------------------------------------------------- KITTI
class KittiCalib(dict):
    """``{KEY: float64 array}`` of a KITTI calibration file, plus where each key was read
    (``line_of``: 1-based line number) and the ``KEY:`` lines whose values were not all numbers
    (``unparsed``: ``KEY -> (line number, first value that is not a number)``), so that a key
    asked for but malformed is reported as such rather than as missing."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.line_of: dict[str, int] = {}
        self.unparsed: dict[str, tuple[int, str]] = {}

    def has(self, key: str) -> bool:
        """The file has a ``key:`` line (numeric or not)."""
        return key in self or key in self.unparsed


def parse_kitti_calib(path: str | os.PathLike) -> KittiCalib:
    """``KEY: v1 v2 ...`` lines of a KITTI calibration text file -> ``{KEY: float64 array}``.

    Lines whose values are not all numbers (``calib_time: 09-Jan-2012 ...``) and blank lines
    are left out of the mapping, but remembered (``KittiCalib.unparsed``): asking ``kitti_calibration``
    for such a key names the line and what was expected. Raises ``ValueError`` naming the file
    when nothing numeric is found.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: not found (expected a KITTI calibration text file: P0..P3 and Tr, or a "
                         f"calib.yaml beside it)")
    out = KittiCalib()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        key, sep, values = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        try:
            out[key] = np.array([float(v) for v in values.split()], dtype=np.float64)
            out.line_of[key] = number
        except ValueError:
            bad = next(v for v in values.split() if not _is_float(v))
            out.unparsed[key] = (number, bad)
    if not out:
        first = ""
        if out.unparsed:
            key, (number, bad) = next(iter(out.unparsed.items()))
            first = f" (line {number} {key!r}: {bad!r} is not a number)"
        raise ValueError(f"{path}: no 'KEY: numbers' lines found; not a KITTI calibration file{first}")
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _kitti_get(calib: Mapping[str, np.ndarray], key: str, size: int, where: str) -> np.ndarray:
    """``calib[key]`` as ``size`` float64 values; ``ValueError`` naming ``where``, the key, its line
    and ``size`` when the key is absent, has a value that is not a number, or the wrong count."""
    line_of = getattr(calib, "line_of", {})
    unparsed = getattr(calib, "unparsed", {})
    if key in unparsed:
        number, bad = unparsed[key]
        raise ValueError(f"{where}: line {number}, key {key!r}: {bad!r} is not a number "
                         f"(expected {size} numbers)")
    if key not in calib:
        raise ValueError(f"{where}: missing key {key!r} (keys present: {sorted(calib)})")
    v = np.asarray(calib[key], dtype=np.float64).reshape(-1)
    if v.size != size:
        at = f"line {line_of[key]}, " if key in line_of else ""
        raise ValueError(f"{where}: {at}key {key!r} has {v.size} values, expected {size} numbers")
    return v


def _homogeneous(M34: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :] = M34.reshape(3, 4)
    return T


def kitti_calibration(path: str | os.PathLike, width: int, height: int, camera_index: int = 2,
                      require_extrinsic: bool = True) -> tuple[CameraModel, np.ndarray | None]:
    """KITTI calibration file -> ``(camera of image_<camera_index>, T_cam_lidar)``; with
    ``require_extrinsic=False`` a file with the projection matrices only gives ``T_cam_lidar``
    None (a user's own recording in KITTI layout, to be calibrated: ``crossi2p-calibrate``).

    Two layouts, told apart by their keys:

    - Odometry ``calib.txt``: ``P0..P3`` and ``Tr`` (Velodyne -> rectified camera 0);
    - object benchmark ``calib/XXXXXX.txt``: ``P0..P3``, ``R0_rect`` and ``Tr_velo_to_cam``
      (Velodyne -> unrectified camera 0; ``R0_rect`` rectifies it).

    ``P_i = K [I | K^-1 P_i[:, 3]]``: the rectified camera ``i`` sits at the translation
    ``t_i = K^-1 P_i[:, 3]`` from rectified camera 0 (for camera 2 mostly the baseline
    ``P2[0, 3] / fx``, 6 cm, plus mm in y, z). So
    ``T_cam_lidar = [I | t_i] @ R0_rect @ Tr_velo_to_cam`` (``R0_rect = I`` for odometry),
    and ``K @ T_cam_lidar[:3]`` equals ``P_i @ R0_rect @ Tr`` exactly. The images are
    rectified: the camera has no distortion. KITTI files carry no image size, hence
    ``width`` and ``height``.
    """
    path = Path(path)
    where = str(path)
    calib = parse_kitti_calib(path)
    P = _kitti_get(calib, f"P{camera_index}", 12, where).reshape(3, 4)
    try:
        camera = CameraModel(P[:, :3].copy(), int(width), int(height), "none")
        t = np.linalg.solve(camera.K, P[:, 3])
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise ValueError(f"{where}: key 'P{camera_index}' is not K [I | t] with a valid K ({exc})") from None
    if calib.has("Tr"):
        Tr = _homogeneous(_kitti_get(calib, "Tr", 12, where))
        R0 = np.eye(4)
    elif calib.has("Tr_velo_to_cam") or calib.has("R0_rect"):
        Tr = _homogeneous(_kitti_get(calib, "Tr_velo_to_cam", 12, where))
        R0 = np.eye(4)
        R0[:3, :3] = _kitti_get(calib, "R0_rect", 9, where).reshape(3, 3)
    elif not require_extrinsic:
        return camera, None
    else:
        raise ValueError(f"{where}: missing key 'Tr' (odometry calib.txt) or 'Tr_velo_to_cam' + 'R0_rect' "
                         f"(object benchmark); keys present: {sorted(calib)}")
    T_cam_lidar = check_transform(make_transform(np.eye(3), t) @ R0 @ Tr, f"{where}: T_cam_lidar")
    return camera, T_cam_lidar


def kitti_calib_txt(camera: CameraModel, T_cam_lidar: np.ndarray) -> str:
    """Text of a KITTI Odometry ``calib.txt`` for a single camera written as ``image_2``.

    Rectified camera 0 is taken to coincide with the camera, so ``P0 = P1 = P2 = P3 = K [I | 0]``
    and ``Tr = T_cam_lidar[:3]``: KITTI tools computing ``P2 @ Tr @ X`` project correctly,
    and ``kitti_calibration`` gives back ``(K, T_cam_lidar)``. Distortion cannot be expressed
    (write the calibration YAML beside it).
    """
    P = np.hstack([camera.K, np.zeros((3, 1))])
    Tr = check_transform(T_cam_lidar, "T_cam_lidar")[:3]

    def row(key: str, M: np.ndarray) -> str:
        return key + ": " + " ".join(f"{v:.12e}" for v in M.reshape(-1)) + "\n"

    return "".join(row(f"P{i}", P) for i in range(4)) + row("Tr", Tr)


# --------------------------------------------------------------------------- nuScenes
def nuscenes_transform(record: Mapping, source: str = "nuScenes record") -> np.ndarray:
    """A nuScenes ``calibrated_sensor`` or ``ego_pose`` record -> 4x4 transform.

    ``calibrated_sensor`` gives ``T_ego_sensor`` (sensor -> ego body frame), ``ego_pose``
    gives ``T_global_ego``. ``rotation`` is a quaternion in ``(w, x, y, z)`` order (pyquaternion),
    ``translation`` in metres.
    """
    for key in ("translation", "rotation"):
        if key not in record:
            raise ValueError(f"{source}: missing key {key!r} (keys present: {sorted(record)})")
    w, x, y, z = _numbers(record["rotation"], 4, f"{source}: rotation", "a (w, x, y, z) quaternion")
    t = _numbers(record["translation"], 3, f"{source}: translation", "x, y, z in metres")
    return transform_from_tq(t, [x, y, z, w])


def _numbers(value, size: int, where: str, what: str) -> np.ndarray:
    """``value`` as ``size`` float64 numbers, or a ``ValueError`` naming ``where`` and what was expected."""
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected {size} numbers ({what}), got {value!r}") from None
    if v.shape != (size,):
        raise ValueError(f"{where}: expected {size} numbers ({what}), got shape {v.shape}")
    return v


def nuscenes_camera(record: Mapping, width: int, height: int, source: str = "nuScenes record") -> CameraModel:
    """A camera's ``calibrated_sensor`` record (``camera_intrinsic`` 3x3) -> ``CameraModel``.

    nuScenes images are undistorted: the model is an ideal pinhole.
    """
    K = record.get("camera_intrinsic")
    if K is None or (isinstance(K, (list, tuple)) and len(K) == 0):
        raise ValueError(f"{source}: missing key 'camera_intrinsic' (not a camera's calibrated_sensor record?)")
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        K = None
    if K is None or K.shape != (3, 3):
        got = "not numbers in rows of equal length" if K is None else f"shape {K.shape}"
        raise ValueError(f"{source}: expected a 3x3 camera_intrinsic (3 rows of 3 numbers), got {got}")
    try:
        return CameraModel(K, int(width), int(height), "none")
    except ValueError as exc:
        raise ValueError(f"{source}: camera_intrinsic: {exc}") from None
