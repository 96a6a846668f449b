"""Lookups: event fields taken from reference tables (rental → inventory → film.title).

A table mapping names them (`lookups: {film_title: {from: inventory_id, via: [...]}}`, docs/mappings.md).
The reference tables' rows are read from the binlog (and by the snapshot, before the aggregates) and
become *lookup commands*; the apply stage keeps them in the state store, in every partition, as records
of a pseudo aggregate `\\x01<schema.table>` keyed by the key column's value, so that they are committed,
changelogged, restored and handed over exactly like aggregate state, and a replay resolves exactly what
the first run resolved. When it applies a command of a table with lookups, it follows the hops in the
store as of the end of the source transaction and adds each field to the payload (null when a row on
the way is missing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cdc_bridge.mapping.command import Command
from cdc_bridge.mapping.schema import AggregateMapping, RootMapping, TableMapping
from cdc_bridge.source.transaction import RowChange

LOOKUP_AGGREGATE = "\x01lookup"   # Command.aggregate of reference rows; broadcast to every partition
GONE = "\x00gone"                 # state of a reference row deleted at the source (records are never deleted)


def record_aggregate(table: str) -> str:
    """The pseudo aggregate under which a reference table's rows are stored."""
    return "\x01" + table


@dataclass(frozen=True)
class ReferenceTable:
    table: str
    key: str
    columns: frozenset[str]          # the key and every column some lookup takes

    @property
    def snapshot_name(self) -> str:
        """A pseudo aggregate name for the snapshot reader (PascalCase letters and digits)."""
        return "Lookup" + "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", self.table) if p)

    def snapshot_mapping(self) -> AggregateMapping:
        return AggregateMapping(aggregate=self.snapshot_name, topic=f"lookup.{self.table}",
                                root=RootMapping(table=self.table, id=[self.key], fields=sorted(self.columns)),
                                emit_snapshot_events=False)


def reference_tables(aggregates: list[AggregateMapping]) -> dict[str, ReferenceTable]:
    """Every reference table the lookups of these mappings use. A table is looked up by one key column."""
    keys: dict[str, str] = {}
    cols: dict[str, set[str]] = {}
    for agg in aggregates:
        for tm in agg.tables():
            for name, lk in tm.lookups.items():
                for step in lk.via:
                    if keys.setdefault(step.table, step.key) != step.key:
                        raise ValueError(f"{agg.aggregate} lookup {name!r}: {step.table} is looked up by "
                                         f"{keys[step.table]!r} elsewhere; a reference table has one key column")
                    cols.setdefault(step.table, {step.key}).add(step.take)
    return {t: ReferenceTable(t, keys[t], frozenset(cols[t])) for t in keys}


class LookupTranslator:
    """A reference table's row changes -> lookup commands (upsert, or delete of the old key)."""

    def __init__(self, ref: ReferenceTable) -> None:
        self.ref = ref
        self.table = ref.table
        self.aggregate = ref.snapshot_name      # snapshot chunks of this table are read under this name
        self.columns = tuple(sorted(ref.columns - {ref.key}))

    def _command(self, op: str, row: dict[str, Any], index: int, ctx: tuple) -> Command | None:
        key = row.get(self.ref.key)
        if key is None:
            return None
        position, txn_id, commit_ts = ctx[:3]
        k = str(key)
        payload = {c: row.get(c) for c in self.columns} if op == "insert" else {}
        return Command.model_construct(
            command_type="Lookup", aggregate=LOOKUP_AGGREGATE, aggregate_id=k, entity=self.table, entity_id=k,
            operation=op, payload=payload, before=None, table=self.table, position=position, txn_id=txn_id,
            commit_ts=commit_ts, index=index, soft=False)

    def translate(self, ch: RowChange, index: int, ctx: tuple, out: list[Command]) -> None:
        cmds: list[Command | None] = []
        if ch.op == "delete" and ch.before is not None:
            cmds.append(self._command("delete", ch.before, index, ctx))
        elif ch.op == "update" and ch.before is not None and ch.after is not None:
            if ch.before.get(self.ref.key) != ch.after.get(self.ref.key):
                cmds.append(self._command("delete", ch.before, index, ctx))
            cmds.append(self._command("insert", ch.after, index, ctx))
        elif ch.after is not None:   # insert, snapshot
            cmds.append(self._command("insert", ch.after, index, ctx))
        out.extend(c for c in cmds if c is not None)


def lookup_specs(aggregates: list[AggregateMapping]) -> dict[tuple[str, str], dict[str, Any]]:
    """(aggregate, entity "root" | child name) -> {field: Lookup} of tables that have lookups."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for agg in aggregates:
        for tm in agg.tables():
            if tm.lookups:
                entity = "root" if tm is agg.root else tm.name   # type: ignore[attr-defined]
                out[(agg.aggregate, entity)] = dict(tm.lookups)
    return out


def lookup_from_fields(tm: TableMapping) -> set[str]:
    return {lk.from_ for lk in tm.lookups.values()}
