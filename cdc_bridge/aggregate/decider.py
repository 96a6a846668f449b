"""The decider protocol: an aggregate as pure functions (initial state, decide, evolve).

    state0 = decider.initial_state()
    decision = decider.decide(state, commands)     # all commands of ONE source transaction
    for draft in decision.events:                  # for ONE aggregate instance, in order
        state = decider.evolve(state, draft)

Deciders are pure: no I/O, no clock, no randomness. The runtime relies on it: applying
the same source transactions to the same state gives the same events with the same
sequence numbers, which is how recovery replays the binlog without publishing twice.

A decider is either the declarative one (aggregate/declarative.py, driven by the YAML
rules) or a Python class named in the mapping (`decider: package.module:ClassName`),
constructed with the AggregateMapping. See docs/aggregates.md, "Writing a Python decider".

Held children (shared with the runtime): a decider that holds children until their
parent exists keeps them in `state["held"]` as

    {"<entity>": {"<entity_id>": {"since": <commit_ts>, "fields": {...}, "table": "s.t",
                                  "txn_id": "...", "position": {...} | None}}}

The runtime indexes these entries and, when one is held too long or a partition holds
too many, removes it from the state itself and dead-letters it as an `orphan`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, runtime_checkable

from cdc_bridge.aggregate.event import EventDraft
from cdc_bridge.aggregate.exceptions import DeciderLoadError
from cdc_bridge.mapping.command import Command, DeadLetter
from cdc_bridge.mapping.schema import AggregateMapping

HELD = "held"
"""The state key under which held children live (see the module docstring)."""


@dataclass(slots=True)
class Decision:
    """What decide() returns: the events to apply and publish, and the commands it refused."""

    events: list[EventDraft] = field(default_factory=list)
    rejections: list[DeadLetter] = field(default_factory=list)


@runtime_checkable
class Decider(Protocol):
    """An aggregate type's behaviour. One instance serves every aggregate instance of the type."""

    aggregate: str

    def initial_state(self) -> dict[str, Any]:
        """The state of an instance never seen before (JSON-able)."""
        ...

    def decide(self, state: dict[str, Any], commands: list[Command]) -> Decision:
        """All commands of one source transaction for one instance, in binlog order -> events.

        Must not mutate `state`.
        """
        ...

    def evolve(self, state: dict[str, Any], event: EventDraft) -> dict[str, Any]:
        """The state after `event` (published or internal). Must not mutate `state`."""
        ...


def load_decider(mapping: AggregateMapping) -> Decider:
    """The mapping's Python decider (`decider: package.module:ClassName`), else the declarative one."""
    path = mapping.decider
    if not path:
        from cdc_bridge.aggregate.declarative import DeclarativeDecider

        return DeclarativeDecider(mapping)
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise DeciderLoadError(
            f"aggregate {mapping.aggregate}: decider {path!r} must be written package.module:ClassName"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise DeciderLoadError(f"aggregate {mapping.aggregate}: cannot import decider module {module_name!r}: {e}") from e
    cls = getattr(module, class_name, None)
    if cls is None:
        raise DeciderLoadError(f"aggregate {mapping.aggregate}: module {module_name!r} has no {class_name!r}")
    try:
        decider = cls(mapping)
    except Exception as e:
        raise DeciderLoadError(f"aggregate {mapping.aggregate}: constructing {path} failed: {e}") from e
    missing = [m for m in ("initial_state", "decide", "evolve") if not callable(getattr(decider, m, None))]
    if missing:
        raise DeciderLoadError(f"aggregate {mapping.aggregate}: {path} lacks {', '.join(missing)}")
    if getattr(decider, "aggregate", None) != mapping.aggregate:
        raise DeciderLoadError(
            f"aggregate {mapping.aggregate}: {path}.aggregate is {getattr(decider, 'aggregate', None)!r}, "
            f"expected {mapping.aggregate!r}"
        )
    return decider


# ----------------------------------------------------------------------------- helpers for deciders


def command_record(command: Command) -> dict[str, Any]:
    """The command as a dead letter's `record`."""
    return {
        "command_type": command.command_type,
        "entity": command.entity,
        "entity_id": command.entity_id,
        "operation": command.operation,
        "payload": command.payload,
        "before": command.before,
        "index": command.index,
    }


def reject(command: Command, reason: str, detail: str) -> DeadLetter:
    """A dead letter for a command the decider refuses (reason: short, machine-readable)."""
    return DeadLetter(
        reason=reason,
        detail=detail,
        table=command.table,
        aggregate=command.aggregate,
        aggregate_id=command.aggregate_id,
        position=command.position,
        txn_id=command.txn_id,
        record=command_record(command),
    )


def held_entries(state: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(entity, entity_id, entry) for each child held in `state`."""
    for entity, entries in (state.get(HELD) or {}).items():
        for entity_id, entry in entries.items():
            yield entity, entity_id, entry


def without_held(state: dict[str, Any], entity: str, entity_id: str) -> dict[str, Any]:
    """A copy of `state` without one held child (the runtime's expiry)."""
    held = {k: dict(v) for k, v in (state.get(HELD) or {}).items()}
    held.get(entity, {}).pop(entity_id, None)
    if entity in held and not held[entity]:
        del held[entity]
    return {**state, HELD: held}
