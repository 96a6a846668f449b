"""Contracts for consumers: JSON Schemas of the events, the AsyncAPI document, the breaking-change guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdc_bridge.contracts.asyncapi import asyncapi_document
from cdc_bridge.contracts.compat import breaking_changes
from cdc_bridge.contracts.event_schemas import SchemaSet, load_columns, schema_set
from cdc_bridge.contracts.files import read_schema_set, write_schema_set
from cdc_bridge.mapping.loader import MappingSet


def schema_set_for(mappings: MappingSet, conn: dict[str, Any] | None) -> SchemaSet:
    """Live (column types from the database) when conn is given, else offline."""
    return schema_set(mappings, load_columns(conn, mappings) if conn is not None else None)


def guard(mappings: MappingSet, conn: dict[str, Any] | None, previous: Path, schemas: SchemaSet | None = None) -> list[str]:
    """Prints and returns the changes that break consumers of the schema set in `previous`."""
    old = read_schema_set(previous)
    new = schemas if schemas is not None else schema_set_for(mappings, conn if old.live else None)
    broken = breaking_changes(old, new)
    if broken:
        print(f"BREAKING: {len(broken)} change(s) against {previous} would break consumers:")
        for b in broken:
            print(f"  {b}")
        print("Keep the old names and types (add new fields instead), or publish to a new topic / version "
              "(cdc-bridge rebuild) and tell consumers; then write the schema set again.")
    else:
        print(f"no breaking changes against {previous}")
    return broken


__all__ = ["SchemaSet", "asyncapi_document", "breaking_changes", "guard", "read_schema_set", "schema_set",
           "schema_set_for", "write_schema_set"]
