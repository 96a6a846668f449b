"""Errors of the Kafka sink, and how librdkafka's errors map onto them.

Every SinkError carries an `exit_code` (sysexits.h) for the CLI and a message that
says what happened and what to do. `BatchAbortedError` is the only one the pipeline
is expected to recover from in-process (roll back state, redo the batch); the others
stop the daemon, or (KafkaUnavailableError) end a retry budget the caller chose.
"""

from __future__ import annotations

import enum

from confluent_kafka import KafkaError, KafkaException

# sysexits.h
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78


class SinkError(Exception):
    """Base of the sink's errors. str(e) is the actionable message."""

    exit_code: int = EX_SOFTWARE

    def __init__(self, message: str, *, kafka_error: KafkaError | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kafka_error = kafka_error


class FatalPublishError(SinkError):
    """The producer cannot continue: a fatal librdkafka error, or it was fenced.

    The process must exit; a restart creates a new producer (init_transactions) and
    recovers from the checkpoint. `fenced` is True when a newer producer with the same
    transactional.id took over.
    """

    exit_code = EX_SOFTWARE

    def __init__(self, message: str, *, kafka_error: KafkaError | None = None, fenced: bool = False) -> None:
        super().__init__(message, kafka_error=kafka_error)
        self.fenced = fenced


class BatchAbortedError(SinkError):
    """The Kafka transaction of a batch was aborted; nothing of the batch is visible.

    Recoverable: the caller rolls back the batch's state changes and redoes the batch
    (same events, same checkpoint) with the same publisher.
    """

    exit_code = EX_TEMPFAIL


class TopicConfigError(SinkError):
    """An existing topic does not fit the bridge (or is missing while create_topics is off)."""

    exit_code = EX_CONFIG


class TopicMismatchError(TopicConfigError):
    """An existing events topic has a different partition count than configured.

    Publishing would route aggregate ids to other partitions than the events already
    there, breaking per-aggregate order for consumers.
    """

    def __init__(self, topic: str, existing: int, configured: int) -> None:
        super().__init__(
            f"events topic {topic!r} has {existing} partitions but kafka.topic_partitions is {configured}: "
            f"publishing would send aggregates to other partitions than their earlier events "
            f"(per-aggregate order lost). Set kafka.topic_partitions to {existing} to keep using this topic, "
            f"or rebuild into a new topic (cdc-bridge rebuild with a new topic name) with {configured} partitions. "
            f"Never add partitions to an events topic in place.")
        self.topic = topic
        self.existing = existing
        self.configured = configured


class KafkaUnavailableError(SinkError):
    """The brokers could not be reached (or kept failing retriably) within the retry budget."""

    exit_code = EX_UNAVAILABLE


class CheckpointError(SinkError):
    """The checkpoint topic could not be read, or holds a record the bridge cannot understand."""

    exit_code = EX_DATAERR


# --- librdkafka error classification ---------------------------------------------------

FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})

# Errors of a single message that no redo of the batch can cure: when one of them is
# what made a transaction abortable, the batch is aborted and the error is fatal
# (otherwise the pipeline would redo the same batch forever).
PERMANENT_MESSAGE_CODES = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._UNKNOWN_PARTITION, KafkaError.POLICY_VIOLATION,
    KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
})

# Local "your messages were purged" codes: consequences of an abort, never causes.
PURGE_CODES = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})

# Non-retriable errors where the operator has something specific to do.
_HINTS = {
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        "grant the bridge's principal WRITE and DESCRIBE on its transactional id (ACL resource TransactionalId)",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED:
        "grant the bridge's principal IDEMPOTENT_WRITE on the cluster (or use Kafka >= 2.8 where WRITE on "
        "the topics is enough)",
    KafkaError.TOPIC_AUTHORIZATION_FAILED:
        "grant the bridge's principal WRITE and DESCRIBE on its events, dead-letter and checkpoint topics",
    KafkaError.MSG_SIZE_TOO_LARGE:
        "an event is larger than the producer's message.max.bytes or the topic's max.message.bytes; raise "
        "both (kafka.extra message.max.bytes and the topic config) or make the event smaller",
    KafkaError._MSG_TIMED_OUT:
        "messages could not be delivered in time; check broker health and kafka.transaction_timeout_ms",
    KafkaError._UNKNOWN_TOPIC:
        "a topic does not exist; enable kafka.create_topics or create it (see docs/kafka.md)",
    KafkaError.UNKNOWN_TOPIC_OR_PART:
        "a topic does not exist; enable kafka.create_topics or create it (see docs/kafka.md)",
    KafkaError.INVALID_TRANSACTION_TIMEOUT:
        "kafka.transaction_timeout_ms exceeds the broker's transaction.max.timeout.ms; lower it",
    KafkaError.RECORD_LIST_TOO_LARGE:
        "a produce batch is larger than the topic's max.message.bytes; lower kafka.extra batch.size or raise "
        "the topic's max.message.bytes",
    KafkaError._UNKNOWN_PARTITION:
        "the partitioner returned a partition the topic does not have (a bug, or the topic shrank)",
    KafkaError.INVALID_RECORD:
        "the broker refused a record (e.g. a null key on a compacted topic)",
    KafkaError.UNSUPPORTED_VERSION:
        "the broker is too old for transactions; use Kafka >= 2.5",
}


class ErrorAction(enum.Enum):
    RETRY = "retry"      # retry the same call (possibly after a backoff)
    ABORT = "abort"      # abort the transaction, the batch can be redone
    FATAL = "fatal"      # stop: the producer is unusable or the error is permanent


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException (or None)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def is_fenced(err: KafkaError) -> bool:
    return err.code() in FENCED_CODES


def classify(err: KafkaError) -> ErrorAction:
    """What to do about an error raised by a transactional producer call.

    Order as in librdkafka's transaction guide: fenced and fatal first, then
    abortable (a transaction that must be aborted may also be flagged retriable),
    then retriable; anything else is permanent.
    """
    if is_fenced(err) or err.fatal():
        return ErrorAction.FATAL
    if err.txn_requires_abort():
        return ErrorAction.ABORT
    if err.retriable():
        return ErrorAction.RETRY
    return ErrorAction.FATAL


def is_permanent_message_error(err: KafkaError | None) -> bool:
    return err is not None and err.code() in PERMANENT_MESSAGE_CODES


def fenced_message(transactional_id: str, transaction_timeout_ms: int) -> str:
    if ".worker." in transactional_id:   # an aggregate worker (docs/scaling.md) rejoins its group instead
        return (f"producer fenced: transactional.id {transactional_id!r} was taken over (a worker with the same "
                f"--worker-id started, or this one was paused for longer than kafka.transaction_timeout_ms="
                f"{transaction_timeout_ms} and the broker aborted its transaction). Its uncommitted batch is "
                "dropped; it joins the group again as a new member.")
    return (f"producer fenced: another bridge with transactional.id {transactional_id!r} took over; "
            f"run one bridge per source (if no other bridge runs, this one was paused for longer than "
            f"kafka.transaction_timeout_ms={transaction_timeout_ms} and the broker aborted its transaction). "
            f"Exiting; a restart resumes from the last committed checkpoint.")


def fatal_error(err: KafkaError, *, transactional_id: str, transaction_timeout_ms: int,
                during: str) -> FatalPublishError:
    """The FatalPublishError for a fatal / fenced / permanent librdkafka error."""
    if is_fenced(err):
        return FatalPublishError(fenced_message(transactional_id, transaction_timeout_ms),
                                 kafka_error=err, fenced=True)
    hint = _HINTS.get(err.code())
    kind = "fatal" if err.fatal() else "permanent"
    msg = f"{kind} Kafka error during {during} (transactional.id {transactional_id!r}): {describe(err)}"
    if hint:
        msg += f"; {hint}"
    msg += ". Exiting; a restart resumes from the last committed checkpoint."
    return FatalPublishError(msg, kafka_error=err)


def describe(err: KafkaError) -> str:
    return f"{err.name()}: {err.str()}"
