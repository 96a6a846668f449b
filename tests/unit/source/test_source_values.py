"""Value normalization: the binary row format of the binlog -> JSON-friendly values.

The encoders (binlog_encoding.py) follow MySQL's own packing code (decimal2bin,
my_datetime_packed_to_binary, my_time_packed_to_binary) so each decoder is checked against the
format, not against itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import struct
from decimal import Decimal
from types import SimpleNamespace

import pytest
from pymysqlreplication.constants import FIELD_TYPE as FT
from pymysqlreplication.util.bytes import parse_decimal_from_bytes

from binlog_encoding import enc_date, enc_datetime2, enc_decimal, enc_time2, enc_timestamp2, lp, spec
from cdc_bridge.source.values import (ZERO_DATE, ColumnSpec, TableDecoder, UnsupportedColumnError, b64, decoder_for,
                                      float32_to_python, format_decimal, format_time, format_timedelta,
                                      format_timestamp_utc, is_tinyint1, json_checked_columns, json_from_mysql,
                                      python_codec, skipper_for)

def decode(spec: ColumnSpec, data: bytes, trailing: bytes = b"\x99"):
    """Decode one value; checks the decoder consumes exactly its bytes."""
    value, off = decoder_for(spec)(data + trailing, 0)
    assert off == len(data)
    return value



# ------------------------------------------------------------------ integers, floats, decimals

@pytest.mark.parametrize("t,unsigned,raw,expected", [
    (FT.TINY, False, b"\x80", -128), (FT.TINY, True, b"\xff", 255), (FT.TINY, False, b"\x7f", 127),
    (FT.SHORT, False, struct.pack("<h", -32768), -32768), (FT.SHORT, True, b"\xff\xff", 65535),
    (FT.INT24, False, b"\x00\x00\x80", -8388608), (FT.INT24, True, b"\xff\xff\xff", 16777215),
    (FT.INT24, False, b"\xff\xff\x7f", 8388607),
    (FT.LONG, False, struct.pack("<i", -2147483648), -2147483648), (FT.LONG, True, b"\xff" * 4, 4294967295),
    (FT.LONGLONG, False, struct.pack("<q", -(2**63)), -(2**63)),
    (FT.LONGLONG, True, b"\xff" * 8, 18446744073709551615),
])
def test_integers_keep_sign_and_full_range(t, unsigned, raw, expected):
    assert decode(spec(t, unsigned=unsigned), raw) == expected


def test_tinyint1_is_bool_any_nonzero_true():
    s = spec(FT.TINY, is_bool=True)
    assert decode(s, b"\x01") is True
    assert decode(s, b"\x00") is False
    assert decode(s, b"\xfe") is True  # -2 in a TINYINT(1) column


def test_is_bool_only_applies_to_tiny():
    column = SimpleNamespace(name="n", type=FT.LONG, unsigned=False)
    assert ColumnSpec.from_binlog_column(column, is_bool=True).is_bool is False


@pytest.mark.parametrize("precision,scale,text,expected", [
    (12, 2, "5", "5.00"),
    (12, 2, "-12.5", "-12.50"),
    (12, 2, "9999999999.99", "9999999999.99"),
    (20, 6, "12345678901234.123456", "12345678901234.123456"),
    (20, 6, "-99999999999999.999999", "-99999999999999.999999"),
    (20, 6, "0.000001", "0.000001"),
    (20, 6, "-0.5", "-0.500000"),
    (20, 6, "0", "0.000000"),
    (10, 0, "-42", "-42"),
    (10, 0, "0", "0"),
    (18, 9, "123456789.123456789", "123456789.123456789"),
    (65, 30, "-" + "9" * 35 + "." + "9" * 30, "-" + "9" * 35 + "." + "9" * 30),
    (65, 30, "1." + "0" * 29 + "1", "1." + "0" * 29 + "1"),
    (5, 5, "0.12345", "0.12345"),
    (1, 0, "7", "7"),
])
def test_decimal_exact_string_with_scale(precision, scale, text, expected):
    raw = enc_decimal(text, precision, scale)
    # the encoder agrees with the library's reference decoder...
    assert parse_decimal_from_bytes(raw, precision, scale) == Decimal(text)
    # ...and ours gives the exact text, never a float
    value = decode(spec(FT.NEWDECIMAL, precision=precision, scale=scale), raw)
    assert value == expected
    assert isinstance(value, str)


def test_float_is_shortest_float32_and_double_exact():
    assert decode(spec(FT.FLOAT), struct.pack("<f", 1.1)) == 1.1
    assert decode(spec(FT.FLOAT), struct.pack("<f", -3.4028235e38)) == -3.4028235e38
    assert decode(spec(FT.FLOAT), struct.pack("<f", 0.0)) == 0.0
    assert decode(spec(FT.DOUBLE), struct.pack("<d", 3.141592653589793)) == 3.141592653589793
    assert float32_to_python(float("inf")) == float("inf")


def test_format_decimal_for_snapshot_values():
    assert format_decimal(Decimal("5"), 2) == "5.00"
    assert format_decimal(Decimal("-0.001"), 2) == "0.00"  # rounds to zero: no "-0.00"
    assert format_decimal("12345678901234567890123456789012345.5", 1) == "12345678901234567890123456789012345.5"
    assert format_decimal(7, 0) == "7"


# ------------------------------------------------------------------ temporal

@pytest.mark.parametrize("fsp", [0, 1, 2, 3, 4, 5, 6])
def test_datetime2_all_fsp(fsp):
    micro = {0: 0, 1: 500000, 2: 120000, 3: 123000, 4: 123400, 5: 123450, 6: 123456}[fsp]
    raw = enc_datetime2(2024, 2, 29, 23, 59, 58, micro, fsp)
    expected = "2024-02-29T23:59:58" + (f".{micro:06d}" if fsp else "")
    assert decode(spec(FT.DATETIME2, fsp=fsp), raw) == expected


def test_datetime2_fraction_always_six_digits_when_fsp_nonzero():
    assert decode(spec(FT.DATETIME2, fsp=3), enc_datetime2(2024, 1, 1, 0, 0, 0, 0, 3)) == "2024-01-01T00:00:00.000000"
    assert decode(spec(FT.DATETIME2, fsp=0), enc_datetime2(1000, 1, 1, 0, 0, 0)) == "1000-01-01T00:00:00"
    assert decode(spec(FT.DATETIME2, fsp=0), enc_datetime2(9999, 12, 31, 23, 59, 59)) == "9999-12-31T23:59:59"


@pytest.mark.parametrize("raw", [
    enc_datetime2(0, 0, 0, 0, 0, 0), enc_datetime2(2024, 0, 10, 1, 2, 3), enc_datetime2(2024, 5, 0, 0, 0, 0),
])
def test_datetime2_zero_dates(raw):
    assert decode(spec(FT.DATETIME2), raw) is ZERO_DATE


def test_datetime2_zero_date_consumes_fraction():
    assert decode(spec(FT.DATETIME2, fsp=6), enc_datetime2(0, 0, 0, 0, 0, 0, 0, 6)) is ZERO_DATE


@pytest.mark.parametrize("fsp", [0, 2, 4, 6])
def test_timestamp2_is_utc_with_z(fsp):
    seconds = int(dt.datetime(2024, 1, 1, 4, 30, tzinfo=dt.timezone.utc).timestamp())
    micro = 123400 if fsp >= 4 else (120000 if fsp else 0)
    value = decode(spec(FT.TIMESTAMP2, fsp=fsp), enc_timestamp2(seconds, micro, fsp))
    assert value == "2024-01-01T04:30:00" + (f".{micro:06d}" if fsp else "") + "Z"


def test_timestamp2_zero_and_extremes():
    assert decode(spec(FT.TIMESTAMP2), enc_timestamp2(0)) is ZERO_DATE
    assert decode(spec(FT.TIMESTAMP2), enc_timestamp2(1)) == "1970-01-01T00:00:01Z"
    assert decode(spec(FT.TIMESTAMP2), enc_timestamp2(2**31 - 1)) == "2038-01-19T03:14:07Z"
    # MariaDB 11.5+ allows TIMESTAMP up to 2106 (unsigned seconds)
    assert decode(spec(FT.TIMESTAMP2), enc_timestamp2(2**32 - 1)) == "2106-02-07T06:28:15Z"


@pytest.mark.parametrize("fsp", [0, 1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("negative,h,m,s,micro", [
    (False, 0, 0, 0, 0), (False, 12, 34, 56, 0), (True, 12, 34, 56, 0), (False, 838, 59, 59, 0),
    (True, 838, 59, 59, 0), (True, 0, 0, 0, 500000), (True, 0, 0, 1, 500000), (True, 1, 2, 3, 4000),
    (False, 23, 59, 59, 990000), (True, 0, 0, 0, 10000), (True, 100, 0, 0, 120000),
])
def test_time2_negative_and_over_24h(fsp, negative, h, m, s, micro):
    # keep only the fraction digits the column can hold
    micro = micro - micro % (10 ** (6 - fsp))
    if negative and not (h or m or s or micro):
        negative = False  # "-00:00:00" does not exist
    raw = enc_time2(negative, h, m, s, micro, fsp)
    expected = format_time(negative, h, m, s, micro, fsp)
    assert decode(spec(FT.TIME2, fsp=fsp), raw) == expected


def test_time_formatting():
    assert format_time(True, 838, 59, 59, 0, 0) == "-838:59:59"
    assert format_time(False, 1, 2, 3, 4, 6) == "01:02:03.000004"
    assert format_timedelta(dt.timedelta(hours=-1, minutes=-2, seconds=-3), 0) == "-01:02:03"
    assert format_timedelta(dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=5), 6) == "838:59:59.000005"
    assert format_timedelta(-dt.timedelta(microseconds=500000), 1) == "-00:00:00.500000"


def test_date_and_zero_dates():
    assert decode(spec(FT.DATE), enc_date(2024, 2, 29)) == "2024-02-29"
    assert decode(spec(FT.DATE), enc_date(1, 1, 1)) == "0001-01-01"
    assert decode(spec(FT.DATE), enc_date(0, 0, 0)) is ZERO_DATE
    assert decode(spec(FT.DATE), enc_date(2024, 0, 10)) is ZERO_DATE
    assert decode(spec(FT.DATE), enc_date(2024, 3, 0)) is ZERO_DATE


def test_year():
    assert decode(spec(FT.YEAR), bytes([124])) == 2024
    assert decode(spec(FT.YEAR), bytes([255])) == 2155
    assert decode(spec(FT.YEAR), bytes([1])) == 1901
    assert decode(spec(FT.YEAR), bytes([0])) == 0          # YEAR 0000: a value, not NULL (issue 16)


def test_old_temporal_formats():
    assert decode(spec(FT.DATETIME), struct.pack("<Q", 20240229235958)) == "2024-02-29T23:59:58"
    assert decode(spec(FT.DATETIME), struct.pack("<Q", 0)) is ZERO_DATE
    assert decode(spec(FT.TIME), (-123456).to_bytes(3, "little", signed=True)) == "-12:34:56"
    assert decode(spec(FT.TIMESTAMP), struct.pack("<I", 86400)) == "1970-01-02T00:00:00Z"
    assert format_timestamp_utc(0, 5, 6) == "1970-01-01T00:00:00.000005Z"


# ------------------------------------------------------------------ strings, binary, json, enum, set, bit


def test_utf8mb4_text_with_emoji_and_long_varchar():
    s = spec(FT.VARCHAR, max_length=40, codec="utf-8")
    assert decode(s, lp("héllo 😀".encode())) == "héllo 😀"
    long = spec(FT.VARCHAR, max_length=1200, codec="utf-8")  # > 255 bytes: 2-byte length
    text = "ä" * 300
    assert decode(long, lp(text.encode(), 2)) == text
    blob_text = spec(FT.BLOB, length_size=4, codec="utf-8")
    assert decode(blob_text, lp("𝄞 music".encode(), 4)) == "𝄞 music"


def test_other_charsets_decode_by_column_charset():
    latin1 = spec(FT.VARCHAR, max_length=10, codec=python_codec("cp1252"))
    assert decode(latin1, lp("café €".encode("cp1252"))) == "café €"
    assert python_codec("utf8") == "utf-8"
    assert python_codec("binary") is None
    assert python_codec("ucs2") == "utf-16-be"


def test_invalid_bytes_in_text_are_replaced_not_raised():
    s = spec(FT.VARCHAR, max_length=10, codec="utf-8")
    assert decode(s, lp(b"a\xffb")) == "a\ufffdb"


def test_binary_is_base64_and_binary_n_is_padded():
    raw = b"\x00\xff\x10\xfe"
    assert decode(spec(FT.BLOB, length_size=2), lp(raw, 2)) == base64.b64encode(raw).decode()
    assert decode(spec(FT.VARCHAR, max_length=10), lp(b"\x01\x02")) == "AQI="
    # BINARY(4) holding x'0102': the binlog drops the trailing zeros, a SELECT shows 01020000
    assert decode(spec(FT.STRING, max_length=4), lp(b"\x01\x02")) == b64(b"\x01\x02\x00\x00")
    assert decode(spec(FT.GEOMETRY, length_size=4), lp(b"\x00\x00\x00\x00\x01", 4)) == "AAAAAAE="


def test_mariadb_json_text_is_parsed():
    s = spec(FT.BLOB, length_size=4, codec="utf-8", is_json_text=True)
    doc = {"a": {"b": [1, 2.5, "x", True, None]}, "ü": "😀"}
    assert decode(s, lp(json.dumps(doc).encode(), 4)) == doc
    assert decode(s, lp(b'"just a string"', 4)) == "just a string"
    assert decode(s, lp(b"not json", 4)) == "not json"  # CHECK dropped: keep the text


def test_mysql_binary_json_values_become_plain_json():
    value = {b"k": [b"v", Decimal("1.5"), Decimal("2"), dt.datetime(2024, 1, 2, 3, 4, 5), None, True]}
    assert json_from_mysql(value) == {"k": ["v", 1.5, 2, "2024-01-02T03:04:05", None, True]}


def test_enum_and_set_by_name():
    e = spec(FT.ENUM, size=1, enum_values=("pending", "paid"))
    assert decode(e, b"\x02") == "paid"
    assert decode(e, b"\x00") == ""  # the invalid-value index
    big = spec(FT.ENUM, size=2, enum_values=tuple(f"v{i}" for i in range(300)))
    assert decode(big, struct.pack("<H", 300)) == "v299"
    st = spec(FT.SET, size=1, set_values=("x", "y", "z"))
    assert decode(st, b"\x05") == ["x", "z"]
    assert decode(st, b"\x00") == []
    wide = spec(FT.SET, size=8, set_values=tuple(f"m{i}" for i in range(64)))
    assert decode(wide, (1 << 63 | 1).to_bytes(8, "little")) == ["m0", "m63"]


def test_bit_is_int():
    assert decode(spec(FT.BIT, bits=10), (513).to_bytes(2, "big")) == 513
    assert decode(spec(FT.BIT, bits=1), b"\x01") == 1
    assert decode(spec(FT.BIT, bits=64), b"\xff" * 8) == 2**64 - 1


def test_unknown_type_or_missing_metadata_is_refused():
    with pytest.raises(UnsupportedColumnError):
        decoder_for(spec(200))
    with pytest.raises(UnsupportedColumnError, match="binlog_row_metadata"):
        decoder_for(spec(FT.ENUM, size=1))


def test_skippers_step_over_the_same_bytes_as_decoders():
    cases = [
        (spec(FT.NEWDECIMAL, precision=20, scale=6), enc_decimal("-1.5", 20, 6)),
        (spec(FT.DATETIME2, fsp=6), enc_datetime2(2024, 1, 1, 0, 0, 0, 1, 6)),
        (spec(FT.TIME2, fsp=3), enc_time2(True, 1, 0, 0, 5000, 3)),
        (spec(FT.VARCHAR, max_length=1000, codec="utf-8"), lp(b"abc", 2)),
        (spec(FT.BLOB, length_size=3), lp(b"\x00" * 70000, 3)),
        (spec(FT.SET, size=2, set_values=("a",)), b"\x01\x00"),
        (spec(FT.BIT, bits=17), b"\x01\x02\x03"),
    ]
    for s, raw in cases:
        _, off = skipper_for(s)(raw + b"\x99", 0)
        assert off == len(raw), s


# ------------------------------------------------------------------ rows

def test_row_plan_nulls_zero_dates_and_unneeded_columns():
    specs = [
        ColumnSpec("id", FT.LONGLONG),
        ColumnSpec("note", FT.VARCHAR, max_length=100, codec="utf-8"),
        ColumnSpec("d", FT.DATE),
        ColumnSpec("secret", FT.BLOB, length_size=2),
        ColumnSpec("total", FT.NEWDECIMAL, precision=12, scale=2),
    ]
    decoder = TableDecoder("s.t", specs, needed={"id", "note", "d", "total"})
    plan = decoder.plan(b"\x1f")
    # row 1: note NULL (bit 1), d zero date, secret skipped; row 2: all set
    row1 = bytes([0b00000010]) + struct.pack("<q", 7) + enc_date(0, 0, 0) + lp(b"xyz", 2) + enc_decimal("1.5", 12, 2)
    row2 = (bytes([0]) + struct.pack("<q", 8) + lp("ok".encode()) + enc_date(2024, 1, 2) + lp(b"", 2)
            + enc_decimal("-3", 12, 2))
    buf = row1 + row2
    values, zeros, off = plan.read(buf, 0)
    assert values == {"id": 7, "note": None, "d": None, "total": "1.50"}
    assert zeros == ["d"]
    values, zeros, off = plan.read(buf, off)
    assert values == {"id": 8, "note": "ok", "d": "2024-01-02", "total": "-3.00"}
    assert zeros is None
    assert off == len(buf)


def test_row_plan_partial_image_uses_present_columns_only():
    specs = [ColumnSpec("a", FT.LONG), ColumnSpec("b", FT.LONG), ColumnSpec("c", FT.LONG)]
    plan = TableDecoder("s.t", specs, None).plan(b"\x05")  # a and c present (MINIMAL/NOBLOB image)
    buf = bytes([0b10]) + struct.pack("<i", 1)  # c (2nd present column) is NULL
    values, _, off = plan.read(buf, 0)
    assert values == {"a": 1, "c": None}
    assert off == len(buf)


# ------------------------------------------------------------------ schema facts

def test_schema_fact_helpers():
    assert is_tinyint1("tinyint(1)") and is_tinyint1("TINYINT(1) UNSIGNED")
    assert not is_tinyint1("tinyint(4)") and not is_tinyint1("tinyint") and not is_tinyint1("int(1)")
    clauses = ["json_valid(`doc`)", "json_valid(`we``ird`) and 1", "`n` > 0"]
    assert json_checked_columns(clauses) == {"doc", "we`ird"}
