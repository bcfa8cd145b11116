"""A small PCD (Point Cloud Library) file reader: ``DATA ascii``, ``binary`` and ``binary_compressed``.

Header keys read: ``VERSION FIELDS SIZE TYPE COUNT WIDTH HEIGHT VIEWPOINT POINTS DATA``
(``VIEWPOINT`` is ignored: the points are returned as stored). Field types follow the PCD v0.7
specification: ``TYPE`` ``I`` (signed) / ``U`` (unsigned) integers of ``SIZE`` 1, 2, 4 or 8
bytes, ``F`` floats of ``SIZE`` 4 or 8 (2: half precision, accepted too); ``COUNT > 1`` fields
become sub-arrays. The rules are those of ``crossi2p.pointcloud2`` for PointCloud2 fields:

- a TYPE/SIZE combination this reader does not know (``TYPE Q``, ``F`` of size 1, ``I`` of size
  3, ...) is skipped with ONE warning per file and field: its bytes (``SIZE x COUNT`` per point)
  or its ascii columns (``COUNT``) are stepped over, the other fields (``x, y, z`` among them)
  are read and the point count is unchanged;
- fields named ``_`` are PCL padding: stepped over silently;
- binary records are packed (no alignment, PCL's layout), little-endian (the byte order PCL
  writes on every platform it supports).

``DATA binary_compressed`` (PCL's LZF-compressed, field-major layout) needs the ``lzf`` module
(PyPI ``python-lzf``); without it the reader says so in one line. A truncated or malformed
file raises ``ValueError`` naming it.
"""
from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..log_once import warn_once
from ..pointcloud2 import PADDING_FIELD, structured_to_xyzi

__all__ = ["read_pcd", "read_pcd_xyzi", "write_pcd"]

_TYPES = {("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
          ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8",
          ("F", 2): "f2", ("F", 4): "f4", ("F", 8): "f8"}
"""PCD (TYPE, SIZE) -> numpy type code (little-endian added)."""
_MAX_HEADER_LINES = 64
_log = logging.getLogger(__name__)


class _PcdField(NamedTuple):
    """One PCD field: its place in a record and, when it is read, its numpy type."""

    name: str
    offset: int
    """Byte offset inside a binary record (sum of the SIZE x COUNT of the fields before it)."""
    size: int
    count: int
    dtype: np.dtype | None
    """Little-endian numpy type of one value; None for a skipped (padding / unknown) field."""


def _parse_header(raw: bytes, where: str) -> tuple[dict[str, list[str]], int]:
    """Header key -> values, and the byte offset where the data starts."""
    header: dict[str, list[str]] = {}
    pos = 0
    for _ in range(_MAX_HEADER_LINES):
        end = raw.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"{where}: corrupt PCD: header ends before a DATA line")
        line = raw[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            return header, pos
    raise ValueError(f"{where}: corrupt PCD: no DATA line in the first {_MAX_HEADER_LINES} lines")


def _fields(header: dict[str, list[str]], where: str) -> list[_PcdField]:
    """The header's fields in file order, unknown TYPE/SIZE combinations warned about once."""
    for key in ("FIELDS", "SIZE", "TYPE"):
        if key not in header:
            raise ValueError(f"{where}: corrupt PCD: header has no {key} line")
    names, sizes, types = header["FIELDS"], header["SIZE"], header["TYPE"]
    counts = header.get("COUNT", ["1"] * len(names))
    if not (len(names) == len(sizes) == len(types) == len(counts)):
        raise ValueError(f"{where}: corrupt PCD: FIELDS/SIZE/TYPE/COUNT lengths differ "
                         f"({len(names)}/{len(sizes)}/{len(types)}/{len(counts)})")
    fields: list[_PcdField] = []
    offset = 0
    seen: set[str] = set()
    for name, size_s, typ, count_s in zip(names, sizes, types, counts):
        try:
            size, count = int(size_s), int(count_s)
        except ValueError:
            raise ValueError(f"{where}: corrupt PCD: field {name!r} has SIZE {size_s!r} / COUNT {count_s!r}, "
                             f"expected positive integers") from None
        if size < 1 or count < 0:
            raise ValueError(f"{where}: corrupt PCD: field {name!r} has SIZE {size} / COUNT {count}, "
                             f"expected SIZE >= 1 and COUNT >= 0")
        code = _TYPES.get((typ.upper(), size))
        if name != PADDING_FIELD and code is None:
            warn_once(("PCD", where, name), f"{where}: PCD field {name!r} has TYPE {typ} SIZE {size}, which "
                      f"this reader does not know (I/U with SIZE 1/2/4/8, F with SIZE 2/4/8); the field is "
                      f"skipped, the other fields are read", _log)
        if name in seen and name != PADDING_FIELD:
            if name in ("x", "y", "z"):
                raise ValueError(f"{where}: corrupt PCD: field {name!r} appears twice")
            warn_once(("PCD duplicate", where, name), f"{where}: PCD field {name!r} appears twice; the "
                      f"first one is used", _log)
            code = None
        keep = name != PADDING_FIELD and code is not None and count > 0
        if keep:
            seen.add(name)
        fields.append(_PcdField(name, offset, size, count, np.dtype("<" + code) if keep else None))
        offset += size * count
    return fields


def _record_dtype(fields: list[_PcdField]) -> np.dtype:
    """Structured dtype of the fields read: packed, native order, sub-arrays for COUNT > 1."""
    return np.dtype([(f.name, f.dtype.newbyteorder("="), (f.count,)) if f.count > 1
                     else (f.name, f.dtype.newbyteorder("=")) for f in fields if f.dtype is not None])


def _binary_dtype(fields: list[_PcdField]) -> np.dtype:
    """Dtype of one binary record as stored: the fields read at their offsets, itemsize = record size."""
    kept = [f for f in fields if f.dtype is not None]
    return np.dtype({"names": [f.name for f in kept],
                     "formats": [f.dtype if f.count == 1 else (f.dtype, (f.count,)) for f in kept],
                     "offsets": [f.offset for f in kept],
                     "itemsize": sum(f.size * f.count for f in fields)})


def _point_count(header: dict[str, list[str]], where: str) -> int:
    try:
        if "POINTS" in header:
            n = int(header["POINTS"][0])
        else:
            n = int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0])
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{where}: corrupt PCD: no valid POINTS or WIDTH/HEIGHT") from None
    if n < 0:
        raise ValueError(f"{where}: corrupt PCD: POINTS {n} is negative")
    return n


def _read_ascii(body: bytes, fields: list[_PcdField], n: int, where: str) -> np.ndarray:
    tokens = body.split()
    per_point = sum(f.count for f in fields)
    if len(tokens) != n * per_point:
        raise ValueError(f"{where}: corrupt PCD: {len(tokens)} ascii values, expected POINTS {n} x "
                         f"{per_point} = {n * per_point}")
    try:
        table = np.array(tokens, dtype=np.float64).reshape(n, per_point)
    except ValueError:
        raise ValueError(f"{where}: corrupt PCD: non-numeric value in the ascii data") from None
    out = np.zeros(n, dtype=_record_dtype(fields))
    col = 0
    for f in fields:
        if f.dtype is not None:
            block = table[:, col:col + f.count]
            if f.dtype.kind in "iu":
                info = np.iinfo(f.dtype)
                if f.dtype.itemsize == 8:  # beyond 2**53 float64 is not exact: parse these as integers
                    raw = np.array(tokens, dtype=object).reshape(n, per_point)[:, col:col + f.count]
                    try:
                        block = np.array([[int(v) for v in row] for row in raw], dtype=object)
                    except ValueError:
                        raise ValueError(f"{where}: corrupt PCD: non-integer value in ascii field {f.name!r} "
                                         f"(TYPE {f.dtype.kind.upper()} SIZE 8)") from None
                elif not np.array_equal(block, np.round(block)):
                    raise ValueError(f"{where}: corrupt PCD: non-integer value in ascii field {f.name!r} "
                                     f"(TYPE {f.dtype.kind.upper()} SIZE {f.size})")
                if block.size and (block.min() < info.min or block.max() > info.max):
                    raise ValueError(f"{where}: corrupt PCD: ascii field {f.name!r} has values outside "
                                     f"[{info.min}, {info.max}] (TYPE {f.dtype.kind.upper()} SIZE {f.size})")
                block = block.astype(f.dtype)
            out[f.name] = block[:, 0] if f.count == 1 else block
        col += f.count
    return out


def _read_binary_compressed(raw: bytes, start: int, fields: list[_PcdField], n: int, where: str) -> np.ndarray:
    """PCL's binary_compressed: uint32 compressed size, uint32 raw size, LZF data; field-major."""
    try:
        import lzf  # noqa: PLC0415  (optional: PyPI python-lzf)
    except ImportError:
        raise ValueError(f"{where}: PCD DATA binary_compressed needs the LZF module (pip install python-lzf), "
                         f"or convert the file to binary with pcl_convert_pcd_ascii_binary") from None
    if len(raw) - start < 8:
        raise ValueError(f"{where}: corrupt PCD: binary_compressed data shorter than its 8-byte size header")
    compressed_size, raw_size = struct.unpack_from("<II", raw, start)
    record = sum(f.size * f.count for f in fields)
    if raw_size != n * record:
        raise ValueError(f"{where}: corrupt PCD: binary_compressed holds {raw_size} bytes uncompressed, expected "
                         f"POINTS {n} x {record} = {n * record}")
    payload = raw[start + 8:start + 8 + compressed_size]
    if len(payload) < compressed_size:
        raise ValueError(f"{where}: corrupt PCD: {len(payload)} compressed bytes, expected {compressed_size} "
                         f"(truncated?)")
    data = lzf.decompress(payload, raw_size + 1) if raw_size else b""
    if data is None or len(data) != raw_size:
        raise ValueError(f"{where}: corrupt PCD: LZF data does not decompress to {raw_size} bytes")
    out = np.zeros(n, dtype=_record_dtype(fields))
    block_start = 0
    for f in fields:  # field-major: all points' values of one field, then the next field
        if f.dtype is not None:
            values = np.frombuffer(data, dtype=f.dtype, count=n * f.count, offset=block_start)
            out[f.name] = values if f.count == 1 else values.reshape(n, f.count)
        block_start += n * f.size * f.count
    return out


def read_pcd(path: str | os.PathLike) -> np.ndarray:
    """Read a PCD file into a structured array, one record per point.

    Returns:
        (POINTS,) structured array, native byte order, one field per header field that is read
        (see the module docstring for what is skipped), ``COUNT > 1`` fields as sub-arrays;
        values as stored (the header's ``VIEWPOINT`` is not applied).
    Raises:
        ValueError: naming the file, for a malformed header, too few or too many values.
    """
    path = Path(path)
    where = str(path)
    raw = path.read_bytes()
    header, start = _parse_header(raw, where)
    fields = _fields(header, where)
    n = _point_count(header, where)
    kind = (header["DATA"] or [""])[0].lower()
    if kind == "ascii":
        return _read_ascii(raw[start:], fields, n, where)
    if kind == "binary":
        dt = _binary_dtype(fields)
        need = n * dt.itemsize
        if len(raw) - start < need:
            raise ValueError(f"{where}: corrupt PCD: {len(raw) - start} data bytes, expected POINTS {n} x "
                             f"{dt.itemsize} = {need} (truncated?)")
        return np.frombuffer(raw, dtype=dt, count=n, offset=start).astype(_record_dtype(fields))
    if kind == "binary_compressed":
        return _read_binary_compressed(raw, start, fields, n, where)
    raise ValueError(f"{where}: PCD DATA {kind!r} is not supported (expected ascii, binary or binary_compressed)")


def read_pcd_xyzi(path: str | os.PathLike, intensity_field: str = "intensity") -> np.ndarray:
    """PCD -> (N, 4) float32 ``x, y, z, intensity`` (NaN points dropped, intensity in [0, 1])."""
    return structured_to_xyzi(read_pcd(path), intensity_field, source=str(path))


def write_pcd(path: str | os.PathLike, points: np.ndarray, binary: bool = True) -> Path:
    """Write (N, 4) ``x, y, z, intensity`` float32 points as a PCD v0.7 file (for tests and tools)."""
    pts = np.asarray(points, dtype="<f4")
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"points: expected (N, 4) x, y, z, intensity, got {pts.shape}")
    header = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z intensity\n"
              "SIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
              f"WIDTH {len(pts)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(pts)}\n"
              f"DATA {'binary' if binary else 'ascii'}\n")
    path = Path(path)
    body = pts.tobytes() if binary else "".join(" ".join(f"{v:.9g}" for v in row) + "\n" for row in pts).encode()
    path.write_bytes(header.encode() + body)
    return path
