"""JSON Schema (draft 2020-12) of every event type of every aggregate, derived from the mappings.

What a field can hold comes from its `type:` (docs/mappings.md, types and coercion) or, for `auto`,
from the column's type in the database (docs/types.md): with a database connection (`--config`)
every auto field gets its JSON type; without one it is left open (any JSON value). Nullable
columns, optional fields and every field offline also accept null.

One schema per event type: the envelope (docs/events.md) with `event_type`, `aggregate` and
`schema_version` fixed, and `data` as the declarative decider builds it: created / snapshotted /
deleted carry the root's fields and each child collection as a list; updated and transition events
add `changes` ({field: {from, to}}); child events carry the child's fields and the root context
(`<aggregate_snake>`: the enrich fields), changed ones their `changes` too. An aggregate with a
Python decider gets one open schema (its events are the decider's business).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cdc_bridge.aggregate.declarative import DeclarativeDecider
from cdc_bridge.mapping.loader import MappingSet
from cdc_bridge.mapping.schema import AggregateMapping, TableMapping
from cdc_bridge.source.snapshot import enum_members as _enum_members, is_json_text, mariadb_json_columns

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ANY: dict[str, Any] = {}
DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}

_INTS = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year", "bit"}
_TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "time", "uuid", "inet4", "inet6"}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point", "linestring",
           "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection"}


@dataclass
class Column:
    """What the schema needs of a database column (information_schema.COLUMNS)."""

    data_type: str
    column_type: str
    nullable: bool


@dataclass
class SchemaSet:
    """Event schemas by aggregate and event type, plus where each aggregate publishes."""

    events: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)   # aggregate -> type -> schema
    topics: dict[str, str] = field(default_factory=dict)                         # aggregate -> events topic
    live: bool = False
    # aggregates whose deleted events may be followed by a Kafka tombstone (tombstone_on_delete, or a Python
    # decider: its drafts ask for one with meta tombstone)
    tombstones: set[str] = field(default_factory=set)
    # the change stream's (change_schemas.py): table | "transaction" -> {"topic", "key", "value"}
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if not schema:
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def column_schema(col: Column) -> dict[str, Any]:
    """The JSON a column's value becomes (docs/types.md), without `type:`."""
    dt, ct = col.data_type, col.column_type
    if dt == "tinyint" and ct.lower().startswith("tinyint(1)"):
        s: dict[str, Any] = {"type": "boolean"}
    elif dt in _INTS:
        s = {"type": "integer"}
    elif dt == "decimal":
        s = dict(DECIMAL)
    elif dt in ("float", "double", "real"):
        s = {"type": "number"}
    elif dt == "enum":
        # "": the invalid-value index 0 (an out-of-range value written in non-strict mode, docs/types.md)
        s = {"type": "string", "enum": ["", *(m for m in enum_members(ct) if m != "")]}
    elif dt == "set":
        s = {"type": "array", "items": {"type": "string"}}
    elif dt == "json":
        s = dict(ANY)
    elif dt == "date":
        s = {"type": "string", "format": "date"}
    elif dt in ("datetime", "timestamp"):
        s = {"type": "string"}
    elif dt in _TEXT:
        s = {"type": "string"}
    elif dt in _BINARY:
        s = {"type": "string", "contentEncoding": "base64"}
    else:
        s = dict(ANY)
    # zero dates become null too (docs/types.md)
    return nullable(s) if col.nullable or dt in ("date", "datetime", "timestamp") else s


def enum_members(column_type: str) -> list[str]:
    """The members of an ENUM/SET COLUMN_TYPE, unescaped (source/snapshot.py's parser: one for both)."""
    return list(_enum_members(column_type))


_TYPED = {
    "str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"}, "decimal": DECIMAL,
    "bool": {"type": "boolean"}, "datetime": {"type": "string"}, "date": {"type": "string", "format": "date"},
    "json": ANY, "wkt": {"type": "string"},
    "geojson": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
}


def table_fields(tm: TableMapping, columns: dict[str, Column] | None) -> tuple[dict[str, Any], bool]:
    """({field name: schema}, open): open when the fields cannot be known (fields '*' offline)."""
    plan = tm.field_plan()
    if plan is None:
        if columns is None:
            return {}, True
        return {c: column_schema(col) for c, col in columns.items() if c not in tm.exclude}, False
    optional = tm.optional_columns()
    out: dict[str, Any] = {}
    for col, name, typ in plan:
        c = (columns or {}).get(col)
        if typ == "auto":
            s = column_schema(c) if c is not None else dict(ANY)
            if col in optional and s and "anyOf" not in s:
                s = nullable(s)
        else:
            s = dict(_TYPED[typ])
            # offline every field may be null; zero dates become null
            if columns is None or c is None or c.nullable or col in optional or typ in ("datetime", "date"):
                s = nullable(s)
        out[name] = s
    for name in tm.lookups:   # a value of a reference table, null when a row on the way is missing
        out[name] = dict(ANY)
    return out, False


def _object(props: dict[str, Any], open_: bool, required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": sorted(props) if required is None else required,
            "additionalProperties": open_}


def _changes(props: dict[str, Any], open_: bool) -> dict[str, Any]:
    # from may be null for a field the state did not have yet (the mapping grew)
    per = {n: {"type": "object", "properties": {"from": nullable(s), "to": s}, "required": ["from", "to"],
               "additionalProperties": False} for n, s in props.items()}
    return {"type": "object", "properties": per, "additionalProperties": open_, "minProperties": 1}


def envelope(agg: AggregateMapping, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": DRAFT,
        "$id": f"{agg.aggregate}/{event_type}.json",
        "title": f"{event_type} ({agg.aggregate} events on {agg.events_topic})",
        "type": "object",
        "properties": {
            "event_id": {"type": "string", "pattern": f"^{re.escape(agg.aggregate)}:.+:[1-9][0-9]*$"},
            "event_type": {"const": event_type},
            "aggregate": {"const": agg.aggregate},
            "aggregate_id": {"type": "string"},
            "sequence": {"type": "integer", "minimum": 1},
            "schema_version": {"const": agg.schema_version},
            "occurred_at": {"type": "string", "format": "date-time"},
            "source": {
                "type": "object",
                "properties": {"table": {"type": "string"}, "gtid": {"type": ["string", "null"]},
                               "binlog_file": {"type": "string"}, "binlog_pos": {"type": "integer"},
                               "txn_id": {"type": "string"}},
                "required": ["table", "gtid", "binlog_file", "binlog_pos", "txn_id"],
                "additionalProperties": False,
            },
            "data": data,
        },
        "required": ["event_id", "event_type", "aggregate", "aggregate_id", "sequence", "schema_version",
                     "occurred_at", "source", "data"],
        "additionalProperties": False,
    }


def aggregate_schemas(agg: AggregateMapping, tables: dict[str, dict[str, Column]] | None) -> dict[str, dict[str, Any]]:
    """{event type: schema} of one aggregate. tables: schema.table -> columns (None: offline)."""
    def cols(tm: TableMapping) -> dict[str, Column] | None:
        return None if tables is None else tables.get(tm.table, {})

    if agg.decider:   # a Python decider decides its own events: the envelope only
        open_schema = envelope(agg, "*", ANY)
        open_schema["properties"]["event_type"] = {"type": "string"}
        return {"*": open_schema}
    d = DeclarativeDecider(agg)
    root, root_open = table_fields(agg.root, cols(agg.root))
    children: dict[str, tuple[dict[str, Any], bool, Any]] = {}
    for child in agg.children:
        props, open_ = table_fields(child, cols(child))
        children[child.name] = (props, open_, d.children[child.name])
    full = dict(root)
    for name, (props, open_, _) in children.items():
        full[name] = {"type": "array", "items": _object(props, open_, [] if open_ else None)}
    full_data = _object(full, root_open, None if not root_open else list(children))
    out: dict[str, dict[str, Any]] = {d.created: envelope(agg, d.created, full_data),
                                      d.deleted: envelope(agg, d.deleted, full_data)}
    if d.emit_snapshot_events:
        out[d.snapshotted] = envelope(agg, d.snapshotted, full_data)
    updated = _object({**root, "changes": _changes(root, root_open)}, root_open,
                      None if not root_open else ["changes"])
    for name in [d.updated, *(t.event for t in d.transitions)]:
        out[name] = envelope(agg, name, updated)
    for name, (props, open_, rules) in children.items():
        context = _object({f: root.get(f, ANY) for f in rules.enrich}, root_open)
        base = {**props, d.context_key: context}
        req = None if not open_ else [d.context_key]
        out[rules.added] = envelope(agg, rules.added, _object(base, open_, req))
        out[rules.removed] = envelope(agg, rules.removed, _object(base, open_, req))
        changed = {**base, "changes": _changes(props, open_)}
        out[rules.changed] = envelope(agg, rules.changed, _object(changed, open_, None if not open_ else
                                                                  [d.context_key, "changes"]))
    return out


def schema_set(mappings: MappingSet, tables: dict[str, dict[str, Column]] | None = None) -> SchemaSet:
    out = SchemaSet(live=tables is not None)
    for agg in mappings.aggregates:
        out.events[agg.aggregate] = aggregate_schemas(agg, tables)
        out.topics[agg.aggregate] = agg.events_topic
        if agg.tombstone_on_delete or agg.decider:
            out.tombstones.add(agg.aggregate)
    return out


def load_columns(conn_settings: dict[str, Any], mappings: MappingSet) -> dict[str, dict[str, Column]]:
    """information_schema columns of every mapped table, as schema.table -> {column: Column}."""
    import pymysql

    schemas = sorted({t.split(".", 1)[0] for t in mappings.by_table})
    conn = pymysql.connect(connect_timeout=5, charset="utf8mb4", **conn_settings)
    try:
        with conn.cursor() as cur:
            marks = ", ".join(["%s"] * len(schemas))
            cur.execute(f"SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE "
                        f"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({marks}) "
                        f"ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION", schemas)
            rows = cur.fetchall()
        jsons = mariadb_json_columns(conn, mappings.by_table)
        out: dict[str, dict[str, Column]] = {}
        for s, t, c, dt, ct, nul in rows:
            table, name, data_type = f"{s}.{t}", str(c), str(dt).lower()
            if is_json_text(data_type, name, jsons.get(table, ())):
                data_type = "json"   # MariaDB's JSON: the source parses it (docs/types.md)
            out.setdefault(table, {})[name] = Column(data_type, str(ct), nul == "YES")
        return out
    finally:
        conn.close()
