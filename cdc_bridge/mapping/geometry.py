"""MySQL/MariaDB GEOMETRY values as WKT or GeoJSON (mapping field types `wkt` and `geojson`).

The source delivers a GEOMETRY column as base64 of MySQL's internal format: a 4-byte
little-endian SRID, then the geometry as OGC Well-Known Binary (WKB). WKB is small and stable
(ISO 19125: a byte-order byte, a uint32 type, then coordinates as doubles), so it is parsed
here rather than pulling in a GIS library. Only 2D types exist in MySQL/MariaDB.

- `wkt`: `POINT(1 2)`; with an SRID other than 0, EWKT `SRID=4326;POINT(1 2)`.
- `geojson`: `{"type": "Point", "coordinates": [1.0, 2.0]}` (RFC 7946); a non-zero SRID is
  kept as `"srid": 4326` beside them (GeoJSON itself assumes WGS 84).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

_TYPES = {1: "Point", 2: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString", 6: "MultiPolygon",
          7: "GeometryCollection"}


class _Reader:
    def __init__(self, data: bytes, off: int) -> None:
        self.data, self.off = data, off

    def geometry(self) -> tuple[str, Any]:
        order = "<" if self.data[self.off] == 1 else ">"
        (kind,) = struct.unpack_from(order + "I", self.data, self.off + 1)
        self.off += 5
        name = _TYPES.get(kind & 0xFF)
        if name is None:
            raise ValueError(f"unknown WKB geometry type {kind}")
        if name == "Point":
            return name, self.points(order, 1)[0]
        if name == "LineString":
            return name, self.points(order, self.count(order))
        if name == "Polygon":
            return name, [self.points(order, self.count(order)) for _ in range(self.count(order))]
        return name, [self.geometry() for _ in range(self.count(order))]   # Multi*, GeometryCollection

    def count(self, order: str) -> int:
        (n,) = struct.unpack_from(order + "I", self.data, self.off)
        self.off += 4
        return n

    def points(self, order: str, n: int) -> list[tuple[float, float]]:
        vals = struct.unpack_from(f"{order}{2 * n}d", self.data, self.off)
        self.off += 16 * n
        return [(vals[2 * i], vals[2 * i + 1]) for i in range(n)]


def _parse(value: Any) -> tuple[int, tuple[str, Any]]:
    raw = base64.b64decode(value) if isinstance(value, str) else bytes(value)
    if len(raw) < 9:
        raise ValueError("not a MySQL geometry value (SRID + WKB)")
    (srid,) = struct.unpack_from("<I", raw, 0)
    return srid, _Reader(raw, 4).geometry()


def _num(x: float) -> str:
    return repr(x) if x != int(x) else str(int(x)) if abs(x) < 1e15 else repr(x)


def _wkt(name: str, body: Any) -> str:
    def pts(ps: list) -> str:
        return ", ".join(f"{_num(x)} {_num(y)}" for x, y in ps)

    if name == "Point":
        return f"POINT({_num(body[0])} {_num(body[1])})"
    if name == "LineString":
        return f"LINESTRING({pts(body)})"
    if name == "Polygon":
        return "POLYGON(" + ", ".join(f"({pts(r)})" for r in body) + ")"
    if name == "MultiPoint":
        return "MULTIPOINT(" + ", ".join(f"({_num(p[0])} {_num(p[1])})" for _, p in body) + ")"
    if name == "MultiLineString":
        return "MULTILINESTRING(" + ", ".join(f"({pts(ls)})" for _, ls in body) + ")"
    if name == "MultiPolygon":
        return "MULTIPOLYGON(" + ", ".join("(" + ", ".join(f"({pts(r)})" for r in pg) + ")" for _, pg in body) + ")"
    return "GEOMETRYCOLLECTION(" + ", ".join(_wkt(n, b) for n, b in body) + ")"


def _geojson(name: str, body: Any) -> dict[str, Any]:
    if name == "GeometryCollection":
        return {"type": name, "geometries": [_geojson(n, b) for n, b in body]}
    if name == "Point":
        coords: Any = list(body)
    elif name == "LineString":
        coords = [list(p) for p in body]
    elif name == "Polygon":
        coords = [[list(p) for p in ring] for ring in body]
    elif name == "MultiPoint":
        coords = [list(p) for _, p in body]
    elif name == "MultiLineString":
        coords = [[list(p) for p in ls] for _, ls in body]
    else:   # MultiPolygon
        coords = [[[list(p) for p in ring] for ring in pg] for _, pg in body]
    return {"type": name, "coordinates": coords}


def to_wkt(value: Any) -> str:
    srid, (name, body) = _parse(value)
    text = _wkt(name, body)
    return f"SRID={srid};{text}" if srid else text


def to_geojson(value: Any) -> dict[str, Any]:
    srid, (name, body) = _parse(value)
    out = _geojson(name, body)
    if srid:
        out["srid"] = srid
    return out
