"""Ad-hoc re-snapshot of chosen aggregates while the bridge runs (`cdc-bridge snapshot --aggregate A --id X`).

For repairs after changes the binlog does not show (foreign-key cascades, a restored backup of some
rows). The request travels through the binlog, so it is ordered exactly among the row changes:

1. the CLI, in ONE source transaction, reads the aggregates' rows (root by id, children by parent key)
   with LOCK IN SHARE MODE, which keeps every other writer off those rows (next-key locks keep new
   children out too) until it commits, and inserts one row into the signal table (source.signal_table)
   carrying them as JSON;
2. the bridge reads that insert in binlog order; what it carries is exactly the database's state of
   those aggregates at that point. It applies them as a full-image snapshot chunk (apply/applier.py):
   only differences are published (children added, changed or removed, root updates), and an id whose
   root row no longer exists gets its deleted event.

Nothing is kept in memory between two row events, so a crash and the replay of the binlog (or of the
commands topic by the workers) applies the same request the same way.

Signal table (create it once; the bridge's user needs SELECT, the CLI's user INSERT too):

    CREATE TABLE shop.cdc_bridge_signal (
      id         BIGINT AUTO_INCREMENT PRIMARY KEY,
      bridge     VARCHAR(100) NOT NULL,
      aggregate  VARCHAR(100) NOT NULL,
      ids        LONGTEXT NOT NULL,
      rows_json  LONGTEXT NOT NULL,
      created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    ) ENGINE=InnoDB;
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from cdc_bridge.config import BridgeConfig
from cdc_bridge.mapping.command import Command
from cdc_bridge.mapping.loader import MappingSet
from cdc_bridge.mapping.translate import SIGNAL_AGGREGATE, commands_from_wire
from cdc_bridge.source.transaction import RowChange, SourceTransaction

log = structlog.get_logger(__name__)


class ResnapshotError(Exception):
    exit_code = 64


def split_signals(wire: list[tuple], txn: SourceTransaction, enabled: bool = True
                  ) -> tuple[list[tuple], list[Command]]:
    """(the commands in their wire form, the signal commands among them as Commands); enabled False (no
    signal table): no scan."""
    if not enabled or not any(w[1] == SIGNAL_AGGREGATE for w in wire):
        return wire, []
    return ([w for w in wire if w[1] != SIGNAL_AGGREGATE],
            commands_from_wire([w for w in wire if w[1] == SIGNAL_AGGREGATE], txn.position, txn.txn_id, txn.commit_ts))


def transactions_of(signal: Command, bridge: str, mappings: MappingSet, txn: SourceTransaction
                    ) -> list[SourceTransaction]:
    """The source transactions a signal row stands for: a full-image chunk of the aggregates read, then the
    deletes of requested ids whose root no longer exists. [] for another bridge's request."""
    row = signal.payload
    if row.get("bridge") != bridge:
        return []
    aggregate = str(row.get("aggregate"))
    try:
        agg = mappings.aggregate(aggregate)
        ids = [str(i) for i in json.loads(row.get("ids") or "[]")]
        rows = json.loads(row.get("rows_json") or "[]")
    except (KeyError, ValueError) as e:
        log.error("re-snapshot request ignored: it cannot be read", signal_id=signal.entity_id, error=str(e))
        return []
    changes = [RowChange(r["table"], "snapshot", None, r["after"], r.get("zero_dates")) for r in rows]
    out = [SourceTransaction(gtid=txn.gtid, commit_ts=txn.commit_ts, position=txn.position, changes=changes,
                             full_image=True, snapshot_of=aggregate)]
    found = {c.aggregate_id for c in mappings.translate(out[0])[0] if c.entity == "root"}
    gone = [i for i in ids if i not in found]
    if gone:
        deletes = [Command.model_construct(
            command_type=agg.command_type(agg.root, "delete"), aggregate=aggregate, aggregate_id=i, entity="root",
            entity_id=i, operation="delete", payload={}, before=None, table=agg.root.table, position=txn.position,
            txn_id=txn.txn_id, commit_ts=txn.commit_ts, index=n, soft=False) for n, i in enumerate(gone)]
        out.append(SourceTransaction(gtid=txn.gtid, commit_ts=txn.commit_ts, position=txn.position, commands=deletes,
                                     dead_letters=[]))
    log.info("re-snapshot applied", aggregate=aggregate, ids=ids, rows=len(changes), gone=gone,
             signal_id=signal.entity_id)
    return out


def request(config: BridgeConfig, mappings: MappingSet, aggregate: str, ids: list[str]) -> dict[str, Any]:
    """The CLI side: read the aggregates under share locks and insert the signal row, in one transaction."""
    import pymysql

    from cdc_bridge.source.snapshot import SnapshotReader

    table = config.source.signal_table
    if not table:
        raise ResnapshotError("source.signal_table is not set: create the signal table (docs/mappings.md, "
                              "'Cascades and triggers') and name it in the configuration, then restart the bridge")
    names = [a.aggregate for a in mappings.aggregates]
    if aggregate not in names:
        raise ResnapshotError(f"no aggregate {aggregate!r} in {config.mappings_dir} (aggregates: {', '.join(names)})")
    schema, name = table.split(".", 1)
    conn = pymysql.connect(**config.source.connection_kwargs(autocommit=False))
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION character_set_results = NULL")
            cur.execute("BEGIN")
        reader = SnapshotReader(config.source, [mappings.aggregate(aggregate)])
        changes = reader.read_locked(conn, aggregate, ids)
        rows = [{"table": c.table, "after": c.after, "zero_dates": c.zero_dates} for c in changes]
        with conn.cursor() as cur:
            cur.execute("SET SESSION character_set_results = utf8mb4")
            cur.execute(f"INSERT INTO `{schema}`.`{name}` (bridge, aggregate, ids, rows_json) VALUES (%s, %s, %s, %s)",
                        (config.name, aggregate, json.dumps(ids), json.dumps(rows, ensure_ascii=False)))
            signal_id = cur.lastrowid
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
    return {"signal_id": signal_id, "aggregate": aggregate, "ids": ids, "rows": len(rows)}
