"""Domain events and their envelope: the contract consumers rely on (docs/events.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass(slots=True)
class EventDraft:
    """What a decider decides: an event without its sequence number yet.

    internal=True marks a state-only event (for example a child held until its
    parent arrives): evolve applies it, but it is never published and takes no sequence.
    """

    event_type: str
    data: dict[str, Any]
    table: str                       # schema.table of the row that caused it
    internal: bool = False


@dataclass(slots=True)
class DomainEvent:
    """A published event. event_id is "<aggregate>:<aggregate_id>:<sequence>", stable across replays."""

    event_type: str
    aggregate: str
    aggregate_id: str
    sequence: int
    schema_version: int
    occurred_at: float               # source commit time, epoch seconds
    source: dict[str, Any]           # table, gtid, binlog_file, binlog_pos, txn_id
    data: dict[str, Any]
    topic: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return f"{self.aggregate}:{self.aggregate_id}:{self.sequence}"

    def envelope(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "aggregate": self.aggregate,
            "aggregate_id": self.aggregate_id,
            "sequence": self.sequence,
            "schema_version": self.schema_version,
            "occurred_at": rfc3339(self.occurred_at),
            "source": self.source,
            "data": self.data,
        }


def rfc3339(ts: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with microseconds, e.g. 2026-11-27T04:42:20.000000Z."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
