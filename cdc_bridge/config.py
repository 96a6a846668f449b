"""Bridge settings: one YAML file, every key overridable by an environment variable.

Environment overrides use the prefix CDC_BRIDGE and a double underscore between
levels, upper case:  source.password -> CDC_BRIDGE__SOURCE__PASSWORD,
batch.max_wait_ms -> CDC_BRIDGE__BATCH__MAX_WAIT_MS. Any key may instead be read
from a file by appending _FILE (CDC_BRIDGE__SOURCE__PASSWORD_FILE=/run/secrets/db),
which is how container secrets are usually mounted. Secrets are pydantic SecretStr:
they never appear in logs, `repr` or `cdc-bridge run --print-config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.source.settings import SourceSettings

ENV_PREFIX = "CDC_BRIDGE__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StateSettings(_Section):
    dir: Path = Field(default=Path("state"), description="LMDB state directory (a persistent volume in production)")
    partitions: int = Field(default=16, ge=1, le=4096, description="state partitions: murmur2(aggregate id) mod P")
    map_size_mb: int = Field(default=1024, ge=16, description="initial LMDB map size; grows automatically")


class BatchSettings(_Section):
    max_transactions: int = Field(default=1000, ge=1, description="source transactions per Kafka transaction")
    max_events: int = Field(default=10000, ge=1, description="events per Kafka transaction (soft limit)")
    max_wait_ms: int = Field(default=100, ge=0, description="longest time a read transaction waits to be published")


class HeldSettings(_Section):
    max_age_seconds: float = Field(default=3600.0, gt=0, description="held children older than this (source time) become orphans")
    max_count: int = Field(default=100000, ge=1, description="held children per partition before the oldest become orphans")


class HttpSettings(_Section):
    host: str = "0.0.0.0"
    port: int = Field(default=9108, ge=0, le=65535, description="metrics, /healthz and /readyz; 0 picks a free port")


class SnapshotSettings(_Section):
    mode: Literal["initial", "when_needed", "never"] = Field(
        default="initial",
        description="initial: a bridge without checkpoint first snapshots the mapped tables' existing rows; "
        "when_needed: also takes a new snapshot when the saved position was purged; never: only streams",
    )
    chunk_size: int = Field(default=1000, ge=1, description="root rows read per snapshot chunk (with their children)")


class CommandLogSettings(_Section):
    enabled: bool = Field(default=False, description="write every command to a retained commands topic (needed by `rebuild`)")
    topic: str | None = Field(default=None, description="default <name>.commands; partitions = state.partitions")
    retention_ms: int = Field(default=-1, ge=-1, description="-1 keeps the command log forever")


class WorkerSettings(_Section):
    """Aggregate workers (`cdc-bridge worker`, docs/scaling.md); unused by `cdc-bridge run`."""

    id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]+$",
        description="this worker's stable identity (transactional.id <name>.worker.<id>): unique per worker, the "
        "same across its restarts; default the host name (a StatefulSet pod's name)",
    )
    group_id: str | None = Field(default=None, description="consumer group of the workers; default <name>.workers")
    changelog_topic: str | None = Field(default=None, description="state changelog topic; default <name>.changelog")
    max_records: int = Field(default=2000, ge=1, description="commands records applied per Kafka transaction")
    max_wait_ms: int = Field(default=100, ge=0, description="longest wait for more commands before committing")
    session_timeout_ms: int = Field(default=10_000, ge=1000, description="how long a silent worker keeps its partitions")
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000,
                                      description="longest time between two polls before the group drops the worker")


class ChangeStreamSettings(_Section):
    """The optional Debezium-compatible change stream (docs/events.md#debezium-compatible-change-stream)."""

    enabled: bool = Field(default=False, description="publish every row change of the mapped tables as a Debezium "
                          "change event on <topic_prefix>.<db>.<table>, in the same Kafka transaction as the events")
    topic_prefix: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]+$",
        description="Debezium's topic.prefix: topics are <topic_prefix>.<db>.<table>, source.name is this; "
        "default the bridge's name")
    tables: list[str] = Field(default_factory=list,
                              description="schema.table of the tables to stream; empty: every mapped table")
    tombstones_on_delete: bool = Field(default=True, description="a null-value record after each delete (Debezium's "
                                       "tombstones.on.delete), so that a compacted topic forgets the row")
    decimal_handling: Literal["string", "double"] = Field(
        default="string", description="DECIMAL as an exact string (\"12.50\") or as a JSON number (a double)")
    transaction_topic: bool = Field(default=True, description="BEGIN and END records of each source transaction "
                                    "on <topic_prefix>.transaction (Debezium's provide.transaction.metadata)")

    @field_validator("tables", mode="before")
    @classmethod
    def _comma_separated(cls, v: object) -> object:
        # the environment gives one string: CDC_BRIDGE__CHANGE_STREAM__TABLES=shop.orders,shop.order_lines
        if isinstance(v, str):
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    @field_validator("tables")
    @classmethod
    def _schema_dot_table(cls, v: list[str]) -> list[str]:
        for t in v:
            schema, dot, table = t.partition(".")
            if not (dot and schema and table) or "." in table:
                raise ValueError(f"{t!r} is not schema.table; name each table as <database>.<table>, "
                                 "e.g. shop.orders (or leave the list empty for every mapped table)")
        return v


class BridgeConfig(_Section):
    name: str = Field(
        default="cdc-bridge",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="identity of this bridge: transactional.id, checkpoint key and default topic names; one bridge per source",
    )
    source: SourceSettings
    kafka: KafkaSettings
    mappings_dir: Path = Path("mappings")
    state: StateSettings = Field(default_factory=StateSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    held: HeldSettings = Field(default_factory=HeldSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    start: Literal["current", "earliest"] = Field(
        default="current",
        description="where a bridge with no checkpoint starts streaming when snapshot.mode is never: "
        "'current' (the server's position now) or 'earliest' (the oldest binlog)",
    )
    ready_max_lag_seconds: float = Field(default=60.0, description="/readyz fails while lag is above this")
    log_level: str = "INFO"
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings)
    command_log: CommandLogSettings = Field(default_factory=CommandLogSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    change_stream: ChangeStreamSettings = Field(default_factory=ChangeStreamSettings)


class ConfigError(Exception):
    exit_code = 78  # EX_CONFIG


def load_config(path: str | Path | None, env: dict[str, str] | None = None) -> BridgeConfig:
    """Reads the YAML file (optional), applies environment overrides, validates."""
    env = dict(os.environ if env is None else env)
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist; pass --config with the path of your bridge.yaml")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (source, kafka, ...)")
    apply_env_overrides(data, env)
    try:
        cfg = BridgeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, path)) from None
    if path is not None:
        # Relative paths in the file are relative to the file, not to the working directory.
        base = Path(path).resolve().parent
        if not cfg.mappings_dir.is_absolute():
            cfg.mappings_dir = base / cfg.mappings_dir
        if not cfg.state.dir.is_absolute():
            cfg.state.dir = base / cfg.state.dir
    return cfg


def apply_env_overrides(data: dict[str, Any], env: dict[str, str]) -> None:
    for key, value in sorted(env.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX):].lower().split("__")
        if parts[-1].endswith("_file"):
            parts[-1] = parts[-1][: -len("_file")]
            try:
                value = Path(value).read_text().rstrip("\n")
            except OSError as e:
                raise ConfigError(f"{key} names {value!r}, which cannot be read: {e}") from e
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        # Raw strings: pydantic's lax mode turns "5" into 5 for int keys, while a password "0123" stays a string.
        node[parts[-1]] = value


def _describe(e: ValidationError, path: str | Path | None) -> str:
    where = str(path) if path else "configuration"
    lines = [f"{where}: {e.error_count()} problem(s):"]
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        env_name = ENV_PREFIX + "__".join(str(x).upper() for x in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see docs/configuration.md)"
        elif err["type"] == "missing":
            msg = f"required; set it in the file or with {env_name}"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)
