"""Contracts for consumers: JSON Schemas of the events, the AsyncAPI document, the breaking-change guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdc_bridge.contracts.asyncapi import asyncapi_document
from cdc_bridge.contracts.compat import breaking_changes, uncompared
from cdc_bridge.contracts.event_schemas import SchemaSet, load_columns, schema_set
from cdc_bridge.contracts.files import read_schema_set, write_schema_set
from cdc_bridge.mapping.loader import MappingSet

# how many not-compared fields the guard lists before "... and N more"
_LISTED = 10


def schema_set_for(mappings: MappingSet, conn: dict[str, Any] | None) -> SchemaSet:
    """Live (column types from the database) when conn is given, else offline."""
    return schema_set(mappings, load_columns(conn, mappings) if conn is not None else None)


def _typed(live: bool) -> str:
    return "live" if live else "offline"


def guard(mappings: MappingSet, conn: dict[str, Any] | None, previous: Path, schemas: SchemaSet | None = None) -> list[str]:
    """Prints and returns the changes that break consumers of the schema set in `previous`.

    Like is compared with like: the current set is built the way `previous` was (index.json "live"): live
    (conn needed) against a live set, offline against an offline one, whatever `schemas` (the set the caller
    already built, reused when it was built that way) and conn say. A live `previous` without conn is
    compared offline, and a WARNING says that the `auto` fields were not compared and how to compare them.
    """
    old = read_schema_set(previous)
    want_live = old.live and conn is not None
    if schemas is not None and schemas.live == want_live:
        new = schemas
    else:
        new = schema_set_for(mappings, conn if want_live else None)
    if old.live and not want_live:
        print(f"WARNING: {previous} was written live (`auto` fields typed from the database's columns) and this "
              "check has no database connection: `auto` fields are not compared (a narrowed column type goes "
              "unseen). Connect to compare them: --config FILE (without --offline; `check` also takes --db-host).")
    elif not old.live and conn is not None:
        print(f"note: {previous} was written offline (`auto` fields accept any JSON value): compared with the "
              "mappings' offline schemas, not the database's column types")
    skipped = uncompared(old, new)
    if skipped:
        print(f"not compared: {len(skipped)} field(s) typed in {previous} ({_typed(old.live)}) are open in the "
              f"current ({_typed(new.live)}) schemas:")
        for line in skipped[:_LISTED]:
            print(f"  {line}")
        if len(skipped) > _LISTED:
            print(f"  ... and {len(skipped) - _LISTED} more")
    broken = breaking_changes(old, new)
    if broken:
        print(f"BREAKING: {len(broken)} change(s) against {previous} would break consumers:")
        for b in broken:
            print(f"  {b}")
        print("Keep the old names and types (add new fields instead), or publish to a new topic / version "
              "(cdc-bridge rebuild) and tell consumers; then write the schema set again.")
    else:
        print(f"no breaking changes against {previous} ({_typed(new.live)} schemas compared)")
    return broken


__all__ = ["SchemaSet", "asyncapi_document", "breaking_changes", "guard", "read_schema_set", "schema_set",
           "schema_set_for", "uncompared", "write_schema_set"]
