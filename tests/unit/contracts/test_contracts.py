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
