"""Benchmark child processes, started by bench/run.py (not meant to be run by hand).

    python bench/child.py bridge SPEC.json RESULT.json
    python bench/child.py state  SPEC.json RESULT.json

A child is its own process so that its peak RSS is the bridge's and its binlog reader's (a
child of the child; not the generator's or the benchmark's), its profile holds only the
bridge, and the code under test can be swapped:
SPEC["code"], when set, is put first on sys.path, so `cdc_bridge` is imported from there
(run.py --baseline builds such a tree with the pre-optimization files).

bridge: runs a Bridge (cdc_bridge.pipeline) in the MAIN thread, exactly like `cdc-bridge run`,
    with fresh_start = SPEC["start"] when it has no checkpoint yet. A watcher thread speaks a
    line protocol on stdin/stdout with the parent:
        child -> "ready <perf_counter>"   recovery done, the binlog is about to be read
        parent -> "until <position json>" child -> "reached <perf_counter>" once committed >= it
        parent -> "stop"                  the bridge stops; RESULT.json is written
    Bridge.on_batch_committed records, per committed batch, the wall time (time.time())
    and, with SPEC["record_txns"], each source transaction's GTID (latency runs).
state: writes SPEC["aggregates"] small Order aggregates through AggregateRuntime + LmdbStateStore
    directly (no binlog, no Kafka), committing every SPEC["batch_txns"] transactions, and samples
    RSS as the state grows.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _setup(spec: dict[str, Any]) -> None:
    if spec.get("code"):
        sys.path.insert(0, spec["code"])
    if str(ROOT) not in sys.path:
        sys.path.insert(1 if spec.get("code") else 0, str(ROOT))
    import structlog

    # the bridge logs to stderr (run.py sends it to a file); keep it to warnings
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- bridge


def _rows(txn: Any) -> int:
    """Row changes of a source transaction; translated in the reader process they are only counted
    (row_counts); a --baseline tree may predate that field."""
    counts = getattr(txn, "row_counts", None)
    return sum(counts.values()) if counts else len(txn.changes)


def bridge_child(spec: dict[str, Any], result_path: Path) -> None:
    import cdc_bridge
    from bench.common import MemorySampler, proc_status
    from cdc_bridge.config import BridgeConfig
    from cdc_bridge.mapping.loader import load_mappings
    from cdc_bridge.pipeline import Bridge
    from cdc_bridge.source.position import SourcePosition
    from cdc_bridge.state.lmdb_store import LmdbStateStore

    mem = MemorySampler(0.1, include_children=True)   # the bridge and its binlog reader process
    mem.start()
    rss_before = proc_status()
    config = BridgeConfig.model_validate(spec["config"])
    bridge = Bridge(config, load_mappings(config.mappings_dir),
                    fresh_start=SourcePosition.from_dict(spec["start"]) if spec.get("start") else None)

    record_txns = bool(spec.get("record_txns"))
    lock = threading.Condition()
    state: dict[str, Any] = {"target": None, "reached_at": None, "finished": False}
    batches: list[tuple[float, int, int, int, int]] = []   # wall time, txns, rows, events, dead letters
    txn_commits: list[tuple[str, float]] = []              # (gtid, wall time of its Kafka commit)

    def on_batch_committed(batch: Any) -> None:
        wall, perf = time.time(), time.perf_counter()
        batches.append((wall, len(batch.txns), sum(_rows(t) for t in batch.txns), len(batch.events),
                        len(batch.dead_letters)))
        if record_txns:
            txn_commits.extend((t.gtid, wall) for t in batch.txns if t.gtid)
        target = state["target"]
        if target is not None and batch.position.order_key >= target:
            with lock:
                state["reached_at"] = perf
                lock.notify_all()

    bridge.on_batch_committed = on_batch_committed

    # garbage collector pauses (any thread): wall time at the end, generation, seconds; the short
    # young-generation ones (< 2 ms) are only counted
    import gc

    gc_pauses: list[tuple[float, int, float]] = []
    gc_counts = {"collections": 0}
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
            return
        took = time.perf_counter() - gc_started[0]
        gc_counts["collections"] += 1
        if took >= 0.002 or info.get("generation") == 2:
            gc_pauses.append((time.time(), info.get("generation", -1), round(took, 4)))

    gc.callbacks.append(on_gc)
    times: dict[str, float] = {}
    threads: dict[str, str] = {}   # native thread id -> Python thread name (for the CPU breakdown)

    diag: list[tuple] = []   # per Kafka transaction: wall time, produce s, Kafka commit s, publish total s
    lmdb_commits: list[tuple[float, float]] = []   # (wall time at the end, seconds) per LMDB commit

    def instrument() -> None:
        """Diagnostics only: the publisher's on_commit hook and a timer around LmdbStateStore.write (the LMDB transaction of a batch)."""
        import dataclasses

        pub, store = bridge.publisher, bridge.store
        if pub is not None:
            pub.hooks = dataclasses.replace(pub.hooks, on_commit=lambda r: diag.append(
                (time.time(), round(r.produce_seconds, 4), round(r.commit_seconds, 4), round(r.total_seconds, 4))))
        if store is not None:
            name = "write" if hasattr(store, "seal") else "commit"   # older revisions (--baseline) commit in one call
            inner = getattr(store, name)

            def timed_commit(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return inner(*a, **kw)
                finally:
                    lmdb_commits.append((time.time(), round(time.perf_counter() - t0, 4)))

            setattr(store, name, timed_commit)

    def watcher() -> None:
        while not bridge.streaming.wait(0.05):
            if state["finished"]:
                return
        if spec.get("diagnostics"):
            instrument()
        times["streaming"] = time.perf_counter()
        times["rss_at_streaming"] = proc_status().get("VmRSS", 0)
        _say(f"ready {times['streaming']}")
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "until":
                key = tuple(SourcePosition.from_dict(json.loads(arg)).order_key)
                with lock:
                    state["reached_at"] = None
                    committed = bridge.committed
                    if committed is not None and committed.order_key >= key:
                        state["reached_at"] = time.perf_counter()
                    state["target"] = key
                    while state["reached_at"] is None and not state["finished"]:
                        lock.wait(0.2)
                threads.update({str(t.native_id): t.name for t in threading.enumerate()})
                _say(f"reached {state['reached_at']}")
            elif cmd == "stop":
                break
        bridge.stop()

    import gc

    if spec.get("gc"):
        # EXPERIMENT (--gc-experiment): these thresholds, nothing frozen (CPython's defaults: 700, 10, 10)
        gc.set_threshold(*spec["gc"])
    else:
        try:   # what `cdc-bridge run` does before Bridge.run (a --baseline tree may predate it)
            from cdc_bridge.tuning import tune
        except ImportError:
            pass
        else:
            tune()
    w = threading.Thread(target=watcher, daemon=True, name="bench-watcher")
    w.start()
    error = None
    prof = None
    if spec.get("profile"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        bridge.run()
    except BaseException as e:  # reported to the parent
        error = f"{type(e).__name__}: {e}"
    finally:
        state["finished"] = True
        if prof is not None:
            prof.disable()
            prof.dump_stats(spec["profile"])
    memory = mem.stop()
    lmdb: dict[str, Any] = {}
    try:
        with LmdbStateStore(config.state.dir, partitions=config.state.partitions, readonly=True) as store:
            st = store.stats()
        data = Path(config.state.dir) / "data.mdb"
        lmdb = {"size_bytes": st["size_bytes"], "entries": st["entries"], "held": st["held"],
                "file_blocks_bytes": data.stat().st_blocks * 512, "map_size": st["map_size"]}
    except Exception as e:  # noqa: BLE001
        lmdb = {"error": str(e)}
    result = {
        "code": os.path.dirname(cdc_bridge.__file__),
        "error": error,
        "streaming_at": times.get("streaming"),
        "rss_before_bridge_bytes": rss_before.get("VmRSS", 0),
        "rss_at_streaming_bytes": times.get("rss_at_streaming", 0),
        "memory": memory,
        "batches": batches,
        "txn_commits": txn_commits,
        "publish_diag": diag,
        "lmdb_commits": lmdb_commits,
        "lmdb": lmdb,
        "threads": threads,
        "gc_pauses": gc_pauses,
        "gc_collections": gc_counts["collections"],
    }
    result_path.write_text(json.dumps(result))
    _say("done")


# --------------------------------------------------------------------------- state


def state_child(spec: dict[str, Any], result_path: Path) -> None:
    """1,000,000 small aggregates through AggregateRuntime directly: bytes per aggregate, RSS over time."""
    import cdc_bridge
    from bench.common import proc_status
    from cdc_bridge.aggregate.runtime import AggregateRuntime
    from cdc_bridge.mapping.loader import load_mappings
    from cdc_bridge.source.position import SourcePosition
    from cdc_bridge.source.transaction import RowChange, SourceTransaction
    from cdc_bridge.state.lmdb_store import LmdbStateStore

    mappings = load_mappings(spec["mappings_dir"])
    db = spec["schema"]
    n_aggs = int(spec["aggregates"])
    per_txn = int(spec.get("per_txn", 10))
    lines_per = int(spec.get("lines_per_order", 2))
    batch_txns = int(spec.get("batch_txns", 1000))
    partitions = int(spec.get("partitions", 16))
    store = LmdbStateStore(spec["state_dir"], partitions=partitions, map_size=64 << 20)
    runtime = AggregateRuntime.from_mappings(mappings.aggregates, store, held_max_age_seconds=3600.0,
                                             held_max_count=100_000)
    samples: list[dict[str, Any]] = []
    every = max(n_aggs // 20, 1)
    t0 = time.perf_counter()
    commit_s = 0.0
    events = 0
    oid = lid = 0
    txns = 0
    pos = 4
    ts = 1_700_000_000.0
    first_rss = None
    while oid < n_aggs:
        changes = []
        for _ in range(per_txn):
            oid += 1
            changes.append(RowChange(f"{db}.orders", "insert", None, {
                "id": oid, "customer_id": oid % 1000, "status": "pending", "total": "12.50", "currency": "EUR",
                "created_at": "2024-03-01T12:34:56.123456", "deleted_at": None}))
            for _ in range(lines_per):
                lid += 1
                changes.append(RowChange(f"{db}.order_lines", "insert", None, {
                    "id": lid, "order_id": oid, "sku": f"SKU-{lid % 500:04d}", "quantity": 2, "unit_price": "3.99"}))
        pos += 1000
        txns += 1
        ts += 0.001
        txn = SourceTransaction(gtid=f"0-1-{txns}", commit_ts=ts, position=SourcePosition(f"0-1-{txns}", "bin.000001", pos),
                                changes=changes)
        commands, _ = mappings.translate(txn)
        events += len(runtime.apply(commands, txn).events)
        if txns % batch_txns == 0 or oid >= n_aggs:
            c0 = time.perf_counter()
            runtime.commit(txn.position, {"batch": txns // batch_txns + 1})
            commit_s += time.perf_counter() - c0
        if oid % every < per_txn or oid >= n_aggs:
            st = proc_status()
            if first_rss is None:
                first_rss = st
            samples.append({"aggregates": oid, "seconds": round(time.perf_counter() - t0, 2),
                            "rss": st.get("VmRSS", 0), "rss_anon": st.get("RssAnon", 0),
                            "rss_file": st.get("RssFile", 0), "lmdb_used": store.stats()["size_bytes"]})
    elapsed = time.perf_counter() - t0
    stats = store.stats()
    store.close()
    data = Path(spec["state_dir"]) / "data.mdb"
    result_path.write_text(json.dumps({
        "code": os.path.dirname(cdc_bridge.__file__),
        "aggregates": oid, "lines": lid, "transactions": txns, "events": events,
        "seconds": elapsed, "commit_seconds": commit_s,
        "lmdb": {"size_bytes": stats["size_bytes"], "entries": stats["entries"],
                 "file_blocks_bytes": data.stat().st_blocks * 512, "map_size": stats["map_size"]},
        "samples": samples, "vm_hwm_bytes": proc_status().get("VmHWM", 0),
    }))


def main() -> int:
    mode, spec_path, result_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    spec = json.loads(spec_path.read_text())
    _setup(spec)
    if mode == "bridge":
        bridge_child(spec, result_path)
    elif mode == "state":
        state_child(spec, result_path)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
