"""Aborted Kafka transactions of the pipelined committer: no event lost or doubled, state right.

The Bridge commits a batch on its committer thread while the main loop applies the next
transactions on top of the batch's sealed state. When Kafka aborts the in-flight batch,
`_redo()` drops the open batch and the sealed one, re-applies and re-publishes the aborted
batch, then re-applies the open batch. These tests abort chosen Kafka transactions for real
(real MariaDB, real Kafka): the records are produced inside the transaction, then the
publisher's own abort path aborts it (abort_transaction, then BatchAbortedError), exactly as
for an abortable librdkafka error.

What must hold after the bridge caught up:
  * every event_id once, every aggregate's sequences 1..n (nothing doubled, nothing lost);
  * the events folded into state equal the database;
  * cdc_bridge_batch_aborts counts each abort;
  * LMDB agrees with the Kafka checkpoint (position, per-aggregate sequence), so a restart
    on the same state dir re-applies and re-publishes nothing.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

import bridge_harness as h
from cdc_bridge.config import BridgeConfig
from cdc_bridge.pipeline import Bridge
from cdc_bridge.sink.checkpoint import read_checkpoint
from cdc_bridge.sink.errors import BatchAbortedError
from cdc_bridge.sink.publisher import TransactionalPublisher
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.state.lmdb_store import LmdbStateStore
from devenv import mariadb
from devenv.monolith import MonolithWriter

WRITER_STEPS = 300
WANTED_OPS = {"place_order", "lines_before_order", "late_order", "change_status", "change_line",
              "delete_line", "delete_order"}


class AbortInjector:
    """Counts the Kafka transactions (publish_prepared calls) that carry events (1, 2, ...) and
    aborts the chosen ones.

    An aborted call goes through the real publisher: begin_transaction, every record produced,
    then (before commit) an abortable KafkaError, which makes the publisher abort the
    transaction and raise BatchAbortedError. `delay` holds the transaction open first, so the
    main loop applies further source transactions into its open batch meanwhile.
    """

    def __init__(self, abort_on: set[int], delay: float = 0.0):
        self.abort_on = set(abort_on)
        self.delay = delay
        self.count = 0
        self.aborted = 0
        self.calls: list[dict[str, Any]] = []   # every publish_prepared call, in order
        self.redos: list[dict[str, Any]] = []   # every Bridge._redo call
        self.recovered: list[tuple] = []        # Bridge._recover results (start, replay_until)
        self._lock = threading.Lock()

    def install(self, monkeypatch) -> "AbortInjector":
        real_publish = TransactionalPublisher.publish_prepared
        real_redo = Bridge._redo
        real_recover = Bridge._recover
        inj = self

        def publish_prepared(pub, prepared):
            checkpoint = prepared.checkpoint
            event_ids = [dict(m[4]).get("event_id", b"").decode() for m in prepared.messages
                         if m[2] is not None and dict(m[4]).get("event_id")]
            entry = {"thread": threading.current_thread().name, "batch": checkpoint.get("batch"),
                     "transactions": checkpoint.get("transactions"), "events": prepared.events,
                     "position": checkpoint.get("position"),
                     "event_ids": event_ids, "n": None, "outcome": None}
            with inj._lock:
                if prepared.events:
                    inj.count += 1
                    entry["n"] = inj.count
                inj.calls.append(entry)
            abort = entry["n"] in inj.abort_on
            saved = pub.hooks
            if abort:
                def fail_before_commit(n_records: int) -> None:
                    if inj.delay:
                        time.sleep(inj.delay)
                    raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT, "injected by test_pipeline_abort",
                                                    txn_requires_abort=True))

                pub.hooks = dataclasses.replace(saved, before_commit=fail_before_commit)
            try:
                result = real_publish(pub, prepared)
            except BatchAbortedError:
                entry["outcome"] = "aborted"
                if abort:
                    inj.aborted += 1
                raise
            except BaseException as e:
                entry["outcome"] = f"error {e!r}"
                raise
            finally:
                pub.hooks = saved
            entry["outcome"] = "committed"
            return result

        def redo(bridge, inflight, error):
            caller = sys._getframe(2).f_code.co_name   # _redo <- _settle <- ?
            inj.redos.append({"open_txns": len(bridge._batch.txns), "open_events": len(bridge._batch.events),
                              "aborted_txns": len(inflight.batch.txns),
                              "aborted_batch": inflight.checkpoint.get("batch"), "settled_from": caller})
            return real_redo(bridge, inflight, error)

        def recover(bridge):
            result = real_recover(bridge)
            inj.recovered.append(result)
            return result

        monkeypatch.setattr(TransactionalPublisher, "publish_prepared", publish_prepared)
        monkeypatch.setattr(Bridge, "_redo", redo)
        monkeypatch.setattr(Bridge, "_recover", recover)
        return self

    def report(self) -> str:
        lines = ["publish_prepared calls (n = counted call with events):"]
        for c in self.calls:
            ids = c["event_ids"]
            shown = ids if len(ids) <= 6 else ids[:3] + ["..."] + ids[-2:]
            lines.append(f"  n={c['n']} {c['thread']} ckpt batch={c['batch']} txns={c['transactions']} "
                         f"events={c['events']} pos={(c['position'] or {}).get('binlog_pos')} -> {c['outcome']} {shown}")
        lines.append(f"_redo calls: {self.redos}")
        return "\n".join(lines)


def published_twice(inj: AbortInjector) -> dict[str, list[int]]:
    """event_id -> the checkpoint batch numbers of the COMMITTED publishes that carried it, when more than one."""
    seen: dict[str, list[int]] = {}
    for c in inj.calls:
        if c["outcome"] == "committed":
            for i in c["event_ids"]:
                seen.setdefault(i, []).append(c["batch"])
    return {i: b for i, b in seen.items() if len(b) > 1}


def lmdb_sequences(state_dir, partitions: int) -> tuple[SourcePosition | None, dict[str, int]]:
    store = LmdbStateStore(state_dir, partitions=partitions, readonly=True)
    try:
        seqs = {r.aggregate_id: r.sequence for p in range(partitions) for r in store.records(p) if r.aggregate == "Order"}
        return store.applied_position(), seqs
    finally:
        store.close()


def check_published(events: list[dict], conn, db: str, inj: AbortInjector) -> dict[str, int]:
    """Nothing doubled (with the double's origin in the message), nothing lost, folded state == database."""
    counts = Counter(e["event_id"] for e in events)
    dupes = sorted(i for i, n in counts.items() if n > 1)
    assert not dupes, (
        f"BUG: {len(dupes)} event ids published twice after an aborted Kafka transaction, e.g. {dupes[:8]}; "
        f"committed publishes carrying the same event: {dict(list(published_twice(inj).items())[:8])}\n{inj.report()}")
    per_aggregate = h.check_unique_and_gapless(events)
    folded = h.comparable(h.fold_orders(events))
    expected = h.comparable(h.orders_in_db(conn, db))
    missing = sorted(set(expected) - set(folded))[:10]
    extra = sorted(set(folded) - set(expected))[:10]
    assert not missing and not extra, f"orders missing from events: {missing}; not in db: {extra}\n{inj.report()}"
    wrong = [a for a in expected if expected[a] != folded[a]]
    assert not wrong, (f"{len(wrong)} orders differ, e.g. {wrong[0]}: db={expected[wrong[0]]} "
                       f"events={folded[wrong[0]]}\n{inj.report()}")
    return per_aggregate


def check_state_agrees(cfg: dict, per_aggregate: dict[str, int], inj: AbortInjector) -> None:
    """LMDB (written by the stopped bridge) is at the Kafka checkpoint, with each aggregate's last sequence."""
    config = BridgeConfig.model_validate(cfg)
    ckpt = read_checkpoint(config.kafka, f"{cfg['name']}.checkpoints", cfg["name"], timeout=10)
    assert ckpt is not None
    applied, seqs = lmdb_sequences(config.state.dir, config.state.partitions)
    ck_pos = SourcePosition.from_dict(ckpt["position"])
    assert applied is not None and applied.order_key == ck_pos.order_key, (
        f"LMDB applied position {applied} != Kafka checkpoint {ck_pos}\n{inj.report()}")
    off = {a: (seqs.get(a), n) for a, n in per_aggregate.items() if seqs.get(a) != n}
    assert not off, (f"LMDB sequence != last published sequence for {len(off)} aggregates "
                     f"(lmdb, kafka): {dict(list(off.items())[:10])}\n{inj.report()}")


def restart_publishes_only_new(cfg: dict, conn, db: str, topic: str, inj: AbortInjector, w: MonolithWriter,
                               before: list[dict]) -> None:
    """Restart on the same state dir: LMDB agrees with the checkpoint (nothing to re-apply), and after a
    final write exactly that write's events are added."""
    inj.recovered.clear()
    bridge = h.BridgeThread(cfg).start()
    try:
        assert inj.recovered and inj.recovered[-1][1] is None, (
            f"restart had to re-apply state up to the checkpoint (LMDB behind Kafka): {inj.recovered}")
        seq_before = Counter(e["aggregate_id"] for e in before)
        oid = w.change_status()
        assert oid is not None
        new_oid = w.place_order(n_lines=2)
        bridge.wait_position(conn)
    finally:
        bridge.stop()
    after = h.events_of(h.read_topic(topic))
    new = sorted(set(e["event_id"] for e in after) - set(e["event_id"] for e in before))
    assert new == sorted([f"Order:{oid}:{seq_before[str(oid)] + 1}", f"Order:{new_oid}:1"]), (
        f"after the restart and a final write of 2 events, new event ids are {new[:20]}\n{inj.report()}")
    assert len(after) == len(before) + 2, f"restart re-published: {len(before)} -> {len(after)} events"
    per_aggregate = check_published(after, conn, db, inj)
    check_state_agrees(cfg, per_aggregate, inj)


class Writer:
    """The monolith writer on its own thread and connection; runs `steps` steps, then until `until()`."""

    def __init__(self, db: str, steps: int, until=lambda: True, pause: float = 0.004, seed: int = 7):
        self.db, self.steps, self.until, self.pause, self.seed = db, steps, until, pause, seed
        self.done_steps = 0
        self.error: BaseException | None = None
        self.writer: MonolithWriter | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.writer = MonolithWriter(mariadb.admin_connect(), self.db, rng=random.Random(self.seed))
            deadline = time.time() + 30
            while (self.done_steps < self.steps or not self.until()) and time.time() < deadline:
                self.writer.step()
                self.done_steps += 1
                time.sleep(self.pause)
        except BaseException as e:
            self.error = e

    def run(self) -> MonolithWriter:
        self.thread.start()
        self.thread.join(40)
        assert not self.thread.is_alive(), "writer did not finish"
        if self.error:
            raise self.error
        assert self.writer is not None
        missing = WANTED_OPS - set(self.writer.counts)
        assert not missing, f"the workload did not exercise {missing}: {self.writer.counts}"
        return self.writer


def run_with_aborts(shop, tmp_path, inj: AbortInjector, expected_aborts: int, until=lambda: True, **overrides):
    conn, db, topic = shop
    cfg = h.bridge_config(tmp_path, db, held={"max_age_seconds": 100000, "max_count": 100000}, **overrides)
    bridge = h.BridgeThread(cfg).start()
    try:
        w = Writer(db, WRITER_STEPS, until=until).run()
        bridge.wait_position(conn, timeout=60)
        aborts_metric = bridge.bridge.metrics.batch_aborts._value.get()
    finally:
        bridge.stop()
    assert inj.aborted == expected_aborts, f"injected {inj.aborted} aborts, wanted {expected_aborts}\n{inj.report()}"
    assert aborts_metric == expected_aborts, f"batch_aborts counter {aborts_metric} != {expected_aborts} aborts"
    events = h.events_of(h.read_topic(topic))
    per_aggregate = check_published(events, conn, db, inj)
    check_state_agrees(cfg, per_aggregate, inj)
    # the writer's connection is the test's now: w.conn is its own, still open
    restart_publishes_only_new(cfg, w.conn, db, topic, inj, w, events)
    w.conn.close()
    return inj


def test_two_aborts_in_a_row_lose_and_double_nothing(shop, tmp_path, monkeypatch):
    # the 3rd publish aborts, its redo (the 4th) aborts too, the one after commits
    inj = AbortInjector({3, 4}).install(monkeypatch)
    run_with_aborts(shop, tmp_path, inj, expected_aborts=2)
    aborted = [c for c in inj.calls if c["outcome"] == "aborted"]
    assert [c["n"] for c in aborted] == [3, 4]
    assert aborted[0]["event_ids"] == aborted[1]["event_ids"], "the redo must publish the same events"
    assert len(inj.redos) == 1, inj.redos


@pytest.mark.parametrize("reader", ["process", "inline"])
def test_abort_with_an_open_batch_on_top_of_the_inflight_one(shop, tmp_path, monkeypatch, reader):
    # The 3rd and the 8th publish hold their transaction 0.5 s, then abort: meanwhile the writer's next
    # transactions are applied into the open batch on top of the aborted batch's sealed state.
    # process reader (default): a batch goes as soon as the reader has caught up, so the open batch
    # holds the one or few transactions read before the main loop waits for the in-flight one.
    # inline reader, max_wait_ms 200: the open batch fills for 200 ms (dozens of transactions, events).
    inj = AbortInjector({3, 8}, delay=0.5).install(monkeypatch)
    overrides = {} if reader == "process" else {"batch": {"max_wait_ms": 200}}
    run_with_aborts(shop, tmp_path, inj, expected_aborts=2, until=lambda: inj.aborted >= 2,
                    source={"reader": reader}, **overrides)
    assert len(inj.redos) == 2, inj.redos
    assert any(r["open_txns"] > 0 for r in inj.redos), (
        f"no abort happened with an open batch on top of the in-flight one: {inj.redos}")
    if reader == "inline":
        assert any(r["open_events"] > 0 for r in inj.redos), f"no open batch with events at an abort: {inj.redos}"
