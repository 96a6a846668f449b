"""`cdc-bridge handover`: moving a bridge between embedded mode and aggregate workers.

Both modes share the source checkpoint (`<name>.checkpoints`, transactional.id `<name>`); what
differs is where the aggregates' state lives:

- embedded: one LMDB (state.dir) whose applied position equals the checkpoint;
- workers: the changelog topic (state per partition) with a progress marker per partition, and the
  workers' consumer group offsets on the commands topic, equal to the markers.

**to workers**: the embedded bridge is fenced (init_transactions with its transactional.id, so
neither it nor a forgotten copy can commit again), its LMDB must be at the checkpoint, and every
record of every partition is written to the changelog as it is. The last Kafka transaction holds a
progress marker per partition at the commands topic's current end and commits the same offsets for
the workers' group (send_offsets_to_transaction): the workers start exactly after what the
embedded bridge applied, and ingest resumes at the checkpoint. Re-running it is harmless (the
changelog is compacted; the last run's markers and offsets win).

**to embedded**: ingest is fenced the same way; the workers must be stopped (the group has no
members) and must have applied every record of the commands topic. Every changelog partition is
read into a fresh LMDB in state.dir, whose applied position is then set to the checkpoint: `run`
finds "state and checkpoint agree" and streams on.

In both directions nothing is published to events topics: no event is lost or doubled.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cdc_bridge.apply.changelog import MARKER_HEADER, MARKER_KEY, changelog_topic_name, changelog_topic_spec
from cdc_bridge.apply.restore import ChangelogRestorer
from cdc_bridge.config import BridgeConfig
from cdc_bridge.ingest.commands_topic import commands_topic_name, commands_topic_spec
from cdc_bridge.jsoncodec import dumps
from cdc_bridge.observability.metrics import BridgeMetrics
from cdc_bridge.sink.checkpoint import checkpoint_position, read_checkpoint
from cdc_bridge.sink.clients import admin_config, consumer_config, producer_config
from cdc_bridge.sink.topics import TopicAdmin
from cdc_bridge.state.lmdb_store import LmdbStateStore

log = structlog.get_logger(__name__)

CHUNK = 20_000   # changelog records per Kafka transaction while handing over to workers


class HandoverError(Exception):
    """The handover is refused: the message says what to do first."""

    exit_code = 96


@dataclass
class HandoverReport:
    direction: str
    checkpoint: str
    records: dict[int, int] = field(default_factory=dict)           # partition -> aggregate records moved
    commands_offsets: dict[int, int] = field(default_factory=dict)  # partition -> where workers/state stand

    def render(self) -> str:
        total = sum(self.records.values())
        parts = ", ".join(f"p{p}: {self.records.get(p, 0)} @ {o}" for p, o in sorted(self.commands_offsets.items()))
        nxt = ("start `cdc-bridge ingest` and the workers (`cdc-bridge worker --worker-id ...`) with this config"
               if self.direction == "workers" else "start `cdc-bridge run` with this config")
        return (f"handover to {self.direction} done at checkpoint {self.checkpoint}: {total} aggregate records "
                f"(partition: records @ commands offset: {parts}). Now {nxt}.")


def _fence(config: BridgeConfig, who: str) -> Producer:
    """A producer with the bridge's own transactional.id: init_transactions aborts whatever the running
    (or a forgotten) embedded bridge / ingest has open and fences it for good."""
    producer = Producer(producer_config(config.kafka, config.name, java_partitioner=False))
    try:
        producer.init_transactions(max(30.0, config.kafka.transaction_timeout_ms / 1000 + 10))
    except KafkaException as e:
        raise HandoverError(f"cannot take over transactional.id {config.name!r} to fence the {who}: {e}. "
                            "Is Kafka reachable?") from e
    return producer


def _checkpoint(config: BridgeConfig) -> dict[str, Any]:
    topic = config.kafka.checkpoint_topic or f"{config.name}.checkpoints"
    ckpt = read_checkpoint(config.kafka, topic, config.name)
    if ckpt is None:
        raise HandoverError(f"bridge {config.name!r} has no checkpoint in {topic}: there is nothing to hand over. "
                            "A new bridge can start in either mode directly.")
    snap = ckpt.get("snapshot")
    if snap and not snap.get("done"):
        raise HandoverError("the bridge is in the middle of a snapshot; let it finish (the log says 'snapshot "
                            "finished'), stop it with SIGTERM, then hand over.")
    return ckpt


def _group_members(config: BridgeConfig, group: str) -> int:
    """Members of the workers' group. Workers that just stopped may still be listed while the group
    settles (a rebalance in progress): asked again for up to the session timeout."""
    admin = AdminClient(admin_config(config.kafka))
    deadline = time.monotonic() + config.worker.session_timeout_ms / 1000 + 5
    while True:
        try:
            desc = admin.describe_consumer_groups([group], request_timeout=30)[group].result()
        except KafkaException as e:
            raise HandoverError(f"cannot describe the workers' consumer group {group}: {e}") from e
        if not desc.members or time.monotonic() > deadline:
            return len(desc.members)
        time.sleep(1.0)


def _commands_ends(consumer: Consumer, topic: str, partitions: int) -> dict[int, int]:
    """The commands topic's last stable offset per partition (read_committed consumer)."""
    out = {}
    for p in range(partitions):
        deadline = time.monotonic() + 60
        while True:
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)
                break
            except KafkaException as e:   # a topic created a moment ago may have no leader yet
                if time.monotonic() > deadline:
                    raise HandoverError(f"cannot read the end offsets of {topic}: {e}") from e
                time.sleep(0.5)
        out[p] = high
    return out


def _unapplied(consumer: Consumer, topic: str, committed: dict[int, int], ends: dict[int, int]) -> dict[int, int]:
    """Data records between the committed offset and the end, per partition (transaction markers take
    offsets too: a drained partition's committed offset may sit just before its last commit marker)."""
    todo = {p: c for p, c in committed.items() if c < ends[p]}
    if not todo:
        return {}
    consumer.assign([TopicPartition(topic, p, c) for p, c in todo.items()])
    found: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while todo and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.2):
            if msg.error() is None:
                found[msg.partition()] = found.get(msg.partition(), 0) + 1
        for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
            if tp.offset >= ends[tp.partition]:
                todo.pop(tp.partition)
    consumer.unassign()
    if todo:
        raise HandoverError(f"cannot read partitions {sorted(todo)} of {topic} to their end; is Kafka healthy?")
    return found


def to_workers(config: BridgeConfig) -> HandoverReport:
    group = config.worker.group_id or f"{config.name}.workers"
    if _group_members(config, group):
        raise HandoverError(f"aggregate workers are running (consumer group {group} has members): stop them first.")
    producer = _fence(config, "embedded bridge")
    ckpt = _checkpoint(config)
    ck_pos = checkpoint_position(ckpt)
    if not (config.state.dir / "data.mdb").exists():
        raise HandoverError(f"no state in {config.state.dir}: run the handover with the embedded bridge's "
                            "configuration, on its state volume.")
    try:   # the writer lock: the embedded bridge must be stopped, not only fenced
        store = LmdbStateStore(config.state.dir, partitions=config.state.partitions,
                               map_size=config.state.map_size_mb << 20)
    except Exception as e:  # noqa: BLE001 - any failure to open means no state to hand over
        raise HandoverError(f"cannot open the embedded bridge's state in {config.state.dir}: {e}. Stop the "
                            "embedded bridge (SIGTERM) first.") from e
    try:
        lmdb_pos = store.applied_position()
        if lmdb_pos is None or lmdb_pos.order_key != ck_pos.order_key:
            raise HandoverError(
                f"the state in {config.state.dir} is at {lmdb_pos}, the Kafka checkpoint at {ck_pos}: start "
                "`cdc-bridge run` once so that it catches up (it re-applies without publishing), stop it with "
                "SIGTERM, then hand over.")
        TopicAdmin(config.kafka).ensure_topics([commands_topic_spec(config), changelog_topic_spec(config)])
        commands, changelog = commands_topic_name(config), changelog_topic_name(config)
        consumer = Consumer(consumer_config(config.kafka, group))   # never joins: only its group metadata
        try:
            ends = _commands_ends(consumer, commands, config.state.partitions)
            report = HandoverReport("workers", str(ck_pos), commands_offsets=dict(ends))
            pending: list[tuple[bytes, bytes, int]] = []
            for p in range(config.state.partitions):
                n = 0
                for key, value in store.raw_records(p):
                    pending.append((key, value, p))
                    n += 1
                    if len(pending) >= CHUNK:
                        _produce_in_transaction(producer, changelog, pending)
                        pending = []
                report.records[p] = n
            markers = [(MARKER_KEY, dumps({"commands_offset": ends[p]}), p) for p in range(config.state.partitions)]
            offsets = [TopicPartition(commands, p, ends[p]) for p in range(config.state.partitions)]
            _produce_in_transaction(producer, changelog, pending + markers, markers=True, offsets=offsets,
                                    group_metadata=consumer.consumer_group_metadata())
        finally:
            consumer.close()
    finally:
        store.close()
    log.info("handover to aggregate workers done", checkpoint=str(ck_pos), records=sum(report.records.values()),
             commands_offsets=report.commands_offsets)
    return report


def _produce_in_transaction(producer: Producer, topic: str, records: list[tuple[bytes, bytes, int]], *,
                            markers: bool = False, offsets: list[TopicPartition] | None = None,
                            group_metadata: Any = None) -> None:
    try:
        producer.begin_transaction()
        for key, value, p in records:
            headers = [(MARKER_HEADER, b"1")] if markers and key == MARKER_KEY else None
            while True:
                try:
                    producer.produce(topic, value=value, key=key, partition=p, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.1)
        if offsets:
            producer.send_offsets_to_transaction(offsets, group_metadata, 60)
        producer.commit_transaction(120)
    except KafkaException as e:
        try:
            producer.abort_transaction(30)
        except KafkaException:
            pass
        raise HandoverError(f"writing the changelog failed: {e}. Nothing was handed over; run the handover again.") from e


def to_embedded(config: BridgeConfig) -> HandoverReport:
    group = config.worker.group_id or f"{config.name}.workers"
    if _group_members(config, group):
        raise HandoverError(f"aggregate workers are running (consumer group {group} has members): stop ingest, "
                            "wait until the workers' lag is 0, stop them, then hand over.")
    commands, changelog = commands_topic_name(config), changelog_topic_name(config)
    admin = TopicAdmin(config.kafka)
    try:
        counts = admin.partition_counts([commands, changelog])
    finally:
        admin.close()
    if not counts.get(changelog) or not counts.get(commands):
        raise HandoverError(f"topic {changelog if not counts.get(changelog) else commands} does not exist: this "
                            "bridge never ran aggregate workers, so its state is where `run` left it.")
    _fence(config, "ingest")   # a forgotten ingest can no longer commit
    ckpt = _checkpoint(config)
    ck_pos = checkpoint_position(ckpt)
    consumer = Consumer(consumer_config(config.kafka, group))
    try:
        ends = _commands_ends(consumer, commands, config.state.partitions)
        committed = {tp.partition: tp.offset for tp in consumer.committed(
            [TopicPartition(commands, p) for p in range(config.state.partitions)], timeout=60)}
        behind = _unapplied(consumer, commands, {p: max(committed.get(p, 0), 0) for p in ends}, ends)
    finally:
        consumer.close()
    if behind:
        raise HandoverError(
            f"the workers have not applied every command yet (records left per partition: {behind}): start the "
            "workers (not ingest) until cdc_bridge_worker_partition_lag_records is 0, stop them, then hand over.")
    try:
        store = LmdbStateStore(config.state.dir, partitions=config.state.partitions,
                               map_size=config.state.map_size_mb << 20)
    except Exception as e:  # noqa: BLE001
        raise HandoverError(f"cannot open {config.state.dir} for the embedded bridge's state: {e}") from e
    try:
        if store.applied_position() is not None or any(True for p in range(store.partitions)
                                                       for _ in store.raw_records(p)):
            raise HandoverError(f"{config.state.dir} already holds state: move it aside (the changelog is the "
                                "state now), then hand over.")
        report = HandoverReport("embedded", str(ck_pos))
        restorer = ChangelogRestorer(config.kafka, changelog, store, BridgeMetrics(),
                                     f"{config.name}.handover-{uuid.uuid4().hex[:6]}")
        try:
            for p in range(config.state.partitions):
                c = committed.get(p, -1)
                start = restorer.plan(p, c if c >= 0 else None)
                while p in restorer.tasks:
                    start = restorer.step(2.0).get(p, start)
                report.commands_offsets[p] = start if start is not None else 0
                report.records[p] = sum(1 for _ in store.raw_records(p))
        finally:
            restorer.close()
        store.commit(ck_pos, {"batch": int(ckpt.get("batch", 0))})
    finally:
        store.close()
    log.info("handover to the embedded bridge done", checkpoint=str(ck_pos), records=sum(report.records.values()))
    return report
