"""A schema set on disk: DIR/<Aggregate>/<EventType>.json, DIR/changes/<db.table>.{key,value}.json (the change
stream, when enabled), DIR/index.json, DIR/asyncapi.json.

index.json records how the set was built: "live" true (`auto` fields typed from the database's columns) or
false (offline: `auto` fields accept any JSON value); the guard builds the current set the same way. Per
aggregate: its topic, its event types' files, and whether deleted events may be followed by a tombstone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdc_bridge.contracts.event_schemas import SchemaSet


class SchemaDirError(Exception):
    exit_code = 64

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _file(event_type: str) -> str:
    return "_any.json" if event_type == "*" else f"{event_type}.json"


def write_schema_set(out: Path, schemas: SchemaSet, asyncapi: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    index: dict[str, Any] = {"generated_by": "cdc-bridge schemas", "live": schemas.live, "aggregates": {}}
    for aggregate, events in schemas.events.items():
        d = out / aggregate
        d.mkdir(exist_ok=True)
        for event_type, schema in events.items():
            path = d / _file(event_type)
            path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
            written.append(path)
        index["aggregates"][aggregate] = {"topic": schemas.topics[aggregate],
                                          "events": {t: f"{aggregate}/{_file(t)}" for t in events},
                                          "tombstones": aggregate in schemas.tombstones}
    if schemas.changes:
        d = out / "changes"
        d.mkdir(exist_ok=True)
        index["changes"] = {}
        for table, entry in schemas.changes.items():
            files = {}
            for part in ("key", "value"):
                path = d / f"{table}.{part}.json"
                path.write_text(json.dumps(entry[part], indent=2, ensure_ascii=False) + "\n")
                written.append(path)
                files[part] = f"changes/{path.name}"
            index["changes"][table] = {"topic": entry["topic"], **files}
    for name, doc in (("index.json", index), ("asyncapi.json", asyncapi)):
        (out / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        written.append(out / name)
    return written


def read_schema_set(directory: Path) -> SchemaSet:
    index_path = directory / "index.json"
    if not index_path.is_file():
        raise SchemaDirError(f"{directory} holds no schema set (no index.json): point --check-against at a "
                             "directory written by `cdc-bridge schemas --out`")
    index = json.loads(index_path.read_text())
    out = SchemaSet(live=bool(index.get("live")))
    for aggregate, entry in index["aggregates"].items():
        out.topics[aggregate] = entry["topic"]
        if entry.get("tombstones"):
            out.tombstones.add(aggregate)
        out.events[aggregate] = {t: json.loads((directory / f).read_text()) for t, f in entry["events"].items()}
    return out
