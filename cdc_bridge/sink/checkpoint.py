"""The checkpoint record: where the source stood after the last committed batch.

One record per batch, written last inside the batch's Kafka transaction, to the
bridge's compacted checkpoint topic:

    key   = bridge name (UTF-8)
    value = {"bridge": "orders-bridge",
             "position": {"gtid": "0-1-42", "binlog_file": "mysql-bin.000003", "binlog_pos": 1234},
             "batch": 17,                     # the pipeline's batch counter
             "events": 250,                   # events published in that batch
             "committed_at": "2026-11-27T04:42:20.000000Z",   # when the record was produced
             "state": {...}}                  # opaque dict from the pipeline (e.g. LMDB batch counter)

Because the checkpoint commits atomically with the events, "the last committed
checkpoint" is exactly "what consumers can see": recovery starts from it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Mapping

import structlog
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from cdc_bridge.aggregate.event import rfc3339
from cdc_bridge.sink.clients import admin_config, consumer_config, is_transient
from cdc_bridge.sink.errors import CheckpointError, describe, kafka_error_of
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.source.position import SourcePosition

log = structlog.get_logger("cdc_bridge.sink.checkpoint")

# The reader first scans this many offsets at the end of each partition: with one
# bridge per checkpoint topic the latest record is (almost) the last one.
TAIL_WINDOW = 1000

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def build_checkpoint(bridge_name: str, checkpoint: Mapping[str, Any], events: int,
                     *, now: float | None = None) -> dict[str, Any]:
    """The checkpoint record for a batch, from what the pipeline passes to publish_batch.

    `checkpoint` needs "position" (a SourcePosition or its dict) and "batch" (int);
    "state" (dict) is optional; "bridge", "events" (default: the batch's event count)
    and "committed_at" are filled in. Any other top-level key (e.g. "origin") is kept
    as is and comes back from read_checkpoint(); it must be JSON-friendly.
    """
    if "position" not in checkpoint:
        raise CheckpointError("checkpoint needs 'position' (the source position after the batch)")
    pos = checkpoint["position"]
    if isinstance(pos, SourcePosition):
        pos_dict = pos.to_dict()
    elif isinstance(pos, Mapping):
        try:
            pos_dict = SourcePosition.from_dict(pos).to_dict()
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint position {pos!r} is not a SourcePosition dict: {exc}") from exc
    else:
        raise CheckpointError(f"checkpoint position must be a SourcePosition, got {type(pos).__name__}")
    bridge = checkpoint.get("bridge", bridge_name)
    if bridge != bridge_name:
        raise CheckpointError(f"checkpoint of bridge {bridge!r} passed to the publisher of bridge {bridge_name!r}")
    batch = checkpoint.get("batch")
    if not isinstance(batch, int) or isinstance(batch, bool):
        raise CheckpointError(f"checkpoint 'batch' must be an int, got {batch!r}")
    state = checkpoint.get("state") or {}
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint 'state' must be a dict, got {type(state).__name__}")
    record = {
        "bridge": bridge_name,
        "position": pos_dict,
        "batch": batch,
        "events": int(checkpoint.get("events", events)),
        "committed_at": rfc3339(time.time() if now is None else now),
        "state": dict(state),
    }
    for k, v in checkpoint.items():
        if k not in record:
            record[k] = v.to_dict() if isinstance(v, SourcePosition) else v
    return record


def encode_checkpoint(record: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) bytes of a checkpoint record."""
    try:
        return record["bridge"].encode(), _encode(record).encode()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint cannot be encoded as JSON (is 'state' JSON-friendly?): {exc}") from exc


def decode_checkpoint(value: bytes, *, where: str = "") -> dict[str, Any]:
    try:
        record = json.loads(value)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        SourcePosition.from_dict(record["position"])
        return record
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint record {where} is not a valid checkpoint ({exc}); it was not written by "
                              f"this bridge version, or the checkpoint topic is shared with something else") from exc


def checkpoint_position(record: Mapping[str, Any]) -> SourcePosition:
    return SourcePosition.from_dict(record["position"])


def read_checkpoint(settings: KafkaSettings, topic: str, bridge_name: str,
                    timeout: float = 30.0) -> dict[str, Any] | None:
    """The last committed checkpoint of `bridge_name` in `topic`, or None if there is none.

    A read_committed scan up to the last stable offset (LSO), which is first awaited to
    reach the high watermark seen on entry: right after commit_transaction() returns,
    the commit markers may not be written yet, and reading to the LSO at that moment
    would miss the batch just committed. An undecided transaction of a live producer
    keeps the LSO back, so call this after the publisher's start() (init_transactions
    aborts whatever the previous incarnation left open), not while another bridge writes.
    """
    deadline = time.monotonic() + timeout
    admin = AdminClient(admin_config(settings))
    ranges = _committed_ranges(admin, topic, deadline)
    if ranges is None:
        log.info("no checkpoint topic yet", topic=topic)
        return None
    consumer = Consumer(consumer_config(settings, f"cdc-bridge-checkpoint-reader-{bridge_name}-{uuid.uuid4().hex[:8]}"))
    try:
        key = bridge_name.encode()
        # pass 1: the tail of every partition
        tails = {p: (max(lo, hi - TAIL_WINDOW), hi) for p, (lo, hi) in ranges.items()}
        found = _scan(consumer, topic, tails, key, deadline)
        if len(ranges) == 1 and found:
            best = found
        else:
            heads = {p: (lo, tails[p][0]) for p, (lo, hi) in ranges.items() if tails[p][0] > lo}
            older = _scan(consumer, topic, heads, key, deadline) if heads else {}
            best = {**older, **found}    # a partition's tail is newer than its head
    finally:
        consumer.close()
    if not best:
        return None
    records = [r for r in best.values() if r is not None]
    if not records:
        return None   # the key's latest record is a tombstone: checkpoint deleted
    # several partitions (a topic created by hand): take the highest batch
    return max(records, key=lambda r: (r.get("batch", 0), r.get("committed_at", "")))


def _committed_ranges(admin: AdminClient, topic: str, deadline: float) -> dict[int, tuple[int, int]] | None:
    """partition -> (low offset, stable end offset), or None if the topic does not exist."""
    while True:
        try:
            md = admin.list_topics(topic=topic, timeout=_remaining(deadline, cap=10))
            t = md.topics.get(topic)
            if t is None or (t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                return None
            if t.error is not None:
                raise KafkaException(t.error)
            tps = [TopicPartition(topic, p) for p in sorted(t.partitions)]
            low = _list_offsets(admin, tps, OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED, deadline)
            high = _list_offsets(admin, tps, OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED, deadline)
            while True:
                stable = _list_offsets(admin, tps, OffsetSpec.latest(), IsolationLevel.READ_COMMITTED, deadline)
                if all(stable[p] >= high[p] for p in high):
                    return {p: (low[p], stable[p]) for p in high}
                if time.monotonic() > deadline:
                    raise CheckpointError(
                        f"checkpoint topic {topic!r} has an undecided transaction (last stable offsets {stable}, "
                        f"high watermarks {high}): another producer is writing to it. Start the publisher "
                        f"(init_transactions) before reading the checkpoint, and run one bridge per source")
                time.sleep(0.02)
        except KafkaException as exc:
            err = kafka_error_of(exc)
            if err is None or not is_transient(err) or time.monotonic() > deadline:
                raise CheckpointError(f"cannot read checkpoint topic {topic!r}: "
                                      f"{describe(err) if err else exc}", kafka_error=err) from exc
            log.warning("checkpoint topic not readable yet, retrying", topic=topic, error=describe(err))
            time.sleep(0.5)


def _list_offsets(admin: AdminClient, tps: list[TopicPartition], spec: OffsetSpec,
                  isolation: IsolationLevel, deadline: float) -> dict[int, int]:
    futures = admin.list_offsets({tp: spec for tp in tps}, isolation_level=isolation,
                                 request_timeout=_remaining(deadline, cap=10))
    return {tp.partition: fut.result().offset for tp, fut in futures.items()}


def _scan(consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]], key: bytes,
          deadline: float) -> dict[int, dict[str, Any] | None]:
    """Read [start, end) of each partition; the last value of `key` per partition
    (None for a tombstone). Partitions where the key does not occur are left out."""
    pending = {p: end for p, (start, end) in ranges.items() if end > start}
    if not pending:
        return {}
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in pending])
    last: dict[int, dict[str, Any] | None] = {}
    try:
        while pending:
            if time.monotonic() > deadline:
                raise CheckpointError(f"timed out reading checkpoint topic {topic!r} (still to read: "
                                      f"{ {p: end for p, end in pending.items()} })")
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                err = msg.error()
                p = msg.partition()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if p in pending and msg.offset() >= pending[p]:
                            del pending[p]
                        continue
                    if is_transient(err):
                        log.warning("checkpoint read error, retrying", topic=topic, error=describe(err))
                        continue
                    raise CheckpointError(f"cannot read checkpoint topic {topic!r}: {describe(err)}",
                                          kafka_error=err)
                if p not in pending or msg.offset() >= pending[p]:
                    continue
                if msg.key() == key:
                    value = msg.value()
                    last[p] = None if value is None else decode_checkpoint(
                        value, where=f"at {topic}[{p}]@{msg.offset()}")
                if msg.offset() + 1 >= pending[p]:
                    del pending[p]
            if pending:
                # control records (commit/abort markers) and aborted messages are never
                # delivered but move the position past them
                for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                    if tp.offset >= 0 and tp.offset >= pending[tp.partition]:
                        del pending[tp.partition]
    finally:
        consumer.unassign()
    return last


def _remaining(deadline: float, cap: float) -> float:
    return max(0.1, min(cap, deadline - time.monotonic()))
