"""TopicAdmin decisions against a fake AdminClient; creation and compaction on the
real broker are in tests/integration/test_sink_publisher.py."""

from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError

from cdc_bridge.sink.errors import KafkaUnavailableError, TopicConfigError, TopicMismatchError
from cdc_bridge.sink.retry import RetryPolicy
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.sink.topics import TopicAdmin, TopicRole, TopicSpec, bridge_topic_specs

from sink_fakes import kafka_exc

S = KafkaSettings(bootstrap_servers="fake:9092")


def done(value=None, exc=None):
    f = Future()
    f.set_exception(exc) if exc else f.set_result(value)
    return f


class FakeAdmin:
    def __init__(self, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None):
        self.topics = dict(topics)
        self.configs = configs or {}
        self.created: list = []
        self.list_failures: list = []

    def list_topics(self, timeout=None):
        if self.list_failures:
            raise self.list_failures.pop(0)
        return SimpleNamespace(topics={
            n: SimpleNamespace(error=None, partitions={i: SimpleNamespace(id=i, leader=1) for i in range(p)})
            for n, p in self.topics.items()})

    def create_topics(self, new, operation_timeout=None, request_timeout=None):
        out = {}
        for t in new:
            self.created.append(t)
            if t.topic in self.topics:
                out[t.topic] = done(exc=kafka_exc(KafkaError.TOPIC_ALREADY_EXISTS))
            else:
                self.topics[t.topic] = t.num_partitions
                self.configs[t.topic] = dict(t.config)
                out[t.topic] = done()
        return out

    def describe_configs(self, resources, request_timeout=None):
        return {r: done({k: SimpleNamespace(value=v) for k, v in self.configs.get(r.name, {}).items()})
                for r in resources}

    def poll(self, timeout=0):
        return 0


def admin_with(fake, settings=S, **kw):
    return TopicAdmin(settings, admin_factory=lambda conf: fake, **kw)


def test_bridge_topic_specs():
    specs = bridge_topic_specs(S, "orders", ["shop.orders", "shop.customers", "shop.orders"])
    by_name = {s.name: s for s in specs}
    assert set(by_name) == {"shop.orders", "shop.customers", "orders.dead-letter", "orders.checkpoints"}
    assert by_name["shop.orders"] == TopicSpec("shop.orders", TopicRole.EVENTS, 6, 1, {
        "retention.ms": "-1", "max.message.bytes": str(8 * 1024 * 1024)})
    cp = by_name["orders.checkpoints"]
    assert cp.partitions == 1 and cp.config["cleanup.policy"] == "compact"
    dl = by_name["orders.dead-letter"]
    assert dl.partitions == 1 and dl.config["retention.ms"] == str(30 * 24 * 3600 * 1000)


def test_creates_missing_and_verifies_existing():
    fake = FakeAdmin({"shop.orders": 6}, {})
    counts = admin_with(fake).ensure_topics(bridge_topic_specs(S, "b", ["shop.orders"]))
    assert counts == {"shop.orders": 6, "b.dead-letter": 1, "b.checkpoints": 1}
    assert {t.topic for t in fake.created} == {"b.dead-letter", "b.checkpoints"}


def test_partition_mismatch_on_events_topic():
    fake = FakeAdmin({"shop.orders": 3})
    with pytest.raises(TopicMismatchError, match="Set kafka.topic_partitions to 3") as e:
        admin_with(fake).ensure_topics([TopicSpec.events("shop.orders", S)])
    assert (e.value.existing, e.value.configured, e.value.exit_code) == (3, 6, 78)


def test_dead_letter_partition_count_is_free():
    fake = FakeAdmin({"b.dead-letter": 4})
    assert admin_with(fake).ensure_topics([TopicSpec.dead_letter("b.dead-letter", S)]) == {"b.dead-letter": 4}


@pytest.mark.parametrize("policy", ["delete", "compact,delete"])
def test_checkpoint_topic_must_be_compacted(policy):
    fake = FakeAdmin({"b.checkpoints": 1}, {"b.checkpoints": {"cleanup.policy": policy}})
    with pytest.raises(TopicConfigError, match="cleanup.policy=compact"):
        admin_with(fake).ensure_topics([TopicSpec.checkpoint("b.checkpoints", S)])


def test_missing_topics_with_create_topics_off():
    s = KafkaSettings(bootstrap_servers="fake:9092", create_topics=False)
    fake = FakeAdmin({})
    with pytest.raises(TopicConfigError, match="kafka.create_topics"):
        admin_with(fake, s).ensure_topics([TopicSpec.events("shop.orders", s)])
    assert fake.created == []


def test_topic_created_concurrently_is_verified():
    fake = FakeAdmin({})
    real_create = fake.create_topics

    def racing_create(new, **kw):
        fake.topics["shop.orders"] = 3      # someone else created it with 3 partitions meanwhile
        return real_create(new, **kw)

    fake.create_topics = racing_create
    with pytest.raises(TopicMismatchError):
        admin_with(fake).ensure_topics([TopicSpec.events("shop.orders", S)])


def test_one_name_with_two_roles_refused():
    with pytest.raises(TopicConfigError, match="configured twice, as events and as checkpoint"):
        admin_with(FakeAdmin({})).ensure_topics([TopicSpec.events("x", S), TopicSpec.checkpoint("x", S)])


def test_identical_specs_count_once():
    fake = FakeAdmin({})
    counts = admin_with(fake).ensure_topics([TopicSpec.events("x", S), TopicSpec.events("x", S)])
    assert counts == {"x": 6} and len(fake.created) == 1


def test_checkpoint_spec_without_settings_uses_broker_default_replication():
    spec = TopicSpec.checkpoint("b.checkpoints")
    assert spec.replication_factor == -1 and spec.partitions == 1 and spec.config["cleanup.policy"] == "compact"


def test_retries_while_unreachable_then_succeeds():
    fake = FakeAdmin({"shop.orders": 6})
    fake.list_failures = [kafka_exc(KafkaError._TRANSPORT)] * 3
    sleeps = []
    admin = admin_with(fake, retry=RetryPolicy(initial_backoff_s=1, max_backoff_s=3, jitter=0), sleep=sleeps.append)
    assert admin.ensure_topics([TopicSpec.events("shop.orders", S)]) == {"shop.orders": 6}
    assert sleeps == [1, 2, 3]


def test_non_transient_admin_error_is_not_retried():
    fake = FakeAdmin({})
    fake.list_failures = [kafka_exc(KafkaError.CLUSTER_AUTHORIZATION_FAILED)]
    with pytest.raises(Exception, match="CLUSTER_AUTHORIZATION_FAILED"):
        admin_with(fake).ensure_topics([TopicSpec.events("shop.orders", S)])


def test_unreachable_broker_ends_in_kafka_unavailable():
    """The real AdminClient against a closed port, with a bounded retry policy."""
    s = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    sleeps = []
    admin = TopicAdmin(s, retry=RetryPolicy.bounded(3, initial_backoff_s=0.01), request_timeout_s=0.3,
                       sleep=sleeps.append)
    with pytest.raises(KafkaUnavailableError, match="127.0.0.1:1 unreachable") as e:
        admin.ensure_topics([TopicSpec.events("shop.orders", s)])
    assert len(sleeps) == 2 and e.value.exit_code == 69


def test_an_existing_topic_with_a_smaller_message_limit_is_a_warning_and_a_known_limit():
    """Issue 16: a topic created with Kafka's 1 MB default never halts the bridge: the publisher dead-letters
    what does not fit; new topics get kafka.max_message_bytes."""
    fake = FakeAdmin({"shop.orders": 6}, configs={"shop.orders": {"max.message.bytes": "1048588"}})
    admin = admin_with(fake)
    admin.ensure_topics(bridge_topic_specs(S, "orders", ["shop.orders"]))
    assert admin.message_limits["shop.orders"] == 1048588
    assert admin.message_limits["orders.dead-letter"] == 8 * 1024 * 1024
    created = {t.topic: t.config for t in fake.created}
    assert created["orders.dead-letter"]["max.message.bytes"] == str(8 * 1024 * 1024)
