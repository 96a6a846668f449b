"""What the state store keeps per aggregate instance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdc_bridge.source.position import SourcePosition


@dataclass(slots=True)
class AggregateRecord:
    """The persisted state of one aggregate instance.

    state:         the decider's state, a JSON-able dict (the runtime reads its
                   "held" entry: children waiting for their parent, see docs/aggregates.md)
    sequence:      sequence number of the last published event, 0 before the first; it
                   survives a delete of the aggregate (the record stays as a tombstone) so
                   that event ids stay unique if the same id is created again
    last_position: end of the last source transaction applied to this instance;
                   commands at or before it are ignored (idempotent re-application)
    held_since:    source commit time (epoch seconds) of the oldest held child, or None
    """

    aggregate: str
    aggregate_id: str
    state: dict[str, Any]
    sequence: int = 0
    last_position: SourcePosition | None = None
    held_since: float | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "aggregate": self.aggregate,
            "aggregate_id": self.aggregate_id,
            "sequence": self.sequence,
            "last_position": self.last_position.to_dict() if self.last_position else None,
            "held_since": self.held_since,
            "state": self.state,
        }

    to_dict = to_json_dict

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> "AggregateRecord":
        pos = d.get("last_position")
        return cls(
            aggregate=d["aggregate"],
            aggregate_id=d["aggregate_id"],
            state=d["state"],
            sequence=int(d.get("sequence", 0)),
            last_position=SourcePosition.from_dict(pos) if pos else None,
            held_since=d.get("held_since"),
        )
