"""A source transaction's commands in the packed form the binlog reader process sends.

The wire form (translate.py command_to_wire) is one tuple per command, with a payload dict: unpickled
on the bridge's main loop, handed to the compiled apply, freed a batch later, a dozen Python objects
per row that nothing looks at. The packed form groups the commands per aggregate instance, in the
order the runtime applies them (groups in order of first appearance, each in binlog order), and
packs each group into one bytes object (native/src/packed.rs: the tuples as JSON arrays, values as
the compiled apply takes them). The compiled apply reads those bytes directly
(AggregateRuntime.apply_packed); everything that needs the tuples (a Python decider, lookups, a
rejection, the commands topic, a full-image snapshot chunk) gets them back, equal item for item,
from wire().
"""

from __future__ import annotations

import os

try:
    from cdc_bridge import _native
except ImportError:   # not built: the reader sends the wire form
    _native = None  # type: ignore[assignment]

from cdc_bridge.mapping.translate import SIGNAL_AGGREGATE


def packing_available() -> bool:
    return _native is not None and hasattr(_native, "pack_txn")


def packing_wanted() -> bool:
    """The pipeline asks the reader to pack: the compiled core is built, current and on
    (CDC_BRIDGE_NATIVE_APPLY), and CDC_BRIDGE_PACKED_HANDOFF is not 0 (the wire tuples then cross as before)."""
    from cdc_bridge.aggregate import native   # (here: the aggregate package imports this module)
    return (packing_available() and native.native_available() and os.environ.get(native.ENV) != "0"
            and os.environ.get("CDC_BRIDGE_PACKED_HANDOFF") != "0")


def unpack_wire(raw: bytes) -> list[tuple]:
    """One packed group's wire tuples."""
    return _native.unpack_wire(raw)


class PackedCommands:
    """groups: [(aggregate, aggregate_id, number of commands, packed bytes)];
    counts: {(table, operation): commands} (the commands metric)."""

    __slots__ = ("groups", "counts")

    def __init__(self, groups: list[tuple[str, str, int, bytes]], counts: dict[tuple[str, str], int]) -> None:
        self.groups = groups
        self.counts = counts

    def wire(self) -> list[tuple]:
        """The commands as wire tuples, group after group (the runtime groups them the same way again)."""
        unpack = _native.unpack_wire
        out: list[tuple] = []
        for _, _, _, raw in self.groups:
            out.extend(unpack(raw))
        return out

    def to_tuple(self) -> tuple:
        """What crosses from the reader process (PackedCommands(*t) again there)."""
        return self.groups, self.counts


def pack(wire: list[tuple]) -> PackedCommands | None:
    """The packed form of one transaction's wire commands; None where it does not apply: no commands, a
    signal row (the pipeline reads those as Commands), or a value the compiled apply does not take."""
    if not wire:
        return None
    try:
        got = _native.pack_txn(wire, SIGNAL_AGGREGATE)   # grouped, sorted and counted as described above
    except _native.Unsupported:
        return None
    return None if got is None else PackedCommands(*got)
