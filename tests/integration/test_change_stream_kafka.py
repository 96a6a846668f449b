"""The Debezium-compatible change stream with the orders workload, against real MariaDB and Kafka: off by
default; each row change of a streamed table once, in binlog order per key, a tombstone after each delete,
the snapshot's rows as op r, a table mapped by two aggregates once, unmapped tables not at all; exactly once
across SIGKILLs (the records share the Kafka transaction of the domain events); the same records from
`cdc-bridge ingest` (scale-out) as from `cdc-bridge run`. test_change_stream_golden.py compares the values
with what Debezium itself writes."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from confluent_kafka.admin import AdminClient

import bridge_harness as h
from cdc_bridge.sink.checkpoint import checkpoint_position, read_checkpoint
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.source.preflight import current_position
from change_stream_harness import check_orders_stream, read_changes, write_line_mapping
from devenv import kafka, mariadb
from devenv.monolith import MonolithWriter

pytestmark = pytest.mark.timeout(300)


def topics_with_prefix(prefix: str) -> list[str]:
    md = AdminClient({"bootstrap.servers": kafka.bootstrap_servers()}).list_topics(timeout=10)
    return sorted(t for t in md.topics if t.startswith(prefix))


def write_customers(conn, db: str, n: int) -> None:
    """Rows of an unmapped table (shop.customers): no change events, no topic."""
    with conn.cursor() as cur:
        for i in range(n):
            cur.execute(f"INSERT INTO `{db}`.customers (tenant_id, customer_no, name, signup_ts) VALUES (1, %s, 'x', 0)",
                        (f"C{random.randint(0, 10**9)}",))


def test_off_by_default_no_change_topics(shop, tmp_path):
    conn, db, _ = shop
    cfg = h.bridge_config(tmp_path, db)
    bridge = h.BridgeThread(cfg).start()
    try:
        MonolithWriter(conn, db, rng=random.Random(1)).place_order(2)
        bridge.wait_position(conn)
    finally:
        bridge.stop()
    assert bridge.bridge.change_stream is None
    assert topics_with_prefix(f"{cfg['name']}.{db}.") == [] and topics_with_prefix(f"{cfg['name']}.transaction") == []


@pytest.mark.parametrize("reader", ["process", "inline"])
def test_every_row_change_once_in_order_with_tombstones(reader, shop, tmp_path):
    conn, db, _ = shop
    write_line_mapping(tmp_path / "mappings", db)
    writer = MonolithWriter(conn, db, rng=random.Random(18))
    for _ in range(40):       # existing rows: the snapshot's op r (order_lines is read for both aggregates)
        writer.step()
    with conn.cursor() as cur:
        cur.execute(f"SELECT (SELECT COUNT(*) FROM `{db}`.orders), (SELECT COUNT(*) FROM `{db}`.order_lines)")
        snapshot_rows = cur.fetchone()
    prefix = f"cs-{db}"
    cfg = h.bridge_config(tmp_path, db, source={"reader": reader},
                          change_stream={"enabled": True, "topic_prefix": prefix})
    bridge = h.BridgeThread(cfg).start()
    try:
        for i in range(250):
            writer.step()
            if i % 50 == 0:
                write_customers(conn, db, 3)
        writer.big_transaction(100)
        bridge.wait_position(conn, timeout=60)
        metrics = bridge.bridge.metrics
    finally:
        bridge.stop()
    assert {"delete_order", "delete_line", "change_status", "touch_unmapped"} <= set(writer.counts)

    records = check_orders_stream(prefix, conn, db)
    assert topics_with_prefix(f"{prefix}.") == sorted(
        [f"{prefix}.{db}.orders", f"{prefix}.{db}.order_lines", f"{prefix}.transaction"]), "unmapped table streamed"
    for table, n in zip(("orders", "order_lines"), snapshot_rows):
        rs = [r for r in records[f"{db}.{table}"] if r["value"] and r["value"]["op"] == "r"]
        assert len(rs) == n, f"{table}: {len(rs)} snapshot records for {n} rows"
        streamed = sum(1 for r in records[f"{db}.{table}"] if r["value"] and r["value"]["op"] != "r")
        # one change event per row change the source read (no update in this workload changes a key)
        assert streamed == metrics.source_rows.labels(f"{db}.{table}")._value.get(), table
        assert metrics.change_records.labels(f"{db}.{table}")._value.get() == n + streamed, table
    ops = {r["value"]["op"] for rs in records.values() for r in rs if r["value"]}
    assert ops == {"r", "c", "u", "d"}


def _kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_sigkill_mid_stream_every_change_once(shop, tmp_path):
    """SIGKILLs, one inside an open Kafka transaction: the change records come with the domain events (both or
    neither), so the restarted bridge publishes each exactly once."""
    conn, db, events_topic = shop
    prefix = f"cs-{db}"
    cfg = h.bridge_config(tmp_path, db, batch={"max_wait_ms": 100, "max_transactions": 50},
                          held={"max_age_seconds": 100000, "max_count": 100000},
                          change_stream={"enabled": True, "topic_prefix": prefix})
    path, log = h.write_config(tmp_path, cfg), tmp_path / "bridge.log"
    writer = MonolithWriter(mariadb.admin_connect(), db, rng=random.Random(6))
    marker = "fault injection: Kafka transaction open"

    def write(steps: int) -> None:
        for _ in range(steps):
            writer.step()
            time.sleep(0.005)

    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers())

    def caught_up(target) -> bool:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        ck = read_checkpoint(settings, f"{cfg['name']}.checkpoints", cfg["name"], timeout=10)
        return ck is not None and checkpoint_position(ck).order_key >= target.order_key

    write(30)   # existing rows: the first start snapshots them
    proc = h.start_bridge_process(path, log)
    for round_ in range(4):
        # streaming (the snapshot or the previous kill's replay is done); kill while it reads the writes
        target = current_position(conn)
        h.wait_for(lambda: caught_up(target), 120, "the bridge to stream")
        write(60)
        if round_ == 2:   # restart holding every Kafka transaction open 1.5 s, kill inside one
            _kill(proc)
            before = log.read_text(errors="replace").count(marker)
            os.environ["CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS"] = "1500"
            try:
                proc = h.start_bridge_process(path, log)
            finally:
                del os.environ["CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS"]
            write(20)
            h.wait_for(lambda: log.read_text(errors="replace").count(marker) > before, 60, "an open transaction")
            time.sleep(0.3)
        _kill(proc)
        proc = h.start_bridge_process(path, log)
    write(30)
    target = current_position(conn)
    h.wait_for(lambda: caught_up(target), 120, "the bridge to catch up")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]

    records = check_orders_stream(prefix, conn, db)
    # both or neither: every source transaction with events has its change events (check_orders_stream above
    # has each row change exactly once); not the other way round: a change no aggregate turns into an event
    # (an update of unmapped columns) still has its change record
    events = h.events_of(h.read_topic(events_topic))
    h.check_unique_and_gapless(events)
    event_txns = {e["source"]["txn_id"] for e in events if not e["event_type"].endswith("Snapshotted")}
    change_txns = {r["value"]["source"]["gtid"] for rs in records.values() for r in rs
                   if r["value"] and r["value"]["source"]["gtid"]}
    assert len(change_txns) > 100
    assert event_txns <= change_txns, sorted(event_txns - change_txns)[:5]


def test_ingest_publishes_the_same_change_records_as_run(fresh_db, tmp_path):
    """Scale-out: `cdc-bridge ingest` publishes the change stream itself (the workers only apply commands)."""
    from devenv.monolith import create_schema

    conn = mariadb.admin_connect()
    create_schema(conn, fresh_db)
    writer = MonolithWriter(conn, fresh_db, rng=random.Random(9))
    for _ in range(20):
        writer.step()
    runs = {}
    for mode in ("run", "ingest"):
        d = tmp_path / mode
        h.write_orders_mapping(d / "mappings", fresh_db)
        cfg = h.bridge_config(d, fresh_db, change_stream={"enabled": True, "topic_prefix": f"cs-{mode}-{fresh_db}"})
        cfg["name"] = f"{cfg['name']}-{mode}"
        runs[mode] = (cfg, h.BridgeThread(cfg, ingest=mode == "ingest").start())
    try:
        for _ in range(150):
            writer.step()
        for _, bridge in runs.values():
            bridge.wait_position(conn, timeout=60)
    finally:
        for _, bridge in runs.values():
            bridge.stop()
    assert runs["ingest"][1].bridge.apply is None

    def comparable(prefix: str) -> list:
        out = []
        for r in check_orders_stream(prefix, conn, fresh_db)[f"{fresh_db}.orders"]:
            v = r["value"]
            if v is not None:   # what differs between two bridges: processing times, the name
                v = {**v, "ts_ms": 0, "ts_us": 0, "ts_ns": 0,
                     "source": {**v["source"], "name": None,
                                **({"ts_ms": 0, "ts_us": 0, "ts_ns": 0} if v["op"] == "r" else {})}}
            out.append((r["partition"], r["key"], v))
        return out

    run, ingest = comparable(f"cs-run-{fresh_db}"), comparable(f"cs-ingest-{fresh_db}")
    assert len(run) > 100 and run == ingest
    assert read_changes(f"cs-ingest-{fresh_db}.transaction")


@pytest.mark.parametrize("reader", ["process", "inline"])
def test_aborted_kafka_transactions_redo_the_change_records_once(reader, shop, tmp_path, monkeypatch):
    """A Kafka abort redoes the batch through _apply again: its change records once more, never twice; the
    inline reader builds them in the bridge (the first _apply) and the redo re-adds the same ones."""
    from test_pipeline_abort import AbortInjector, run_with_aborts

    conn, db, _ = shop
    prefix = f"cs-{db}"
    inj = AbortInjector({3, 4, 8}, delay=0.3).install(monkeypatch)
    run_with_aborts(shop, tmp_path, inj, expected_aborts=3, until=lambda: inj.aborted >= 3,
                    source={"reader": reader}, change_stream={"enabled": True, "topic_prefix": prefix})
    records = check_orders_stream(prefix, conn, db)
    assert sum(1 for rs in records.values() for r in rs if r["value"] and r["value"]["op"] == "c") > 50


def test_a_change_record_too_large_for_its_topic_is_a_dead_letter(shop, tmp_path):
    """A row larger than the topic accepts must not stop the bridge (Kafka would refuse the whole transaction,
    events included): its change record becomes a too_large dead letter, the rest goes on."""
    conn, db, events_topic = shop
    prefix = f"cs-{db}"
    cfg = h.bridge_config(tmp_path, db, kafka={"max_message_bytes": 100_000},
                          change_stream={"enabled": True, "topic_prefix": prefix})
    bridge = h.BridgeThread(cfg).start()
    try:
        writer = MonolithWriter(conn, db, rng=random.Random(3))
        oid = writer.place_order(1)
        with conn.cursor() as cur:   # TEXT holds 64 KiB: the second update's before + after exceed 100 kB
            cur.execute(f"UPDATE `{db}`.orders SET note = %s WHERE id = %s", ("x" * 60_000, oid))
            cur.execute(f"UPDATE `{db}`.orders SET note = %s WHERE id = %s", ("y" * 60_000, oid))
            cur.execute(f"UPDATE `{db}`.orders SET note = NULL WHERE id = %s", (oid,))
        writer.change_status()
        bridge.wait_position(conn)
        metrics = bridge.bridge.metrics
    finally:
        bridge.stop()
    orders = read_changes(f"{prefix}.{db}.orders")
    assert [r["value"]["op"] for r in orders] == ["c", "u", "u", "u"], "the too large update is left out, not the others"
    assert orders[-1]["value"]["after"]["status"] != "pending" and orders[1]["value"]["after"]["note"] == "x" * 60_000
    [dead] = [r for r in h.read_topic(f"{cfg['name']}.dead-letter") if r["value"]["reason"] == "too_large"]
    assert dead["value"]["table"] == f"{db}.orders" and dead["value"]["record"]["topic"] == f"{prefix}.{db}.orders"
    assert dead["value"]["record"]["key"] == f'{{"id":{oid}}}' and dead["value"]["record"]["bytes"] > 120_000
    assert metrics.dead_letters.labels("too_large")._value.get() == 1
    assert {e["event_type"] for e in h.events_of(h.read_topic(events_topic))} >= {"OrderPlaced"}
