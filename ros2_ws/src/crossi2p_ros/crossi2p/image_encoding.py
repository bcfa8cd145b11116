"""sensor_msgs/Image and CompressedImage <-> (H, W, 3) uint8 RGB, without cv_bridge.

Duck-typed like ``crossi2p.pointcloud2``: an Image is anything with ``height, width,
encoding, is_bigendian, step, data``; a CompressedImage anything with ``format, data``
(rclpy messages, rosbags messages, plain objects).

Decoding (``image_to_rgb``, ``compressed_image_to_rgb``, ``message_to_rgb``):

- 8-bit colour: ``rgb8 bgr8 rgba8 bgra8`` (alpha dropped), ``8UC3`` (read as BGR, OpenCV's
  order, as cv_bridge does), ``8UC4`` (BGRA);
- 8-bit grey: ``mono8 8UC1`` (replicated to 3 channels);
- 16-bit: ``mono16 16UC1 rgb16 bgr16 rgba16 bgra16 16UC3``, honouring ``is_bigendian``,
  scaled to 8 bit with a robust stretch (``scale_to_uint8``: 1st..99th percentile -> 0..255);
- Bayer: ``bayer_rggb8 bayer_bggr8 bayer_gbrg8 bayer_grbg8`` (OpenCV demosaicing);
- YUV 4:2:2: ``yuv422`` / ``uyvy`` (UYVY) and ``yuv422_yuy2`` / ``yuyv`` (YUYV);
- ``step`` larger than a row needs (row padding);
- CompressedImage: whatever ``cv2.imdecode`` reads (JPEG, PNG, ...), formats such as
  ``jpeg``, ``png``, ``rgb8; jpeg compressed bgr8``; ``compressedDepth`` PNGs (their 12-byte
  header is skipped, then scaled as 16-bit).

Anything else raises ``ValueError`` naming the encoding and listing ``SUPPORTED_ENCODINGS``.

Encoding (for writers): ``rgb_to_image_fields`` (the fields of an ``rgb8`` Image) and
``rgb_to_compressed`` (``format`` string + JPEG/PNG bytes).
"""
from __future__ import annotations

import array
from typing import Any, Literal

import cv2
import numpy as np

__all__ = [
    "SUPPORTED_ENCODINGS",
    "image_to_rgb",
    "compressed_image_to_rgb",
    "message_to_rgb",
    "scale_to_uint8",
    "rgb_to_image_fields",
    "rgb_to_compressed",
]

# encoding -> (channels, numpy type, cv2 conversion to RGB or None for "already RGB"/special)
_RAW: dict[str, tuple[int, str, int | None]] = {
    "rgb8": (3, "u1", None),
    "bgr8": (3, "u1", cv2.COLOR_BGR2RGB),
    "rgba8": (4, "u1", cv2.COLOR_RGBA2RGB),
    "bgra8": (4, "u1", cv2.COLOR_BGRA2RGB),
    "8UC3": (3, "u1", cv2.COLOR_BGR2RGB),
    "8UC4": (4, "u1", cv2.COLOR_BGRA2RGB),
    "mono8": (1, "u1", cv2.COLOR_GRAY2RGB),
    "8UC1": (1, "u1", cv2.COLOR_GRAY2RGB),
    "mono16": (1, "u2", cv2.COLOR_GRAY2RGB),
    "16UC1": (1, "u2", cv2.COLOR_GRAY2RGB),
    "rgb16": (3, "u2", None),
    "bgr16": (3, "u2", cv2.COLOR_BGR2RGB),
    "rgba16": (4, "u2", cv2.COLOR_RGBA2RGB),
    "bgra16": (4, "u2", cv2.COLOR_BGRA2RGB),
    "16UC3": (3, "u2", cv2.COLOR_BGR2RGB),
    # ROS names the Bayer pattern by its first row; OpenCV by the second row's 2nd/3rd pixel
    # (the same mapping cv_bridge uses).
    "bayer_rggb8": (1, "u1", cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, "u1", cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, "u1", cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, "u1", cv2.COLOR_BayerGB2RGB),
    "yuv422": (2, "u1", cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, "u1", cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, "u1", cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, "u1", cv2.COLOR_YUV2RGB_YUY2),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_RAW)
"""sensor_msgs/Image encodings ``image_to_rgb`` decodes."""


def _as_bytes(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def scale_to_uint8(img: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Any-depth image -> uint8, mapping the ``low_pct``..``high_pct`` percentiles to 0..255.

    Robust to a few hot or dead pixels and to 10/12-bit data stored in 16 bits; zeros (no
    return in depth images) are ignored when estimating the range if anything else is left.
    """
    x = np.asarray(img, dtype=np.float32)
    sample = x.reshape(-1)[:: max(1, x.size // 200_000)]
    nz = sample[sample > 0]
    if nz.size:
        sample = nz
    lo, hi = (np.percentile(sample, [low_pct, high_pct]) if sample.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((x - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)


def image_to_rgb(msg) -> np.ndarray:
    """Decode a sensor_msgs/Image into a (height, width, 3) uint8 RGB array (a copy)."""
    encoding = str(msg.encoding)
    key = encoding if encoding in _RAW else encoding.lower()
    if key not in _RAW:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, kind, conversion = _RAW[key]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0:
        raise ValueError(f"image ({encoding}): empty size {width}x{height}")
    if step < row_bytes:
        raise ValueError(f"image ({encoding}): step {step} < width {width} x {channels} channel(s) x "
                         f"{dtype.itemsize} byte(s) = {row_bytes}")
    data = _as_bytes(msg.data)
    full, trimmed = step * height, step * (height - 1) + row_bytes
    if data.size not in (full, trimmed):
        raise ValueError(f"image ({encoding}): data has {data.size} bytes, expected step {step} x "
                         f"height {height} = {full}")
    rows = np.lib.stride_tricks.as_strided(data, shape=(height, row_bytes), strides=(step, 1))
    img = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    if dtype.itemsize > 1:
        img = scale_to_uint8(img.astype(np.uint16))
    if channels == 1:
        img = img[:, :, 0]
    if conversion is None:
        return np.ascontiguousarray(img)
    return cv2.cvtColor(img, conversion)


def compressed_image_to_rgb(msg) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG, PNG, compressedDepth PNG) into RGB uint8."""
    fmt = str(msg.format)
    data = _as_bytes(msg.data)
    low = fmt.lower()
    if "compresseddepth" in low:
        data = data[12:]  # compressed_depth_image_transport's ConfigHeader precedes the PNG
    elif low and not any(k in low for k in ("jpeg", "jpg", "png", "bmp", "tif", "webp")):
        raise ValueError(f"unsupported CompressedImage format {fmt!r}; supported: jpeg, png "
                         f"(anything cv2.imdecode reads), compressedDepth png")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f"CompressedImage ({fmt!r}): {data.size} bytes could not be decoded")
    if img.dtype != np.uint8:
        img = scale_to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def message_to_rgb(msg) -> np.ndarray:
    """Image or CompressedImage (told apart by their ``encoding`` / ``format`` attribute) -> RGB."""
    if hasattr(msg, "encoding"):
        return image_to_rgb(msg)
    if hasattr(msg, "format"):
        return compressed_image_to_rgb(msg)
    raise ValueError(f"not an Image nor a CompressedImage: {type(msg).__name__}")


# --------------------------------------------------------------------------- encoding
def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def rgb_to_image_fields(rgb: np.ndarray) -> dict:
    """(H, W, 3) uint8 RGB -> the fields of an ``rgb8`` sensor_msgs/Image (all but header).

    ``data`` is a flat uint8 numpy array (what rosbags messages hold; wrap it in
    ``array.array('B', data.tobytes())`` for an rclpy message).
    """
    rgb = _check_rgb(rgb)
    h, w, _ = rgb.shape
    return {"height": h, "width": w, "encoding": "rgb8", "is_bigendian": 0, "step": 3 * w,
            "data": rgb.reshape(-1)}


def rgb_to_compressed(rgb: np.ndarray, fmt: Literal["jpeg", "png"] = "jpeg",
                      jpeg_quality: int = 95) -> tuple[str, bytes]:
    """(H, W, 3) uint8 RGB -> ``(format, data)`` of a sensor_msgs/CompressedImage."""
    rgb = _check_rgb(rgb)
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed format: expected 'jpeg' or 'png', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"cv2.imencode failed for a {rgb.shape} image as {fmt}")
    return fmt, buf.tobytes()
