"""The whole pipeline on the real MariaDB and Kafka with the orders example (issue 5 behaviours)."""

from __future__ import annotations

import shutil
import time

import pytest

from devenv import mariadb
from devenv.monolith import MonolithWriter
import bridge_harness as h


def _sql(conn, *statements):
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        for st in statements:
            cur.execute(st)
        cur.execute("COMMIT")


def by_type(events, t):
    return [e for e in events if e["event_type"] == t]


@pytest.mark.parametrize("native", ["1", "0"], ids=["compiled-apply", "python-apply"])
def test_orders_story_end_to_end(shop, tmp_path, monkeypatch, native):
    """native: CDC_BRIDGE_NATIVE_APPLY, the compiled apply of declarative aggregates or the Python one."""
    monkeypatch.setenv("CDC_BRIDGE_NATIVE_APPLY", native)
    conn, db, topic = shop
    cfg = h.bridge_config(tmp_path, db, held={"max_age_seconds": 2, "max_count": 1000})
    bridge = h.BridgeThread(cfg).start()
    try:
        # an order and its three lines in one transaction -> ONE OrderPlaced carrying the three lines
        _sql(conn, f"INSERT INTO {db}.orders (id, customer_id, total) VALUES (1, 7, 30.00)",
             f"INSERT INTO {db}.order_lines VALUES (11, 1, 'A', 1, 10.00), (12, 1, 'B', 1, 10.00), (13, 1, 'C', 1, 10.00)")
        # lines before their order, in earlier transactions
        _sql(conn, f"INSERT INTO {db}.order_lines VALUES (21, 2, 'D', 2, 5.00)")
        _sql(conn, f"INSERT INTO {db}.order_lines VALUES (22, 2, 'E', 1, 1.50)")
        _sql(conn, f"INSERT INTO {db}.orders (id, customer_id, total) VALUES (2, 8, 11.50)")
        # status transitions and an update of an unmapped column only
        _sql(conn, f"UPDATE {db}.orders SET status='paid' WHERE id=1")
        _sql(conn, f"UPDATE {db}.orders SET note='call the customer' WHERE id=1")
        _sql(conn, f"UPDATE {db}.orders SET status='cancelled' WHERE id=2")
        # child change and delete with the parent's context; then the order deleted with its lines
        _sql(conn, f"UPDATE {db}.order_lines SET quantity=5 WHERE id=11")
        _sql(conn, f"DELETE FROM {db}.order_lines WHERE id=12")
        _sql(conn, f"DELETE FROM {db}.order_lines WHERE order_id=2", f"DELETE FROM {db}.orders WHERE id=2")
        # a line whose order never comes: held, then an orphan once 2 s of source time have passed
        _sql(conn, f"INSERT INTO {db}.order_lines VALUES (99, 999, 'Z', 1, 1.00)")
        time.sleep(3.2)
        _sql(conn, f"UPDATE {db}.orders SET total=31.00 WHERE id=1")
        bridge.wait_position(conn)
        held_metric = bridge.bridge.metrics.held_children._value.get()
    finally:
        bridge.stop()

    events = h.events_of(h.read_topic(topic))
    h.check_unique_and_gapless(events)
    # issue 18: every event matches its schema from the mappings and the database's columns
    assert h.validate_events(events, tmp_path / "mappings", mariadb.connection_settings()) == len(events)
    placed = by_type(events, "OrderPlaced")
    assert [e["aggregate_id"] for e in placed] == ["1", "2"]
    assert sorted(l["line_id"] for l in placed[0]["data"]["lines"]) == [11, 12, 13]
    assert sorted(l["line_id"] for l in placed[1]["data"]["lines"]) == [21, 22]
    assert not [e for e in events if e["event_type"] == "OrderLineAdded"], "lines must travel inside OrderPlaced"
    paid = by_type(events, "OrderPaid")
    assert len(paid) == 1 and paid[0]["data"]["changes"] == {"status": {"from": "pending", "to": "paid"}}
    assert len(by_type(events, "OrderCancelled")) == 1
    # the note-only update emitted nothing: order 1 has Placed, Paid, LineChanged, LineRemoved, Updated
    assert [e["event_type"] for e in events if e["aggregate_id"] == "1"] == [
        "OrderPlaced", "OrderPaid", "OrderLineChanged", "OrderLineRemoved", "OrderUpdated"]
    changed = by_type(events, "OrderLineChanged")[0]["data"]
    assert changed["changes"] == {"quantity": {"from": 1, "to": 5}}
    assert changed["order"] == {"customer_id": 7, "status": "paid"}
    removed = by_type(events, "OrderLineRemoved")[0]["data"]
    assert removed["line_id"] == 12 and removed["order"]["customer_id"] == 7
    deleted = by_type(events, "OrderDeleted")
    assert len(deleted) == 1 and deleted[0]["aggregate_id"] == "2"
    # envelope contract
    e = placed[0]
    assert e["event_id"] == "Order:1:1" and e["sequence"] == 1 and e["schema_version"] == 1
    assert e["occurred_at"].endswith("Z") and e["source"]["table"] == f"{db}.orders"
    assert e["source"]["gtid"] and e["source"]["binlog_file"] and e["source"]["binlog_pos"] > 0
    # final state folded from the events equals the database
    assert h.comparable(h.fold_orders(events)) == h.comparable(h.orders_in_db(conn, db))
    # the orphan reached the dead-letter topic with reason `orphan`
    dead = h.events_of(h.read_topic(f"it-{db}.dead-letter"))
    orphans = [d for d in dead if d["reason"] == "orphan"]
    assert len(orphans) == 1 and orphans[0]["aggregate_id"] == "999", dead
    assert held_metric == 0


def test_restart_and_reapplication_publish_nothing_twice(shop, tmp_path):
    conn, db, topic = shop
    cfg = h.bridge_config(tmp_path, db)
    w = MonolithWriter(conn, db)
    bridge = h.BridgeThread(cfg).start()
    for _ in range(40):
        w.step()
    bridge.wait_position(conn)
    bridge.stop()
    first = h.events_of(h.read_topic(topic))
    assert first

    # 1. plain restart: resumes at the checkpoint
    for _ in range(20):
        w.step()
    bridge = h.BridgeThread(cfg).start()
    bridge.wait_position(conn)
    bridge.stop()

    # 2. LMDB lost: state is re-applied from the origin without publishing, then streaming goes on
    shutil.rmtree(tmp_path / "state")
    bridge = h.BridgeThread(cfg).start()
    for _ in range(20):
        w.step()
    bridge.wait_position(conn)
    bridge.stop()

    events = h.events_of(h.read_topic(topic))
    assert len(events) > len(first)
    h.check_unique_and_gapless(events)
    assert h.validate_events(events, tmp_path / "mappings", mariadb.connection_settings()) == len(events)
    assert h.comparable(h.fold_orders(events)) == h.comparable(h.orders_in_db(conn, db))


def test_soft_deleted_order_comes_back_with_its_lines(shop, tmp_path):
    """deleted_at set: OrderDeleted; its lines changed meanwhile: no events, no dead letters;
    deleted_at cleared: OrderPlaced with the lines as they are in the database then."""
    conn, db, topic = shop
    cfg = h.bridge_config(tmp_path, db)
    bridge = h.BridgeThread(cfg).start()
    try:
        _sql(conn, f"INSERT INTO {db}.orders (id, customer_id, total) VALUES (5, 7, 30.00)",
             f"INSERT INTO {db}.order_lines VALUES (51, 5, 'A', 1, 10.00), (52, 5, 'B', 2, 10.00)")
        _sql(conn, f"UPDATE {db}.orders SET deleted_at = NOW() WHERE id = 5")
        _sql(conn, f"UPDATE {db}.order_lines SET quantity = 4 WHERE id = 51")
        _sql(conn, f"DELETE FROM {db}.order_lines WHERE id = 52")
        _sql(conn, f"INSERT INTO {db}.order_lines VALUES (53, 5, 'C', 1, 3.00)")
        _sql(conn, f"UPDATE {db}.orders SET deleted_at = NULL WHERE id = 5")
        _sql(conn, f"UPDATE {db}.order_lines SET quantity = 6 WHERE id = 53")
        bridge.wait_position(conn)
    finally:
        bridge.stop()

    events = h.events_of(h.read_topic(topic))
    h.check_unique_and_gapless(events)
    assert [e["event_type"] for e in events] == ["OrderPlaced", "OrderDeleted", "OrderPlaced", "OrderLineChanged"]
    assert h.validate_events(events, tmp_path / "mappings", mariadb.connection_settings()) == len(events)
    back = events[2]["data"]
    assert sorted((l["line_id"], l["quantity"]) for l in back["lines"]) == [(51, 4), (53, 1)]
    assert events[3]["data"]["line_id"] == 53 and events[3]["data"]["changes"] == {"quantity": {"from": 1, "to": 6}}
    assert h.comparable(h.fold_orders(events)) == h.comparable(h.orders_in_db(conn, db))
    dead = h.events_of(h.read_topic(f"it-{db}.dead-letter", timeout=5))
    assert dead == [], dead
