"""Issue 16: large aggregates never halt the bridge.

An order with 5,000 lines on an events topic created with Kafka's 1 MB default: the created event
embeds max_embedded_children lines and the rest follow as added events; an event that still cannot
fit becomes a too_large dead letter and the bridge goes on.
"""

from __future__ import annotations

import yaml
from confluent_kafka.admin import AdminClient, NewTopic

import bridge_harness as h
from devenv import kafka, mariadb
from devenv.monolith import MonolithWriter, create_schema


def _kafka_default_topic(topic: str) -> None:
    """The events topic as an older bridge (or a person) created it: broker defaults, 1 MB records."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers()})
    for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        f.result()


def test_a_5000_line_order_on_a_1mb_topic_never_halts_the_bridge(fresh_db, tmp_path):
    conn = mariadb.admin_connect()
    create_schema(conn, fresh_db)
    topic = h.write_orders_mapping(tmp_path / "mappings", fresh_db)
    _kafka_default_topic(topic)
    cfg = h.bridge_config(tmp_path, fresh_db, held={"max_age_seconds": 100000, "max_count": 100000})
    writer = MonolithWriter(conn, fresh_db)

    bridge = h.BridgeThread(cfg).start()
    big = writer.place_order(5000)            # one source transaction, one aggregate of 5,001 rows
    for _ in range(20):
        writer.step()
    bridge.wait_position(conn, timeout=120)
    bridge.stop()
    events = h.events_of(h.read_topic(topic, timeout=60))
    h.check_unique_and_gapless(events)
    # issue 18: the capped created event and the added events that follow it match their schemas
    assert h.validate_events(events, tmp_path / "mappings", mariadb.connection_settings()) == len(events)
    mine = [e for e in events if e["aggregate_id"] == str(big)]
    assert mine[0]["event_type"] == "OrderPlaced" and len(mine[0]["data"]["lines"]) == 1000
    assert [e["event_type"] for e in mine[1:4001]] == ["OrderLineAdded"] * 4000
    assert {e["source"]["txn_id"] for e in mine[:4001]} == {mine[0]["source"]["txn_id"]}   # one source txn
    assert h.comparable(h.fold_orders(events)) == h.comparable(h.orders_in_db(conn, fresh_db))

    # without the cap, the created event (~1.4 MB) cannot fit the topic: a dead letter, and the bridge goes on
    mapping = tmp_path / "mappings" / "orders.yaml"
    doc = yaml.safe_load(mapping.read_text())
    doc["max_embedded_children"] = 100_000
    mapping.write_text(yaml.safe_dump(doc, sort_keys=False))
    bridge = h.BridgeThread(cfg).start()
    huge = writer.place_order(20_000)
    after = writer.place_order(2)
    bridge.wait_position(conn, timeout=180)
    bridge.stop()
    dead = [r["value"] for r in h.read_topic(f"{cfg['name']}.dead-letter", timeout=60)]
    [too_large] = [d for d in dead if d["reason"] == "too_large"]
    assert too_large["aggregate_id"] == str(huge) and too_large["record"]["bytes"] > 1_048_576
    events = h.events_of(h.read_topic(topic, timeout=60))
    assert not [e for e in events if e["aggregate_id"] == str(huge)]
    assert [e["event_type"] for e in events if e["aggregate_id"] == str(after)] == ["OrderPlaced"]
