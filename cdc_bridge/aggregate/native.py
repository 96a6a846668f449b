"""The declarative aggregates' apply as one call per aggregate instance and source transaction:
compiled (cdc_bridge._native, Rust, native/) or in Python (ReferenceCore), same API, same bytes.

    core = core_for(decider) or ReferenceCore(decider)     # once per aggregate mapping
    state_json, drafts, rejections, held = core.apply(state_json, commands, aggregate_id)
    value = core.envelope(event_type, aggregate, aggregate_id, sequence, schema_version,
                          occurred_at, source_json, data_json)

apply(state_json, commands, aggregate_id)
    state_json   jsoncodec.dumps(state) of ONE instance, or None for decider.initial_state()
    commands     that instance's commands of ONE source transaction in binlog order, each a tuple
                 (aggregate, entity, entity_id, operation, payload, before, table, soft,
                  commit_ts, txn_id, position)   -- position: SourcePosition.to_dict() or None
    aggregate_id the instance's id (Command.aggregate_id: rejection details name it)
  returns (new_state_json, drafts, rejections, held):
    new_state_json  jsoncodec.dumps(the state after evolving every draft, in order)
    drafts          [(event_type, table, data_json, internal, tombstone)]: the Decision's events in
                    order, data_json = jsoncodec.dumps(draft.data), tombstone = draft.meta["tombstone"]
    rejections      [(command_index, reason, detail)]: the Decision's dead letters, command_index
                    indexing `commands` (decider.reject(command, reason, detail) rebuilds the DeadLetter)
    held            [(entity, entity_id, since)]: decider.held_entries(new state)

envelope(...) == jsoncodec.dumps(DomainEvent(...).envelope(occurred_at)) where source_json and
data_json are jsoncodec.dumps of the event's source and data.

apply_wire(state_json, wire, aggregate_id, commit_ts, txn_id, position, sequence, schema_version,
           occurred_at, source_tail)    -- what the runtime calls: apply() and envelope() in one
    wire         the commands as the reader process sends them (mapping/translate.py command_to_wire:
                 (command_type, aggregate, aggregate_id, entity, entity_id, operation, payload, before,
                 table, index, soft)), all of ONE source transaction: commit_ts, txn_id and position
                 (to_dict() or None) are its values, given once
    sequence     the instance's last sequence; schema_version, occurred_at (rfc3339 of commit_ts):
                 the envelope's; source_tail: jsoncodec.dumps(source block) after its "table" value
  returns (new_state_json, last_sequence, events, rejections, held): events [(event_type, table,
    data_json, tombstone, value)] are the published drafts numbered sequence + 1, ... with value =
    envelope(...) of each, source = {"table": <its table>, <source_tail>.

DeclarativeDecider and jsoncodec are the reference; ReferenceCore is them behind this API (the
fallback, and the oracle of tests/unit/aggregate/test_native_core.py). The compiled core raises
_native.Unsupported for what it cannot answer exactly (a value type it does not know, NaN, a
corrupt state, anything where the reference raises); NativeCore then answers that call with
ReferenceCore. core_for() gives None when the compiled core is off (CDC_BRIDGE_NATIVE_APPLY=0),
not built (one warning per process), or not for this decider (a Python decider).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from typing import Any, Protocol

import structlog

from cdc_bridge.aggregate.decider import Decider, held_entries
from cdc_bridge.aggregate.declarative import DeclarativeDecider
from cdc_bridge.aggregate.event import DomainEvent
from cdc_bridge.jsoncodec import dumps, loads
from cdc_bridge.source.position import SourcePosition

log = structlog.get_logger(__name__)

ENV = "CDC_BRIDGE_NATIVE_APPLY"
"""CDC_BRIDGE_NATIVE_APPLY=0 turns the compiled core off (no warning)."""

SPEC_VERSION = 3
"""The spec format native/src/decide.rs reads and the API around it (3: apply_wire takes packed bytes too); a
build reporting another one is stale and not used."""

try:
    from cdc_bridge import _native
except ImportError as e:   # built without cargo (setup.py: optional), or not built at all
    _native = None
    _MISSING = f"{type(e).__name__}: {e}"
else:
    _MISSING = None
    if getattr(_native, "SPEC_VERSION", None) != SPEC_VERSION:
        _MISSING = (f"cdc_bridge._native is a stale build (spec version {getattr(_native, 'SPEC_VERSION', None)}, "
                    f"expected {SPEC_VERSION}): reinstall")
        _native = None

Unsupported: type[Exception] = _native.Unsupported if _native is not None else type("Unsupported", (Exception,), {})

_warned = False

Draft = tuple[str, str, bytes, bool, bool]
Rejection = tuple[int, str, str]
Held = tuple[str, str, Any]
Event = tuple[str, str, bytes, bool, bytes]   # event_type, table, data_json, tombstone, record value


class Core(Protocol):
    def apply(self, state_json: bytes | None, commands: list[tuple], aggregate_id: str
              ) -> tuple[bytes, list[Draft], list[Rejection], list[Held]]: ...

    def envelope(self, event_type: str, aggregate: str, aggregate_id: str, sequence: int, schema_version: int,
                 occurred_at: str, source_json: bytes, data_json: bytes) -> bytes: ...

    def apply_wire(self, state_json: bytes | None, wire: list[tuple], aggregate_id: str, commit_ts: float,
                   txn_id: str, position: dict[str, Any] | None, sequence: int, schema_version: int,
                   occurred_at: str, source_tail: bytes
                   ) -> tuple[bytes, int, list[Event], list[Rejection], list[Held]]: ...


def native_available() -> bool:
    """The compiled core is built (whatever CDC_BRIDGE_NATIVE_APPLY says)."""
    return _native is not None


def core_for(decider: Decider) -> "NativeCore | None":
    """The compiled core of a declarative decider; None when turned off (CDC_BRIDGE_NATIVE_APPLY=0), not
    built (one warning per process), or not applicable (a Python decider, a rule value it cannot compare)."""
    global _warned
    if os.environ.get(ENV) == "0":
        return None
    if _native is None:
        if not _warned:
            _warned = True
            log.warning(f"compiled apply not available ({_MISSING}); using the Python implementation")
        return None
    if type(decider) is not DeclarativeDecider:   # a Python decider, or a subclass that may change the rules
        return None
    try:
        core = _native.DeclarativeCore(spec_of(decider))
    except (UnsupportedMapping, TypeError, ValueError, KeyError) as e:
        log.info("compiled apply not used for this aggregate; using the Python implementation",
                 aggregate=decider.aggregate, reason=str(e))
        return None
    return NativeCore(core, ReferenceCore(decider))


class UnsupportedMapping(Exception):
    """A mapping whose rules the compiled core cannot evaluate exactly (core_for gives None)."""


def spec_of(d: DeclarativeDecider) -> dict[str, Any]:
    """What _native.DeclarativeCore is built from: the decider's computed names and rules."""
    if type(d.max_embedded) is not int:
        raise UnsupportedMapping(f"max_embedded_children {d.max_embedded!r} is not an int")
    return {
        "aggregate": d.aggregate,
        "context_key": d.context_key,
        "created": d.created,
        "updated": d.updated,
        "deleted": d.deleted,
        "snapshotted": d.snapshotted,
        "emit_snapshot_events": bool(d.emit_snapshot_events),
        "max_embedded": d.max_embedded,
        "tombstone_on_delete": bool(d.tombstone_on_delete),
        "transitions": [(t.field, _literal(t.from_), _literal(t.to), t.event) for t in d.transitions],
        "children": {
            name: {"table": c.table, "added": c.added, "changed": c.changed, "removed": c.removed,
                   "enrich": list(c.enrich)}
            for name, c in d.children.items()
        },
    }


def _json_value(v: Any, nan: bool = False) -> bool:
    """v is made of None, bool, int, float (not NaN unless `nan`), str, list and str-keyed dict, of these
    exact types."""
    t = type(v)
    if v is None or t in (bool, int, str):
        return True
    if t is float:
        return nan or not math.isnan(v)
    if t is list:
        return all(_json_value(x, nan) for x in v)
    if t is dict:
        return all(type(k) is str and _json_value(x, nan) for k, x in v.items())
    return False


# values YAML can give that compare unequal to every row value, without raising, and that same_value()
# does not pass to float(): it returns False for them
_NEVER_EQUAL = (_dt.date, _dt.time, bytes, list, dict, tuple, set, frozenset)


def _literal(v: Any) -> tuple:
    """A transition's from / to for the spec: ("any",) for "*", ("value", v) (NaN and infinities
    included: same_value() passes them to float() like any float), or ("never",) for a value no row value
    equals (a YAML date, a container holding one)."""
    if isinstance(v, str) and v == "*":
        return ("any",)
    if _json_value(v, nan=True):
        return ("value", v)
    if isinstance(v, _NEVER_EQUAL):
        return ("never",)
    raise UnsupportedMapping(f"transition value {v!r} of type {type(v).__name__}")


class NativeCore:
    """The compiled core; a call it cannot answer exactly (Unsupported) is answered by ReferenceCore."""

    __slots__ = ("core", "reference", "fallbacks")

    def __init__(self, core: Any, reference: "ReferenceCore") -> None:
        self.core = core
        self.reference = reference
        self.fallbacks = 0   # calls answered by the reference (tests, benchmarks)

    @property
    def decider(self) -> DeclarativeDecider:
        return self.reference.decider

    def apply(self, state_json: bytes | None, commands: list[tuple], aggregate_id: str
              ) -> tuple[bytes, list[Draft], list[Rejection], list[Held]]:
        try:
            return self.core.apply(state_json, commands, aggregate_id)
        except Unsupported:
            self.fallbacks += 1
            return self.reference.apply(state_json, commands, aggregate_id)

    def apply_wire(self, state_json: bytes | None, wire: list[tuple] | bytes, aggregate_id: str, commit_ts: float,
                   txn_id: str, position: dict[str, Any] | None, sequence: int, schema_version: int,
                   occurred_at: str, source_tail: bytes) -> tuple[bytes, int, list[Event], list[Rejection], list[Held]]:
        """wire: the commands' tuples, or their packed form (bytes: mapping/packed.py)."""
        try:
            return self.core.apply_wire(state_json, wire, aggregate_id, commit_ts, txn_id, position, sequence,
                                        schema_version, occurred_at, source_tail)
        except Unsupported:
            self.fallbacks += 1
            if isinstance(wire, bytes):
                wire = _native.unpack_wire(wire)
            return self.reference.apply_wire(state_json, wire, aggregate_id, commit_ts, txn_id, position, sequence,
                                             schema_version, occurred_at, source_tail)

    def envelope(self, event_type: str, aggregate: str, aggregate_id: str, sequence: int, schema_version: int,
                 occurred_at: str, source_json: bytes, data_json: bytes) -> bytes:
        try:
            return self.core.envelope(event_type, aggregate, aggregate_id, sequence, schema_version, occurred_at,
                                      source_json, data_json)
        except Unsupported:
            self.fallbacks += 1
            return self.reference.envelope(event_type, aggregate, aggregate_id, sequence, schema_version,
                                           occurred_at, source_json, data_json)


class _GivenPosition(SourcePosition):
    """The position of a command tuple: to_dict() gives the dict the tuple carried (DeadLetter wants a SourcePosition)."""

    __slots__ = ("_given",)

    def __init__(self, given: dict[str, Any]) -> None:
        super().__init__(given.get("gtid"), given.get("binlog_file", ""), given.get("binlog_pos", 0))
        object.__setattr__(self, "_given", given)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._given)


class _Cmd:
    """A command tuple with the Command attributes the declarative decider and reject() read."""

    __slots__ = ("aggregate", "aggregate_id", "entity", "entity_id", "operation", "payload", "before", "table",
                 "soft", "commit_ts", "txn_id", "position", "index", "command_type")

    def __init__(self, index: int, aggregate_id: str, t: tuple) -> None:
        (self.aggregate, self.entity, self.entity_id, self.operation, self.payload, self.before, self.table,
         self.soft, self.commit_ts, self.txn_id, position) = t
        self.position = _GivenPosition(position) if position is not None else None
        self.aggregate_id = aggregate_id
        self.index = index
        self.command_type = ""


class ReferenceCore:
    """The apply/envelope API over DeclarativeDecider and jsoncodec: the Python path and the reference."""

    __slots__ = ("decider",)

    def __init__(self, decider: DeclarativeDecider) -> None:
        self.decider = decider

    def apply(self, state_json: bytes | None, commands: list[tuple], aggregate_id: str
              ) -> tuple[bytes, list[Draft], list[Rejection], list[Held]]:
        d = self.decider
        state = d.initial_state() if state_json is None else loads(state_json)
        decision = d.decide(state, [_Cmd(i, aggregate_id, t) for i, t in enumerate(commands)])
        for draft in decision.events:
            state = d.evolve(state, draft)
        return (
            dumps(state),
            [(x.event_type, x.table, dumps(x.data), x.internal, bool(x.meta.get("tombstone")))
             for x in decision.events],
            [(r.record["index"], r.reason, r.detail) for r in decision.rejections],
            [(entity, entity_id, entry["since"]) for entity, entity_id, entry in held_entries(state)],
        )

    def apply_wire(self, state_json: bytes | None, wire: list[tuple], aggregate_id: str, commit_ts: float,
                   txn_id: str, position: dict[str, Any] | None, sequence: int, schema_version: int,
                   occurred_at: str, source_tail: bytes) -> tuple[bytes, int, list[Event], list[Rejection], list[Held]]:
        """apply() of wire tuples (command_to_wire's form) of one source transaction, whose commit_ts, txn_id
        and position they share; the published drafts numbered from sequence + 1 and enveloped (source:
        {"table": <the draft's table>, <source_tail>)."""
        state_json, drafts, rejections, held = self.apply(
            state_json, [(w[1], w[3], w[4], w[5], w[6], w[7], w[8], w[10], commit_ts, txn_id, position) for w in wire],
            aggregate_id)
        events = []
        for event_type, table, data_json, internal, tombstone in drafts:
            if internal:
                continue
            sequence += 1
            source_json = b'{"table":' + dumps(table) + source_tail
            events.append((event_type, table, data_json, tombstone,
                           self.envelope(event_type, self.decider.aggregate, aggregate_id, sequence, schema_version,
                                         occurred_at, source_json, data_json)))
        return state_json, sequence, events, rejections, held

    def envelope(self, event_type: str, aggregate: str, aggregate_id: str, sequence: int, schema_version: int,
                 occurred_at: str, source_json: bytes, data_json: bytes) -> bytes:
        event = DomainEvent(event_type=event_type, aggregate=aggregate, aggregate_id=aggregate_id, sequence=sequence,
                            schema_version=schema_version, occurred_at=0.0, source=loads(source_json),
                            data=loads(data_json))
        return dumps(event.envelope(occurred_at))


__all__ = ["ENV", "Core", "NativeCore", "ReferenceCore", "Unsupported", "UnsupportedMapping", "core_for",
           "native_available", "spec_of"]
