"""Row values: from the binlog's binary row format to JSON-friendly Python values.

The rules (docs/types.md has the full table with examples):

    integers          int (BIGINT UNSIGNED up to 2**64-1 stays exact); TINYINT(1) -> bool
    DECIMAL           exact str keeping the column's scale: DECIMAL(12,2) 5 -> "5.00", never float
    FLOAT / DOUBLE    float (FLOAT as the shortest decimal that is the same float32: 1.1, not 1.100000023841858)
    DATE              "YYYY-MM-DD"
    DATETIME(fsp)     "YYYY-MM-DDTHH:MM:SS", plus ".ffffff" (always 6 digits) when the column has fsp > 0
    TIMESTAMP(fsp)    same, in UTC, with a "Z" suffix
    TIME(fsp)         "[-]HH:MM:SS[.ffffff]"; hours may exceed 24 (-838:59:59 .. 838:59:59)
    YEAR              int
    zero dates        None, and the column's name is listed in RowChange.zero_dates
    CHAR/VARCHAR/TEXT str (decoded with the column's charset; utf8mb4 incl. emoji)
    BINARY/VARBINARY/BLOB/GEOMETRY  base64 str (standard alphabet, padded)
    JSON              parsed: dict (str keys) / list / str / int / float / bool / None
    ENUM              the value's name ("" for the invalid-value index 0)
    SET               list of member names in definition order ([] when empty)
    BIT(n)            int

Speed matters here (every column of every row passes through): `TableDecoder` turns a
table map into a list of small per-column functions once, and a `RowPlan` per "columns
present" bitmap reads rows straight from the event's bytes with struct.unpack_from,
without the library's per-column dispatch.
"""

from __future__ import annotations

import base64
import codecs
import datetime as _dt
import json
import os
import re
import struct
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any, Callable

from pymysqlreplication.constants import FIELD_TYPE as FT

import structlog

log = structlog.get_logger(__name__)

Decoder = Callable[[bytes, int], tuple[Any, int]]


class _ZeroDate:
    """Marker a decoder returns for a zero / partly-zero date; becomes None + a zero_dates entry."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ZERO_DATE"


ZERO_DATE = _ZeroDate()


class UnsupportedColumnError(Exception):
    """A column type the decoder does not know (the caller turns it into a SourceError)."""


# ---------------------------------------------------------------- formatting helpers (pure)


_WIDE = Context(prec=200)


def format_decimal(value: Decimal | int | str, scale: int) -> str:
    """Exact decimal text with exactly `scale` fraction digits: (Decimal('5'), 2) -> '5.00'."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    # DECIMAL(65,30) needs more digits than the default context's 28
    text = format(d.quantize(Decimal(1).scaleb(-scale), context=_WIDE), "f")
    if text.startswith("-") and not any(c not in "-0." for c in text):
        text = text[1:]  # no "-0.00"
    return text


def format_date(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def format_datetime(year: int, month: int, day: int, hour: int, minute: int, second: int,
                    micro: int, fsp: int) -> str:
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{micro:06d}" if fsp > 0 else text


_EPOCH = _dt.datetime(1970, 1, 1)


def format_timestamp_utc(seconds: int, micro: int, fsp: int) -> str:
    """Seconds since the epoch (UTC) -> 'YYYY-MM-DDTHH:MM:SS[.ffffff]Z'."""
    t = _EPOCH + _dt.timedelta(seconds=seconds)
    return format_datetime(t.year, t.month, t.day, t.hour, t.minute, t.second, micro, fsp) + "Z"


def format_time(negative: bool, hours: int, minutes: int, seconds: int, micro: int, fsp: int) -> str:
    """MySQL TIME (a duration, -838:59:59 .. 838:59:59) -> '[-]HH:MM:SS[.ffffff]'."""
    text = f"{'-' if negative else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{micro:06d}" if fsp > 0 else text


def format_timedelta(value: _dt.timedelta, fsp: int) -> str:
    """A TIME value as PyMySQL returns it (timedelta) -> '[-]HH:MM:SS[.ffffff]'."""
    total_us = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    negative = total_us < 0
    total_us = abs(total_us)
    secs, micro = divmod(total_us, 1_000_000)
    return format_time(negative, secs // 3600, secs // 60 % 60, secs % 60, micro, fsp)


_F32 = struct.Struct("<f")


def float32_to_python(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (what MySQL prints)."""
    if value != value or value in (float("inf"), float("-inf")):
        return value
    packed = _F32.pack(value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if _F32.pack(candidate) == packed:
            return candidate
    return value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def json_from_mysql(value: Any) -> Any:
    """The library's MySQL binary-JSON result -> plain JSON values (bytes -> str, str keys)."""
    if isinstance(value, dict):
        return {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): json_from_mysql(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [json_from_mysql(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal):
        # MySQL prints JSON decimals as numbers; json.loads would give float (or int)
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    return value


# charsets whose MySQL name is not a Python codec (pymysqlreplication maps utf8mb4->utf8, latin1->cp1252)
_CODEC_ALIASES = {"ucs2": "utf-16-be", "utf16": "utf-16-be", "utf16le": "utf-16-le", "utf32": "utf-32-be",
                  "utf8mb3": "utf-8", "utf8mb4": "utf-8", "binary": None, "geostd8": "latin-1",
                  "keybcs2": "cp895", "dec8": "latin-1", "armscii8": "latin-1", "swe7": "latin-1"}


def python_codec(charset_name: str | None) -> str | None:
    """MySQL/MariaDB charset (as pymysqlreplication names it) -> Python codec; None = binary."""
    if charset_name is None:
        return None
    name = charset_name.lower()
    if name in _CODEC_ALIASES:
        return _CODEC_ALIASES[name]
    try:
        return codecs.lookup(name).name
    except LookupError:
        log.warning("unknown charset, decoding as utf-8 with replacement", charset=charset_name)
        return "utf-8"


# ---------------------------------------------------------------- column specs


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """What decoding one column needs: binlog table-map metadata plus two schema facts.

    is_bool:      TINYINT(1) (display width is not in the binlog: from information_schema)
    is_json_text: MariaDB JSON (a LONGTEXT with CHECK (json_valid(col)): from information_schema)
    codec:        Python codec of a character column, None for binary data
    """

    name: str
    type: int
    unsigned: bool = False
    fsp: int = 0
    precision: int = 0
    scale: int = 0
    max_length: int = 0
    length_size: int = 0
    codec: str | None = None
    enum_values: tuple[str, ...] = ()
    set_values: tuple[str, ...] = ()
    bits: int = 0
    size: int = 0
    is_bool: bool = False
    is_json_text: bool = False

    @classmethod
    def from_binlog_column(cls, column: Any, *, is_bool: bool = False, is_json_text: bool = False) -> "ColumnSpec":
        """From a pymysqlreplication Column of a table map (binlog_row_metadata=FULL)."""
        t = column.type
        enum_values = tuple(column.enum_values[1:]) if getattr(column, "enum_values", None) else ()
        return cls(
            name=column.name,
            type=t,
            unsigned=bool(getattr(column, "unsigned", False)),
            fsp=int(getattr(column, "fsp", 0) or 0),
            precision=int(getattr(column, "precision", 0) or 0),
            scale=int(getattr(column, "decimals", 0) or 0),
            max_length=int(getattr(column, "max_length", 0) or 0),
            length_size=int(getattr(column, "length_size", 0) or 0),
            codec=python_codec(getattr(column, "character_set_name", None)),
            enum_values=enum_values,
            set_values=tuple(getattr(column, "set_values", None) or ()),
            bits=int(getattr(column, "bits", 0) or 0),
            size=int(getattr(column, "size", 0) or 0),
            is_bool=is_bool and t == FT.TINY,
            is_json_text=is_json_text and t == FT.BLOB,
        )


# ---------------------------------------------------------------- per-type decoders

_u16 = struct.Struct("<H").unpack_from
_i16 = struct.Struct("<h").unpack_from
_u32 = struct.Struct("<I").unpack_from
_i32 = struct.Struct("<i").unpack_from
_u64 = struct.Struct("<Q").unpack_from
_i64 = struct.Struct("<q").unpack_from
_f32 = struct.Struct("<f").unpack_from
_f64 = struct.Struct("<d").unpack_from
_from_bytes = int.from_bytes
_INVERT = bytes(range(255, -1, -1))  # bytes.translate table: every byte XOR 0xFF
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_FSP_BYTES = (0, 1, 1, 2, 2, 3, 3)
_FSP_SCALE = (0, 10000, 10000, 100, 100, 1, 1)  # stored fraction -> microseconds


def _text_reader(prefix: int, codec: str | None, as_json: bool = False, pad_to: int = 0) -> Decoder:
    """Length-prefixed bytes (prefix = 1..4 little-endian length bytes) -> str / base64 / JSON.

    pad_to: BINARY(n) values are n bytes (0x00-padded) in the table and in a SELECT, but the
    binlog drops the trailing zeros; pad them back so binlog and snapshot values agree.
    """
    if codec is None and pad_to:
        def read_fixed_binary(buf: bytes, off: int) -> tuple[Any, int]:
            n = _from_bytes(buf[off:off + prefix], "little")
            off += prefix
            return b64(buf[off:off + n].ljust(pad_to, b"\0")), off + n
        return read_fixed_binary
    if codec is None:
        def read_binary(buf: bytes, off: int) -> tuple[Any, int]:
            n = _from_bytes(buf[off:off + prefix], "little")
            off += prefix
            return b64(buf[off:off + n]), off + n
        return read_binary

    def decode(raw: bytes) -> str:
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            return raw.decode(codec, "replace")

    if as_json:
        def read_json_text(buf: bytes, off: int) -> tuple[Any, int]:
            n = _from_bytes(buf[off:off + prefix], "little")
            off += prefix
            text = decode(buf[off:off + n])
            try:
                value = json.loads(text)
            except ValueError:
                value = text  # not JSON after all (the CHECK was dropped?): keep the text
            return value, off + n
        return read_json_text

    if prefix == 1:
        if codec == "utf-8":
            def read_utf8_1(buf: bytes, off: int) -> tuple[Any, int]:
                n = buf[off]
                end = off + 1 + n
                try:
                    return buf[off + 1:end].decode("utf-8"), end
                except UnicodeDecodeError:
                    return buf[off + 1:end].decode("utf-8", "replace"), end
            return read_utf8_1

        def read_text_1(buf: bytes, off: int) -> tuple[Any, int]:
            n = buf[off]
            end = off + 1 + n
            return decode(buf[off + 1:end]), end
        return read_text_1

    def read_text(buf: bytes, off: int) -> tuple[Any, int]:
        n = _from_bytes(buf[off:off + prefix], "little")
        off += prefix
        return decode(buf[off:off + n]), off + n
    return read_text


def _decimal_reader(precision: int, scale: int) -> Decoder:
    """MySQL's packed DECIMAL: base-10**9 groups big-endian, sign in the top bit, negatives inverted."""
    intg = precision - scale
    intg0, intg0x = divmod(intg, 9)
    frac0, frac0x = divmod(scale, 9)
    lead = _DIG2BYTES[intg0x]
    trail = _DIG2BYTES[frac0x]
    size = lead + intg0 * 4 + frac0 * 4 + trail
    frac_fmt = f"0{scale}d"
    trail_mul = 10 ** frac0x

    def read_decimal(buf: bytes, off: int) -> tuple[Any, int]:
        raw = bytearray(buf[off:off + size])
        negative = not raw[0] & 0x80
        raw[0] ^= 0x80
        if negative:
            raw = raw.translate(_INVERT)
        ip = _from_bytes(raw[0:lead], "big") if lead else 0
        p = lead
        for _ in range(intg0):
            ip = ip * 1_000_000_000 + _from_bytes(raw[p:p + 4], "big")
            p += 4
        if scale:
            fp = 0
            for _ in range(frac0):
                fp = fp * 1_000_000_000 + _from_bytes(raw[p:p + 4], "big")
                p += 4
            if trail:
                fp = fp * trail_mul + _from_bytes(raw[p:p + trail], "big")
            text = f"{ip}.{fp:{frac_fmt}}"
            if negative and (ip or fp):
                text = "-" + text
        else:
            text = f"-{ip}" if negative and ip else f"{ip}"
        return text, off + size

    return read_decimal


def _fraction_reader(fsp: int) -> Callable[[bytes, int], int]:
    """Microseconds of a DATETIME2/TIMESTAMP2 fraction (non-negative values only)."""
    n, mul = _FSP_BYTES[fsp], _FSP_SCALE[fsp]

    def frac(buf: bytes, off: int) -> int:
        return _from_bytes(buf[off:off + n], "big") * mul
    return frac


def _datetime2_reader(fsp: int) -> Decoder:
    nfrac = _FSP_BYTES[fsp]
    frac = _fraction_reader(fsp)
    size = 5 + nfrac

    def read_datetime2(buf: bytes, off: int) -> tuple[Any, int]:
        v = _from_bytes(buf[off:off + 5], "big") - 0x8000000000
        ymd = v >> 17
        ym = ymd >> 5
        year, month, day = ym // 13, ym % 13, ymd & 31
        if not (year and month and day):
            return ZERO_DATE, off + size
        hms = v & 0x1FFFF
        micro = frac(buf, off + 5) if nfrac else 0
        return format_datetime(year, month, day, hms >> 12, (hms >> 6) & 63, hms & 63, micro, fsp), off + size

    return read_datetime2


def _timestamp2_reader(fsp: int) -> Decoder:
    nfrac = _FSP_BYTES[fsp]
    frac = _fraction_reader(fsp)
    size = 4 + nfrac

    def read_timestamp2(buf: bytes, off: int) -> tuple[Any, int]:
        seconds = _from_bytes(buf[off:off + 4], "big")
        micro = frac(buf, off + 4) if nfrac else 0
        if seconds == 0 and micro == 0:
            return ZERO_DATE, off + size  # '0000-00-00 00:00:00'
        return format_timestamp_utc(seconds, micro, fsp), off + size

    return read_timestamp2


def time2_packed(buf: bytes, off: int, fsp: int) -> int:
    """MySQL's my_time_packed_from_binary: TIME2 bytes -> signed packed value (hms << 24 | micro)."""
    if fsp >= 5:
        return _from_bytes(buf[off:off + 6], "big") - 0x800000000000
    intpart = _from_bytes(buf[off:off + 3], "big") - 0x800000
    if fsp == 0:
        return intpart << 24
    if fsp <= 2:
        fracpart = buf[off + 3]
        if intpart < 0 and fracpart:
            # negative values keep the fraction in reverse order (for binary sorting)
            intpart += 1
            fracpart -= 0x100
        return (intpart << 24) + fracpart * 10000
    fracpart = _from_bytes(buf[off + 3:off + 5], "big")
    if intpart < 0 and fracpart:
        intpart += 1
        fracpart -= 0x10000
    return (intpart << 24) + fracpart * 100


def _time2_reader(fsp: int) -> Decoder:
    size = 3 + _FSP_BYTES[fsp]

    def read_time2(buf: bytes, off: int) -> tuple[Any, int]:
        packed = time2_packed(buf, off, fsp)
        negative = packed < 0
        if negative:
            packed = -packed
        hms = packed >> 24
        return format_time(negative, (hms >> 12) & 0x3FF, (hms >> 6) & 63, hms & 63,
                           packed & 0xFFFFFF, fsp), off + size

    return read_time2


def _read_date(buf: bytes, off: int) -> tuple[Any, int]:
    v = buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16
    year, month, day = v >> 9, (v >> 5) & 15, v & 31
    if not (year and month and day):
        return ZERO_DATE, off + 3
    return f"{year:04d}-{month:02d}-{day:02d}", off + 3


def _read_time_old(buf: bytes, off: int) -> tuple[Any, int]:
    v = _from_bytes(buf[off:off + 3], "little", signed=True)  # [-]HHMMSS as a decimal number
    negative = v < 0
    v = abs(v)
    return format_time(negative, v // 10000, v // 100 % 100, v % 100, 0, 0), off + 3


def _read_datetime_old(buf: bytes, off: int) -> tuple[Any, int]:
    v = _u64(buf, off)[0]  # YYYYMMDDhhmmss as a decimal number
    d, t = divmod(v, 1_000_000)
    year, month, day = d // 10000, d // 100 % 100, d % 100
    if not (year and month and day):
        return ZERO_DATE, off + 8
    return format_datetime(year, month, day, t // 10000, t // 100 % 100, t % 100, 0, 0), off + 8


def _read_timestamp_old(buf: bytes, off: int) -> tuple[Any, int]:
    seconds = _u32(buf, off)[0]
    if seconds == 0:
        return ZERO_DATE, off + 4
    return format_timestamp_utc(seconds, 0, 0), off + 4


def _read_year(buf: bytes, off: int) -> tuple[Any, int]:
    v = buf[off]
    return (v + 1900 if v else 0), off + 1   # YEAR 0000 is a value MySQL documents: 0, never NULL


def _int_reader(unpack: Callable, size: int) -> Decoder:
    def read_int(buf: bytes, off: int) -> tuple[Any, int]:
        return unpack(buf, off)[0], off + size
    return read_int


def _read_tiny_signed(buf: bytes, off: int) -> tuple[Any, int]:
    v = buf[off]
    return (v - 256 if v > 127 else v), off + 1


def _read_tiny_unsigned(buf: bytes, off: int) -> tuple[Any, int]:
    return buf[off], off + 1


def _read_bool(buf: bytes, off: int) -> tuple[Any, int]:
    return buf[off] != 0, off + 1


def _read_int24_signed(buf: bytes, off: int) -> tuple[Any, int]:
    v = buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16
    return (v - 0x1000000 if v & 0x800000 else v), off + 3


def _read_int24_unsigned(buf: bytes, off: int) -> tuple[Any, int]:
    return buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16, off + 3


def _read_float(buf: bytes, off: int) -> tuple[Any, int]:
    return float32_to_python(_f32(buf, off)[0]), off + 4


def _read_double(buf: bytes, off: int) -> tuple[Any, int]:
    return _f64(buf, off)[0], off + 8


def _enum_reader(size: int, names: tuple[str, ...]) -> Decoder:
    table = ("",) + names

    def read_enum(buf: bytes, off: int) -> tuple[Any, int]:
        i = buf[off] if size == 1 else _u16(buf, off)[0]
        return (table[i] if i < len(table) else ""), off + size
    return read_enum


def _set_reader(size: int, names: tuple[str, ...]) -> Decoder:
    members = tuple((1 << i, n) for i, n in enumerate(names))

    def read_set(buf: bytes, off: int) -> tuple[Any, int]:
        mask = _from_bytes(buf[off:off + size], "little")
        return [n for bit, n in members if mask & bit], off + size
    return read_set


def _bit_reader(nbytes: int) -> Decoder:
    def read_bit(buf: bytes, off: int) -> tuple[Any, int]:
        return _from_bytes(buf[off:off + nbytes], "big"), off + nbytes
    return read_bit


def _mysql_json_reader(prefix: int) -> Decoder:
    from pymysqlreplication.json_binary import parse_json

    def read_json(buf: bytes, off: int) -> tuple[Any, int]:
        n = _from_bytes(buf[off:off + prefix], "little")
        off += prefix
        if n == 0:
            return None, off  # JSON 'null' written by old servers as empty
        data = buf[off:off + n]
        return json_from_mysql(parse_json(data[0], data[1:])), off + n
    return read_json


def _string_prefix(spec: ColumnSpec) -> int:
    return 2 if spec.max_length > 255 else 1


def decoder_for(spec: ColumnSpec) -> Decoder:
    """The function reading one non-NULL value of this column: (buf, off) -> (value, next off)."""
    t = spec.type
    if t == FT.TINY:
        if spec.is_bool:
            return _read_bool
        return _read_tiny_unsigned if spec.unsigned else _read_tiny_signed
    if t == FT.SHORT:
        return _int_reader(_u16 if spec.unsigned else _i16, 2)
    if t == FT.INT24:
        return _read_int24_unsigned if spec.unsigned else _read_int24_signed
    if t == FT.LONG:
        return _int_reader(_u32 if spec.unsigned else _i32, 4)
    if t == FT.LONGLONG:
        return _int_reader(_u64 if spec.unsigned else _i64, 8)
    if t == FT.NEWDECIMAL:
        return _decimal_reader(spec.precision, spec.scale)
    if t == FT.FLOAT:
        return _read_float
    if t == FT.DOUBLE:
        return _read_double
    if t == FT.STRING:
        return _text_reader(_string_prefix(spec), spec.codec, pad_to=spec.max_length)
    if t in (FT.VARCHAR, FT.VAR_STRING):
        return _text_reader(_string_prefix(spec), spec.codec)
    if t == FT.BLOB:
        return _text_reader(spec.length_size, spec.codec, as_json=spec.is_json_text)
    if t == FT.JSON:
        return _mysql_json_reader(spec.length_size)
    if t == FT.GEOMETRY:
        return _text_reader(spec.length_size, None)
    if t == FT.DATETIME2:
        return _datetime2_reader(spec.fsp)
    if t == FT.TIMESTAMP2:
        return _timestamp2_reader(spec.fsp)
    if t == FT.TIME2:
        return _time2_reader(spec.fsp)
    if t in (FT.DATE, FT.NEWDATE):
        return _read_date
    if t == FT.DATETIME:
        return _read_datetime_old
    if t == FT.TIMESTAMP:
        return _read_timestamp_old
    if t == FT.TIME:
        return _read_time_old
    if t == FT.YEAR:
        return _read_year
    if t in (FT.ENUM, FT.SET) and not (spec.enum_values or spec.set_values):
        # every ENUM/SET has members; none here means the binlog lacks them (not FULL metadata)
        raise UnsupportedColumnError(f"column {spec.name!r}: the binlog does not name its ENUM/SET members "
                                     f"(binlog_row_metadata=FULL is needed)")
    if t == FT.ENUM:
        return _enum_reader(spec.size, spec.enum_values)
    if t == FT.SET:
        return _set_reader(spec.size, spec.set_values)
    if t == FT.BIT:
        return _bit_reader((spec.bits + 7) // 8)
    raise UnsupportedColumnError(f"column {spec.name!r} has binlog type {t}, which cdc-bridge cannot decode")


def _fixed_size(spec: ColumnSpec) -> int | None:
    """Bytes a value of this column takes when the size does not depend on the value."""
    t = spec.type
    fixed = {FT.TINY: 1, FT.SHORT: 2, FT.INT24: 3, FT.LONG: 4, FT.LONGLONG: 8, FT.FLOAT: 4, FT.DOUBLE: 8,
             FT.DATE: 3, FT.NEWDATE: 3, FT.DATETIME: 8, FT.TIMESTAMP: 4, FT.TIME: 3, FT.YEAR: 1}
    if t in fixed:
        return fixed[t]
    if t == FT.NEWDECIMAL:
        intg0, intg0x = divmod(spec.precision - spec.scale, 9)
        frac0, frac0x = divmod(spec.scale, 9)
        return _DIG2BYTES[intg0x] + (intg0 + frac0) * 4 + _DIG2BYTES[frac0x]
    if t == FT.DATETIME2:
        return 5 + _FSP_BYTES[spec.fsp]
    if t == FT.TIMESTAMP2:
        return 4 + _FSP_BYTES[spec.fsp]
    if t == FT.TIME2:
        return 3 + _FSP_BYTES[spec.fsp]
    if t in (FT.ENUM, FT.SET):
        return spec.size
    if t == FT.BIT:
        return (spec.bits + 7) // 8
    return None


def _length_prefix(spec: ColumnSpec) -> int:
    """Bytes of the length before a value of this column (0: not a length-prefixed type)."""
    if spec.type in (FT.VARCHAR, FT.STRING, FT.VAR_STRING):
        return _string_prefix(spec)
    if spec.type in (FT.BLOB, FT.JSON, FT.GEOMETRY):
        return spec.length_size
    return 0


def skipper_for(spec: ColumnSpec) -> Decoder:
    """Like decoder_for but only steps over the value (columns nobody mapped)."""
    size = _fixed_size(spec)
    if size is not None:
        def skip_fixed(buf: bytes, off: int) -> tuple[Any, int]:
            return None, off + size
        return skip_fixed
    prefix = _length_prefix(spec)
    if not prefix:
        return decoder_for(spec)

    def skip_var(buf: bytes, off: int) -> tuple[Any, int]:
        return None, off + prefix + _from_bytes(buf[off:off + prefix], "little")
    return skip_var


# ---------------------------------------------------------------- rows

_ZERO_CAPABLE = frozenset({FT.DATE, FT.NEWDATE, FT.DATETIME, FT.DATETIME2, FT.TIMESTAMP, FT.TIMESTAMP2, FT.YEAR})
_KEEP, _ZERO_OK, _SKIP = 0, 1, 2


class RowPlan:
    """Reads rows of one table for one "columns present" bitmap (FULL image: all of them)."""

    __slots__ = ("null_bytes", "steps")

    def __init__(self, specs: list[ColumnSpec], present: list[int], needed: set[str] | None) -> None:
        self.null_bytes = (len(present) + 7) // 8
        steps = []
        for bit, i in enumerate(present):
            spec = specs[i]
            keep = needed is None or spec.name in needed
            if not keep:
                steps.append((spec.name, skipper_for(spec), bit >> 3, 1 << (bit & 7), _SKIP))
            else:
                kind = _ZERO_OK if spec.type in _ZERO_CAPABLE else _KEEP
                steps.append((spec.name, decoder_for(spec), bit >> 3, 1 << (bit & 7), kind))
        self.steps = tuple(steps)

    def read(self, buf: bytes, off: int) -> tuple[dict[str, Any], list[str] | None, int]:
        """One row image at buf[off:] -> (values, names of zero-date columns or None, next offset)."""
        nb = self.null_bytes
        nulls = buf[off:off + nb]
        off += nb
        row: dict[str, Any] = {}
        zeros = None
        for name, dec, byte_i, mask, kind in self.steps:
            if nulls[byte_i] & mask:
                if kind != _SKIP:
                    row[name] = None
                continue
            value, off = dec(buf, off)
            if kind:
                if kind == _SKIP:
                    continue
                if value is ZERO_DATE:
                    value = None
                    if zeros is None:
                        zeros = [name]
                    else:
                        zeros.append(name)
            row[name] = value
        return row, zeros, off


def _native_op(spec: ColumnSpec, skip: bool) -> tuple[str, int, int, tuple[str, ...] | None]:
    """(op, arg, arg2, enum table) of _rowcodec.c for this column, mirroring skipper_for / decoder_for.

    "call" means the C code calls the column's Python decoder; it gets the value's fixed size or
    length prefix, so a truncated buffer raises in C before any Python slice reads past the end.
    """
    t = spec.type
    size = _fixed_size(spec)
    prefix = _length_prefix(spec)
    call = ("call", size if size is not None and size >= 0 else 0, prefix if 0 <= prefix <= 4 else 0, None)
    if skip:
        if size is not None:
            return ("skip_fixed", size, 0, None) if size >= 0 else call
        return ("skip_var", prefix, 0, None) if 1 <= prefix <= 4 else call
    if t == FT.TINY:
        return ("bool" if spec.is_bool else "u8" if spec.unsigned else "i8"), 0, 0, None
    ints = {FT.SHORT: "16", FT.INT24: "24", FT.LONG: "32", FT.LONGLONG: "64"}
    if t in ints:
        return ("u" if spec.unsigned else "i") + ints[t], 0, 0, None
    if t == FT.DOUBLE:
        return "f64", 0, 0, None
    if t == FT.NEWDECIMAL and 1 <= spec.precision <= 65 and 0 <= spec.scale <= spec.precision:
        return "decimal", spec.precision, spec.scale, None
    if spec.codec == "utf-8" and 1 <= prefix <= 4 and t != FT.JSON and t != FT.GEOMETRY and not spec.is_json_text:
        return "utf8", prefix, 0, None  # CHAR/VARCHAR/TEXT: _text_reader with the utf-8 codec
    if t in (FT.DATETIME2, FT.TIMESTAMP2) and 0 <= spec.fsp <= 6:
        return ("datetime2" if t == FT.DATETIME2 else "timestamp2"), spec.fsp, 0, None
    if t in (FT.DATE, FT.NEWDATE):
        return "date", 0, 0, None
    if t == FT.ENUM and spec.size in (1, 2):
        return "enum", spec.size, 0, ("",) + tuple(spec.enum_values)  # the table of _enum_reader
    return call


class NativeRowPlan(RowPlan):
    """A RowPlan whose `read` is _rowcodec.RowReader.read (same contract); RowPlan.read stays the reference."""

    __slots__ = ("read",)

    def __init__(self, specs: list[ColumnSpec], present: list[int], needed: set[str] | None) -> None:
        super().__init__(specs, present, needed)
        native = []
        for i, (name, dec, byte_i, mask, kind) in zip(present, self.steps):
            op, arg, arg2, table = _native_op(specs[i], kind == _SKIP)
            native.append((name, dec, byte_i, mask, kind == _SKIP, kind == _ZERO_OK, op, arg, arg2, table))
        self.read = _rowcodec.RowReader(self.null_bytes, tuple(native), ZERO_DATE).read


# The C reader when it was built and not turned off (CDC_BRIDGE_NATIVE_ROWS=0), else the Python one.
try:
    from cdc_bridge.source import _rowcodec
except ImportError:
    _rowcodec = None
ROW_DECODER = "native" if _rowcodec is not None and os.environ.get("CDC_BRIDGE_NATIVE_ROWS") != "0" else "python"
_ROW_PLAN = NativeRowPlan if ROW_DECODER == "native" else RowPlan


@dataclass(slots=True)
class TableDecoder:
    """Decoding plans of one table version (one table map), cached per present-columns bitmap."""

    table: str
    specs: list[ColumnSpec]
    needed: set[str] | None
    _plans: dict[bytes, RowPlan] = field(default_factory=dict)

    def plan(self, present_bitmap: bytes) -> RowPlan:
        plan = self._plans.get(present_bitmap)
        if plan is None:
            n = len(self.specs)
            present = [i for i in range(n) if present_bitmap[i >> 3] & (1 << (i & 7))]
            plan = self._plans[present_bitmap] = _ROW_PLAN(self.specs, present, self.needed)
        return plan

    @property
    def column_names(self) -> list[str]:
        return [s.name for s in self.specs]


# ---------------------------------------------------------------- schema facts the binlog lacks

_JSON_VALID = re.compile(r"json_valid\(\s*`((?:[^`]|``)+)`\s*\)", re.IGNORECASE)


def json_checked_columns(check_clauses: list[str]) -> set[str]:
    """Columns named in json_valid(`col`) CHECK clauses (MariaDB's JSON = LONGTEXT + CHECK)."""
    cols: set[str] = set()
    for clause in check_clauses:
        for m in _JSON_VALID.finditer(clause or ""):
            cols.add(m.group(1).replace("``", "`"))
    return cols


def is_tinyint1(column_type: str) -> bool:
    """information_schema COLUMN_TYPE 'tinyint(1)' / 'tinyint(1) unsigned' -> True."""
    return column_type.lower().replace(" ", "").startswith("tinyint(1)")
