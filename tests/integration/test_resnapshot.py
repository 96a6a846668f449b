"""Issue 16: a foreign-key cascade the binlog does not show, repaired by an ad-hoc re-snapshot of the
aggregate while the bridge runs (`cdc-bridge snapshot --aggregate Order --id 2000`)."""

from __future__ import annotations

import bridge_harness as h
from devenv import mariadb
from devenv.monolith import MonolithWriter, create_schema


def test_a_cascade_repaired_by_a_live_resnapshot_publishes_only_the_differences(fresh_db, tmp_path):
    db = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, db)
    with conn.cursor() as cur:
        cur.execute(f"ALTER TABLE `{db}`.order_lines ADD CONSTRAINT fk_lines FOREIGN KEY (order_id) "
                    f"REFERENCES `{db}`.orders (id) ON UPDATE CASCADE")
    signal_table = h.create_signal_table(conn, db)
    topic = h.write_orders_mapping(tmp_path / "mappings", db)
    cfg = h.bridge_config(tmp_path, db, source={"signal_table": signal_table},
                          held={"max_age_seconds": 100000, "max_count": 100000})
    config_path = h.write_config(tmp_path, cfg)
    writer = MonolithWriter(conn, db)
    bridge = h.BridgeThread(cfg).start()
    oid = writer.place_order(3)
    with conn.cursor() as cur:   # the lines follow the order to 2000 inside InnoDB: no row events for them
        cur.execute(f"UPDATE `{db}`.orders SET id = 2000 WHERE id = %s", (oid,))
    writer.step()
    bridge.wait_position(conn)
    before = [e for e in h.events_of(h.read_topic(topic)) if e["aggregate_id"] == "2000"]
    assert [e["event_type"] for e in before] == ["OrderPlaced"] and before[0]["data"]["lines"] == []

    out = h.request_resnapshot(config_path, "Order", [2000, 99999])
    assert "re-snapshot of Order 2000, 99999 requested (4 rows read" in out
    writer.step()
    bridge.wait_position(conn)
    bridge.stop()

    events = h.events_of(h.read_topic(topic))
    h.check_unique_and_gapless(events)
    # issue 18: the re-snapshot's events (and the rest) match their schemas from the mappings and the columns
    assert h.validate_events(events, tmp_path / "mappings", mariadb.connection_settings()) == len(events)
    after = [e for e in events if e["aggregate_id"] == "2000"]
    assert [e["event_type"] for e in after] == ["OrderPlaced"] + ["OrderLineAdded"] * 3   # only the differences
    assert not [e for e in events if e["aggregate_id"] == "99999"]                       # unknown id: nothing
    assert h.comparable(h.fold_orders(events)) == h.comparable(h.orders_in_db(conn, db))
