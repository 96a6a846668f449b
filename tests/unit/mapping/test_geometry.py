"""GEOMETRY as WKT / GeoJSON (issue 16): MySQL's value is a 4-byte SRID then WKB, delivered as base64."""

from __future__ import annotations

import base64
import struct

import pytest

from cdc_bridge.mapping.geometry import to_geojson, to_wkt


def _mysql(wkb: bytes, srid: int = 0) -> str:
    return base64.b64encode(struct.pack("<I", srid) + wkb).decode()


def _point(x: float, y: float, order: str = "<") -> bytes:
    return bytes([1 if order == "<" else 0]) + struct.pack(order + "Idd", 1, x, y)


def test_point_as_in_docs_types():
    # POINT(1,2) as the source delivers it (docs/types.md)
    assert to_wkt("AAAAAAEBAAAAAAAAAAAA8D8AAAAAAAAAQA==") == "POINT(1 2)"
    assert to_geojson("AAAAAAEBAAAAAAAAAAAA8D8AAAAAAAAAQA==") == {"type": "Point", "coordinates": [1.0, 2.0]}


def test_srid_big_endian_and_fractions():
    v = _mysql(_point(2.35, 48.8566, ">"), srid=4326)
    assert to_wkt(v) == "SRID=4326;POINT(2.35 48.8566)"
    assert to_geojson(v) == {"type": "Point", "coordinates": [2.35, 48.8566], "srid": 4326}


def test_polygon_multi_and_collection():
    ring = [(0, 0), (4, 0), (4, 4), (0, 0)]
    poly = b"\x01" + struct.pack("<II", 3, 1) + struct.pack("<I", len(ring)) + b"".join(struct.pack("<dd", *p) for p in ring)
    line = b"\x01" + struct.pack("<II", 2, 2) + struct.pack("<dddd", 0, 0, 1, 1)
    multi = b"\x01" + struct.pack("<II", 4, 2) + _point(1, 2) + _point(3, 4)
    coll = b"\x01" + struct.pack("<II", 7, 2) + _point(1, 2) + line
    assert to_wkt(_mysql(poly)) == "POLYGON((0 0, 4 0, 4 4, 0 0))"
    assert to_geojson(_mysql(poly))["coordinates"] == [[[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 0.0]]]
    assert to_wkt(_mysql(multi)) == "MULTIPOINT((1 2), (3 4))"
    assert to_wkt(_mysql(coll)) == "GEOMETRYCOLLECTION(POINT(1 2), LINESTRING(0 0, 1 1))"
    assert to_geojson(_mysql(coll))["geometries"][1] == {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]}


def test_not_a_geometry_is_an_error():
    with pytest.raises(ValueError):
        to_wkt(base64.b64encode(b"abc").decode())
