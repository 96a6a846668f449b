"""The apply stage's logic: commands of a source transaction -> events and dead letters over the state.

The embedded bridge and the aggregate workers run this same code; only where the commands come
from (the binlog in this process, or the commands topic) and how the result is committed differ.
Besides the runtime's decide/evolve (aggregate/runtime.py) it does the two parts of a snapshot
that need the state, so that ingest never has to read it:

- a chunk read over existing state (`full_image`) carries each root with ALL its children:
  children the state knows but the chunk lacks were deleted meanwhile and get a delete command;
  children without their root in the chunk mean the root is now filtered out by the mapping's
  `where`, and the root gets a delete command;
- the sweep at the end of such a snapshot: aggregates the snapshot did not see no longer exist.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog

from cdc_bridge.aggregate.router import partition_for
from cdc_bridge.aggregate.runtime import AggregateRuntime, ApplyResult, TxnInfo
from cdc_bridge.mapping.command import Command, DeadLetter
from cdc_bridge.mapping.loader import MappingSet
from cdc_bridge.mapping.packed import PackedCommands
from cdc_bridge.mapping.translate import commands_from_wire
from cdc_bridge.mapping.lookups import GONE, LOOKUP_AGGREGATE, lookup_specs, record_aggregate
from cdc_bridge.state.record import AggregateRecord
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.transaction import SourceTransaction

log = structlog.get_logger(__name__)


class TransactionApplier:
    """Applies source transactions (or their part for some partitions) to aggregates in a state store."""

    def __init__(self, runtime: AggregateRuntime, mappings: MappingSet) -> None:
        self.runtime = runtime
        self.mappings = mappings
        self.partitions = runtime.partitions
        self._lookups = lookup_specs(mappings.aggregates)
        self._references = bool(mappings.references)   # no lookups: no scan of the commands per transaction

    def apply(self, txn: TxnInfo, commands: list[Command], *, full_image: bool = False,
              partitions: Collection[int] | None = None) -> ApplyResult:
        """partitions: where held children may expire at this transaction's time (None: all; a worker
        passes the record's partition), and where reference rows of lookups are kept."""
        if self._references and any(c.aggregate == LOOKUP_AGGREGATE for c in commands):
            self._store_references([c for c in commands if c.aggregate == LOOKUP_AGGREGATE], txn, partitions)
            commands = [c for c in commands if c.aggregate != LOOKUP_AGGREGATE]
        if self._lookups:
            commands = [self._enrich(c) if (c.aggregate, c.entity) in self._lookups else c for c in commands]
        if full_image:
            commands = commands + self._removed_children(commands)
        return self.runtime.apply(commands, txn, partitions)

    def apply_wire(self, txn: TxnInfo, wire: list[tuple], *, full_image: bool = False,
                   partitions: Collection[int] | None = None) -> ApplyResult:
        """apply() of the transaction's commands in their wire form (mapping/translate.py command_to_wire;
        all of them at txn's position): straight to the runtime unless lookups or a full-image snapshot
        chunk need them as Commands."""
        if full_image or self._lookups or (self._references and any(w[1] == LOOKUP_AGGREGATE for w in wire)):
            return self.apply(txn, commands_from_wire(wire, txn.position, txn.txn_id, txn.commit_ts),
                              full_image=full_image, partitions=partitions)
        return self.runtime.apply_wire(wire, txn, partitions)

    def apply_packed(self, txn: TxnInfo, packed: PackedCommands, *, full_image: bool = False,
                     partitions: Collection[int] | None = None) -> ApplyResult:
        """apply_wire() of the commands in their packed form (mapping/packed.py): straight to the runtime
        unless something here needs the tuples."""
        if full_image or self._lookups or self._references:
            return self.apply_wire(txn, packed.wire(), full_image=full_image, partitions=partitions)
        return self.runtime.apply_packed(packed.groups, txn, partitions)

    # ------------------------------------------------------------------ lookups (mapping/lookups.py)

    def _store_references(self, commands: list[Command], txn: TxnInfo, partitions: Collection[int] | None) -> None:
        """Reference rows into every partition given (a deleted row stays as a record marked gone: the
        changelog never carries tombstones)."""
        store = self.runtime.store
        for p in (range(self.partitions) if partitions is None else partitions):
            for c in commands:
                state = dict(c.payload) if c.operation == "insert" else {GONE: True}
                store.put(p, AggregateRecord(record_aggregate(c.entity), c.entity_id, state,
                                             last_position=txn.position))

    def _enrich(self, c: Command) -> Command:
        """The command's payload plus its table's lookup fields, resolved in the store now (the reference
        rows as of the end of this source transaction): null where a row on the way is missing."""
        store = self.runtime.store
        p = partition_for(c.aggregate_id, self.partitions)
        extra: dict[str, Any] = {}
        for name, lk in self._lookups[(c.aggregate, c.entity)].items():
            value = (c.payload or {}).get(lk.from_)
            for step in lk.via:
                if value is None:
                    break
                rec = store.get(p, record_aggregate(step.table), str(value))
                state = rec.state if rec is not None else None
                value = None if not state or GONE in state else state.get(step.take)
            extra[name] = value
        update: dict[str, Any] = {"payload": {**c.payload, **extra}}
        if c.operation == "delete":   # a delete's payload is its before image
            update["before"] = {**(c.before or c.payload), **extra}
        return c.model_copy(update=update)

    def expire(self, commit_ts: float, partitions: Collection[int]) -> list[DeadLetter]:
        """Held children of `partitions` due at source time commit_ts (a watermark of the commands topic)."""
        return self.runtime.expire_held(commit_ts, partitions)

    def sweep(self, stream_from: SourcePosition, view: SourcePosition, ts: float,
              partitions: Collection[int] | None = None) -> ApplyResult:
        """Aggregates of `partitions` (default all) that the snapshot did not see no longer exist: delete
        them. Reads the committed state: the caller commits the snapshot's chunks first."""
        store = self.runtime.store
        roots = {m.aggregate: m.root.table for m in self.mappings.aggregates}
        commands: list[Command] = []
        for p in (range(self.partitions) if partitions is None else sorted(partitions)):
            for rec in store.records(p):
                gone = rec.last_position is None or rec.last_position < stream_from
                if gone and rec.aggregate in roots and isinstance(rec.state, dict) and rec.state.get("exists"):
                    commands.append(Command.model_construct(
                        command_type=f"Delete{rec.aggregate}", aggregate=rec.aggregate, aggregate_id=rec.aggregate_id,
                        entity="root", entity_id=rec.aggregate_id, operation="delete", payload={}, before=None,
                        table=roots[rec.aggregate], position=view, txn_id=f"snapshot-sweep:{view}",
                        commit_ts=ts, index=len(commands), soft=False))
        if commands:
            log.warning("snapshot sweep: aggregates that no longer exist in the database", count=len(commands))
        txn = SourceTransaction(gtid=view.gtid, commit_ts=ts, position=view, changes=[])
        return self.runtime.apply(commands, txn, partitions)

    def _removed_children(self, commands: list[Command]) -> list[Command]:
        """Delete commands for what a full-image snapshot chunk no longer shows (see the module doc)."""
        store = self.runtime.store
        partitions = self.partitions
        seen = {(c.aggregate, c.aggregate_id, c.entity, c.entity_id) for c in commands}
        extra: list[Command] = []
        roots_seen = {(c.aggregate, c.aggregate_id) for c in commands if c.entity == "root"}
        for c in commands:
            key = (c.aggregate, c.aggregate_id)
            if c.entity == "root" or key in roots_seen:
                continue
            roots_seen.add(key)
            rec = store.get(partition_for(c.aggregate_id, partitions), *key)
            if rec is not None and isinstance(rec.state, dict) and rec.state.get("exists"):
                extra.append(c.model_copy(update={
                    "entity": "root", "entity_id": c.aggregate_id, "operation": "delete", "payload": {},
                    "before": None, "table": self.mappings.aggregate(c.aggregate).root.table,
                    "command_type": f"Delete{c.aggregate}", "index": -1}))
        for root in [c for c in commands if c.entity == "root"]:
            rec = store.get(partition_for(root.aggregate_id, partitions), root.aggregate, root.aggregate_id)
            state: dict[str, Any] = rec.state if rec is not None and isinstance(rec.state, dict) else {}
            if not state.get("exists"):
                continue
            tables = {c.name: c.table for c in self.mappings.aggregate(root.aggregate).children}
            for name, coll in (state.get("children") or {}).items():
                for cid, fields in (coll or {}).items():
                    if name in tables and (root.aggregate, root.aggregate_id, name, cid) not in seen:
                        extra.append(root.model_copy(update={
                            "entity": name, "entity_id": cid, "operation": "delete", "payload": dict(fields),
                            "before": dict(fields), "table": tables[name], "command_type": f"Remove{name}",
                            "index": len(commands) + len(extra)}))
        return extra
