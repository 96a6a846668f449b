import pytest
from pydantic import ValidationError

from cdc_bridge.sink.settings import KafkaSettings


def test_defaults_and_derived_topic_names():
    s = KafkaSettings(bootstrap_servers="k:9092")
    assert (s.client_id, s.transaction_timeout_ms, s.topic_partitions, s.replication_factor, s.retention_ms) == \
        ("cdc-bridge", 60000, 6, 1, -1)
    assert s.create_topics is True
    assert s.checkpoint_topic_for("orders") == "orders.checkpoints"
    assert s.dead_letter_topic_for("orders") == "orders.dead-letter"
    s2 = KafkaSettings(bootstrap_servers="k:9092", checkpoint_topic="cp", dead_letter_topic="dl")
    assert (s2.checkpoint_topic_for("orders"), s2.dead_letter_topic_for("orders")) == ("cp", "dl")


def test_password_is_revealed_only_by_librdkafka_config():
    s = KafkaSettings(bootstrap_servers="k:9092", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                      sasl_username="bridge", sasl_password="hunter2")
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump()), str(s.redacted_config())):
        assert "hunter2" not in text
    conf = s.librdkafka_config()
    assert conf["sasl.password"] == "hunter2"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512" and conf["sasl.username"] == "bridge"
    assert conf["security.protocol"] == "SASL_SSL" and conf["bootstrap.servers"] == "k:9092"


def test_password_not_in_validation_errors():
    with pytest.raises(ValidationError) as e:
        KafkaSettings(bootstrap_servers="k:9092", sasl_password="hunter2", sasl_mechanism="PLAIN",
                      sasl_username="u")   # SASL mechanism without a SASL protocol
    assert "hunter2" not in str(e.value)


def test_extra_is_passed_as_strings_and_last():
    s = KafkaSettings(bootstrap_servers="k:9092", extra={"linger.ms": 50, "enable.ssl.certificate.verification": False})
    conf = s.librdkafka_config()
    assert conf["linger.ms"] == "50" and conf["enable.ssl.certificate.verification"] == "false"


@pytest.mark.parametrize("key", ["transactional.id", "enable.idempotence", "isolation.level", "sasl.password",
                                 "bootstrap.servers", "acks"])
def test_extra_cannot_override_owned_settings(key):
    with pytest.raises(ValidationError, match="must not set"):
        KafkaSettings(bootstrap_servers="k:9092", extra={key: "x"})


def test_sasl_needs_mechanism_and_credentials():
    with pytest.raises(ValidationError, match="needs kafka.sasl_mechanism"):
        KafkaSettings(bootstrap_servers="k:9092", security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="needs kafka.sasl_username"):
        KafkaSettings(bootstrap_servers="k:9092", security_protocol="SASL_SSL", sasl_mechanism="PLAIN")


def test_unknown_field_refused():
    with pytest.raises(ValidationError):
        KafkaSettings(bootstrap_servers="k:9092", partitions=3)
