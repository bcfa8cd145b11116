"""Stateless tensor functions used by the model modules, the losses and the target builder.

Every function takes batched tensors (leading ``B``), returns new tensors, and is written with
plain tensor ops that export to ONNX (opset 17, ``dynamo=False``) with a dynamic point count:
no ``torch.cdist``, no ``torch.linalg``, no Python control flow on tensor values.

Frame convention (docs): ``T_a_b`` maps points from frame ``b`` into frame ``a``.
Pixels follow OpenCV: integer coordinates at pixel centres.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, List, Tuple

import torch
from torch import Tensor

__all__ = [
    "transform_points",
    "project_points",
    "pairwise_sq_distance",
    "knn",
    "gather_points",
    "count_points",
    "strided_indices",
    "farthest_point_sample",
    "scripted_when_exporting",
    "cell_centers_px",
    "sine_position_encoding_2d",
    "window_indices",
    "bilinear_sample",
]


def transform_points(T_a_b: Tensor, points_b: Tensor) -> Tensor:
    """Map points from frame b into frame a.

    Args:
        T_a_b: (B, 4, 4) transforms.
        points_b: (B, N, 3) points (extra trailing columns are ignored).
    Returns:
        (B, N, 3) points in frame a.
    """
    R = T_a_b[:, :3, :3]                                            # (B, 3, 3)
    t = T_a_b[:, :3, 3]                                             # (B, 3)
    return points_b[..., :3] @ R.transpose(1, 2) + t[:, None, :]


def project_points(K: Tensor, points_cam: Tensor, min_depth: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """Pinhole projection of camera-frame points.

    Args:
        K: (B, 3, 3) intrinsics.
        points_cam: (B, N, 3) points, z forward.
    Returns:
        uv: (B, N, 2) pixels (finite everywhere; meaningless where not ``front``),
        depth: (B, N) z,
        front: (B, N) bool, ``z > min_depth``.
    """
    z = points_cam[..., 2]                                          # (B, N)
    front = z > min_depth
    zs = torch.where(front, z, torch.ones_like(z))
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]                     # (B, 1)
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    u = fx * points_cam[..., 0] / zs + cx
    v = fy * points_cam[..., 1] / zs + cy
    return torch.stack([u, v], dim=-1), z, front


def pairwise_sq_distance(a: Tensor, b: Tensor, clamp: bool = True) -> Tensor:
    """Squared Euclidean distances ``|a_i - b_j|^2`` as ONE matmul of augmented vectors
    ``[a, |a|^2, 1] . [-2b, 1, |b|^2]`` (several times faster on CPU than the three-term form).

    Args:
        a: (B, N, C), b: (B, M, C).
        clamp: clamp the (rounding-negative) result at 0.
    Returns:
        (B, N, M).
    """
    one_a, one_b = torch.ones_like(a[..., :1]), torch.ones_like(b[..., :1])
    aa = torch.cat([a, (a * a).sum(-1, keepdim=True), one_a], -1)   # (B, N, C+2)
    bb = torch.cat([-2.0 * b, one_b, (b * b).sum(-1, keepdim=True)], -1)  # (B, M, C+2)
    d = aa @ bb.transpose(1, 2)
    return d.clamp_min(0.0) if clamp else d


def knn(query: Tensor, ref: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest neighbours of each query point among the reference points, nearest first.

    Both sets are centred on the reference centroid first (the matmul distance loses precision
    far from the origin). The squared distances are recomputed exactly from the coordinates.

    Args:
        query: (B, M, 3), ref: (B, N, 3) with ``N >= k``.
    Returns:
        sq_dist: (B, M, k) squared distances, index: (B, M, k) int64 rows of ``ref``.
    """
    c = ref.mean(1, keepdim=True)
    d = pairwise_sq_distance(query - c, ref - c, clamp=False)      # (B, M, N)
    _, idx = torch.topk(d, k, dim=-1, largest=False, sorted=True)
    exact = ((gather_points(ref, idx) - query[:, :, None, :]) ** 2).sum(-1)   # (B, M, k)
    return exact, idx


def gather_points(x: Tensor, index: Tensor) -> Tensor:
    """Rows of ``x`` picked per batch.

    Args:
        x: (B, N, C).
        index: (B, *S) int64 in ``[0, N)`` (any trailing shape S).
    Returns:
        (B, *S, C).
    """
    B, C = x.shape[0], x.shape[-1]
    flat = index.reshape(B, -1)                                     # (B, S')
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, C))  # (B, S', C)
    return out.reshape(index.shape + (C,))


def count_points(points: Tensor) -> Tensor:
    """Number of points ``N`` of (B, N, C) as a traced float tensor (0-dim).

    Written as a sum so that an ONNX graph traced with one N stays correct for another N.
    """
    return torch.ones_like(points[0, :, 0]).sum()


def strided_indices(points: Tensor, m: int) -> Tensor:
    """``m`` indices spread evenly over the N points of (B, N, C): ``floor(i * N / m)``.

    Returns:
        (m,) int64 (same for every batch element; requires ``N >= m`` for distinct indices).
    """
    n = count_points(points)
    i = torch.arange(m, device=points.device, dtype=points.dtype)
    return torch.floor(i * n / m).long()


def scripted_when_exporting(fn: Callable) -> Callable:
    """``fn`` as it is in eager mode (training, evaluation); its TorchScript compilation while
    ``torch.onnx.export`` traces the model, so that the Python ``for`` loops in ``fn`` export as
    ONNX ``Loop`` nodes instead of being unrolled into thousands of nodes (the legacy exporter
    inlines a scripted function called from traced code with its loops intact).

    Same source, same arithmetic, in both modes. ``fn`` must be TorchScript-compatible (typed
    arguments: tensors, ints, floats, strings; helper functions it calls are compiled with it)
    and is compiled once, on first export. Call it with positional arguments.
    """
    compiled: list[Callable] = []

    @functools.wraps(fn)
    def call(*args):
        if torch.onnx.is_in_onnx_export():
            if not compiled:
                compiled.append(torch.jit.script(fn))
            return compiled[0](*args)
        return fn(*args)

    return call


def _farthest_point_step(xyz: Tensor, flat: Tensor, base: Tensor, dist: Tensor) -> Tuple[Tensor, Tensor]:
    """One FPS step: the point farthest from the chosen set, and the updated distances (B, N)."""
    nxt = torch.argmax(dist, dim=1)                                   # (B,)
    last = torch.index_select(flat, 0, nxt + base).unsqueeze(1)      # (B, 1, 3)
    return nxt, torch.minimum(dist, ((xyz - last) ** 2).sum(-1))


def _farthest_point_loop(xyz: Tensor, m: int) -> Tensor:
    B, N = xyz.shape[0], xyz.shape[1]
    flat = xyz.reshape(-1, 3)                                         # (B * N, 3)
    base = torch.arange(B, device=xyz.device) * N                     # (B,) row offsets into flat
    chosen: List[Tensor] = [torch.zeros_like(base).unsqueeze(1)]      # (B, k) blocks
    dist = ((xyz - xyz[:, :1, :]) ** 2).sum(-1)                       # (B, N)
    # four steps per pass: as an ONNX Loop, a quarter of the iterations (each has a fixed cost,
    # and each appended block another); the same steps in the same order as one per pass
    for _ in range((m - 1) // 4):
        n1, dist = _farthest_point_step(xyz, flat, base, dist)
        n2, dist = _farthest_point_step(xyz, flat, base, dist)
        n3, dist = _farthest_point_step(xyz, flat, base, dist)
        n4, dist = _farthest_point_step(xyz, flat, base, dist)
        chosen.append(torch.stack([n1, n2, n3, n4], dim=1))
    for _ in range((m - 1) % 4):
        nxt, dist = _farthest_point_step(xyz, flat, base, dist)
        chosen.append(nxt.unsqueeze(1))
    return torch.cat(chosen, dim=1)


_farthest_point_exportable = scripted_when_exporting(_farthest_point_loop)


def farthest_point_sample(xyz: Tensor, m: int) -> Tensor:
    """Deterministic farthest point sampling (``m`` steps; exports as one ONNX ``Loop``).

    Starts from point 0, then repeatedly takes the point farthest from the chosen set
    (ties: lowest index, as ``argmax``).

    Args:
        xyz: (B, N, 3) with ``N >= m``.
    Returns:
        (B, m) int64 indices into the N points.
    """
    with torch.no_grad():
        return _farthest_point_exportable(xyz, int(m))


def cell_centers_px(height: int, width: int, stride: int, device=None, dtype=torch.float32) -> Tensor:
    """Image-pixel coordinates of the centres of a feature map's cells.

    A cell ``(i, j)`` of a stride-``s`` map covers pixels ``[j*s, (j+1)*s)``, so its centre is at
    ``u = (j + 0.5) * s - 0.5`` (OpenCV pixel-centre convention).

    Returns:
        (height * width, 2) ``(u, v)`` in row-major cell order.
    """
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    uv = torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)
    return (uv + 0.5) * stride - 0.5


def sine_position_encoding_2d(dim: int, height: int, width: int, device=None,
                              dtype=torch.float32, max_period: float = 10000.0) -> Tensor:
    """2D sine/cosine position encoding of a feature map (LoFTR/DETR style).

    Channels ``[0, dim/2)`` encode the column, ``[dim/2, dim)`` the row.

    Returns:
        (dim, height, width).
    """
    if dim % 4:
        raise ValueError(f"sine_position_encoding_2d: dim must be a multiple of 4, got {dim}")
    q = dim // 4
    freq = torch.exp(torch.arange(q, device=device, dtype=dtype) * (-math.log(max_period) / q))  # (q,)
    ys = torch.arange(height, device=device, dtype=dtype)[:, None, None] * freq                 # (H, 1, q)
    xs = torch.arange(width, device=device, dtype=dtype)[None, :, None] * freq                  # (1, W, q)
    ex = torch.cat([torch.sin(xs), torch.cos(xs)], -1).expand(height, width, 2 * q)
    ey = torch.cat([torch.sin(ys), torch.cos(ys)], -1).expand(height, width, 2 * q)
    return torch.cat([ex, ey], -1).permute(2, 0, 1).contiguous()


def window_indices(cell: Tensor, coarse_width: int, ratio: int, margin: int,
                   fine_height: int, fine_width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Fine-map cells of the window around coarse cells.

    The window of coarse cell ``(i, j)`` spans fine rows ``[i*r - m, (i+1)*r + m)`` and columns
    likewise (``r = ratio``, ``m = margin``): ``w = r + 2m`` cells a side.

    Args:
        cell: (B, K) int64 row-major coarse cell indices.
    Returns:
        flat: (B, K, w*w) int64 row-major fine-cell indices (clamped into the map),
        xy: (B, K, w*w, 2) float fine-cell coordinates ``(x, y)`` (not clamped),
        inside: (B, K, w*w) bool, the cell lies inside the fine map.
    """
    w = ratio + 2 * margin
    ci = torch.div(cell, coarse_width, rounding_mode="floor")        # (B, K)
    cj = cell - ci * coarse_width
    off = torch.arange(w, device=cell.device) - margin               # (w,)
    fy = (ci * ratio)[..., None, None] + off[:, None]                # (B, K, w, 1)
    fx = (cj * ratio)[..., None, None] + off[None, :]                # (B, K, 1, w)
    fy, fx = torch.broadcast_tensors(fy, fx)                         # (B, K, w, w)
    fy, fx = fy.reshape(cell.shape + (w * w,)), fx.reshape(cell.shape + (w * w,))
    inside = (fy >= 0) & (fy < fine_height) & (fx >= 0) & (fx < fine_width)
    flat = fy.clamp(0, fine_height - 1) * fine_width + fx.clamp(0, fine_width - 1)
    xy = torch.stack([fx, fy], -1).to(torch.float32)
    return flat, xy, inside


def bilinear_sample(feat: Tensor, uv: Tensor, stride: int) -> Tensor:
    """Sample a feature map at image pixels (bilinear; zeros outside). Training-side helper.

    Args:
        feat: (B, C, h, w) map of stride ``stride`` (cell centre ``(j + 0.5) * s - 0.5``).
        uv: (B, N, 2) image pixel coordinates.
    Returns:
        (B, N, C).
    """
    h, w = feat.shape[-2:]
    # image pixel -> feature-map continuous coordinate -> [-1, 1] (align_corners=False)
    x = (uv[..., 0] + 0.5) / (stride * w) * 2.0 - 1.0
    y = (uv[..., 1] + 0.5) / (stride * h) * 2.0 - 1.0
    grid = torch.stack([x, y], -1)[:, :, None, :]                     # (B, N, 1, 2)
    out = torch.nn.functional.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)       # (B, C, N, 1)
    return out[..., 0].transpose(1, 2)
