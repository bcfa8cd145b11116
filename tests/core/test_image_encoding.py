"""crossi2p.image_encoding: sensor_msgs/Image and CompressedImage <-> RGB uint8."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from crossi2p.image_encoding import (
    SUPPORTED_ENCODINGS,
    compressed_image_to_rgb,
    image_to_rgb,
    message_to_rgb,
    rgb_to_compressed,
    rgb_to_image_fields,
    scale_to_uint8,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def image_msg(pixels: np.ndarray, encoding: str, pad: int = 0, is_bigendian: bool = False):
    """Image message with ``pad`` junk bytes after each row."""
    h = pixels.shape[0]
    rows = pixels.reshape(h, -1).view(np.uint8).reshape(h, -1)
    data = np.hstack([rows, np.full((h, pad), 0xCD, np.uint8)]).tobytes()
    return SimpleNamespace(height=h, width=pixels.shape[1], encoding=encoding, is_bigendian=is_bigendian,
                           step=rows.shape[1] + pad, data=data)


@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("8UC3", RGB[:, :, ::-1]),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 7, np.uint8)])),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_decode_to_rgb(encoding, pixels, pad):
    out = image_to_rgb(image_msg(np.ascontiguousarray(pixels), encoding, pad))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_grey_encodings_replicate_to_three_channels(encoding):
    grey = RGB[:, :, 0].copy()
    out = image_to_rgb(image_msg(grey, encoding, pad=1))
    np.testing.assert_array_equal(out, np.dstack([grey] * 3))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("is_bigendian", [False, True])
def test_sixteen_bit_is_scaled_robustly_and_honours_endianness(encoding, is_bigendian):
    ramp = np.linspace(1000, 4000, 100 * 40).reshape(40, 100).astype(np.uint16)
    ramp[0, 0] = 65535  # one hot pixel must not squash the range
    pixels = ramp.astype(">u2" if is_bigendian else "<u2")
    out = image_to_rgb(image_msg(pixels, encoding, pad=2, is_bigendian=is_bigendian))
    assert out.shape == (40, 100, 3) and np.array_equal(out[..., 0], out[..., 1])
    grey = out[..., 0].astype(int).reshape(-1)[1:]
    assert np.all(np.diff(grey) >= 0)  # monotonic
    assert grey[:30].max() <= 3 and grey[-30:].min() >= 252  # ~1st/99th percentiles -> 0/255
    assert 120 <= grey[len(grey) // 2] <= 135


def test_rgb16_scales_all_channels_together():
    pixels = (RGB.astype(np.uint16) * 256).astype("<u2")
    out = image_to_rgb(image_msg(pixels, "rgb16"))
    assert np.corrcoef(out.reshape(-1), RGB.reshape(-1))[0, 1] > 0.99


@pytest.mark.parametrize("encoding, first_rows", [
    ("bayer_rggb8", ("RG", "GB")),
    ("bayer_bggr8", ("BG", "GR")),
    ("bayer_gbrg8", ("GB", "RG")),
    ("bayer_grbg8", ("GR", "BG")),
])
def test_bayer_patterns_demosaic_to_the_right_colour(encoding, first_rows):
    colour = {"R": 200, "G": 90, "B": 20}
    mosaic = np.zeros((8, 8), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = colour[first_rows[dy][dx]]
    out = image_to_rgb(image_msg(mosaic, encoding))
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3).mean(0), [200, 90, 20], atol=2)


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422_grey(encoding):
    y = 150
    pair = [128, y, 128, y] if encoding in ("yuv422", "uyvy") else [y, 128, y, 128]
    pixels = np.tile(np.array(pair, np.uint8), (4, 4)).reshape(4, 8, 2)
    out = image_to_rgb(image_msg(pixels, encoding))
    assert out.shape == (4, 8, 3)
    np.testing.assert_allclose(out, 255 / 219 * (y - 16), atol=2)  # BT.601 video range, grey


def test_unsupported_encoding_names_it_and_lists_supported():
    with pytest.raises(ValueError) as info:
        image_to_rgb(image_msg(RGB[:, :, 0].copy(), "yuv420_nv12"))
    text = str(info.value)
    assert "'yuv420_nv12'" in text and "rgb8" in text and "mono16" in text and "bayer_rggb8" in text
    assert set(SUPPORTED_ENCODINGS) >= {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "8UC1", "8UC3"}


@pytest.mark.parametrize("change, message", [
    ({"data": b"\0" * 10}, "data has 10 bytes, expected step 21 x height 5 = 105"),
    ({"step": 20}, "step 20 < width 7 x 3 channel"),
    ({"height": 0}, "empty size"),
])
def test_inconsistent_image_sizes_are_clear_errors(change, message):
    msg = image_msg(RGB, "rgb8")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(ValueError, match=message):
        image_to_rgb(msg)


def test_encode_back_round_trip_as_rgb8():
    fields = rgb_to_image_fields(RGB)
    assert fields["encoding"] == "rgb8" and fields["step"] == 21 and fields["is_bigendian"] == 0
    np.testing.assert_array_equal(image_to_rgb(SimpleNamespace(**fields)), RGB)


def test_png_compressed_is_lossless_and_jpeg_close():
    smooth = cv2.GaussianBlur(RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8), (9, 9), 3)
    fmt, data = rgb_to_compressed(smooth, "png")
    assert fmt == "png"
    np.testing.assert_array_equal(compressed_image_to_rgb(SimpleNamespace(format=fmt, data=data)), smooth)
    fmt, data = rgb_to_compressed(smooth, "jpeg", jpeg_quality=95)
    out = message_to_rgb(SimpleNamespace(format=fmt, data=np.frombuffer(data, np.uint8)))
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_ros_style_compressed_formats_and_compressed_depth():
    fmt, data = rgb_to_compressed(RGB, "png")
    out = compressed_image_to_rgb(SimpleNamespace(format="rgb8; png compressed bgr8", data=data))
    np.testing.assert_array_equal(out, RGB)
    depth = np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 10
    ok, png = cv2.imencode(".png", depth)
    msg = SimpleNamespace(format="16UC1; compressedDepth png", data=b"\0" * 12 + png.tobytes())
    out = compressed_image_to_rgb(msg)
    assert out.shape == (30, 40, 3) and out[0, 0, 0] < out[-1, -1, 0]


def test_undecodable_or_unsupported_compressed_image_is_a_clear_error():
    with pytest.raises(ValueError, match=r"CompressedImage \('jpeg'\): 5 bytes could not be decoded"):
        compressed_image_to_rgb(SimpleNamespace(format="jpeg", data=b"hello"))
    with pytest.raises(ValueError, match="unsupported CompressedImage format 'h264'"):
        compressed_image_to_rgb(SimpleNamespace(format="h264", data=b"\0\0\1"))


def test_scale_to_uint8_constant_image():
    assert scale_to_uint8(np.full((3, 3), 7, np.uint16)).max() == 0


def test_rosbags_image_through_cdr():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam")
    msg = T["sensor_msgs/msg/Image"](header=header, **rgb_to_image_fields(RGB))
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    np.testing.assert_array_equal(message_to_rgb(back), RGB)
