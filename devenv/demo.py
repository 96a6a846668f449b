"""`make demo`: the bridge doing its job against the throwaway MariaDB and Kafka.

1. starts the services, (re)creates the example schema `shop` (mappings/schema.sql) and
   removes what the previous demo left (its state, its topics)
2. starts `cdc-bridge run --config .run/demo/bridge.yaml` with mappings/ (log: .run/demo/bridge.log)
3. plays the monolith: orders (devenv/monolith.py: lines before their order, status changes,
   unmapped updates, deletes) and customers with addresses, once with a credit limit that is not
   a number (a dead letter)
4. prints the domain events and dead letters as a read_committed consumer receives them, with a
   status line (events, rate, lag), until Ctrl-C; then stops the bridge and the services
   (KEEP_SERVICES=1 leaves the services up)

Whatever stdout is (a terminal, a pipe that closes, a file), Ctrl-C stops everything.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

from devenv import RUN_DIR, kafka, mariadb
from devenv.monolith import MonolithWriter, create_schema

ROOT = Path(__file__).resolve().parents[1]
RUN = RUN_DIR / "demo"
NAME = "demo"                 # a fixed name: each run deletes the previous run's topics
HTTP_PORT = int(os.environ.get("CDC_DEMO_HTTP_PORT", "9108"))


class Out:
    """stdout that never raises: once the reader is gone (a closed pipe), output is dropped.
    On a terminal the status line is redrawn in place; elsewhere it is printed every 5 s."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.gone = False
        self.status_shown = False
        self.last_plain_status = 0.0

    def _write(self, text: str) -> None:
        if self.gone:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError:   # BrokenPipeError and friends: nobody reads any more
            self.gone = True
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())   # the interpreter's final flush must not fail either
            except OSError:
                pass

    def line(self, text: str) -> None:
        self._write(("\r\x1b[2K" if self.tty and self.status_shown else "") + text + "\n")
        self.status_shown = False

    def status(self, text: str) -> None:
        if self.tty:
            self._write("\r\x1b[2K" + text[: shutil.get_terminal_size().columns - 1])
            self.status_shown = True
        elif time.monotonic() - self.last_plain_status >= 5:
            self.last_plain_status = time.monotonic()
            self.line(text)

    def err(self, text: str) -> None:
        try:
            print(text, file=sys.stderr, flush=True)
        except OSError:
            pass


def write_config() -> Path:
    RUN.mkdir(parents=True, exist_ok=True)
    s = mariadb.connection_settings()
    cfg = {
        "name": NAME,
        # no password here: the bridge reads it from CDC_BRIDGE__SOURCE__PASSWORD
        "source": {"host": s["host"], "port": s["port"], "user": s["user"], "server_id": 9001},
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers(), "topic_partitions": 3},
        "mappings_dir": str(ROOT / "mappings"),
        "state": {"dir": str(RUN / "state"), "partitions": 4},
        "batch": {"max_wait_ms": 50},
        "http": {"host": "127.0.0.1", "port": HTTP_PORT},
        "start": "current",
    }
    path = RUN / "bridge.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def events_topics() -> list[str]:
    from cdc_bridge.mapping.loader import load_mappings

    return [a.events_topic for a in load_mappings(ROOT / "mappings").aggregates]


def delete_previous_topics(names: list[str]) -> None:
    """The previous demo's topics (its checkpoint would not match the fresh state)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers()})
    existing = [t for t in names if t in admin.list_topics(timeout=10).topics]
    if not existing:
        return
    for f in admin.delete_topics(existing, operation_timeout=30).values():
        try:
            f.result()
        except Exception:  # noqa: BLE001 - already gone
            pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(t in admin.list_topics(timeout=10).topics for t in existing):
        time.sleep(0.3)


def relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------- output

def _value(v) -> str:
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    return s if len(s) <= 28 else s[:27] + "…"


def event_line(ev: dict, width: int) -> str:
    """`12:00:01.234  OrderPlaced           Order:7:1      order_id=7 status=pending … +3 lines`: whole fields
    only, cut to the width; lists (children) are counted."""
    data = ev.get("data") or {}
    at = datetime.now().strftime("%H:%M:%S.%f")[:12]          # arrival time; the binlog has whole seconds
    head = f"{at}  {ev['event_type']:<22} {ev['event_id']:<18}"
    lists = "".join(f" +{len(v)} {k}" for k, v in data.items() if isinstance(v, list))
    fields = [f"{k}={_value(v)}" for k, v in data.items() if not isinstance(v, list)]
    budget = max(20, width - len(head) - len(lists) - 3)
    shown, used = [], 0
    for f in fields:
        if used + len(f) + 1 > budget:
            shown.append("…")
            break
        shown.append(f)
        used += len(f) + 1
    return f"{head} {' '.join(shown)}{lists}"


def dead_letter_line(value: bytes) -> str:
    try:
        d = json.loads(value)
    except ValueError:
        return f"DEAD LETTER  {value[:120]!r}"
    where = d.get("table") or d.get("aggregate") or "?"
    return f"DEAD LETTER  reason={d.get('reason')} {where} id={d.get('aggregate_id')}: {str(d.get('detail'))[:120]}"


def _ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def source_lag() -> float | None:
    """cdc_bridge_source_lag_seconds from the bridge's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return None
    for fam in text_string_to_metric_families(text):
        if fam.name == "cdc_bridge_source_lag_seconds":
            return fam.samples[0].value if fam.samples else None
    return None


# ---------------------------------------------------------------------------------------- workload

class CustomerDesk:
    """The second example mapping (mappings/customers.yaml): customers of tenant 1 with addresses."""

    def __init__(self, conn, rng: random.Random) -> None:
        self.conn, self.rng = conn, rng
        self.n = 0
        self.active: list[str] = []

    def _run(self, *statements: tuple[str, tuple]) -> None:
        with self.conn.cursor() as cur:
            cur.execute("BEGIN")
            for sql, args in statements:
                cur.execute(sql, args)
            cur.execute("COMMIT")

    def register(self, credit_limit: str = "1500.00") -> None:
        self.n += 1
        no = f"C-{1000 + self.n}"
        self._run(
            ("INSERT INTO shop.customers (tenant_id, customer_no, name, email, is_active, credit_limit, signup_ts,"
             " preferences) VALUES (1, %s, %s, %s, 'Y', %s, UNIX_TIMESTAMP(), %s)",
             (no, f"Customer {self.n}", f"c{self.n}@example.com", credit_limit, '{"newsletter": true}')),
            ("INSERT INTO shop.customer_addresses (tenant_id, customer_no, kind, street, city, zip, country)"
             " VALUES (1, %s, 'billing', %s, 'Lyon', '69001', 'FR')", (no, f"{self.n} rue Centrale")))
        self.active.append(no)

    def deactivate(self) -> None:
        if self.active:
            no = self.active.pop(self.rng.randrange(len(self.active)))
            self._run(("UPDATE shop.customers SET is_active='N' WHERE tenant_id=1 AND customer_no=%s", (no,)))


def play(stop: threading.Event, out: Out) -> None:
    rng = random.Random()
    with mariadb.admin_connect() as conn:
        orders = MonolithWriter(conn, "shop", rng=rng)
        desk = CustomerDesk(conn, rng)
        try:
            orders.place_order(3)        # an order and its lines in one transaction: one OrderPlaced
            desk.register()              # the second aggregate: CustomerRegistered with its address
            orders.lines_before_order()  # lines first ...
            time.sleep(1)
            orders.late_order()          # ... their order later: OrderPlaced carries them
            desk.register(credit_limit="n/a")   # not a decimal: a dead letter with its reason
            step = 0
            while not stop.wait(0.7):
                step += 1
                if step % 5 == 0:
                    desk.register()
                elif step % 11 == 0:
                    desk.deactivate()
                else:
                    orders.step()
        except Exception as e:  # noqa: BLE001 - the database went away (Ctrl-C stops it): end quietly
            if not stop.is_set():
                out.err(f"the monolith writer stopped: {e}")


# ---------------------------------------------------------------------------------------- main

def main() -> int:
    # The services are stopped at the end whatever ends the demo: Ctrl-C (it reaches make, this
    # process and whatever reads our output at once), SIGTERM, or a reader that went away.
    from devenv.__main__ import down, up

    out = Out()
    try:
        up(["mariadb", "kafka"])
        return run_demo(out)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not os.environ.get("KEEP_SERVICES"):
            down(["mariadb", "kafka"])


def run_demo(out: Out) -> int:
    from confluent_kafka import Consumer, TopicPartition

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: stop.set())

    with mariadb.admin_connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS shop")
        create_schema(conn, "shop")
    shutil.rmtree(RUN / "state", ignore_errors=True)
    topics = events_topics()
    dead_letters = f"{NAME}.dead-letter"
    delete_previous_topics([*topics, dead_letters, f"{NAME}.checkpoints", f"{NAME}.commands"])
    cfg = write_config()
    password = mariadb.connection_settings()["password"]
    env = {**os.environ, "CDC_BRIDGE__SOURCE__PASSWORD": password}
    log_path = RUN / "bridge.log"
    # its own session: the demo stops it (SIGTERM), a terminal's Ctrl-C does not race with that
    bridge = subprocess.Popen([sys.executable, "-m", "cdc_bridge.cli", "run", "--config", str(cfg)],
                              stdin=subprocess.DEVNULL, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                              env=env, cwd=ROOT, start_new_session=True)
    cli = relative(ROOT / ".venv" / "bin" / "cdc-bridge")
    out.line(f"bridge `{NAME}` started (pid {bridge.pid})\n"
             f"  config:  {relative(cfg)}  (database password: the environment variable CDC_BRIDGE__SOURCE__PASSWORD)\n"
             f"  log:     {relative(log_path)}\n"
             f"  metrics: http://127.0.0.1:{HTTP_PORT}/metrics   health: /healthz /readyz\n"
             f"  try in another terminal:\n"
             f"    CDC_BRIDGE__SOURCE__PASSWORD={password} {cli} check --config {relative(cfg)}\n"
             f"    CDC_BRIDGE__SOURCE__PASSWORD={password} {cli} inspect --config {relative(cfg)} "
             f"--aggregate Order --id 1")
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers(), "group.id": f"{NAME}-viewer",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        names = [*topics, dead_letters]
        deadline = time.time() + 90
        while not stop.is_set() and time.time() < deadline and bridge.poll() is None:
            # ready: topics created, snapshot (of the empty schema) done, streaming from now
            if _ready() and all(t in consumer.list_topics(timeout=5).topics for t in names):
                break
            time.sleep(0.5)
        if bridge.poll() is not None:
            out.err(f"the bridge exited with {bridge.returncode}; the end of {relative(log_path)}:\n"
                    + log_path.read_text(errors="replace")[-3000:])
            return 1
        if stop.is_set():
            return 0
        consumer.assign([TopicPartition(t, p, 0) for t in names
                         for p in consumer.list_topics(t, timeout=10).topics[t].partitions])
        threading.Thread(target=play, args=(stop, out), daemon=True).start()
        out.line("playing the monolith (orders and customers); events as a read_committed consumer gets them "
                 "(Ctrl-C stops the demo):")
        return _show(consumer, bridge, stop, out, dead_letters, log_path)
    finally:
        stop.set()
        consumer.close()
        rc = _stop_bridge(bridge)
        out.line(f"bridge stopped (exit {rc})")


def _show(consumer, bridge, stop: threading.Event, out: Out, dead_letters: str, log_path: Path) -> int:
    events = dlq = 0
    recent: list[float] = []
    lag: float | None = None
    next_status = 0.0
    while not stop.is_set() and not out.gone:   # a reader that went away ends the demo like Ctrl-C
        msg = consumer.poll(0.25)
        now = time.monotonic()
        if msg is not None and not msg.error() and msg.value() is not None:
            if msg.topic() == dead_letters:
                dlq += 1
                out.line(dead_letter_line(msg.value()))
            else:
                events += 1
                recent.append(now)
                width = shutil.get_terminal_size((160, 24)).columns if out.tty else 160
                out.line(event_line(json.loads(msg.value()), width))
        elif bridge.poll() is not None:
            out.err(f"the bridge exited with {bridge.returncode}; see {relative(log_path)}")
            return 1
        if now >= next_status:
            next_status = now + 0.5
            recent = [t for t in recent if now - t <= 10]
            lag = source_lag()
            out.status(f"[{events} events, {len(recent) / 10:.1f}/s over 10 s, {dlq} dead letters, "
                       f"source lag {'?' if lag is None else f'{lag:.1f} s'}]  Ctrl-C to stop")
    return 0


def _stop_bridge(bridge: subprocess.Popen) -> int:
    if bridge.poll() is None:
        bridge.send_signal(signal.SIGTERM)   # it commits its open batch and exits 0
    try:
        return bridge.wait(30)
    except subprocess.TimeoutExpired:
        bridge.kill()
        return bridge.wait()


if __name__ == "__main__":
    sys.exit(main())
