"""Shared by the pipeline, crash and operability tests: run a bridge against the real
services, read what it published, and fold events back into state to compare with the database."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import yaml
from confluent_kafka import Consumer, TopicPartition

from cdc_bridge.source import SourceSettings
from devenv import kafka, mariadb

ROOT = Path(__file__).resolve().parents[2]
ORDER_CREATED = {"OrderPlaced", "OrderSnapshotted"}
ORDER_UPDATED = {"OrderUpdated", "OrderPaid", "OrderShipped", "OrderCancelled"}


def source_settings(mysql_settings: dict, **kw: Any) -> SourceSettings:
    """Settings of a source test: a random replica server_id, short heartbeats and timeouts."""
    base = dict(host=mysql_settings["host"], port=mysql_settings["port"], user=mysql_settings["user"],
                password=mysql_settings["password"], server_id=random.randint(1000, 60000),
                heartbeat_seconds=0.5, read_timeout_seconds=5, reconnect_initial_backoff=0.2)
    base.update(kw)
    return SourceSettings(**base)


def connect_db(mysql_settings: dict, db: str | None = None) -> pymysql.connections.Connection:
    return pymysql.connect(**mysql_settings, database=db, autocommit=True, charset="utf8mb4")


def write_orders_mapping(directory: Path, schema: str) -> str:
    """mappings/orders.yaml for a throwaway schema, with its own events topic; returns the topic."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "mappings" / "orders.yaml").read_text().replace("shop.", f"{schema}.")
    topic = f"{schema}.order.events"
    doc = yaml.safe_load(text)
    doc["topic"] = topic
    (directory / "orders.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return topic


def bridge_config(tmp: Path, schema: str, **overrides: Any) -> dict:
    s = mariadb.connection_settings()
    cfg: dict[str, Any] = {
        "name": f"it-{schema}",
        "source": {"host": s["host"], "port": s["port"], "user": s["user"], "password": s["password"],
                   "server_id": 20000 + uuid.uuid4().int % 30000},
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers(), "topic_partitions": 3},
        "mappings_dir": str(tmp / "mappings"),
        "state": {"dir": str(tmp / "state"), "partitions": 4},
        "batch": {"max_wait_ms": 50},
        "http": {"host": "127.0.0.1", "port": 0},
        "start": "current",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(tmp: Path, cfg: dict) -> Path:
    path = tmp / "bridge.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class BridgeThread:
    """An in-process bridge on a thread (fast; for behaviour tests); ingest=True: `cdc-bridge ingest`'s
    pipeline instead (commands topic, no aggregates)."""

    def __init__(self, cfg: dict, ingest: bool = False):
        from cdc_bridge.config import BridgeConfig
        from cdc_bridge.mapping.loader import load_mappings
        from cdc_bridge.pipeline import Bridge, Ingest

        config = BridgeConfig.model_validate(cfg)
        self.bridge = (Ingest if ingest else Bridge)(config, load_mappings(config.mappings_dir))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.bridge.run()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def start(self, timeout: float = 60) -> "BridgeThread":
        self.thread.start()
        if not self.bridge.streaming.wait(timeout):
            raise AssertionError(f"bridge did not start streaming: {self.error!r}")
        return self

    def wait_position(self, conn, timeout: float = 30) -> None:
        """Waits until the bridge committed everything the server has written so far."""
        from cdc_bridge.source.preflight import current_position

        target = current_position(conn)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.error:
                raise AssertionError(f"bridge failed: {self.error!r}")
            c = self.bridge.committed
            if c is not None and c.order_key >= target.order_key:
                return
            time.sleep(0.05)
        raise AssertionError(f"bridge did not reach {target}; committed {self.bridge.committed}")

    def stop(self, timeout: float = 30) -> None:
        self.bridge.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "bridge did not stop in time"
        if self.error:
            raise self.error


def create_signal_table(conn, schema: str) -> str:
    """The re-snapshot signal table of docs/mappings.md in `schema`; returns its name for source.signal_table."""
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{schema}`.cdc_bridge_signal (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                    "bridge VARCHAR(100) NOT NULL, aggregate VARCHAR(100) NOT NULL, ids LONGTEXT NOT NULL, "
                    "rows_json LONGTEXT NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB")
    return f"{schema}.cdc_bridge_signal"


def request_resnapshot(config_path: Path, aggregate: str, ids: list) -> str:
    """`cdc-bridge snapshot --aggregate A --id X ...` as an operator runs it beside the bridge; its output."""
    args = [a for i in ids for a in ("--id", str(i))]
    cli = subprocess.run([sys.executable, "-m", "cdc_bridge.cli", "snapshot", "--config", str(config_path),
                          "--aggregate", aggregate, *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "CDC_BRIDGE__SOURCE__PASSWORD": mariadb.connection_settings()["password"]})
    assert cli.returncode == 0, cli.stdout + cli.stderr
    return cli.stdout


def start_bridge_process(config_path: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cdc_bridge.cli", "run", "--config", str(config_path)],
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                            start_new_session=True)


def read_topic(topic: str, timeout: float = 30, isolation: str = "read_committed") -> list[dict]:
    """Every record of a topic up to its current end, as dicts (value parsed as JSON when not null)."""
    c = Consumer({"bootstrap.servers": kafka.bootstrap_servers(), "group.id": f"check-{uuid.uuid4().hex}",
                  "isolation.level": isolation, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10)
        parts = list(md.topics[topic].partitions) if topic in md.topics else []
        ends = {}
        for p in parts:
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[dict] = []
        done = {p for p, e in ends.items() if e == 0}
        deadline = time.time() + timeout
        while len(done) < len(parts) and time.time() < deadline:
            for msg in c.consume(1000, 0.5):
                if msg.error():
                    continue
                out.append({"partition": msg.partition(), "offset": msg.offset(),
                            "key": msg.key().decode() if msg.key() else None,
                            "headers": {k: v.decode() for k, v in (msg.headers() or [])},
                            "value": json.loads(msg.value()) if msg.value() is not None else None})
            for p in parts:
                if p not in done:
                    pos = c.position([TopicPartition(topic, p)])[0].offset
                    if pos >= ends[p]:
                        done.add(p)
        assert len(done) == len(parts), f"could not read {topic} to its end in {timeout}s"
        return out
    finally:
        c.close()


def events_of(records: list[dict]) -> list[dict]:
    return [r["value"] for r in records if r["value"] is not None]


def check_unique_and_gapless(events: list[dict]) -> dict[str, int]:
    """Every event_id once; every aggregate's sequences exactly 1..n in topic order. Returns n per aggregate."""
    ids = [e["event_id"] for e in events]
    dupes = {i for i in ids if ids.count(i) > 1} if len(ids) != len(set(ids)) else set()
    assert not dupes, f"duplicate event ids: {sorted(dupes)[:10]}"
    seqs: dict[str, list[int]] = defaultdict(list)
    for e in events:
        seqs[e["aggregate_id"]].append(e["sequence"])
    for agg, s in seqs.items():
        assert s == list(range(1, len(s) + 1)), f"aggregate {agg}: sequences {s[:20]}... are not 1..n"
    return {a: len(s) for a, s in seqs.items()}


def fold_orders(events: list[dict]) -> dict[str, dict]:
    """Replays Order events (in per-aggregate sequence order) into {order_id: {fields, lines}}."""
    state: dict[str, dict | None] = {}
    for e in sorted(events, key=lambda e: (e["aggregate_id"], e["sequence"])):
        t, d, a = e["event_type"], e["data"], e["aggregate_id"]
        if t in ORDER_CREATED:
            state[a] = {"fields": {k: v for k, v in d.items() if not isinstance(v, list)},
                        "lines": {str(l["line_id"]): l for l in d.get("lines", [])}}
        elif t in ORDER_UPDATED:
            state[a]["fields"] = {k: v for k, v in d.items() if k != "changes" and not isinstance(v, list)}
        elif t == "OrderDeleted":
            state[a] = None
        elif t in ("OrderLineAdded", "OrderLineChanged"):
            state[a]["lines"][str(d["line_id"])] = {k: v for k, v in d.items() if k not in ("changes", "order")}
        elif t == "OrderLineRemoved":
            del state[a]["lines"][str(d["line_id"])]
        else:
            raise AssertionError(f"unexpected event type {t}")
    return {a: s for a, s in state.items() if s is not None}


def orders_in_db(conn, schema: str) -> dict[str, dict]:
    """What the bridge should have told consumers: visible orders and their lines, as event fields."""
    out: dict[str, dict] = {}
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, customer_id, status, total, currency FROM `{schema}`.orders WHERE deleted_at IS NULL")
        for oid, cust, status, total, cur_ in cur.fetchall():
            out[str(oid)] = {"fields": {"order_id": oid, "customer_id": cust, "status": status,
                                        "total": str(total), "currency": cur_}, "lines": {}}
        cur.execute(f"SELECT id, order_id, sku, quantity, unit_price FROM `{schema}`.order_lines")
        for lid, oid, sku, qty, price in cur.fetchall():
            if str(oid) in out:
                out[str(oid)]["lines"][str(lid)] = {"line_id": lid, "sku": sku, "quantity": qty,
                                                     "unit_price": str(price)}
    return out


def comparable(state: dict[str, dict]) -> dict[str, dict]:
    """Keeps the fields orders_in_db() knows, with decimals compared by value."""
    def norm(v: Any) -> Any:
        return Decimal(v) if isinstance(v, str) and v.replace(".", "", 1).lstrip("-").isdigit() else v

    keys = {"order_id", "customer_id", "status", "total", "currency"}
    line_keys = {"line_id", "sku", "quantity", "unit_price"}
    return {a: {"fields": {k: norm(v) for k, v in s["fields"].items() if k in keys},
                "lines": {l: {k: norm(v) for k, v in f.items() if k in line_keys} for l, f in s["lines"].items()}}
            for a, s in state.items()}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """predicate()'s first truthy value within timeout seconds, else AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def validate_events(events: list[dict], mappings_dir: Path, db_settings: dict | None = None) -> int:
    """Every event against its JSON Schema from `cdc-bridge schemas` (live column types when db_settings);
    returns how many were checked (issue 18). AssertionError naming the first event that does not match."""
    errors = schema_errors(events, mappings_dir, db_settings, first_only=True)
    assert not errors, errors[0]
    return len(events)


def schema_errors(events: list[dict], mappings_dir: Path, db_settings: dict | None = None,
                  first_only: bool = False) -> list[str]:
    """What validate_events checks, without raising: one line per event that does not match its schema (for a
    report, e.g. the bench's verify step)."""
    import jsonschema

    from cdc_bridge.contracts import schema_set_for
    from cdc_bridge.mapping.loader import load_mappings

    schemas = schema_set_for(load_mappings(mappings_dir), db_settings).events
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    validators: dict[tuple[str, str], Any] = {}
    out: list[str] = []
    for e in events:
        key = (e["aggregate"], e["event_type"])
        if key not in validators:
            agg = schemas.get(e["aggregate"], {})
            if e["event_type"] not in agg and "*" not in agg:
                out.append(f"{e['event_id']}: no schema for {key}: {sorted(agg)}")
                if first_only:
                    break
                continue
            validators[key] = jsonschema.Draft202012Validator(agg.get(e["event_type"]) or agg["*"],
                                                              format_checker=checker)
        errors = sorted(validators[key].iter_errors(e), key=lambda x: list(x.path))
        if errors:
            out.append(f"{e['event_id']} does not match its schema: {errors[0].message} at {list(errors[0].path)}")
            if first_only:
                break
    return out


def orders_in_state(state_dir: Path, partitions: int) -> dict[str, dict]:
    """The Order aggregates the bridge's LMDB holds (stopped bridge), shaped like orders_in_db()."""
    from cdc_bridge.state.lmdb_store import LmdbStateStore

    store = LmdbStateStore(state_dir, partitions=partitions, readonly=True)
    try:
        out: dict[str, dict] = {}
        for p in range(partitions):
            for rec in store.records(p):
                s = rec.state
                if rec.aggregate == "Order" and isinstance(s, dict) and s.get("exists"):
                    out[rec.aggregate_id] = {"fields": dict(s["root"]),
                                             "lines": {str(k): v for k, v in (s.get("children") or {}).get("lines", {}).items()}}
        return out
    finally:
        store.close()
