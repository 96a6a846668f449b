"""An aggregate worker (`cdc-bridge worker`): a member of the bridge's consumer group over the commands topic.

    commands topic (partition p) ──► applier over LMDB (partition p) ──► events + dead letters
                                                                     ──► changelog records + marker
                                                                     ──► consumed offsets
                                                       all in ONE Kafka transaction per batch

Each worker owns the partitions the group assigns it (cooperative-sticky: a rebalance moves only
the partitions that change hands). Exactly once, per batch:

  1. consume up to worker.max_records commands records (read_committed: whole ingest batches)
  2. apply them, partition by partition in offset order, to the state (in memory)
  3. ONE Kafka transaction: the events, dead letters, a changelog record per changed aggregate, a
     progress marker per partition, and the consumed offsets with the consumer's group metadata
     (send_offsets_to_transaction, KIP-447): a worker that lost a partition to a newer generation
     of the group cannot commit it, its transaction is aborted
  4. write LMDB (records + per-partition progress), after the Kafka commit

A crash between 3 and 4 leaves LMDB behind: when the partition is assigned again (to this worker
or another), its state is restored from the changelog first (apply/restore.py). No transaction is
open while the consumer polls, so rebalance callbacks never meet a half-done batch.

If Kafka aborts a batch, its state changes are dropped and the consumer is rewound to the batch's
first offsets (the partitions still owned are applied again). If the producer is fenced (another
process took this worker's transactional.id, or it was stopped past the transaction timeout), the
worker drops its consumer and producer and joins the group again as a new member.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from cdc_bridge.apply.applier import TransactionApplier
from cdc_bridge.apply.changelog import changelog_records, changelog_topic_name, changelog_topic_spec, progress_meta
from cdc_bridge.apply.in_process import build_runtime
from cdc_bridge.apply.restore import ChangelogRestorer
from cdc_bridge.aggregate.event import DomainEvent
from cdc_bridge.aggregate.router import partition_for
from cdc_bridge.config import BridgeConfig
from cdc_bridge.ingest.commands_topic import commands_topic_name, commands_topic_spec, decode_record
from cdc_bridge.mapping.command import DeadLetter
from cdc_bridge.mapping.loader import MappingSet
from cdc_bridge.observability.metrics import BridgeMetrics
from cdc_bridge.sink.clients import base_config
from cdc_bridge.sink.errors import BatchAbortedError, FatalPublishError, describe, kafka_error_of
from cdc_bridge.sink.publisher import PublisherHooks, TransactionalPublisher
from cdc_bridge.sink.topics import TopicAdmin, TopicSpec
from cdc_bridge.state.lmdb_store import LmdbStateStore

log = structlog.get_logger(__name__)


class StopWorker(Exception):
    """SIGTERM/SIGINT while waiting."""


class MemberLost(Exception):
    """The producer was fenced: this member's session is over; join again as a new one."""


@dataclass
class _Batch:
    events: list[DomainEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    next: dict[int, int] = field(default_factory=dict)       # partition -> offset after the last applied
    source_ts: dict[int, float] = field(default_factory=dict)
    commit_ts: list[float] = field(default_factory=list)     # source commit times of the txn records

    def __bool__(self) -> bool:
        return bool(self.next)


def default_worker_id() -> str:
    return socket.gethostname().split(".")[0] or "worker"


class AggregateWorker:
    """One member of the workers' consumer group. `run()` returns 0 when stopped."""

    def __init__(self, config: BridgeConfig, mappings: MappingSet, metrics: BridgeMetrics | None = None,
                 worker_id: str | None = None) -> None:
        self.config = config
        self.mappings = mappings
        self.metrics = metrics or BridgeMetrics()
        self.worker_id = worker_id or config.worker.id or default_worker_id()
        self.transactional_id = f"{config.name}.worker.{self.worker_id}"
        self.group_id = config.worker.group_id or f"{config.name}.workers"
        self.commands_topic = commands_topic_name(config)
        self.changelog_topic = changelog_topic_name(config)
        self.dead_letter_topic = config.kafka.dead_letter_topic or f"{config.name}.dead-letter"
        self._stop = threading.Event()
        self.store: LmdbStateStore | None = None
        self.applier: TransactionApplier | None = None
        self._consumer: Any = None
        self._publisher: TransactionalPublisher | None = None
        self._restorer: ChangelogRestorer | None = None
        self.owned: set[int] = set()       # processing
        self._pending: set[int] = set()    # assigned, state not checked yet
        self.restoring: set[int] = set()   # assigned, state being restored
        self._starting: dict[int, tuple[int | None, float, float]] = {}   # state current, fetch not started:
        #                                            start offset, waiting since, next log (monotonic)
        self.kafka_ok = False
        self.member = False
        self.last_loop = time.time()
        self.batches_committed = 0
        self.started = threading.Event()   # set once the first session has joined the group
        self._lag_checked = 0.0
        self._message_limits: dict[str, int] = {}

    # ---------------------------------------------------------------- control, health
    def stop(self) -> None:
        self._stop.set()

    def health(self) -> tuple[bool, dict[str, Any]]:
        age = time.time() - self.last_loop
        return age < 60.0, {"loop_age_seconds": round(age, 3)}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        restoring = {str(p): round(t.ratio, 3) for p, t in (self._restorer.tasks.items() if self._restorer else ())}
        ok = self.kafka_ok and self.member and not restoring and not self._pending and not self._starting
        self.metrics.ready.set(1 if ok else 0)
        return ok, {
            "kafka_connected": self.kafka_ok,
            "group_member": self.member,
            "worker_id": self.worker_id,
            "partitions": sorted(self.owned),
            "restoring": restoring,
            "waiting_for_state_check": sorted(self._pending),
            "waiting_for_fetch_start": sorted(self._starting),
        }

    # ---------------------------------------------------------------- lifecycle
    def run(self) -> int:
        loop_tid = threading.get_native_id()
        self.metrics.cpu.sources = lambda: (loop_tid, None)
        try:
            self._open()
            while not self._stop.is_set():
                try:
                    self._session()
                except MemberLost as e:
                    self.metrics.errors.labels("worker_fenced").inc()
                    log.warning("this worker lost its place in the group; joining again", reason=str(e))
                    self._sleep(1.0)
        except StopWorker:
            pass
        finally:
            if self.store is not None:
                self.store.close()
        log.info("worker stopped", worker_id=self.worker_id)
        return 0

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise StopWorker()

    def _open(self) -> None:
        cfg = self.config
        specs = [commands_topic_spec(cfg), changelog_topic_spec(cfg),
                 TopicSpec.dead_letter(self.dead_letter_topic, cfg.kafka)]
        specs.extend(TopicSpec.events(a.events_topic, cfg.kafka) for a in self.mappings.aggregates)
        admin = TopicAdmin(cfg.kafka, sleep=self._sleep)
        admin.ensure_topics(specs)
        self._message_limits = admin.message_limits
        self.store = LmdbStateStore(cfg.state.dir, partitions=cfg.state.partitions, map_size=cfg.state.map_size_mb << 20)
        self.applier = TransactionApplier(build_runtime(cfg, self.mappings, self.store), self.mappings)
        log.info("aggregate worker starting", worker_id=self.worker_id, group=self.group_id,
                 transactional_id=self.transactional_id, commands_topic=self.commands_topic,
                 changelog_topic=self.changelog_topic, state=str(cfg.state.dir))

    def _consumer_config(self) -> dict[str, Any]:
        w = self.config.worker
        conf = base_config(self.config.kafka)
        conf.update({
            "group.id": self.group_id,
            "client.id": f"{self.config.kafka.client_id}-{self.worker_id}",
            "isolation.level": "read_committed",   # whole ingest batches; stable committed offsets (KIP-447)
            "enable.auto.commit": False,           # offsets travel in the producer's transaction
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": w.session_timeout_ms,
            "heartbeat.interval.ms": max(500, w.session_timeout_ms // 5),
            "max.poll.interval.ms": w.max_poll_interval_ms,
            "enable.partition.eof": False,
        })
        return conf

    def _session(self) -> None:
        """One membership: a producer (init_transactions fences this worker's previous incarnation),
        a consumer in the group, the loop. Ends on stop (StopWorker) or when fenced (MemberLost)."""
        cfg = self.config
        assert self.store is not None
        publisher = TransactionalPublisher(
            cfg.kafka, transactional_id=self.transactional_id, checkpoint_topic=self.changelog_topic,
            dead_letter_topic=self.dead_letter_topic, bridge_name=cfg.name, partitioner=partition_for,
            hooks=PublisherHooks.with_fault_injection(
                on_retry=lambda op, err: self.metrics.errors.labels(f"kafka_{op}_retry").inc()),
            startup_sleep=self._sleep, offsets_of_topic=self.changelog_topic)
        publisher.set_message_limits(self._message_limits)
        publisher.start()
        self._publisher = publisher
        self.kafka_ok = True
        self.metrics.kafka_connected.set(1)
        self._restorer = ChangelogRestorer(cfg.kafka, self.changelog_topic, self.store, self.metrics,
                                           self.transactional_id)
        consumer = Consumer(self._consumer_config())
        self._consumer = consumer
        consumer.subscribe([self.commands_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_lost)
        max_records = cfg.worker.max_records
        timeout = cfg.worker.max_wait_ms / 1000
        try:
            while not self._stop.is_set():
                now = time.time()
                self.last_loop = now
                self.metrics.last_loop_timestamp.set(now)
                self.readiness()
                if self._pending:
                    self._check_state(self._pending)
                if self._restorer.tasks:
                    for p, start in self._restorer.step(0.5).items():
                        self._start_partition(p, start)
                for p, (start, _, _) in list(self._starting.items()):
                    self._start_partition(p, start)
                busy = self._restorer.tasks or self._starting
                msgs = self._poll(consumer, max_records, timeout if not busy else 0.05)
                if msgs:
                    self._process(msgs)
                self._update_lag()
        finally:
            self._end_session()

    @staticmethod
    def _poll(consumer: Any, max_records: int, timeout: float) -> list[Any]:
        """What is fetched already (up to max_records), else the first record within timeout plus what came
        with it. (consume(n, timeout) alone would wait out the timeout for n records: latency when idle.)"""
        msgs = consumer.consume(max_records, 0)
        if msgs:
            return msgs
        first = consumer.poll(timeout)
        if first is None:
            return []
        return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]

    def _end_session(self) -> None:
        consumer, self._consumer = self._consumer, None
        publisher, self._publisher = self._publisher, None
        restorer, self._restorer = self._restorer, None
        if consumer is not None:
            try:
                consumer.close()   # leaves the group: its partitions move at once (no session timeout wait)
            except Exception as e:  # noqa: BLE001 - closing must not hide the error that ended the session
                log.warning("error closing the consumer", error=str(e))
        if restorer is not None:
            restorer.close()
        if publisher is not None:
            try:
                publisher.close()
            except Exception as e:  # noqa: BLE001
                log.warning("error closing the Kafka producer", error=str(e))
        for p in list(self.owned | self.restoring | self._pending | set(self._starting)):
            self._forget(p)
        self.kafka_ok = self.member = False
        self.metrics.kafka_connected.set(0)

    # ---------------------------------------------------------------- rebalances (called inside consume())
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.member = True
        self.started.set()
        # assigned, but paused until the partition's state is known to be current
        consumer.incremental_assign(partitions)
        if partitions:
            consumer.pause(partitions)
        new = {tp.partition for tp in partitions}
        self._pending |= new
        self.metrics.rebalances.labels("assigned").inc(len(new))
        log.info("partitions assigned", partitions=sorted(new), worker_id=self.worker_id)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # no Kafka transaction is open here: every batch is committed before the next poll
        gone = {tp.partition for tp in partitions}
        consumer.incremental_unassign(partitions)
        for p in gone:
            self._forget(p)
        self.metrics.rebalances.labels("revoked").inc(len(gone))
        if gone:
            log.info("partitions revoked", partitions=sorted(gone), worker_id=self.worker_id)

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        try:
            consumer.incremental_unassign(partitions)
        except KafkaException:
            pass
        for p in gone:
            self._forget(p)
        self.member = False
        self.metrics.rebalances.labels("lost").inc(len(gone))
        log.warning("partitions lost (the group moved on without this worker)", partitions=sorted(gone),
                    worker_id=self.worker_id)

    def _forget(self, p: int) -> None:
        self.owned.discard(p)
        self._pending.discard(p)
        self._starting.pop(p, None)
        if p in self.restoring and self._restorer is not None:
            self._restorer.cancel({p})
        self.restoring.discard(p)
        for g in (self.metrics.worker_offset, self.metrics.worker_lag_records, self.metrics.worker_lag_seconds,
                  self.metrics.restore_progress):
            try:
                g.remove(str(p))
            except KeyError:
                pass
        self.metrics.worker_partitions.set(len(self.owned))

    # ---------------------------------------------------------------- state of assigned partitions
    def _check_state(self, partitions: set[int]) -> None:
        """Committed offsets (stable: waits out the previous owner's transaction), then current or restore."""
        assert self._consumer is not None and self._restorer is not None
        todo = sorted(partitions)
        tps = [TopicPartition(self.commands_topic, p) for p in todo]
        while True:
            try:
                committed = self._consumer.committed(tps, timeout=10)
                break
            except KafkaException as e:
                err = kafka_error_of(e)
                # (no poll() here: it could hand out a record of an owned partition that would be skipped)
                log.info("waiting for stable committed offsets (a previous owner's transaction is undecided)",
                         partitions=todo, error=describe(err) if err else str(e))
                self._sleep(0.2)
        for tp in committed:
            p = tp.partition
            if p not in self._pending:
                continue
            offset = tp.offset if tp.offset >= 0 else None
            start = self._restorer.plan(p, offset)
            if p not in self._pending:   # revoked meanwhile (a rebalance callback ran inside a Kafka call)
                self._restorer.cancel({p})
                continue
            self._pending.discard(p)
            if start == -1:
                self.restoring.add(p)
            else:
                self._start_partition(p, start)

    def _start_partition(self, p: int, start: int | None) -> None:
        assert self._consumer is not None
        self.restoring.discard(p)
        tp = TopicPartition(self.commands_topic, p, start if start is not None else OFFSET_BEGINNING)
        try:
            self._consumer.seek(tp)
        except KafkaException as e:
            err = kafka_error_of(e)
            if err is None or err.code() != KafkaError._STATE:
                raise
            if not any(t.topic == self.commands_topic and t.partition == p for t in self._consumer.assignment()):
                # no longer assigned (revoked while its state was checked or restored): its next owner, or
                # this worker at its next assignment, starts it from the committed offset
                log.info("partition not started: no longer assigned", partition=p, worker_id=self.worker_id)
                self._forget(p)
                return
            # assigned, but the consumer has not started fetching it: librdkafka first reads the committed
            # offset itself, and that waits out the same undecided transaction of a previous owner as
            # _check_state did, on its own retry timer. Seek again from the loop until it has.
            now = time.monotonic()
            _, since, next_log = self._starting.get(p, (start, now, now))
            if now >= next_log:   # at once, then every 30 s
                log.info("partition start deferred: the consumer is not fetching it yet", partition=p,
                         waiting_seconds=round(now - since, 1), worker_id=self.worker_id)
                next_log = now + 30
            self._starting[p] = (start, since, next_log)
            return
        self._starting.pop(p, None)
        self._consumer.resume([TopicPartition(self.commands_topic, p)])
        self.owned.add(p)
        self.metrics.worker_partitions.set(len(self.owned))
        if start is not None:
            self.metrics.worker_offset.labels(str(p)).set(start)
        log.info("partition started", partition=p, offset=start if start is not None else "beginning")

    # ---------------------------------------------------------------- the batch
    def _process(self, msgs: list[Any]) -> None:
        assert self.applier is not None
        applier = self.applier
        first_read: dict[int, int] = {}      # where each partition's records of this poll begin
        committed: dict[int, int] = {}       # ... and where they are committed up to, within this poll
        batch = _Batch()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise MemberLost(f"consumer error: {describe(err)}")
                log.warning("commands topic read error", error=describe(err))
                continue
            p = msg.partition()
            if p not in self.owned:
                continue   # revoked (or paused) meanwhile
            offset = msg.offset()
            first_read.setdefault(p, offset)
            rec = decode_record(msg.value(), msg.headers())
            if rec.kind == "txn":
                result = applier.apply_wire(rec, rec.wire, full_image=rec.full_image, partitions=(p,))
                batch.events.extend(result.events)
                batch.dead_letters.extend(result.dead_letters)
                batch.commit_ts.append(rec.commit_ts)
            elif rec.kind == "watermark":
                batch.dead_letters.extend(applier.expire(rec.commit_ts, (p,)))
            else:   # sweep: reads the committed state, so what came before is committed first
                if batch:
                    if not self._commit(batch):
                        self._rewind(first_read, committed)
                        return
                    committed.update(batch.next)
                    batch = _Batch()
                assert rec.stream_from is not None
                result = applier.sweep(rec.stream_from, rec.position, rec.commit_ts, partitions=(p,))
                batch.events.extend(result.events)
                batch.dead_letters.extend(result.dead_letters)
            batch.next[p] = offset + 1
            batch.source_ts[p] = rec.commit_ts
        if batch and not self._commit(batch):
            self._rewind(first_read, committed)

    def _rewind(self, first_read: dict[int, int], committed: dict[int, int]) -> None:
        """After an aborted batch: read again whatever this poll handed out and is not committed."""
        assert self._consumer is not None
        for p, first in first_read.items():
            if p in self.owned:
                try:
                    self._consumer.seek(TopicPartition(self.commands_topic, p, committed.get(p, first)))
                except KafkaException as e:
                    log.warning("cannot rewind the partition; restarting the session", partition=p, error=str(e))
                    raise MemberLost(f"rewind of partition {p} failed: {e}") from e

    def _commit(self, batch: _Batch) -> bool:
        """The batch's Kafka transaction, then LMDB. False when Kafka aborted it (nothing of it is anywhere)."""
        assert self.store is not None and self._publisher is not None and self._consumer is not None
        store, publisher = self.store, self._publisher
        sealed = store.seal(None, {})
        records = changelog_records(self.changelog_topic, sealed.encoded, batch.next)
        prepared = publisher.prepare(batch.events, batch.dead_letters, None, records)
        offsets = [TopicPartition(self.commands_topic, p, off) for p, off in sorted(batch.next.items())]
        try:
            result = publisher.publish_prepared(prepared, offsets=offsets,
                                                group_metadata=self._consumer.consumer_group_metadata())
        except BatchAbortedError as e:
            store.discard_sealed(sealed)
            self.metrics.batch_aborts.inc()
            log.warning("Kafka transaction aborted; the batch is applied again", error=str(e))
            return False
        except FatalPublishError as e:
            store.discard_sealed(sealed)
            raise MemberLost(e.message) from e
        delivered = publisher.delivered_offsets
        store.amend(sealed, progress_meta(
            (p, off, delivered[p] + 1 if p in delivered else None) for p, off in batch.next.items()))
        store.write(sealed)
        store.release_written()
        self.batches_committed += 1
        m = self.metrics
        m.batches.inc()
        m.kafka_commit_seconds.observe(result.commit_seconds)
        now = time.time()
        for ts in batch.commit_ts:
            m.end_to_end_seconds.observe(max(0.0, now - ts))
        m.count_outcome(batch.events, batch.dead_letters, prepared.too_large)
        for p, off in batch.next.items():
            m.worker_offset.labels(str(p)).set(off)
            m.worker_lag_seconds.labels(str(p)).set(max(0.0, now - batch.source_ts[p]))
        return True

    def _update_lag(self) -> None:
        """Records behind the end of each owned partition (cached high watermarks: no broker round trip)."""
        now = time.monotonic()
        if now - self._lag_checked < 1.0 or self._consumer is None or not self.owned:
            return
        self._lag_checked = now
        tps = [TopicPartition(self.commands_topic, p) for p in sorted(self.owned)]
        try:
            positions = self._consumer.position(tps)
        except KafkaException:
            return
        for tp in positions:
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is None or high < 0 or tp.offset < 0:
                continue
            lag = max(0, high - tp.offset)
            self.metrics.worker_lag_records.labels(str(tp.partition)).set(lag)
            if lag == 0:
                self.metrics.worker_lag_seconds.labels(str(tp.partition)).set(0)
        held, _ = self.applier.runtime.held_stats(self.owned) if self.applier else (0, None)
        self.metrics.held_children.set(held)
