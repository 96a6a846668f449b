"""Domain events and their envelope: the contract consumers rely on (docs/events.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from cdc_bridge.jsoncodec import dumps, loads

TOMBSTONE_HEADER = "cdc-bridge-tombstone"
"""extra_headers[TOMBSTONE_HEADER] == "1": the sink follows the event with a Kafka tombstone (key, null value).
It is a directive to the sink, not a header of the published event."""


@dataclass(slots=True)
class EventDraft:
    """What a decider decides: an event without its sequence number yet.

    internal=True marks a state-only event (for example a child held until its
    parent arrives): evolve applies it, but it is never published and takes no sequence.

    meta is decider-private and never published: whatever evolve needs beyond the
    published data (the declarative decider keeps the event kind, entity ids and the
    state to set there). Deciders must not put anything in it they cannot rebuild:
    drafts live only for one apply().
    """

    event_type: str
    data: dict[str, Any]
    table: str                       # schema.table of the row that caused it
    internal: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class DomainEvent:
    """A published event. event_id is "<aggregate>:<aggregate_id>:<sequence>", stable across replays.

    extra_headers are added to the Kafka record's headers, except the TOMBSTONE_HEADER
    directive, which the runtime sets on deleted events of a mapping with
    tombstone_on_delete: the sink then follows the event with a tombstone for its key.
    """

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
    # the record value (jsoncodec.dumps of the envelope) when the compiled apply wrote it already
    value_json: bytes | None = field(default=None, repr=False, compare=False)
    # jsoncodec.dumps(data) from the compiled apply, with data=None: `data` is decoded when first read
    # (the publisher only needs value_json; decoding every event's data cost a tenth of the apply)
    data_json: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def event_id(self) -> str:
        return f"{self.aggregate}:{self.aggregate_id}:{self.sequence}"

    def envelope(self, occurred_at: str | None = None) -> dict[str, Any]:
        """occurred_at: rfc3339(self.occurred_at) when the caller has it already (one per source transaction)."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "aggregate": self.aggregate,
            "aggregate_id": self.aggregate_id,
            "sequence": self.sequence,
            "schema_version": self.schema_version,
            "occurred_at": occurred_at if occurred_at is not None else rfc3339(self.occurred_at),
            "source": self.source,
            "data": self.data,
        }

    @property
    def tombstone_after(self) -> bool:
        """The sink should follow this event with a Kafka tombstone (key, null value)."""
        return self.extra_headers.get(TOMBSTONE_HEADER) == "1"

    # The Kafka record, as docs/events.md specifies it.

    def key(self) -> bytes:
        """Record key: aggregate_id, UTF-8 (so Kafka's default partitioner co-locates an aggregate's events)."""
        return self.aggregate_id.encode("utf-8")

    def value(self) -> bytes:
        """Record value: the envelope as compact JSON, UTF-8 (the publisher's codec)."""
        return self.value_json if self.value_json is not None else dumps(self.envelope())

    def headers(self) -> list[tuple[str, bytes]]:
        """Record headers: event_type and event_id (UTF-8), then extra_headers but the tombstone directive."""
        out = [("event_type", self.event_type.encode("utf-8")), ("event_id", self.event_id.encode("utf-8"))]
        out.extend((k, v.encode("utf-8")) for k, v in self.extra_headers.items() if k != TOMBSTONE_HEADER)
        return out


_data_slot = DomainEvent.data   # the slot's descriptor: `data` becomes a property over it


def _data(self: DomainEvent) -> dict[str, Any]:
    data = _data_slot.__get__(self, DomainEvent)
    if data is None and self.data_json is not None:
        data = loads(self.data_json)
        _data_slot.__set__(self, data)
    return data


DomainEvent.data = property(_data, _data_slot.__set__, doc="the event's data (decoded from data_json when first read)")  # type: ignore[assignment,method-assign]


@lru_cache(maxsize=1024)
def rfc3339(ts: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with microseconds, e.g. 2026-11-27T04:42:20.000000Z.

    Cached: binlog commit times are whole seconds shared by many transactions, and strftime costs
    more than the rest of a transaction's envelope."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
