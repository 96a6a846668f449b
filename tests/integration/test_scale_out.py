"""Issue 14: aggregate workers in a consumer group produce what the embedded bridge produces, and
stay exactly once when workers come, go, crash or stall, and when ingest crashes mid-transaction.

Everything runs as real processes (`cdc-bridge run | ingest | worker`) against MariaDB and Kafka.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import bridge_harness as h
from cdc_bridge.config import BridgeConfig
from cdc_bridge.mapping.loader import load_mappings
from cdc_bridge.rebuild import rebuild_bridge
from devenv import mariadb
from devenv.monolith import MonolithWriter, create_schema
from scale_harness import (Cluster, Workload, check_story, dead_letter_keys, events_by_aggregate, scale_config,
                           sleep_alive, wait_log)


def _comparable(events: list[dict]) -> dict[str, list[dict]]:
    """Per aggregate, in sequence order. A snapshot's events carry the time the snapshot was read
    (each bridge read it at its own moment): that time is left out, all else must be equal."""
    out = events_by_aggregate(events)
    for evs in out.values():
        for i, e in enumerate(evs):
            if e["event_type"].endswith("Snapshotted"):
                evs[i] = dict(e, occurred_at=None)
    return out


def test_embedded_and_three_workers_publish_the_same_events(fresh_db, tmp_path):
    schema = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, schema)
    writer = MonolithWriter(mariadb.admin_connect(), schema, rng=random.Random(14))
    for _ in range(80):          # existing rows: both bridges begin with a snapshot
        writer.step()
    # orphans expire after 1.5 s of source time: held children, their expiry and late parents in both modes
    held = {"max_age_seconds": 1.5, "max_count": 100000}
    cfg_e, path_e, topic_e = scale_config(tmp_path, schema, "emb", held=held)
    cfg_w, path_w, topic_w = scale_config(tmp_path, schema, "wrk", held=held)
    emb = Cluster(tmp_path / "emb", cfg_e, path_e)
    wrk = Cluster(tmp_path / "wrk", cfg_w, path_w)
    try:
        emb.run_embedded()
        wrk.ingest()
        for n in (1, 2, 3):
            wrk.worker(n)
        emb.wait_caught_up(conn, workers=False)
        wrk.wait_caught_up(conn, workers=True)

        for i in range(300):
            writer.step()
            if i == 120:
                writer.big_transaction(300)     # ~750 rows in one source transaction
            if i % 60 == 59:
                time.sleep(2)                   # lets held children outlive held.max_age_seconds
        emb.wait_caught_up(conn, workers=False)
        wrk.wait_caught_up(conn, workers=True)
    finally:
        emb.stop_all()
        wrk.stop_all()

    embedded = h.events_of(h.read_topic(topic_e))
    workers = h.events_of(h.read_topic(topic_w))
    h.check_unique_and_gapless(embedded)
    h.check_unique_and_gapless(workers)
    a, b = _comparable(embedded), _comparable(workers)
    assert a.keys() == b.keys(), f"aggregates only embedded: {sorted(a.keys() - b.keys())[:5]}, " \
                                 f"only workers: {sorted(b.keys() - a.keys())[:5]}"
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"{len(differ)} aggregates differ, e.g. {differ[0]}:\n{a[differ[0]]}\n{b[differ[0]]}"
    # issue 18: the events match the schemas derived from the mappings and the database's columns
    assert h.validate_events(embedded, Path(cfg_e["mappings_dir"]), mariadb.connection_settings()) == len(embedded)
    types = {e["event_type"] for e in embedded}
    assert {"OrderPlaced", "OrderPaid", "OrderLineChanged", "OrderLineRemoved", "OrderDeleted"} <= types, types
    assert any(e["event_type"] == "OrderSnapshotted" for e in embedded), "no snapshot events"

    dl_e = dead_letter_keys(h.read_topic(f"{emb.name}.dead-letter"))
    dl_w = dead_letter_keys(h.read_topic(f"{wrk.name}.dead-letter"))
    assert dl_e == dl_w
    assert any(k[0] == "orphan" for k in dl_e), f"no held child expired: {dl_e}"

    # rebuild reads the workers' commands topic like the embedded bridge's command log
    config = BridgeConfig.model_validate(cfg_w)
    rb = rebuild_bridge(config, load_mappings(config.mappings_dir), version=2, until_caught_up=True)
    assert rb.run() == 0
    assert _comparable(h.events_of(h.read_topic(f"{topic_w}.v2"))) == b


def test_workers_come_go_crash_and_stall_exactly_once(fresh_db, tmp_path):
    """1 -> 3 workers under load, SIGKILL one, SIGSTOP one past the transaction timeout, SIGKILL ingest
    inside a 5,000-row transaction, 3 -> 1. After each phase: unique ids, gapless sequences, fold == db."""
    schema = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, schema)
    cfg, path, topic = scale_config(
        tmp_path, schema, "fail", held={"max_age_seconds": 100000, "max_count": 100000},
        kafka={"transaction_timeout_ms": 10000},
        worker={"session_timeout_ms": 6000, "max_poll_interval_ms": 20000})
    c = Cluster(tmp_path / "fail", cfg, path)

    def settle(phase: str, load: Workload) -> None:
        with load.pause():
            c.wait_caught_up(conn, workers=True, timeout=240)
            n_events, n_aggs = check_story(h.events_of(h.read_topic(topic)), conn, schema)
        print(f"{phase}: {n_events} events over {n_aggs} aggregates, exactly once")

    try:
        c.ingest()
        c.worker(1)
        wait_log(c, "w1", "partition started", at_least=4)
        with Workload(schema, seed=41, rate=40) as load:
            sleep_alive(c, 3)
            c.worker(2)                                   # added under load
            c.worker(3)
            wait_log(c, "w2", "partition started")
            wait_log(c, "w3", "partition started")
            sleep_alive(c, 3)
            settle("1 -> 3 workers", load)

            c.signal("w2", signal.SIGKILL)                # its partitions move; state restored elsewhere
            wait_log(c, "w1", "partitions assigned", at_least=2, timeout=60)
            sleep_alive(c, 3)
            settle("worker killed", load)

            # a worker whose Kafka transaction is open when it stops: w4 holds each one open 1.5 s
            c.worker(4, env={"CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS": "1500"})
            wait_log(c, "w4", "fault injection: Kafka transaction open", timeout=90)
            c.signal("w4", signal.SIGSTOP)                # past session (6 s) and transaction (10 s) timeouts
            sleep_alive(c, 16)
            c.signal("w4", signal.SIGCONT)                # its transaction was aborted; it is fenced, rejoins
            h.wait_for(lambda: c.assert_alive() or c.log_count("w4", "joining again")
                       or c.log_count("w4", "Kafka transaction aborted"), 90, "w4 to notice it was fenced")
            c.signal("w4", signal.SIGTERM)
            sleep_alive(c, 3)
            settle("worker stopped inside a transaction past its timeout", load)

            c.worker(2)                                   # w2 comes back on its old state dir
            wait_log(c, "w2", "partition started", at_least=2)
            kills_before = c.log_count("ingest", "bridge starting")
            with load.pause():
                c.procs["ingest"].send_signal(signal.SIGSTOP)
                load.writer.big_transaction(2000)         # ~5,000 rows
                c.procs["ingest"].send_signal(signal.SIGCONT)
            sleep_alive(c, 0.7)
            c.signal("ingest", signal.SIGKILL)            # most likely mid-transaction
            c.ingest()
            wait_log(c, "ingest", "bridge starting", at_least=kills_before + 1)
            sleep_alive(c, 3)
            settle("ingest killed in a 5,000-row transaction", load)

            c.signal("w2", signal.SIGTERM)                # 3 -> 1
            c.signal("w3", signal.SIGTERM)
            sleep_alive(c, 4)
            settle("3 -> 1 workers", load)
    finally:
        c.stop_all()
    assert sum(c.log_count(w, "restoring partition state") for w in ("w1", "w2", "w3", "w4")) > 0


def _handover(c: Cluster, to: str) -> tuple[int, str]:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "cdc_bridge.cli", "handover", "--to", to, "--config", str(c.config_path)],
                       capture_output=True, text=True, cwd=h.ROOT, timeout=300)
    return p.returncode, p.stdout + p.stderr


def test_handover_embedded_to_workers_and_back(fresh_db, tmp_path):
    schema = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, schema)
    writer = MonolithWriter(mariadb.admin_connect(), schema, rng=random.Random(7))
    for _ in range(40):
        writer.step()
    cfg, path, topic = scale_config(tmp_path, schema, "hand", held={"max_age_seconds": 100000, "max_count": 100000})
    c = Cluster(tmp_path / "hand", cfg, path)
    state_dir = tmp_path / "hand" / "state"

    try:
        rc, out = _handover(c, "workers")
        assert rc == 96 and "no checkpoint" in out, out

        c.run_embedded()
        for _ in range(120):
            writer.step()
        c.wait_caught_up(conn, workers=False)
        rc, out = _handover(c, "workers")
        assert rc == 96 and "Stop the embedded bridge" in out, out   # it still runs: its state dir is locked
        c.signal("bridge", signal.SIGTERM)
        rc, out = _handover(c, "embedded")
        assert rc == 96 and "never ran aggregate workers" in out, out

        rc, out = _handover(c, "workers")
        assert rc == 0 and "handover to workers done" in out, out
        c.ingest()
        c.worker(1)
        c.worker(2)
        for i in range(150):
            writer.step()
            if i == 50:
                writer.big_transaction(200)
        c.wait_caught_up(conn, workers=True)
        assert c.log_count("w1", '"kind": "full"') + c.log_count("w2", '"kind": "full"') >= 1
        rc, out = _handover(c, "embedded")
        assert rc == 96 and "workers are running" in out, out

        c.signal("ingest", signal.SIGTERM)
        h.wait_for(c.drained, 60, "the workers to apply every command")
        c.signal("w1", signal.SIGTERM)
        c.signal("w2", signal.SIGTERM)
        rc, out = _handover(c, "embedded")
        assert rc == 96 and "already holds state" in out, out
        state_dir.rename(tmp_path / "hand" / "state.embedded-before")
        rc, out = _handover(c, "embedded")
        assert rc == 0 and "handover to embedded done" in out, out

        c.run_embedded()
        for _ in range(100):
            writer.step()
        c.wait_caught_up(conn, workers=False)
        c.stop_all()
    finally:
        c.stop_all()
    assert c.log_count("bridge", "state and checkpoint agree") == 1   # the second run: on the handed-back state
    n_events, n_aggregates = check_story(h.events_of(h.read_topic(topic)), conn, schema)
    assert n_aggregates > 100
