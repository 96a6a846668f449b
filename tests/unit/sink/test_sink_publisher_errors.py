"""Publisher error paths against a scripted producer (no broker), plus the real
librdkafka client on its mock cluster for queue-full handling. Transaction
visibility is proven in tests/integration/test_sink_publisher.py on the real broker."""

import json

import pytest
from confluent_kafka import KafkaError

from cdc_bridge.aggregate.router import partition_for
from cdc_bridge.mapping.command import DeadLetter
from cdc_bridge.sink.errors import BatchAbortedError, FatalPublishError, KafkaUnavailableError, SinkError
from cdc_bridge.sink.publisher import PublisherHooks, TransactionalPublisher
from cdc_bridge.sink.retry import RetryPolicy
from cdc_bridge.sink.settings import KafkaSettings

from sink_fakes import FakeProducer, kafka_exc, make_event, position

SETTINGS = KafkaSettings(bootstrap_servers="fake:9092")
NO_WAIT = RetryPolicy(initial_backoff_s=0, jitter=0)


class Recorder:
    def __init__(self):
        self.commits, self.aborts, self.retries, self.fatals = [], [], [], []
        self.hooks = PublisherHooks(on_commit=self.commits.append, on_abort=self.aborts.append,
                                    on_retry=lambda op, e: self.retries.append((op, e.code())),
                                    on_fatal=self.fatals.append)


def make(partitioner=partition_for, retry=NO_WAIT, hooks=None, **kw):
    fake = FakeProducer({}, partitions={"shop.orders": 6, "b.checkpoints": 1, "b.dead-letter": 1})
    holder = {}

    def factory(conf):
        fake.conf = conf
        holder["p"] = fake
        return fake

    pub = TransactionalPublisher(SETTINGS, "b", "b.checkpoints", "b.dead-letter", "b", partitioner=partitioner,
                                 hooks=hooks, retry=retry, producer_factory=factory, **kw)
    pub.start()
    return pub, fake


def cp(n=1):
    return {"position": position(n), "batch": n, "state": {"lmdb_batch": n}}


def test_producer_config_is_transactional():
    pub, fake = make()
    c = fake.conf
    assert c["transactional.id"] == "b" and c["enable.idempotence"] is True and c["acks"] == "all"
    assert c["transaction.timeout.ms"] == 60000 and c["allow.auto.create.topics"] is False
    assert "partitioner" not in c            # explicit partitions from the given partitioner
    _, fake2 = make(partitioner=None)
    assert fake2.conf["partitioner"] == "murmur2_random"


def test_message_layout():
    pub, fake = make()
    events = [make_event(1), make_event(2, event_type="OrderDeleted",
                                        extra_headers={"cdc-bridge-tombstone": "1", "trace": "t1"})]
    dl = DeadLetter(reason="orphan", detail="no parent", table="shop.order_lines", aggregate="Order",
                    aggregate_id="9", record={"id": 3})
    r = pub.publish_batch(events, [dl], cp(5))
    assert (r.batch, r.events, r.dead_letters, r.tombstones, r.commit_retries) == (5, 2, 1, 1, 0)
    assert r.commit_seconds >= 0 and r.total_seconds >= r.commit_seconds
    msgs = fake.committed[0]
    assert [m["topic"] for m in msgs] == ["shop.orders"] * 3 + ["b.dead-letter", "b.checkpoints"]
    m1 = msgs[0]
    assert m1["key"] == b"1" and m1["partition"] == partition_for("1", 6)
    assert json.loads(m1["value"]) == events[0].envelope()
    assert b" " not in m1["value"] and "Grüße".encode() in m1["value"]   # compact, ensure_ascii=False
    assert m1["headers"] == [("event_type", b"OrderPlaced"), ("event_id", b"Order:1:1")]
    deleted, tomb = msgs[1], msgs[2]
    assert ("trace", b"t1") in deleted["headers"]
    assert all(k != "cdc-bridge-tombstone" for k, _ in deleted["headers"])
    assert tomb["value"] is None and tomb["key"] == b"2" and tomb["partition"] == deleted["partition"]
    assert ("cdc-bridge-tombstone", b"1") in tomb["headers"]
    assert msgs[3]["key"] == b"9" and ("reason", b"orphan") in msgs[3]["headers"]
    assert json.loads(msgs[3]["value"]) == dl.to_json_dict()
    ck = json.loads(msgs[4]["value"])
    assert msgs[4]["key"] == b"b" and ck["batch"] == 5 and ck["events"] == 2 and ck["state"] == {"lmdb_batch": 5}
    assert ck["position"] == position(5).to_dict()
    assert fake.calls.count("begin_transaction") == 1 and fake.calls.count("commit_transaction") == 1


def test_partition_counts_are_looked_up_once_and_can_be_seeded():
    pub, fake = make()
    pub.publish_batch([make_event(1)], [], cp(1))
    pub.publish_batch([make_event(2)], [], cp(2))
    assert fake.calls.count("list_topics") == 2          # shop.orders + checkpoint topic, once each
    pub2, fake2 = make()
    pub2.set_partition_counts({"shop.orders": 6, "b.checkpoints": 1})
    pub2.publish_batch([make_event(1)], [], cp(1))
    assert "list_topics" not in fake2.calls


def test_missing_topic_is_fatal_before_the_transaction():
    pub, fake = make()
    with pytest.raises(FatalPublishError, match="does not exist"):
        pub.publish_batch([make_event(1, topic="nope")], [], cp())
    assert "begin_transaction" not in fake.calls


def test_commit_retriable_is_retried():
    rec = Recorder()
    pub, fake = make(hooks=rec.hooks)
    fake.fail["commit_transaction"] = [kafka_exc(KafkaError._TIMED_OUT, retriable=True)] * 2
    r = pub.publish_batch([make_event(1)], [], cp())
    assert r.commit_retries == 2 and fake.calls.count("commit_transaction") == 3
    assert fake.aborted == 0 and len(fake.committed) == 1
    assert rec.retries == [("commit_transaction", KafkaError._TIMED_OUT)] * 2 and rec.commits == [r]


def test_commit_retriable_beyond_budget_raises_unavailable_and_aborts():
    pub, fake = make(retry=RetryPolicy(initial_backoff_s=0, jitter=0, max_attempts=3))
    fake.fail["commit_transaction"] = [kafka_exc(KafkaError._TIMED_OUT, retriable=True)] * 3
    with pytest.raises(KafkaUnavailableError, match="commit_transaction kept failing"):
        pub.publish_batch([make_event(1)], [], cp())
    assert fake.aborted == 1


def test_abortable_commit_aborts_and_the_batch_can_be_redone():
    rec = Recorder()
    pub, fake = make(hooks=rec.hooks)
    fake.fail["commit_transaction"] = [kafka_exc(KafkaError._MSG_TIMED_OUT, txn_requires_abort=True)]
    with pytest.raises(BatchAbortedError, match="redo") as e:
        pub.publish_batch([make_event(1)], [], cp())
    assert e.value.kafka_error.code() == KafkaError._MSG_TIMED_OUT and e.value.exit_code == 75
    assert fake.aborted == 1 and fake.committed == [] and len(rec.aborts) == 1
    r = pub.publish_batch([make_event(1)], [], cp())    # same publisher, redo
    assert r.events == 1 and len(fake.committed) == 1


def test_abortable_with_a_permanent_cause_is_fatal_after_abort():
    pub, fake = make()
    fake.fail["commit_transaction"] = [kafka_exc(KafkaError.MSG_SIZE_TOO_LARGE, txn_requires_abort=True)]
    with pytest.raises(FatalPublishError, match="max.message.bytes"):
        pub.publish_batch([make_event(1)], [], cp())
    assert fake.aborted == 1


def test_delivery_error_is_named_in_the_abort():
    pub, fake = make()

    def fail_commit(timeout=None):
        fake.calls.append("commit_transaction")
        pub._on_delivery(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS, "not enough replicas"), _Msg())
        raise kafka_exc(KafkaError._INCONSISTENT, txn_requires_abort=True, reason="txn failed")

    fake.commit_transaction = fail_commit
    with pytest.raises(BatchAbortedError, match="NOT_ENOUGH_REPLICAS"):
        pub.publish_batch([make_event(1)], [], cp())


class _Msg:
    def topic(self):
        return "shop.orders"


@pytest.mark.parametrize("code", [KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH])
def test_fenced_on_commit_is_fatal_without_abort(code):
    rec = Recorder()
    pub, fake = make(hooks=rec.hooks)
    fake.fail["commit_transaction"] = [kafka_exc(code, fatal=code == KafkaError._FENCED)]
    with pytest.raises(FatalPublishError, match="another bridge with transactional.id 'b' took over") as e:
        pub.publish_batch([make_event(1)], [], cp())
    assert e.value.fenced and fake.aborted == 0 and len(rec.fatals) == 1
    with pytest.raises(FatalPublishError):           # stays failed
        pub.publish_batch([make_event(1)], [], cp())
    assert fake.calls.count("begin_transaction") == 1
    pub.close()
    assert "purge" in fake.calls and "flush" not in fake.calls


def test_fenced_on_begin():
    pub, fake = make()
    fake.fail["begin_transaction"] = [kafka_exc(KafkaError._FENCED, fatal=True)]
    with pytest.raises(FatalPublishError) as e:
        pub.publish_batch([make_event(1)], [], cp())
    assert e.value.fenced and fake.aborted == 0


def test_fatal_error_callback_stops_the_produce_loop():
    pub, fake = make(poll_every=10)

    def on_produce(n):
        if n == 15:
            pub._on_error(KafkaError(KafkaError._INCONSISTENT, "boom", fatal=True))

    fake.on_produce = on_produce
    with pytest.raises(FatalPublishError, match="fatal Kafka error") as e:
        pub.publish_batch([make_event(i) for i in range(100)], [], cp())
    assert not e.value.fenced and len(fake.produced) == 20 and fake.aborted == 0


def test_buffer_full_polls_and_retries_the_same_message():
    pub, fake = make()
    fake.fail["produce"] = [None, BufferError(), BufferError(), None, kafka_exc(KafkaError._QUEUE_FULL)]
    pub.publish_batch([make_event(i) for i in range(5)], [], cp())
    keys = [m["key"] for m in fake.committed[0][:-1]]
    assert keys == [b"0", b"1", b"2", b"3", b"4"]
    assert pub.buffer_full_waits == 3


def test_permanent_produce_error_aborts_then_fatal():
    pub, fake = make()
    fake.fail["produce"] = [None, kafka_exc(KafkaError.MSG_SIZE_TOO_LARGE)]
    with pytest.raises(FatalPublishError, match="max.message.bytes"):
        pub.publish_batch([make_event(1), make_event(2)], [], cp())
    assert fake.aborted == 1
    assert pub.publish_batch([make_event(1)], [], cp()).events == 1   # the producer itself is fine


def test_interrupt_mid_batch_aborts_and_propagates():
    pub, fake = make()
    fake.fail["produce"] = [None, KeyboardInterrupt()]
    with pytest.raises(KeyboardInterrupt):
        pub.publish_batch([make_event(1), make_event(2)], [], cp())
    assert fake.aborted == 1 and not fake.in_txn


def test_abort_failing_fatally_is_fatal():
    pub, fake = make()
    fake.fail["commit_transaction"] = [kafka_exc(KafkaError._MSG_TIMED_OUT, txn_requires_abort=True)]
    fake.fail["abort_transaction"] = [kafka_exc(KafkaError._FENCED, fatal=True)]
    with pytest.raises(FatalPublishError) as e:
        pub.publish_batch([make_event(1)], [], cp())
    assert e.value.fenced


def test_abort_retriable_is_retried():
    pub, fake = make()
    fake.fail["commit_transaction"] = [kafka_exc(KafkaError._MSG_TIMED_OUT, txn_requires_abort=True)]
    fake.fail["abort_transaction"] = [kafka_exc(KafkaError._TIMED_OUT, retriable=True)]
    with pytest.raises(BatchAbortedError):
        pub.publish_batch([make_event(1)], [], cp())
    assert fake.calls.count("abort_transaction") == 2 and fake.aborted == 1


def test_unserializable_event_fails_before_the_transaction():
    pub, fake = make()
    with pytest.raises(FatalPublishError, match="Order:1:1"):
        pub.publish_batch([make_event(1, data={"x": object()})], [], cp())
    assert "begin_transaction" not in fake.calls


def test_invalid_checkpoint_fails_before_the_transaction():
    pub, fake = make()
    with pytest.raises(SinkError, match="position"):
        pub.publish_batch([make_event(1)], [], {"batch": 1})
    assert "begin_transaction" not in fake.calls


def test_init_transactions_retried_then_unavailable():
    fake = FakeProducer({})
    fake.fail["init_transactions"] = [kafka_exc(KafkaError._TIMED_OUT, retriable=True)] * 5
    pub = TransactionalPublisher(SETTINGS, "b", "cp", "dl", "b", producer_factory=lambda c: fake,
                                 retry=RetryPolicy(initial_backoff_s=0, jitter=0, max_attempts=3))
    with pytest.raises(KafkaUnavailableError, match="init_transactions kept failing"):
        pub.start()
    assert fake.calls.count("init_transactions") == 3


def test_start_waits_between_attempts_with_startup_sleep_which_may_stop_it():
    """The bridge passes a sleep that raises on SIGTERM: a stop during startup ends the retries."""
    class Stop(Exception):
        pass

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise Stop()

    fake = FakeProducer({})
    fake.fail["init_transactions"] = [kafka_exc(KafkaError._TIMED_OUT, retriable=True)] * 5
    pub = TransactionalPublisher(SETTINGS, "b", "cp", "dl", "b", producer_factory=lambda c: fake,
                                 retry=RetryPolicy(initial_backoff_s=0.5, jitter=0, max_attempts=10),
                                 startup_sleep=sleep)
    with pytest.raises(Stop):
        pub.start()
    assert fake.calls.count("init_transactions") == 2 and len(waits) == 2 and waits[0] == 0.5


def test_publish_before_start():
    pub = TransactionalPublisher(SETTINGS, "b", "cp", "dl", "b", producer_factory=FakeProducer)
    with pytest.raises(SinkError, match="before start"):
        pub.publish_batch([], [], cp())


def test_hook_exceptions_do_not_break_publishing():
    def bad(_):
        raise RuntimeError("metrics down")

    pub, fake = make(hooks=PublisherHooks(on_commit=bad))
    assert pub.publish_batch([make_event(1)], [], cp()).events == 1


def test_close_aborts_an_open_transaction():
    pub, fake = make()
    fake.begin_transaction()
    pub._in_transaction = True
    pub.close()
    assert fake.aborted == 1 and "flush" in fake.calls


# --- the real client on librdkafka's mock cluster ------------------------------------------

def test_queue_full_on_the_mock_cluster():
    """A tiny local queue forces BufferError mid-transaction; every event still goes out."""
    s = KafkaSettings(bootstrap_servers="unused:9092",
                      extra={"test.mock.num.brokers": "1", "allow.auto.create.topics": "true",
                             "queue.buffering.max.messages": "20", "linger.ms": "1"})
    pub = TransactionalPublisher(s, "mock-b", "mock.checkpoints", "mock.dead-letter", "mock-b",
                                 partitioner=partition_for, retry=NO_WAIT)
    pub.start()
    try:
        r = pub.publish_batch([make_event(i, topic="mock.orders") for i in range(500)], [], cp())
        assert r.events == 500 and pub.buffer_full_waits > 0
        assert pub.partition_count("mock.orders") == 4     # mock cluster default
        r2 = pub.publish_batch([make_event(i, topic="mock.orders") for i in range(10)], [], cp(2))
        assert r2.batch == 2
    finally:
        pub.close()


def test_produce_refused_after_a_background_failure_is_an_abort():
    """Once a delivery failure puts the transaction in its abortable state, produce()
    raises _STATE: abort, and let the caller redo the batch."""
    pub, fake = make()
    fake.fail["produce"] = [None, kafka_exc(KafkaError._STATE, reason="Erroneous state")]
    with pytest.raises(BatchAbortedError):
        pub.publish_batch([make_event(1), make_event(2)], [], cp())
    assert fake.aborted == 1
    assert pub.publish_batch([make_event(1)], [], cp()).events == 1


def test_produce_refused_after_a_permanent_delivery_failure_is_fatal():
    pub, fake = make()
    fake.fail["produce"] = [None, kafka_exc(KafkaError._STATE, reason="Erroneous state")]
    fake.on_produce = lambda n: pub._on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"), _Msg())
    with pytest.raises(FatalPublishError, match="max.message.bytes"):
        pub.publish_batch([make_event(1), make_event(2)], [], cp())
    assert fake.aborted == 1


def test_purge_reports_of_an_abort_are_not_causes():
    pub, fake = make()
    pub._on_delivery(KafkaError(KafkaError._PURGE_QUEUE), _Msg())
    assert pub._delivery_errors == []


def test_start_can_be_retried_after_unavailable():
    fake = FakeProducer({})
    fake.fail["init_transactions"] = [kafka_exc(KafkaError._TIMED_OUT, retriable=True)] * 2
    pub = TransactionalPublisher(SETTINGS, "b", "cp", "dl", "b", producer_factory=lambda c: fake,
                                 retry=RetryPolicy(initial_backoff_s=0, jitter=0, max_attempts=2))
    with pytest.raises(KafkaUnavailableError):
        pub.start()
    pub.start()
    assert fake.calls.count("init_transactions") == 3


def test_fatal_init_transactions():
    fake = FakeProducer({})
    fake.fail["init_transactions"] = [kafka_exc(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)]
    pub = TransactionalPublisher(SETTINGS, "b", "cp", "dl", "b", producer_factory=lambda c: fake, retry=NO_WAIT)
    with pytest.raises(FatalPublishError, match="TransactionalId"):
        pub.start()


def test_an_event_larger_than_its_topic_accepts_is_a_too_large_dead_letter_and_the_batch_goes_on():
    """Issue 16: a 1.38 MB created event on a topic of Kafka's 1 MB default must not halt the bridge."""
    pub, fake = make()
    assert fake.conf["message.max.bytes"] == 8 * 1024 * 1024
    pub.set_message_limits({"shop.orders": 1_048_588})
    big = make_event(2, data={"lines": [{"sku": "x" * 100, "n": i} for i in range(12_000)]})
    r = pub.publish_batch([make_event(1), big, make_event(3)], [], cp(1))
    msgs = fake.committed[0]
    assert [m["topic"] for m in msgs] == ["shop.orders", "shop.orders", "b.dead-letter", "b.checkpoints"]
    dl = json.loads(msgs[2]["value"])
    assert dl["reason"] == "too_large" and dl["aggregate_id"] == "2" and ("reason", b"too_large") in msgs[2]["headers"]
    assert dl["record"]["event_id"] == big.event_id and dl["record"]["bytes"] > 1_048_588
    assert "max_embedded_children" in dl["detail"] and r.events == 2 and r.dead_letters == 1
    # the caller's metrics count it as a dead letter, not as a published event
    from cdc_bridge.observability.metrics import BridgeMetrics

    prepared = pub.prepare([make_event(1), big], [], cp(2))
    assert [d.reason for d in prepared.too_large] == ["too_large"]
    m = BridgeMetrics()
    m.count_outcome([make_event(1), big], [], prepared.too_large)
    assert m.registry.get_sample_value("cdc_bridge_dead_letters_total", {"reason": "too_large"}) == 1
    assert m.registry.get_sample_value("cdc_bridge_events_published_total",
                                       {"aggregate": "Order", "event_type": "OrderPlaced"}) == 1
    assert m.registry.get_sample_value("cdc_bridge_rejections_total", {"aggregate": "Order", "reason": "too_large"}) is None


def test_a_topic_with_a_small_limit_is_checked_too():
    """A topic someone created with max.message.bytes of 50 kB: a 60 kB event is a too_large dead letter
    (values shorter than the smallest limit minus a headroom are not measured; this one is)."""
    pub, fake = make()
    pub.set_message_limits({"shop.orders": 50_000})
    assert pub.measure_above < 50_000
    big = make_event(2, data={"blob": "x" * 60_000})
    r = pub.publish_batch([make_event(1), big], [], cp(1))
    msgs = fake.committed[0]
    assert [m["topic"] for m in msgs] == ["shop.orders", "b.dead-letter", "b.checkpoints"]
    assert json.loads(msgs[1]["value"])["reason"] == "too_large" and r.dead_letters == 1


def test_abort_refused_with_invalid_txn_state_replaces_the_producer_and_the_batch_is_redone():
    """librdkafka#4849: the abort's EndTxn can overtake the transaction's first AddPartitionsToTxn and the
    coordinator refuses it with INVALID_TXN_STATE (fatal in librdkafka). A new producer on the same
    transactional.id (init_transactions aborts what the old one left) lets the batch be redone."""
    made = []

    def factory(conf):
        p = FakeProducer(conf, partitions={"shop.orders": 6, "b.checkpoints": 1, "b.dead-letter": 1})
        made.append(p)
        return p

    rec = Recorder()
    pub = TransactionalPublisher(SETTINGS, "b", "b.checkpoints", "b.dead-letter", "b", partitioner=partition_for,
                                 hooks=rec.hooks, retry=NO_WAIT, producer_factory=factory)
    pub.start()
    first = made[0]
    first.fail["commit_transaction"] = [kafka_exc(KafkaError.REQUEST_TIMED_OUT, txn_requires_abort=True)]
    first.fail["abort_transaction"] = [kafka_exc(KafkaError.INVALID_TXN_STATE, fatal=True)]
    with pytest.raises(BatchAbortedError):
        pub.publish_batch([make_event(1)], [], cp())
    # the old producer's late fatal error callback must not poison the new one
    first.conf["error_cb"](KafkaError(KafkaError.INVALID_TXN_STATE, "late", fatal=True))
    assert len(made) == 2 and pub.producers_replaced == 1 and rec.fatals == []
    assert "purge" in first.calls and made[1].calls[0] == "init_transactions"
    assert first.committed == [] and len(rec.aborts) == 1
    result = pub.publish_batch([make_event(1)], [], cp())
    assert result.events == 1 and len(made[1].committed) == 1 and first.committed == []


def test_abort_refused_as_fenced_is_fatal_and_no_producer_is_made():
    made = []

    def factory(conf):
        p = FakeProducer(conf, partitions={"shop.orders": 6, "b.checkpoints": 1, "b.dead-letter": 1})
        made.append(p)
        return p

    pub = TransactionalPublisher(SETTINGS, "b", "b.checkpoints", "b.dead-letter", "b", partitioner=partition_for,
                                 retry=NO_WAIT, producer_factory=factory)
    pub.start()
    made[0].fail["commit_transaction"] = [kafka_exc(KafkaError.REQUEST_TIMED_OUT, txn_requires_abort=True)]
    made[0].fail["abort_transaction"] = [kafka_exc(KafkaError.PRODUCER_FENCED, fatal=True)]
    with pytest.raises(FatalPublishError) as e:
        pub.publish_batch([make_event(1)], [], cp())
    assert e.value.fenced and len(made) == 1 and pub.producers_replaced == 0
