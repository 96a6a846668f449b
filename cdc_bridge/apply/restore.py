"""Restoring a partition's state from the changelog topic when a worker is assigned a partition.

Modelled on Kafka Streams' task restoration and Quix Streams' RecoveryManager:

1. The consumer group's committed offset C of the commands partition is fetched first. With
   read_committed, librdkafka asks for *stable* offsets (KIP-447): the call waits while the
   previous owner's transaction is undecided, so afterwards the changelog holds everything that
   previous owner committed.
2. The store's own progress for the partition (commands offset L, changelog offset) is compared:
   L == C means the local state is current, and the partition starts at once.
3. Otherwise the changelog partition is read, read_committed, from the store's changelog offset
   (incremental: this worker held the partition before, or crashed between its Kafka commit and its
   LMDB write) or from the beginning (new machine, lost disk: the partition is wiped first), up to
   its last stable offset taken after step 1, and every record is written as it is. The last
   progress marker read says where the commands partition resumes (equal to C: they were committed
   in one transaction).

Progress is a metric per partition (cdc_bridge_worker_restore_progress_ratio) and shows in /readyz;
the commands partition stays paused until its state is restored.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from cdc_bridge.apply.changelog import is_marker, marker_offset
from cdc_bridge.observability.metrics import BridgeMetrics
from cdc_bridge.sink.clients import consumer_config
from cdc_bridge.sink.errors import describe, kafka_error_of
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.state.lmdb_store import LmdbStateStore

log = structlog.get_logger(__name__)

WRITE_EVERY = 5000   # records per LMDB write transaction while restoring


class RestoreError(Exception):
    """A partition's state cannot be restored from the changelog."""

    exit_code = 95


@dataclass
class PartitionRestore:
    """The restore of one partition, in progress."""

    partition: int
    start: int                 # first changelog offset to read (0: the beginning)
    end: int                   # last stable offset when the restore began: read up to here
    wipe: bool                 # forget the partition's local state before the first write
    committed: int | None      # the group's committed commands offset (None: none)
    position: int = 0
    marker: int | None = None  # commands offset of the last progress marker read
    records: int = 0
    pending: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def ratio(self) -> float:
        span = self.end - self.start
        return 1.0 if span <= 0 else max(0.0, min(1.0, (self.position - self.start) / span))


class ChangelogRestorer:
    """Restores partitions of one worker's state store from the changelog topic, a slice at a time
    (step()), so that the worker's main loop keeps polling its consumer group meanwhile."""

    def __init__(self, settings: KafkaSettings, topic: str, store: LmdbStateStore, metrics: BridgeMetrics,
                 client_name: str) -> None:
        self.topic = topic
        self.store = store
        self.metrics = metrics
        conf = consumer_config(settings, f"{client_name}.restore-{uuid.uuid4().hex[:8]}")  # assign() only, never joins
        conf["fetch.wait.max.ms"] = 100
        self._consumer = Consumer(conf)
        self.tasks: dict[int, PartitionRestore] = {}

    # ------------------------------------------------------------------ planning
    def plan(self, partition: int, committed: int | None) -> int | None:
        """Where the commands partition starts when the local state is current (None: from the beginning),
        else -1 with a restore task added (step() finishes it)."""
        local = self.store.partition_progress(partition)
        if local is not None and committed is not None and local["commands_offset"] == committed:
            self.metrics.restores.labels("current").inc()
            log.info("partition state is current", partition=partition, commands_offset=committed)
            return committed
        low, end = self._watermarks(partition)
        changelog_offset = (local or {}).get("changelog_offset")
        incremental = local is not None and changelog_offset is not None and changelog_offset >= low
        start = changelog_offset if incremental else 0
        if committed is None and local is None and end <= low:
            # a partition nobody ever processed: nothing to restore, read the commands from the start
            self.metrics.restores.labels("none").inc()
            self.store.restore_partition(partition, [], None, wipe=True)
            return None
        task = PartitionRestore(partition, start, end, wipe=not incremental, committed=committed, position=start)
        if incremental:
            task.marker = local["commands_offset"]  # where the local state stands, until a newer marker is read
        self.metrics.restores.labels("incremental" if incremental else "full").inc()
        log.warning("restoring partition state from the changelog", partition=partition,
                    kind="incremental" if incremental else "full", from_offset=start, to_offset=end,
                    local_commands_offset=(local or {}).get("commands_offset"), committed_offset=committed)
        self.tasks[partition] = task
        self.metrics.restore_progress.labels(str(partition)).set(task.ratio)
        if start >= end:
            return self._finish(task)
        self._assign()
        return -1

    def _watermarks(self, partition: int) -> tuple[int, int]:
        """The changelog partition's (low, last stable offset). A retriable error (a leader moving, a broker
        restarting: NOT_LEADER_FOR_PARTITION, timeouts) is retried with backoff for up to ~1 minute."""
        tp = TopicPartition(self.topic, partition)
        delay = 0.1
        deadline = time.monotonic() + 60
        while True:
            try:
                return self._consumer.get_watermark_offsets(tp, timeout=30, cached=False)   # read_committed: LSO
            except KafkaException as e:
                err = kafka_error_of(e)
                if err is None or not err.retriable() or time.monotonic() > deadline:
                    raise
                log.warning("changelog offsets not available yet; retrying", partition=partition, error=describe(err))
                time.sleep(delay)
                delay = min(2.0, delay * 2)

    def cancel(self, partitions: set[int]) -> None:
        """The partitions were revoked: stop restoring them (what was written stays; progress is unchanged)."""
        gone = [p for p in partitions if p in self.tasks]
        for p in gone:
            task = self.tasks.pop(p)
            self._write(task)
            self.metrics.restore_progress.remove(str(p))
            log.info("restore cancelled: partition revoked", partition=p, records=task.records)
        if gone:
            self._assign()

    def _assign(self) -> None:
        tps = [TopicPartition(self.topic, t.partition, t.position if t.position > 0 else OFFSET_BEGINNING)
               for t in self.tasks.values()]
        self._consumer.assign(tps)

    # ------------------------------------------------------------------ reading
    def step(self, max_seconds: float = 0.5) -> dict[int, int | None]:
        """Read for up to max_seconds; returns {partition: commands offset to start at} of finished restores."""
        done: dict[int, int | None] = {}
        if not self.tasks:
            return done
        deadline = time.monotonic() + max_seconds
        while self.tasks and time.monotonic() < deadline:
            msgs = self._consumer.consume(5000, 0.1)
            for msg in msgs:
                err = msg.error()
                p = msg.partition()
                task = self.tasks.get(p)
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("changelog read error; retrying", partition=p, error=describe(err))
                    continue
                if task is None or msg.offset() < task.position:
                    continue
                key = msg.key()
                if is_marker(key):
                    task.marker = marker_offset(msg.value())
                else:
                    task.pending.append((key, msg.value()))
                    task.records += 1
                task.position = msg.offset() + 1
                if len(task.pending) >= WRITE_EVERY:
                    self._write(task)
            # control records (commit markers) and aborted records move the position without a message
            for tp in self._consumer.position([TopicPartition(self.topic, p) for p in self.tasks]):
                task = self.tasks[tp.partition]
                if tp.offset >= 0 and tp.offset > task.position:
                    task.position = tp.offset
            for task in list(self.tasks.values()):
                self.metrics.restore_progress.labels(str(task.partition)).set(task.ratio)
                if task.position >= task.end:
                    done[task.partition] = self._finish(task)
            if done:
                self._assign()
                break
        return done

    def _write(self, task: PartitionRestore) -> None:
        if task.pending or task.wipe:
            self.store.restore_partition(task.partition, task.pending, None, wipe=task.wipe)
            self.metrics.restored_records.inc(len(task.pending))
            task.pending = []
            task.wipe = False

    def _finish(self, task: PartitionRestore) -> int | None:
        self.tasks.pop(task.partition, None)
        start = task.marker
        if task.committed is not None and start != task.committed:
            if start is None:
                raise RestoreError(
                    f"partition {task.partition}: the consumer group committed commands offset {task.committed} but "
                    f"the changelog topic {self.topic} holds no progress for it (was the changelog deleted or "
                    "recreated?). The state cannot be restored: reset the group's offsets together with a new "
                    "changelog (docs/scaling.md, 'Starting over'), or restore the topic.")
            log.warning("changelog progress and the group's committed offset differ; the changelog wins",
                        partition=task.partition, changelog=start, committed=task.committed)
        progress = {"commands_offset": start if start is not None else 0, "changelog_offset": task.position}
        self.store.restore_partition(task.partition, task.pending, progress, wipe=task.wipe)
        self.metrics.restored_records.inc(len(task.pending))
        task.pending = []
        seconds = time.monotonic() - task.started
        self.metrics.restore_seconds.observe(seconds)
        self.metrics.restore_progress.labels(str(task.partition)).set(1.0)
        log.info("partition state restored", partition=task.partition, records=task.records,
                 seconds=round(seconds, 2), commands_offset=start, changelog_offset=task.position)
        return start

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception as e:  # noqa: BLE001 - closing must not hide the caller's error
            log.warning("error closing the restore consumer", error=str(e))
