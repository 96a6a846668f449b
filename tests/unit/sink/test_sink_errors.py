import pytest
from confluent_kafka import KafkaError, KafkaException

from cdc_bridge.sink.errors import (BatchAbortedError, CheckpointError, ErrorAction, FatalPublishError,
                                    KafkaUnavailableError, SinkError, TopicConfigError, TopicMismatchError,
                                    classify, fatal_error, kafka_error_of)


def err(code, **flags):
    return KafkaError(code, "reason", **flags)


@pytest.mark.parametrize("code", [KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH])
def test_fenced_codes_are_fatal_even_when_flagged_abortable(code):
    assert classify(err(code)) is ErrorAction.FATAL
    assert classify(err(code, txn_requires_abort=True)) is ErrorAction.FATAL
    assert classify(err(code, retriable=True)) is ErrorAction.FATAL


@pytest.mark.parametrize("e, action", [
    (err(KafkaError._TIMED_OUT, retriable=True), ErrorAction.RETRY),
    (err(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, retriable=True), ErrorAction.RETRY),
    (err(KafkaError.MSG_SIZE_TOO_LARGE, txn_requires_abort=True), ErrorAction.ABORT),
    # librdkafka's guide checks txn_requires_abort before retriable
    (err(KafkaError._TIMED_OUT, retriable=True, txn_requires_abort=True), ErrorAction.ABORT),
    (err(KafkaError._INCONSISTENT, fatal=True), ErrorAction.FATAL),
    (err(KafkaError._INCONSISTENT, fatal=True, retriable=True), ErrorAction.FATAL),
    (err(KafkaError._STATE), ErrorAction.FATAL),          # neither retriable nor abortable: permanent
])
def test_classify(e, action):
    assert classify(e) is action


def test_fenced_message_names_the_transactional_id_and_the_fix():
    f = fatal_error(err(KafkaError._FENCED, fatal=True), transactional_id="orders-bridge",
                    transaction_timeout_ms=60000, during="commit")
    assert isinstance(f, FatalPublishError) and f.fenced
    assert "another bridge with transactional.id 'orders-bridge' took over" in str(f)
    assert "run one bridge per source" in str(f)


def test_fatal_message_has_hint_for_known_codes():
    f = fatal_error(err(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), transactional_id="b",
                    transaction_timeout_ms=60000, during="init_transactions")
    assert not f.fenced and "TransactionalId" in str(f) and "init_transactions" in str(f)
    assert f.kafka_error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_topic_mismatch_says_how_to_fix():
    e = TopicMismatchError("shop.orders", existing=3, configured=6)
    assert "Set kafka.topic_partitions to 3" in str(e)
    assert "rebuild" in str(e) and e.existing == 3 and e.configured == 6
    assert isinstance(e, TopicConfigError)


def test_exit_codes_are_distinct_per_kind():
    codes = {cls: cls.exit_code for cls in (SinkError, FatalPublishError, BatchAbortedError, TopicConfigError,
                                            KafkaUnavailableError, CheckpointError)}
    assert codes[TopicConfigError] == 78 and codes[KafkaUnavailableError] == 69 and codes[BatchAbortedError] == 75
    assert TopicMismatchError.exit_code == 78


def test_kafka_error_of():
    e = err(KafkaError._TRANSPORT)
    assert kafka_error_of(KafkaException(e)) is e
    assert kafka_error_of(ValueError("x")) is None
