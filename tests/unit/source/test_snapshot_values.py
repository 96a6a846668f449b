"""Snapshot value normalization: from the text protocol's bytes and from PyMySQL's converted types
to the RowChange values of docs/types.md (the integration test compares them with the binlog's)."""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal

import pytest

from cdc_bridge.source.snapshot import (SnapshotColumn, SnapshotError, _TablePlan, enum_members, normalizer_for)
from cdc_bridge.mapping.schema import RootMapping
from cdc_bridge.source.values import ZERO_DATE


def col(data_type: str, column_type: str = "", **kw) -> SnapshotColumn:
    return SnapshotColumn(name=kw.pop("name", "c"), data_type=data_type, column_type=column_type or data_type, **kw)


def norm(data_type: str, value, column_type: str = "", **kw):
    return normalizer_for(col(data_type, column_type, **kw))(value)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("value,want", [(b"-128", -128), (b"18446744073709551615", 18446744073709551615), (7, 7)])
def test_integers(value, want):
    assert norm("bigint", value) == want and type(norm("bigint", value)) is int


@pytest.mark.parametrize("value,want", [(b"1", True), (b"0", False), (b"-2", True), (1, True), (0, False)])
def test_tinyint1_is_bool(value, want):
    assert norm("tinyint", value, "tinyint(1)") is want
    assert norm("tinyint", value, "tinyint(1) unsigned") is want
    assert norm("tinyint", b"1", "tinyint(4)") == 1 and norm("tinyint", b"1", "tinyint(4)") is not True


@pytest.mark.parametrize("value,scale,want", [
    (b"12.50", 2, "12.50"),                 # the server's text already has the scale
    (Decimal("12.5"), 2, "12.50"),          # PyMySQL's Decimal
    (Decimal("5"), 2, "5.00"),
    (b"-42", 0, "-42"),
    (b"12.5", 2, "12.50"),                  # not the column's scale: formatted
    (b"-0.00", 2, "0.00"),                  # never "-0"
    (Decimal("-0.000000000000000000000000000001"), 30, "-0.000000000000000000000000000001"),
    (Decimal("12345678901234567890123456789012345.123456789012345678901234567890"), 30,
     "12345678901234567890123456789012345.123456789012345678901234567890"),
])
def test_decimal_is_an_exact_string_with_the_scale(value, scale, want):
    assert norm("decimal", value, scale=scale) == want


def test_float_is_read_as_double_and_shortened_like_the_binlog():
    # FLOAT is selected as CAST(col AS DOUBLE): the exact float32 widened; shortest float32 repr wins
    assert col("float").select_expr() == "CAST(`c` AS DOUBLE)"
    assert col("float").select_expr("c") == "CAST(c.`c` AS DOUBLE)"
    assert norm("float", b"0.12345670163631439") == 0.1234567
    assert norm("float", b"1.100000023841858") == 1.1
    assert norm("float", 1.100000023841858) == 1.1
    assert norm("double", b"0.30000000000000004") == 0.30000000000000004
    assert norm("double", 2.5) == 2.5


@pytest.mark.parametrize("value,fsp,want", [
    (b"2024-02-29 13:14:15", 0, "2024-02-29T13:14:15"),
    (b"2024-02-29 13:14:15.5", 1, "2024-02-29T13:14:15.500000"),
    (b"2024-02-29 13:14:15.123", 3, "2024-02-29T13:14:15.123000"),
    (b"2024-01-01 00:00:00.000000", 6, "2024-01-01T00:00:00.000000"),
    (dt.datetime(2024, 2, 29, 13, 14, 15, 500000), 3, "2024-02-29T13:14:15.500000"),
    (dt.datetime(2024, 2, 29, 13, 14, 15), 0, "2024-02-29T13:14:15"),
    (b"0000-00-00 00:00:00", 0, ZERO_DATE),
    (b"2024-00-10 10:00:00", 0, ZERO_DATE),
    ("0000-00-00 00:00:00", 0, ZERO_DATE),  # PyMySQL gives up on zero dates and returns the str
])
def test_datetime(value, fsp, want):
    assert norm("datetime", value, fsp=fsp) == want


@pytest.mark.parametrize("value,fsp,want", [
    (b"2024-01-01 04:30:00.123456", 6, "2024-01-01T04:30:00.123456Z"),  # read in a UTC session
    (b"2038-01-19 03:14:07", 0, "2038-01-19T03:14:07Z"),
    (b"1970-01-01 00:00:01.00", 2, "1970-01-01T00:00:01.000000Z"),
    (dt.datetime(2024, 6, 30, 18, 29, 59), 0, "2024-06-30T18:29:59Z"),
    (b"0000-00-00 00:00:00", 0, ZERO_DATE),
])
def test_timestamp_is_utc_with_z(value, fsp, want):
    assert norm("timestamp", value, fsp=fsp) == want


@pytest.mark.parametrize("value,want", [(b"2024-02-29", "2024-02-29"), (dt.date(1000, 1, 1), "1000-01-01"),
                                        (b"0000-00-00", ZERO_DATE), (b"2024-02-00", ZERO_DATE)])
def test_date(value, want):
    assert norm("date", value) == want


@pytest.mark.parametrize("value,fsp,want", [
    (b"838:59:59", 0, "838:59:59"),
    (b"-838:59:59", 0, "-838:59:59"),
    (b"-00:00:00.5", 1, "-00:00:00.500000"),
    (b"123:45:06.000007", 6, "123:45:06.000007"),
    (dt.timedelta(hours=-12, minutes=-34, seconds=-56, microseconds=-700000), 1, "-12:34:56.700000"),
    (dt.timedelta(days=34, hours=22, minutes=59, seconds=59), 0, "838:59:59"),
    (dt.timedelta(0), 6, "00:00:00.000000"),
])
def test_time(value, fsp, want):
    assert norm("time", value, fsp=fsp) == want


@pytest.mark.parametrize("value,want", [(b"2024", 2024), (b"0000", 0), (1901, 1901), (0, 0)])   # YEAR 0000: 0
def test_year(value, want):
    assert norm("year", value) == want


def test_text_is_decoded_with_the_columns_charset():
    assert norm("varchar", "h\u00e9llo \U0001F600".encode(), charset="utf8mb4") == "h\u00e9llo \U0001F600"
    assert norm("varchar", "caf\u00e9 \u20ac".encode("cp1252"), charset="latin1") == "caf\u00e9 \u20ac"
    assert norm("char", b"ab", charset="utf8mb3") == "ab"
    assert norm("varchar", "already text", charset="utf8mb4") == "already text"
    assert norm("text", b"\xff\xfe", charset="utf8mb4") == "\ufffd\ufffd"  # invalid bytes: replaced, as in the binlog


def test_binary_is_base64_and_binary_n_padded():
    assert norm("binary", b"\x01\x02\x00\x00", octet_length=4) == b64(b"\x01\x02\x00\x00")
    assert norm("binary", b"\x01\x02", octet_length=4) == "AQIAAA=="
    assert norm("varbinary", b"\x00\xff") == "AP8="
    assert norm("blob", b"") == ""
    assert norm("point", b"\x00\x00\x00\x00\x01\x01") == b64(b"\x00\x00\x00\x00\x01\x01")


@pytest.mark.parametrize("value,want", [(b"\x02\x01", 513), (b"\xff" * 8, 2**64 - 1), (b"\x00", 0), (5, 5)])
def test_bit_is_an_int(value, want):
    # PyMySQL returns BIT as big-endian bytes
    assert norm("bit", value, "bit(10)") == want


def test_enum_and_set():
    assert norm("enum", b"paid", "enum('pending','paid')", charset="utf8mb4") == "paid"
    assert norm("enum", b"", "enum('pending','paid')", charset="utf8mb4") == ""
    s = dict(column_type="set('a','b','c')", charset="utf8mb4")
    assert norm("set", b"a,c", **s) == ["a", "c"]
    assert norm("set", "a,c", **s) == ["a", "c"]
    assert norm("set", b"", **s) == []
    assert norm("set", {"c", "a"}, **s) == ["a", "c"]  # a Python set: definition order
    assert enum_members("set('a','it''s','x,y')") == ("a", "it's", "x,y")
    # the server escapes a backslash in COLUMN_TYPE too: 'a\\b' is the member a\b
    assert enum_members("set('a\\\\b','c\\'d','e')") == ("a\\b", "c'd", "e")


def test_json():
    assert norm("json", b'{"a": [1, 2.5, null, true], "n": 12345678901234567890}') == {
        "a": [1, 2.5, None, True], "n": 12345678901234567890}
    assert norm("json", '"text"') == "text"
    assert norm("json", {"already": "parsed"}) == {"already": "parsed"}
    # MariaDB JSON = LONGTEXT + json_valid check; a VARCHAR with the check stays text (as in the binlog)
    info = {"COLUMN_NAME": "j", "DATA_TYPE": "longtext", "COLUMN_TYPE": "longtext", "CHARACTER_SET_NAME": "utf8mb4"}
    j = SnapshotColumn.from_information_schema(info, {"j"})
    assert j.is_json_text and normalizer_for(j)(b"[1]") == [1]
    assert normalizer_for(j)(b"not json") == "not json"
    v = SnapshotColumn.from_information_schema(dict(info, DATA_TYPE="varchar", COLUMN_TYPE="varchar(9)"), {"j"})
    assert not v.is_json_text and normalizer_for(v)(b"[1]") == "[1]"


def test_mariadb_uuid_and_inet_are_base64_of_the_binlog_bytes():
    assert norm("uuid", b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6") == b64(bytes.fromhex("f81d4fae7dec11d0a76500a0c91e6bf6"))
    assert norm("inet6", b"::1") == "AAAAAAAAAAAAAAAAAAAAAQ=="
    assert norm("inet4", b"10.0.0.1") == b64(b"\x0a\x00\x00\x01")


def test_unknown_type_is_refused():
    with pytest.raises(SnapshotError, match="vector"):
        norm("vector", b"x")


def test_information_schema_row():
    c = SnapshotColumn.from_information_schema({
        "COLUMN_NAME": "total", "DATA_TYPE": "DECIMAL", "COLUMN_TYPE": "decimal(12,2)", "IS_NULLABLE": "NO",
        "NUMERIC_PRECISION": 12, "NUMERIC_SCALE": 2, "DATETIME_PRECISION": None, "CHARACTER_SET_NAME": None,
        "CHARACTER_OCTET_LENGTH": None})
    assert (c.name, c.data_type, c.nullable, c.precision, c.scale) == ("total", "decimal", False, 12, 2)
    assert c.placeholder == "CAST(%s AS DECIMAL(12,2))" and c.to_param("12.50") == "12.50"


@pytest.mark.parametrize("column,value,param", [
    (col("bigint"), 17, 17),
    (col("tinyint", "tinyint(1)"), True, 1),
    (col("varchar", charset="utf8mb4"), "C-10", "C-10"),
    (col("varbinary"), "AP8=", b"\x00\xff"),
    (col("datetime", fsp=6), "2024-01-01T10:00:00.500000", "2024-01-01 10:00:00.500000"),
    (col("timestamp"), "2024-01-01T10:00:00Z", "2024-01-01 10:00:00"),
    (col("date"), "2024-01-01", "2024-01-01"),
    (col("uuid"), b64(bytes.fromhex("f81d4fae7dec11d0a76500a0c91e6bf6")), "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
    (col("inet6"), "AAAAAAAAAAAAAAAAAAAAAQ==", "::1"),
])
def test_key_values_back_to_parameters(column, value, param):
    assert column.to_param(value) == param


def test_unsuitable_key_values():
    with pytest.raises(SnapshotError, match="NULL"):
        col("int").to_param(None)
    with pytest.raises(SnapshotError, match="cannot be used as a snapshot key"):
        col("enum", "enum('a')").to_param("a")


def test_table_plan_rows_keep_mapped_columns_and_flag_zero_dates():
    tm = RootMapping.model_validate({"table": "s.t", "id": "id", "fields": ["due", "n"]})
    columns = [col("int", name="seq"), col("int", name="id"), col("date", name="due"), col("int", name="n")]
    keep = [False, True, True, True]  # seq: read for paging only
    plan = _TablePlan("s.t", tm, columns, keep, [normalizer_for(c) for c in columns], ["id", "seq"])
    [a, b] = plan.changes([(b"1", b"5", b"0000-00-00", None), (b"2", b"6", b"2024-01-02", b"3")])
    assert (a.table, a.op, a.before, a.after, a.zero_dates) == ("s.t", "snapshot", None,
                                                                {"id": 5, "due": None, "n": None}, ["due"])
    assert b.after == {"id": 6, "due": "2024-01-02", "n": 3} and b.zero_dates is None
    assert plan.key_of((b"2", b"6", b"x", None), plan.order_idx) == [6, 2]
