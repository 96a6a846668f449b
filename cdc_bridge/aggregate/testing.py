"""Helpers to test deciders given/when/then, without MySQL or Kafka.

    src = SourceScript(mapping)                        # fabricates source transactions
    cmds, txn = src.txn(insert("root", "42", order_id=42, status="pending"),
                        insert("lines", "42", "1", line_id=1, sku="A"))
    state, decision = decide_and_evolve(decider, decider.initial_state(), cmds)

Positions grow by transaction (mysql-bin.000001, offsets 1000, 2000, ...), GTIDs are
0-1-1, 0-1-2, ..., commit times start at 2026-01-01T00:00:00Z and advance by one
second per transaction unless `at=` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdc_bridge.aggregate.decider import Decider, Decision
from cdc_bridge.mapping.command import Command
from cdc_bridge.mapping.schema import AggregateMapping
from cdc_bridge.source.position import SourcePosition

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Row:
    """One row change addressed to an aggregate (what the mapping stage turns into a Command)."""

    entity: str
    operation: str
    aggregate_id: str
    entity_id: str
    payload: dict[str, Any]
    before: dict[str, Any] | None = None
    soft: bool = False


def insert(entity: str, aggregate_id: str, entity_id: str | None = None, **fields: Any) -> Row:
    return Row(entity, "insert", aggregate_id, entity_id or aggregate_id, fields)


def update(entity: str, aggregate_id: str, entity_id: str | None = None, *, before: dict[str, Any] | None = None,
           **fields: Any) -> Row:
    return Row(entity, "update", aggregate_id, entity_id or aggregate_id, fields, before)


def delete(entity: str, aggregate_id: str, entity_id: str | None = None, **fields: Any) -> Row:
    return Row(entity, "delete", aggregate_id, entity_id or aggregate_id, fields, dict(fields))


def soft_delete(entity: str, aggregate_id: str, entity_id: str | None = None, **fields: Any) -> Row:
    """The row left the mapping's `where` (e.g. deleted_at was set): a delete with Command.soft."""
    return Row(entity, "delete", aggregate_id, entity_id or aggregate_id, fields, dict(fields), soft=True)


def snapshot(entity: str, aggregate_id: str, entity_id: str | None = None, **fields: Any) -> Row:
    return Row(entity, "snapshot", aggregate_id, entity_id or aggregate_id, fields)


@dataclass(frozen=True, slots=True)
class Txn:
    """A source transaction's identity, as AggregateRuntime.apply() needs it."""

    gtid: str | None
    commit_ts: float
    position: SourcePosition

    @property
    def txn_id(self) -> str:
        return self.gtid or f"{self.position.binlog_file}:{self.position.binlog_pos}"


class SourceScript:
    """Fabricates consecutive source transactions of commands for one or more mappings."""

    def __init__(self, *mappings: AggregateMapping, start_ts: float = T0, binlog_file: str = "mysql-bin.000001"):
        self.mappings = {m.aggregate: m for m in mappings}
        self.default = mappings[0].aggregate if mappings else None
        self.seq = 0
        self.ts = start_ts
        self.binlog_file = binlog_file

    def txn(self, *rows: Row, at: float | None = None, aggregate: str | None = None) -> tuple[list[Command], Txn]:
        self.seq += 1
        if self.seq > 1:
            self.ts += 1.0
        if at is not None:
            self.ts = at
        gtid = f"0-1-{self.seq}"
        pos = SourcePosition(gtid=gtid, binlog_file=self.binlog_file, binlog_pos=1000 * self.seq)
        txn = Txn(gtid, self.ts, pos)
        name = aggregate or self.default
        assert name is not None, "SourceScript needs a mapping"
        mapping = self.mappings[name]
        tables = {"root": mapping.root.table, **{c.name: c.table for c in mapping.children}}
        commands = [
            Command(
                command_type=f"{r.operation.title()}{mapping.aggregate}{'' if r.entity == 'root' else r.entity.title()}",
                aggregate=mapping.aggregate,
                aggregate_id=r.aggregate_id,
                entity=r.entity,
                entity_id=r.entity_id,
                operation=r.operation,  # type: ignore[arg-type]
                payload=dict(r.payload),
                before=r.before,
                table=tables.get(r.entity, "unknown.table"),
                position=pos,
                txn_id=txn.txn_id,
                commit_ts=self.ts,
                index=i,
                soft=r.soft,
            )
            for i, r in enumerate(rows)
        ]
        return commands, txn


def decide_and_evolve(decider: Decider, state: dict[str, Any], commands: list[Command]) -> tuple[dict[str, Any], Decision]:
    """decide, then evolve every draft: (state after, decision)."""
    decision = decider.decide(state, commands)
    for draft in decision.events:
        state = decider.evolve(state, draft)
    return state, decision
