"""`make demo`: the bridge doing its job against the throwaway MariaDB and Kafka.

1. (re)creates the example schema `shop` (mappings/schema.sql)
2. starts `cdc-bridge run` with mappings/ as a subprocess (its log: .run/demo/bridge.log)
3. plays the monolith (devenv/monolith.py): orders, lines before their order, status
   changes, unmapped updates, deletes
4. prints the domain events as a read_committed consumer receives them, until Ctrl-C
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import yaml
from confluent_kafka import Consumer, TopicPartition

from devenv import kafka, mariadb
from devenv.monolith import MonolithWriter, create_schema

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run" / "demo"


def write_config(name: str, http_port: int = 9108) -> Path:
    RUN.mkdir(parents=True, exist_ok=True)
    s = mariadb.connection_settings()
    cfg = {
        "name": name,
        "source": {"host": s["host"], "port": s["port"], "user": s["user"], "server_id": 9001},
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers(), "topic_partitions": 3},
        "mappings_dir": str(ROOT / "mappings"),
        "state": {"dir": str(RUN / "state"), "partitions": 4},
        "batch": {"max_wait_ms": 50},
        "http": {"host": "127.0.0.1", "port": http_port},
        "start": "current",
    }
    path = RUN / "bridge.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def topics() -> list[str]:
    from cdc_bridge.mapping.loader import load_mappings

    return [a.events_topic for a in load_mappings(ROOT / "mappings").aggregates]


def end_offsets(consumer: Consumer, names: list[str]) -> list[TopicPartition]:
    out = []
    md = consumer.list_topics(timeout=10)
    for t in names:
        if t not in md.topics:
            continue
        for p in md.topics[t].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            out.append(TopicPartition(t, p, high))
    return out


def show(msg) -> None:
    ev = json.loads(msg.value())
    data = ev.get("data", {})
    short = {k: v for k, v in data.items() if not isinstance(v, list)}
    extra = "".join(f" +{len(v)} {k}" for k, v in data.items() if isinstance(v, list))
    print(f"{ev['occurred_at'][11:23]}  {ev['event_type']:<20} {ev['event_id']:<16} "
          f"{json.dumps(short, ensure_ascii=False)[:110]}{extra}", flush=True)


def main() -> int:
    # Services are started here and stopped at the end, whatever ends the demo (Ctrl-C reaches
    # make, this process and the bridge at once; make may not get to run a cleanup step).
    from devenv.__main__ import down, up

    up(["mariadb", "kafka"])
    try:
        return run_demo()
    finally:
        if not os.environ.get("KEEP_SERVICES"):
            down(["mariadb", "kafka"])


def run_demo() -> int:
    name = f"demo-{uuid.uuid4().hex[:6]}"
    with mariadb.admin_connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS shop")
        create_schema(conn, "shop")
    shutil.rmtree(RUN / "state", ignore_errors=True)
    cfg = write_config(name)
    env = {**os.environ, "CDC_BRIDGE__SOURCE__PASSWORD": mariadb.connection_settings()["password"]}
    log = open(RUN / "bridge.log", "w")
    bridge = subprocess.Popen([sys.executable, "-m", "cdc_bridge.cli", "run", "--config", str(cfg)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    print(f"bridge {name} started (pid {bridge.pid}); log: {RUN / 'bridge.log'}; metrics: http://127.0.0.1:9108/metrics")

    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers(), "group.id": name,
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    names = topics() + [f"{name}.dead-letter"]
    # wait for the bridge to create its topics, then start reading at their current end
    deadline = time.time() + 60
    while time.time() < deadline and bridge.poll() is None:
        if all(t in consumer.list_topics(timeout=5).topics for t in names):
            break
        time.sleep(0.5)
    if bridge.poll() is not None:
        print(f"the bridge exited with {bridge.returncode}; see {RUN / 'bridge.log'}:", file=sys.stderr)
        print((RUN / "bridge.log").read_text()[-3000:], file=sys.stderr)
        return 1
    consumer.assign(end_offsets(consumer, names))

    stop = threading.Event()

    def play() -> None:
        with mariadb.admin_connect() as conn:
            w = MonolithWriter(conn, "shop")
            w.place_order(3)        # an order and its lines in one transaction: one OrderPlaced
            w.lines_before_order()  # lines first ...
            time.sleep(1)
            w.late_order()          # ... their order later: OrderPlaced carries them
            while not stop.wait(0.7):
                w.step()

    threading.Thread(target=play, daemon=True).start()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("playing the monolith; domain events as they arrive (Ctrl-C to stop):", flush=True)
    try:
        while not stop.is_set():
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if bridge.poll() is not None:
                    print(f"the bridge exited with {bridge.returncode}; see {RUN / 'bridge.log'}", file=sys.stderr)
                    return 1
                continue
            if msg.topic().endswith(".dead-letter"):
                print(f"DEAD LETTER  {msg.value().decode()[:150]}", flush=True)
            else:
                show(msg)
    finally:
        stop.set()
        consumer.close()
        try:  # a terminal's Ctrl-C has reached the bridge too: give it time to commit and exit
            rc = bridge.wait(5)
        except subprocess.TimeoutExpired:
            bridge.send_signal(signal.SIGTERM)
            try:
                rc = bridge.wait(30)
            except subprocess.TimeoutExpired:
                bridge.kill()
                rc = bridge.wait()
        print(f"bridge stopped (exit {rc})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
