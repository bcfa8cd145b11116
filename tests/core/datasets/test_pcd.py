"""crossi2p.datasets.pcd and the OpenCalib sample reader."""
from __future__ import annotations

import logging
import struct
import sys

import numpy as np
import pytest

from crossi2p.calib_io import load_calibration_yaml
from crossi2p.datasets.opencalib import load_opencalib_frame, read_opencalib_calibration
from crossi2p.datasets.pcd import read_pcd, read_pcd_xyzi, write_pcd
from crossi2p.geometry import transform_points

POINTS = np.array([[1.5, -2.25, 0.125, 0.5], [10.0, 0.0, -1.0, 1.0], [np.nan, np.nan, np.nan, 0.0]], np.float32)


@pytest.mark.parametrize("binary", [True, False])
def test_write_read_round_trip(tmp_path, binary):
    path = write_pcd(tmp_path / "c.pcd", POINTS, binary=binary)
    arr = read_pcd(path)
    assert arr.dtype.names == ("x", "y", "z", "intensity") and len(arr) == 3
    np.testing.assert_array_equal(read_pcd_xyzi(path), POINTS[:2])  # NaN point dropped


def test_binary_with_mixed_types_and_count(tmp_path):
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"), ("ring", "<u2"),
                   ("rgb", "<f8", (2,))])
    rec = np.zeros(4, dt)
    rec["x"], rec["intensity"], rec["ring"] = [1, 2, 3, 4], [0, 51, 102, 255], [7, 8, 9, 10]
    rec["rgb"] = np.arange(8).reshape(4, 2)
    header = ("VERSION .7\nFIELDS x y z intensity ring rgb\nSIZE 4 4 4 1 2 8\nTYPE F F F U U F\n"
              "COUNT 1 1 1 1 1 2\nWIDTH 4\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA binary\n")
    path = tmp_path / "mixed.pcd"
    path.write_bytes(header.encode() + rec.tobytes())
    arr = read_pcd(path)
    np.testing.assert_array_equal(arr["ring"], [7, 8, 9, 10])
    np.testing.assert_array_equal(arr["rgb"], rec["rgb"])
    np.testing.assert_allclose(read_pcd_xyzi(path)[:, 3], [0, 0.2, 0.4, 1.0])


def test_ascii_with_count_field(tmp_path):
    path = tmp_path / "a.pcd"
    path.write_text("FIELDS x y z normal\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 3\nWIDTH 2\nHEIGHT 1\n"
                    "POINTS 2\nDATA ascii\n1 2 3 0 0 1\n4 5 6 0 1 0\n")
    arr = read_pcd(path)
    np.testing.assert_array_equal(arr["normal"], [[0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(read_pcd_xyzi(path), [[1, 2, 3, 0], [4, 5, 6, 0]])


# Every PCD TYPE/SIZE the specification has, with the extreme values of each integer type.
ALL_TYPES = [("i8_", "I", 1, "<i1"), ("i16", "I", 2, "<i2"), ("i32", "I", 4, "<i4"), ("i64", "I", 8, "<i8"),
             ("u8_", "U", 1, "<u1"), ("u16", "U", 2, "<u2"), ("u32", "U", 4, "<u4"), ("u64", "U", 8, "<u8"),
             ("f64", "F", 8, "<f8")]


def all_types_records(n: int = 5) -> np.ndarray:
    rng = np.random.default_rng(5)
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + [(name, code) for name, _, _, code in ALL_TYPES]
                  + [("normal", "<f4", (3,))])
    rec = np.zeros(n, dt)
    for c in ("x", "y", "z"):
        rec[c] = rng.uniform(-80, 80, n).astype(np.float32)
    for name, typ, _, code in ALL_TYPES:
        if typ == "F":
            rec[name] = rng.normal(size=n) * 1e3
        else:
            info = np.iinfo(code)
            rec[name] = [info.min, info.max, 0, 1, info.max - 1][:n]
    rec["normal"] = rng.normal(size=(n, 3)).astype(np.float32)
    return rec


def pcd_bytes(rec: np.ndarray, types: list[tuple[str, str, int, int]], kind: str, body: bytes | None = None) -> bytes:
    """A PCD file of ``rec`` (packed little-endian records) declared with ``types``: (name, TYPE, SIZE, COUNT);
    ``body`` replaces the data written after the header."""
    n = len(rec)
    header = ("# .PCD v0.7\nVERSION 0.7\nFIELDS " + " ".join(t[0] for t in types) + "\nSIZE "
              + " ".join(str(t[2]) for t in types) + "\nTYPE " + " ".join(t[1] for t in types) + "\nCOUNT "
              + " ".join(str(t[3]) for t in types) + f"\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
              f"POINTS {n}\nDATA {kind}\n").encode()
    if body is not None:
        return header + body
    if kind == "binary":
        return header + rec.tobytes()
    if kind == "binary_compressed":
        import lzf

        raw = b"".join(np.ascontiguousarray(rec[name]).tobytes() for name in rec.dtype.names)  # field-major
        packed = lzf.compress(raw)
        return header + struct.pack("<II", len(packed), len(raw)) + packed
    lines = []
    for r in rec:
        vals = []
        for name in rec.dtype.names:
            v = np.atleast_1d(r[name])
            vals += [repr(float(x)) if v.dtype.kind == "f" else str(int(x)) for x in v]
        lines.append(" ".join(vals))
    return header + ("\n".join(lines) + "\n").encode()


def _types_of(rec: np.ndarray) -> list[tuple[str, str, int, int]]:
    out = []
    for name in rec.dtype.names:
        base, shape = rec.dtype[name].base, rec.dtype[name].shape
        out.append((name, {"i": "I", "u": "U", "f": "F"}[base.kind], base.itemsize, int(np.prod(shape or (1,)))))
    return out


KINDS = ["ascii", "binary", pytest.param("binary_compressed", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("lzf") is None, reason="python-lzf not installed"))]


@pytest.mark.parametrize("kind", KINDS)
def test_every_type_and_size_reads_exactly(tmp_path, kind):
    """I/U of SIZE 1, 2, 4, 8 (their min and max, 64-bit ones exact), F of SIZE 4 and 8, COUNT 3."""
    rec = all_types_records()
    path = tmp_path / f"all_{kind}.pcd"
    path.write_bytes(pcd_bytes(rec, _types_of(rec), kind))
    out = read_pcd(path)
    assert out.dtype.names == rec.dtype.names and len(out) == len(rec)
    for name in rec.dtype.names:
        assert out[name].dtype == rec[name].dtype, name
        if rec[name].dtype.kind in "iu":
            assert out[name].tolist() == rec[name].tolist(), name
        else:
            np.testing.assert_allclose(out[name], rec[name], rtol=1e-15, atol=0, err_msg=name)
    np.testing.assert_allclose(read_pcd_xyzi(path)[:, :3], np.c_[rec["x"], rec["y"], rec["z"]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_type_size_is_skipped_with_one_warning_per_field(tmp_path, kind, caplog):
    """TYPE Q, F of SIZE 1 and I of SIZE 3 are stepped over (bytes or columns); x, y, z, intensity
    and the point count come through; one warning per unknown field; PCL ``_`` padding silently."""
    n = 4
    dt = np.dtype([("x", "<f4"), ("odd", "V3"), ("y", "<f4"), ("q", "<u2"), ("z", "<f4"), ("_", "V4"),
                   ("tiny", "u1"), ("intensity", "<f4")])
    rec = np.zeros(n, dt)
    rec["x"], rec["y"], rec["z"] = [1.5, 2.5, 3.5, 4.5], [-1, -2, -3, -4], [0.25, 0.5, 0.75, 1.0]
    rec["intensity"] = [0, 51, 102, 255]
    types = [("x", "F", 4, 1), ("odd", "I", 3, 1), ("y", "F", 4, 1), ("q", "Q", 2, 1), ("z", "F", 4, 1),
             ("_", "U", 1, 4), ("tiny", "F", 1, 1), ("intensity", "F", 4, 1)]
    path = tmp_path / f"unknown_{kind}.pcd"
    body = None
    if kind == "ascii":  # the V fields print as bytes: write the columns by hand (1 + 1 unknown, 4 padding)
        body = "".join(f"{r['x']} 7 {r['y']} 9 {r['z']} 0 0 0 0 1 {r['intensity']}\n" for r in rec).encode()
    raw = pcd_bytes(rec, types, kind, body)
    path.write_bytes(raw)
    with caplog.at_level(logging.WARNING):
        out = read_pcd(path)
    assert out.dtype.names == ("x", "y", "z", "intensity") and len(out) == n
    np.testing.assert_allclose(read_pcd_xyzi(path), np.c_[rec["x"], rec["y"], rec["z"], rec["intensity"] / 255],
                               rtol=1e-6)
    warned = sorted(name for name in ("odd", "q", "tiny", "_")
                    for r in caplog.records if f"field {name!r}" in r.getMessage())
    assert warned == ["odd", "q", "tiny"]


def test_binary_compressed_without_lzf_is_a_one_line_error(tmp_path, monkeypatch):
    path = tmp_path / "c.pcd"
    path.write_bytes(write_pcd(tmp_path / "ok.pcd", POINTS).read_bytes().replace(b"DATA binary",
                                                                                 b"DATA binary_compressed"))
    monkeypatch.setitem(sys.modules, "lzf", None)  # import lzf -> ImportError
    with pytest.raises(ValueError) as info:
        read_pcd(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "binary_compressed" in msg and "python-lzf" in msg


def test_binary_compressed_with_a_wrong_size_names_the_file(tmp_path):
    pytest.importorskip("lzf")
    rec = all_types_records(3)
    raw = pcd_bytes(rec, _types_of(rec), "binary_compressed").replace(b"POINTS 3", b"POINTS 4")
    path = tmp_path / "bad_c.pcd"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="expected POINTS 4 x"):
        read_pcd(path)


def test_ascii_integer_fields_are_range_checked(tmp_path):
    path = tmp_path / "range.pcd"
    path.write_text("FIELDS x y z ring\nSIZE 4 4 4 1\nTYPE F F F U\nPOINTS 1\nDATA ascii\n1 2 3 300\n")
    with pytest.raises(ValueError, match=r"field 'ring' has values outside \[0, 255\]"):
        read_pcd(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-5], "expected POINTS 3 x 16 = 48 (truncated?)"),
    (lambda b: b.replace(b"FIELDS x y z intensity\n", b""), "header has no FIELDS line"),
    (lambda b: b.replace(b"DATA binary", b"DATA binary_zstd"), "PCD DATA 'binary_zstd' is not supported"),
    (lambda b: b.replace(b"SIZE 4 4 4 4", b"SIZE 4 4 four 4"), "field 'z' has SIZE 'four'"),
    (lambda b: b.replace(b"FIELDS x y z intensity", b"FIELDS x y x intensity"), "field 'x' appears twice"),
    (lambda b: b.split(b"DATA")[0], "header ends before a DATA line"),
])
def test_corrupt_binary_pcd_names_the_file(tmp_path, mutate, message):
    path = tmp_path / "corrupt.pcd"
    path.write_bytes(mutate(write_pcd(tmp_path / "ok.pcd", POINTS).read_bytes()))
    with pytest.raises(ValueError) as info:
        read_pcd(path)
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("body, message", [
    ("1 2 3 4\n5 6 7\n", "7 ascii values, expected POINTS 2 x 4 = 8"),
    ("1 2 3 4\n5 6 seven 8\n", "non-numeric value"),
])
def test_corrupt_ascii_pcd_names_the_file(tmp_path, body, message):
    path = tmp_path / "corrupt_ascii.pcd"
    path.write_text("FIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nWIDTH 2\nPOINTS 2\nDATA ascii\n" + body)
    with pytest.raises(ValueError) as info:
        read_pcd(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_xyz_in_pcd_names_the_file(tmp_path):
    path = tmp_path / "noz.pcd"
    path.write_text("FIELDS x y\nSIZE 4 4\nTYPE F F\nPOINTS 1\nDATA ascii\n1 2\n")
    with pytest.raises(ValueError, match=f"{path}: no field"):
        read_pcd_xyzi(path)


@pytest.fixture
def opencalib(shared_data):
    """The real OpenCalib lidar2camera sample (../shared/data/real/opencalib_manual_0)."""
    return shared_data / "real" / "opencalib_manual_0"


def test_real_opencalib_pcd_ascii(opencalib):
    arr = read_pcd(opencalib / "0.pcd")
    assert len(arr) == 78238 and arr.dtype.names == ("x", "y", "z", "intensity")
    np.testing.assert_allclose([arr["x"][0], arr["y"][0], arr["z"][0], arr["intensity"][0]],
                               [21.647913, 0.19822195, -1.8524752, 11], rtol=1e-6)
    xyzi = read_pcd_xyzi(opencalib / "0.pcd")
    assert xyzi.dtype == np.float32 and xyzi[:, 3].max() <= 1.0
    assert xyzi[0, 3] == pytest.approx(11 / 255)


def test_real_opencalib_frame_matches_its_record_and_projects(opencalib):
    s = load_opencalib_frame(opencalib)
    record = load_calibration_yaml(opencalib / "calib.yaml")
    assert s.image.shape == (1200, 1920, 3) and (s.camera.width, s.camera.height) == (1920, 1200)
    np.testing.assert_allclose(s.T_cam_lidar, record.T_cam_lidar, atol=1e-9)
    np.testing.assert_allclose(s.camera.K, record.camera.K, atol=1e-9)
    np.testing.assert_allclose(s.camera.distortion, record.camera.distortion, atol=1e-9)
    _, depth, in_view = s.camera.project_in_image(transform_points(s.T_cam_lidar, s.points))
    assert 8_000 < in_view.sum() < 12_000 and np.all(depth[in_view] > 0)


def test_opencalib_json_without_key_names_the_file(tmp_path):
    (tmp_path / "cam-intrinsic.json").write_text('{"cam-intrinsic": {"param": {"cam_K": {"data": [[1,0,0],[0,1,0],[0,0,1]]}}}}')
    (tmp_path / "lidar-to-cam-extrinsic.json").write_text('{"x": {"param": {"sensor_calib": {"data": []}}}}')
    with pytest.raises(ValueError, match=r"cam-intrinsic\.json: missing key 'param\.cam_dist\.data'"):
        read_opencalib_calibration(tmp_path, 10, 10)
