"""SIGHUP reloads the mappings (docs/operations.md, Signals) while a writer writes: in `ingest` (workers
ignore SIGHUP) and in `run`, and in `run` while it re-applies state after a crash.

test_operability covers a reload of a quiet `run` bridge (bad edit rejected with file:line, the new event
name used next); here the writer never stops, so the assertions are about where the new mappings take
effect in the stream: every transaction the bridge had committed before the SIGHUP keeps the old shape,
every one written after the reload was logged has the new one, one switch in between, and nothing lost
or doubled around the rejected and the accepted reload.
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest
import yaml

import bridge_harness as h
from cdc_bridge.source.position import binlog_file_index
from cdc_bridge.source.preflight import current_position
from devenv import mariadb
from devenv.monolith import MonolithWriter, create_schema
from scale_harness import Cluster, Workload, check_story, scale_config, sleep_alive, wait_log

ROOT_EVENTS = h.ORDER_CREATED | h.ORDER_UPDATED | {"OrderDeleted"}   # they carry every root field
REJECTED = "mapping reload rejected; the previous mappings stay in force"


def _edits(mapping) -> tuple[str, str]:
    """(a bad edit: an unknown type, a good one: the root gains the field `note`) of orders.yaml."""
    doc = yaml.safe_load(mapping.read_text())
    doc["root"]["fields"]["total"]["type"] = "decimall"
    bad = yaml.safe_dump(doc, sort_keys=False)
    doc["root"]["fields"]["total"]["type"] = "decimal"
    doc["root"]["fields"]["note"] = None
    return bad, yaml.safe_dump(doc, sort_keys=False)


def _source_key(e: dict) -> tuple[int, int]:
    return binlog_file_index(e["source"]["binlog_file"]), e["source"]["binlog_pos"]


def _note_switches_once(events: list[dict], old_until, new_from) -> int:
    """Root events of transactions up to old_until lack `note`, from new_from on they have it, and in
    between there is one switch (in binlog order). Returns how many root events have it."""
    roots = sorted((e for e in events if e["event_type"] in ROOT_EVENTS), key=_source_key)
    has = [("note" in e["data"]) for e in roots]
    keys = [_source_key(e) for e in roots]
    assert not any(n for n, k in zip(has, keys) if k <= old_until.order_key), "the new mappings took effect too early"
    assert all(n for n, k in zip(has, keys) if k >= new_from.order_key), "the new mappings did not take effect"
    assert has == sorted(has), "old and new mappings interleave in binlog order"
    return sum(has)


@pytest.mark.parametrize("mode", ["ingest", "run"])
def test_sighup_reload_under_load(fresh_db, tmp_path, mode):
    schema = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, schema)
    cfg, path, topic = scale_config(tmp_path, schema, mode, held={"max_age_seconds": 100000, "max_count": 100000})
    c = Cluster(tmp_path / mode, cfg, path)
    mapping = tmp_path / mode / "mappings" / "orders.yaml"
    bad, good = _edits(mapping)
    who = "ingest" if mode == "ingest" else "bridge"
    try:
        if mode == "ingest":
            c.ingest()
            c.worker(1)
            wait_log(c, "w1", "partition started")
        else:
            c.run_embedded()
        wait_log(c, who, "binlog source starting")
        with Workload(schema, seed=23, rate=50) as load:
            sleep_alive(c, 1.5)
            # a bad edit: refused with file:line, the old mappings keep running
            mapping.write_text(bad)
            c.signal(who, signal.SIGHUP)
            wait_log(c, who, REJECTED)
            [line] = [x for x in c.log(who).read_text().splitlines() if REJECTED in x]
            assert "orders.yaml:" in line and "decimall" in line, line
            sleep_alive(c, 1.5)
            # a good edit, sent once the bridge has committed everything written so far
            with load.pause():
                old_until = current_position(conn)
            h.wait_for(lambda: c.assert_alive() or c.checkpoint_at(old_until), 30, "the bridge to catch up")
            mapping.write_text(good)
            c.signal(who, signal.SIGHUP)
            wait_log(c, who, "mappings reloaded")
            with load.pause():
                new_from = current_position(conn)
            if mode == "ingest":   # documented: a worker keeps the mappings it started with
                c.signal("w1", signal.SIGHUP)
                wait_log(c, "w1", "SIGHUP ignored")
            sleep_alive(c, 2)
        c.wait_caught_up(conn, workers=mode == "ingest")
    finally:
        c.stop_all()
    assert c.log_count(who, "mapping reload requested (SIGHUP)") == 2 and c.log_count(who, "mappings reloaded") == 1
    events = h.events_of(h.read_topic(topic))
    n_events, n_aggregates = check_story(events, conn, schema)   # nothing lost or doubled across both reloads
    with_note = _note_switches_once(events, old_until, new_from)
    assert with_note >= 20 and with_note < n_events
    print(f"\nSIGHUP under load ({mode}): bad edit refused, good edit from {new_from} on; {n_events} events of "
          f"{n_aggregates} aggregates exactly once, {with_note} root events with the new field")


def test_sighup_during_the_startup_replay_waits_for_it(fresh_db, tmp_path):
    """A SIGHUP while `run` re-applies already published transactions to state (LMDB behind the Kafka
    checkpoint: after a crash, or here a lost state directory): the replay must finish first, under the
    mappings it began with, and the reload apply from the checkpoint on."""
    schema = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, schema)
    cfg, path, topic = scale_config(tmp_path, schema, "replay", held={"max_age_seconds": 100000, "max_count": 100000})
    c = Cluster(tmp_path / "replay", cfg, path)
    mapping = tmp_path / "replay" / "mappings" / "orders.yaml"
    _, good = _edits(mapping)
    writer = MonolithWriter(mariadb.admin_connect(), schema)
    try:
        c.run_embedded()          # on an empty database: its state can be re-applied from the origin
        wait_log(c, "bridge", "binlog source starting")
        for i in range(4000):
            writer.step()
            if i == 2000:
                writer.big_transaction(500)
        c.wait_caught_up(conn, workers=False)
        c.signal("bridge", signal.SIGTERM)
        checkpoint = current_position(conn)
        shutil.rmtree(tmp_path / "replay" / "state")
        c.run_embedded()
        wait_log(c, "bridge", "LMDB is empty: re-applying history from the bridge's origin")
        mapping.write_text(good)  # (the bridge loaded the old mappings at start)
        c.signal("bridge", signal.SIGHUP)
        wait_log(c, "bridge", "mappings reloaded")
        for _ in range(300):
            writer.step()
        new_from = current_position(conn)
        writer.place_order(2)
        c.wait_caught_up(conn, workers=False)
    finally:
        c.stop_all()
    events = h.events_of(h.read_topic(topic))
    check_story(events, conn, schema)   # (it failed here: the replay was cut short, its state never written)
    _note_switches_once(events, checkpoint, new_from)
    text = c.log("bridge").read_text()
    # the reload came during the replay and was applied after it
    assert text.index("mapping reload requested") < text.index("state caught up with the Kafka checkpoint") \
        < text.index("mappings reloaded"), text[-4000:]


def test_sighup_during_startup_is_carried_out(fresh_db, tmp_path):
    """A SIGHUP while the bridge starts (source check, Kafka, snapshot: no binlog source to stop yet) was
    logged and then left pending until the next signal: the edit did not take effect."""
    schema = fresh_db
    conn = mariadb.admin_connect()
    create_schema(conn, schema)
    cfg, path, topic = scale_config(tmp_path, schema, "early")
    c = Cluster(tmp_path / "early", cfg, path)
    _, good = _edits(tmp_path / "early" / "mappings" / "orders.yaml")
    try:
        c.run_embedded()
        wait_log(c, "bridge", "bridge starting")
        (tmp_path / "early" / "mappings" / "orders.yaml").write_text(good)
        time.sleep(0.2)          # (its signal handlers are installed right after that line)
        c.signal("bridge", signal.SIGHUP)
        wait_log(c, "bridge", "mappings reloaded", timeout=30)
        oid = MonolithWriter(mariadb.admin_connect(), schema).place_order(1)
        c.wait_caught_up(conn, workers=False)
    finally:
        c.stop_all()
    text = c.log("bridge").read_text()
    assert text.index("mapping reload requested") < text.index("binlog source starting"), "not during start-up"
    [placed] = [e for e in h.events_of(h.read_topic(topic)) if e["aggregate_id"] == str(oid)]
    assert "note" in placed["data"], placed
