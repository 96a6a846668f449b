"""cdc-bridge benchmark (issue 9): source, end to end, latency, memory and state size in one run.

    .venv/bin/python -m devenv up
    .venv/bin/python bench/run.py [--rows 500000] [--json PATH] [--quick] [--profile] [--baseline REF]

1. A fresh database `bench_orders` (mappings/schema.sql) gets >= --rows row changes from
   BatchedMonolith (bench/common.py): devenv/monolith.py's actions and SQL shapes (orders with
   lines, lines before their order, status transitions, unmapped updates, line changes and
   deletes, hard and soft order deletes), each on --batch orders/lines per transaction.
2. Over that binlog range, in this run:
   (a) plain:  a python-mysql-replication loop that only iterates the rows           (rows/s)
   (b) source: BinlogSource, fully normalized row changes                           (rows/s)
   (c) bridge: a whole Bridge (orders mapping, exactly-once Kafka transactions, LMDB
       state), in a child process, started at the range's start (fresh_start); rows/s from
       the moment it streams (recovery done; it still has to connect to the binlog, as (a)
       and (b) do) until Bridge.on_batch_committed reports a committed batch whose position
       is the range's end. Then the events topic is read back read_committed and checked:
       every event id once, sequences 1..n per aggregate, and the folded events equal the
       database's orders and lines (exactly once, and correct).
   (e) peak RSS of that child and its binlog reader process (source.reader: process), summed:
       each process's VmHWM added up; RssAnon (= the Python heaps) summed over both every
       100 ms, and the peak of that sum; the rest is mostly LMDB's file mapping, reclaimable
       page cache, plus the interpreter's shared pages counted once per process.
3. (d) latency: the bridge of (c) is restarted (recovers from its checkpoint) and the writer
   paces itself at --latency-rate rows/s (--latency-batch orders/lines per transaction): 2 s of
   warm-up, then --latency-seconds measured. Per source transaction:
     commit latency  = Bridge.on_batch_committed wall time (right after the Kafka commit of
                       the batch holding it; LMDB follows on the main loop) - writer's wall time right after
                       its COMMIT returned (matched by GTID: the writer reads @@last_gtid)
     visible latency = arrival at a read_committed consumer of the transaction's last event
                       (matched by the envelope's source.gtid) - the same writer time
   p50/p99/max of each, and the commit latency without the last 1.5 s (the "drain": the last
   transactions of a burst wait for the source's next idle tick, up to source.heartbeat_seconds).
   (The bridge's cdc_bridge_end_to_end_latency_seconds histogram is measured from the binlog's
   1-second commit timestamps: useless below a second.) --latency-tuning repeats (d) with
   config-only mitigations (LATENCY_TUNINGS).
4. (f) LMDB size: bytes per aggregate record after (c), extrapolated to 1e6; and a dedicated
   child writing --state-aggregates small orders (1 order + 2 lines each) through
   AggregateRuntime + LmdbStateStore directly, reporting bytes/aggregate and RSS as it grows.

--baseline REF: also run (c), (d), (f) with cdc_bridge/ as of git REF (the whole package; the
  benchmark's own code stays as it is now): before/after side by side, same binlog.
--profile: also run (c) under cProfile (for each code variant) and print the top 15 functions.
Results: bench/results/run.json (or --json PATH), profiles and child logs next to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
import yaml  # noqa: E402

from bench.common import (RESULTS, BatchedMonolith, connect, drop_database, fresh_orders_database,  # noqa: E402
                          machine_cpu_seconds, mib, run_plain, run_source, thread_cpu)
from cdc_bridge.config import BatchSettings, BridgeConfig, HeldSettings, StateSettings  # noqa: E402
from cdc_bridge.source import SourcePosition, SourceSettings  # noqa: E402
from cdc_bridge.source.preflight import current_position  # noqa: E402
from tests.integration.bridge_harness import (bridge_config, check_unique_and_gapless, comparable,  # noqa: E402
                                              events_of, fold_orders, orders_in_db, read_topic,
                                              write_orders_mapping)

# The modules a performance change may touch (issue 9); --baseline swaps exactly these.

CHILD = Path(__file__).resolve().parent / "child.py"


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- bridge child


class BridgeChild:
    """A bridge in a child process (bench/child.py bridge), driven over stdin/stdout."""

    def __init__(self, variant: "Variant", work: Path, tag: str, *, start: SourcePosition | None,
                 record_txns: bool = False, profile: Path | None = None, diagnostics: bool = False) -> None:
        self.dir = work / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        spec = {"config": variant.config, "start": start.to_dict() if start else None, "gc": variant.gc,
                "record_txns": record_txns, "profile": str(profile) if profile else None, "diagnostics": diagnostics,
                "code": str(variant.code) if variant.code else None}
        spec_path = self.dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        self.result_path = self.dir / "result.json"
        self.log_path = variant.log_dir / f"{tag}.log"
        self.proc = subprocess.Popen([sys.executable, str(CHILD), "bridge", str(spec_path), str(self.result_path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     # not cwd=ROOT: a reader process started with `python -m` would import
                                     # cdc_bridge from the working directory, not from the variant's tree
                                     stderr=open(self.log_path, "w"), text=True, cwd=self.dir)

    def _line(self, timeout: float) -> str:
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not result or not result[0]:
            self._dump_stacks()
            raise RuntimeError(f"bridge child said nothing in {timeout}s (exit {self.proc.poll()}); see {self.log_path}")
        return result[0].strip()

    def _dump_stacks(self) -> None:
        """A stalled child: every thread's stack of it and of its reader process, into its log (py-spy)."""
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists() or self.proc.poll() is not None:
            return
        pids = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            pass
        with open(self.log_path, "a") as log_file:
            for pid in pids:
                log_file.write(f"\n==== py-spy dump --pid {pid} (stalled)\n")
                log_file.flush()
                subprocess.run([str(spy), "dump", "--pid", str(pid)], stdout=log_file, stderr=subprocess.STDOUT,
                               timeout=60, check=False)

    def ready(self, timeout: float = 120) -> float:
        line = self._line(timeout)
        if not line.startswith("ready "):
            self.proc.wait(30)
            error = json.loads(self.result_path.read_text()).get("error") if self.result_path.exists() else None
            raise RuntimeError(f"bridge child failed to start ({error or line!r}); see {self.log_path}")
        return float(line.split()[1])

    def until(self, pos: SourcePosition, timeout: float = 900) -> float:
        self.proc.stdin.write(f"until {json.dumps(pos.to_dict())}\n")
        self.proc.stdin.flush()
        line = self._line(timeout)
        if not line.startswith("reached ") or line.split()[1] == "None":
            raise RuntimeError(f"bridge child did not reach {pos} ({line!r}); see {self.log_path}")
        return float(line.split()[1])

    def stop(self, timeout: float = 120) -> dict[str, Any]:
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout)
        if not self.result_path.exists():
            raise RuntimeError(f"bridge child wrote no result (exit {self.proc.returncode}); see {self.log_path}")
        result = json.loads(self.result_path.read_text())
        if result.get("error"):
            raise RuntimeError(f"bridge child failed: {result['error']}; see {self.log_path}")
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Variant:
    """One code variant (current tree, or the baseline) with its own bridge name, topics and state."""

    def __init__(self, label: str, code: Path | None, work: Path, db: str, log_dir: Path, run_id: str,
                 gc: list[int] | None = None) -> None:
        self.label = label
        self.code = code
        self.gc = gc   # experiment: gc.set_threshold(*gc) in the bridge process instead of tuning.tune()
        self.db = db
        self.log_dir = log_dir
        self.work = work / label
        self.names: list[str] = []
        self.config = self.new_config(f"bench-{label.replace('+', '-')}-{run_id}")

    def new_config(self, name: str, subdir: str | None = None) -> dict[str, Any]:
        """A bridge config with production defaults (batching, partitions, held bounds)."""
        base = self.work / (subdir or "main")
        topic = write_orders_mapping(base / "mappings", self.db)
        path = base / "mappings" / "orders.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["topic"] = f"{name}.order.events"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        del topic
        cfg = bridge_config(base, self.db, name=name, batch=BatchSettings().model_dump(),
                            held=HeldSettings().model_dump(),
                            state={"dir": str(base / "state"), "partitions": StateSettings().partitions},
                            kafka={"topic_partitions": 6},
                            source={"server_id": random.randint(400_000, 900_000)})
        if "snapshot" in BridgeConfig.model_fields:
            cfg["snapshot"] = {"mode": "never"}  # stream the binlog range from fresh_start; no initial snapshot
        self.names.append(name)
        return cfg

    @property
    def events_topic(self) -> str:
        return f"{self.config['name']}.order.events"


# --------------------------------------------------------------------------- measurements


PY_SPY = Path(sys.executable).parent / "py-spy"


def throughput(variant: Variant, work: Path, start: SourcePosition, end: SourcePosition, tag: str,
               profile: Path | None = None, sample_to: Path | None = None) -> dict[str, Any]:
    """(c): profile = cProfile output path; sample_to = py-spy raw (collapsed stacks) output path."""
    child = BridgeChild(variant, work, tag, start=start, profile=profile)
    spy = None
    cpu = CpuSampler()
    try:
        t_stream = child.ready()
        cpu.start()
        threads0, machine0 = thread_cpu(child.proc.pid), machine_cpu_seconds()
        if sample_to is not None:
            spy = subprocess.Popen([str(PY_SPY), "record", "--pid", str(child.proc.pid), "--rate", "250",
                                    "--format", "raw", "--nonblocking", *os.environ.get("SPY_ARGS", "--idle").split(), "-o", str(sample_to)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_end = child.until(end)
        threads1, machine1 = thread_cpu(child.proc.pid), machine_cpu_seconds()
        cpu.stop()
        result = child.stop()
    finally:
        child.kill()
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
    batches = result["batches"]
    rows = sum(b[2] for b in batches)
    seconds = t_end - t_stream
    mem = result["memory"]
    cpu_us = cpu_per_row(threads0, threads1, machine1 - machine0, result.get("threads") or {}, child.proc.pid, rows)
    return {
        "cpu_us_per_row": cpu_us,
        "rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds),
        "transactions": sum(b[1] for b in batches), "events": sum(b[3] for b in batches),
        "dead_letters": sum(b[4] for b in batches), "kafka_transactions": len(batches),
        "peak_rss_bytes": mem["vm_hwm_bytes"], "peak_rss_anon_bytes": mem["peak_rss_anon_bytes"],
        "peak_rss_scope": mem.get("scope"), "rss_processes": mem.get("processes"),
        "rss_before_bridge_bytes": result["rss_before_bridge_bytes"],
        "rss_at_streaming_bytes": result["rss_at_streaming_bytes"],
        "rss_series": mem["series"], "lmdb": result["lmdb"], "code": result["code"],
        "machine": {"iowait_pct_max": max((x["iowait"] for x in cpu.series), default=0),
                    "steal_pct_max": max((x["steal"] for x in cpu.series), default=0),
                    "idle_pct_mean": round(statistics.fmean([x["idle"] for x in cpu.series]), 1) if cpu.series else None},
    }


def cpu_per_row(before: dict, after: dict, machine_s: float, names: dict[str, str], bridge_pid: int,
                rows: int) -> dict[str, float]:
    """CPU µs per row during (c), by thread: the bridge's Python threads by name, librdkafka's
    (rdk:*), the reader process, and the rest of the machine (broker, MariaDB, the bench itself)."""
    out: dict[str, float] = {}
    for key, (comm, secs) in after.items():
        pid, tid = key.split("/")
        spent = secs - before.get(key, (comm, 0.0))[1]
        if int(pid) != bridge_pid:
            label = "reader process"
        elif comm.startswith("rdk:"):
            label = "librdkafka threads"
        else:
            label = names.get(tid, "other bridge threads")
            label = "main" if label == "MainThread" else label
        out[label] = out.get(label, 0.0) + spent
    bridge_total = sum(out.values())
    out["rest of the machine"] = max(0.0, machine_s - bridge_total)
    out["machine total"] = machine_s
    return {k: round(v * 1e6 / rows, 1) for k, v in out.items() if v * 1e6 / rows >= 0.05 or k == "machine total"}


def verify(variant: Variant, conn_settings: dict, expected_events: int) -> dict[str, Any]:
    """Read the events topic back (read_committed) and check exactly once and correctness."""
    t0 = time.perf_counter()
    records = read_topic(variant.events_topic, timeout=300)
    events = events_of(records)
    per_agg = check_unique_and_gapless(events)
    with connect(conn_settings) as conn:
        want = comparable(orders_in_db(conn, variant.db))
    got = comparable(fold_orders(events))
    same = got == want
    if not same:
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        differ = [a for a in sorted(set(got) & set(want)) if got[a] != want[a]][:5]
        say(f"  VERIFY FAILED: missing {missing} extra {extra} differ {differ}")
    seconds = time.perf_counter() - t0
    # issue 18: every event matches the JSON Schema `cdc-bridge schemas` derives (live column types); a
    # mismatch is reported (the first few), not raised: the rest of the report still comes out
    from tests.integration.bridge_harness import schema_errors

    t1 = time.perf_counter()
    errors = schema_errors(events, Path(variant.config["mappings_dir"]), {**conn_settings})
    for line in errors[:5]:
        say(f"  SCHEMA MISMATCH: {line}")
    if len(errors) > 5:
        say(f"  ... and {len(errors) - 5} more events that do not match their schema")
    return {"events_read": len(events), "events_expected": expected_events, "aggregates": len(per_agg),
            "unique_and_gapless": True, "matches_database": same, "match_their_schemas": not errors,
            "schema_mismatches": len(errors), "ok": same and not errors and len(events) == expected_events,
            "seconds": round(seconds, 1), "schema_seconds": round(time.perf_counter() - t1, 1)}


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    v = sorted(values)

    def pct(p: float) -> float:
        return v[min(len(v) - 1, max(0, round(p / 100 * len(v) + 0.5) - 1))]

    return {"count": len(v), "p50_ms": round(pct(50) * 1000, 1), "p90_ms": round(pct(90) * 1000, 1),
            "p99_ms": round(pct(99) * 1000, 1), "max_ms": round(v[-1] * 1000, 1),
            "mean_ms": round(statistics.fmean(v) * 1000, 1)}


class CpuSampler(threading.Thread):
    """Machine-wide CPU use per second from /proc/stat: user+system, iowait, steal (other VMs), idle (%)."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="cpu")
        self.series: list[dict[str, float]] = []
        self._stop_ev = threading.Event()

    @staticmethod
    def _read() -> list[int]:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]

    def run(self) -> None:
        prev = self._read()
        while not self._stop_ev.wait(1.0):
            cur = self._read()
            d = [c - p for c, p in zip(cur, prev)]
            prev = cur
            total = sum(d[:8]) or 1
            user, nice, system, idle, iowait, irq, softirq, steal = d[:8]
            self.series.append({"busy": round(100 * (user + nice + system + irq + softirq) / total, 1),
                                "iowait": round(100 * iowait / total, 1), "steal": round(100 * steal / total, 1),
                                "idle": round(100 * idle / total, 1)})

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(5)


class EventArrivals(threading.Thread):
    """A read_committed consumer from the topic's current end: arrival wall time per source GTID."""

    def __init__(self, topic: str) -> None:
        super().__init__(daemon=True, name="arrivals")
        from confluent_kafka import Consumer, TopicPartition

        from devenv import kafka

        self.c = Consumer({"bootstrap.servers": kafka.bootstrap_servers(), "group.id": f"bench-{uuid.uuid4().hex}",
                           "isolation.level": "read_committed", "enable.auto.commit": False,
                           "fetch.wait.max.ms": 10, "fetch.min.bytes": 1})
        md = self.c.list_topics(topic, timeout=10)
        parts = []
        for p in md.topics[topic].partitions:
            _, high = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, high))
        self.c.assign(parts)
        self.last: dict[str, float] = {}
        self.events = 0
        self._stop_ev = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_ev.is_set():
                for msg in self.c.consume(10_000, 0.05):
                    now = time.time()
                    if msg.error() or msg.value() is None:
                        continue
                    gtid = json.loads(msg.value())["source"]["gtid"]
                    self.events += 1
                    self.last[gtid] = now
        finally:
            self.c.close()

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(10)


def latency(variant: Variant, work: Path, writer: BatchedMonolith, conn, rate: float, seconds: float,
            tag: str, tuning: dict[str, dict[str, Any]] | None = None, warmup: float = 2.0) -> dict[str, Any]:
    """The bridge of (c) resumes (checkpoint recovery), catches up, then the writer paces itself.

    tuning: config sections to override for this run, e.g. {"batch": {"max_wait_ms": 25}}."""
    if tuning:
        saved = variant.config
        variant.config = {**saved, **{k: {**saved.get(k, {}), **v} for k, v in tuning.items()}}
        try:
            return latency(variant, work, writer, conn, rate, seconds, tag, warmup=warmup)
        finally:
            variant.config = saved
    child = BridgeChild(variant, work, tag, start=None, record_txns=True, diagnostics=True)
    cpu = CpuSampler()
    try:
        child.ready()
        child.until(current_position(conn))          # caught up with anything written before
        arrivals = EventArrivals(variant.events_topic)
        arrivals.start()
        writer.paced(rate, warmup)                   # unmeasured: the bridge, the consumer and caches warm up
        writer.txns.clear()
        writer.record_txns = True
        t0 = time.perf_counter()
        t0_wall = time.time()
        cpu.start()
        rows = writer.paced(rate, seconds)
        wrote_s = time.perf_counter() - t0
        writer.record_txns = False
        child.until(current_position(conn), timeout=300)
        time.sleep(1.0)                              # let the consumer see the last transaction
        arrivals.stop()
        cpu.stop()
        result = child.stop()
    finally:
        child.kill()
    commits = dict(result["txn_commits"])
    rel = lambda w: round(w - t0_wall, 3)  # noqa: E731
    diag = {"cpu_per_second": cpu.series,
            "kafka": [(rel(w), p, c, tot) for w, p, c, tot in result["publish_diag"] if w >= t0_wall],
            "lmdb_commit": [(rel(w), sec) for w, sec in result["lmdb_commits"] if w >= t0_wall],
            "gc_pauses": [(rel(w), gen, sec) for w, gen, sec in result.get("gc_pauses") or [] if w >= t0_wall]}
    commit_lat, visible_lat, series = [], [], []
    t_first = writer.txns[0].committed_at if writer.txns else 0.0
    for t in writer.txns:
        c = commits.get(t.gtid)
        if c is not None:
            commit_lat.append(c - t.committed_at)
        if t.gtid in arrivals.last:
            visible_lat.append(arrivals.last[t.gtid] - t.committed_at)
        series.append((round(t.committed_at - t_first, 3), t.rows, round(c - t.committed_at, 4) if c else None))
    # the last transactions of the run wait for the next flush trigger (see "drain" in the README text)
    steady = [lat for (at, _, lat) in series if lat is not None and at < wrote_s - 1.5]
    batches = result["batches"]
    return {
        "rate_target_rows_per_s": rate, "warmup_seconds": warmup, "seconds": round(wrote_s, 1), "rows_written": rows,
        "rate_achieved_rows_per_s": round(rows / wrote_s), "transactions_written": len(writer.txns),
        "commit": percentiles(commit_lat), "visible": percentiles(visible_lat),
        "commit_without_last_1_5s": percentiles(steady), "series": series, "diagnostics": diag,
        "kafka_commit_ms": percentiles([c for _, _, c, _ in diag["kafka"]]),
        "lmdb_commit_ms": percentiles([sec for _, sec in diag["lmdb_commit"]]),
        "gc_pauses_over_2ms": len(diag["gc_pauses"]),
        "gc_pause_max_ms": round(max((sec for _, _, sec in diag["gc_pauses"]), default=0.0) * 1000, 1),
        "cpu_steal_pct_max": max((x["steal"] for x in cpu.series), default=0),
        "cpu_iowait_pct_max": max((x["iowait"] for x in cpu.series), default=0),
        "events_seen": arrivals.events, "kafka_transactions": len(batches),
        "peak_rss_bytes": result["memory"]["vm_hwm_bytes"],
        "peak_rss_anon_bytes": result["memory"]["peak_rss_anon_bytes"],
    }


LATENCY_TUNINGS = [  # config-only mitigations for the flush-timer gap (see the README text)
    ("heartbeat=0.1s", {"source": {"heartbeat_seconds": 0.1}}),
    ("heartbeat=0.1s,max_wait=25ms", {"source": {"heartbeat_seconds": 0.1}, "batch": {"max_wait_ms": 25}}),
]


def print_latency(label: str, r: dict[str, Any]) -> None:
    c, vis, st = r["commit"], r["visible"], r["commit_without_last_1_5s"]
    say(f"(d) latency [{label}] at {r['rate_achieved_rows_per_s']:,} rows/s for {r['seconds']}s "
        f"({r['transactions_written']:,} txns, {r['kafka_transactions']} Kafka txns): commit p50 {c.get('p50_ms')} "
        f"p99 {c.get('p99_ms')} max {c.get('max_ms')} ms (without the last 1.5 s: p99 {st.get('p99_ms')}) | "
        f"visible to a read_committed consumer p50 {vis.get('p50_ms')} p99 {vis.get('p99_ms')} ms")
    k, lm = r.get("kafka_commit_ms", {}), r.get("lmdb_commit_ms", {})
    say(f"    per batch: Kafka commit p50 {k.get('p50_ms')} p99 {k.get('p99_ms')} max {k.get('max_ms')} ms; LMDB commit "
        f"p50 {lm.get('p50_ms')} p99 {lm.get('p99_ms')} max {lm.get('max_ms')} ms; machine iowait max "
        f"{r.get('cpu_iowait_pct_max')}%, steal max {r.get('cpu_steal_pct_max')}%; GC pauses >= 2 ms: "
        f"{r.get('gc_pauses_over_2ms')}, longest {r.get('gc_pause_max_ms')} ms")


def state_size(variant: Variant, work: Path, aggregates: int, tag: str) -> dict[str, Any]:
    base = work / tag
    base.mkdir(parents=True, exist_ok=True)
    spec = {"code": str(variant.code) if variant.code else None, "mappings_dir": variant.config["mappings_dir"],
            "schema": variant.db, "aggregates": aggregates, "state_dir": str(base / "state"),
            "partitions": StateSettings().partitions}
    (base / "spec.json").write_text(json.dumps(spec))
    log_path = variant.log_dir / f"{tag}.log"
    with open(log_path, "w") as log:
        rc = subprocess.run([sys.executable, str(CHILD), "state", str(base / "spec.json"), str(base / "result.json")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0:
        raise RuntimeError(f"state child failed ({rc}); see {log_path}")
    r = json.loads((base / "result.json").read_text())
    shutil.rmtree(base / "state", ignore_errors=True)
    s = r["samples"]
    first = next((x for x in s if x["aggregates"] >= aggregates // 10), s[0])
    last = s[-1]
    per = r["lmdb"]["size_bytes"] / max(1, r["lmdb"]["entries"])
    return {
        "aggregates": r["aggregates"], "lines": r["lines"], "seconds": round(r["seconds"], 1),
        "aggregates_per_s": round(r["aggregates"] / r["seconds"]),
        "commit_seconds": round(r["commit_seconds"], 1),
        "lmdb_bytes": r["lmdb"]["size_bytes"], "bytes_per_aggregate": round(per),
        "mb_per_million": round(per * 1e6 / 1e6, 1),
        "rss_anon_at_10pct_bytes": first["rss_anon"], "rss_anon_at_end_bytes": last["rss_anon"],
        "rss_at_end_bytes": last["rss"], "rss_file_at_end_bytes": last["rss_file"],
        "rss_anon_growth_bytes": last["rss_anon"] - first["rss_anon"],
        "anon_flat": last["rss_anon"] - first["rss_anon"] < 32 << 20,
        "samples": s, "vm_hwm_bytes": r["vm_hwm_bytes"], "code": r["code"],
    }


# --------------------------------------------------------------------------- profile


STAGES = [  # (label, file suffix, function): cumulative time in the bridge's threads
    ("source: BinlogSource (read+decode; 0 with the reader process)", "source/binlog.py", "_stream"),
    ("  decode rows", "source/binlog.py", "_decode_rows"),
    ("source: ProcessSource (pipe + unpickle)", "ingest/reader_process.py", "transactions"),
    ("mapping: translate", "mapping/loader.py", "translate"),
    ("aggregates: runtime.apply", "aggregate/runtime.py", "apply"),
    ("  decide", "aggregate/declarative.py", "decide"),
    ("  LMDB reads (store.get)", "state/lmdb_store.py", "get"),
    ("pipeline: _count_source", "cdc_bridge/pipeline.py", "_count_source"),
    ("pipeline: readiness()", "cdc_bridge/pipeline.py", "readiness"),
    ("pipeline: _flush (seal + hand over; waits for the batch before)", "cdc_bridge/pipeline.py", "_flush"),
    ("  LMDB seal (state -> JSON)", "state/lmdb_store.py", "seal"),
    ("committer: publisher._serialize", "sink/publisher.py", "_serialize"),
    ("committer: publisher._produce_all", "sink/publisher.py", "_produce_all"),
    ("committer: publisher._commit (Kafka)", "sink/publisher.py", "_commit"),
    ("committer: metrics", "cdc_bridge/pipeline.py", "_record_published"),
    ("writer: LMDB write", "state/lmdb_store.py", "write"),
]


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    st = pstats.Stats(str(path))
    total = st.total_tt
    rows = []
    for (file, line, fn), (cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append((tt, ct, nc, f"{_short(file)}:{line}({fn})", file, fn))
    by_tt = sorted(rows, key=lambda r: -r[0])[:top]
    run_ct = max((r[1] for r in rows if r[5] == "run" and r[4].endswith("cdc_bridge/pipeline.py")), default=total)
    stages = []
    for label, suffix, fn in STAGES:
        ct = sum(r[1] for r in rows if r[4].endswith(suffix) and r[5] == fn)
        stages.append({"stage": label, "cum_s": round(ct, 2), "pct": round(100 * ct / run_ct, 1)})
    return {"total_s": round(total, 2), "bridge_run_s": round(run_ct, 2),
            "top": [{"function": r[3], "calls": r[2], "self_s": round(r[0], 2), "self_pct": round(100 * r[0] / total, 1),
                     "cum_s": round(r[1], 2)} for r in by_tt],
            "stages": stages}


def summarize_samples(path: Path, top: int = 15) -> dict[str, Any]:
    """py-spy raw output ("frame;frame;... count" per stack, root first) -> top functions by self samples.

    Only the bridge's main thread (the one running Bridge.run) is counted."""
    self_n: dict[str, int] = {}
    incl_n: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "(cdc_bridge/pipeline.py" not in stack and "pipeline.py:" not in stack:
            continue   # other threads (memory sampler, watcher): idle
        n = int(count)
        frames = [f for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += n
        leaf = _frame(frames[-1])
        self_n[leaf] = self_n.get(leaf, 0) + n
        for f in {_frame(f) for f in frames}:
            incl_n[f] = incl_n.get(f, 0) + n
    by_self = sorted(self_n.items(), key=lambda kv: -kv[1])[:top]
    stages = []
    for label, suffix, fn in STAGES:
        n = sum(c for f, c in incl_n.items() if f.partition(" (")[0].rpartition(".")[2] == fn and suffix in f)
        stages.append({"stage": label, "pct": round(100 * n / max(1, total), 1)})
    return {"samples": total,
            "top": [{"function": f, "self_pct": round(100 * c / max(1, total), 1),
                     "incl_pct": round(100 * incl_n.get(f, 0) / max(1, total), 1)} for f, c in by_self],
            "stages": stages}


def _frame(f: str) -> str:
    """'fn (/path/to/cdc_bridge/x.py:12)' -> 'fn (cdc_bridge/x.py)' (line numbers dropped: per function)."""
    name, _, where = f.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({_short(file)})"


def print_samples(label: str, prof: dict[str, Any]) -> None:
    say(f"\n  py-spy sampling profile of (c), {label}: {prof['samples']} samples of the bridge thread; top "
        f"{len(prof['top'])} by self time")
    say(f"  {'self%':>6} {'incl%':>6}  function")
    for r in prof["top"]:
        say(f"  {r['self_pct']:>5.1f}% {r['incl_pct']:>5.1f}%  {r['function']}")
    say("  stages (inclusive % of the bridge thread):")
    for s in prof["stages"]:
        say(f"    {s['stage']:<42} {s['pct']:>5.1f}%")


def _short(file: str) -> str:
    for marker in ("cdc_bridge/", "site-packages/", "lib/python3"):
        i = file.find(marker)
        if i >= 0:
            return file[i:]
    return file


def print_profile(label: str, prof: dict[str, Any]) -> None:
    say(f"\n  profile of (c), {label}: {prof['bridge_run_s']}s in Bridge.run under cProfile; top {len(prof['top'])} by self time")
    say(f"  {'self s':>7} {'self%':>6} {'cum s':>7} {'calls':>10}  function")
    for r in prof["top"]:
        say(f"  {r['self_s']:>7.2f} {r['self_pct']:>5.1f}% {r['cum_s']:>7.2f} {r['calls']:>10}  {r['function']}")
    say("  stages (cumulative, % of Bridge.run):")
    for s in prof["stages"]:
        say(f"    {s['stage']:<42} {s['cum_s']:>7.2f}s {s['pct']:>5.1f}%")


# --------------------------------------------------------------------------- baseline code


def baseline_tree(ref: str, work: Path) -> tuple[Path, list[str]]:
    """cdc_bridge/ as of git `ref`, whole (a change may span the pipeline, not only its hot modules)."""
    dst = work / "baseline-code"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "cdc_bridge"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    changed = subprocess.run(["git", "diff", "--name-only", ref, "--", "cdc_bridge"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    # its C row decoder, compiled like `pip install` does (git archive has no build products;
    # without it the baseline's reader would fall back to Python and look slower than it is)
    if (dst / "cdc_bridge" / "source" / "_rowcodec.c").exists():
        build = ("from setuptools import Extension, setup; setup(name='baseline', script_args=['-q', 'build_ext', "
                 "'--inplace'], ext_modules=[Extension('cdc_bridge.source._rowcodec', "
                 "['cdc_bridge/source/_rowcodec.c'])])")
        subprocess.run([sys.executable, "-c", build], cwd=dst, check=True, capture_output=True)
    return dst, changed


def delete_topics(names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    from devenv import kafka

    topics = [t for n in names for t in (f"{n}.order.events", f"{n}.checkpoints", f"{n}.dead-letter")]
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers()})
    for f in admin.delete_topics(topics, operation_timeout=30).values():
        try:
            f.result()
        except Exception:  # noqa: BLE001 - a topic that was never created
            pass


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, help="row changes to generate (default 500000; --quick 100000)")
    ap.add_argument("--json", metavar="PATH", help="write all figures as JSON (default bench/results/run.json)")
    ap.add_argument("--quick", action="store_true", help="smaller run (< 3 minutes)")
    ap.add_argument("--batch", type=int, default=20, help="orders/lines per generated transaction (default 20)")
    ap.add_argument("--latency-rate", type=float, default=5000, help="rows/s for (d) (default 5000)")
    ap.add_argument("--latency-seconds", type=float, help="duration of (d) (default 20; --quick 10)")
    ap.add_argument("--latency-tuning", action="store_true",
                    help="also run (d) with config-only tunings (source.heartbeat_seconds, batch.max_wait_ms)")
    ap.add_argument("--latency-batch", type=int, default=5, help="orders/lines per transaction in (d) (default 5)")
    ap.add_argument("--state-aggregates", type=int, help="aggregates for (f) (default 1000000; --quick 200000)")
    ap.add_argument("--baseline", metavar="REF", help="also measure with the optimizable modules from git REF")
    ap.add_argument("--profile", action="store_true", help="also run (c) under cProfile and print the top 15")
    ap.add_argument("--gc-experiment", action="store_true",
                    help="also run (c) and (d) with the current code under CPython's default collector settings "
                         "(700, 10, 10; nothing frozen) instead of cdc_bridge.tuning's")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run (c) N times per code variant, interleaved, and report the median (default 1)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: verify,latency,state")
    ap.add_argument("--db", default="bench_orders")
    ap.add_argument("--keep", action="store_true", help="keep the database, topics and work directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("CDC_TEST_MYSQL_PORT", "33306")))
    ap.add_argument("--user", default="cdc")
    ap.add_argument("--password", default="cdc")
    args = ap.parse_args(argv)
    rows_wanted = args.rows or (100_000 if args.quick else 500_000)
    lat_seconds = args.latency_seconds or (10.0 if args.quick else 20.0)
    state_aggs = args.state_aggregates or (200_000 if args.quick else 1_000_000)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json) if args.json else RESULTS / "run.json"
    run_id = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="cdc-bench-"))
    log_dir = RESULTS / "logs"
    log_dir.mkdir(exist_ok=True)
    conn_settings = {"host": args.host, "port": args.port, "user": args.user, "password": args.password}
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "platform": platform.platform()},
                           "args": {"rows": rows_wanted, "batch": args.batch, "quick": args.quick,
                                    "latency_rate": args.latency_rate, "latency_seconds": lat_seconds,
                                    "state_aggregates": state_aggs, "baseline": args.baseline}}
    t_all = time.perf_counter()
    # SIGTERM unwinds like Ctrl-C, so that the cleanup below (topics, database, work dir) runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    variants: list[Variant] = []
    extra: list[Variant] = []   # repeats: only their topics matter (cleanup)
    try:
        conn = connect(conn_settings)
    except Exception as e:  # noqa: BLE001
        say(f"cannot connect to MariaDB at {args.host}:{args.port} ({e}); start it: .venv/bin/python -m devenv up")
        return 1
    try:
        # ---- workload
        fresh_orders_database(conn, args.db)
        writer = BatchedMonolith(conn, args.db, rng=random.Random(7), batch=args.batch)
        start = current_position(conn, "mariadb")
        t0 = time.perf_counter()
        writer.write_rows(rows_wanted)
        gen_s = time.perf_counter() - t0
        end = current_position(conn, "mariadb")
        out["workload"] = {"rows": writer.rows, "seconds": round(gen_s, 1), "actions": dict(writer.counts),
                           "start": start.to_dict(), "end": end.to_dict(), "database": args.db}
        say(f"generated {writer.rows:,} row changes in {sum(writer.counts.values()):,} transactions ({gen_s:.1f}s) "
            f"in {args.db}: {start.gtid} .. {end.gtid}")

        # ---- (a), (b)
        plain_rows, plain_s = run_plain(conn_settings, args.db, start, end.gtid or "")
        a = plain_rows / plain_s
        out["plain"] = {"rows": plain_rows, "seconds": round(plain_s, 3), "rows_per_s": round(a)}
        say(f"(a) plain python-mysql-replication loop: {plain_rows:,} rows in {plain_s:.2f}s = {a:,.0f} rows/s")
        settings = SourceSettings(host=args.host, port=args.port, user=args.user, password=args.password,
                                  server_id=random.randint(200_001, 300_000))
        src_rows, src_s = run_source(settings, args.db, start, end.gtid or "")
        b = src_rows / src_s
        out["source"] = {"rows": src_rows, "seconds": round(src_s, 3), "rows_per_s": round(b), "vs_plain": round(b / a, 2)}
        say(f"(b) BinlogSource:                        {src_rows:,} rows in {src_s:.2f}s = {b:,.0f} rows/s  (b)/(a) = {b / a:.2f}")

        # ---- code variants
        variants.append(Variant("current", None, work, args.db, log_dir, run_id))
        if args.baseline:
            code, replaced = baseline_tree(args.baseline, work)
            out["baseline_replaced"] = replaced
            say(f"baseline = cdc_bridge/ as of {args.baseline} ({len(replaced)} files differ from now)")
            variants.insert(0, Variant("baseline", code, work, args.db, log_dir, run_id))
        if args.gc_experiment:
            variants.append(Variant("current-defaultgc", None, work, args.db, log_dir, run_id, gc=[700, 10, 10]))

        # ---- (c), (e)
        out["bridge"] = {}
        for v in variants:
            r = throughput(v, work, start, end, f"{v.label}-throughput")
            r["vs_plain"] = round(r["rows_per_s"] / a, 2)
            out["bridge"][v.label] = r
            say(f"(c) bridge end to end [{v.label}]: {r['rows']:,} rows in {r['seconds']:.2f}s = {r['rows_per_s']:,} rows/s"
                f"  (c)/(a) = {r['vs_plain']:.2f}  ({r['transactions']:,} txns, {r['events']:,} events, "
                f"{r['dead_letters']:,} dead letters, {r['kafka_transactions']} Kafka txns)")
            say(f"    machine during (c): iowait max {r['machine']['iowait_pct_max']}%, steal max "
                f"{r['machine']['steal_pct_max']}%, idle mean {r['machine']['idle_pct_mean']}%")
            say("    CPU µs per row during (c): " + ", ".join(f"{k} {v}" for k, v in r["cpu_us_per_row"].items()))
            procs = r.get("rss_processes") or []
            say(f"(e) peak RSS, bridge + reader process [{v.label}]: {mib(r['peak_rss_bytes'])} = sum of VmHWM over "
                f"{len(procs)} process(es) ({' + '.join(mib(p['vm_hwm_bytes']) for p in procs)}); anon, peak of "
                f"the 100 ms sums {mib(r['peak_rss_anon_bytes'])}; bridge process alone "
                f"{mib(r['rss_at_streaming_bytes'])} when streaming began)")
            if "verify" not in skip:
                ver = verify(v, conn_settings, r["events"])
                r["verify"] = ver
                say(f"    verified [{v.label}]: {ver['events_read']:,} events read_committed, unique+gapless, "
                    f"{'matches' if ver['matches_database'] else 'DOES NOT MATCH'} the database, "
                    f"{'match' if ver['match_their_schemas'] else 'DO NOT MATCH'} their JSON Schemas "
                    f"({ver['aggregates']:,} aggregates, {ver['seconds']}s)")

        # ---- (c) again, interleaved: medians are robust to other load on the machine. The order
        # alternates (A B, B A, A B, ...): runs later in a sequence were seen to be slower (the broker
        # accumulates partitions), which a fixed order would charge to the same variant every time.
        if args.repeat > 1:
            for rep in range(1, args.repeat):
                order = [x for x in variants if not x.label.endswith(("-prof", "-spy"))]
                for v in (order[::-1] if rep % 2 else order):
                    rv = Variant(f"{v.label}-r{rep}", v.code, work, args.db, log_dir, run_id, gc=v.gc)
                    extra.append(rv)
                    r = throughput(rv, work, start, end, f"{v.label}-throughput-r{rep}")
                    out["bridge"][v.label].setdefault("repeats", [out["bridge"][v.label]["rows_per_s"]])
                    out["bridge"][v.label]["repeats"].append(r["rows_per_s"])
                    say(f"(c) again [{v.label}] #{rep + 1}: {r['rows_per_s']:,} rows/s  (machine: iowait max "
                        f"{r['machine']['iowait_pct_max']}%, steal max {r['machine']['steal_pct_max']}%)")
            for v in out["bridge"].values():
                if "repeats" in v:
                    v["rows_per_s_single"] = v["rows_per_s"]
                    v["rows_per_s"] = round(statistics.median(v["repeats"]))
                    v["vs_plain"] = round(v["rows_per_s"] / a, 2)

        # ---- profile
        if args.profile:
            out["profile"] = {}
            for v in [x for x in variants if x.gc is None]:
                pv = Variant(f"{v.label}-prof", v.code, work, args.db, log_dir, run_id)
                path = RESULTS / f"profile-{v.label}.prof"
                r = throughput(pv, work, start, end, f"{v.label}-profile", profile=path)
                variants.append(pv)
                prof = summarize_profile(path)
                prof["rows_per_s_under_profiler"] = r["rows_per_s"]
                out["profile"][v.label] = prof
                print_profile(v.label, prof)
                if PY_SPY.exists():
                    sv = Variant(f"{v.label}-spy", v.code, work, args.db, log_dir, run_id)
                    spath = RESULTS / f"pyspy-{v.label}.txt"
                    r = throughput(sv, work, start, end, f"{v.label}-pyspy", sample_to=spath)
                    variants.append(sv)
                    if spath.exists():
                        sp = summarize_samples(spath)
                        sp["rows_per_s_under_sampler"] = r["rows_per_s"]
                        out["profile"][f"{v.label}-pyspy"] = sp
                        print_samples(v.label, sp)

        # ---- (d)
        if "latency" not in skip:
            out["latency"] = {}
            writer.batch = args.latency_batch
            for v in [x for x in variants if not x.label.endswith(("-prof", "-spy"))]:
                r = latency(v, work, writer, conn, args.latency_rate, lat_seconds, f"{v.label}-latency")
                out["latency"][v.label] = r
                print_latency(v.label, r)
            if args.latency_tuning:
                cur = next(x for x in variants if x.label == "current")
                for label, tuning in LATENCY_TUNINGS:
                    r = latency(cur, work, writer, conn, args.latency_rate, lat_seconds, "current-latency-" + "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in label), tuning)
                    r["tuning"] = tuning
                    out["latency"][f"current {label}"] = r
                    print_latency(f"current {label}", r)

        # ---- (f)
        out["state"] = {}
        for v in [x for x in variants if not x.label.endswith(("-prof", "-spy"))]:
            lm = out["bridge"][v.label]["lmdb"]
            if lm.get("entries"):
                per = lm["size_bytes"] / lm["entries"]
                out["state"][f"{v.label}_after_c"] = {"entries": lm["entries"], "size_bytes": lm["size_bytes"],
                                                      "bytes_per_aggregate": round(per),
                                                      "mb_per_million": round(per, 1)}
                say(f"(f) LMDB after (c) [{v.label}]: {lm['entries']:,} aggregate records in {mib(lm['size_bytes'])} "
                    f"= {per:,.0f} B/aggregate = {per * 1e6 / 2**20:,.0f} MiB per million")
            if "state" not in skip and v.gc is None:
                r = state_size(v, work, state_aggs, f"{v.label}-state")
                out["state"][v.label] = r
                say(f"(f) {r['aggregates']:,} aggregates via AggregateRuntime [{v.label}]: {r['seconds']}s "
                    f"({r['aggregates_per_s']:,}/s), LMDB {mib(r['lmdb_bytes'])} = {r['bytes_per_aggregate']} B/aggregate "
                    f"= {r['bytes_per_aggregate'] * 1e6 / 2**20:,.0f} MiB per million; RSS anon "
                    f"{mib(r['rss_anon_at_10pct_bytes'])} at 10% -> {mib(r['rss_anon_at_end_bytes'])} at the end "
                    f"({'flat' if r['anon_flat'] else 'GROWING'}), file-backed {mib(r['rss_file_at_end_bytes'])}")
    finally:
        if not args.keep:
            try:
                delete_topics([n for v in variants + extra for n in v.names])
            except Exception as e:  # noqa: BLE001
                say(f"(could not delete the bench topics: {e})")
            drop_database(conn_settings, args.db)
            shutil.rmtree(work, ignore_errors=True)
        conn.close()

    out["seconds_total"] = round(time.perf_counter() - t_all, 1)
    summary(out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(out, indent=2) + "\n")
    say(f"\nfigures in {json_path}; total {out['seconds_total']}s")
    return 0


def summary(out: dict[str, Any]) -> None:
    a = out["plain"]["rows_per_s"]
    say("\n=== summary (rows/s over the same binlog range; ratio to (a)) ===")
    labels = list(out["bridge"])
    head = f"{'':<44}" + "".join(f"{lab:>16}" for lab in labels)
    say(head)
    say(f"{'(a) plain python-mysql-replication':<44}" + "".join(f"{a:>16,}" for _ in labels))
    say(f"{'(b) BinlogSource':<44}" + "".join(f"{out['source']['rows_per_s']:>10,} {out['source']['vs_plain']:>4.2f}x"
                                              for _ in labels))
    if any("repeats" in out["bridge"][lab] for lab in labels):
        say(f"{'(c) runs (rows/s; median below)':<44}" + "".join(
            f"{'/'.join(str(round(x / 1000, 1)) for x in out['bridge'][lab].get('repeats', [])) + 'k':>16}"
            for lab in labels))
    say(f"{'(c) bridge end to end, exactly once':<44}" + "".join(
        f"{out['bridge'][lab]['rows_per_s']:>10,} {out['bridge'][lab]['vs_plain']:>4.2f}x" for lab in labels))
    if "latency" in out:
        say(f"{'(d) commit latency p50 / p99 (ms)':<44}" + "".join(
            f"{out['latency'][lab]['commit'].get('p50_ms')!s:>8} /{out['latency'][lab]['commit'].get('p99_ms')!s:>6}"
            for lab in labels))
        say(f"{'(d) visible to consumer p50 / p99 (ms)':<44}" + "".join(
            f"{out['latency'][lab]['visible'].get('p50_ms')!s:>8} /{out['latency'][lab]['visible'].get('p99_ms')!s:>6}"
            for lab in labels))
    for lab, r in out.get("latency", {}).items():
        if lab not in labels:
            say(f"{'(d) ' + lab + ' p50/p99 commit, visible':<44}{r['commit'].get('p50_ms')!s:>8} /{r['commit'].get('p99_ms')!s:>6}"
                f"{r['visible'].get('p50_ms')!s:>8} /{r['visible'].get('p99_ms')!s:>6}")
    say(f"{'(e) peak RSS bridge + reader process (MiB)':<44}" + "".join(
        f"{out['bridge'][lab]['peak_rss_bytes'] / 2**20:>16,.0f}" for lab in labels))
    st = out.get("state", {})
    if any(lab in st for lab in labels):
        say(f"{'(f) LMDB bytes per aggregate, after (c)':<44}" + "".join(
            f"{st[lab + '_after_c']['bytes_per_aggregate']:>16,}" if lab + "_after_c" in st else f"{'-':>16}"
            for lab in labels))
        say(f"{'(f) LMDB bytes per small aggregate (1+2)':<44}" + "".join(
            f"{st[lab]['bytes_per_aggregate']:>16,}" if lab in st else f"{'-':>16}" for lab in labels))
        say(f"{'(f) aggregates/s through AggregateRuntime':<44}" + "".join(
            f"{st[lab]['aggregates_per_s']:>16,}" if lab in st else f"{'-':>16}" for lab in labels))
        say(f"{'(f) RSS anon 10% -> 100% of aggregates (MiB)':<44}" + "".join(
            f"{st[lab]['rss_anon_at_10pct_bytes'] / 2**20:>7.0f} ->{st[lab]['rss_anon_at_end_bytes'] / 2**20:>5.0f}"
            if lab in st else f"{'-':>16}" for lab in labels))


if __name__ == "__main__":
    sys.exit(main())
