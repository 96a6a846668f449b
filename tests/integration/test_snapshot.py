"""Issue 8: the initial snapshot of existing rows, with the monolith writing all along."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import bridge_harness as h
from cdc_bridge.sink.checkpoint import read_checkpoint
from cdc_bridge.sink.settings import KafkaSettings
from devenv import kafka, mariadb
from devenv.monolith import MonolithWriter, create_schema


def fill(conn, db: str, orders: int, seed: int = 5) -> MonolithWriter:
    """Existing history: `orders` orders with 1-4 lines each, plus a writer that knows them."""
    rng = random.Random(seed)
    w = MonolithWriter(conn, db, rng=random.Random(seed + 1))
    line_id = 1
    with conn.cursor() as cur:
        for start in range(1, orders + 1, 5000):
            ids = range(start, min(orders, start + 4999) + 1)
            cur.executemany(f"INSERT INTO `{db}`.orders (id, customer_id, status, total, currency) VALUES (%s,%s,%s,%s,'EUR')",
                            [(i, rng.randint(1, 999), rng.choice(["pending", "paid"]), f"{rng.randint(100, 9999) / 100:.2f}")
                             for i in ids])
            lines = []
            for i in ids:
                w.orders[i] = "pending"
                for _ in range(rng.randint(1, 4)):
                    lines.append((line_id, i, f"SKU-{rng.randint(1, 99)}", rng.randint(1, 5), "9.99"))
                    w.lines[line_id] = i
                    line_id += 1
            cur.executemany(f"INSERT INTO `{db}`.order_lines VALUES (%s,%s,%s,%s,%s)", lines)
        # a line whose order does not exist: held by the snapshot like in streaming
        cur.execute(f"INSERT INTO `{db}`.order_lines VALUES (%s, 99999999, 'ORPHAN', 1, 1.00)", (line_id,))
    w.orders = {o: s for o, s in w.orders.items()}
    w.next_order_id, w.next_line_id = 10_000_000, 100_000_000
    return w


def _rows(conn, db) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT (SELECT COUNT(*) FROM `{db}`.orders) + (SELECT COUNT(*) FROM `{db}`.order_lines)")
        return cur.fetchone()[0]


class Writer(threading.Thread):
    def __init__(self, w: MonolithWriter):
        super().__init__(daemon=True)
        self.w, self.stop, self.steps = w, threading.Event(), 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.w.step()
            self.steps += 1
            time.sleep(0.002)


def test_snapshot_of_100k_rows_while_the_monolith_writes(fresh_db, tmp_path):
    conn = mariadb.admin_connect()
    create_schema(conn, fresh_db)
    w = fill(conn, fresh_db, 40_000)
    assert _rows(conn, fresh_db) >= 100_000
    topic = h.write_orders_mapping(tmp_path / "mappings", fresh_db)
    cfg = h.bridge_config(tmp_path, fresh_db, snapshot={"mode": "initial", "chunk_size": 1000},
                          held={"max_age_seconds": 10_000_000, "max_count": 1_000_000})
    writer = Writer(MonolithWriter(mariadb.admin_connect(), fresh_db, rng=w.rng, orders=w.orders, lines=w.lines,
                                   next_order_id=w.next_order_id, next_line_id=w.next_line_id))
    writer.start()
    bridge = h.BridgeThread(cfg).start(timeout=300)  # start() returns once the snapshot is done
    time.sleep(1)
    writer.stop.set()
    writer.join(30)
    bridge.wait_position(conn, timeout=120)
    bridge.stop()
    events = h.events_of(h.read_topic(topic, timeout=120))
    h.check_unique_and_gapless(events)
    snapshotted = [e for e in events if e["event_type"] == "OrderSnapshotted"]
    assert len(snapshotted) >= 39_000  # the writer may delete some before the snapshot reads them
    # the snapshot's view is a GTID: its events carry it, one form of transaction id on the topic (issue 16)
    views = {(e["source"]["gtid"], e["source"]["txn_id"]) for e in snapshotted}
    assert len(views) == 1 and all(g is not None and g == t for g, t in views), views
    assert h.comparable(h.fold_orders(events)) == h.comparable(h.orders_in_db(conn, fresh_db))
    assert writer.steps > 50
    print(f"\nsnapshot: {_rows(conn, fresh_db)} rows, {len(snapshotted)} snapshotted aggregates, "
          f"{writer.steps} writer steps during the snapshot, {len(events)} events; state equals the database")


def test_crash_mid_snapshot_resumes_from_the_last_chunk(fresh_db, tmp_path):
    conn = mariadb.admin_connect()
    create_schema(conn, fresh_db)
    w = fill(conn, fresh_db, 6_000)
    topic = h.write_orders_mapping(tmp_path / "mappings", fresh_db)
    cfg = h.bridge_config(tmp_path, fresh_db, snapshot={"mode": "initial", "chunk_size": 100},
                          held={"max_age_seconds": 10_000_000, "max_count": 1_000_000})
    cfg_path = h.write_config(tmp_path, cfg)
    log = tmp_path / "bridge.log"
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers())
    os.environ["CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS"] = "1000"  # slow the snapshot down so we can kill it
    try:
        proc = h.start_bridge_process(cfg_path, log)
    finally:
        del os.environ["CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS"]
    cursor = None
    deadline = time.time() + 120
    while time.time() < deadline and cursor is None:
        ck = read_checkpoint(settings, f"{cfg['name']}.checkpoints", cfg["name"], timeout=10)
        snap = (ck or {}).get("snapshot") or {}
        if snap.get("cursor") and not snap.get("done"):
            cursor = snap["cursor"]
        time.sleep(0.2)
    assert cursor, "the snapshot did not commit a chunk in time:\n" + log.read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for _ in range(30):  # the monolith goes on while the bridge is down
        w.step()
    proc = h.start_bridge_process(cfg_path, log)
    try:
        from cdc_bridge.source.preflight import current_position

        target = current_position(conn)
        deadline = time.time() + 180
        while time.time() < deadline:
            ck = read_checkpoint(settings, f"{cfg['name']}.checkpoints", cfg["name"], timeout=10)
            from cdc_bridge.sink.checkpoint import checkpoint_position

            if ck and (ck.get("snapshot") or {}).get("done") and checkpoint_position(ck).order_key >= target.order_key:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        else:
            raise AssertionError("did not finish:\n" + log.read_text()[-3000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    text = log.read_text()
    assert "resuming an unfinished snapshot" in text
    events = h.events_of(h.read_topic(topic, timeout=60))
    h.check_unique_and_gapless(events)
    snapshotted = [e for e in events if e["event_type"] == "OrderSnapshotted"]
    assert len({e["aggregate_id"] for e in snapshotted}) == len(snapshotted)
    assert h.comparable(h.fold_orders(events)) == h.comparable(h.orders_in_db(conn, fresh_db))


def test_purged_position_with_when_needed_takes_a_new_snapshot(fresh_db, tmp_path):
    """The binlog the bridge needs is purged while it is down: it re-snapshots and publishes only differences."""
    conn = mariadb.admin_connect()
    create_schema(conn, fresh_db)
    w = fill(conn, fresh_db, 300)
    topic = h.write_orders_mapping(tmp_path / "mappings", fresh_db)
    cfg = h.bridge_config(tmp_path, fresh_db, snapshot={"mode": "when_needed", "chunk_size": 50},
                          held={"max_age_seconds": 10_000_000, "max_count": 1_000_000})
    bridge = h.BridgeThread(cfg).start(timeout=120)
    for _ in range(40):
        w.step()
    bridge.wait_position(conn)
    bridge.stop()
    before = h.events_of(h.read_topic(topic))

    # while the bridge is down: changes of every kind, then the binlog holding them is purged
    for _ in range(150):
        w.step()
    for oid in list(w.orders)[:5]:
        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM `{fresh_db}`.order_lines WHERE order_id=%s LIMIT 1", (oid,))
    with conn.cursor() as cur:
        for _ in range(100):  # the stopped bridge's dump thread ends on the server a moment later
            cur.execute("SHOW PROCESSLIST")
            if not [r for r in cur.fetchall() if str(r[4]).startswith("Binlog Dump")]:
                break
            time.sleep(0.1)
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW BINARY LOGS")
        newest = cur.fetchall()[-1][0]
        for _ in range(50):  # MariaDB keeps a file until its binlog checkpoint is written, a moment later
            cur.execute(f"PURGE BINARY LOGS TO '{newest}'")
            cur.execute("SHOW BINARY LOGS")
            left = [r[0] for r in cur.fetchall()]
            if left == [newest]:
                break
            time.sleep(0.1)
    # (a binlog file that another replica is still reading is not purged: this test needs the server alone)
    assert left == [newest], f"PURGE left {left}: another client still reads an old binlog"

    bridge = h.BridgeThread(cfg).start(timeout=120)
    for _ in range(20):
        w.step()
    bridge.wait_position(conn)
    bridge.stop()
    events = h.events_of(h.read_topic(topic))
    h.check_unique_and_gapless(events)
    assert h.comparable(h.fold_orders(events)) == h.comparable(h.orders_in_db(conn, fresh_db))
    seen = {e["event_id"] for e in before}
    new = [e for e in events if e["event_id"] not in seen]
    # only differences: far fewer events than aggregates, and no aggregate announced twice as snapshotted
    assert 0 < len([e for e in new if e["event_type"] == "OrderSnapshotted"]) < 100
    assert any(e["event_type"] == "OrderDeleted" for e in new)
    assert any(e["event_type"] == "OrderLineRemoved" for e in new)
