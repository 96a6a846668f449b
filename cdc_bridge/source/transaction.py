"""What the source hands to the rest of the pipeline: committed transactions of row changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cdc_bridge.source.position import SourcePosition

Operation = Literal["insert", "update", "delete", "snapshot"]


@dataclass(slots=True)
class RowChange:
    """One row of one row event, values already normalized (see docs/types.md).

    table:  "schema.table"
    before: column -> value before the change (update, delete), else None
    after:  column -> value after the change (insert, update, snapshot), else None
    zero_dates: columns whose value is None because the server holds a zero or partly
            zero date there ('0000-00-00', '2024-00-10', TIMESTAMP 0, YEAR 0000) rather
            than NULL: in `after` (insert, update, snapshot) or `before` (delete).
            None when there is none (the usual case).
    """

    table: str
    op: Operation
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    zero_dates: list[str] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class TableShape:
    """A table as the change stream (ingest/change_stream.py) describes it; only built for its tables.

    columns:     the columns in table order: values.ColumnSpec (binlog) or snapshot.SnapshotColumn (snapshot)
    primary_key: its columns in the index's order (empty: no primary key)
    info:        column -> (nullable, COLUMN_DEFAULT, DATA_TYPE) from information_schema, for what the
                 binlog does not say (POINT among the spatial types, zero dates of NOT NULL columns)
    """

    table: str
    columns: tuple[Any, ...]
    primary_key: tuple[str, ...]
    info: dict[str, tuple[bool, str | None, str]]


@dataclass(slots=True)
class RowEvents:
    """Where the row changes of a transaction were in the binlog (BinlogSource(describe=...) only).

    thread: the writer's connection id (the BEGIN query of MySQL; MariaDB's binlog has none), or None
    events: per row event of a described table: (index of its first row change in `changes`, index after
            its last, its TableShape, the event's start offset in the binlog file, its timestamp, server_id)
    """

    thread: int | None
    events: list[tuple[int, int, TableShape, int, int, int]]


@dataclass(slots=True)
class SourceTransaction:
    """A committed source transaction (BEGIN ... XID/COMMIT) and where it ends.

    gtid:      this transaction's own GTID ("0-1-42" on MariaDB, "uuid:42" on MySQL), or None
    commit_ts: commit time, seconds since the epoch (UTC), from the binlog event header
    position:  the resume position just after this transaction's commit
    changes:   the row changes of the mapped tables, in binlog order
    """

    gtid: str | None
    commit_ts: float
    position: SourcePosition
    changes: list[RowChange] = field(default_factory=list)
    # Commands already translated (a replay of the command log, a snapshot chunk): the mapping
    # stage is skipped; dead_letters are the ones that translation produced (kept with the
    # transaction so that applying it again, after a Kafka abort, publishes them again).
    commands: list[Any] | None = None
    dead_letters: list[Any] | None = None
    # The commands as the reader process sends them (mapping/translate.py command_to_wire's tuples; their
    # position, txn_id and commit_ts are this transaction's): the pipeline's form, no Command objects.
    wire: list[tuple] | None = None
    # ... or in their packed form (mapping/packed.py PackedCommands), where the reader could pack them:
    # the compiled apply reads that; wire is made from it for whatever needs the tuples
    packed: Any = None
    # Row changes per table when `changes` were translated in the reader process and not
    # carried over (commands/dead_letters hold the translation); None: count `changes`.
    row_counts: dict[str, int] | None = None
    # Snapshot directives for the apply stage (they travel with the transaction so that a redo after
    # a Kafka abort, or a worker reading the commands topic, applies them the same way):
    # full_image: a chunk read over existing state, each root with ALL its children (what the state
    # knows beyond it was deleted); sweep_from: no commands, delete the aggregates the snapshot that
    # began at this position did not see.
    full_image: bool = False
    sweep_from: SourcePosition | None = None
    # a snapshot chunk read for ONE aggregate: its rows are translated for that aggregate only (a table
    # mapped by several aggregates is read once per aggregate)
    snapshot_of: str | None = None
    # the change stream: where the row changes were in the binlog (set by a BinlogSource asked to describe
    # tables), and the change records built from them (topic, key, value, partition, headers), built once
    # so that applying the transaction again (a Kafka abort's redo) publishes the same records
    row_events: RowEvents | None = None
    change_records: list[tuple] | None = None

    def rows_by_table(self) -> dict[str, int]:
        """Row changes of this transaction per table (mapped tables only)."""
        if self.row_counts is not None:
            return self.row_counts
        counts: dict[str, int] = {}
        for ch in self.changes:
            counts[ch.table] = counts.get(ch.table, 0) + 1
        return counts

    @property
    def row_count(self) -> int:
        return sum(self.row_counts.values()) if self.row_counts is not None else len(self.changes)

    @property
    def txn_id(self) -> str:
        """A stable id of the transaction: its GTID, else file:offset of its end."""
        return self.gtid or f"{self.position.binlog_file}:{self.position.binlog_pos}"
