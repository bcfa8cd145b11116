"""The onnxruntime runtime: one camera image + LiDAR sweep in, one checked extrinsic estimate out.

Loads a model card and its graph (refusing a graph whose sha256 or interface does not match the
card), preprocesses with the card's exact contract (``crossi2p.preprocess``), runs the graph on
the configured execution providers (CUDA first on a vehicle with onnxruntime-gpu, CPU fallback),
and checks the result before anyone may use it. No torch here.

Stages timed per frame (``FrameEstimate.latency_ms``): ``preprocess``, ``graph``, ``post``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from .camera import CameraModel
from .geometry import check_transform, make_transform, transform_points
from .model_card import GRAPH_INPUTS, GRAPH_OUTPUTS, ModelCard, resolve_model_card, sha256_of_file
from .preprocess import PreprocessConfig, preprocess_frame
from .prior import MAX_LEVER_ARM_M
from .refinement import RefinementConfig, alignment_check, prepare_frame

ExecutionProvider = Literal["auto", "cuda", "cpu"]


@dataclass
class RuntimeConfig:
    """How the runtime runs the graph and which per-frame results it accepts."""

    execution_provider: ExecutionProvider = "auto"
    """``auto``: CUDA if onnxruntime-gpu sees a GPU, else CPU; ``cuda``: CUDA or fail; ``cpu``."""
    intra_op_threads: int = 0
    """onnxruntime intra-op threads (0: onnxruntime's default, one per physical core)."""
    min_confidence: float = 0.05
    """A frame whose graph confidence is below this is flagged invalid."""
    min_correspondences: int = 12
    """A frame with fewer consistent correspondences is invalid: weight at least
    ``min_relative_weight`` x the frame's largest weight, and reprojection error under the
    estimate at most ``inlier_reprojection_px``."""
    min_relative_weight: float = 0.1
    """Correspondence weight, relative to the frame's largest, from which a correspondence counts
    (the graph's weights are products of match probabilities: their scale is the model's own)."""
    inlier_reprojection_px: float = 4.0
    """Reprojection error (preprocessed-image pixels) within which a correspondence agrees with the
    estimate (the graph's PnP inlier threshold)."""
    max_lever_arm_m: float = MAX_LEVER_ARM_M
    """An estimate that puts the sensors farther apart than this (metres, ``|t|`` of
    ``T_cam_lidar``: the distance between the camera's and the LiDAR's origins) is invalid: both
    sit on one vehicle. A physical bound (a car is under 5 m long, a truck's cab under 10 m), not
    fitted to data; 0 turns it off. The network's wrong frames on unseen sensors are often metres
    off (one of a real KITTI sequence 24 m off passed every other check, docs/benchmarks.md
    section 9)."""
    min_points_in_range: int = 100
    """Clouds with fewer finite points within the card's range crop are invalid input."""
    ransac_cross_check: bool = False
    """Also solve cv2.solvePnPRansac on the graph's correspondences (a second estimate)."""
    ransac_reprojection_px: float = 3.0
    """RANSAC inlier threshold in preprocessed-image pixels."""
    alignment_check: bool = True
    """A frame that passed the checks above must also pass ``refinement.alignment_check``: image
    and LiDAR (NID of intensity) agree better at the estimate than at every pose
    ``alignment_offset_deg`` / ``alignment_offset_m`` around it. Training-free, so it holds on
    sensors the network never saw (docs/benchmarks.md: wrong-but-valid frames)."""
    alignment_offset_deg: float = 3.0
    """Rotation offset of the poses the estimate is compared with (degrees)."""
    alignment_offset_m: float = 0.3
    """Translation offset of the poses the estimate is compared with (metres)."""
    alignment_min_margin: float = 0.0002
    """The estimate's cost must be lower than every offset pose's by more than this."""
    alignment_max_width_px: int = 640
    """Image width the check works at (speed)."""
    seed: int = 0
    """Seed of the point subsampling (fixed: the same frame gives the same estimate)."""


@dataclass
class FrameEstimate:
    """The runtime's result for one frame. ``valid`` is False with a ``reason`` on any failure."""

    valid: bool
    reason: str = ""
    T_cam_lidar: np.ndarray | None = None
    """(4, 4) estimate (LiDAR -> camera optical), None when the frame could not be processed."""
    confidence: float = 0.0
    """Graph confidence in [0, 1]."""
    inlier_ratio: float = 0.0
    """Fraction of correspondences consistent with the estimate (graph output)."""
    corr_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    """(M, 3) matched LiDAR points (LiDAR frame)."""
    corr_uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    """(M, 2) their matched pixels in the ORIGINAL image (OpenCV pixel convention)."""
    corr_weight: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """(M,) correspondence weights in [0, 1]."""
    T_cam_lidar_ransac: np.ndarray | None = None
    """(4, 4) cross-check estimate from cv2.solvePnPRansac (when enabled and solvable)."""
    latency_ms: dict = field(default_factory=dict)
    """Per stage: preprocess, graph, post (milliseconds; post includes the alignment check)."""
    alignment_margin: float | None = None
    """``refinement.alignment_check`` margin (None: not run)."""
    travel_angle_deg: float | None = None
    """Angle between the direction of travel the estimate predicts and the images' own
    (``crossi2p.travel_check``, set by the pipeline; None: not checked)."""
    intensity_detected: str = ""
    """Scale the frame's intensities looked like when preprocessed (``missing``, ``unit``,
    ``byte``, ``uint16``, ``other``; ``preprocess.detect_intensity_scale``)."""
    intensity_applied: str = ""
    """Normalisation the card's ``lidar_intensity`` policy applied (e.g. ``fixed x1``)."""


class ModelLoadError(RuntimeError):
    """The model card or graph is missing, corrupt, or does not match its card."""


def _select_providers(choice: ExecutionProvider) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if choice == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelLoadError(f"execution_provider 'cuda' asked for, but onnxruntime offers only "
                                 f"{available} (install onnxruntime-gpu with a CUDA runtime)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class CalibrationRuntime:
    """Runs the exported graph on frames (create once; reuse for every frame; ``close`` frees it)."""

    def __init__(self, model_card_path: str | Path, config: RuntimeConfig | None = None):
        import onnxruntime as ort

        self.config = config or RuntimeConfig()
        try:
            card_path = resolve_model_card(model_card_path)     # a card, or the .onnx beside its card
            self.card = ModelCard.load(card_path)
        except (FileNotFoundError, ValueError) as exc:
            raise ModelLoadError(str(exc)) from None
        onnx_path = card_path.parent / self.card.onnx_file
        if not onnx_path.is_file():
            raise ModelLoadError(f"model graph {onnx_path}: file not found (named by {card_path})")
        digest = sha256_of_file(onnx_path)
        if digest != self.card.onnx_sha256:
            raise ModelLoadError(f"model graph {onnx_path}: sha256 {digest[:12]}... does not match the "
                                 f"card's {self.card.onnx_sha256[:12]}... (wrong or corrupted file)")
        self.preprocess_config = PreprocessConfig.from_dict(self.card.preprocess)
        options = ort.SessionOptions()
        if self.config.intra_op_threads > 0:
            options.intra_op_num_threads = self.config.intra_op_threads
        try:
            self.session = ort.InferenceSession(str(onnx_path), options,
                                                providers=_select_providers(self.config.execution_provider))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"model graph {onnx_path}: onnxruntime cannot load it ({exc})") from None
        self._check_interface(onnx_path)
        self.providers = self.session.get_providers()
        pc = self.preprocess_config
        # Input buffers reused frame after frame.
        self._inputs = {
            "image": np.zeros((1, 3, pc.image_height, pc.image_width), np.float32),
            "points": np.zeros((1, pc.num_points, 4), np.float32),
            "K": np.zeros((1, 3, 3), np.float32),
            "T_prior": np.eye(4, dtype=np.float32)[None].copy(),
            "prior_weight": np.zeros((1,), np.float32),
        }

    def _check_interface(self, onnx_path: Path) -> None:
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if tuple(got_in) != GRAPH_INPUTS or tuple(got_out) != GRAPH_OUTPUTS:
            raise ModelLoadError(f"model graph {onnx_path}: interface {got_in} -> {got_out} does not match "
                                 f"the runtime's {list(GRAPH_INPUTS)} -> {list(GRAPH_OUTPUTS)}")
        card_in = [t.name for t in self.card.inputs]
        if tuple(card_in) != GRAPH_INPUTS:
            raise ModelLoadError(f"model card for {onnx_path}: inputs {card_in} do not match the graph")
        # the image size the card's preprocessing makes must be the one the graph takes (a fixed
        # dimension; a symbolic one takes any): else every frame would fail in onnxruntime
        image = self.session.get_inputs()[GRAPH_INPUTS.index("image")].shape
        want = (self.preprocess_config.image_height, self.preprocess_config.image_width)
        fixed = [d if isinstance(d, int) else None for d in image[-2:]]
        if any(f is not None and f != w for f, w in zip(fixed, want)):
            raise ModelLoadError(f"model card for {onnx_path}: preprocess makes {want[0]}x{want[1]} (HxW) images "
                                 f"but the graph takes {image[-2]}x{image[-1]}")

    def close(self) -> None:
        """Release the onnxruntime session."""
        self.session = None

    def estimate(self, image_rgb: np.ndarray, points: np.ndarray, camera: CameraModel,
                 T_prior: np.ndarray | None = None) -> FrameEstimate:
        """Estimate ``T_cam_lidar`` from one frame; never raises on bad frame data.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image matching ``camera``.
            points: (N, 3+) LiDAR points ``x, y, z[, intensity]`` in the LiDAR frame.
            camera: the image's camera model.
            T_prior: optional (4, 4) prior of ``T_cam_lidar`` (``refine`` mode).
        """
        if self.session is None:
            raise RuntimeError("CalibrationRuntime.estimate called after close()")
        t0 = time.perf_counter()
        try:
            frame = self._preprocess(image_rgb, points, camera)
        except ValueError as exc:
            return FrameEstimate(valid=False, reason=f"bad input: {exc}")
        pc_inputs = self._inputs
        pc_inputs["image"][0] = frame.image
        pc_inputs["points"][0] = frame.points
        pc_inputs["K"][0] = frame.K
        if T_prior is not None:
            pc_inputs["T_prior"][0] = check_transform(T_prior, "T_prior")
            pc_inputs["prior_weight"][0] = 1.0
        else:
            pc_inputs["T_prior"][0] = np.eye(4, dtype=np.float32)
            pc_inputs["prior_weight"][0] = 0.0
        t1 = time.perf_counter()
        outputs = dict(zip(GRAPH_OUTPUTS, self.session.run(list(GRAPH_OUTPUTS), pc_inputs)))
        t2 = time.perf_counter()
        result = self._postprocess(outputs, frame, camera)
        result.intensity_detected, result.intensity_applied = frame.intensity_detected, frame.intensity_applied
        if result.valid and self.config.alignment_check:
            self._check_alignment(result, image_rgb, points, camera)
        t3 = time.perf_counter()
        result.latency_ms = {"preprocess": 1e3 * (t1 - t0), "graph": 1e3 * (t2 - t1), "post": 1e3 * (t3 - t2)}
        return result

    # ----------------------------------------------------------------------------- internals
    def _check_alignment(self, est: FrameEstimate, image_rgb, points, camera: CameraModel) -> None:
        """Mark ``est`` invalid when image and LiDAR do not agree at it (RuntimeConfig.alignment_*)."""
        cfg = self.config
        # the levels the check was measured with (docs/benchmarks.md section 9), not the refinement's
        # and one NID over all points alone (the segment term's image segmentation costs about 0.5 s
        # a frame; the depth bands were not measured for this check)
        rcfg = RefinementConfig(max_width_px=cfg.alignment_max_width_px, seed=cfg.seed, sigmas_px=(4.0, 2.0),
                                segment_weight=0.0, nid_depth_bands=1)
        frame = prepare_frame(image_rgb, points, camera, est.T_cam_lidar, rcfg)
        check = alignment_check(frame, est.T_cam_lidar, cfg.alignment_offset_deg, cfg.alignment_offset_m,
                                cfg.alignment_min_margin, rcfg)
        est.alignment_margin = check.margin
        if not check.passed:
            est.valid, est.reason = False, f"alignment check: {check.reason}"

    def _preprocess(self, image_rgb, points, camera):
        pts = np.asarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise ValueError(f"points: expected (N, 3+) x, y, z[, intensity], got shape {pts.shape}")
        if pts.shape[1] == 3:
            pts = np.hstack([pts, np.zeros((len(pts), 1), np.float32)])
        pts = pts[:, :4]
        finite = np.all(np.isfinite(pts[:, :3]), axis=1)
        rng_m = np.linalg.norm(pts[:, :3], axis=1)
        pc = self.preprocess_config
        in_range = finite & (rng_m >= pc.min_range_m) & (rng_m <= pc.max_range_m)
        if int(in_range.sum()) < self.config.min_points_in_range:
            raise ValueError(f"points: {int(in_range.sum())} finite points within "
                             f"{pc.min_range_m}-{pc.max_range_m} m, need >= {self.config.min_points_in_range}")
        img = np.asarray(image_rgb)
        if img.shape != (camera.height, camera.width, 3) or img.dtype != np.uint8:
            raise ValueError(f"image: expected ({camera.height}, {camera.width}, 3) uint8 RGB to match the "
                             f"camera info, got {img.shape} {img.dtype}")
        return preprocess_frame(img, pts, camera, pc, np.random.default_rng(self.config.seed))

    def _postprocess(self, out: dict, frame, camera: CameraModel) -> FrameEstimate:
        cfg = self.config
        T = out["T_cam_lidar"][0].astype(np.float64)
        conf = float(out["confidence"].reshape(-1)[0])
        inlier_ratio = float(out["inlier_ratio"].reshape(-1)[0])
        corr_points = out["corr_points"][0]
        corr_uv_pre = out["corr_uv"][0]
        weight = out["corr_weight"][0]
        est = FrameEstimate(valid=True, confidence=conf, inlier_ratio=inlier_ratio,
                            corr_points=corr_points, corr_weight=weight,
                            corr_uv=self._to_original_pixels(corr_uv_pre, frame.camera, camera))
        # Re-orthonormalise (float32 graph output) before checking.
        if np.all(np.isfinite(T)):
            U, _, Vt = np.linalg.svd(T[:3, :3])
            T = make_transform(U @ np.diag([1, 1, np.linalg.det(U @ Vt)]) @ Vt, T[:3, 3])
        try:
            est.T_cam_lidar = check_transform(T, "graph output T_cam_lidar", atol=1e-3)
        except ValueError as exc:
            est.valid, est.reason = False, str(exc)
            return est
        lever_arm_m = float(np.linalg.norm(est.T_cam_lidar[:3, 3]))
        if cfg.max_lever_arm_m and lever_arm_m > cfg.max_lever_arm_m:
            est.valid, est.reason = False, (f"sensors {lever_arm_m:.1f} m apart under the estimate, more than "
                                            f"max_lever_arm_m {cfg.max_lever_arm_m:g}")
            return est
        n_good = self._consistent_correspondences(est.T_cam_lidar, corr_points, corr_uv_pre, weight, frame.camera)
        if n_good < cfg.min_correspondences:
            est.valid, est.reason = False, (f"{n_good} correspondences consistent with the estimate (weight >= "
                                            f"{cfg.min_relative_weight} x max, within {cfg.inlier_reprojection_px} px), "
                                            f"need {cfg.min_correspondences}")
        elif conf < cfg.min_confidence:
            est.valid, est.reason = False, f"confidence {conf:.3f} below {cfg.min_confidence}"
        if cfg.ransac_cross_check:
            est.T_cam_lidar_ransac = self._ransac(corr_points, corr_uv_pre, weight, frame.K)
        return est

    def _weighted(self, weight: np.ndarray) -> np.ndarray:
        """(M,) bool: correspondences whose weight counts (relative to the frame's largest)."""
        if weight.size == 0 or not np.isfinite(weight).all() or weight.max() <= 0:
            return np.zeros(weight.shape, bool)
        return weight >= self.config.min_relative_weight * weight.max()

    def _consistent_correspondences(self, T_cam_lidar, points, uv, weight, pinhole: CameraModel) -> int:
        """Weighted correspondences that reproject within ``inlier_reprojection_px`` under the
        estimate (``pinhole``: the preprocessed image's camera, the one ``uv`` is in)."""
        keep = self._weighted(weight)
        proj, _, in_front = pinhole.project(transform_points(T_cam_lidar, points[keep].astype(np.float64)))
        err = np.linalg.norm(proj[in_front] - uv[keep][in_front], axis=1)
        return int((err <= self.config.inlier_reprojection_px).sum())

    @staticmethod
    def _to_original_pixels(uv_pre: np.ndarray, pinhole: CameraModel, camera: CameraModel) -> np.ndarray:
        """Pixels of the preprocessed pinhole image -> pixels of the original (distorted) image."""
        if len(uv_pre) == 0:
            return np.zeros((0, 2), np.float32)
        rays = np.column_stack([(uv_pre[:, 0] - pinhole.K[0, 2]) / pinhole.K[0, 0],
                                (uv_pre[:, 1] - pinhole.K[1, 2]) / pinhole.K[1, 1],
                                np.ones(len(uv_pre))])
        uv, _, _ = camera.project(rays)
        return uv.astype(np.float32)

    def _ransac(self, points, uv, weight, K) -> np.ndarray | None:
        keep = self._weighted(weight)
        if keep.sum() < 6:
            return None
        ok, rvec, tvec, _ = cv2.solvePnPRansac(points[keep].astype(np.float64), uv[keep].astype(np.float64),
                                               K.astype(np.float64), None,
                                               reprojectionError=self.config.ransac_reprojection_px,
                                               iterationsCount=200, flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            return None
        return make_transform(cv2.Rodrigues(rvec)[0], tvec.reshape(3))

