"""The Kafka sink against the real broker (devenv): transactions, checkpoint, fencing, topics.

librdkafka's mock cluster hands aborted transactional messages to read_committed
consumers, so every visibility claim here runs on the real Apache Kafka.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from confluent_kafka import (Consumer, IsolationLevel, KafkaError, KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec, ResourceType

from cdc_bridge.aggregate.event import DomainEvent
from cdc_bridge.aggregate.router import partition_for
from cdc_bridge.mapping.command import DeadLetter
from cdc_bridge.sink import (BatchAbortedError, FatalPublishError, KafkaSettings, TopicAdmin, TopicConfigError,
                             TopicMismatchError, TopicSpec, TransactionalPublisher, bridge_topic_specs,
                             read_checkpoint)
from cdc_bridge.sink.checkpoint import encode_checkpoint
from cdc_bridge.source.position import SourcePosition


# --- helpers ------------------------------------------------------------------------------

@pytest.fixture
def settings(kafka_bootstrap) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def admin(kafka_bootstrap) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


_PREFIXES: list[str] = []   # names made by uid() in the running test: their topics are deleted after it


def uid() -> str:
    u = uuid.uuid4().hex[:10]
    _PREFIXES.append(f"it-{u}")
    return u


@pytest.fixture(autouse=True)
def _delete_test_topics(kafka_bootstrap):
    yield
    prefixes = tuple(_PREFIXES)
    _PREFIXES.clear()
    a = AdminClient({"bootstrap.servers": kafka_bootstrap})
    names = [t for t in a.list_topics(timeout=10).topics if t.startswith(prefixes)]
    for f in (a.delete_topics(names, operation_timeout=10).values() if names else ()):
        try:
            f.result(timeout=15)
        except Exception:
            pass


class Bridge:
    """A bridge's names and ensured topics, unique per test."""

    def __init__(self, settings: KafkaSettings, events_topics: int = 1) -> None:
        self.settings = settings
        self.name = f"it-{uid()}"
        self.events_topics = [f"{self.name}.ev{i}" for i in range(events_topics)]
        self.topic = self.events_topics[0]
        self.checkpoint_topic = settings.checkpoint_topic_for(self.name)
        self.dead_letter_topic = settings.dead_letter_topic_for(self.name)
        self.counts = TopicAdmin(settings).ensure_topics(bridge_topic_specs(settings, self.name, self.events_topics))

    def publisher(self, partitioner=partition_for, **kw) -> TransactionalPublisher:
        pub = TransactionalPublisher(self.settings, self.name, self.checkpoint_topic, self.dead_letter_topic,
                                     self.name, partitioner=partitioner, **kw)
        pub.start()
        pub.set_partition_counts(self.counts)
        return pub

    def checkpoint(self, timeout: float = 10.0):
        return read_checkpoint(self.settings, self.checkpoint_topic, self.name, timeout=timeout)


def event(agg_id, topic, seq=1, event_type="OrderPlaced", data=None, extra_headers=None) -> DomainEvent:
    return DomainEvent(event_type=event_type, aggregate="Order", aggregate_id=str(agg_id), sequence=seq,
                       schema_version=1, occurred_at=1_795_000_000.0 + seq,
                       source={"table": "shop.orders", "gtid": f"0-1-{seq}"},
                       data=data if data is not None else {"id": agg_id, "total": "12.50", "name": "Zoë"},
                       topic=topic, extra_headers=extra_headers or {})


def cp(batch: int, **state):
    return {"position": SourcePosition(f"0-1-{batch}", "mysql-bin.000001", 1000 + batch), "batch": batch,
            "state": state}


def read_all(bootstrap: str, topic: str, *, committed: bool = True, timeout: float = 15.0) -> list:
    """Every message of `topic` visible at the given isolation level, up to the current end."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    parts = sorted(a.list_topics(topic=topic, timeout=10).topics[topic].partitions)
    tps = {TopicPartition(topic, p): OffsetSpec.latest() for p in parts}
    end = {tp.partition: f.result().offset for tp, f in
           a.list_offsets(tps, isolation_level=IsolationLevel.READ_UNCOMMITTED).items()}
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-{uid()}", "enable.auto.commit": False,
                  "isolation.level": "read_committed" if committed else "read_uncommitted",
                  "fetch.wait.max.ms": 50})
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, pending, deadline = [], {p for p in parts if end[p] > 0}, time.monotonic() + timeout
    try:
        while pending:
            assert time.monotonic() < deadline, f"timed out reading {topic}, pending {pending}"
            for m in c.consume(1000, timeout=0.2):
                if m.error():
                    continue
                out.append(m)
            for tp in c.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= end[tp.partition]:
                    pending.discard(tp.partition)
    finally:
        c.close()
    return out


class ArmedProducer:
    """A real Producer whose next commit fails with an abortable error after everything
    was written to the log (flush): the publisher must abort the transaction for real."""

    def __init__(self, conf):
        self._p = Producer(conf)
        self.fail_next_commit = False

    def __getattr__(self, name):
        return getattr(self._p, name)

    def commit_transaction(self, timeout=None):
        if self.fail_next_commit:
            self.fail_next_commit = False
            assert self._p.flush(10) == 0
            raise KafkaException(KafkaError(KafkaError._INCONSISTENT, "injected commit failure",
                                            txn_requires_abort=True))
        return self._p.commit_transaction(timeout)


# --- tests --------------------------------------------------------------------------------

def test_committed_batch_is_visible_with_key_headers_value_partition(settings, kafka_bootstrap):
    b = Bridge(settings)
    pub = b.publisher()
    try:
        events = [event(i, b.topic, seq=i) for i in range(40)]
        events.append(event(7, b.topic, seq=41, event_type="OrderDeleted", data={"id": 7},
                            extra_headers={"cdc-bridge-tombstone": "1", "trace_id": "abc"}))
        dead = DeadLetter(reason="orphan", detail="order line without order", table="shop.order_lines",
                          aggregate="Order", aggregate_id="99", position=SourcePosition(None, "mysql-bin.000001", 5),
                          record={"id": 1, "order_id": 99})
        result = pub.publish_batch(events, [dead], cp(1, lmdb_batch=1))
        assert (result.events, result.dead_letters, result.tombstones) == (41, 1, 1)
        assert result.commit_seconds > 0

        # read right after commit: must already see this checkpoint (commit markers may lag)
        assert b.checkpoint()["batch"] == 1
    finally:
        pub.close()

    msgs = read_all(kafka_bootstrap, b.topic)
    assert len(msgs) == 42
    by_id = {}
    for m in msgs:
        key = m.key().decode()
        assert m.partition() == partition_for(key, 6), "partition must be Java's murmur2(key) % 6"
        headers = dict(m.headers())
        if m.value() is None:
            assert headers["cdc-bridge-tombstone"] == b"1" and key == "7"
            continue
        value = json.loads(m.value())
        by_id[value["event_id"]] = (m, value, headers)
    for ev in events:
        m, value, headers = by_id[ev.event_id]
        assert value == ev.envelope()
        assert m.key() == ev.aggregate_id.encode()
        assert headers["event_type"] == ev.event_type.encode() and headers["event_id"] == ev.event_id.encode()
    assert by_id["Order:7:41"][2]["trace_id"] == b"abc"
    assert "Zoë".encode() in by_id["Order:3:3"][0].value()            # UTF-8, not \u escapes
    # the tombstone directly follows its deletion event in the same partition
    p7 = sorted((m for m in msgs if m.key() == b"7"), key=lambda m: m.offset())
    assert [m.value() is None for m in p7][-2:] == [False, True]

    dl = read_all(kafka_bootstrap, b.dead_letter_topic)
    assert len(dl) == 1 and dict(dl[0].headers())["reason"] == b"orphan"
    assert json.loads(dl[0].value()) == dead.to_json_dict()

    ck = read_all(kafka_bootstrap, b.checkpoint_topic)
    assert len(ck) == 1 and ck[0].key() == b.name.encode()
    rec = json.loads(ck[0].value())
    assert rec["position"] == cp(1)["position"].to_dict() and rec["events"] == 41 and rec["state"] == {"lmdb_batch": 1}


def test_librdkafka_murmur2_random_matches_the_router(settings, kafka_bootstrap):
    """Without a partitioner, librdkafka's murmur2_random places keys like aggregate/router.py."""
    b = Bridge(settings)
    pub = b.publisher(partitioner=None)
    try:
        pub.publish_batch([event(f"order-{i}", b.topic) for i in range(60)], [], cp(1))
    finally:
        pub.close()
    msgs = read_all(kafka_bootstrap, b.topic)
    assert len(msgs) == 60
    assert all(m.partition() == partition_for(m.key().decode(), 6) for m in msgs)
    assert len({m.partition() for m in msgs}) == 6


def test_aborted_batch_is_invisible_and_the_checkpoint_ignores_it(settings, kafka_bootstrap):
    b = Bridge(settings)
    holder = {}

    def factory(conf):
        holder["p"] = ArmedProducer(conf)
        return holder["p"]

    pub = b.publisher(producer_factory=factory)
    try:
        pub.publish_batch([event(i, b.topic, seq=1) for i in range(5)], [], cp(1))
        holder["p"].fail_next_commit = True
        batch2 = [event(i, b.topic, seq=2, event_type="OrderPaid") for i in range(5)]
        with pytest.raises(BatchAbortedError, match="injected commit failure"):
            pub.publish_batch(batch2, [], cp(2))

        # the aborted messages are in the log, but read_committed never sees them
        assert len(read_all(kafka_bootstrap, b.topic, committed=False)) == 10
        assert [json.loads(m.value())["sequence"] for m in read_all(kafka_bootstrap, b.topic)] == [1] * 5
        assert b.checkpoint()["batch"] == 1
        assert len(read_all(kafka_bootstrap, b.checkpoint_topic, committed=False)) == 2

        # the same publisher redoes the batch
        pub.publish_batch(batch2, [], cp(2))
        assert b.checkpoint()["batch"] == 2
    finally:
        pub.close()
    seqs = sorted(json.loads(m.value())["sequence"] for m in read_all(kafka_bootstrap, b.topic))
    assert seqs == [1] * 5 + [2] * 5


def test_abort_refused_by_the_coordinator_replaces_the_producer_and_leaves_nothing_visible(settings,
                                                                                          kafka_bootstrap):
    """librdkafka#4849: the coordinator can refuse an abort with INVALID_TXN_STATE (fatal in librdkafka). Here
    the refusal is simulated without aborting, so the transaction really stays open on the broker: the new
    producer's init_transactions must abort it, and the redone batch is visible once."""
    b = Bridge(settings)
    made = []

    class RefusingProducer(ArmedProducer):
        def abort_transaction(self, timeout=None):
            if len(made) == 1:   # the first producer: its records were flushed, its transaction stays open
                raise KafkaException(KafkaError(KafkaError.INVALID_TXN_STATE, "injected: abort refused",
                                                fatal=True))
            return self._p.abort_transaction(timeout)

    def factory(conf):
        made.append(RefusingProducer(conf))
        return made[-1]

    pub = b.publisher(producer_factory=factory)
    try:
        pub.publish_batch([event(i, b.topic, seq=1) for i in range(5)], [], cp(1))
        made[0].fail_next_commit = True
        batch2 = [event(i, b.topic, seq=2, event_type="OrderPaid") for i in range(5)]
        with pytest.raises(BatchAbortedError, match="injected commit failure"):
            pub.publish_batch(batch2, [], cp(2))
        assert len(made) == 2 and pub.producers_replaced == 1
        assert len(read_all(kafka_bootstrap, b.topic, committed=False)) == 10   # written, then aborted
        assert b.checkpoint()["batch"] == 1
        pub.publish_batch(batch2, [], cp(2))
        assert b.checkpoint()["batch"] == 2
    finally:
        pub.close()
    seqs = sorted(json.loads(m.value())["sequence"] for m in read_all(kafka_bootstrap, b.topic))
    assert seqs == [1] * 5 + [2] * 5


def test_broker_rejecting_one_event_aborts_the_whole_batch(settings, admin, kafka_bootstrap):
    """A delivery failure inside the transaction (topic max.message.bytes) makes the
    commit fail: the batch is aborted, none of it is visible, and the error is fatal
    with its fix (redoing the batch cannot help)."""
    name = f"it-{uid()}"
    topic = f"{name}.ev0"
    admin.create_topics([NewTopic(topic, 6, 1, config={"max.message.bytes": "2000"})])[topic].result()
    counts = TopicAdmin(settings).ensure_topics(bridge_topic_specs(settings, name, [topic]))
    pub = TransactionalPublisher(settings, name, settings.checkpoint_topic_for(name),
                                 settings.dead_letter_topic_for(name), name, partitioner=partition_for)
    pub.start()
    pub.set_partition_counts(counts)
    try:
        events = [event(i, topic) for i in range(5)] + [event(5, topic, data={"blob": os.urandom(3000).hex()})]
        with pytest.raises(FatalPublishError, match="max.message.bytes") as e:
            pub.publish_batch(events, [], cp(1))
        assert e.value.kafka_error.code() == KafkaError.MSG_SIZE_TOO_LARGE and not e.value.fenced
    finally:
        pub.close()
    assert read_all(kafka_bootstrap, topic) == []
    assert read_checkpoint(settings, settings.checkpoint_topic_for(name), name, timeout=10) is None


def test_second_publisher_with_same_transactional_id_fences_the_first(settings, kafka_bootstrap):
    b = Bridge(settings)
    first = b.publisher()
    first.publish_batch([event(1, b.topic)], [], cp(1))
    second = b.publisher()
    try:
        with pytest.raises(FatalPublishError) as e:
            first.publish_batch([event(2, b.topic)], [], cp(2))
        assert e.value.fenced and e.value.exit_code == 70
        assert f"another bridge with transactional.id '{b.name}' took over; run one bridge per source" in str(e.value)
        with pytest.raises(FatalPublishError):
            first.publish_batch([event(2, b.topic)], [], cp(2))      # stays fenced
        t = time.monotonic()
        first.close()
        assert time.monotonic() - t < 5

        second.publish_batch([event(3, b.topic)], [], cp(3))
        assert b.checkpoint()["batch"] == 3
    finally:
        second.close()
    assert sorted(m.key() for m in read_all(kafka_bootstrap, b.topic)) == [b"1", b"3"]


def test_restart_aborts_the_transaction_a_crashed_bridge_left_open(settings, kafka_bootstrap):
    """A bridge dies mid-transaction; the restarted one's start() (init_transactions)
    aborts the leftover at once, and read_checkpoint() returns the previous checkpoint."""
    b = Bridge(settings)
    pub = b.publisher()
    pub.publish_batch([event(1, b.topic)], [], cp(1))
    pub.close()

    crashed = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": b.name})
    crashed.init_transactions(10)
    crashed.begin_transaction()
    crashed.produce(b.topic, json.dumps({"zombie": True}).encode(), b"2", partition=partition_for("2", 6))
    key, value = encode_checkpoint({"bridge": b.name, "position": cp(99)["position"].to_dict(), "batch": 99,
                                    "events": 1, "committed_at": "x", "state": {}})
    crashed.produce(b.checkpoint_topic, value, key, partition=0)
    assert crashed.flush(10) == 0                     # written, never committed

    t = time.monotonic()
    restarted = b.publisher()
    try:
        assert b.checkpoint(timeout=10)["batch"] == 1
        assert time.monotonic() - t < 10, "must not wait for transaction.timeout.ms"
        restarted.publish_batch([event(3, b.topic)], [], cp(2))
        assert b.checkpoint()["batch"] == 2
    finally:
        restarted.close()
    assert sorted(m.key() for m in read_all(kafka_bootstrap, b.topic)) == [b"1", b"3"]


def test_existing_events_topic_with_other_partition_count(settings, admin):
    topic = f"it-{uid()}.ev0"
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()
    with pytest.raises(TopicMismatchError, match="Set kafka.topic_partitions to 3") as e:
        TopicAdmin(settings).ensure_topics([TopicSpec.events(topic, settings)])
    assert (e.value.existing, e.value.configured) == (3, 6)


def test_ensure_topics_creates_a_compacted_checkpoint_topic(settings, admin):
    name = f"it-{uid()}"
    specs = bridge_topic_specs(settings, name, [f"{name}.ev0"])
    topic_admin = TopicAdmin(settings)
    counts = topic_admin.ensure_topics(specs)
    assert counts == {f"{name}.ev0": 6, f"{name}.dead-letter": 1, f"{name}.checkpoints": 1}
    assert topic_admin.ensure_topics(specs) == counts                # idempotent: verifies the existing

    def config(topic):
        r = ConfigResource(ResourceType.TOPIC, topic)
        return {k: v.value for k, v in admin.describe_configs([r])[r].result().items()}

    assert config(f"{name}.checkpoints")["cleanup.policy"] == "compact"
    assert config(f"{name}.ev0")["retention.ms"] == "-1"
    assert config(f"{name}.ev0")["cleanup.policy"] == "delete"
    assert config(f"{name}.dead-letter")["retention.ms"] == str(30 * 24 * 3600 * 1000)

    # the pipeline's call without settings: broker default replication factor (-1)
    other = f"it-{uid()}.checkpoints"
    assert topic_admin.ensure_topics([TopicSpec.checkpoint(other)]) == {other: 1}
    assert config(other)["cleanup.policy"] == "compact"


def test_existing_checkpoint_topic_that_is_not_compacted(settings, admin):
    topic = f"it-{uid()}.checkpoints"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    with pytest.raises(TopicConfigError, match="must be exactly 'compact'"):
        TopicAdmin(settings).ensure_topics([TopicSpec.checkpoint(topic, settings)])


def test_read_checkpoint_without_topic_or_key(settings):
    b = Bridge(settings)
    assert read_checkpoint(settings, f"it-{uid()}.nothing", b.name, timeout=5) is None
    assert b.checkpoint() is None
    pub = b.publisher()
    try:
        pub.publish_batch([], [], cp(1))
    finally:
        pub.close()
    assert read_checkpoint(settings, b.checkpoint_topic, "another-bridge", timeout=5) is None
    assert b.checkpoint()["batch"] == 1


def test_ten_thousand_events_in_one_transaction(settings, kafka_bootstrap, capsys):
    b = Bridge(settings)
    pub = b.publisher()
    rates = []
    try:
        for batch in (1, 2, 3):
            events = [event(f"o{batch}-{i}", b.topic, seq=batch) for i in range(10_000)]
            t = time.perf_counter()
            r = pub.publish_batch(events, [], cp(batch))
            rates.append((len(events) / (time.perf_counter() - t), r))
        assert b.checkpoint()["batch"] == 3
    finally:
        pub.close()
    assert len(read_all(kafka_bootstrap, b.topic)) == 30_000
    with capsys.disabled():
        for rate, r in rates:
            print(f"\n  publish_batch 10,000 events: {rate:,.0f} events/s "
                  f"(produce {r.produce_seconds * 1000:.0f} ms, commit {r.commit_seconds * 1000:.0f} ms, "
                  f"total {r.total_seconds * 1000:.0f} ms)", end="")
    assert min(rate for rate, _ in rates) > 2_000
