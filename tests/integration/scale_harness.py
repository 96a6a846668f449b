"""Shared by the scale-out tests: ingest and aggregate workers as processes, and knowing when they are done."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

from confluent_kafka import Consumer, TopicPartition

import bridge_harness as h
from cdc_bridge.sink.checkpoint import checkpoint_position, read_checkpoint
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.source.preflight import current_position
from devenv import kafka

ROOT = h.ROOT


class Cluster:
    """One bridge's processes: `cdc-bridge run`, or ingest + workers, each with its own log and state dir."""

    def __init__(self, tmp: Path, cfg: dict, config_path: Path) -> None:
        self.tmp, self.cfg, self.config_path = tmp, cfg, config_path
        self.name = cfg["name"]
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, who: str) -> Path:
        return self.tmp / f"{who}.log"

    def start(self, who: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.Popen([sys.executable, "-m", "cdc_bridge.cli", *args, "--config", str(self.config_path)],
                                stdout=open(self.log(who), "ab"), stderr=subprocess.STDOUT, cwd=ROOT, env=full_env,
                                start_new_session=True)
        self.procs[who] = proc
        return proc

    def run_embedded(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start("bridge", "run", env=env)

    def ingest(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start("ingest", "ingest", env=env)

    def worker(self, n: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start(f"w{n}", "worker", "--worker-id", f"w{n}",
                          env={"CDC_BRIDGE__STATE__DIR": str(self.tmp / f"state-w{n}"), **(env or {})})

    def signal(self, who: str, sig: int) -> None:
        """SIGTERM and SIGKILL wait for the process to end and forget it (SIGTERM must end it with 0)."""
        os.killpg(self.procs[who].pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc = self.procs.pop(who)
            rc = proc.wait(60)
            if sig == signal.SIGTERM:
                assert rc == 0, f"{who} exited {rc} on SIGTERM:\n{self.log(who).read_text(errors='replace')[-3000:]}"

    def alive(self, who: str) -> bool:
        return who in self.procs and self.procs[who].poll() is None

    def assert_alive(self) -> None:
        for who, p in self.procs.items():
            rc = p.poll()
            assert rc is None or who.startswith("done:"), \
                f"{who} exited with {rc}:\n{self.log(who).read_text(errors='replace')[-4000:]}"

    def stop_all(self) -> None:
        for who, p in list(self.procs.items()):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for who, p in list(self.procs.items()):
            try:
                rc = p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                raise AssertionError(f"{who} did not stop on SIGTERM:\n{self.log(who).read_text()[-3000:]}")
            assert rc in (0, -signal.SIGKILL, -signal.SIGTERM), f"{who} exited {rc}:\n{self.log(who).read_text()[-3000:]}"

    def log_count(self, who: str, text: str) -> int:
        path = self.log(who)
        return path.read_text(errors="replace").count(text) if path.exists() else 0

    # ------------------------------------------------------------------ progress
    def checkpoint_at(self, target) -> bool:
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers())
        ck = read_checkpoint(settings, f"{self.name}.checkpoints", self.name, timeout=10)
        return ck is not None and checkpoint_position(ck).order_key >= target.order_key

    def drained(self) -> bool:
        """Every record of the commands topic is committed by the workers' group."""
        topic = f"{self.name}.commands"
        last: dict[int, int] = {}
        for r in h.read_topic(topic, timeout=30):
            last[r["partition"]] = max(last.get(r["partition"], -1), r["offset"])
        c = Consumer({"bootstrap.servers": kafka.bootstrap_servers(), "group.id": f"{self.name}.workers",
                      "enable.auto.commit": False, "isolation.level": "read_committed"})
        try:
            committed = {tp.partition: tp.offset for tp in
                         c.committed([TopicPartition(topic, p) for p in last], timeout=30)}
        finally:
            c.close()
        return all(committed.get(p, -1) > off for p, off in last.items())

    def wait_caught_up(self, conn, *, workers: bool, timeout: float = 180) -> None:
        target = current_position(conn)

        def done() -> bool:
            self.assert_alive()
            return self.checkpoint_at(target) and (not workers or self.drained())

        h.wait_for(done, timeout, f"{self.name} to catch up with {target}", interval=0.5)


def scale_config(tmp: Path, schema: str, name: str, **overrides: Any) -> tuple[dict, Path, str]:
    """A bridge config with its own mappings (own events topic) in tmp/<name>: (cfg, config path, topic)."""
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    topic = h.write_orders_mapping(d / "mappings", schema)
    mapping = d / "mappings" / "orders.yaml"
    mapping.write_text(mapping.read_text().replace(topic, f"{topic}.{name}"))
    cfg = h.bridge_config(d, schema, **overrides)
    cfg["name"] = f"{name}-{uuid.uuid4().hex[:6]}"
    return cfg, h.write_config(d, cfg), f"{topic}.{name}"


def events_by_aggregate(events: list[dict], *, keep_source: bool = True) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for e in sorted(events, key=lambda e: (e["aggregate_id"], e["sequence"])):
        out[e["aggregate_id"]].append(e if keep_source else {k: v for k, v in e.items() if k != "source"})
    return dict(out)


def dead_letter_keys(records: list[dict]) -> Counter:
    keys: Counter = Counter()
    for r in records:
        v = r["value"] or {}
        rec = v.get("record") or {}
        keys[(v.get("reason"), v.get("aggregate"), v.get("aggregate_id"), rec.get("entity"), str(rec.get("entity_id")))] += 1
    return keys


def check_story(events: list[dict], conn, schema: str) -> tuple[int, int]:
    """Every event_id once, sequences 1..n, events folded = the database. Returns (events, aggregates)."""
    per_aggregate = h.check_unique_and_gapless(events)
    folded = h.comparable(h.fold_orders(events))
    expected = h.comparable(h.orders_in_db(conn, schema))
    missing = sorted(set(expected) - set(folded))[:10]
    extra = sorted(set(folded) - set(expected))[:10]
    assert not missing and not extra, f"orders missing from events: {missing}; not in db: {extra}"
    wrong = [a for a in expected if expected[a] != folded[a]]
    assert not wrong, f"{len(wrong)} aggregates differ, e.g. {wrong[0]}: db={expected[wrong[0]]} events={folded[wrong[0]]}"
    return len(events), len(per_aggregate)


def wait_log(cluster: Cluster, who: str, text: str, at_least: int = 1, timeout: float = 60) -> None:
    h.wait_for(lambda: cluster.assert_alive() or cluster.log_count(who, text) >= at_least, timeout,
               f"{who} to log {text!r}")


def sleep_alive(cluster: Cluster, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cluster.assert_alive()
        time.sleep(0.2)


class Workload:
    """The monolith writer on its own thread, at about `rate` steps a second; `pause()` holds it between steps."""

    def __init__(self, schema: str, seed: int, rate: float = 50.0) -> None:
        import random
        import threading

        from devenv import mariadb
        from devenv.monolith import MonolithWriter

        self.writer = MonolithWriter(mariadb.admin_connect(), schema, rng=random.Random(seed))
        self.interval = 1.0 / rate
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.steps = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                with self.lock:
                    self.writer.step()
                    self.steps += 1
                time.sleep(self.interval)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.error = e

    def big_transaction(self, n_orders: int) -> None:
        """One source transaction of about 2.5 rows per order, between two steps."""
        with self.lock:
            self.writer.big_transaction(n_orders)

    def pause(self):
        return self.lock

    def __enter__(self) -> "Workload":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(30)
        assert self.error is None, f"the writer failed: {self.error!r}"


READY = {"bridge": "binlog source starting", "ingest": "binlog source starting", "w1": "partition started",
         "w2": "partition started", "w3": "partition started"}
FAULTS = {"open": ("CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS", "fault injection: Kafka transaction open"),
          "lmdb": ("CDC_BRIDGE_FAULT_DELAY_LMDB_WRITE_MS", "fault injection: LMDB write held")}


def kill_rounds(cluster: Cluster, plan: list[str], rng: random.Random,
                restart: dict[str, Callable[..., Any]]) -> Counter:
    """SIGKILL the process each round of `plan` names, then restart it with restart[who](). A round is
    "<who>": killed a random 0.2-1.5 s after it works again (its READY line logged once more);
    "<who>+any": a random 0.1-2.5 s after its restart, often inside its recovery;
    "<who>+open": restarted with every Kafka transaction held open 1.5 s, killed inside one;
    "<who>+lmdb": restarted with every LMDB write held 1.5 s after its Kafka commit, killed inside one
    (LMDB is behind Kafka: the next start re-applies without publishing, or restores from the changelog).
    Returns how many kills of each kind were made."""
    kinds: Counter = Counter()
    for round_ in plan:
        who, _, how = round_.partition("+")
        if how in FAULTS:
            var, marker = FAULTS[how]
            cluster.signal(who, signal.SIGKILL)
            before = cluster.log_count(who, marker)
            restart[who](env={var: "1500"})
            h.wait_for(lambda: cluster.assert_alive() or cluster.log_count(who, marker) > before, 60,
                       f"{who} to log {marker!r}")
            time.sleep(rng.uniform(0.1, 1.0))
        elif how == "any":
            sleep_alive(cluster, rng.uniform(0.1, 2.5))
        else:
            sleep_alive(cluster, rng.uniform(0.2, 1.5))
        cluster.signal(who, signal.SIGKILL)
        kinds[how or "working"] += 1
        ready = cluster.log_count(who, READY[who])
        restart[who]()
        if how != "any":
            wait_log(cluster, who, READY[who], at_least=ready + 1)
    return kinds
