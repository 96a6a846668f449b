"""One AsyncAPI 3.0 document for the bridge: its Kafka server, a channel per events topic and the
dead-letter topic, a message per event type (key, headers, payload = the event's JSON Schema), the
tombstone that follows a deleted event (null value, header cdc-bridge-tombstone) where the aggregate
writes one, and a channel per change stream topic (when enabled: a change event message, key = the
primary key, the __debezium.newkey / oldkey headers of a primary-key update)."""

from __future__ import annotations

from typing import Any

from cdc_bridge.aggregate.event import TOMBSTONE_HEADER
from cdc_bridge.config import BridgeConfig
from cdc_bridge.contracts.event_schemas import SchemaSet
from cdc_bridge.ingest.change_stream import NEW_KEY_HEADER, OLD_KEY_HEADER

DEAD_LETTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "description": "null_key, coercion_failed, missing_column, bad_row, orphan, "
                   "too_large, or an aggregate's rejection (update_of_unknown_aggregate, ...)"},
        "detail": {"type": "string"},
        "table": {"type": ["string", "null"]},
        "aggregate": {"type": ["string", "null"]},
        "aggregate_id": {"type": ["string", "null"]},
        "position": {"type": ["object", "null"]},
        "txn_id": {"type": ["string", "null"]},
        "record": {"type": ["object", "null"]},
    },
    "required": ["reason", "detail"],
}


CHANGE_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        NEW_KEY_HEADER: {"type": "string", "description": "on the delete (op d) and its tombstone that an update of "
                         "the primary key becomes: the new key's JSON (as the record key of the create after it)"},
        OLD_KEY_HEADER: {"type": "string", "description": "on the create (op c) that follows that delete: the old "
                         "key's JSON"},
    },
    "description": "Only on the records of an update that changed the primary key, as Debezium writes them",
}

DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {"reason": {"type": "string"},
                   "table": {"type": "string", "description": "the source table (schema.table), when known"},
                   "aggregate": {"type": "string", "description": "the aggregate type, when known"}},
    "required": ["reason"],
}


def _payload(schema: dict[str, Any]) -> dict[str, Any]:
    """The event schema as an AsyncAPI message payload (AsyncAPI's schema format: no $schema / $id)."""
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def asyncapi_document(config: BridgeConfig | None, schemas: SchemaSet, name: str) -> dict[str, Any]:
    kafka = config.kafka if config is not None else None
    host = kafka.bootstrap_servers.split(",")[0] if kafka is not None else "kafka:9092"
    dead_letter = (kafka.dead_letter_topic if kafka is not None else None) or f"{name}.dead-letter"
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for aggregate, events in schemas.events.items():
        refs = {}
        for event_type, schema in events.items():
            msg_id = f"{aggregate}.{'any' if event_type == '*' else event_type}"
            messages[msg_id] = {
                "name": event_type if event_type != "*" else f"{aggregate}Event",
                "title": schema.get("title", event_type),
                "contentType": "application/json",
                "headers": {"type": "object", "properties": {
                    "event_type": {"type": "string"}, "event_id": {"type": "string"}},
                    "required": ["event_type", "event_id"]},
                "payload": _payload(schema),
                "bindings": {"kafka": {"key": {"type": "string", "description": "aggregate_id (UTF-8)"}}},
            }
            refs[msg_id] = {"$ref": f"#/components/messages/{msg_id}"}
        if aggregate in schemas.tombstones:
            msg_id = f"{aggregate}.tombstone"
            messages[msg_id] = {
                "name": f"{aggregate}Tombstone",
                "title": f"Kafka tombstone after a deleted {aggregate}",
                "summary": "null value: skip it; a compacted topic then forgets the aggregate",
                "description": "Follows the deleted event (same key and partition) when the mapping sets "
                               "tombstone_on_delete (or a Python decider's deletion draft asks for it): the record "
                               "value is null (no JSON), the header cdc-bridge-tombstone is 1 (docs/events.md).",
                "headers": {"type": "object", "properties": {
                    TOMBSTONE_HEADER: {"const": "1"},
                    "event_id": {"type": "string", "description": "the deleted event's event_id"}},
                    "required": [TOMBSTONE_HEADER, "event_id"]},
                "payload": {"type": "null"},
                "bindings": {"kafka": {"key": {"type": "string", "description": "aggregate_id (UTF-8), the deleted "
                                                                                "event's key"}}},
            }
            refs[msg_id] = {"$ref": f"#/components/messages/{msg_id}"}
        channels[aggregate] = {
            "address": schemas.topics[aggregate],
            "description": f"Domain events of {aggregate}, keyed by aggregate_id; read with "
                           "isolation.level=read_committed (docs/events.md)",
            "messages": refs,
        }
        operations[f"publish{aggregate}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{aggregate}"},
            "messages": [{"$ref": f"#/channels/{aggregate}/messages/{m}"} for m in refs],
        }
    for table, entry in schemas.changes.items():
        msg_id = f"change.{table}"
        channel = f"change.{table}"
        key = _payload(entry["key"])
        if table == "transaction":
            description = ("Transaction boundaries of the change stream: a BEGIN and an END record per source "
                           "transaction (docs/events.md)")
            name, title = "TransactionBoundary", "transaction boundary"
        else:
            description = (f"Debezium-compatible change events of {table}, keyed by its primary key; in the same "
                           "Kafka transactions as the domain events (read_committed; docs/events.md)")
            name, title = "ChangeEvent", f"{table} change event"
        messages[msg_id] = {"name": name, "title": title, "contentType": "application/json",
                            "payload": _payload(entry["value"]), "bindings": {"kafka": {"key": key}}}
        if table != "transaction":
            messages[msg_id]["headers"] = CHANGE_HEADERS
        channels[channel] = {"address": entry["topic"], "description": description,
                             "messages": {msg_id: {"$ref": f"#/components/messages/{msg_id}"}}}
        operations[f"publishChanges.{table}"] = {"action": "send", "channel": {"$ref": f"#/channels/{channel}"},
                                                 "messages": [{"$ref": f"#/channels/{channel}/messages/{msg_id}"}]}
    messages["DeadLetter"] = {"name": "DeadLetter", "contentType": "application/json",
                              "headers": DEAD_LETTER_HEADERS, "payload": DEAD_LETTER_SCHEMA,
                              "bindings": {"kafka": {"key": {"type": ["string", "null"], "description":
                                                             "aggregate_id (UTF-8) when known, else null"}}}}
    channels["deadLetters"] = {"address": dead_letter, "description": "What could not become an event, with its "
                               "reason (docs/mappings.md, dead letters)",
                               "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}}}
    operations["publishDeadLetters"] = {"action": "send", "channel": {"$ref": "#/channels/deadLetters"},
                                        "messages": [{"$ref": "#/channels/deadLetters/messages/DeadLetter"}]}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"cdc-bridge {name}", "version": "1.0.0",
                 "description": "Domain events published by cdc-bridge from the source database's binlog, exactly "
                                "once (Kafka transactions). Generated by `cdc-bridge schemas` from the mappings."},
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": host, "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
