"""JSON Schemas (draft 2020-12) of the Debezium-compatible change stream (docs/events.md): the record value
and key of each streamed table, as the bridge writes them (ingest/change_stream.py, with the column
encodings of ingest/debezium_types.py).

With the database's columns (`--config` without `--offline`), `before` / `after` list every column with
the JSON type of its Debezium encoding (DATETIME: epoch ms or µs, DATE: days, TIME: µs, DECIMAL: a string
or a number per change_stream.decimal_handling, BIT(1): a boolean, BLOBs and BIT(n): base64 ...), NOT NULL
columns without null; and the key lists the primary key's columns. Offline they are open objects. A column
added later appears in the records before the schemas are written again: rows stay open to extra columns.
"""

from __future__ import annotations

from typing import Any

from cdc_bridge.config import BridgeConfig
from cdc_bridge.contracts.event_schemas import DECIMAL, DRAFT, nullable

OPEN: dict[str, Any] = {"type": "object"}

# the JSON type of each encoding kind (debezium_types.kind_of); "decimal" depends on decimal_handling
_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    "bool_int": {"type": "integer"}, "int": {"type": "integer"}, "uint64": {"type": "integer"},
    "year": {"type": "integer"},
    "float": {"type": "number"},
    "date": {"type": "integer", "description": "io.debezium.time.Date: days since 1970-01-01"},
    "datetime_ms": {"type": "integer", "description": "io.debezium.time.Timestamp: ms since the epoch (UTC)"},
    "datetime_us": {"type": "integer", "description": "io.debezium.time.MicroTimestamp: µs since the epoch (UTC)"},
    "time": {"type": "integer", "description": "io.debezium.time.MicroTime: µs"},
    "timestamp": {"type": "string", "description": "io.debezium.time.ZonedTimestamp: ISO-8601, UTC"},
    "text": {"type": "string"}, "enum": {"type": "string"},
    "set": {"type": "string", "description": "the set's members, comma-separated"},
    "json": {"type": "string", "description": "io.debezium.data.Json: the document as text"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "bits": {"type": "string", "contentEncoding": "base64", "description": "io.debezium.data.Bits, little-endian"},
    "bit1": {"type": "boolean"},
    "geometry": {"type": "object", "properties": {"wkb": {"type": "string", "contentEncoding": "base64"},
                                                  "srid": {"type": ["integer", "null"]}}, "required": ["wkb", "srid"]},
    "point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"},
                                               "wkb": {"type": "string", "contentEncoding": "base64"},
                                               "srid": {"type": ["integer", "null"]}},
              "required": ["x", "y", "wkb", "srid"]},
}

SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "version": {"type": "string"}, "connector": {"enum": ["mysql", "mariadb"]}, "name": {"type": "string"},
        "ts_ms": {"type": "integer"}, "ts_us": {"type": "integer"}, "ts_ns": {"type": "integer"},
        # the bridge writes first / true / last / false; Debezium also first_in_data_collection, ...
        "snapshot": {"enum": ["true", "first", "first_in_data_collection", "last_in_data_collection", "last", "false",
                              "incremental"]},
        "db": {"type": "string"},
        "sequence": {"type": "null"}, "table": {"type": ["string", "null"]}, "server_id": {"type": "integer"},
        "gtid": {"type": ["string", "null"]}, "file": {"type": "string"}, "pos": {"type": "integer"},
        "row": {"type": "integer"}, "thread": {"type": ["integer", "null"]}, "query": {"type": ["string", "null"]},
    },
    "required": ["version", "connector", "name", "ts_ms", "snapshot", "db", "table", "server_id", "gtid", "file",
                 "pos", "row"],
}

TRANSACTION_BLOCK: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {"id": {"type": "string"}, "total_order": {"type": "integer"},
                   "data_collection_order": {"type": "integer"}},
    "required": ["id", "total_order", "data_collection_order"],
}

TRANSACTION_SCHEMA: dict[str, Any] = {
    "$schema": DRAFT,
    "title": "transaction boundary (BEGIN / END)",
    "type": "object",
    "properties": {
        "status": {"enum": ["BEGIN", "END"]}, "id": {"type": "string"},
        "event_count": {"type": ["integer", "null"]},
        "data_collections": {"type": ["array", "null"], "items": {
            "type": "object", "properties": {"data_collection": {"type": "string"}, "event_count": {"type": "integer"}},
            "required": ["data_collection", "event_count"]}},
        "ts_ms": {"type": "integer"},
    },
    "required": ["status", "id", "event_count", "data_collections", "ts_ms"],
}


def column_schema(kind: str, decimal: str, is_nullable: bool) -> dict[str, Any]:
    if kind == "decimal":
        schema = {"type": "number"} if decimal == "double" else DECIMAL
    else:
        schema = _KIND_SCHEMAS.get(kind, {})
    return nullable(schema) if is_nullable and schema else schema


def row_schema(columns: list[tuple[str, str, bool]] | None, decimal: str) -> dict[str, Any]:
    """columns: (name, kind, nullable) in table order; None: unknown (an open object)."""
    if columns is None:
        return OPEN
    return {"type": "object", "properties": {name: column_schema(kind, decimal, n) for name, kind, n in columns},
            "required": [name for name, _, _ in columns]}


def change_value_schema(table: str, columns: list[tuple[str, str, bool]] | None, decimal: str) -> dict[str, Any]:
    """The record value of a change of `table`: Debezium's envelope, or null (a tombstone after a delete)."""
    row = row_schema(columns, decimal)
    return {
        "$schema": DRAFT,
        "title": f"{table} change event",
        "description": "Debezium's change event envelope (JSON converter, no schemas); a null value is the "
                       "tombstone that follows a delete (change_stream.tombstones_on_delete)",
        "anyOf": [{
            "type": "object",
            "properties": {
                "before": {"anyOf": [row, {"type": "null"}]}, "after": {"anyOf": [row, {"type": "null"}]},
                "source": SOURCE_SCHEMA, "transaction": TRANSACTION_BLOCK,
                "op": {"enum": ["c", "u", "d", "r"]},
                "ts_ms": {"type": "integer"}, "ts_us": {"type": "integer"}, "ts_ns": {"type": "integer"},
            },
            "required": ["before", "after", "source", "op", "ts_ms"],
        }, {"type": "null"}],
    }


def change_key_schema(table: str, key: list[tuple[str, str, bool]] | None, decimal: str) -> dict[str, Any]:
    """The record key: the primary key's columns (null for a table without one)."""
    if key is None:
        obj: dict[str, Any] = OPEN
    else:
        obj = {"type": "object", "properties": {n: column_schema(k, decimal, False) for n, k, _ in key},
               "required": [n for n, _, _ in key], "additionalProperties": False}
    return {"$schema": DRAFT, "title": f"{table} change event key", "anyOf": [obj, {"type": "null"}]}


def change_schemas(config: BridgeConfig, tables: frozenset[str], conn: dict[str, Any] | None) -> dict[str, Any]:
    """table -> {"topic", "key", "value"} for every streamed table, and "transaction" -> the transaction
    topic's (when change_stream.transaction_topic); live column types when conn is given."""
    from cdc_bridge.ingest.change_stream import topic_prefix

    prefix, decimal = topic_prefix(config), config.change_stream.decimal_handling
    columns = load_change_columns(conn, tables) if conn is not None else {}
    out: dict[str, Any] = {}
    for table in sorted(tables):
        cols, key = columns.get(table, (None, None))
        out[table] = {"topic": f"{prefix}.{table}", "key": change_key_schema(table, key, decimal),
                      "value": change_value_schema(table, cols, decimal)}
    if config.change_stream.transaction_topic:
        out["transaction"] = {"topic": f"{prefix}.transaction",
                              "key": {"$schema": DRAFT, "type": "object", "properties": {"id": {"type": "string"}},
                                      "required": ["id"]},
                              "value": TRANSACTION_SCHEMA}
    return out


def load_change_columns(conn_settings: dict[str, Any], tables: frozenset[str]
                        ) -> dict[str, tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]] | None]]:
    """table -> (its columns, its primary key's columns or None) as (name, encoding kind, nullable), read from
    information_schema the way the snapshot reads them (so the kinds are the ones the records are encoded by)."""
    import pymysql

    from cdc_bridge.ingest.debezium_types import kind_of
    from cdc_bridge.source.snapshot import SnapshotColumn, mariadb_json_columns

    conn = pymysql.connect(connect_timeout=5, charset="utf8mb4", cursorclass=pymysql.cursors.DictCursor,
                           **conn_settings)
    out: dict[str, Any] = {}
    try:
        json_columns = mariadb_json_columns(conn, tables)
        with conn.cursor() as cur:
            for table in sorted(tables):
                schema, name = table.split(".", 1)
                cur.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, "
                            "DATETIME_PRECISION, CHARACTER_SET_NAME, CHARACTER_OCTET_LENGTH, COLUMN_DEFAULT "
                            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                            "ORDER BY ORDINAL_POSITION", (schema, name))
                rows = cur.fetchall()
                if not rows:
                    continue   # not there (yet): its schemas stay open
                cols = []
                for r in rows:
                    c = SnapshotColumn.from_information_schema(r, json_columns.get(table, set()))
                    cols.append((c.name, kind_of(c)[0], c.nullable))
                cur.execute("SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND "
                            "TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX", (schema, name))
                pk = [str(r["COLUMN_NAME"]) for r in cur.fetchall()]
                by_name = {c[0]: c for c in cols}
                out[table] = (cols, [by_name[p] for p in pk if p in by_name] or None)
    finally:
        conn.close()
    return out
