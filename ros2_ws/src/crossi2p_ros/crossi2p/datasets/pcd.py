"""A small PCD (Point Cloud Library) file reader: ``DATA ascii`` and ``DATA binary``.

Header keys read: ``VERSION FIELDS SIZE TYPE COUNT WIDTH HEIGHT VIEWPOINT POINTS DATA``
(``VIEWPOINT`` is ignored: the points are returned as stored). ``TYPE`` ``I``/``U``/``F``
with ``SIZE`` 1/2/4/8, ``COUNT > 1`` fields (sub-arrays). ``DATA binary_compressed`` (LZF)
is not supported and says so. A truncated or malformed file raises ``ValueError`` naming it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..pointcloud2 import structured_to_xyzi

__all__ = ["read_pcd", "read_pcd_xyzi", "write_pcd"]

_TYPES = {"I": "i", "U": "u", "F": "f"}
_MAX_HEADER_LINES = 64


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


def _dtype(header: dict[str, list[str]], where: str) -> np.dtype:
    for key in ("FIELDS", "SIZE", "TYPE"):
        if key not in header:
            raise ValueError(f"{where}: corrupt PCD: header has no {key} line")
    names, sizes, types = header["FIELDS"], header["SIZE"], header["TYPE"]
    counts = header.get("COUNT", ["1"] * len(names))
    if not (len(names) == len(sizes) == len(types) == len(counts)):
        raise ValueError(f"{where}: corrupt PCD: FIELDS/SIZE/TYPE/COUNT lengths differ "
                         f"({len(names)}/{len(sizes)}/{len(types)}/{len(counts)})")
    formats = []
    try:
        for name, size, typ, count in zip(names, sizes, types, counts):
            base = np.dtype("<" + _TYPES[typ.upper()] + size)
            formats.append((name, base) if int(count) == 1 else (name, base, (int(count),)))
        return np.dtype(formats)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: corrupt PCD: bad SIZE/TYPE/COUNT {sizes}/{types}/{counts}") from None


def read_pcd(path: str | os.PathLike) -> np.ndarray:
    """Read a PCD file into a structured array, one record per point (fields as in the header)."""
    path = Path(path)
    where = str(path)
    raw = path.read_bytes()
    header, start = _parse_header(raw, where)
    dt = _dtype(header, where)
    try:
        if "POINTS" in header:
            n = int(header["POINTS"][0])
        else:
            n = int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0])
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{where}: corrupt PCD: no valid POINTS or WIDTH/HEIGHT") from None
    kind = (header["DATA"] or [""])[0].lower()
    if kind == "ascii":
        try:
            values = np.array(raw[start:].split(), dtype=np.float64)
        except ValueError:
            raise ValueError(f"{where}: corrupt PCD: non-numeric value in the ascii data") from None
        per_point = sum(int(np.prod(dt[name].shape or (1,))) for name in dt.names)
        if values.size != n * per_point:
            raise ValueError(f"{where}: corrupt PCD: {values.size} ascii values, expected POINTS {n} x "
                             f"{per_point} = {n * per_point}")
        flat = values.reshape(n, per_point)
        out = np.zeros(n, dtype=dt)
        col = 0
        for name in dt.names:
            width = int(np.prod(dt[name].shape or (1,)))
            block = flat[:, col:col + width]
            out[name] = block[:, 0] if not dt[name].shape else block
            col += width
        return out
    if kind == "binary":
        need = n * dt.itemsize
        if len(raw) - start < need:
            raise ValueError(f"{where}: corrupt PCD: {len(raw) - start} data bytes, expected POINTS {n} x "
                             f"{dt.itemsize} = {need} (truncated?)")
        return np.frombuffer(raw, dtype=dt, count=n, offset=start).copy()
    raise ValueError(f"{where}: PCD DATA {kind!r} is not supported (ascii and binary are; "
                     f"convert binary_compressed with pcl_convert_pcd_ascii_binary)")


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
