"""Issue 18: event JSON Schemas from the mappings, the AsyncAPI document, the breaking-change guard."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cdc_bridge.aggregate.event import DomainEvent
from cdc_bridge.aggregate.runtime import AggregateRuntime
from cdc_bridge.aggregate.testing import SourceScript, delete, insert, update
from cdc_bridge.contracts import asyncapi_document, breaking_changes, read_schema_set, schema_set, write_schema_set
from cdc_bridge.contracts.event_schemas import Column
from cdc_bridge.mapping.loader import load_mappings
from cdc_bridge.state.lmdb_store import LmdbStateStore

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "mappings"

ORDER_COLUMNS = {
    "shop.orders": {"id": Column("bigint", "bigint(20)", False), "customer_id": Column("bigint", "bigint(20)", False),
                    "status": Column("varchar", "varchar(20)", False), "total": Column("decimal", "decimal(12,2)", False),
                    "currency": Column("char", "char(3)", False), "created_at": Column("datetime", "datetime(6)", False),
                    "deleted_at": Column("datetime", "datetime", True)},
    "shop.order_lines": {"id": Column("bigint", "bigint(20)", False), "order_id": Column("bigint", "bigint(20)", False),
                         "sku": Column("varchar", "varchar(40)", False), "quantity": Column("int", "int(11)", False),
                         "unit_price": Column("decimal", "decimal(12,2)", False)},
}


def validator(schema):
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _events(tmp_path) -> list[DomainEvent]:
    ms = load_mappings(EXAMPLES)
    order = ms.aggregate("Order")
    store = LmdbStateStore(tmp_path / "s", partitions=2, map_size=1 << 22)
    rt = AggregateRuntime.from_mappings([order], store, held_max_age_seconds=3600, held_max_count=100)
    src = SourceScript(order)
    o = dict(order_id=42, customer_id=7, status="pending", total="30.00", currency="EUR",
             created_at="2026-01-01T10:00:00.000000")
    line = dict(line_id=9, sku="S-1", quantity=1, unit_price="5.00")
    out = []
    for rows in ([insert("root", "42", **o), insert("lines", "42", "9", **line)],
                 [update("root", "42", before=o, **{**o, "status": "paid"})],
                 [update("lines", "42", "9", before=line, **{**line, "quantity": 2})],
                 [insert("lines", "42", "10", **{**line, "line_id": 10})],
                 [delete("lines", "42", "10", **{**line, "line_id": 10})],
                 [delete("root", "42", **{**o, "status": "paid"})]):
        cmds, txn = src.txn(*rows)
        out.extend(rt.apply(cmds, txn).events)
    store.close()
    return out


@pytest.mark.parametrize("live", [False, True])
def test_every_event_of_a_story_validates_against_its_schema(tmp_path, live):
    schemas = schema_set(load_mappings(EXAMPLES), ORDER_COLUMNS if live else None)
    events = _events(tmp_path)
    assert [e.event_type for e in events] == ["OrderPlaced", "OrderPaid", "OrderLineChanged", "OrderLineAdded",
                                              "OrderLineRemoved", "OrderDeleted"]
    for e in events:
        env = json.loads(e.value())
        validator(schemas.events["Order"][e.event_type]).validate(env)
    if live:   # the live schemas are precise: a wrong type is refused
        bad = json.loads(events[0].value())
        bad["data"]["customer_id"] = "seven"
        with pytest.raises(jsonschema.ValidationError):
            validator(schemas.events["Order"]["OrderPlaced"]).validate(bad)
        bad = json.loads(events[0].value())
        bad["data"]["extra"] = 1
        with pytest.raises(jsonschema.ValidationError):
            validator(schemas.events["Order"]["OrderPlaced"]).validate(bad)


def test_the_schemas_are_valid_draft_2020_12_and_cover_every_event_type():
    schemas = schema_set(load_mappings(EXAMPLES), ORDER_COLUMNS)
    assert set(schemas.events["Order"]) == {
        "OrderPlaced", "OrderSnapshotted", "OrderUpdated", "OrderPaid", "OrderShipped", "OrderCancelled",
        "OrderDeleted", "OrderLineAdded", "OrderLineChanged", "OrderLineRemoved"}
    for events in schemas.events.values():
        for schema in events.values():
            jsonschema.Draft202012Validator.check_schema(schema)
    placed = schemas.events["Order"]["OrderPlaced"]["properties"]["data"]
    assert placed["properties"]["total"]["pattern"] and placed["properties"]["lines"]["type"] == "array"


def test_the_asyncapi_document_validates_against_the_asyncapi_3_schema(tmp_path):
    schemas = schema_set(load_mappings(EXAMPLES))
    doc = asyncapi_document(None, schemas, "shop-bridge")
    spec = json.loads((REPO / "tests" / "data" / "asyncapi-3.0.0.schema.json").read_text())
    jsonschema.Draft7Validator(spec).validate(doc)
    assert doc["channels"]["Order"]["address"] == "shop.order.events"
    assert "OrderLineAdded" in json.dumps(doc["operations"]["publishOrder"])
    assert doc["channels"]["deadLetters"]["address"] == "shop-bridge.dead-letter"
    files = write_schema_set(tmp_path / "s", schemas, doc)
    assert (tmp_path / "s" / "Order" / "OrderPaid.json") in files
    assert read_schema_set(tmp_path / "s").events == schemas.events


def _edit(tmp_path, name, old, new) -> Path:
    d = tmp_path / name
    d.mkdir()
    for f in EXAMPLES.glob("*.yaml"):
        text = f.read_text()
        (d / f.name).write_text(text.replace(old, new) if f.name == "orders.yaml" else text)
    return d


def test_the_guard_finds_what_breaks_consumers_and_nothing_else(tmp_path):
    before = schema_set(load_mappings(EXAMPLES), ORDER_COLUMNS)
    same = schema_set(load_mappings(EXAMPLES), ORDER_COLUMNS)
    assert breaking_changes(before, same) == []
    # adding a field and an event type breaks nobody
    grown = schema_set(load_mappings(_edit(tmp_path, "grown", "    created_at:\n",
                                           "    created_at:\n    deleted_at:\n")), ORDER_COLUMNS)
    assert breaking_changes(before, grown) == []
    renamed = schema_set(load_mappings(_edit(tmp_path, "renamed", "    currency:\n", "    currency: iso_currency\n")),
                         ORDER_COLUMNS)
    [line] = breaking_changes(before, renamed)
    assert line.startswith("Order data.currency: field removed or renamed (in OrderPlaced, ")
    narrowed = schema_set(load_mappings(_edit(tmp_path, "narrowed", "    total: {type: decimal}\n",
                                              "    total: {type: int}\n")), ORDER_COLUMNS)
    assert breaking_changes(before, narrowed)[0].startswith("Order data.total: type narrowed from string to integer")
    no_ship = schema_set(load_mappings(_edit(tmp_path, "noship",
                                             "    - {field: status, from: paid, to: shipped, event: OrderShipped}\n",
                                             "")), ORDER_COLUMNS)
    assert "Order/OrderShipped: event type removed" in breaking_changes(before, no_ship)
    moved = schema_set(load_mappings(_edit(tmp_path, "moved", "topic: shop.order.events", "topic: shop.orders.v2")),
                       ORDER_COLUMNS)
    assert "aggregate Order: topic changed from 'shop.order.events' to 'shop.orders.v2'" in breaking_changes(before, moved)


def test_the_change_stream_is_in_the_contract(tmp_path):
    """change_stream enabled: a channel per table topic and the transaction topic, the change event as the
    payload (a Debezium envelope or a tombstone), the primary key as the Kafka key; files under changes/."""
    from cdc_bridge.config import BridgeConfig
    from cdc_bridge.contracts.change_schemas import change_schemas, change_value_schema

    cfg = BridgeConfig.model_validate({
        "name": "shop-bridge", "source": {"host": "db", "user": "cdc", "password": "x", "server_id": 7},
        "kafka": {"bootstrap_servers": "kafka:9092"},
        "change_stream": {"enabled": True, "topic_prefix": "shop", "transaction_topic": True}})
    schemas = schema_set(load_mappings(EXAMPLES))
    schemas.changes = change_schemas(cfg, frozenset({"shop.orders", "shop.order_lines"}), None)   # offline
    doc = asyncapi_document(cfg, schemas, "shop-bridge")
    spec = json.loads((REPO / "tests" / "data" / "asyncapi-3.0.0.schema.json").read_text())
    jsonschema.Draft7Validator(spec).validate(doc)
    assert doc["channels"]["change.shop.orders"]["address"] == "shop.shop.orders"
    assert doc["channels"]["change.transaction"]["address"] == "shop.transaction"
    files = write_schema_set(tmp_path / "s", schemas, doc)
    assert tmp_path / "s" / "changes" / "shop.orders.value.json" in files
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["changes"]["shop.orders"] == {"topic": "shop.shop.orders", "key": "changes/shop.orders.key.json",
                                               "value": "changes/shop.orders.value.json"}
    assert read_schema_set(tmp_path / "s").events == schemas.events   # the guard reads the events as before

    # typed rows: a created event passes, a wrong type or op does not, a tombstone passes
    typed = validator(change_value_schema("shop.t", [("id", "int", False), ("total", "decimal", True),
                                                      ("at", "datetime_us", True), ("flag", "bit1", False)], "string"))
    source = {"version": "x", "connector": "mariadb", "name": "shop", "ts_ms": 1, "snapshot": "false", "db": "shop",
              "table": "t", "server_id": 1, "gtid": "0-1-1", "file": "b.000001", "pos": 4, "row": 0}
    good = {"before": None, "after": {"id": 1, "total": "1.50", "at": 1_700_000_000_000_000, "flag": True},
            "source": source, "transaction": None, "op": "c", "ts_ms": 1}
    assert not list(typed.iter_errors(good)) and not list(typed.iter_errors(None))
    assert list(typed.iter_errors({**good, "after": {**good["after"], "total": 1.5}}))
    assert list(typed.iter_errors({**good, "op": "x"}))


# ---------------------------------------------------------------- audit of issue 18: live / offline, JSON, ENUM, AsyncAPI

CUSTOMER_COLUMNS = {
    "shop.customer_addresses": {"address_id": Column("bigint", "bigint(20)", False),
                                "tenant_id": Column("int", "int(10) unsigned", False),
                                "customer_no": Column("varchar", "varchar(20)", False),
                                "city": Column("varchar", "varchar(100)", False),
                                "removed": Column("tinyint", "tinyint(1)", False)},
}


def test_a_live_set_against_an_offline_one_leaves_the_auto_fields_uncompared():
    """The guard's comparison: an open (offline) field next to a typed (live) one is not a narrowing and not a
    pass either: uncompared() names it; an offline `fields: '*'` object does not drop the live set's fields."""
    from cdc_bridge.contracts import uncompared

    ms = load_mappings(EXAMPLES)
    live = schema_set(ms, {**ORDER_COLUMNS, **CUSTOMER_COLUMNS})
    offline = schema_set(ms)
    assert breaking_changes(live, offline) == []
    skipped = uncompared(live, offline)
    assert any(line.startswith("Order data.status: typed in the old set, any JSON value now (in OrderPlaced")
               for line in skipped), skipped
    assert any(line.startswith("Customer data.city: listed in the old set, unlisted in an open object now")
               for line in skipped), skipped
    assert uncompared(live, schema_set(ms, {**ORDER_COLUMNS, **CUSTOMER_COLUMNS})) == []
    assert uncompared(offline, schema_set(ms)) == []
    # an offline set against a live one: every auto field "narrowed" from any JSON value: why the guard does
    # not compare them so (test_cli: schemas --config --check-against an offline set)
    assert any("Order data.status: type narrowed from any JSON value" in b for b in breaking_changes(offline, live))


def test_the_guard_compares_like_with_like(tmp_path, monkeypatch, capsys):
    """contracts.guard builds the current set the way the old one was built (index.json "live")."""
    import cdc_bridge.contracts as contracts
    from cdc_bridge.contracts import guard

    ms = load_mappings(EXAMPLES)
    monkeypatch.setattr(contracts, "load_columns", lambda conn, mappings: ORDER_COLUMNS)
    off, live = tmp_path / "off", tmp_path / "live"
    write_schema_set(off, schema_set(ms), {})
    write_schema_set(live, schema_set(ms, ORDER_COLUMNS), {})
    assert json.loads((off / "index.json").read_text())["live"] is False
    assert json.loads((live / "index.json").read_text())["live"] is True
    conn = {"host": "db"}
    # offline OLD with a connection (and a live set already built by the caller): compared offline
    assert guard(ms, conn, off, schemas=schema_set(ms, ORDER_COLUMNS)) == []
    out = capsys.readouterr().out
    assert "was written offline" in out and "(offline schemas compared)" in out and "WARNING" not in out
    # live OLD with a connection: live, and a narrowed column is found
    assert guard(ms, conn, live) == []
    assert "(live schemas compared)" in capsys.readouterr().out
    narrowed = {**ORDER_COLUMNS, "shop.orders": {**ORDER_COLUMNS["shop.orders"],
                                                 "customer_id": Column("varchar", "varchar(20)", False)}}
    monkeypatch.setattr(contracts, "load_columns", lambda conn, mappings: narrowed)
    [line] = [b for b in guard(ms, conn, live) if "customer_id" in b and "Order data.customer_id" in b][:1]
    assert line.startswith("Order data.customer_id: type narrowed from integer to string")
    capsys.readouterr()
    # live OLD without a connection: a WARNING naming what was not compared and how to compare it
    assert guard(ms, None, live) == []
    out = capsys.readouterr().out
    assert out.startswith("WARNING: ") and "`auto` fields are not compared" in out and "--config" in out
    assert "not compared: " in out and "  Order data.customer_id: typed in the old set" in out


def _columns_server(monkeypatch, columns: list[tuple], checks: list[tuple], version: str = "10.11.19-MariaDB"):
    """pymysql.connect answering information_schema like a server with these COLUMNS rows (schema, table, name,
    DATA_TYPE, COLUMN_TYPE, IS_NULLABLE) and CHECK_CONSTRAINTS rows (schema, table, clause)."""
    import pymysql

    class Cursor:
        def __init__(self, as_dict):
            self.as_dict, self.rows = as_dict, []

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self, sql, args=()):
            keys: tuple = ()
            if "VERSION()" in sql:
                rows, keys = [(version,)], ("v",)
            elif "CHECK_CONSTRAINTS" in sql:
                rows, keys = [c for c in checks if c[0] in args], ("CONSTRAINT_SCHEMA", "TABLE_NAME", "CHECK_CLAUSE")
            elif "STATISTICS" in sql:
                rows, keys = [("id",)], ("COLUMN_NAME",)
            elif "information_schema.COLUMNS" in sql and "TABLE_SCHEMA IN" in sql:
                rows = [c for c in columns if c[0] in args]
            else:   # load_change_columns: one table
                rows = [(n, dt, ct, nul, None, None, None, "utf8mb4", 100, None) for s, t, n, dt, ct, nul in columns
                        if (s, t) == tuple(args)]
                keys = ("COLUMN_NAME", "DATA_TYPE", "COLUMN_TYPE", "IS_NULLABLE", "NUMERIC_PRECISION", "NUMERIC_SCALE",
                        "DATETIME_PRECISION", "CHARACTER_SET_NAME", "CHARACTER_OCTET_LENGTH", "COLUMN_DEFAULT")
            self.rows = [dict(zip(keys, r)) for r in rows] if self.as_dict else list(rows)

        def fetchall(self):
            return self.rows

        def fetchone(self):
            return self.rows[0]

    class Conn:
        def __init__(self, cursorclass=None, **_kw):
            self.cursorclass = cursorclass

        def cursor(self, cls=None):
            return Cursor((cls or self.cursorclass) is pymysql.cursors.DictCursor)

        def close(self):
            pass

    monkeypatch.setattr(pymysql, "connect", lambda **kw: Conn(**kw))


def test_mariadb_json_columns_are_any_json_value_in_the_event_and_change_schemas(tmp_path, monkeypatch):
    """MariaDB's JSON is a LONGTEXT with CHECK (json_valid(col)): the source parses it, so an `auto` field of
    such a column accepts any JSON value (not only strings), live, in the event schemas and the change stream's."""
    from cdc_bridge.config import BridgeConfig
    from cdc_bridge.contracts.change_schemas import change_schemas
    from cdc_bridge.contracts.event_schemas import load_columns

    d = tmp_path / "m"
    d.mkdir()
    (d / "docs.yaml").write_text("aggregate: Doc\ntopic: app.doc.events\nroot:\n  table: app.docs\n  id: id\n"
                                 "  fields:\n    id:\n    body:\n    note:\n")
    cols = [("app", "docs", "id", "bigint", "bigint(20)", "NO"),
            ("app", "docs", "body", "longtext", "longtext", "YES"),
            ("app", "docs", "note", "longtext", "longtext", "YES"),
            ("other", "docs", "note", "longtext", "longtext", "YES")]
    checks = [("app", "docs", "json_valid(`body`)"), ("other", "docs", "json_valid(`note`)")]
    _columns_server(monkeypatch, cols, checks)
    ms = load_mappings(d)
    tables = load_columns({"host": "db"}, ms)
    assert tables["app.docs"]["body"].data_type == "json" and tables["app.docs"]["note"].data_type == "longtext"
    schemas = schema_set(ms, tables)
    data = schemas.events["Doc"]["DocCreated"]["properties"]["data"]["properties"]
    assert data["body"] == {} and data["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    event = {"event_id": "Doc:1:1", "event_type": "DocCreated", "aggregate": "Doc", "aggregate_id": "1",
             "sequence": 1, "schema_version": 1, "occurred_at": "2026-01-01T00:00:00.000000Z",
             "source": {"table": "app.docs", "gtid": None, "binlog_file": "b.1", "binlog_pos": 4, "txn_id": "t"},
             "data": {"id": 1, "body": {"a": [1, 2.5, None]}, "note": "text"}}
    validator(schemas.events["Doc"]["DocCreated"]).validate(event)
    # the change stream's schemas ask the same helper
    cfg = BridgeConfig.model_validate({"name": "b", "source": {"host": "db", "user": "u", "password": "p"},
                                       "kafka": {"bootstrap_servers": "k:9092"},
                                       "change_stream": {"enabled": True, "topic_prefix": "app"}})
    after = change_schemas(cfg, frozenset({"app.docs"}), {"host": "db"})["app.docs"]["value"]
    assert "io.debezium.data.Json" in json.dumps(after)   # body: Debezium's json encoding (the document as text)
    # on MySQL (JSON a type of its own) no CHECK constraint is asked about
    _columns_server(monkeypatch, cols, checks, version="8.0.36")
    assert load_columns({"host": "db"}, ms)["app.docs"]["body"].data_type == "longtext"


def test_enum_schema_holds_the_invalid_value_and_unescaped_members():
    from cdc_bridge.contracts.event_schemas import column_schema, enum_members

    ct = r"enum('it''s','a\\b','x,y','pa(r)en','new\nline','')"
    assert enum_members(ct) == ["it's", "a\\b", "x,y", "pa(r)en", "new\nline", ""]
    s = column_schema(Column("enum", ct, False))
    assert s == {"type": "string", "enum": ["", "it's", "a\\b", "x,y", "pa(r)en", "new\nline"]}
    v = jsonschema.Draft202012Validator(s)
    for ok in ("", "it's", "a\\b"):
        assert v.is_valid(ok), ok
    assert not v.is_valid("it''s") and not v.is_valid("a\\\\b")
    assert column_schema(Column("enum", "enum('a','b')", True)) == {
        "anyOf": [{"type": "string", "enum": ["", "a", "b"]}, {"type": "null"}]}


def test_the_asyncapi_document_describes_tombstones_key_headers_and_the_dead_letter_key(tmp_path):
    from cdc_bridge.config import BridgeConfig
    from cdc_bridge.contracts.change_schemas import change_schemas

    d = _edit(tmp_path, "tomb", "aggregate: Order\n", "aggregate: Order\ntombstone_on_delete: true\n")
    schemas = schema_set(load_mappings(d))
    assert schemas.tombstones == {"Order"}
    cfg = BridgeConfig.model_validate({
        "name": "shop-bridge", "source": {"host": "db", "user": "cdc", "password": "x", "server_id": 7},
        "kafka": {"bootstrap_servers": "kafka:9092"},
        "change_stream": {"enabled": True, "topic_prefix": "shop", "transaction_topic": True}})
    schemas.changes = change_schemas(cfg, frozenset({"shop.orders"}), None)
    doc = asyncapi_document(cfg, schemas, "shop-bridge")
    spec = json.loads((REPO / "tests" / "data" / "asyncapi-3.0.0.schema.json").read_text())
    jsonschema.Draft7Validator(spec).validate(doc)
    messages = doc["components"]["messages"]
    # the events topic: the null-value record after OrderDeleted, header cdc-bridge-tombstone: 1
    tomb = messages["Order.tombstone"]
    assert tomb["payload"] == {"type": "null"} and tomb["headers"]["properties"]["cdc-bridge-tombstone"] == {"const": "1"}
    assert tomb["bindings"]["kafka"]["key"]["type"] == "string"
    assert doc["channels"]["Order"]["messages"]["Order.tombstone"] == {"$ref": "#/components/messages/Order.tombstone"}
    assert {"$ref": "#/channels/Order/messages/Order.tombstone"} in doc["operations"]["publishOrder"]["messages"]
    assert "Customer.tombstone" not in messages   # Customer has no tombstone_on_delete
    # the change stream: the key headers of a primary-key update (the names change_stream.py writes)
    from cdc_bridge.ingest.change_stream import NEW_KEY_HEADER, OLD_KEY_HEADER

    assert (NEW_KEY_HEADER, OLD_KEY_HEADER) == ("__debezium.newkey", "__debezium.oldkey")
    headers = messages["change.shop.orders"]["headers"]["properties"]
    assert set(headers) == {"__debezium.newkey", "__debezium.oldkey"}
    assert "headers" not in messages["change.transaction"]
    # the dead letter: key aggregate_id or null, headers reason (+ table, aggregate)
    dl = messages["DeadLetter"]
    assert dl["bindings"]["kafka"]["key"]["type"] == ["string", "null"]
    assert set(dl["headers"]["properties"]) == {"reason", "table", "aggregate"}
    # written and read back: index.json tells which aggregates write tombstones
    write_schema_set(tmp_path / "s", schemas, doc)
    assert read_schema_set(tmp_path / "s").tombstones == {"Order"}
