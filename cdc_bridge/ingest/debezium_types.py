"""Column values as Debezium's MySQL/MariaDB connector writes them with the JSON converter, no schemas.

Pure functions from the source's values (docs/types.md: what RowChange.before/after hold) to the values
Debezium 3.x puts in `before`/`after` and in the key, with its defaults (time.precision.mode=
adaptive_time_microseconds, bigint.unsigned.handling.mode=long, binary.handling.mode=bytes); DECIMAL as
a string or a double (decimal_handling). docs/events.md has the table; tests/data/debezium/ the
records real Debezium wrote for the same rows.

    encoder = RowEncoder(shape, decimal="string")
    encoder.encode(row_change.after, row_change.zero_dates)   # {"id": 1, "created": 1709212455000, ...}

A column is described either by the binlog (values.ColumnSpec) or by the snapshot
(snapshot.SnapshotColumn); both map to one `kind` here, so a streamed row and the same row read by
the snapshot encode the same.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
import struct
from typing import Any, Callable

from pymysqlreplication.constants import FIELD_TYPE as FT

from cdc_bridge.source.transaction import TableShape
from cdc_bridge.source.values import ColumnSpec

Encoder = Callable[[Any], Any]

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_TWO_63 = 1 << 63
_TWO_64 = 1 << 64


# ---------------------------------------------------------------- one value

def days(v: str) -> int:
    """'YYYY-MM-DD' -> days since 1970-01-01 (io.debezium.time.Date)."""
    return _dt.date(int(v[0:4]), int(v[5:7]), int(v[8:10])).toordinal() - _EPOCH_ORDINAL


def _epoch_us(v: str) -> int:
    """'YYYY-MM-DDTHH:MM:SS[.ffffff]' (no zone: DATETIME is read as UTC, as Debezium does) -> µs since the epoch."""
    seconds = days(v) * 86400 + int(v[11:13]) * 3600 + int(v[14:16]) * 60 + int(v[17:19])
    micro = int(v[20:26]) if len(v) > 20 else 0
    return seconds * 1_000_000 + micro


def epoch_millis(v: str) -> int:
    """DATETIME(0-3) -> io.debezium.time.Timestamp (ms; floor, like Java's toEpochMilli)."""
    return _epoch_us(v) // 1000


def epoch_micros(v: str) -> int:
    """DATETIME(4-6) -> io.debezium.time.MicroTimestamp."""
    return _epoch_us(v)


def zoned_timestamp(fsp: int) -> Encoder:
    """TIMESTAMP -> io.debezium.time.ZonedTimestamp: ISO-8601 in UTC, exactly fsp fraction digits (none for
    fsp 0), as ZonedTimestamp.toIsoString formats with the column's length. The source gives 6 digits + Z."""
    if fsp <= 0:
        return lambda v: v[:19] + "Z"
    cut = 20 + min(fsp, 6)
    return lambda v: v[:cut] + "Z"


def micro_time(v: str) -> int:
    """TIME '[-]HH:MM:SS[.ffffff]' (hours may exceed 24) -> io.debezium.time.MicroTime (µs, may be negative)."""
    negative = v.startswith("-")
    h, m, rest = (v[1:] if negative else v).split(":")
    s, _, frac = rest.partition(".")
    us = ((int(h) * 60 + int(m)) * 60 + int(s)) * 1_000_000 + (int(frac.ljust(6, "0")[:6]) if frac else 0)
    return -us if negative else us


def unsigned_long(v: int) -> int:
    """BIGINT UNSIGNED with bigint.unsigned.handling.mode=long: Java's long, so 2**63.. wrap to negatives."""
    return v - _TWO_64 if v >= _TWO_63 else v


def bits_little_endian(nbits: int) -> Encoder:
    """BIT(n>1) -> io.debezium.data.Bits: the bytes little-endian, base64 (the source gives an int)."""
    size = (nbits + 7) // 8
    return lambda v: base64.b64encode(int(v).to_bytes(size, "little")).decode("ascii")


def json_text(v: Any) -> str:
    """JSON -> io.debezium.data.Json: the document as text. The source parsed it; it is written back with
    MySQL's separators (', ' and ': '), so MariaDB text stored with other spacing differs in whitespace."""
    return json.dumps(v, ensure_ascii=False)


def _split_geometry(v: str) -> tuple[bytes, int | None]:
    raw = base64.b64decode(v)
    srid = int.from_bytes(raw[:4], "little")
    return raw[4:], (srid or None)


def geometry(v: str) -> dict[str, Any]:
    """GEOMETRY (the source: base64 of SRID + WKB) -> io.debezium.data.geometry.Geometry {wkb, srid}."""
    wkb, srid = _split_geometry(v)
    return {"wkb": base64.b64encode(wkb).decode("ascii"), "srid": srid}


def point(v: str) -> dict[str, Any]:
    """POINT -> io.debezium.data.geometry.Point {x, y, wkb, srid}."""
    wkb, srid = _split_geometry(v)
    x, y = struct.unpack_from("<dd" if wkb[0] == 1 else ">dd", wkb, 5)
    return {"x": x, "y": y, "wkb": base64.b64encode(wkb).decode("ascii"), "srid": srid}


def set_text(v: list[str]) -> str:
    return ",".join(v)


def _identity(v: Any) -> Any:
    return v


# ---------------------------------------------------------------- columns -> kinds

_SNAPSHOT_INTS = frozenset({"tinyint", "smallint", "mediumint", "int", "integer"})
_SNAPSHOT_TEXT = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
_SNAPSHOT_BINARY = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
_GEOMETRY = frozenset({"geometry", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
                       "geometrycollection", "geomcollection"})
_BIT_WIDTH = re.compile(r"bit\((\d+)\)", re.IGNORECASE)


def kind_of(column: Any, data_type: str | None = None) -> tuple[str, int]:
    """(kind, argument) of a column: a values.ColumnSpec from the binlog or a snapshot.SnapshotColumn.
    data_type: information_schema DATA_TYPE, which tells POINT from the other spatial types."""
    if isinstance(column, ColumnSpec):
        return _binlog_kind(column, data_type)
    return _snapshot_kind(column)


def _binlog_kind(c: ColumnSpec, data_type: str | None) -> tuple[str, int]:
    t = c.type
    if t == FT.TINY:
        return ("bool_int", 0) if c.is_bool else ("int", 0)
    if t in (FT.SHORT, FT.INT24, FT.LONG):
        return "int", 0
    if t == FT.LONGLONG:
        return ("uint64", 0) if c.unsigned else ("int", 0)
    if t == FT.NEWDECIMAL:
        return "decimal", 0
    if t in (FT.FLOAT, FT.DOUBLE):
        return "float", 0
    if t in (FT.STRING, FT.VARCHAR, FT.VAR_STRING):
        return ("text", 0) if c.codec is not None else ("binary", 0)
    if t == FT.BLOB:
        if c.is_json_text:
            return "json", 0
        return ("text", 0) if c.codec is not None else ("binary", 0)
    if t == FT.JSON:
        return "json", 0
    if t == FT.GEOMETRY:
        return ("point", 0) if data_type == "point" else ("geometry", 0)
    if t in (FT.DATETIME2, FT.DATETIME):
        return ("datetime_ms", c.fsp) if c.fsp <= 3 else ("datetime_us", c.fsp)
    if t in (FT.TIMESTAMP2, FT.TIMESTAMP):
        return "timestamp", c.fsp
    if t in (FT.TIME2, FT.TIME):
        return "time", c.fsp
    if t in (FT.DATE, FT.NEWDATE):
        return "date", 0
    if t == FT.YEAR:
        return "year", 0
    if t == FT.ENUM:
        return "enum", 0
    if t == FT.SET:
        return "set", 0
    if t == FT.BIT:
        return ("bit1", 1) if c.bits == 1 else ("bits", c.bits)
    return "other", 0


def _snapshot_kind(c: Any) -> tuple[str, int]:
    t = c.data_type
    if t == "tinyint" and c.is_bool:
        return "bool_int", 0
    if t in _SNAPSHOT_INTS:
        return "int", 0
    if t == "bigint":
        return ("uint64", 0) if "unsigned" in c.column_type.lower() else ("int", 0)
    if t in ("decimal", "numeric"):
        return "decimal", 0
    if t in ("float", "double", "real"):
        return "float", 0
    if t in _SNAPSHOT_TEXT:
        if c.is_json_text:
            return "json", 0
        return ("text", 0) if c.codec is not None else ("binary", 0)
    if t in _SNAPSHOT_BINARY:
        return "binary", 0
    if t == "json":
        return "json", 0
    if t == "point":
        return "point", 0
    if t in _GEOMETRY:
        return "geometry", 0
    if t == "datetime":
        return ("datetime_ms", c.fsp) if c.fsp <= 3 else ("datetime_us", c.fsp)
    if t == "timestamp":
        return "timestamp", c.fsp
    if t == "time":
        return "time", c.fsp
    if t == "date":
        return "date", 0
    if t == "year":
        return "year", 0
    if t == "enum":
        return "enum", 0
    if t == "set":
        return "set", 0
    if t == "bit":
        m = _BIT_WIDTH.search(c.column_type or "")
        n = int(m.group(1)) if m else 1
        return ("bit1", 1) if n == 1 else ("bits", n)
    return "other", 0


def encoder_for(kind: str, arg: int, decimal: str = "string") -> Encoder:
    """The function turning a non-null source value of this kind into Debezium's JSON value."""
    if kind == "bool_int":
        return int           # TINYINT(1): the source made it a bool; Debezium writes the number
    if kind == "uint64":
        return unsigned_long
    if kind == "decimal":
        return float if decimal == "double" else _identity
    if kind == "date":
        return days
    if kind == "datetime_ms":
        return epoch_millis
    if kind == "datetime_us":
        return epoch_micros
    if kind == "timestamp":
        return zoned_timestamp(arg)
    if kind == "time":
        return micro_time
    if kind == "set":
        return set_text
    if kind == "bit1":
        return bool
    if kind == "bits":
        return bits_little_endian(arg)
    if kind == "json":
        return json_text
    if kind == "geometry":
        return geometry
    if kind == "point":
        return point
    return _identity         # int, float, year, text, binary (already base64), enum, other


# ---------------------------------------------------------------- zero dates

_ZERO_KINDS = frozenset({"date", "datetime_ms", "datetime_us"})


def _default_value(kind: str, encode: Encoder, default: str | None) -> Any:
    """What Debezium writes for a zero date in a NOT NULL DATE/DATETIME column: the column's default
    (its fallback value), or the epoch when the default is not a date (none, a zero date, a function)."""
    text = (default or "").strip().strip("'")
    try:
        if kind == "date" and re.fullmatch(r"\d{4}-\d\d-\d\d", text) and not text.startswith("0000"):
            return encode(text)
        m = re.fullmatch(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?", text)
        if kind != "date" and m and not text.startswith("0000"):
            frac = (m.group(3) or "")[1:]
            return encode(f"{m.group(1)}T{m.group(2)}" + (f".{frac.ljust(6, '0')[:6]}" if frac else ""))
    except ValueError:   # a partly zero date ('2024-00-10')
        pass
    return 0


# ---------------------------------------------------------------- rows

class RowEncoder:
    """Encodes row images of one table shape: `encode(row, zero_dates)` -> a dict in table order."""

    __slots__ = ("steps", "fallbacks", "epochs")

    def __init__(self, shape: TableShape, decimal: str = "string") -> None:
        steps = []
        fallbacks: dict[str, Any] = {}   # None in a NOT NULL DATE/DATETIME column: a zero date
        epochs: dict[str, tuple[str, bool]] = {}   # TIMESTAMP: a zero one is the epoch (as Debezium streams it)
        for col in shape.columns:
            nullable, default, data_type = shape.info.get(col.name, (True, None, ""))
            kind, arg = kind_of(col, data_type)
            encode = encoder_for(kind, arg, decimal)
            steps.append((col.name, encode))
            if kind in _ZERO_KINDS and not nullable:
                fallbacks[col.name] = _default_value(kind, encode, default)
            elif kind == "timestamp":
                epochs[col.name] = (encode("1970-01-01T00:00:00.000000Z"), nullable)
        self.steps = tuple(steps)
        self.fallbacks = fallbacks
        self.epochs = epochs

    def encode(self, row: dict[str, Any], zero_dates: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        get = row.get
        nulls = None
        for name, encode in self.steps:
            v = get(name)
            if v is None:
                out[name] = None
                nulls = True
            else:
                out[name] = encode(v)
        if nulls and (self.fallbacks or self.epochs):
            zeros = zero_dates or ()
            for name, value in self.fallbacks.items():
                if out.get(name, 0) is None:
                    out[name] = value
            for name, (epoch, nullable) in self.epochs.items():
                if out.get(name, 0) is None and (not nullable or name in zeros):
                    out[name] = epoch
        return out
