"""Offline replay of the bridge's CPU stages that follow the source (no Kafka, no binlog reads while timing).

    .venv/bin/python bench/micro.py capture [--rows 200000]     # needs MariaDB: writes bench/results/txns.pickle
    .venv/bin/python bench/micro.py replay  [--profile]         # no services needed

capture: generates the bench workload (bench/common.py BatchedMonolith) in a fresh database
    `bench_orders_micro`, reads it back with BinlogSource and pickles the SourceTransactions.
replay: feeds them through what Bridge._apply/_flush do after the source, batch by batch
    (1000 source transactions per batch, the default), timing each stage:
      translate   MappingSet.translate(wire=True) and pickling, as the reader process does (row changes ->
                  commands in their wire form, one message per transaction)
      handoff     unpickling those messages into SourceTransactions, as ProcessSource does
      apply       TransactionApplier.apply_wire (decide/evolve, LMDB reads, events)
      serialize   TransactionalPublisher._serialize (envelopes -> Kafka records; nothing is sent)
      commit      LmdbStateStore.commit (records -> JSON -> one LMDB write transaction, fsync)
    and checks the output is identical to a reference (a hash of every record and state value)
    written by `replay --write-reference`, so a speed-up cannot silently change behaviour.
Use it to iterate on runtime.py / lmdb_store.py / declarative.py / translate.py / publisher.py;
bench/run.py gives the end-to-end truth.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import pickle
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if "--code" in sys.argv:   # an alternative cdc_bridge tree first on sys.path (see bench/run.py baseline_tree)
    sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1])

import structlog  # noqa: E402

from bench.common import RESULTS, BatchedMonolith, connect, drop_database, fresh_orders_database  # noqa: E402

DB = "bench_orders_micro"


def capture(args: argparse.Namespace) -> None:
    from cdc_bridge.source import BinlogSource, SourceSettings
    from cdc_bridge.source.preflight import current_position

    cs = {"host": args.host, "port": args.port, "user": "cdc", "password": "cdc"}
    conn = connect(cs)
    fresh_orders_database(conn, DB)
    w = BatchedMonolith(conn, DB, rng=random.Random(7), batch=20)
    start = current_position(conn, "mariadb")
    w.write_rows(args.rows)
    end = current_position(conn, "mariadb")
    src = BinlogSource(SourceSettings(host=args.host, port=args.port, user="cdc", password="cdc",
                                      server_id=random.randint(300_001, 399_999)),
                       {f"{DB}.orders": None, f"{DB}.order_lines": None}, start=start)
    txns = []
    for t in src.transactions():
        if t is None:
            continue
        txns.append(t)
        if t.position.order_key >= end.order_key:
            break
    src.stop()
    conn.close()
    drop_database(cs, DB)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(args.file, "wb") as f:
        pickle.dump({"db": DB, "txns": txns}, f, protocol=pickle.HIGHEST_PROTOCOL)
    print(f"captured {len(txns):,} transactions, {sum(len(t.changes) for t in txns):,} rows -> {args.file}")


def replay(args: argparse.Namespace) -> None:
    from cdc_bridge.aggregate.router import partition_for
    from cdc_bridge.apply.applier import TransactionApplier
    from cdc_bridge.mapping.translate import command_to_wire, commands_from_wire
    from cdc_bridge.source.transaction import SourceTransaction
    from cdc_bridge.aggregate.runtime import AggregateRuntime
    from cdc_bridge.mapping.loader import load_mappings
    from cdc_bridge.sink.checkpoint import build_checkpoint
    from cdc_bridge.sink.publisher import TransactionalPublisher
    from cdc_bridge.sink.settings import KafkaSettings
    from cdc_bridge.state.lmdb_store import LmdbStateStore
    from tests.integration.bridge_harness import write_orders_mapping

    data = pickle.loads(Path(args.file).read_bytes())
    txns = data["txns"]
    rows = sum(len(t.changes) for t in txns)
    tmp = Path(tempfile.mkdtemp(prefix="cdc-micro-"))
    try:
        write_orders_mapping(tmp / "mappings", data["db"])
        mappings = load_mappings(tmp / "mappings")
        store = LmdbStateStore(tmp / "state", partitions=16, map_size=256 << 20)
        runtime = AggregateRuntime.from_mappings(mappings.aggregates, store, held_max_age_seconds=3600.0,
                                                 held_max_count=100_000)
        pub = TransactionalPublisher(KafkaSettings(bootstrap_servers="unused:9092"), transactional_id="micro",
                                     checkpoint_topic="micro.checkpoints", dead_letter_topic="micro.dead-letter",
                                     bridge_name="micro", partitioner=partition_for)
        pub.set_partition_counts({mappings.aggregates[0].events_topic: 6, "micro.checkpoints": 1,
                                  "micro.dead-letter": 1})
        digest = hashlib.sha256()
        t = {"translate": 0.0, "handoff": 0.0, "apply": 0.0, "serialize": 0.0, "commit": 0.0}
        applier = TransactionApplier(runtime, mappings)
        # the commands' wire form end to end (the reader translates into it, the runtime applies it); a
        # --code tree from before it: Commands built from the wire, as ProcessSource then did
        wired = hasattr(applier, "apply_wire")
        try:   # the packed hand-off (mapping/packed.py), as the pipeline asks the reader for it
            from cdc_bridge.mapping.packed import PackedCommands, pack, packing_wanted
            packing = packing_wanted()
        except ImportError:
            packing = False
        print(f"hand-off: {'packed' if packing else 'wire tuples' if wired else 'Commands'}")
        dumps, loads, proto = pickle.dumps, pickle.loads, pickle.HIGHEST_PROTOCOL
        pc = time.thread_time   # CPU time of this thread: robust to other load on the machine
        events = dead = 0
        prof = None
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        b = 0
        n_batch = 0
        reps = max(1, args.reps)
        while b < len(txns):
            batch = []
            n_ev = 0
            while b < len(txns) and len(batch) < args.batch and n_ev < 10_000:   # BatchSettings defaults
                txn = txns[b]
                b += 1
                batch.append(txn)
                n_ev += len(txn.changes)   # ~10000 rows a batch (events are only known after apply)
            # each stage K times, the fastest counts (robust to other load); apply is undone by rollback()
            best = {k: float("inf") for k in ("translate", "handoff", "apply", "serialize")}
            for rep in range(reps):
                # reader process: translate, commands to wire tuples, pickle (reader_process._child_main)
                t0 = pc()
                msgs = []
                for txn in batch:
                    if wired:
                        wire, dl = mappings.translate(txn, wire=True)
                    else:
                        commands, dl = mappings.translate(txn)
                        wire = [command_to_wire(c) for c in commands]
                    packed = pack(wire) if packing else None
                    if packed is not None:
                        msgs.append(dumps((txn.gtid, txn.commit_ts, txn.position, txn.rows_by_table(), None, dl,
                                           packed.to_tuple()), proto))
                    else:
                        msgs.append(dumps((txn.gtid, txn.commit_ts, txn.position, txn.rows_by_table(), wire, dl,
                                           None), proto))
                t1 = pc()
                best["translate"] = min(best["translate"], t1 - t0)
                # main: unpickle, commands from wire (ProcessSource.transactions)
                t0 = pc()
                translated = []
                for raw in msgs:
                    gtid, commit_ts, position, row_counts, wire, dl, packed = loads(raw)
                    txn = SourceTransaction(gtid, commit_ts, position, row_counts=row_counts, dead_letters=dl)
                    if packed is not None:
                        txn.packed = PackedCommands(*packed)
                    elif wired:
                        txn.wire = wire
                    else:
                        txn.commands = commands_from_wire(wire, position, txn.txn_id, commit_ts)
                    translated.append(txn)
                t1 = pc()
                best["handoff"] = min(best["handoff"], t1 - t0)
                evs, dls = [], []
                t0 = pc()
                for txn in translated:
                    if txn.packed is not None:
                        res = applier.apply_packed(txn, txn.packed)
                    else:
                        res = applier.apply_wire(txn, txn.wire) if wired else applier.apply(txn, txn.commands)
                    evs.extend(res.events)
                    dls.extend(txn.dead_letters)
                    dls.extend(res.dead_letters)
                t1 = pc()
                best["apply"] = min(best["apply"], t1 - t0)
                if rep < reps - 1:
                    store.rollback()
            for k in ("translate", "handoff", "apply"):
                t[k] += best[k]
            pos = batch[-1].position
            n_batch += 1
            record = build_checkpoint("micro", {"position": pos.to_dict(), "batch": n_batch}, len(evs), now=0.0)
            for rep in range(reps):
                t0 = pc()
                messages = pub._serialize(evs, dls, record)[0]
                best["serialize"] = min(best["serialize"], pc() - t0)
            t["serialize"] += best["serialize"]
            t0 = pc()
            store.commit(pos, {"batch": n_batch})
            t["commit"] += pc() - t0
            events += len(evs)
            dead += len(dls)
            for m in messages:
                digest.update(repr((m[0], m[1], m[2], m[3], m[4])).encode())
        if prof is not None:
            prof.disable()
            out = RESULTS / "micro.prof"
            prof.dump_stats(str(out))
            import pstats

            pstats.Stats(str(out)).sort_stats("tottime").print_stats(args.top)
        for p in range(16):
            for rec in store.records(p):
                digest.update(repr((rec.aggregate, rec.aggregate_id, rec.sequence, rec.last_position, rec.held_since,
                                    sorted(rec.state.items(), key=lambda kv: kv[0]).__repr__())).encode())
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(t.values())
    import cdc_bridge

    print(f"code: {Path(cdc_bridge.__file__).parent}")
    print(f"{len(txns):,} transactions in {n_batch} batches, {rows:,} rows, {events:,} events, {dead:,} dead letters")
    for k, v in t.items():
        print(f"  {k:<10} {v:7.2f}s {1e6 * v / rows:7.2f} us/row")
    print(f"  {'total':<10} {total:7.2f}s {1e6 * total / rows:7.2f} us/row = {rows / total:,.0f} rows/s"
          f"{' (under cProfile)' if prof else ''}")
    ref = Path(args.file).with_suffix(".reference")
    h = digest.hexdigest()
    if args.write_reference:
        ref.write_text(h)
        print(f"reference output hash written: {h[:16]}")
    elif ref.exists():
        print(f"output {'IDENTICAL to' if ref.read_text() == h else 'DIFFERENT FROM'} the reference ({h[:16]})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["capture", "replay"], nargs="?", default="replay")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--file", default=str(RESULTS / "txns.pickle"))
    ap.add_argument("--batch", type=int, default=1000, help="source transactions per batch (default 1000)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--write-reference", action="store_true")
    ap.add_argument("--gc", choices=["default", "off", "relaxed"], default="default",
                    help="cyclic GC during the replay: default, off, or relaxed (gen0 threshold 50000)")
    ap.add_argument("--code", metavar="DIR", help="import cdc_bridge from DIR (e.g. a baseline tree)")
    ap.add_argument("--baseline-tree", metavar="REF", help="write a tree with the optimizable files from git REF "
                    "to bench/results/baseline-code and exit")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each stage per batch; the fastest counts")
    ap.add_argument("--repeat", type=int, default=1, help="replay N times, report the fastest")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("CDC_TEST_MYSQL_PORT", "33306")))
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.baseline_tree:
        from bench.run import baseline_tree

        dst = RESULTS / "baseline-code"
        shutil.rmtree(dst, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp())
        code, replaced = baseline_tree(args.baseline_tree, tmp)
        shutil.move(str(code), str(dst))
        print(f"{dst}: {', '.join(replaced)} from {args.baseline_tree}")
        return 0
    import gc

    if args.gc == "off":
        gc.disable()
    elif args.gc == "relaxed":
        gc.set_threshold(50_000, 20, 100)
    if args.mode == "capture":
        capture(args)
    else:
        for _ in range(args.repeat):
            replay(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
