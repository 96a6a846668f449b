"""Scale-out benchmark (issue 14): the apply stage alone with 1 and 2 workers, restore time, hop latency.

    .venv/bin/python -m devenv up
    .venv/bin/python bench/scale_out.py [--rows 200000] [--quick] [--json PATH]

1. A fresh database gets --rows row changes from BatchedMonolith (bench/common.py, as run.py),
   while `cdc-bridge ingest` runs: afterwards the commands topic holds them all (ingest is stopped).
2. (g) apply stage alone: `cdc-bridge worker` processes drain that pre-filled commands topic, first
   1 worker, then 2 (each run: its own consumer group, changelog and events topic, empty state).
   Rate = the rows of the middle 90% of the commands records (by the group's committed offsets,
   polled every 0.25 s) over the time they took: start-up and the tail are left out. CPU µs per
   row per worker = the worker process's CPU time (/proc) over that window / rows in it. The
   machine has 2 cores and the broker runs on them too: the 2-worker ratio cannot reach 2.
3. (h) restore: --restore-aggregates changelog records (copies of the records the 1-worker run
   left in its LMDB, each under its own key) are restored into an empty LMDB by ChangelogRestorer,
   in this process: seconds, records/s, and seconds per million aggregates.
4. (i) hop latency: `cdc-bridge run` (embedded) and ingest + 1 worker, each started fresh on the
   same database, then the writer paces --latency-rate rows/s for --latency-seconds; per source
   transaction, visible latency = arrival of its last event at a read_committed consumer − the
   writer's wall time after COMMIT (matched by GTID), p50/p99. Embedded and workers alternate
   (--latency-repeat rounds).
Results: bench/results/scale_out.json (or --json PATH); process logs in bench/results/logs/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
import yaml  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from bench.common import RESULTS, BatchedMonolith, connect, drop_database, fresh_orders_database  # noqa: E402
from bench.run import EventArrivals, percentiles  # noqa: E402
from cdc_bridge.apply.restore import ChangelogRestorer  # noqa: E402
from cdc_bridge.config import BridgeConfig  # noqa: E402
from cdc_bridge.observability.metrics import BridgeMetrics  # noqa: E402
from cdc_bridge.sink.checkpoint import checkpoint_position, read_checkpoint  # noqa: E402
from cdc_bridge.sink.topics import TopicAdmin, TopicRole, TopicSpec  # noqa: E402
from cdc_bridge.source.preflight import current_position  # noqa: E402
from cdc_bridge.state.lmdb_store import LmdbStateStore  # noqa: E402
from devenv import kafka  # noqa: E402

LOGS = RESULTS / "logs"


def say(msg: str = "") -> None:
    print(msg, flush=True)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, all its threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Setup:
    """Config files and processes of one bridge name over the bench database."""

    def __init__(self, work: Path, db: str, conn_settings: dict, name: str, partitions: int) -> None:
        self.work, self.db, self.name, self.partitions = work, db, name, partitions
        self.conn_settings = conn_settings
        self.procs: list[subprocess.Popen] = []
        self.topics: set[str] = {f"{name}.commands", f"{name}.checkpoints", f"{name}.dead-letter"}

    def config(self, tag: str, **sections: dict[str, Any]) -> tuple[Path, str]:
        """A config (own mappings dir with events topic `<name>.<tag>.order.events`); returns (path, topic)."""
        d = self.work / tag
        (d / "mappings").mkdir(parents=True, exist_ok=True)
        doc = yaml.safe_load((ROOT / "mappings" / "orders.yaml").read_text().replace("shop.", f"{self.db}."))
        topic = f"{self.name}.{tag}.order.events"
        doc["topic"] = topic
        (d / "mappings" / "orders.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        s = self.conn_settings
        cfg: dict[str, Any] = {
            "name": self.name,
            "source": {"host": s["host"], "port": s["port"], "user": s["user"], "password": s["password"],
                       "server_id": random.randint(300_001, 400_000)},
            "kafka": {"bootstrap_servers": kafka.bootstrap_servers(), "topic_partitions": 3,
                      "dead_letter_topic": f"{self.name}.{tag}.dead-letter"},
            "mappings_dir": str(d / "mappings"),
            "state": {"dir": str(d / "state"), "partitions": self.partitions},
            "snapshot": {"mode": "never"},
            "start": "current",
            "http": {"host": "127.0.0.1", "port": 0},
            "log_level": "INFO",
            "held": {"max_age_seconds": 1_000_000, "max_count": 10_000_000},
        }
        for k, v in sections.items():
            cfg[k] = {**cfg.get(k, {}), **v}
        path = d / "bridge.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.topics |= {topic, f"{self.name}.{tag}.dead-letter"}
        if "worker" in sections:
            self.topics.add(sections["worker"].get("changelog_topic", ""))
        return path, topic

    def start(self, config: Path, *args: str, log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        LOGS.mkdir(parents=True, exist_ok=True)
        p = subprocess.Popen([sys.executable, "-m", "cdc_bridge.cli", *args, "--config", str(config)],
                             cwd=ROOT, stdout=open(LOGS / f"scale-{log}.log", "wb"), stderr=subprocess.STDOUT,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, procs: list[subprocess.Popen]) -> None:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def checkpoint_at(self, config: Path, target) -> bool:
        cfg = BridgeConfig.model_validate(yaml.safe_load(config.read_text()))
        ck = read_checkpoint(cfg.kafka, f"{self.name}.checkpoints", self.name, timeout=10)
        return ck is not None and checkpoint_position(ck).order_key >= target.order_key

    def cleanup(self) -> None:
        self.stop(self.procs)
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers()})
        names = sorted(t for t in self.topics if t)
        for f in admin.delete_topics(names, operation_timeout=30).values():
            try:
                f.result()
            except Exception:  # noqa: BLE001 - never created
                pass


def wait(predicate, timeout: float, what: str, procs: list[subprocess.Popen] = (), interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"a process exited ({p.returncode}) while waiting for {what}; see {LOGS}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def commands_ends(topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": kafka.bootstrap_servers(), "group.id": "bench-ends",
                  "isolation.level": "read_committed"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in range(partitions)}
    finally:
        c.close()


def first_log_time(path: Path, text: str) -> float | None:
    """Unix time of the first JSON log line of `path` whose event is `text`."""
    from datetime import datetime

    for line in path.read_text(errors="replace").splitlines():
        if f'"event": "{text}"' in line:
            ts = json.loads(line)["timestamp"]
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    return None


def drain(setup: Setup, workers: int, rows: int, ends: dict[int, int]) -> dict[str, Any]:
    """(g): `workers` worker processes drain the commands topic from the start, in their own group."""
    tag = f"drain{workers}"
    config, topic = setup.config(tag, worker={"group_id": f"{setup.name}.{tag}",
                                              "changelog_topic": f"{setup.name}.{tag}.changelog"})
    procs = [setup.start(config, "worker", "--worker-id", f"{tag}-{i}", log=f"{tag}-{i}",
                         env={"CDC_BRIDGE__STATE__DIR": str(setup.work / tag / f"state-{i}")})
             for i in range(workers)]
    c = Consumer({"bootstrap.servers": kafka.bootstrap_servers(), "group.id": f"{setup.name}.{tag}",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    total = sum(ends.values())
    tps = [TopicPartition(f"{setup.name}.commands", p) for p in ends]
    samples: list[tuple[float, int, list[float], float]] = []
    deadline = time.monotonic() + 1800
    try:
        while True:
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"worker exited {p.returncode}; see {LOGS}/scale-{tag}-*.log")
            done = sum(max(0, tp.offset) for tp in c.committed(tps, timeout=10))
            samples.append((time.monotonic(), done, [proc_cpu(p.pid) for p in procs], time.time()))
            # the last offset of a partition sits before its final commit marker: within one per partition
            if done >= total - len(ends):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not drain the commands topic in 30 minutes")
            time.sleep(0.25)
    finally:
        c.close()
        setup.stop(procs)
    # the window opens when every worker processes partitions (the first to join owns all of them
    # until the group has rebalanced) and 5% is done; it closes at 95%
    started = [first_log_time(LOGS / f"scale-{tag}-{i}.log", "partition started") for i in range(workers)]
    if any(t is None for t in started):
        raise SystemExit(f"a worker never started a partition; see {LOGS}/scale-{tag}-*.log")
    all_in = max(started) + 1.0   # type: ignore[type-var]
    lo = next(s for s in samples if s[1] >= 0.05 * total and s[3] >= all_in)
    hi = next(s for s in samples if s[1] >= 0.95 * total)
    frac = (hi[1] - lo[1]) / total
    window_rows = rows * frac
    seconds = hi[0] - lo[0]
    cpu = [h - l for h, l in zip(hi[2], lo[2])]
    return {"workers": workers, "records": total, "window_seconds": round(seconds, 2),
            "rows_per_s": round(window_rows / seconds), "cpu_us_per_row_per_worker": [round(x / window_rows * 1e6, 1) for x in cpu],
            "cpu_us_per_row_total": round(sum(cpu) / window_rows * 1e6, 1),
            "worker_cores_busy": [round(x / seconds, 2) for x in cpu], "events_topic": topic,
            "state_dir": str(setup.work / tag / "state-0")}


def restore_bench(setup: Setup, template_dir: str, aggregates: int) -> dict[str, Any]:
    """(h): `aggregates` changelog records into an empty LMDB through ChangelogRestorer."""
    parts = setup.partitions
    src = LmdbStateStore(template_dir, partitions=parts, readonly=True)
    try:
        templates = [v for p in range(parts) for _, v in src.raw_records(p)][:5000]
    finally:
        src.close()
    if not templates:
        raise SystemExit("no records to copy for the restore bench")
    topic = f"{setup.name}.restore-bench"
    setup.topics.add(topic)
    cfg = BridgeConfig.model_validate({"name": setup.name, "source": {"host": "x", "user": "x"},
                                       "kafka": {"bootstrap_servers": kafka.bootstrap_servers()},
                                       "state": {"partitions": parts}})
    TopicAdmin(cfg.kafka).ensure_topics([TopicSpec(topic, TopicRole.EVENTS, parts, 1, {"cleanup.policy": "compact"})])
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers(), "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 500_000})
    t0 = time.perf_counter()
    size = 0
    for i in range(aggregates):
        value = templates[i % len(templates)]
        size += len(value)
        while True:
            try:
                producer.produce(topic, key=f"Order\x00r{i}".encode(), value=value, partition=i % parts)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(300)
    produced_s = time.perf_counter() - t0
    store_dir = setup.work / "restore-state"
    store = LmdbStateStore(store_dir, partitions=parts, map_size=1 << 30)
    restorer = ChangelogRestorer(cfg.kafka, topic, store, BridgeMetrics(), f"{setup.name}.restore-bench")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    try:
        for p in range(parts):
            restorer.plan(p, None)
        while restorer.tasks:
            restorer.step(1.0)
    finally:
        restorer.close()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    restored = sum(1 for p in range(parts) for _ in store.raw_records(p))
    store.close()
    shutil.rmtree(store_dir, ignore_errors=True)
    return {"aggregates": aggregates, "restored": restored, "avg_record_bytes": round(size / aggregates),
            "produce_seconds": round(produced_s, 1), "restore_seconds": round(seconds, 1),
            "records_per_s": round(restored / seconds), "seconds_per_million": round(seconds / restored * 1e6, 1),
            "cpu_seconds": round(cpu, 1)}


def hop_latency(setup: Setup, conn, db: str, writer: BatchedMonolith, mode: str, rate: float, seconds: float,
                rnd: int) -> dict[str, Any]:
    """(i): one fresh bridge in `mode` (embedded | workers), then a paced writer."""
    tag = f"lat-{mode}-{rnd}"
    name = f"{setup.name}-{tag}"
    sub = Setup(setup.work, db, setup.conn_settings, name, setup.partitions)
    config, topic = sub.config(tag)
    try:
        if mode == "embedded":
            procs = [sub.start(config, "run", log=tag)]
        else:
            procs = [sub.start(config, "ingest", log=f"{tag}-ingest"),
                     sub.start(config, "worker", "--worker-id", "w1", log=f"{tag}-w1",
                               env={"CDC_BRIDGE__STATE__DIR": str(setup.work / tag / "state-w1")})]
        sub.topics |= {f"{name}.changelog"}
        wait(lambda: sub.checkpoint_at(config, current_position(conn)), 120, f"{tag} to start", procs)
        if mode == "workers":
            wait(lambda: (LOGS / f"scale-{tag}-w1.log").read_bytes().count(b"partition started") >= sub.partitions,
                 60, "the worker to start every partition", procs)
        writer.batch = 5
        wait(lambda: topic in AdminClient({"bootstrap.servers": kafka.bootstrap_servers()}).list_topics(
            timeout=10).topics, 60, "the events topic", procs)
        arrivals = EventArrivals(topic)
        arrivals.start()
        writer.paced(rate, 2.0)                     # warm-up
        writer.txns.clear()
        writer.record_txns = True
        rows = writer.paced(rate, seconds)
        writer.record_txns = False
        time.sleep(3)
        arrivals.stop()
        visible = [arrivals.last[t.gtid] - t.committed_at for t in writer.txns if t.gtid in arrivals.last]
        return {"mode": mode, "round": rnd, "rows": rows, "transactions": len(writer.txns),
                "matched": len(visible), "visible": percentiles(visible)}
    finally:
        sub.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, help="row changes in the commands topic (default 500000; --quick 250000: the second worker must join before the first drained it all)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--partitions", type=int, default=4, help="state.partitions = commands partitions (default 4)")
    ap.add_argument("--restore-aggregates", type=int, help="changelog records for (h) (default 1000000; --quick 200000)")
    ap.add_argument("--latency-rate", type=float, default=5000)
    ap.add_argument("--latency-seconds", type=float, help="default 15; --quick 8")
    ap.add_argument("--latency-repeat", type=int, default=2, help="rounds of embedded / workers (default 2)")
    ap.add_argument("--skip", default="", help="comma list: drain,restore,latency")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--db", default="bench_scale")
    args = ap.parse_args(argv)
    rows_wanted = args.rows or (250_000 if args.quick else 500_000)
    restore_n = args.restore_aggregates or (200_000 if args.quick else 1_000_000)
    lat_s = args.latency_seconds or (8.0 if args.quick else 15.0)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json) if args.json else RESULTS / "scale_out.json"
    conn_settings = {"host": "127.0.0.1", "port": int(os.environ.get("CDC_TEST_MYSQL_PORT", "33306")),
                     "user": "cdc", "password": "cdc"}
    work = Path(tempfile.mkdtemp(prefix="cdc-scale-"))
    setup = Setup(work, args.db, conn_settings, f"bench-scale-{uuid.uuid4().hex[:6]}", args.partitions)
    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "args": vars(args)}
    conn = connect(conn_settings)
    try:
        fresh_orders_database(conn, args.db)
        # ---- the commands topic, filled by ingest
        ingest_cfg, _ = setup.config("ingest")
        ingest = setup.start(ingest_cfg, "ingest", log="ingest")
        wait(lambda: setup.checkpoint_at(ingest_cfg, current_position(conn)), 120, "ingest to start", [ingest])
        writer = BatchedMonolith(conn, args.db, rng=random.Random(7), batch=20)
        t0 = time.perf_counter()
        writer.write_rows(rows_wanted)
        end = current_position(conn)
        wait(lambda: setup.checkpoint_at(ingest_cfg, end), 1800, "ingest to reach the end", [ingest])
        ingest_s = time.perf_counter() - t0
        setup.stop([ingest])
        ends = commands_ends(f"{setup.name}.commands", args.partitions)
        out["commands"] = {"rows": writer.rows, "records": sum(ends.values()), "per_partition": ends,
                           "write_and_ingest_seconds": round(ingest_s, 1)}
        say(f"commands topic: {writer.rows:,} rows in {sum(ends.values()):,} records over {args.partitions} "
            f"partitions ({ingest_s:.0f} s to write and ingest)")

        if "drain" not in skip:
            out["drain"] = []
            for n in (1, 2):
                r = drain(setup, n, writer.rows, ends)
                out["drain"].append(r)
                say(f"(g) {n} worker(s): {r['rows_per_s']:,} rows/s; CPU µs/row per worker "
                    f"{r['cpu_us_per_row_per_worker']} (total {r['cpu_us_per_row_total']}); cores busy per worker "
                    f"{r['worker_cores_busy']}")
            one, two = out["drain"]
            out["drain_ratio_2_vs_1"] = round(two["rows_per_s"] / one["rows_per_s"], 2)
            say(f"(g) 2 workers / 1 worker = {out['drain_ratio_2_vs_1']:.2f}x")
        if "restore" not in skip and "drain" not in skip:
            r = restore_bench(setup, out["drain"][0]["state_dir"], restore_n)
            out["restore"] = r
            say(f"(h) restore: {r['restored']:,} aggregates ({r['avg_record_bytes']} B each) in "
                f"{r['restore_seconds']} s = {r['records_per_s']:,}/s -> {r['seconds_per_million']} s per million "
                f"(CPU {r['cpu_seconds']} s)")
        if "latency" not in skip:
            out["latency"] = []
            for rnd in range(args.latency_repeat):
                for mode in (("embedded", "workers") if rnd % 2 == 0 else ("workers", "embedded")):
                    r = hop_latency(setup, conn, args.db, writer, mode, args.latency_rate, lat_s, rnd)
                    out["latency"].append(r)
                    v = r["visible"]
                    say(f"(i) {mode:8} round {rnd}: {r['rows']:,} rows, visible p50 {v.get('p50_ms')} ms, "
                        f"p99 {v.get('p99_ms')} ms, max {v.get('max_ms')} ms ({r['matched']}/{r['transactions']} txns)")
    finally:
        setup.cleanup()
        conn.close()   # its metadata locks would hold the DROP
        drop_database(conn_settings, args.db)
        shutil.rmtree(work, ignore_errors=True)
        json_path.write_text(json.dumps(out, indent=2, default=str))
        say(f"results: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
