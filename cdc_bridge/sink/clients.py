"""librdkafka client configurations used by the sink (producer, checkpoint reader, admin)."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError

from cdc_bridge.sink.settings import KafkaSettings

# librdkafka's own log lines (it would print them to stderr otherwise) go to this
# stdlib logger; structlog's stdlib integration picks them up from there.
LIBRDKAFKA_LOGGER = logging.getLogger("cdc_bridge.sink.librdkafka")

# Errors that mean "the cluster is not reachable / not ready (yet)": worth retrying.
TRANSIENT_CODES = frozenset({
    KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
    KafkaError._WAIT_COORD, KafkaError._TIMED_OUT_QUEUE,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_CONTROLLER, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR, KafkaError.NETWORK_EXCEPTION,
    KafkaError.BROKER_NOT_AVAILABLE, KafkaError.CONCURRENT_TRANSACTIONS,
})


def is_transient(err: KafkaError) -> bool:
    return err.retriable() or err.code() in TRANSIENT_CODES


def base_config(settings: KafkaSettings) -> dict[str, Any]:
    conf = settings.librdkafka_config()
    conf.setdefault("logger", LIBRDKAFKA_LOGGER)
    return conf


def producer_config(settings: KafkaSettings, transactional_id: str, *, java_partitioner: bool) -> dict[str, Any]:
    conf: dict[str, Any] = {
        # throughput defaults: a batch is thousands of small events in one transaction;
        # `kafka.extra` may override them.
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 256 * 1024,
        "compression.type": "lz4",
        # never let a metadata lookup create a topic with broker defaults (wrong partition count)
        "allow.auto.create.topics": False,
        # large aggregates: records up to kafka.max_message_bytes (the topics the bridge creates allow as much)
        "message.max.bytes": settings.max_message_bytes,
    }
    conf.update(base_config(settings))
    conf.update({
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        "transaction.timeout.ms": settings.transaction_timeout_ms,
        # only failed deliveries produce a delivery report: no per-message Python callback
        "delivery.report.only.error": True,
    })
    if java_partitioner:
        # keyed messages: murmur2(key) % partitions, as Java clients; null keys: random
        conf.setdefault("partitioner", "murmur2_random")
    return conf


def consumer_config(settings: KafkaSettings, group_id: str) -> dict[str, Any]:
    conf = base_config(settings)
    conf.update({
        "group.id": group_id,          # required by librdkafka; never joined (assign) nor committed
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,      # a bounded scan: do not idle at the end of a partition
    })
    return conf


def admin_config(settings: KafkaSettings) -> dict[str, Any]:
    return base_config(settings)
