"""Topic admin: create the bridge's topics when missing, verify them when present.

Three kinds of topics (see docs/kafka.md):

- events topics: `kafka.topic_partitions` partitions (keys are aggregate ids, so the
  count is part of the contract), `kafka.replication_factor`, `retention.ms =
  kafka.retention_ms` (-1: forever). An existing one with another partition count
  is refused (TopicMismatchError).
- the checkpoint topic: 1 partition, `cleanup.policy=compact` (only the latest
  checkpoint per bridge matters, and it must never expire). An existing one that is
  not purely compacted is refused (TopicConfigError).
- the dead-letter topic: `kafka.dead_letter_partitions` partitions, retention
  `kafka.dead_letter_retention_ms` (30 days by default). Existing ones are accepted
  as they are.
- the change stream's topics (`change_stream`, Debezium-compatible): created like events
  topics; existing ones (e.g. Debezium's own) are accepted with their partition count,
  which the records' partitioning then follows.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, TypeVar

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from cdc_bridge.sink.clients import admin_config, is_transient
from cdc_bridge.sink.errors import (KafkaUnavailableError, SinkError, TopicConfigError,
                                    TopicMismatchError, describe, kafka_error_of)
from cdc_bridge.sink.retry import RetryPolicy
from cdc_bridge.sink.settings import KafkaSettings

log = structlog.get_logger("cdc_bridge.sink.topics")

T = TypeVar("T")

# A checkpoint topic keeps small segments so that compaction keeps it short: the
# checkpoint reader scans it on start-up.
CHECKPOINT_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
}


class TopicRole(str, enum.Enum):
    EVENTS = "events"
    CHECKPOINT = "checkpoint"
    DEAD_LETTER = "dead-letter"
    CHANGE_STREAM = "change-stream"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: TopicRole
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def events(cls, name: str, settings: KafkaSettings) -> "TopicSpec":
        return cls(name, TopicRole.EVENTS, settings.topic_partitions, settings.replication_factor,
                   {"retention.ms": str(settings.retention_ms), "max.message.bytes": str(settings.max_message_bytes)})

    @classmethod
    def checkpoint(cls, name: str, settings: KafkaSettings | None = None) -> "TopicSpec":
        """Without settings the replication factor is the broker's default.replication.factor (-1)."""
        rf = settings.replication_factor if settings is not None else -1
        return cls(name, TopicRole.CHECKPOINT, 1, rf, dict(CHECKPOINT_TOPIC_CONFIG))

    @classmethod
    def dead_letter(cls, name: str, settings: KafkaSettings) -> "TopicSpec":
        return cls(name, TopicRole.DEAD_LETTER, settings.dead_letter_partitions, settings.replication_factor,
                   {"retention.ms": str(settings.dead_letter_retention_ms),
                    "max.message.bytes": str(settings.max_message_bytes)})


    @classmethod
    def change_stream(cls, name: str, settings: KafkaSettings, partitions: int | None = None) -> "TopicSpec":
        return cls(name, TopicRole.CHANGE_STREAM, partitions or settings.topic_partitions, settings.replication_factor,
                   {"retention.ms": str(settings.retention_ms), "max.message.bytes": str(settings.max_message_bytes)})


def bridge_topic_specs(settings: KafkaSettings, bridge_name: str, events_topics: Iterable[str]) -> list[TopicSpec]:
    """All topics of one bridge: its events topics, its dead-letter and checkpoint topics."""
    specs = [TopicSpec.events(t, settings) for t in sorted(set(events_topics))]
    specs.append(TopicSpec.dead_letter(settings.dead_letter_topic_for(bridge_name), settings))
    specs.append(TopicSpec.checkpoint(settings.checkpoint_topic_for(bridge_name), settings))
    return specs


def _dedupe(specs: list[TopicSpec]) -> list[TopicSpec]:
    """Identical specs (several aggregates sharing an events topic) count once; one name
    with two different specs (e.g. the checkpoint topic also used for events) is an error."""
    by_name: dict[str, TopicSpec] = {}
    for s in specs:
        seen = by_name.setdefault(s.name, s)
        if seen != s:
            raise TopicConfigError(f"topic {s.name!r} is configured twice, as {seen.role.value} and as "
                                   f"{s.role.value} topic: events, dead-letter and checkpoint topics must differ")
    return list(by_name.values())


class TopicAdmin:
    """Creates and verifies topics. Retries (with backoff, logging each attempt) while
    the cluster is unreachable, per `retry` (default: forever)."""

    def __init__(self, settings: KafkaSettings, *, retry: RetryPolicy | None = None,
                 request_timeout_s: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 admin_factory: Callable[[dict], AdminClient] = AdminClient) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy.forever()
        self.request_timeout_s = request_timeout_s
        self._sleep = sleep
        self._admin = admin_factory(admin_config(settings))
        # topic -> max.message.bytes of the events-like topics seen by ensure_topics (the publisher's size check)
        self.message_limits: dict[str, int] = {}

    # -- public ----------------------------------------------------------------------

    def ensure_topics(self, specs: list[TopicSpec]) -> dict[str, int]:
        """Create the missing topics, verify the existing ones. Returns name -> partition count."""
        specs = _dedupe(specs)
        existing = self.partition_counts([s.name for s in specs])
        missing = [s for s in specs if s.name not in existing]
        if missing and not self.settings.create_topics:
            raise TopicConfigError(
                f"topics {[s.name for s in missing]} do not exist and kafka.create_topics is false: create them "
                f"(events topics with {self.settings.topic_partitions} partitions, the checkpoint topic with "
                f"cleanup.policy=compact; see docs/kafka.md) or set kafka.create_topics: true")
        raced = self._create(missing) if missing else []
        if raced:   # created concurrently by someone else: verify like any existing topic
            existing.update(self.partition_counts([s.name for s in raced]))
        result: dict[str, int] = {}
        for spec in specs:
            if spec.name in existing:
                self._verify(spec, existing[spec.name])
                result[spec.name] = existing[spec.name]
                self._check_message_limit(spec)
            else:
                result[spec.name] = spec.partitions
                if "max.message.bytes" in spec.config:
                    self.message_limits[spec.name] = int(spec.config["max.message.bytes"])
        if missing:
            self._wait_visible([s.name for s in missing])
        return result

    def partition_counts(self, names: list[str]) -> dict[str, int]:
        """Partition count of each of `names` that exists (missing topics are left out)."""
        md = self._retrying("list topics", lambda: self._admin.list_topics(timeout=self.request_timeout_s))
        out = {}
        for name in names:
            t = md.topics.get(name)
            if t is None or (t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                continue
            if t.error is not None:
                raise TopicConfigError(f"topic {name!r} cannot be described: {describe(t.error)}",
                                       kafka_error=t.error)
            out[name] = len(t.partitions)
        return out

    def _check_message_limit(self, spec: TopicSpec) -> None:
        """An existing topic that accepts smaller records than kafka.max_message_bytes: a warning (records
        between the two become too_large dead letters), never a halt."""
        if "max.message.bytes" not in spec.config:
            return
        try:
            limit = int(self.topic_config(spec.name).get("max.message.bytes") or 0)
        except (TopicConfigError, ValueError):
            return
        if not limit:
            return
        self.message_limits[spec.name] = limit
        wanted = self.settings.max_message_bytes
        if limit < wanted:
            log.warning("topic accepts smaller records than kafka.max_message_bytes: larger events will go to the "
                        "dead-letter topic as too_large", topic=spec.name, max_message_bytes=limit,
                        kafka_max_message_bytes=wanted,
                        fix=f"kafka-configs.sh --alter --entity-type topics --entity-name {spec.name} "
                            f"--add-config max.message.bytes={wanted}")

    def topic_config(self, name: str) -> dict[str, str]:
        """The effective configuration of a topic (broker defaults included)."""
        res = ConfigResource(ResourceType.TOPIC, name)

        def call() -> dict[str, str]:
            entries = self._admin.describe_configs([res], request_timeout=self.request_timeout_s)[res].result()
            return {k: e.value for k, e in entries.items()}

        return self._retrying(f"describe configs of {name}", call)

    def close(self) -> None:
        self._admin.poll(0)   # serve pending log/error callbacks

    # -- internals -------------------------------------------------------------------

    def _create(self, specs: list[TopicSpec]) -> list[TopicSpec]:
        """Create `specs`; returns those that already existed (created concurrently)."""
        new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                        config=dict(s.config)) for s in specs]

        def call() -> list[TopicSpec]:
            futures = self._admin.create_topics(new, operation_timeout=self.request_timeout_s,
                                                request_timeout=self.request_timeout_s)
            raced, retry_errors = [], []
            for spec in specs:
                try:
                    futures[spec.name].result()
                    log.info("kafka topic created", topic=spec.name, role=spec.role.value,
                             partitions=spec.partitions, replication_factor=spec.replication_factor,
                             config=dict(spec.config))
                except KafkaException as exc:
                    err = kafka_error_of(exc)
                    if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                        raced.append(spec)
                    elif err is not None and is_transient(err):
                        retry_errors.append(exc)
                    else:
                        raise TopicConfigError(self._create_failure(spec, err), kafka_error=err) from exc
            if retry_errors:
                raise retry_errors[0]
            return raced

        return self._retrying("create topics", call)

    def _create_failure(self, spec: TopicSpec, err: KafkaError | None) -> str:
        msg = f"cannot create {spec.role.value} topic {spec.name!r}: {describe(err) if err else 'unknown error'}"
        if err is not None and err.code() == KafkaError.INVALID_REPLICATION_FACTOR:
            msg += (f"; kafka.replication_factor={spec.replication_factor} is more than the cluster's brokers: "
                    "lower it")
        elif err is not None and err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                               KafkaError.CLUSTER_AUTHORIZATION_FAILED):
            msg += "; grant CREATE on the topic or create it yourself (docs/kafka.md) and set kafka.create_topics: false"
        elif err is not None and err.code() in (KafkaError.POLICY_VIOLATION, KafkaError.INVALID_CONFIG):
            msg += f"; the cluster refused the topic config {dict(spec.config)}"
        return msg

    def _verify(self, spec: TopicSpec, partitions: int) -> None:
        if spec.role is TopicRole.EVENTS:
            if partitions != spec.partitions:
                raise TopicMismatchError(spec.name, partitions, spec.partitions)
            log.debug("kafka topic verified", topic=spec.name, role=spec.role.value, partitions=partitions)
        elif spec.role is TopicRole.CHECKPOINT:
            policy = self.topic_config(spec.name).get("cleanup.policy", "")
            if policy.replace(" ", "") != "compact":
                raise TopicConfigError(
                    f"checkpoint topic {spec.name!r} has cleanup.policy={policy!r}; it must be exactly 'compact' "
                    f"(with 'delete' the latest checkpoint expires and the bridge would restart from scratch). "
                    f"Fix: kafka-configs.sh --alter --entity-type topics --entity-name {spec.name} "
                    f"--add-config cleanup.policy=compact, or point kafka.checkpoint_topic to a new topic")
            if partitions != 1:
                log.warning("checkpoint topic has more than one partition; the reader scans all of them",
                            topic=spec.name, partitions=partitions)
        else:
            log.debug("kafka topic verified", topic=spec.name, role=spec.role.value, partitions=partitions)

    def _wait_visible(self, names: list[str], timeout: float = 15.0) -> None:
        """After create_topics, wait until metadata shows the topics with leaders (the
        producer's first metadata lookup may otherwise miss them)."""
        deadline = time.monotonic() + timeout
        while True:
            md = self._retrying("list topics", lambda: self._admin.list_topics(timeout=self.request_timeout_s))
            pending = [n for n in names if n not in md.topics or md.topics[n].error is not None
                       or any(p.leader < 0 for p in md.topics[n].partitions.values())]
            if not pending:
                return
            if time.monotonic() > deadline:
                log.warning("created topics not visible in metadata yet", topics=pending)
                return
            time.sleep(0.1)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        tracker = self.retry.tracker()
        while True:
            try:
                return call()
            except KafkaException as exc:
                err = kafka_error_of(exc)
                if err is None or not is_transient(err):
                    raise SinkError(f"Kafka {what} failed: {describe(err) if err else exc}",
                                    kafka_error=err) from exc
                self._admin.poll(0)
                if not tracker.failed():
                    raise KafkaUnavailableError(
                        f"Kafka at {self.settings.bootstrap_servers} unreachable: {what} failed "
                        f"{tracker.attempts} times in {tracker.elapsed:.1f}s, last error {describe(err)}. "
                        f"Check kafka.bootstrap_servers, network and broker health", kafka_error=err) from exc
                log.warning("kafka unreachable, retrying", operation=what, attempt=tracker.attempts,
                            retry_in_s=round(tracker.delay, 2), error=describe(err),
                            bootstrap_servers=self.settings.bootstrap_servers)
                self._sleep(tracker.delay)
