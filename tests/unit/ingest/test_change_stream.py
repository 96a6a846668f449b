"""The change stream's records (ingest/change_stream.py) and its settings, without services."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pymysqlreplication.constants import FIELD_TYPE as FT

from cdc_bridge.aggregate.router import murmur2, to_positive
from cdc_bridge.config import ConfigError, load_config
from cdc_bridge.ingest.change_stream import (NEW_KEY_HEADER, OLD_KEY_HEADER, ChangeStream, ChangeStreamSpec,
                                             reader_side, streamed_tables)
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.transaction import RowChange, RowEvents, SourceTransaction, TableShape
from cdc_bridge.source.values import ColumnSpec

SHAPE = TableShape("shop.t", (ColumnSpec("id", FT.LONG), ColumnSpec("v", FT.VARCHAR, codec="utf-8"),
                              ColumnSpec("d", FT.DATE)), ("id",), {})
KEYLESS = TableShape("shop.k", (ColumnSpec("v", FT.VARCHAR, codec="utf-8"),), (), {})
POS = SourcePosition("0-1-9", "mysql-bin.000003", 900)


def spec(**kw) -> ChangeStreamSpec:
    base = dict(prefix="p", connector="mariadb", tables=frozenset({"shop.t", "shop.k"}),
                partitions={"p.shop.t": 3, "p.shop.k": 3, "p.transaction": 1})
    return ChangeStreamSpec(**{**base, **kw})


def txn(changes: list[RowChange], events: list[tuple]) -> SourceTransaction:
    return SourceTransaction(gtid="0-1-9", commit_ts=1_700_000_001.0, position=POS, changes=changes,
                             row_events=RowEvents(None, events))


def values(records):
    return [(t, json.loads(k) if k else None, json.loads(v) if v is not None else None, p, h)
            for t, k, v, p, h in records]


def test_a_transaction_becomes_change_events_with_tombstones_and_transaction_records():
    changes = [RowChange("shop.t", "insert", None, {"id": 1, "v": "a", "d": "1970-01-02"}),
               RowChange("shop.t", "insert", None, {"id": 2, "v": "b", "d": None}),
               RowChange("shop.t", "update", {"id": 1, "v": "a", "d": "1970-01-02"}, {"id": 1, "v": "A", "d": None}),
               RowChange("shop.t", "delete", {"id": 2, "v": "b", "d": None}, None)]
    t = txn(changes, [(0, 2, SHAPE, 500, 1_700_000_000, 1), (2, 3, SHAPE, 600, 1_700_000_000, 1),
                      (3, 4, SHAPE, 700, 1_700_000_001, 1)])
    out = values(ChangeStream(spec()).records(t))
    assert [(r[0], r[2] and r[2].get("status") or r[2] and r[2]["op"]) for r in out] == [
        ("p.transaction", "BEGIN"), ("p.shop.t", "c"), ("p.shop.t", "c"), ("p.shop.t", "u"), ("p.shop.t", "d"),
        ("p.shop.t", None), ("p.transaction", "END")]
    begin, c1, c2, u, d, tomb, end = out
    assert c1[1] == {"id": 1} and c1[2]["after"] == {"id": 1, "v": "a", "d": 1} and c1[2]["before"] is None
    assert list(c1[2]) == ["before", "after", "source", "transaction", "op", "ts_ms", "ts_us", "ts_ns"]
    src = c1[2]["source"]
    assert list(src) == ["version", "connector", "name", "ts_ms", "snapshot", "db", "sequence", "ts_us", "ts_ns",
                         "table", "server_id", "gtid", "file", "pos", "row", "thread", "query"]
    assert (src["connector"], src["name"], src["db"], src["table"], src["snapshot"]) == ("mariadb", "p", "shop", "t",
                                                                                         "false")
    assert (src["ts_ms"], src["ts_us"], src["gtid"], src["file"], src["pos"], src["row"], src["server_id"]) == (
        1_700_000_000_000, 1_700_000_000_000_000, "0-1-9", "mysql-bin.000003", 500, 0, 1)
    assert c2[2]["source"]["row"] == 1 and u[2]["source"]["pos"] == 600 and d[2]["source"]["pos"] == 700
    assert [r[2]["transaction"] for r in (c1, c2, u, d)] == [
        {"id": "0-1-9", "total_order": n, "data_collection_order": n} for n in (1, 2, 3, 4)]
    assert u[2]["before"]["v"] == "a" and u[2]["after"] == {"id": 1, "v": "A", "d": None}
    assert d[2]["before"] == {"id": 2, "v": "b", "d": None} and d[2]["after"] is None
    assert tomb[1] == {"id": 2} and tomb[2] is None and tomb[3] == d[3]
    assert begin[1] == end[1] == {"id": "0-1-9"}
    assert begin[2] == {"status": "BEGIN", "id": "0-1-9", "event_count": None, "data_collections": None,
                        "ts_ms": 1_700_000_000_000}
    assert end[2] == {"status": "END", "id": "0-1-9", "event_count": 4,
                      "data_collections": [{"data_collection": "shop.t", "event_count": 4}], "ts_ms": 1_700_000_001_000}
    # Kafka's default partitioner on the key bytes, as Debezium's producer places them
    assert c1[3] == to_positive(murmur2(b'{"id":1}')) % 3


def test_an_update_of_the_primary_key_is_a_delete_and_a_create():
    t = txn([RowChange("shop.t", "update", {"id": 4, "v": "x", "d": None}, {"id": 5, "v": "x", "d": None})],
            [(0, 1, SHAPE, 500, 1_700_000_000, 1)])
    _, d, tomb, c, _ = ChangeStream(spec()).records(t)
    assert (json.loads(d[2])["op"], d[1], d[4]) == ("d", b'{"id":4}', [(NEW_KEY_HEADER, b'{"id":5}')])
    assert (tomb[1], tomb[2], tomb[4]) == (b'{"id":4}', None, [(NEW_KEY_HEADER, b'{"id":5}')])
    assert (json.loads(c[2])["op"], c[1], c[4]) == ("c", b'{"id":5}', [(OLD_KEY_HEADER, b'{"id":4}')])
    assert [json.loads(r[2])["transaction"]["total_order"] for r in (d, c)] == [1, 2]
    assert json.loads(c[2])["source"]["row"] == json.loads(d[2])["source"]["row"] == 0


def test_keyless_tables_null_keys_in_partition_zero():
    t = txn([RowChange("shop.k", "delete", {"v": "x"}, None)], [(0, 1, KEYLESS, 500, 1_700_000_000, 1)])
    _, d, tomb, _ = ChangeStream(spec()).records(t)
    assert d[1] is None and d[3] == 0 and tomb == ("p.shop.k", None, None, 0, [])


def test_options_and_tables_outside_the_stream():
    changes = [RowChange("shop.t", "delete", {"id": 1, "v": "a", "d": None}, None),
               RowChange("shop.other", "insert", None, {"id": 1})]
    other = TableShape("shop.other", (ColumnSpec("id", FT.LONG),), ("id",), {})
    t = txn(changes, [(0, 1, SHAPE, 500, 0, 1), (1, 2, other, 600, 0, 1)])
    out = ChangeStream(spec(tombstones=False, transaction_topic=False)).records(t)
    assert [(r[0], json.loads(r[2])["op"]) for r in out] == [("p.shop.t", "d")]
    assert ChangeStream(spec()).records(SourceTransaction(None, 0.0, POS, changes=changes)) == []
    assert spec().topics() == ["p.shop.k", "p.shop.t", "p.transaction"]
    assert spec(transaction_topic=False).topics() == ["p.shop.k", "p.shop.t"]


def test_snapshot_rows_are_read_events_marked_first_and_last():
    stream = ChangeStream(spec())
    rows = [RowChange("shop.t", "snapshot", None, {"id": i, "v": "a", "d": None}) for i in (1, 2, 3)]
    rows.insert(1, RowChange("shop.unstreamed", "snapshot", None, {"id": 9}))
    view = SourcePosition("0-1-5", "mysql-bin.000002", 4000)
    out = [json.loads(r[2]) for r in stream.snapshot_records(rows, {"shop.t": SHAPE}, view, 1_700_000_000.5,
                                                             first=True, last=True)]
    assert [(v["op"], v["source"]["snapshot"], v["after"]["id"]) for v in out] == [
        ("r", "first", 1), ("r", "true", 2), ("r", "last", 3)]
    s = out[0]["source"]
    assert (s["server_id"], s["gtid"], s["file"], s["pos"], s["row"], s["ts_ms"]) == (
        0, None, "mysql-bin.000002", 4000, 0, 1_700_000_000_500)
    assert out[0]["transaction"] is None and out[0]["before"] is None
    middle = [json.loads(r[2])["source"]["snapshot"] for r in stream.snapshot_records(rows, {"shop.t": SHAPE}, view, 0)]
    assert middle == ["true"] * 3


def test_reader_side():
    assert reader_side(None)[0] is None and reader_side(None)[1]("txn") is None
    tables, build = reader_side(spec())
    assert tables == {"shop.t", "shop.k"} and build(SourceTransaction(None, 0.0, POS)) == []


def test_table_of_topic_for_the_metrics():
    stream = ChangeStream(spec())
    assert stream.table_of("p.shop.t") == "shop.t" and stream.table_of("p.transaction") is None


# ---------------------------------------------------------------- settings

ENV = {"CDC_BRIDGE__SOURCE__HOST": "db", "CDC_BRIDGE__SOURCE__USER": "cdc", "CDC_BRIDGE__KAFKA__BOOTSTRAP_SERVERS": "k:9092"}


def test_off_by_default_and_set_from_the_environment():
    cfg = load_config(None, ENV)
    assert not cfg.change_stream.enabled and cfg.change_stream.decimal_handling == "string"
    cfg = load_config(None, {**ENV, "CDC_BRIDGE__CHANGE_STREAM__ENABLED": "true",
                             "CDC_BRIDGE__CHANGE_STREAM__TABLES": "shop.orders, shop.order_lines",
                             "CDC_BRIDGE__CHANGE_STREAM__TOPIC_PREFIX": "dbz"})
    cs = cfg.change_stream
    assert cs.enabled and cs.tables == ["shop.orders", "shop.order_lines"] and cs.topic_prefix == "dbz"


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError) as e:
        load_config(None, {**ENV, "CDC_BRIDGE__CHANGE_STREAM__TABLES": "orders",
                           "CDC_BRIDGE__CHANGE_STREAM__DECIMAL_HANDLING": "precise",
                           "CDC_BRIDGE__CHANGE_STREAM__TOPIC_PREFIX": "a b",
                           "CDC_BRIDGE__CHANGE_STREAM__TOMBSTONES": "true"})
    text = str(e.value)
    assert "change_stream.tables: " in text and "'orders' is not schema.table" in text
    assert "change_stream.decimal_handling: Input should be 'string' or 'double'" in text
    assert "change_stream.topic_prefix:" in text
    assert "change_stream.tombstones: unknown key" in text


def test_streamed_tables_default_to_the_mapped_ones_and_must_be_read():
    mappings = SimpleNamespace(by_table={"shop.orders": [], "shop.order_lines": []}, signal_table="shop.signals",
                               tables_and_columns=lambda: {"shop.orders": None, "shop.order_lines": None,
                                                           "shop.currencies": {"code"}, "shop.signals": None})
    cfg = load_config(None, {**ENV, "CDC_BRIDGE__CHANGE_STREAM__ENABLED": "true"})
    assert streamed_tables(cfg, mappings) == {"shop.orders", "shop.order_lines"}
    cfg.change_stream.tables = ["shop.currencies"]     # a lookup's reference table: read, so it can be streamed
    assert streamed_tables(cfg, mappings) == {"shop.currencies"}
    cfg.change_stream.tables = ["shop.orders", "shop.audit", "shop.signals"]
    with pytest.raises(ConfigError, match=r"change_stream.tables: shop.audit, shop.signals not mapped"):
        streamed_tables(cfg, mappings)
