"""A worker starts a partition (seek to its start offset, then resume) only once the consumer fetches it.

Seen in CI: a partition whose previous owner's transaction was still undecided. The worker's own
committed() call waited it out, then seek() failed with _STATE: librdkafka had not started fetching the
partition yet (it reads the committed offset itself first, on its own retry timer)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from cdc_bridge.apply.worker import AggregateWorker
from cdc_bridge.config import BridgeConfig, KafkaSettings, SourceSettings
from cdc_bridge.mapping.loader import MappingSet


class FakeConsumer:
    def __init__(self, topic: str, assigned: set[int], not_fetching: dict[int, int]) -> None:
        self.topic, self.assigned, self.not_fetching = topic, assigned, not_fetching
        self.seeks: list[tuple[int, int]] = []
        self.resumed: list[int] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in sorted(self.assigned)]

    def seek(self, tp: TopicPartition) -> None:
        if self.not_fetching.get(tp.partition, 0) > 0 or tp.partition not in self.assigned:
            self.not_fetching[tp.partition] = self.not_fetching.get(tp.partition, 0) - 1
            raise KafkaException(KafkaError(KafkaError._STATE, f"Failed to seek to offset {tp.offset}"))
        self.seeks.append((tp.partition, tp.offset))

    def resume(self, tps: list[TopicPartition]) -> None:
        self.resumed += [tp.partition for tp in tps]


def worker(consumer: FakeConsumer) -> AggregateWorker:
    cfg = BridgeConfig(name="shop", source=SourceSettings(host="db", user="cdc"),
                       kafka=KafkaSettings(bootstrap_servers="kafka:9092"))
    w = AggregateWorker(cfg, MappingSet([]), worker_id="w1")
    w._consumer = consumer
    consumer.topic = w.commands_topic
    return w


def test_a_partition_the_consumer_does_not_fetch_yet_is_started_later() -> None:
    c = FakeConsumer("", {0, 1}, {0: 2})
    w = worker(c)
    w._start_partition(0, 1119)
    w._start_partition(1, 7)
    assert w.owned == {1} and set(w._starting) == {0} and c.seeks == [(1, 7)]
    assert not w.readiness()[0] and w.readiness()[1]["waiting_for_fetch_start"] == [0]
    for _ in range(2):   # what the loop does each turn
        for p, (start, _, _) in list(w._starting.items()):
            w._start_partition(p, start)
    assert w.owned == {0, 1} and not w._starting and c.seeks == [(1, 7), (0, 1119)] and c.resumed == [1, 0]


def test_a_partition_revoked_meanwhile_is_forgotten() -> None:
    c = FakeConsumer("", {0}, {0: 1})
    w = worker(c)
    w._start_partition(0, 5)
    assert set(w._starting) == {0}
    c.assigned.clear()
    w._start_partition(0, 5)
    assert not w._starting and not w.owned and c.seeks == []


def test_other_seek_errors_are_raised() -> None:
    class Broken(FakeConsumer):
        def seek(self, tp: TopicPartition) -> Any:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "down"))

    w = worker(Broken("", {0}, {}))
    with pytest.raises(KafkaException):
        w._start_partition(0, 5)
