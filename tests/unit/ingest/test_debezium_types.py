"""Debezium's JSON values from the source's values (ingest/debezium_types.py). The expected values are those
Debezium 3.5.0 wrote for the same rows (tests/data/debezium/debezium-3.5.0-mariadb.jsonl); the integration
test test_change_stream_golden.py compares whole records."""

from __future__ import annotations

import base64
import struct

import pytest
from pymysqlreplication.constants import FIELD_TYPE as FT

from cdc_bridge.ingest.debezium_types import (RowEncoder, bits_little_endian, days, encoder_for, epoch_micros,
                                              epoch_millis, geometry, json_text, kind_of, micro_time, point,
                                              unsigned_long, zoned_timestamp)
from cdc_bridge.source.snapshot import SnapshotColumn
from cdc_bridge.source.transaction import TableShape
from cdc_bridge.source.values import ColumnSpec


def spec(t, **kw) -> ColumnSpec:
    return ColumnSpec(name=kw.pop("name", "c"), type=t, **kw)


def col(data_type: str, column_type: str = "", **kw) -> SnapshotColumn:
    return SnapshotColumn(name=kw.pop("name", "c"), data_type=data_type, column_type=column_type or data_type, **kw)


@pytest.mark.parametrize("value,want", [("1970-01-01", 0), ("2024-02-29", 19782), ("1969-07-20", -165),
                                        ("2000-01-01", 10957)])
def test_date_is_days_since_the_epoch(value, want):
    assert days(value) == want


@pytest.mark.parametrize("value,millis,micros", [
    ("1969-07-20T20:17:40", -14182940000, -14182940000000),
    ("2024-02-29T13:14:15.500000", 1709212455500, 1709212455500000),
    ("1999-12-31T23:59:59.999000", 946684799999, 946684799999000),
    ("1960-01-01T00:00:00.000001", -315619200000, -315619199999999),
    ("1970-01-01T00:00:00", 0, 0),
])
def test_datetime_as_epoch_millis_or_micros(value, millis, micros):
    assert epoch_millis(value) == millis and epoch_micros(value) == micros


def test_datetime_precision_picks_millis_or_micros():
    assert kind_of(spec(FT.DATETIME2, fsp=3)) == ("datetime_ms", 3)
    assert kind_of(spec(FT.DATETIME2, fsp=4)) == ("datetime_us", 4)
    assert kind_of(col("datetime", fsp=0)) == ("datetime_ms", 0)
    assert kind_of(col("datetime", fsp=6)) == ("datetime_us", 6)


@pytest.mark.parametrize("fsp,value,want", [
    (0, "2024-06-30T23:59:59Z", "2024-06-30T23:59:59Z"),
    (6, "2024-01-01T10:00:00.123456Z", "2024-01-01T10:00:00.123456Z"),
    (6, "2024-01-01T10:00:00.000000Z", "2024-01-01T10:00:00.000000Z"),
    (3, "2024-01-01T10:00:00.500000Z", "2024-01-01T10:00:00.500Z"),
    (1, "2038-01-19T03:14:07.900000Z", "2038-01-19T03:14:07.9Z"),
])
def test_timestamp_is_iso_utc_with_the_columns_fraction_digits(fsp, value, want):
    assert zoned_timestamp(fsp)(value) == want


@pytest.mark.parametrize("value,want", [("838:59:59", 3020399000000), ("-838:59:59", -3020399000000),
                                        ("-00:00:00.500000", -500000), ("123:45:06.000007", 445506000007),
                                        ("00:00:00", 0)])
def test_time_is_microseconds(value, want):
    assert micro_time(value) == want


def test_bigint_unsigned_wraps_like_a_java_long():
    assert unsigned_long(0) == 0 and unsigned_long(2**63 - 1) == 2**63 - 1
    assert unsigned_long(2**63) == -(2**63) and unsigned_long(2**64 - 1) == -1


def test_bits_little_endian_base64_and_bit1_boolean():
    assert bits_little_endian(8)(129) == "gQ==" and bits_little_endian(12)(2049) == "AQg="
    assert bits_little_endian(12)(0xFFF) == "/w8=" and bits_little_endian(12)(0) == "AAA="
    assert kind_of(spec(FT.BIT, bits=1)) == ("bit1", 1) and kind_of(col("bit", "bit(1)")) == ("bit1", 1)
    assert kind_of(spec(FT.BIT, bits=12)) == ("bits", 12) and kind_of(col("bit", "bit(12)")) == ("bits", 12)
    assert encoder_for("bit1", 1)(1) is True and encoder_for("bit1", 1)(0) is False


def test_json_is_text_with_mysql_separators():
    assert json_text({"a": {"b": [1, 2.5, "x", True, None]}, "ü": "😀"}) == \
        '{"a": {"b": [1, 2.5, "x", true, null]}, "ü": "😀"}'
    assert json_text([]) == "[]" and json_text("s") == '"s"'


def test_point_and_geometry():
    wkb = b"\x01\x01\x00\x00\x00" + struct.pack("<dd", 1.0, 2.0)
    value = base64.b64encode(b"\x00\x00\x00\x00" + wkb).decode()
    assert point(value) == {"x": 1.0, "y": 2.0, "wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": None}
    with_srid = base64.b64encode((4326).to_bytes(4, "little") + wkb).decode()
    assert geometry(with_srid) == {"wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": 4326}
    assert kind_of(spec(FT.GEOMETRY), "point") == ("point", 0) and kind_of(spec(FT.GEOMETRY), "polygon")[0] == "geometry"


def test_decimal_string_or_double_and_other_values_as_the_source_has_them():
    assert encoder_for("decimal", 0)("-12.50") == "-12.50"
    assert encoder_for("decimal", 0, "double")("-12.50") == -12.5
    assert encoder_for("bool_int", 0)(True) == 1 and encoder_for("set", 0)(["a", "c"]) == "a,c"
    assert encoder_for("set", 0)([]) == ""
    for kind in ("int", "float", "year", "text", "binary", "enum"):
        assert encoder_for(kind, 0)("v") == "v"


@pytest.mark.parametrize("binlog,snapshot", [
    (spec(FT.TINY, is_bool=True), col("tinyint", "tinyint(1)")),
    (spec(FT.LONGLONG, unsigned=True), col("bigint", "bigint(20) unsigned")),
    (spec(FT.LONGLONG), col("bigint", "bigint(20)")),
    (spec(FT.NEWDECIMAL, precision=12, scale=2), col("decimal", "decimal(12,2)")),
    (spec(FT.VARCHAR, codec="utf-8"), col("varchar", "varchar(10)", charset="utf8mb4")),
    (spec(FT.STRING, max_length=4), col("binary", "binary(4)")),
    (spec(FT.BLOB, codec=None), col("blob")),
    (spec(FT.BLOB, codec="utf-8", is_json_text=True), col("longtext", charset="utf8mb4", is_json_text=True)),
    (spec(FT.TIMESTAMP2, fsp=6), col("timestamp", fsp=6)),
    (spec(FT.TIME2, fsp=6), col("time", fsp=6)),
    (spec(FT.DATE), col("date")),
    (spec(FT.YEAR), col("year")),
    (spec(FT.ENUM, enum_values=("a",)), col("enum", "enum('a')")),
    (spec(FT.SET, set_values=("a",)), col("set", "set('a')")),
])
def test_binlog_and_snapshot_columns_map_to_the_same_kind(binlog, snapshot):
    assert kind_of(binlog) == kind_of(snapshot)


def _shape(*columns, info=None, pk=("id",)) -> TableShape:
    return TableShape("s.t", tuple(columns), pk, info or {})


def test_row_encoder_in_table_order_with_nulls():
    enc = RowEncoder(_shape(spec(FT.LONG, name="id"), spec(FT.DATE, name="d"), spec(FT.SET, name="s",
                                                                                     set_values=("a", "b"))))
    assert list(enc.encode({"s": ["b"], "d": "1970-01-02", "id": 1})) == ["id", "d", "s"]
    assert enc.encode({"id": 1, "d": None, "s": None}) == {"id": 1, "d": None, "s": None}


def test_zero_dates_as_debezium_writes_them():
    """Nullable DATE/DATETIME: null; NOT NULL: the column's default (Debezium's fallback), else the epoch;
    TIMESTAMP: the epoch (Debezium reads the binlog's 0 as 1970-01-01)."""
    info = {"d": (True, None, "date"), "d_nn": (False, "'2000-01-01'", "date"), "dt": (True, None, "datetime"),
            "dt_nn": (False, "'2000-01-01 00:00:00'", "datetime"), "dt_nodefault": (False, None, "datetime"),
            "d_zero_default": (False, "'0000-00-00'", "date"), "ts": (True, None, "timestamp"),
            "ts6": (True, None, "timestamp")}
    enc = RowEncoder(_shape(spec(FT.DATE, name="d"), spec(FT.DATE, name="d_nn"), spec(FT.DATETIME2, name="dt"),
                            spec(FT.DATETIME2, name="dt_nn"), spec(FT.DATETIME2, name="dt_nodefault", fsp=6),
                            spec(FT.DATE, name="d_zero_default"), spec(FT.TIMESTAMP2, name="ts"),
                            spec(FT.TIMESTAMP2, name="ts6", fsp=6), info=info))
    zeros = ["d", "d_nn", "dt", "dt_nn", "dt_nodefault", "d_zero_default", "ts", "ts6"]
    assert enc.encode(dict.fromkeys(zeros), zeros) == {
        "d": None, "d_nn": 10957, "dt": None, "dt_nn": 946684800000, "dt_nodefault": 0, "d_zero_default": 0,
        "ts": "1970-01-01T00:00:00Z", "ts6": "1970-01-01T00:00:00.000000Z"}
    # a NULL TIMESTAMP (not a zero date) stays null
    assert enc.encode(dict.fromkeys(zeros), ["d"])["ts"] is None
