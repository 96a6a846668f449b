"""One AsyncAPI 3.0 document for the bridge: its Kafka server, a channel per events topic and the
dead-letter topic, a message per event type (key, headers, payload = the event's JSON Schema), and a
channel per change stream topic (when enabled: a change event message, key = the primary key)."""

from __future__ import annotations

from typing import Any

from cdc_bridge.config import BridgeConfig
from cdc_bridge.contracts.event_schemas import SchemaSet

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
        channels[channel] = {"address": entry["topic"], "description": description,
                             "messages": {msg_id: {"$ref": f"#/components/messages/{msg_id}"}}}
        operations[f"publishChanges.{table}"] = {"action": "send", "channel": {"$ref": f"#/channels/{channel}"},
                                                 "messages": [{"$ref": f"#/channels/{channel}/messages/{msg_id}"}]}
    messages["DeadLetter"] = {"name": "DeadLetter", "contentType": "application/json",
                              "headers": {"type": "object", "properties": {"reason": {"type": "string"}}},
                              "payload": DEAD_LETTER_SCHEMA}
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
