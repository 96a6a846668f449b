"""Ingest: binlog -> mappings -> batches, each ONE Kafka transaction with the source checkpoint.

What a batch carries depends on where the aggregates run:

- embedded (`cdc-bridge run`, the default): the apply stage runs in this process
  (apply/in_process.py): the batch carries the events and dead letters it produced (plus the
  command log when enabled), and LMDB is written after the Kafka commit;
- scale-out (`cdc-bridge ingest` + `cdc-bridge worker`): the batch carries the commands, one
  record per source transaction and partition on the commands topic (ingest/commands_topic.py),
  for the aggregate workers (apply/worker.py); ingest keeps no state but its checkpoint.

Exactly once, in the order Quix Streams' Checkpoint.commit() names it:
  1. apply a batch of source transactions (state in memory, not yet in LMDB; or command records)
  2. produce its records, then ONE checkpoint record, in ONE Kafka transaction
  3. commit the Kafka transaction
  4. commit LMDB (state + applied position), embedded only
A crash after 3 and before 4 leaves LMDB behind Kafka: on restart the missing source
transactions are re-applied to state without being published again. A crash before 3 aborts
the Kafka transaction (init_transactions fences it), and the batch is read again from the binlog.

Steps 2-3 of batch N run on a committer thread while the main thread applies batch N+1 on top
of N's sealed (not yet written) state, and step 4 on the main thread once N's Kafka commit is known
(right after N+1 is handed over, so its fsync overlaps N+1's Kafka transaction, or on an idle tick;
not on a thread of its own, see LmdbStateStore.mark_committed); LMDB writes follow in order, a
bounded number of batches behind. If Kafka aborts N, both N and the part of N+1 already applied
are dropped from state and applied again, then N is published again.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog

from cdc_bridge.aggregate.event import DomainEvent
from cdc_bridge.aggregate.router import partition_for
from cdc_bridge.apply.in_process import InProcessApply
from cdc_bridge.config import BridgeConfig
from cdc_bridge.ingest.change_stream import ChangeStream, ChangeStreamSpec, streamed_tables, topic_prefix
from cdc_bridge.ingest.commands_topic import (Record, commands_topic_name, commands_topic_spec, sweep_records,
                                              txn_records, watermark_records)
from cdc_bridge.ingest.reader_process import ProcessSource
from cdc_bridge.ingest.resnapshot import split_signals, transactions_of
from cdc_bridge.ingest.snapshot_phase import SnapshotPhase
from cdc_bridge.mapping.command import Command, DeadLetter
from cdc_bridge.mapping.packed import PackedCommands, packing_wanted
from cdc_bridge.mapping.translate import command_to_wire
from cdc_bridge.mapping.loader import MappingSet, load_mappings
from cdc_bridge.observability.metrics import NON_REJECTION_REASONS, BridgeMetrics  # noqa: F401 (re-exported)
from cdc_bridge.sink.checkpoint import read_checkpoint
from cdc_bridge.sink.errors import BatchAbortedError
from cdc_bridge.sink.publisher import RECORD_OVERHEAD, PublisherHooks, TransactionalPublisher
from cdc_bridge.sink.topics import TopicAdmin, TopicSpec
from cdc_bridge.source.binlog import BinlogSource
from cdc_bridge.source.errors import SourceUnavailableError
from cdc_bridge.source.position import SourcePosition, binlog_file_index
from cdc_bridge.source.preflight import check_server, connect, current_position, position_available
from cdc_bridge.source.transaction import SourceTransaction
from cdc_bridge.state.lmdb_store import LmdbStateStore

log = structlog.get_logger(__name__)


class StopRequested(Exception):
    """Raised inside retry loops when SIGTERM/SIGINT arrives, to leave them at once."""


class RecoveryError(Exception):
    """Kafka's checkpoint and LMDB's state cannot be reconciled automatically."""

    exit_code = 95   # the state's range (90-95); 70 is a fatal Kafka error


@dataclass
class Batch:
    """Source transactions read but not yet committed to Kafka (and, embedded, applied to state)."""

    txns: list[SourceTransaction] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)   # commands topic records (scale-out, command log),
                                                          # change stream records
    change_counts: dict[str, int] = field(default_factory=dict)   # change stream topic -> change records
    events: list[DomainEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    started: float = 0.0

    def __len__(self) -> int:
        return len(self.txns)

    @property
    def position(self) -> SourcePosition:
        return self.txns[-1].position


@dataclass
class _InFlight:
    """A batch handed to the committer thread: its Kafka transaction, then its LMDB write."""

    batch: Batch
    position: SourcePosition | None   # as given to _flush (None: the batch's own position)
    extra: dict[str, Any] | None
    checkpoint: dict[str, Any]
    sealed: Any                       # the state's sealed write set of this batch (embedded), else None
    prepared: Any                     # its Kafka records, serialized (publisher.prepare)
    future: "Future[Any] | None" = None


class IngestPipeline:
    """The main loop of `run` (apply = InProcessApply) and `ingest` (apply = None: the commands topic).
    `run()` returns when stopped; errors propagate with exit codes."""

    def __init__(self, config: BridgeConfig, mappings: MappingSet, metrics: BridgeMetrics | None = None,
                 source_factory: Callable[[Any, SourcePosition | None], Any] | None = None,
                 fresh_start: SourcePosition | None = None, *, embedded: bool = True) -> None:
        self.config = config
        self.fresh_start = fresh_start  # where a bridge without checkpoint starts, when not the database's
        # Where transactions come from: the binlog (default) or, for `rebuild`, the command log.
        self.source_factory = source_factory
        # the signal table (ad-hoc re-snapshot requests, ingest/resnapshot.py) is read with the mapped tables
        self.mappings = mappings.with_signal_table(config.source.signal_table)
        self.metrics = metrics or BridgeMetrics()
        self.apply: InProcessApply | None = InProcessApply(config, mappings, self.metrics) if embedded else None
        # commands go to the commands topic: always without the apply stage here, else as the command log
        self.write_commands = self.apply is None or config.command_log.enabled
        self.commands_topic = commands_topic_name(config)
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self.checkpoint_extra: dict[str, Any] = {}  # carried in every checkpoint (e.g. how the state began)
        self.streaming = threading.Event()  # set once recovery is done and the binlog is being read
        self._source: Any = None
        self.publisher: TransactionalPublisher | None = None
        self.origin: SourcePosition | None = None
        self.committed: SourcePosition | None = None
        self.batches_committed = 0
        self.last_loop = time.time()
        self.source_connected = False
        self.kafka_ok = False
        self.lag_seconds = 0.0
        # called on the committer thread once a batch is committed in Kafka (its LMDB write may follow)
        self.on_batch_committed: Callable[[Batch], None] | None = None
        self._batch = Batch()                      # the open batch, being applied
        self._inflight: _InFlight | None = None    # the batch being committed on the committer thread
        self._committer: ThreadPoolExecutor | None = None
        self._last_commit_ts = 0.0  # source commit time of the last published transaction
        # the Debezium-compatible change stream (ingest/change_stream.py), of the binlog only (not of a command
        # log replayed by `rebuild`); built in _open, once the server's flavor and the topics are known
        self._change_tables = (streamed_tables(config, self.mappings)
                               if config.change_stream.enabled and source_factory is None else frozenset())
        self.change_stream: ChangeStream | None = None
        self._flavor = "mysql"

    @property
    def store(self) -> LmdbStateStore | None:
        return self.apply.store if self.apply is not None else None

    @property
    def runtime(self) -> Any:
        return self.apply.runtime if self.apply is not None else None

    # ---------------------------------------------------------------- control
    def stop(self) -> None:
        """Thread/signal-safe: stop reading, finish the open batch, exit."""
        self._stop.set()
        if self._source is not None:
            self._source.stop()

    def request_reload(self) -> None:
        """SIGHUP: reload mappings at the next transaction boundary."""
        self._reload_requested.set()
        if self._source is not None:
            self._source.stop()  # wake up the reader; the loop restarts it after the reload

    # ---------------------------------------------------------------- health
    def health(self) -> tuple[bool, dict[str, Any]]:
        age = time.time() - self.last_loop
        # The loop ticks at least every heartbeat; a minute of silence means it is stuck.
        return age < max(60.0, 10 * self.config.source.heartbeat_seconds), {"loop_age_seconds": round(age, 3)}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ok = self.source_connected and self.kafka_ok and self.lag_seconds <= self.config.ready_max_lag_seconds
        self.metrics.ready.set(1 if ok else 0)
        return ok, {
            "source_connected": self.source_connected,
            "kafka_connected": self.kafka_ok,
            "lag_seconds": round(self.lag_seconds, 3),
            "position": str(self.committed) if self.committed else None,
        }

    # ---------------------------------------------------------------- setup
    def _topic_specs(self) -> list[TopicSpec]:
        k = self.config.kafka
        specs = [TopicSpec.checkpoint(self.checkpoint_topic, k), TopicSpec.dead_letter(self.dead_letter_topic, k)]
        if self.apply is not None:
            specs.extend(TopicSpec.events(a.events_topic, k) for a in self.mappings.aggregates)
        if self.write_commands:
            specs.append(commands_topic_spec(self.config))
        return specs + self._change_topic_specs(self._change_tables)

    def _change_topic_specs(self, tables: frozenset[str]) -> list[TopicSpec]:
        if not tables:
            return []
        k, prefix = self.config.kafka, topic_prefix(self.config)
        specs = [TopicSpec.change_stream(f"{prefix}.{t}", k) for t in sorted(tables)]
        if self.config.change_stream.transaction_topic:
            specs.append(TopicSpec.change_stream(f"{prefix}.transaction", k, partitions=1))  # BEGIN/END in order
        return specs

    def _make_change_stream(self, tables: frozenset[str], partitions: dict[str, int]) -> ChangeStream:
        cs = self.config.change_stream
        spec = ChangeStreamSpec(prefix=topic_prefix(self.config), connector=self._flavor, tables=tables,
                                tombstones=cs.tombstones_on_delete, decimal=cs.decimal_handling,
                                transaction_topic=cs.transaction_topic, partitions=dict(partitions),
                                default_partitions=self.config.kafka.topic_partitions)
        return ChangeStream(spec)

    @property
    def command_log_topic(self) -> str:
        return self.commands_topic

    @property
    def checkpoint_topic(self) -> str:
        return self.config.kafka.checkpoint_topic or f"{self.config.name}.checkpoints"

    @property
    def dead_letter_topic(self) -> str:
        return self.config.kafka.dead_letter_topic or f"{self.config.name}.dead-letter"

    def _sleep_or_stop(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise StopRequested()

    def _check_source(self):
        """Preflight the database, retrying an unreachable server (or a refused login) with backoff
        forever: the monolith's database may come back; configuration errors are raised at once."""
        delay = self.config.source.reconnect_initial_backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                return check_server(self.config.source)
            except SourceUnavailableError as e:
                self.metrics.errors.labels("source_connect").inc()
                self.metrics.reconnects.labels("source", "connect_failed").inc()
                log.error("cannot connect to the source database; retrying", attempt=attempt,
                          retry_in_seconds=round(delay, 2), error=str(e))
                self._sleep_or_stop(delay)
                delay = min(delay * 2, self.config.source.reconnect_max_backoff)

    def _open(self) -> None:
        cfg = self.config
        if self.source_factory is None:
            info = self._check_source()
            log.info("source checked", flavor=info.flavor, version=info.version)
            self._flavor = info.flavor
        admin = TopicAdmin(cfg.kafka, sleep=self._sleep_or_stop)
        partitions = admin.ensure_topics(self._topic_specs())
        if self._change_tables:
            self.change_stream = self._make_change_stream(self._change_tables, partitions)
        if self.apply is not None:
            self.apply.open()
        self.publisher = TransactionalPublisher(
            cfg.kafka,
            transactional_id=cfg.name,
            checkpoint_topic=self.checkpoint_topic,
            dead_letter_topic=self.dead_letter_topic,
            bridge_name=cfg.name,
            partitioner=partition_for,
            hooks=self._publisher_hooks(),
            startup_sleep=self._sleep_or_stop,
        )
        self.publisher.set_message_limits(admin.message_limits)
        # init_transactions first: it fences a previous incarnation and resolves its open
        # transaction, so the checkpoint read below is final.
        self.publisher.start()
        self.kafka_ok = True
        self.metrics.kafka_connected.set(1)

    def _publisher_hooks(self) -> PublisherHooks:
        return PublisherHooks.with_fault_injection(
            on_retry=lambda op, err: self.metrics.errors.labels(f"kafka_{op}_retry").inc())

    def _recover(self) -> tuple[SourcePosition | None, SourcePosition | None]:
        """Returns (start position for the source, position up to which we only re-apply state)."""
        ckpt = read_checkpoint(self.config.kafka, self.checkpoint_topic, self.config.name)
        lmdb_pos = self.apply.position() if self.apply is not None else None
        lmdb_meta = self.apply.meta() if self.apply is not None else {}
        if ckpt is None:
            if lmdb_pos is not None:
                raise RecoveryError(
                    f"LMDB state in {self.config.state.dir} is at {lmdb_pos} but Kafka has no checkpoint in "
                    f"{self.checkpoint_topic} for bridge {self.config.name!r}: the state belongs to another "
                    "bridge or the checkpoint topic was deleted. Point state.dir to an empty directory to "
                    "start over, or restore the checkpoint topic."
                )
            if self.source_factory is None and self.config.snapshot.mode != "never":
                return SnapshotPhase(self).take(over_existing_state=False), None
            start = self._fresh_start_position()
            self.origin = start
            log.info("no checkpoint: starting fresh", start=str(start) if start else "earliest")
            if start is not None:
                # Pin the origin at once: a crash before the first batch must resume here,
                # not at a later "current" position that would skip what was written meanwhile.
                self._commit_checkpoint_only(start)
            return start, None
        ck_pos = SourcePosition.from_dict(ckpt["position"])
        self.origin = SourcePosition.from_dict(ckpt["origin"]) if ckpt.get("origin") else None
        self.batches_committed = int(ckpt.get("batch", 0))
        self.committed = ck_pos
        snap = ckpt.get("snapshot")
        if snap:
            self.checkpoint_extra = {"snapshot": snap}
        if self.apply is None:
            # no state here: Kafka's checkpoint is all there is to recover
            if snap and not snap.get("done"):
                return SnapshotPhase(self).resume(dict(snap)), None
            return self._stream_start_or_new_snapshot(ck_pos), None
        if lmdb_pos is None and snap and (snap.get("rows") or not snap.get("done")):
            # (a snapshot that found no rows is re-applied like any history: from the origin)
            raise RecoveryError(
                f"LMDB state in {self.config.state.dir} is empty, but this bridge's state began with a snapshot of "
                "existing rows, which cannot be re-applied from the binlog. Restore the state directory from a "
                "backup, or start a new bridge (a new `name`, new topics) and let consumers switch over."
            )
        if snap and not snap.get("done"):
            lmdb_snap = lmdb_meta.get("snapshot") or {}
            progress = {**snap, "cursor": lmdb_snap.get("cursor"), "rows": lmdb_snap.get("rows", 0)}
            behind = lmdb_snap.get("cursor") != snap.get("cursor")
            return SnapshotPhase(self).resume(progress, replay_until=snap.get("cursor") if behind else None), None
        if lmdb_pos is None:
            if self.origin is None:
                raise RecoveryError(
                    "Kafka has a checkpoint but LMDB is empty and the checkpoint names no origin to replay from; "
                    "run `cdc-bridge rebuild` into new topics."
                )
            log.warning("LMDB is empty: re-applying history from the bridge's origin", origin=str(self.origin),
                        checkpoint=str(ck_pos))
            return self.origin, ck_pos
        if lmdb_pos == ck_pos or lmdb_pos.order_key == ck_pos.order_key:
            log.info("state and checkpoint agree", position=str(ck_pos), batch=self.batches_committed)
            return self._stream_start_or_new_snapshot(ck_pos), None
        if lmdb_pos < ck_pos:
            log.warning("LMDB is behind the Kafka checkpoint: re-applying without publishing",
                        lmdb=str(lmdb_pos), checkpoint=str(ck_pos))
            return lmdb_pos, ck_pos
        raise RecoveryError(
            f"LMDB state ({lmdb_pos}, batch {lmdb_meta.get('batch')}) is AHEAD of the Kafka checkpoint "
            f"({ck_pos}, batch {self.batches_committed}). State was committed for events Kafka does not have, "
            "which should never happen (was the checkpoint topic truncated, or state copied from another bridge?). "
            f"Move {self.config.state.dir} aside and restart to rebuild state from the origin {self.origin}."
        )

    def _stream_start_or_new_snapshot(self, ck_pos: SourcePosition) -> SourcePosition:
        if (self.source_factory is None and self.config.snapshot.mode == "when_needed"
                and not self._position_available(ck_pos)):
            log.warning("the saved position was purged from the server: taking a new snapshot "
                        "(snapshot.mode when_needed)", position=str(ck_pos))
            return SnapshotPhase(self).take(over_existing_state=True)
        return ck_pos

    def _commit_checkpoint_only(self, position: SourcePosition) -> None:
        assert self.publisher is not None
        self._settle()
        origin = (self.origin or position).to_dict()
        self.publisher.publish_batch([], [], {**self.checkpoint_extra, "position": position.to_dict(), "origin": origin,
                                              "batch": self.batches_committed, "transactions": 0, "events": 0})
        if self.apply is not None:
            self.apply.commit(position, {**self.checkpoint_extra, "batch": self.batches_committed, "origin": origin})
        self.committed = position

    def _position_available(self, position: SourcePosition) -> bool:
        conn = connect(self.config.source)
        try:
            return position_available(conn, position)
        finally:
            conn.close()

    def snapshot(self) -> int:
        """`cdc-bridge snapshot`: take (or finish) a snapshot into this bridge's state, then return."""
        try:
            self._open()
            ckpt = read_checkpoint(self.config.kafka, self.checkpoint_topic, self.config.name)
            snap = (ckpt or {}).get("snapshot")
            if ckpt is None or (snap and not snap.get("done")):
                self._recover_snapshot_only(ckpt)
            else:
                start, replay_until = self._recover()
                if replay_until is not None:
                    raise RecoveryError("state is behind the Kafka checkpoint: run `cdc-bridge run` until it has "
                                        "caught up, then take the snapshot")
                SnapshotPhase(self).take(over_existing_state=True)
        except StopRequested:
            log.info("snapshot stopped; it resumes at the next start")
        finally:
            self._close()
        return 0

    def _recover_snapshot_only(self, ckpt: dict[str, Any] | None) -> None:
        if ckpt is None:
            if self.apply is not None and self.apply.position() is not None:
                self._recover()  # raises the state-without-checkpoint error
            SnapshotPhase(self).take(over_existing_state=False)
        else:
            self._recover()  # resumes the unfinished snapshot

    def _fresh_start_position(self) -> SourcePosition | None:
        if self.fresh_start is not None:
            return self.fresh_start
        if self.config.start == "earliest":
            return None
        import pymysql

        s = self.config.source
        conn = pymysql.connect(host=s.host, port=s.port, user=s.user, password=s.password.get_secret_value(),
                               connect_timeout=s.connect_timeout)
        try:
            return current_position(conn)
        finally:
            conn.close()

    # ---------------------------------------------------------------- main loop
    def run(self) -> int:
        loop_tid = threading.get_native_id()
        self.metrics.cpu.sources = lambda: (loop_tid, getattr(getattr(self._source, "_proc", None), "pid", None))
        try:
            self._open()
            start, replay_until = self._recover()
            self.streaming.set()
            self._stream(start, replay_until)
        except StopRequested:
            log.info("stopped while connecting")
        finally:
            self._close()
        return 0

    def _new_source(self, start: SourcePosition | None) -> Any:
        if self.source_factory is not None:
            return self.source_factory(self, start)
        tables = self.mappings.tables_and_columns()
        spec = self.change_stream.spec if self.change_stream is not None else None
        if spec is not None:
            tables.update({t: None for t in spec.tables})  # every column: Debezium's before/after hold them all
        if self.config.source.reader == "process":
            src: Any = ProcessSource(self.config.source, tables, start, from_earliest=start is None,
                                     log_level=self.config.log_level, mappings=self.mappings, change_stream=spec,
                                     pack=self.apply is not None and not self.write_commands and packing_wanted())
        else:
            src = BinlogSource(self.config.source, tables=tables, start=start, from_earliest=start is None,
                               describe=spec.tables if spec is not None else None)
        src.on_reconnect = lambda reason: self.metrics.reconnects.labels("source", reason).inc()
        return src

    def _stream(self, start: SourcePosition | None, replay_until: SourcePosition | None) -> None:
        cfg = self.config
        position = start
        while not self._stop.is_set():
            self._source = self._new_source(position)
            if self._stop.is_set() or (self._reload_requested.is_set() and replay_until is None):
                # a signal that came while there was no source to stop (start-up, recovery, the previous
                # reload): without this a SIGHUP then was logged but not carried out until the next signal
                self._source.stop()
            self.source_connected = True
            self.metrics.source_connected.set(1)
            # a source that can tell whether more is waiting lets a batch go the moment we caught up
            has_more = getattr(self._source, "has_more", None)
            for txn in self._source.transactions():
                now = time.time()
                self.last_loop = now
                self.metrics.last_loop_timestamp.set(now)
                self.readiness()  # keeps the cdc_bridge_ready gauge current without a prober
                batch = self._batch
                if txn is None:  # idle tick
                    if replay_until is None:
                        self.lag_seconds = 0.0 if not batch else now - batch.txns[-1].commit_ts
                        self.metrics.lag_seconds.set(self.lag_seconds)
                    if batch and (now - batch.started) * 1000 >= cfg.batch.max_wait_ms:
                        self._flush(batch, wait=False)
                    else:
                        self._settle(block=False)
                    continue
                if replay_until is not None:
                    if txn.position <= replay_until:
                        self._replay(txn)
                        position = txn.position   # the replay's progress: where it resumes after a SIGHUP
                        if txn.position.order_key == replay_until.order_key:
                            self._finish_replay(replay_until)
                            replay_until = None
                            self._reload_after_replay()
                        continue
                    self._finish_replay(replay_until)
                    replay_until = None
                    self._reload_after_replay()
                self._count_source(txn, now)
                self._apply(txn, batch)
                if not batch.started:
                    batch.started = now
                if (len(batch) >= cfg.batch.max_transactions or len(batch.events) >= cfg.batch.max_events
                        or (now - batch.started) * 1000 >= cfg.batch.max_wait_ms
                        or (has_more is not None and not has_more())):
                    self._flush(batch, wait=False)
            # The reader ended: stop requested, or a reload.
            self.source_connected = False
            self.metrics.source_connected.set(0)
            if self._batch:
                self._flush(self._batch)
            self._settle()
            if replay_until is not None:
                # A SIGHUP during the replay (state behind the Kafka checkpoint after a crash): the source
                # resumes the replay where it stopped, NOT at self.committed (the checkpoint: the rest of the
                # replay would be skipped and the state committed without it), and under the mappings it
                # began with (it rebuilds the state of events already published); the reload waits for
                # _reload_after_replay().
                continue
            position = self.committed or position
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self._reload_mappings()
        if replay_until is not None and self.apply is not None:
            log.warning("stopped before state caught up with the checkpoint; it continues at the next start")

    def _reload_after_replay(self) -> None:
        """State caught up with the checkpoint: a SIGHUP that came during the replay is carried out now
        (stopping the source ends the loop over it, which then reloads, see _stream)."""
        if self._reload_requested.is_set() and self._source is not None:
            self._source.stop()

    def _count_source(self, txn: SourceTransaction, now: float) -> None:
        m = self.metrics
        m.source_transactions.inc()
        self.lag_seconds = max(0.0, now - txn.commit_ts)
        m.lag_seconds.set(self.lag_seconds)
        for table, n in txn.rows_by_table().items():
            m.source_rows.labels(table).inc(n)

    def _commands_of(self, txn: SourceTransaction) -> tuple[list[tuple], list[DeadLetter]]:
        """The transaction's commands in their wire form (mapping/translate.py command_to_wire: Command
        objects are made only where something needs them) and the dead letters of its translation."""
        if txn.wire is not None:   # translated in the reader process
            return txn.wire, list(txn.dead_letters or ())
        if txn.packed is not None:   # ... and packed there: the tuples once, for what needs them
            txn.wire = txn.packed.wire()
            return txn.wire, list(txn.dead_letters or ())
        if txn.commands is not None:
            return [command_to_wire(c) for c in txn.commands], list(txn.dead_letters or ())
        if txn.sweep_from is not None:
            return [], []
        return self.mappings.translate(txn, wire=True)

    def _takes_packed(self, txn: SourceTransaction) -> bool:
        """The transaction's packed commands go to the apply stage as they are (mapping/packed.py): nothing
        else here needs them as tuples."""
        return (txn.packed is not None and txn.wire is None and self.apply is not None and not self.write_commands
                and txn.sweep_from is None)

    def _apply(self, txn: SourceTransaction, batch: Batch) -> None:
        packed = txn.packed if self._takes_packed(txn) else None
        if packed is not None:   # the reader packs no transaction with a signal row
            commands, dead, signals, counts = [], txn.dead_letters or (), [], packed.counts
        else:
            commands, dead = self._commands_of(txn)
            commands, signals = split_signals(commands, txn, self.mappings.signal_table is not None)
            counts = {}
            for w in commands:
                k = (w[8], w[5])   # table, operation
                counts[k] = counts.get(k, 0) + 1
        for (table, op), n in counts.items():
            self.metrics.commands.labels(table, op).inc(n)
        if self.write_commands:   # (never with packed commands: _takes_packed)
            partitions = self.config.state.partitions
            if txn.sweep_from is not None:
                batch.records.extend(sweep_records(self.commands_topic, partitions, txn.sweep_from, txn.position,
                                                   txn.commit_ts))
            else:
                batch.records.extend(txn_records(self.commands_topic, partitions, partition_for, commands, txn.gtid,
                                                 txn.position, txn.txn_id, txn.commit_ts, full_image=txn.full_image))
        batch.txns.append(txn)
        batch.dead_letters.extend(dead)
        if self.change_stream is not None:
            self._add_change_records(txn, batch)
        if self.apply is not None:
            result = self.apply.apply_packed(txn, packed) if packed is not None else self.apply.apply(txn, commands)
            batch.events.extend(result.events)
            batch.dead_letters.extend(result.dead_letters)
        for signal in signals:   # a re-snapshot request: its rows, applied right here in binlog order
            for t in transactions_of(signal, self.config.name, self.mappings, txn):
                self._apply(t, batch)

    def _add_change_records(self, txn: SourceTransaction, batch: Batch) -> None:
        """The transaction's change stream records, into the batch's Kafka transaction (not in _replay: a
        replayed transaction's records are in Kafka already)."""
        records = txn.change_records
        if records is None and txn.row_events is not None:
            # the inline reader: built here, once; a redo after a Kafka abort adds the same records again
            assert self.change_stream is not None
            records = txn.change_records = self.change_stream.records(txn)
        if not records:
            return
        counts = batch.change_counts
        assert self.publisher is not None
        measure_above = self.publisher.measure_above   # smaller values fit every topic (see SIZE_CHECK_HEADROOM)
        for r in records:
            value = r[2]
            if value is not None:   # tombstones are not change events
                if len(value) > measure_above and self._change_too_large(r, txn, batch):
                    continue
                counts[r[0]] = counts.get(r[0], 0) + 1
            batch.records.append(r)

    def _change_too_large(self, record: tuple, txn: SourceTransaction, batch: Batch) -> bool:
        """A change record its topic cannot take (a huge BLOB row) becomes a too_large dead letter: the
        optional stream must not stop the bridge (Kafka would refuse the whole transaction)."""
        topic, key, value, _, headers = record
        size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers) + RECORD_OVERHEAD
        assert self.publisher is not None and self.change_stream is not None
        limit = self.publisher.message_limit(topic)
        if size <= limit:
            return False
        table = self.change_stream.table_of(topic)
        log.warning("change record too large for its topic: sent to the dead-letter topic", topic=topic,
                    bytes=size, limit=limit, txn_id=txn.txn_id)
        batch.dead_letters.append(DeadLetter(
            reason="too_large", table=table, txn_id=txn.txn_id, position=txn.position,
            detail=(f"change record of {table} (key {key.decode() if key else None}) is {size:,} bytes; topic {topic} "
                    f"accepts {limit:,} (its max.message.bytes, at most kafka.max_message_bytes): raise both limits"),
            record={"topic": topic, "key": key.decode() if key else None, "bytes": size, "limit": limit}))
        return True

    def _replay(self, txn: SourceTransaction) -> None:
        """Re-apply an already published transaction to state; its events are dropped (they are in Kafka)."""
        assert self.apply is not None
        if self._takes_packed(txn):
            self.apply.apply_packed(txn, txn.packed)
            return
        commands, signals = split_signals(self._commands_of(txn)[0], txn, self.mappings.signal_table is not None)
        self.apply.replay(txn, commands)
        for signal in signals:
            for t in transactions_of(signal, self.config.name, self.mappings, txn):
                self._replay(t)

    def _finish_replay(self, until: SourcePosition) -> None:
        assert self.apply is not None
        self.apply.commit(until, {"batch": self.batches_committed, "origin": self.origin.to_dict() if self.origin else None})
        log.info("state caught up with the Kafka checkpoint", position=str(until))

    def _flush(self, batch: Batch, position: SourcePosition | None = None, extra: dict[str, Any] | None = None,
               *, wait: bool = True) -> None:
        """Publish the batch with its checkpoint in one Kafka transaction, then commit LMDB.

        position: the resume position to checkpoint (default: the batch's last transaction);
        the snapshot phase keeps it at the stream start and passes its progress in `extra`.
        wait=False hands the batch to the committer thread and returns at once (after the
        previous batch's Kafka commit is known); the main loop goes on applying on top of it.
        wait=True returns once the batch is in Kafka and in LMDB.
        """
        assert self.publisher is not None
        was_open = batch is self._batch
        self._settle(release=False)
        if was_open:
            batch = self._batch   # an aborted predecessor's redo applied the open batch again, into a new Batch
            if not batch:
                if self.apply is not None:
                    self.apply.release_written()
                return
        inflight = self._seal(batch, position, extra)
        if batch is self._batch:
            self._batch = Batch()
        if batch.txns:
            self._last_commit_ts = batch.txns[-1].commit_ts
        if self.apply is not None:
            self.apply.record_state(self._last_commit_ts)  # the state as of this batch, before anyone sees it committed
        if self._committer is None:
            self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="committer")
        inflight.future = self._committer.submit(self._commit_batch, inflight)
        self._inflight = inflight
        if self.apply is not None:
            # the batch before is in Kafka: written to LMDB now, while this one's Kafka transaction runs
            # (before the hand-over, its fsync held the committer idle)
            self.apply.release_written()
        if wait:   # committed in Kafka and written to LMDB (the snapshot's sweep reads LMDB next)
            self._settle()
            if self.apply is not None:
                self.apply.wait_written()

    def _seal(self, batch: Batch, position: SourcePosition | None, extra: dict[str, Any] | None) -> _InFlight:
        """The batch's checkpoint, commands records and state write set, fixed now."""
        assert self.publisher is not None
        pos = position or batch.position
        number = self.batches_committed + 1
        origin = self.origin.to_dict() if self.origin else batch.txns[0].position.to_dict()
        checkpoint = {
            **self.checkpoint_extra,
            **(extra or {}),
            "position": pos.to_dict(),
            "origin": origin,
            "batch": number,
            "transactions": len(batch.txns),
            "events": len(batch.events),
        }
        records = batch.records
        if self.write_commands:
            # everything up to here has arrived on every partition (a snapshot's chunks sit at its view,
            # after the checkpoint position); the last transaction's time is the source clock
            last = batch.txns[-1]
            records = records + watermark_records(self.commands_topic, self.config.state.partitions,
                                                  max(pos, last.position), last.commit_ts)
        # serialized here, on the main thread, before the hand-over: the committer thread is then
        # left with Kafka calls that wait without the GIL, and the main loop's LMDB reads (which
        # release the GIL) get it back at once instead of waiting for the committer's Python
        prepared = self.publisher.prepare(batch.events, batch.dead_letters, checkpoint, records)
        sealed = None
        if self.apply is not None:
            sealed = self.apply.seal(pos, {**self.checkpoint_extra, **(extra or {}), "batch": number, "origin": origin})
        return _InFlight(batch, position, extra, checkpoint, sealed, prepared)

    def _commit_batch(self, inflight: _InFlight) -> Any:
        """On the committer thread: the Kafka transaction, then the LMDB write of the same batch."""
        assert self.publisher is not None
        batch = inflight.batch
        result = self.publisher.publish_prepared(inflight.prepared)
        # Visible in Kafka from here on. LMDB follows (a crash in between is replayed at start).
        if self.origin is None:
            self.origin = SourcePosition.from_dict(inflight.checkpoint["origin"])
        self.batches_committed = inflight.checkpoint["batch"]
        self.committed = SourcePosition.from_dict(inflight.checkpoint["position"])
        self._record_published(batch, result.commit_seconds, inflight.prepared.too_large)
        if self.on_batch_committed:
            self.on_batch_committed(batch)
        if self.apply is not None:
            # written by the main thread at its next _settle (LmdbStateStore.mark_committed says why)
            self.apply.mark_committed(inflight.sealed)
        return result

    def _settle(self, block: bool = True, release: bool = True) -> None:
        """Wait for the batch on the committer thread (block=False: only if it is done) and take its
        outcome: errors are raised here, an aborted Kafka transaction is redone. release: then write to
        LMDB what Kafka has committed (else the caller does, release_written())."""
        inflight = self._inflight
        if inflight is None or inflight.future is None:
            return
        if not block and not inflight.future.done():
            return
        self._inflight = None
        try:
            inflight.future.result()
        except BatchAbortedError as e:
            self._redo(inflight, e)
        if release and self.apply is not None:
            self.apply.release_written()

    def _redo(self, inflight: _InFlight, error: BatchAbortedError) -> None:
        """Kafka aborted the transaction: nothing of the batch is visible. Drop its state (and what the
        open batch applied on top of it), apply the same source transactions again and publish again."""
        open_txns = self._batch.txns
        self._batch = Batch()
        if self.apply is not None:
            self.apply.rollback(inflight.sealed)   # the open batch, then the aborted one
        attempt = 1
        while True:
            self.metrics.batch_aborts.inc()
            log.warning("Kafka transaction aborted; redoing the batch", attempt=attempt, error=str(error))
            time.sleep(min(5.0, 0.2 * attempt))
            redo = Batch()
            for t in inflight.batch.txns:
                self._apply(t, redo)
            inflight = self._seal(redo, inflight.position, inflight.extra)
            try:
                self._commit_batch(inflight)
                break
            except BatchAbortedError as e:
                error = e
                attempt += 1
                if self.apply is not None:
                    self.apply.discard(inflight.sealed)
        batch = self._batch
        for t in open_txns:
            self._apply(t, batch)
        batch.started = time.time() if open_txns else 0.0

    def _record_published(self, batch: Batch, commit_seconds: float, too_large: tuple = ()) -> None:
        """Counters of a batch committed in Kafka (committer thread: touches no state)."""
        m = self.metrics
        now = time.time()
        m.batches.inc()
        m.kafka_commit_seconds.observe(commit_seconds)
        for t in batch.txns:
            if t.row_count:
                m.end_to_end_seconds.observe(max(0.0, now - t.commit_ts))
        m.count_outcome(batch.events, batch.dead_letters, too_large)
        stream = self.change_stream
        if stream is not None:
            for topic, n in batch.change_counts.items():
                table = stream.table_of(topic)
                if table is not None:
                    m.change_records.labels(table).inc(n)
        pos = batch.position if batch.txns else self.committed
        if pos is not None:
            m.source_position.info({"gtid": pos.gtid or "", "binlog_file": pos.binlog_file,
                                    "binlog_pos": str(pos.binlog_pos)})
            m.binlog_file_index.set(binlog_file_index(pos.binlog_file))
            m.binlog_offset.set(pos.binlog_pos)
        log.debug("batch committed", batch=self.batches_committed, position=str(pos), events=len(batch.events))

    def _reload_mappings(self) -> None:
        try:
            new = load_mappings(self.config.mappings_dir)
        except Exception as e:  # MappingError carries the file:line report
            self.metrics.errors.labels("mapping_reload").inc()
            log.error("mapping reload rejected; the previous mappings stay in force", error=str(e))
            return
        change_tables: frozenset[str] = frozenset()
        try:
            specs = []
            if self.apply is not None:
                specs = [TopicSpec.events(a.events_topic, self.config.kafka) for a in new.aggregates]
            if self._change_tables:   # default: every mapped table, so a new mapped table gets its topic
                change_tables = streamed_tables(self.config, new.with_signal_table(self.config.source.signal_table))
                specs += self._change_topic_specs(change_tables)
            partitions = {}
            if specs:
                admin = TopicAdmin(self.config.kafka)
                partitions = admin.ensure_topics(specs)
                if self.publisher is not None:
                    self.publisher.set_message_limits(admin.message_limits)
            if self.apply is not None:
                self.apply.reload(new)
        except Exception as e:
            self.metrics.errors.labels("mapping_reload").inc()
            log.error("mapping reload rejected; the previous mappings stay in force", error=str(e))
            return
        self.mappings = new.with_signal_table(self.config.source.signal_table)
        if change_tables:
            self._change_tables = change_tables
            self.change_stream = self._make_change_stream(change_tables, partitions)
        log.info("mappings reloaded", aggregates=[a.aggregate for a in new.aggregates],
                 tables=sorted(new.tables_and_columns()))

    def _close(self) -> None:
        if self._inflight is not None:
            try:
                self._settle()
            except Exception as e:  # the error that ended the loop (if any) is the one to report
                log.error("the last batch could not be committed", error=str(e))
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None
        if self.publisher is not None:
            try:
                self.publisher.close()
            except Exception as e:  # closing must not hide the original error
                log.warning("error while closing the Kafka producer", error=str(e))
        if self.apply is not None:
            self.apply.close()
        self.kafka_ok = False
        self.source_connected = False

