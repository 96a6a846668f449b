"""Kafka sink: transactional publisher, checkpoint topic, topic admin (docs/kafka.md)."""

from cdc_bridge.sink.checkpoint import build_checkpoint, checkpoint_position, read_checkpoint
from cdc_bridge.sink.errors import (BatchAbortedError, CheckpointError, FatalPublishError, KafkaUnavailableError,
                                    SinkError, TopicConfigError, TopicMismatchError)
from cdc_bridge.sink.publisher import TOMBSTONE_HEADER, PublisherHooks, PublishResult, TransactionalPublisher
from cdc_bridge.sink.retry import RetryPolicy
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.sink.topics import TopicAdmin, TopicRole, TopicSpec, bridge_topic_specs

__all__ = [
    "BatchAbortedError", "CheckpointError", "FatalPublishError", "KafkaSettings", "KafkaUnavailableError",
    "PublishResult", "PublisherHooks", "RetryPolicy", "SinkError", "TOMBSTONE_HEADER", "TopicAdmin",
    "TopicConfigError", "TopicMismatchError", "TopicRole", "TopicSpec", "TransactionalPublisher",
    "bridge_topic_specs", "build_checkpoint", "checkpoint_position", "read_checkpoint",
]
