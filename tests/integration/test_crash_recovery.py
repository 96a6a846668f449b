"""Issue 6: exactly once across SIGKILLs, a broker restart and a database restart.

The bridge runs as a subprocess while the monolith writer plays a mixed workload
(inserts, updates, deletes, lines before their order, one transaction of thousands
of rows). We SIGKILL the bridge at random moments (twice while a Kafka transaction is
held open by fault injection), restart Kafka once and MariaDB once under it, and at
the end a read_committed consumer must find every event once, gapless sequences, and
the events folded into state equal to the database.

The restarts alternate between the compiled apply and the Python one (CDC_BRIDGE_NATIVE_APPLY=0):
each path is proven against the real services, and each picks up the state the other wrote.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pymysql

import bridge_harness as h
from cdc_bridge.sink.checkpoint import checkpoint_position, read_checkpoint
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.source.preflight import current_position
from devenv import kafka, mariadb
from devenv.monolith import MonolithWriter, create_schema

KILLS = 12
OPEN_TXN_KILLS = {2, 7}      # kill rounds where the kill lands inside an open Kafka transaction
KAFKA_RESTART_ROUND = 4      # the broker is restarted under a running bridge in this round
MARIADB_RESTART_ROUND = 9    # and the database in this one


class Workload:
    """The monolith writer on its own thread; `paused` holds it while MariaDB restarts."""

    def __init__(self, schema: str, seed: int):
        self.schema, self.seed = schema, seed
        self.paused = threading.Lock()
        self.stop = threading.Event()
        self.steps = 0
        self.big_done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        w = MonolithWriter(mariadb.admin_connect(), self.schema, rng=random.Random(self.seed))
        while not self.stop.is_set():
            with self.paused:
                try:
                    if self.steps == 150:
                        w.big_transaction(1500)  # ~3,750 rows in one source transaction
                        self.big_done.set()
                    else:
                        w.step()
                    self.steps += 1
                except pymysql.err.OperationalError:
                    w.conn = _reconnect()
            time.sleep(0.01)

    def __enter__(self) -> "Workload":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)


def _reconnect():
    for _ in range(100):
        try:
            return mariadb.admin_connect()
        except pymysql.err.OperationalError:
            time.sleep(0.2)
    raise AssertionError("MariaDB did not come back")


def _start(cfg_path, log, restart: int):
    """The bridge, on the Python apply every other restart (see the module doc)."""
    os.environ["CDC_BRIDGE_NATIVE_APPLY"] = "0" if restart % 2 else "1"
    try:
        return h.start_bridge_process(cfg_path, log)
    finally:
        del os.environ["CDC_BRIDGE_NATIVE_APPLY"]


def _kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _log_count(path, marker: str) -> int:
    return path.read_text(errors="replace").count(marker) if path.exists() else 0


def test_sigkill_broker_and_database_restarts_exactly_once(fresh_db, tmp_path):
    db = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, db)
    topic = h.write_orders_mapping(tmp_path / "mappings", db)
    cfg = h.bridge_config(tmp_path, db, batch={"max_wait_ms": 100, "max_transactions": 200},
                          held={"max_age_seconds": 100000, "max_count": 100000})
    cfg_path = h.write_config(tmp_path, cfg)
    log = tmp_path / "bridge.log"
    rng = random.Random(1234)
    marker = "fault injection: Kafka transaction open"
    kills = open_txn_kills = 0

    proc = _start(cfg_path, log, 0)
    h.wait_for(lambda: _log_count(log, "bridge starting") >= 1, 60, "the bridge to start")
    time.sleep(2)
    with Workload(db, seed=99) as work:
        for round_ in range(KILLS):
            if round_ in OPEN_TXN_KILLS:
                # restart with every Kafka transaction held open 1.5 s, and kill inside one
                _kill(proc)
                before = _log_count(log, marker)
                os.environ["CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS"] = "1500"
                try:
                    proc = _start(cfg_path, log, round_)
                finally:
                    del os.environ["CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS"]
                h.wait_for(lambda: _log_count(log, marker) > before, 60, "an open Kafka transaction")
                time.sleep(0.3)
                _kill(proc)
                open_txn_kills += 1
            else:
                time.sleep(rng.uniform(0.5, 3.0))
                if round_ == KAFKA_RESTART_ROUND:
                    kafka.restart()
                    time.sleep(2)
                if round_ == MARIADB_RESTART_ROUND:
                    with work.paused:
                        mariadb.restart()
                    time.sleep(2)
                assert proc.poll() is None, f"the bridge died on its own:\n{log.read_text()[-4000:]}"
                _kill(proc)
            kills += 1
            proc = _start(cfg_path, log, kills)
            if round_ == 5:
                h.wait_for(work.big_done.is_set, 120, "the big transaction")
        h.wait_for(work.big_done.is_set, 120, "the big transaction")
        time.sleep(1)
    steps = work.steps

    # let the last bridge catch up with everything written, then stop it cleanly
    conn = mariadb.admin_connect()
    target = current_position(conn)
    settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers())

    def caught_up() -> bool:
        assert proc.poll() is None, f"the bridge died:\n{log.read_text()[-4000:]}"
        ck = read_checkpoint(settings, f"{cfg['name']}.checkpoints", cfg["name"], timeout=10)
        return ck is not None and checkpoint_position(ck).order_key >= target.order_key

    h.wait_for(caught_up, 180, "the bridge to catch up")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-4000:]

    events = h.events_of(h.read_topic(topic, timeout=60))
    per_aggregate = h.check_unique_and_gapless(events)
    # issue 18: every event matches its schema from the mappings and the database's columns
    assert h.validate_events(events, tmp_path / "mappings", mariadb.connection_settings()) == len(events)
    folded = h.comparable(h.fold_orders(events))
    expected = h.comparable(h.orders_in_db(conn, db))
    missing = sorted(set(expected) - set(folded))[:10]
    extra = sorted(set(folded) - set(expected))[:10]
    assert not missing and not extra, f"orders missing from events: {missing}; not in db: {extra}"
    wrong = [a for a in expected if expected[a] != folded[a]]
    assert not wrong, f"{len(wrong)} aggregates differ, e.g. {wrong[0]}: db={expected[wrong[0]]} events={folded[wrong[0]]}"
    assert open_txn_kills >= 1
    text = log.read_text(errors="replace")
    assert '"compiled": true' in text and '"compiled": false' in text, "both apply paths ran"
    print(f"\ncrash test: {kills} SIGKILLs ({open_txn_kills} inside an open Kafka transaction), "
          f"1 Kafka restart, 1 MariaDB restart, {steps} writer steps; {len(events)} events of "
          f"{len(per_aggregate)} aggregates: every event_id unique, every sequence 1..n, "
          f"{len(expected)} aggregates' final state equal to the database")
