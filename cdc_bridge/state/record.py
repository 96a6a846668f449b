"""What the state store keeps per aggregate instance."""

from __future__ import annotations

from typing import Any

from orjson import loads as _orjson_loads

from cdc_bridge.jsoncodec import dumps, loads
from cdc_bridge.source.position import SourcePosition

_STATE_KEY = b',"state":'
_HEAD_KEYS = frozenset({"aggregate", "aggregate_id", "sequence", "last_position", "held_since"})


_positions: dict[tuple, SourcePosition] = {}


def _position(d: dict[str, Any]) -> SourcePosition:
    """SourcePosition.from_dict, shared: the records a transaction wrote all carry its position, and
    building the frozen dataclass cost more than reading the rest of the record."""
    key = (d.get("gtid"), d["binlog_file"], d["binlog_pos"])
    pos = _positions.get(key)
    if pos is None:
        if len(_positions) >= 4096:   # bounded: positions of recent transactions repeat, old ones do not
            _positions.clear()
        pos = _positions[key] = SourcePosition.from_dict(d)
    return pos


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

    The state is held as a dict, as its JSON (state_json, what the compiled apply reads and writes:
    aggregate/native.py), or both; each is made from the other when first asked for, so a record that
    goes from LMDB through the compiled apply back to LMDB is never decoded into Python objects.
    Records are values: never change a state dict in place after handing it over.
    """

    __slots__ = ("aggregate", "aggregate_id", "_state", "_state_json", "sequence", "last_position", "held_since")

    def __init__(self, aggregate: str, aggregate_id: str, state: dict[str, Any] | None = None, sequence: int = 0,
                 last_position: SourcePosition | None = None, held_since: float | None = None, *,
                 state_json: bytes | None = None) -> None:
        if state is None and state_json is None:
            raise TypeError("AggregateRecord needs a state or a state_json")
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self._state = state
        self._state_json = state_json
        self.sequence = sequence
        self.last_position = last_position
        self.held_since = held_since

    @property
    def state(self) -> dict[str, Any]:
        state = self._state
        if state is None:
            state = self._state = loads(self._state_json)   # type: ignore[arg-type]
        return state

    @property
    def state_json(self) -> bytes:
        """jsoncodec.dumps(state)."""
        raw = self._state_json
        if raw is None:
            raw = self._state_json = dumps(self._state)
        return raw

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return (self.aggregate, self.aggregate_id, self.sequence, self.last_position, self.held_since, self.state) == (
            other.aggregate, other.aggregate_id, other.sequence, other.last_position, other.held_since, other.state)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        return (f"AggregateRecord(aggregate={self.aggregate!r}, aggregate_id={self.aggregate_id!r}, state={self.state!r}, "
                f"sequence={self.sequence!r}, last_position={self.last_position!r}, held_since={self.held_since!r})")

    def _head(self) -> dict[str, Any]:
        return {
            "aggregate": self.aggregate,
            "aggregate_id": self.aggregate_id,
            "sequence": self.sequence,
            "last_position": self.last_position.to_dict() if self.last_position else None,
            "held_since": self.held_since,
        }

    def to_json_dict(self) -> dict[str, Any]:
        d = self._head()
        d["state"] = self.state
        return d

    to_dict = to_json_dict

    def to_json(self) -> bytes:
        """dumps(to_json_dict()), byte for byte; the state's JSON spliced in when the record has it."""
        if self._state_json is None:
            return dumps(self.to_json_dict())
        return dumps(self._head())[:-1] + _STATE_KEY + self._state_json + b"}"

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

    @classmethod
    def from_json(cls, raw: bytes) -> "AggregateRecord":
        """The record to_json() wrote, its state kept as JSON (decoded only when asked for). The state is
        the last key there, and `,"state":` cannot occur earlier outside a string (every quote inside a
        JSON string is escaped); anything else is decoded as a whole."""
        i = raw.find(_STATE_KEY)
        if i > 0 and raw[-1:] == b"}":
            try:
                # orjson straight (jsoncodec.loads first looks for ints beyond 64 bits, which orjson reads
                # as floats): the head's two ints are checked to be ints instead (a float: decoded as a whole)
                head = _orjson_loads(raw[:i] + b"}")
            except ValueError:
                head = None
            if type(head) is dict and head.keys() == _HEAD_KEYS and type(head["sequence"]) is int:
                pos = head["last_position"]
                if not pos or type(pos.get("binlog_pos")) is int:
                    return cls(head["aggregate"], head["aggregate_id"], None, head["sequence"],
                               _position(pos) if pos else None, head["held_since"],
                               state_json=raw[i + len(_STATE_KEY):-1])
        return cls.from_json_dict(loads(raw))
