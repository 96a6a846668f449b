"""Kafka settings of the sink (the `kafka:` section of the bridge config).

The password is a `SecretStr`: it prints as '**********' in reprs, logs and
validation errors, and is revealed only by `librdkafka_config()`, which builds the
dict handed to librdkafka.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000

# Settings the sink owns: setting them through `extra` would silently break exactly-once
# or the typed fields, so they are refused with a pointer to the right place.
_RESERVED_EXTRA = {
    "bootstrap.servers": "kafka.bootstrap_servers",
    "client.id": "kafka.client_id",
    "security.protocol": "kafka.security_protocol",
    "sasl.mechanism": "kafka.sasl_mechanism",
    "sasl.mechanisms": "kafka.sasl_mechanism",
    "sasl.username": "kafka.sasl_username",
    "sasl.password": "kafka.sasl_password",
    "transactional.id": "the bridge name (one transactional.id per bridge)",
    "transaction.timeout.ms": "kafka.transaction_timeout_ms",
    "enable.idempotence": "nothing: the transactional producer is always idempotent",
    "isolation.level": "nothing: the checkpoint reader always uses read_committed",
    "enable.auto.commit": "nothing: the checkpoint reader never commits offsets",
    "acks": "nothing: transactions require acks=all",
    "request.required.acks": "nothing: transactions require acks=all",
}


class KafkaSettings(BaseModel):
    """Connection and topic settings of the Kafka sink."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port...]")
    client_id: str = "cdc-bridge"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    extra: dict[str, str] = Field(default_factory=dict,
                                  description="raw librdkafka settings, e.g. {'compression.type': 'lz4'}")

    transaction_timeout_ms: int = Field(60_000, ge=1_000, le=900_000)
    max_message_bytes: int = Field(
        8 * 1024 * 1024, ge=100_000, le=1_000_000_000,
        description="largest record the bridge produces (producer message.max.bytes) and the max.message.bytes of "
        "the topics it creates; a larger event goes to the dead-letter topic as too_large")

    # events topics
    topic_partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    retention_ms: int = Field(-1, ge=-1, description="-1 keeps events forever")

    # bridge-owned topics; None -> derived from the bridge name
    dead_letter_topic: str | None = None
    dead_letter_partitions: int = Field(1, ge=1)
    dead_letter_retention_ms: int = Field(THIRTY_DAYS_MS, ge=-1)
    checkpoint_topic: str | None = None

    create_topics: bool = True

    @field_validator("extra", mode="before")
    @classmethod
    def _extra_as_strings(cls, v: Any) -> Any:
        # YAML turns `linger.ms: 20` into an int and `true` into a bool: librdkafka wants strings.
        if isinstance(v, dict):
            return {str(k): (str(x).lower() if isinstance(x, bool) else str(x)) for k, x in v.items()}
        return v

    @field_validator("extra")
    @classmethod
    def _no_reserved_extra(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if key in _RESERVED_EXTRA:
                raise ValueError(f"kafka.extra must not set {key!r}; use {_RESERVED_EXTRA[key]}")
        return v

    @model_validator(mode="after")
    def _sasl_complete(self) -> "KafkaSettings":
        uses_sasl = self.security_protocol.startswith("SASL")
        if uses_sasl and self.sasl_mechanism is None:
            raise ValueError(f"kafka.security_protocol={self.security_protocol} needs kafka.sasl_mechanism")
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            if not self.sasl_username or self.sasl_password is None:
                raise ValueError(f"kafka.sasl_mechanism={self.sasl_mechanism} needs kafka.sasl_username "
                                 "and kafka.sasl_password")
        if self.sasl_mechanism is not None and not uses_sasl:
            raise ValueError(f"kafka.sasl_mechanism is set but kafka.security_protocol is "
                             f"{self.security_protocol}; use SASL_SSL or SASL_PLAINTEXT")
        return self

    # -- derived names -------------------------------------------------------------

    def checkpoint_topic_for(self, bridge_name: str) -> str:
        return self.checkpoint_topic or f"{bridge_name}.checkpoints"

    def dead_letter_topic_for(self, bridge_name: str) -> str:
        return self.dead_letter_topic or f"{bridge_name}.dead-letter"

    # -- librdkafka ----------------------------------------------------------------

    def librdkafka_config(self) -> dict[str, Any]:
        """The common client settings (connection, security, `extra`) as librdkafka wants them.

        The only place the SASL password is revealed. Never log the result; use
        `redacted_config()` for that.
        """
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        conf.update(self.extra)
        return conf

    def redacted_config(self) -> dict[str, Any]:
        """librdkafka_config() safe to log: secrets replaced by '***'."""
        return {k: ("***" if _is_secret_key(k) else v) for k, v in self.librdkafka_config().items()}


def _is_secret_key(key: str) -> bool:
    k = key.lower()
    return any(s in k for s in ("password", "secret", "token", "key.pem", "sasl.oauthbearer.config"))
