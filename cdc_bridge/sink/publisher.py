"""The transactional publisher: one Kafka transaction per batch = events + dead letters + checkpoint.

    publisher = TransactionalPublisher(settings, transactional_id=bridge_name, ...)
    publisher.start()                       # init_transactions: fences an older bridge
    checkpoint = read_checkpoint(...)       # after start(): nothing undecided any more
    while ...:
        try:
            result = publisher.publish_batch(events, dead_letters, {"position": pos, "batch": n})
        except BatchAbortedError:
            ...                             # roll back the batch's state, redo it
        lmdb.commit()                       # only after Kafka committed
    publisher.close()

Messages (docs/kafka.md):

- event:       topic = event.topic, key = aggregate_id, value = compact JSON of
               event.envelope(); headers event_type, event_id, plus event.extra_headers
               (except the tombstone directive). Partition = partitioner(aggregate_id,
               partition count) when a partitioner is given, else librdkafka's
               murmur2_random (= Java clients' default for keyed records).
- tombstone:   when event.extra_headers["cdc-bridge-tombstone"] == "1" the event is
               followed by a record with the same key and a null value (header
               cdc-bridge-tombstone: 1), so a compacted events topic forgets the aggregate.
- dead letter: dead-letter topic, key = aggregate_id (or null), value = JSON of
               DeadLetter.to_json_dict(), headers reason (+ table, aggregate when known).
- checkpoint:  last, to the checkpoint topic (see checkpoint.py).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from cdc_bridge.aggregate.event import DomainEvent, rfc3339
from cdc_bridge.jsoncodec import dumps
from cdc_bridge.mapping.command import DeadLetter
from cdc_bridge.sink.checkpoint import build_checkpoint, encode_checkpoint
from cdc_bridge.sink.clients import is_transient, producer_config
from cdc_bridge.sink.errors import (BatchAbortedError, ErrorAction, FatalPublishError, KafkaUnavailableError,
                                    PURGE_CODES, SinkError, classify, describe, fatal_error,
                                    is_fenced, is_permanent_message_error,
                                    kafka_error_of)
from cdc_bridge.sink.retry import RetryPolicy
from cdc_bridge.sink.settings import KafkaSettings

log = structlog.get_logger("cdc_bridge.sink.publisher")

# what a record costs beyond key, value and headers in a v2 record batch (batch header, varints): generous
RECORD_OVERHEAD = 512
# a record whose value is shorter than the smallest limit by this much is not measured (key, headers and
# overhead stay far below it: keys are aggregate ids, bounded like the state store's keys): per record
# this saves adding up the headers, which every record would pay for the rare one that is too large
SIZE_CHECK_HEADROOM = 64 * 1024

TOMBSTONE_HEADER = "cdc-bridge-tombstone"

Partitioner = Callable[[str, int], int]


@dataclass(frozen=True, slots=True)
class PublishResult:
    batch: int
    events: int
    dead_letters: int
    tombstones: int
    produce_seconds: float        # begin_transaction .. last produce() returned
    commit_seconds: float         # commit_transaction (flush + commit), retries included
    total_seconds: float          # whole publish_batch, serialization included
    commit_retries: int


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch serialized for its Kafka transaction (TransactionalPublisher.prepare)."""

    messages: list[tuple]      # (topic, key, value, partition | None, headers), the checkpoint last
    checkpoint: dict[str, Any] | None  # the checkpoint record (build_checkpoint); None for a worker's batch
    events: int
    dead_letters: int
    tombstones: int
    prepare_seconds: float
    # events replaced by a too_large dead letter (their topic's limit): for the metrics of the caller
    too_large: tuple[DeadLetter, ...] = ()


@dataclass(frozen=True)
class PublisherHooks:
    """Optional callbacks for metrics. Exceptions raised by hooks are logged and ignored."""

    on_commit: Callable[[PublishResult], None] | None = None
    on_abort: Callable[[KafkaError | None], None] | None = None
    on_retry: Callable[[str, KafkaError], None] | None = None     # (operation, error)
    on_fatal: Callable[[FatalPublishError], None] | None = None
    # called with the Kafka transaction open and every record produced, right before the
    # commit (fault injection in the crash test; exceptions here abort the batch)
    before_commit: Callable[[int], None] | None = None

    @classmethod
    def with_fault_injection(cls, on_retry: Callable[[str, KafkaError], None] | None = None) -> "PublisherHooks":
        """Hooks for a pipeline. CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS (crash tests only, never in
        production) holds each Kafka transaction open that long, so that a kill or a stop lands inside it."""
        delay_ms = float(os.environ.get("CDC_BRIDGE_FAULT_DELAY_BEFORE_COMMIT_MS", "0") or 0)
        if delay_ms <= 0:
            return cls(on_retry=on_retry)

        def hold(n: int) -> None:
            log.warning("fault injection: Kafka transaction open", records=n, hold_ms=delay_ms)
            time.sleep(delay_ms / 1000)

        return cls(on_retry=on_retry, before_commit=hold)


class TransactionalPublisher:
    """Publishes batches exactly once. Not thread-safe: one pipeline thread drives it."""

    def __init__(self, settings: KafkaSettings, transactional_id: str, checkpoint_topic: str,
                 dead_letter_topic: str, bridge_name: str, partitioner: Partitioner | None = None,
                 hooks: PublisherHooks | None = None, *, retry: RetryPolicy | None = None,
                 operation_timeout_s: float = 30.0, poll_every: int = 1000,
                 producer_factory: Callable[[dict[str, Any]], Any] = Producer,
                 startup_sleep: Callable[[float], None] = time.sleep,
                 offsets_of_topic: str | None = None) -> None:
        """startup_sleep: the wait between start()'s attempts while Kafka is unreachable; the
        bridge passes one that raises when a stop is requested (SIGTERM during startup).
        offsets_of_topic: keep the offset of the last record delivered to each partition of this
        topic (`delivered_offsets`; an aggregate worker's changelog, where its state resumes)."""
        if not transactional_id:
            raise ValueError("transactional_id must not be empty")
        self.settings = settings
        self.transactional_id = transactional_id
        self.checkpoint_topic = checkpoint_topic
        self.dead_letter_topic = dead_letter_topic
        self.bridge_name = bridge_name
        self.partitioner = partitioner
        self.hooks = hooks or PublisherHooks()
        self.retry = retry or RetryPolicy.forever()
        self.operation_timeout_s = operation_timeout_s
        self.poll_every = max(1, poll_every)
        self._producer_factory = producer_factory
        self._startup_sleep = startup_sleep
        self._producer: Any = None
        self._in_transaction = False
        self._fatal: FatalPublishError | None = None
        self._generation = 0   # bumped when a producer is replaced: callbacks of the old one are ignored
        self._delivery_errors: list[KafkaError] = []
        self._partitions: dict[str, int] = {}
        self._limits: dict[str, int] = {}      # topic -> max.message.bytes (set_message_limits)
        self.measure_above = settings.max_message_bytes - SIZE_CHECK_HEADROOM   # see SIZE_CHECK_HEADROOM
        self.batches_committed = 0
        self.buffer_full_waits = 0
        self.producers_replaced = 0
        self.offsets_of_topic = offsets_of_topic
        self.delivered_offsets: dict[int, int] = {}

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Create the producer and init_transactions(): registers the transactional id,
        fences any older producer with the same id and aborts what it left open.
        Retries per the retry policy while Kafka is unreachable."""
        if self._producer is not None:
            return
        conf = producer_config(self.settings, self.transactional_id, java_partitioner=self.partitioner is None)
        if self.offsets_of_topic is not None:
            conf["delivery.report.only.error"] = False   # successful deliveries tell the offsets
        gen = self._generation
        conf["error_cb"] = lambda err: self._on_error(err) if gen == self._generation else None
        conf["on_delivery"] = lambda err, msg: self._on_delivery(err, msg) if gen == self._generation else None
        producer = self._producer_factory(conf)
        self._call("init_transactions", lambda: producer.init_transactions(self.operation_timeout_s),
                   retry_only=True, sleep=self._startup_sleep)
        self._producer = producer
        log.info("kafka transactional producer ready", transactional_id=self.transactional_id,
                 bootstrap_servers=self.settings.bootstrap_servers, checkpoint_topic=self.checkpoint_topic)

    def close(self, timeout: float = 30.0) -> None:
        """Abort an open transaction (if any), flush, and release the producer."""
        p = self._producer
        if p is None:
            return
        try:
            if self._fatal is not None:
                # unusable producer: whatever is queued can never be delivered
                p.purge()
            else:
                if self._in_transaction:
                    try:
                        p.abort_transaction(timeout)
                    except KafkaException as exc:
                        log.warning("abort on close failed", error=str(exc))
                left = p.flush(timeout)
                if left:
                    log.warning("messages not delivered at close", count=left)
        finally:
            self._in_transaction = False
            self._producer = None
            log.info("kafka transactional producer closed", transactional_id=self.transactional_id)

    def __enter__(self) -> "TransactionalPublisher":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics -------------------------------------------------------------------------

    def set_message_limits(self, limits: Mapping[str, int]) -> None:
        """max.message.bytes of topics (TopicAdmin.message_limits): an event above its topic's limit (or
        kafka.max_message_bytes) becomes a too_large dead letter instead of failing the transaction."""
        self._limits.update(limits)
        self.measure_above = min([self.settings.max_message_bytes, *self._limits.values()]) - SIZE_CHECK_HEADROOM

    def message_limit(self, topic: str) -> int:
        """The largest record `topic` accepts (its max.message.bytes, at most kafka.max_message_bytes)."""
        return min(self._limits.get(topic, self.settings.max_message_bytes), self.settings.max_message_bytes)

    def set_partition_counts(self, counts: Mapping[str, int]) -> None:
        """Seed the partition counts (e.g. from TopicAdmin.ensure_topics) to skip metadata lookups."""
        self._partitions.update(counts)

    def partition_count(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            n = self._lookup_partitions(topic)
            self._partitions[topic] = n
        return n

    def _lookup_partitions(self, topic: str) -> int:
        md = self._call(f"metadata of {topic}",
                        lambda: self._producer.list_topics(topic=topic, timeout=self.operation_timeout_s),
                        retry_only=True)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            err = t.error if t is not None else None
            raise FatalPublishError(
                f"topic {topic!r} does not exist or cannot be described ({describe(err) if err else 'no metadata'}); "
                f"create it (kafka.create_topics: true runs TopicAdmin.ensure_topics at start) — events are never "
                f"published to auto-created topics", kafka_error=err)
        return len(t.partitions)

    # -- publishing ---------------------------------------------------------------------

    def publish_batch(self, events: Sequence[DomainEvent], dead_letters: Sequence[DeadLetter],
                      checkpoint: Mapping[str, Any], records: Sequence[tuple] = ()) -> PublishResult:
        """Publish a batch in one transaction, the checkpoint record last.

        records: further ready-made (topic, key bytes, value bytes, partition | None, headers)
        records of the same transaction (the command log), produced before the checkpoint.

        Returns once committed. Raises BatchAbortedError (nothing visible; redo the
        batch), FatalPublishError (exit), KafkaUnavailableError (retry budget spent).
        """
        return self.publish_prepared(self.prepare(events, dead_letters, checkpoint, records))

    def prepare(self, events: Sequence[DomainEvent], dead_letters: Sequence[DeadLetter],
                checkpoint: Mapping[str, Any] | None, records: Sequence[tuple] = ()) -> PreparedBatch:
        """The first half of publish_batch: every record of the batch serialized, no Kafka call
        (the pipeline does this on its main thread, see publish_prepared). Raises FatalPublishError
        for an event that cannot be serialized or has no topic. checkpoint None: no checkpoint record
        (an aggregate worker's batch, whose progress is its consumed offsets)."""
        t0 = time.perf_counter()
        record = build_checkpoint(self.bridge_name, checkpoint, len(events)) if checkpoint is not None else None
        messages, tombstones, too_large = self._serialize(events, dead_letters, record)
        if records:
            if record is not None:
                messages[-1:-1] = records  # the checkpoint record stays last
            else:
                messages.extend(records)
        return PreparedBatch(messages, record, len(events) - len(too_large), len(dead_letters) + len(too_large),
                             tombstones, time.perf_counter() - t0, tuple(too_large))

    def publish_prepared(self, prepared: PreparedBatch, *, offsets: Sequence[Any] | None = None,
                         group_metadata: Any = None) -> PublishResult:
        """The second half of publish_batch: one Kafka transaction with the prepared records.

        offsets, group_metadata: consumed offsets (TopicPartitions, next offset to read) committed in
        the same transaction for the consumer group (KIP-447: a member that lost its partitions to a
        newer generation cannot commit them; its transaction is aborted, BatchAbortedError)."""
        if self._fatal is not None:
            raise self._fatal
        if self._producer is None:
            raise SinkError("publish_batch before start()")
        t0 = time.perf_counter() - prepared.prepare_seconds
        messages = prepared.messages
        p = self._producer
        self._delivery_errors.clear()
        self._call("begin_transaction", p.begin_transaction)
        self._in_transaction = True
        phase = "produce"
        try:
            t1 = time.perf_counter()
            self._produce_all(messages)
            if offsets:
                p.send_offsets_to_transaction(list(offsets), group_metadata, self.operation_timeout_s)
            if self.hooks.before_commit is not None:
                self.hooks.before_commit(len(messages))
            t2 = time.perf_counter()
            phase = "commit"
            retries = self._commit()
            t3 = time.perf_counter()
        except BaseException as exc:
            if self._in_transaction:
                self._abort_after(exc, phase)
            raise
        self._in_transaction = False
        self.batches_committed += 1
        result = PublishResult(batch=prepared.checkpoint["batch"] if prepared.checkpoint is not None else self.batches_committed,
                               events=prepared.events, dead_letters=prepared.dead_letters,
                               tombstones=prepared.tombstones, produce_seconds=t2 - t1, commit_seconds=t3 - t2,
                               total_seconds=t3 - t0, commit_retries=retries)
        self._hook(self.hooks.on_commit, result)
        return result

    @staticmethod
    def _too_large(ev: DomainEvent, topic: str, size: int, limit: int) -> DeadLetter:
        source = ev.source or {}
        log.warning("event too large for its topic: sent to the dead-letter topic", event_id=ev.event_id,
                    event_type=ev.event_type, bytes=size, limit=limit, topic=topic)
        return DeadLetter(
            reason="too_large", table=source.get("table"), aggregate=ev.aggregate, aggregate_id=ev.aggregate_id,
            txn_id=source.get("txn_id"),
            detail=(f"event {ev.event_id} ({ev.event_type}) is {size:,} bytes; topic {topic} accepts {limit:,} "
                    "(its max.message.bytes, at most kafka.max_message_bytes). The aggregate's sequence goes on "
                    "without it: raise both limits, or lower the mapping's max_embedded_children"),
            record={"event_id": ev.event_id, "event_type": ev.event_type, "bytes": size, "limit": limit,
                    "topic": topic})

    def _serialize(self, events: Sequence[DomainEvent], dead_letters: Sequence[DeadLetter],
                   record: dict[str, Any] | None) -> tuple[list[tuple], int, list[DeadLetter]]:
        """All messages of the batch as (topic, key, value, partition | None, headers), before
        the transaction begins: a serialization problem never leaves a transaction open."""
        out: list[tuple] = []
        append = out.append
        part = self.partitioner
        counts = self._partitions
        tombstones = 0
        too_large: list[DeadLetter] = []
        limits, max_bytes, measure_above = self._limits, self.settings.max_message_bytes, self.measure_above
        occurred: dict[float, str] = {}   # rfc3339(occurred_at): one per source transaction, not per event
        for ev in events:
            event_id = ev.event_id
            try:
                if ev.value_json is not None:   # written by the compiled apply (aggregate/native.py)
                    value = ev.value_json
                elif type(ev) is DomainEvent:   # the timestamp formatted once per value
                    ts = ev.occurred_at
                    at = occurred.get(ts)
                    if at is None:
                        at = occurred[ts] = rfc3339(ts)
                    value = dumps(ev.envelope(at))
                else:   # a subclass may shape its own envelope
                    value = dumps(ev.envelope())
            except (TypeError, ValueError) as exc:
                raise FatalPublishError(f"event {event_id} ({ev.event_type}) cannot be serialized to JSON: {exc}; "
                                        "a decider produced a non JSON-friendly value") from exc
            topic = ev.topic
            if not topic:
                raise FatalPublishError(f"event {event_id} ({ev.event_type}) has no topic")
            key = ev.aggregate_id.encode()
            partition = None
            if part is not None:
                n = counts.get(topic) or self.partition_count(topic)
                partition = part(ev.aggregate_id, n)
            eid = event_id.encode()
            headers = [("event_type", ev.event_type.encode()), ("event_id", eid)]
            tomb = False
            if ev.extra_headers:
                for k, v in ev.extra_headers.items():
                    if k == TOMBSTONE_HEADER:
                        tomb = v == "1"
                    else:
                        headers.append((k, v.encode()))
            if len(value) > measure_above:   # only big ones are measured: the record's size as the broker counts it
                size = len(value) + len(key) + sum(len(k) + len(v) for k, v in headers) + RECORD_OVERHEAD
                limit = min(limits.get(topic, max_bytes), max_bytes)
                if size > limit:
                    too_large.append(self._too_large(ev, topic, size, limit))
                    continue
            append((topic, key, value, partition, headers))
            if tomb:
                append((topic, key, None, partition, [(TOMBSTONE_HEADER, b"1"), ("event_id", eid)]))
                tombstones += 1
        if too_large:
            dead_letters = [*dead_letters, *too_large]
        if dead_letters:
            dl_topic = self.dead_letter_topic
            for dl in dead_letters:
                try:
                    value = dumps(dl.to_json_dict())
                except (TypeError, ValueError):
                    value = json.dumps(dl.to_json_dict(), separators=(",", ":"), ensure_ascii=False,
                                       default=repr).encode()
                headers = [("reason", dl.reason.encode())]
                if dl.table:
                    headers.append(("table", dl.table.encode()))
                if dl.aggregate:
                    headers.append(("aggregate", dl.aggregate.encode()))
                append((dl_topic, dl.aggregate_id.encode() if dl.aggregate_id else None, value, None, headers))
        if record is None:
            return out, tombstones, too_large
        ckey, cvalue = encode_checkpoint(record)
        cpart = None
        if part is not None:
            cpart = part(self.bridge_name, counts.get(self.checkpoint_topic) or
                         self.partition_count(self.checkpoint_topic))
        append((self.checkpoint_topic, ckey, cvalue, cpart, [("cdc-bridge-checkpoint", b"1")]))
        return out, tombstones, too_large

    def _produce_all(self, messages: list[tuple]) -> None:
        produce = self._producer.produce
        poll = self._producer.poll
        every = self.poll_every
        for i, (topic, key, value, partition, headers) in enumerate(messages):
            while True:
                try:
                    if partition is None:
                        produce(topic, value, key, headers=headers)
                    else:
                        produce(topic, value, key, partition=partition, headers=headers)
                    break
                except BufferError:
                    # local queue full: let librdkafka send, then try the same message again
                    self.buffer_full_waits += 1
                    poll(0.05)
                except KafkaException as exc:
                    err = kafka_error_of(exc)
                    if err is not None and err.code() == KafkaError._QUEUE_FULL:
                        self.buffer_full_waits += 1
                        poll(0.05)
                        continue
                    raise
            if i % every == every - 1:
                poll(0)
                if self._fatal is not None:
                    raise self._fatal

    def _commit(self) -> int:
        """commit_transaction, retried while retriable. Returns the number of retries."""
        retries = 0
        tracker = self.retry.tracker()
        p = self._producer
        while True:
            try:
                p.commit_transaction(self.operation_timeout_s)
                return retries
            except KafkaException as exc:
                err = kafka_error_of(exc)
                if err is None:
                    raise
                action = classify(err)
                if action is ErrorAction.RETRY:
                    retries += 1
                    self._hook(self.hooks.on_retry, "commit_transaction", err)
                    if not tracker.failed():
                        raise KafkaUnavailableError(
                            f"commit_transaction kept failing ({tracker.attempts} attempts in "
                            f"{tracker.elapsed:.1f}s), last error {describe(err)}; Kafka at "
                            f"{self.settings.bootstrap_servers} unreachable?", kafka_error=err) from exc
                    log.warning("kafka commit failed, retrying", attempt=tracker.attempts,
                                retry_in_s=round(tracker.delay, 2), error=describe(err))
                    time.sleep(tracker.delay)
                    continue
                raise

    # -- errors -------------------------------------------------------------------------

    def _abort_after(self, exc: BaseException, phase: str) -> None:
        """Called with the transaction open and `exc` raised inside it: abort when the
        producer is still usable, and turn Kafka errors into ours (raised from here).
        Returns only for non-Kafka exceptions, which the caller re-raises as they are."""
        err = kafka_error_of(exc)
        if self._fatal is not None or (err is not None and (err.fatal() or is_fenced(err))):
            # the producer is unusable: no abort possible; the broker aborts the transaction
            # (on fencing, or after transaction.timeout.ms)
            fatal = self._fatal or self._fatal_from(err, "publish_batch")
            self._in_transaction = False
            self._set_fatal(fatal)
            raise fatal from exc
        self._abort()
        self._producer.poll(0)    # serve the delivery reports that tell why the transaction failed
        self._hook(self.hooks.on_abort, err)
        if err is None:
            log.warning("kafka transaction aborted", error=repr(exc))
            return
        # produce() refuses with _STATE once a delivery failure has put the transaction in
        # its abortable error state: the cause is in the delivery reports
        background_failure = phase == "produce" and err.code() == KafkaError._STATE
        if classify(err) in (ErrorAction.ABORT, ErrorAction.RETRY) or background_failure:
            first = self._delivery_errors[0] if self._delivery_errors else None
            if is_permanent_message_error(err) or is_permanent_message_error(first):
                # redoing the batch would fail the same way: stop with the cause and its fix
                cause_err = err if is_permanent_message_error(err) else first
                raise self._fatal_from(cause_err, "publish_batch (transaction aborted)") from exc
            cause = describe(err)
            if first is not None and first.code() != err.code():
                cause += f" (first delivery error: {describe(first)})"
            log.warning("kafka transaction aborted, batch to be redone", error=cause)
            raise BatchAbortedError(f"Kafka transaction aborted: {cause}; nothing of the batch is visible, "
                                    f"roll back and redo it", kafka_error=err) from exc
        # permanent but not fatal (e.g. an unknown partition at produce()): redoing cannot help
        raise self._fatal_from(err, "publish_batch") from exc

    def _abort(self) -> None:
        p = self._producer
        tracker = self.retry.tracker()
        while True:
            try:
                p.abort_transaction(self.operation_timeout_s)
                self._in_transaction = False
                return
            except KafkaException as exc:
                err = kafka_error_of(exc)
                if err is None:
                    raise
                if classify(err) is ErrorAction.RETRY or (is_transient(err) and not err.fatal()):
                    self._hook(self.hooks.on_retry, "abort_transaction", err)
                    if not tracker.failed():
                        raise KafkaUnavailableError(f"abort_transaction kept failing: {describe(err)}",
                                                    kafka_error=err) from exc
                    time.sleep(tracker.delay)
                    continue
                self._in_transaction = False
                if err.code() == KafkaError.INVALID_TXN_STATE:
                    self._replace_producer(err)
                    return
                fatal = self._fatal_from(err, "abort_transaction")
                self._set_fatal(fatal)
                raise fatal from exc

    def _replace_producer(self, err: KafkaError) -> None:
        """The coordinator refused our abort with INVALID_TXN_STATE, which librdkafka makes fatal. It happens
        when the abort's EndTxn overtakes the transaction's first AddPartitionsToTxn (librdkafka#4849) or
        when the broker already aborted a timed-out transaction. Either way what we want, an aborted
        transaction, is reached by a new producer on the same transactional.id: its init_transactions
        bumps the epoch (the old producer's late requests are refused) and aborts whatever the old one
        left open. Not done on fencing errors: there another instance owns the id."""
        log.warning("kafka refused to abort the transaction; replacing the producer (init_transactions "
                    "aborts what the old one left open), then the batch is redone", error=describe(err))
        old, self._producer = self._producer, None
        self._generation += 1
        self._fatal = None     # set by the old producer's error callback, if it was served
        try:
            old.purge()
        except Exception as exc:   # a fatal producer may refuse; it is dropped either way
            log.debug("purge of the replaced producer failed", error=repr(exc))
        self.producers_replaced += 1
        self.start()

    def _call(self, what: str, fn: Callable[[], Any], *, retry_only: bool = False,
              sleep: Callable[[float], None] = time.sleep) -> Any:
        """Call a producer method outside a transaction's produce loop; retriable errors are retried."""
        tracker = self.retry.tracker()
        while True:
            try:
                return fn()
            except KafkaException as exc:
                err = kafka_error_of(exc)
                if err is None:
                    raise
                if classify(err) is ErrorAction.RETRY or (retry_only and is_transient(err) and not err.fatal()):
                    self._hook(self.hooks.on_retry, what, err)
                    if not tracker.failed():
                        raise KafkaUnavailableError(
                            f"{what} kept failing ({tracker.attempts} attempts in {tracker.elapsed:.1f}s), last "
                            f"error {describe(err)}; check kafka.bootstrap_servers and broker health",
                            kafka_error=err) from exc
                    log.warning("kafka call failed, retrying", operation=what, attempt=tracker.attempts,
                                retry_in_s=round(tracker.delay, 2), error=describe(err))
                    sleep(tracker.delay)
                    continue
                fatal = self._fatal_from(err, what)
                self._set_fatal(fatal)
                raise fatal from exc

    def _fatal_from(self, err: KafkaError, during: str) -> FatalPublishError:
        return fatal_error(err, transactional_id=self.transactional_id,
                           transaction_timeout_ms=self.settings.transaction_timeout_ms, during=during)

    def _set_fatal(self, fatal: FatalPublishError) -> None:
        if self._fatal is None:
            self._fatal = fatal
            log.error("kafka publisher failed", error=fatal.message, fenced=fatal.fenced)
            self._hook(self.hooks.on_fatal, fatal)

    # -- librdkafka callbacks (served by poll/flush/commit on this thread) ---------------

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            if self.offsets_of_topic is not None and msg.topic() == self.offsets_of_topic:
                p, off = msg.partition(), msg.offset()
                if off > self.delivered_offsets.get(p, -1):
                    self.delivered_offsets[p] = off
            return
        if err.code() not in PURGE_CODES:
            if len(self._delivery_errors) < 100:
                self._delivery_errors.append(err)
            if len(self._delivery_errors) == 1:
                log.warning("kafka delivery failed", topic=msg.topic(), error=describe(err))

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            # the next producer call raises it too; remember it so publish_batch stops early
            self._fatal = self._fatal or self._fatal_from(err, "background")
            log.error("kafka fatal error", error=describe(err))
        elif err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            log.warning("kafka connection problem", error=describe(err))
        else:
            log.info("kafka client error", error=describe(err))

    def _hook(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:   # metrics must never break publishing
            log.exception("publisher hook failed")
