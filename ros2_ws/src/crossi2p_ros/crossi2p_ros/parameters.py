"""The calibration node's parameters, declared in one place.

ROS parameters map 1:1 onto typed dataclasses: the node's own ``NodeConfig`` (top-level names)
and the core stages' configs under a prefix (``pairing.*``, ``fusion.*``, ``runtime.*``,
``deskew.*``, ``travel_check.*``; the refinement's schedule, ``crossi2p_ros.pipeline.RefinementScheduleConfig``, under
``refinement_*``).
Descriptions come from the docstring under each dataclass field; ranges from ``RANGES``.
``docs/parameters.md`` is generated from the same declarations (``parameter_table_markdown``) and
a test fails when it drifts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from crossi2p.config_schema import config_from_dict, field_docs
from crossi2p.deskew import DeskewConfig
from crossi2p.fusion import FusionConfig
from crossi2p.runtime import RuntimeConfig
from crossi2p.travel_check import TravelCheckConfig

from .pairing import PairingConfig
from .pipeline import RefinementScheduleConfig


@dataclass
class NodeConfig:
    """Topics, frames, mode and outputs of the calibration node."""

    image_topic: str = "/camera/image_raw"
    """Camera image topic (sensor_msgs/Image; with ``compressed_image`` a CompressedImage topic)."""
    compressed_image: bool = False
    """Subscribe to sensor_msgs/CompressedImage on ``image_topic`` instead of Image."""
    camera_info_topic: str = "/camera/camera_info"
    """sensor_msgs/CameraInfo of the camera; the newest one is used with each image."""
    points_topic: str = "/lidar/points"
    """LiDAR sensor_msgs/PointCloud2 topic (any field layout with x, y, z; intensity optional)."""
    intensity_field: str = "intensity"
    """PointCloud2 field used as intensity (zeros if the cloud has none)."""
    qos: Literal["sensor_data", "reliable"] = "sensor_data"
    """QoS of the sensor subscriptions: ``sensor_data`` (best effort) or ``reliable``."""
    queue_depth: int = 5
    """Depth of the sensor subscriptions' QoS history."""
    input_timeout_s: float = 10.0
    """Seconds (steady time) after start-up with no message at all on an input (``image_topic``,
    ``camera_info_topic``, ``points_topic``, and the rig cameras' topics of ``rig_calibration``) before a warning names it with what the ROS graph has
    there (the topic with another type and the parameter to set, a QoS the subscription refuses,
    similarly named topics of the expected type); repeated every 3x this while still nothing came.
    An input that had messages and then none for this long is named too (its publisher still in
    the graph or gone). 0: off."""
    camera_frame: str = ""
    """Camera optical frame the estimate is made in and published under (empty: the frame_id of the
    first image). An image stamped with another frame is refused (an image cannot be re-expressed),
    unless /tf_static links the two frames by an identity transform."""
    tf_child_frame: str = ""
    """Child frame id of the transform published on tf (empty: ``camera_frame``). When the camera
    optical frame already has a parent in the robot's tf tree (a URDF's camera_link ->
    camera_optical), publishing ``lidar -> camera_optical`` gives it a second parent (tf lookups then
    take either, and the node warns); set another name here (e.g. ``camera_optical_calibrated``) and
    compare it with the URDF's frame, or write the saved calibration into the URDF
    (docs/troubleshooting.md). ``~/pose`` stays in ``camera_frame``."""
    lidar_frame: str = ""
    """LiDAR frame the estimate is made in and published under (empty: the frame_id of the first
    cloud). A cloud stamped with another frame (e.g. Ouster os_lidar for os_sensor) is mapped into
    it through /tf_static, or refused with the reason in diagnostics when no such path is known."""
    mode: Literal["global", "refine"] = "global"
    """``global``: no prior at all; ``refine``: start from a prior (``prior_source``)."""
    prior_source: Literal["parameter", "tf"] = "parameter"
    """Where the refine prior comes from: ``prior_xyz`` / ``prior_quat_xyzw``, or /tf_static (any
    chain of static transforms between the LiDAR and camera frames, e.g. through base_link; looked
    up once, when the two frames first connect)."""
    prior_xyz: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Refine prior T_cam_lidar translation (x, y, z) in metres."""
    prior_quat_xyzw: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 1.0])
    """Refine prior T_cam_lidar rotation as a quaternion (x, y, z, w)."""
    prior_calibration: str = ""
    """Calibration YAML of a prior T_cam_lidar with its bounds (``crossi2p.prior.load_prior``; empty:
    none). In any mode, per-frame estimates outside its bounds are rejected with the reason
    ``outside prior: ...`` (``rejected_outside_prior`` in diagnostics) and the refinement starts
    from it until the fusion converges; in ``refine`` mode it is also the network's prior (instead
    of ``prior_source``). A file that cannot be read stops the node at start-up (exit code 1)."""
    rig_calibration: str = ""
    """YAML listing the rig's other cameras (``image_topic``, ``camera_info_topic``,
    ``prior_calibration`` each; ``crossi2p_ros.rig_inputs``), refined together with this node's
    camera: one LiDAR pose must then explain every image, which settles the rotation one camera
    leaves open on real data. Needs ``prior_calibration``: the cameras' poses relative to each
    other come from the priors. Their images are paired with the sweeps (no network runs on
    them) and the refined estimate is published for every camera (its image's frame). Empty: this
    camera alone. A file that cannot be read stops the node at start-up (exit code 1)."""
    prior_max_rotation_deg: float = 0.0
    """Rotation bound of the prior, degrees: overrides the YAML's ``prior_max_rotation_deg``, and bounds
    the ``refine`` mode prior (``prior_source``) too (0: the YAML's value, else 10 deg)."""
    prior_max_translation_m: float = 0.0
    """Per-axis translation bound of the prior, metres: overrides the YAML's
    ``prior_max_translation_m``, and bounds the ``refine`` mode prior too (0: the YAML's value, else
    0.5 m)."""
    model_card: str = ""
    """Model card YAML of the ONNX graph, or the .onnx with its card beside it (empty: the shipped
    default model)."""
    publish_on: Literal["tf_static", "tf"] = "tf_static"
    """Publish the extrinsic latched on /tf_static (TRANSIENT_LOCAL) or periodically on /tf."""
    tf_rate_hz: float = 10.0
    """Rate of /tf publication when ``publish_on`` is ``tf``."""
    publish_before_convergence: bool = False
    """Also publish the running estimate before it has converged."""
    republish_rotation_deg: float = 0.05
    """/tf_static is republished when the published estimate (fused or refined) rotates this much
    from the last value put on it, or its stage changes; ``~/pose`` carries every estimate."""
    republish_translation_m: float = 0.005
    """... or when its translation moves this much."""
    overlay_rate_hz: float = 1.0
    """Rate limit of the overlay image (points projected with the current estimate); 0: off."""
    diagnostics_rate_hz: float = 1.0
    """Rate of /diagnostics messages."""
    publish_frame_estimates: bool = False
    """Also publish every processed pair's per-frame estimate, validity and fusion state on
    ``~/frame_estimates`` (diagnostic_msgs/DiagnosticArray; replay evaluation, debugging)."""
    max_points: int = 400000
    """Clouds with more points are subsampled to this many (bounded memory)."""
    save_path: str = ""
    """Where the save_calibration service writes the YAML (a .urdf.xacro snippet is written beside).
    Empty: ``<node name>.yaml`` in the working directory (``crossi2p_calibration.yaml`` for the
    default name), so that the nodes of several cameras, each with its own name, do not overwrite
    each other's file. Nothing is saved on exit: call the service before stopping the node."""


@dataclass
class CalibrationNodeParameters:
    """All parameters of the node: its own and those of the core stages it runs."""

    node: NodeConfig = field(default_factory=NodeConfig)
    pairing: PairingConfig = field(default_factory=PairingConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    refinement: RefinementScheduleConfig = field(default_factory=RefinementScheduleConfig)
    deskew: DeskewConfig = field(default_factory=DeskewConfig)
    travel: TravelCheckConfig = field(default_factory=TravelCheckConfig)


# Allowed ranges of numeric parameters (inclusive), by ROS parameter name.
RANGES: dict[str, tuple[float, float]] = {
    "queue_depth": (1, 1000),
    "input_timeout_s": (0.0, 3600.0),
    "tf_rate_hz": (0.1, 1000.0),
    "republish_rotation_deg": (0.0, 180.0),
    "republish_translation_m": (0.0, 100.0),
    "overlay_rate_hz": (0.0, 100.0),
    "diagnostics_rate_hz": (0.1, 100.0),
    "max_points": (1000, 10_000_000),
    "pairing.slop_s": (0.0, 1.0),
    "pairing.queue_size": (1, 1000),
    "pairing.time_jump_back_s": (0.0, 3600.0),
    "fusion.window_size": (1, 10000),
    "fusion.min_confidence": (0.0, 1.0),
    "fusion.gate_rotation_deg": (0.0, 180.0),
    "fusion.gate_translation_m": (0.0, 100.0),
    "fusion.min_inliers_to_converge": (1, 10000),
    "fusion.min_inlier_ratio_to_converge": (0.0, 1.0),
    "fusion.converge_rotation_std_deg": (0.0, 180.0),
    "fusion.converge_translation_std_m": (0.0, 100.0),
    "fusion.drift_rotation_deg": (0.0, 180.0),
    "fusion.drift_translation_m": (0.0, 100.0),
    "fusion.drift_frames": (1, 10000),
    "fusion.irls_rounds": (1, 100),
    "fusion.systematic_translation_m": (0.0, 100.0),
    "fusion.systematic_rotation_deg": (0.0, 180.0),
    "runtime.intra_op_threads": (0, 256),
    "runtime.min_confidence": (0.0, 1.0),
    "runtime.min_correspondences": (0, 100000),
    "runtime.max_lever_arm_m": (0.0, 1000.0),
    "runtime.min_relative_weight": (0.0, 1.0),
    "runtime.inlier_reprojection_px": (0.1, 1000.0),
    "runtime.min_points_in_range": (0, 10_000_000),
    "runtime.ransac_reprojection_px": (0.0, 1000.0),
    "runtime.alignment_offset_deg": (0.1, 90.0),
    "runtime.alignment_offset_m": (0.0, 10.0),
    "runtime.alignment_min_margin": (0.0, 1.0),
    "runtime.alignment_max_width_px": (64, 100000),
    "runtime.seed": (0, 2**31 - 1),
    "prior_max_rotation_deg": (0.0, 180.0),
    "prior_max_translation_m": (0.0, 100.0),
    "refinement_window_frames": (1, 1000),
    "refinement_every_frames": (1, 100000),
    "refinement_min_window_frames": (1, 1000),
    "refinement_reprepare_rotation_deg": (0.0, 180.0),
    "refinement_reprepare_translation_m": (0.0, 100.0),
    "refinement_max_pair_offset_s": (0.0, 1e9),
    "refinement_keyframe_parallax_px": (0.0, 10000.0),
    "refinement_keyframe_max_gap_s": (0.0, 1e9),
    "deskew.rate_hz": (0.1, 100.0),
    "deskew.stamp_azimuth_deg": (-360.0, 360.0),
    "deskew.voxel_size_m": (0.01, 10.0),
    "deskew.min_range_m": (0.0, 1000.0),
    "deskew.max_range_m": (0.1, 10000.0),
    "deskew.velocity_sweeps": (1, 100),
    "deskew.initial_threshold_m": (0.1, 100.0),
    "deskew.max_gap_s": (0.0, 3600.0),
    "deskew.min_points": (0, 10_000_000),
    "deskew.max_speed_mps": (0.1, 1000.0),
    "deskew.odometry_max_points": (1000, 10_000_000),
    "travel_check.max_angle_deg": (1.0, 180.0),
    "travel_check.min_travel_m": (0.01, 100.0),
    "travel_check.max_gap_s": (0.01, 3600.0),
    "travel_check.min_inliers": (5, 100000),
    "travel_check.history": (1, 1000),
    "travel_check.max_width_px": (64, 100000),
    "travel_check.max_corners": (8, 100000),
}

_GROUPS = {"node": "", "pairing": "pairing.", "fusion": "fusion.", "runtime": "runtime.",
           "refinement": "refinement_", "deskew": "deskew.", "travel": "travel_check."}


@dataclass(frozen=True)
class ParameterSpec:
    """One declared ROS parameter."""

    name: str
    default: object
    description: str
    choices: tuple = ()
    range: tuple | None = None


def parameter_specs() -> list[ParameterSpec]:
    """Every parameter of the node, in declaration order."""
    import typing

    specs = []
    defaults = CalibrationNodeParameters()
    for group, prefix in _GROUPS.items():
        config = getattr(defaults, group)
        docs = field_docs(type(config))
        hints = typing.get_type_hints(type(config))
        for f in dataclasses.fields(config):
            name = prefix + f.name
            hint = hints[f.name]
            choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
            specs.append(ParameterSpec(name, getattr(config, f.name), docs.get(f.name, ""), choices,
                                       RANGES.get(name)))
    return specs


def parameters_from_flat(values: dict[str, object]) -> CalibrationNodeParameters:
    """Build the typed parameters from ``{ros parameter name: value}`` (missing: defaults)."""
    nested: dict[str, dict] = {g: {} for g in _GROUPS}
    for name, value in values.items():
        group = next((g for g, p in _GROUPS.items() if p and name.startswith(p)), "node")
        key = name[len(_GROUPS[group]):]
        if isinstance(value, tuple):
            value = list(value)
        nested[group][key] = value
    try:
        params = config_from_dict(CalibrationNodeParameters, nested, "parameters")  # types checked here
    except ValueError as exc:   # "parameters.node.qos: ..." -> "parameter qos: ...", in the node's names
        message = str(exc)
        for group, prefix in _GROUPS.items():
            if message.startswith(f"parameters.{group}."):
                message = "parameter " + prefix + message[len(f"parameters.{group}."):]
                break
        raise ValueError(message) from None
    for spec in parameter_specs():
        if spec.range is not None and spec.name in values:
            lo, hi = spec.range
            if not lo <= values[spec.name] <= hi:
                raise ValueError(f"parameter {spec.name}: {values[spec.name]} outside [{lo}, {hi}]")
    # the parameter prior's shape, checked whatever the mode (a launch file switched to refine later)
    for name, n in (("prior_xyz", 3), ("prior_quat_xyzw", 4)):
        v = getattr(params.node, name)
        if len(v) != n or not all(math.isfinite(float(x)) for x in v):
            raise ValueError(f"parameter {name}: expected {n} finite numbers, got {list(v)}")
    q = params.node.prior_quat_xyzw
    if not 0.5 < math.sqrt(sum(float(x) ** 2 for x in q)) < 2.0:
        raise ValueError(f"parameter prior_quat_xyzw: expected a unit quaternion (x, y, z, w), got {list(q)}")
    return params


def parameter_table_markdown() -> str:
    """docs/parameters.md: the table of every parameter (generated; tests compare)."""
    lines = ["# Calibration node parameters", "",
             "Generated from the declarations in `crossi2p_ros/parameters.py` "
             "(`python -m crossi2p_ros.parameters > docs/parameters.md`); a test fails if it drifts.", "",
             "Every parameter is read once, at start-up, and declared read-only: a change at run time "
             "(`ros2 param set`) is refused; restart the node with the new value.", "",
             "| parameter | default | range / choices | description |", "|---|---|---|---|"]
    for s in parameter_specs():
        allowed = ", ".join(map(str, s.choices)) if s.choices else (f"[{s.range[0]}, {s.range[1]}]" if s.range else "")
        default = f"`{s.default!r}`" if s.default != "" else '`""`'
        lines.append(f"| `{s.name}` | {default} | {allowed} | {s.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(parameter_table_markdown(), end="")
