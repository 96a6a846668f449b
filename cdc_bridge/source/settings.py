"""Settings of the binlog source (the `source:` section of the bridge config).

The password is a `SecretStr`: it prints as '**********' in reprs, logs and validation
errors and is revealed only by `connection_kwargs()`, which builds the PyMySQL arguments.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class SourceSettings(BaseModel):
    """Where the binlog is and how we follow it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(3306, ge=1, le=65535)
    user: str = Field(min_length=1)
    password: SecretStr = SecretStr("")
    # the replica id we present to the server: must differ from the server's own
    # server_id and from every other replica's (the server kicks duplicates)
    server_id: int = Field(8123, ge=1, le=2**32 - 1)
    flavor: Literal["auto", "mariadb", "mysql"] = "auto"
    heartbeat_seconds: float = Field(1.0, gt=0, le=3600)
    # no byte for this long (heartbeats included) = the connection is dead
    read_timeout_seconds: float = Field(10.0, gt=0)
    reconnect_initial_backoff: float = Field(0.5, gt=0)
    reconnect_max_backoff: float = Field(30.0, gt=0)
    connect_timeout: float = Field(10.0, gt=0, le=31536000)
    # process: read and decode the binlog in a child process (its own core, and the bridge
    # commits a batch as soon as it has caught up); inline: in the bridge's own thread
    reader: Literal["process", "inline"] = "process"
    # schema.table the bridge watches for ad-hoc re-snapshot requests (`cdc-bridge snapshot --aggregate`,
    # docs/mappings.md "cascades and triggers"); None: the feature is off
    signal_table: str | None = Field(None, pattern=r"^[^.\s]+\.[^.\s]+$")

    @model_validator(mode="after")
    def _timeouts_consistent(self) -> "SourceSettings":
        # the server only sends heartbeats when idle; a read timeout at or below the
        # heartbeat period would turn every quiet second into a "dead connection"
        if self.read_timeout_seconds <= self.heartbeat_seconds:
            raise ValueError(
                f"source.read_timeout_seconds ({self.read_timeout_seconds}) must be greater than "
                f"source.heartbeat_seconds ({self.heartbeat_seconds}); e.g. read_timeout_seconds = "
                f"{max(10.0, self.heartbeat_seconds * 5):g}")
        if self.reconnect_max_backoff < self.reconnect_initial_backoff:
            raise ValueError(
                f"source.reconnect_max_backoff ({self.reconnect_max_backoff}) must be at least "
                f"source.reconnect_initial_backoff ({self.reconnect_initial_backoff})")
        return self

    def connection_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for pymysql.connect (reveals the password)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password.get_secret_value(),
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout_seconds,
            "write_timeout": self.read_timeout_seconds,
            "charset": "utf8mb4",
        }
        kwargs.update(extra)
        return kwargs

    def describe(self) -> str:
        """user@host:port for messages and logs (never the password)."""
        return f"{self.user}@{self.host}:{self.port}"
