"""A scriptable stand-in for confluent_kafka.Producer: error paths without a broker."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from cdc_bridge.aggregate.event import DomainEvent
from cdc_bridge.source.position import SourcePosition


def kafka_exc(code: int, *, fatal: bool = False, retriable: bool = False,
              txn_requires_abort: bool = False, reason: str = "injected") -> KafkaException:
    return KafkaException(KafkaError(code, reason, fatal=fatal, retriable=retriable,
                                     txn_requires_abort=txn_requires_abort))


class FakeProducer:
    """Records calls; `fail[method]` is a list consumed one entry per call
    (None = succeed, an exception = raise it)."""

    def __init__(self, conf: dict[str, Any], partitions: dict[str, int] | None = None) -> None:
        self.conf = conf
        self.partitions = partitions or {}
        self.calls: list[str] = []
        self.fail: dict[str, list[BaseException | None]] = {}
        self.produced: list[dict[str, Any]] = []          # of the current transaction
        self.committed: list[list[dict[str, Any]]] = []   # one list per committed transaction
        self.aborted = 0
        self.in_txn = False
        self.on_produce = None                             # callable(n) run after each successful produce

    def _step(self, name: str) -> None:
        self.calls.append(name)
        queue = self.fail.get(name)
        if queue:
            exc = queue.pop(0)
            if exc is not None:
                raise exc

    def init_transactions(self, timeout: float | None = None) -> None:
        self._step("init_transactions")

    def begin_transaction(self) -> None:
        self._step("begin_transaction")
        self.in_txn = True
        self.produced = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                partition: int | None = None, headers: list | None = None) -> None:
        self._step("produce")
        self.produced.append(dict(topic=topic, value=value, key=key, partition=partition, headers=headers))
        if self.on_produce:
            self.on_produce(len(self.produced))

    def poll(self, timeout: float = 0) -> int:
        self.calls.append("poll")
        return 0

    def commit_transaction(self, timeout: float | None = None) -> None:
        self._step("commit_transaction")
        self.committed.append(self.produced)
        self.produced = []
        self.in_txn = False

    def abort_transaction(self, timeout: float | None = None) -> None:
        self._step("abort_transaction")
        self.produced = []
        self.aborted += 1
        self.in_txn = False

    def flush(self, timeout: float | None = None) -> int:
        self.calls.append("flush")
        return 0

    def purge(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("purge")

    def list_topics(self, topic: str | None = None, timeout: float | None = None) -> Any:
        self._step("list_topics")
        n = self.partitions.get(topic)
        if n is None:
            t = SimpleNamespace(error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), partitions={})
        else:
            t = SimpleNamespace(error=None, partitions={i: SimpleNamespace(id=i) for i in range(n)})
        return SimpleNamespace(topics={topic: t})


def make_event(i: int | str, *, topic: str = "shop.orders", event_type: str = "OrderPlaced",
               extra_headers: dict[str, str] | None = None, data: dict | None = None) -> DomainEvent:
    return DomainEvent(event_type=event_type, aggregate="Order", aggregate_id=str(i), sequence=1,
                       schema_version=1, occurred_at=1_795_000_000.25,
                       source={"table": "shop.orders", "gtid": "0-1-7"},
                       data=data if data is not None else {"id": i, "total": "12.50", "note": "Grüße"},
                       topic=topic, extra_headers=extra_headers or {})


def position(n: int = 1) -> SourcePosition:
    return SourcePosition(gtid=f"0-1-{n}", binlog_file="mysql-bin.000001", binlog_pos=100 * n)


def elapsed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
