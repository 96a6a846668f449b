"""The command log: every command, written in the same Kafka transaction as its events.

Topic `<bridge>.commands` (kafka.command_log), keyed by aggregate id, partitioned with the
state's murmur2 partitioner and the state's partition count, so that partition p of the
topic holds exactly the commands of state partition p (the future consumer-group layout).

Each Kafka transaction also writes one *watermark* record to every partition, carrying the
batch's end position. A reader of all partitions (`cdc-bridge rebuild`) merges them back
into the original global order: everything up to the smallest watermark seen on every
partition is complete, whatever the order in which partitions are fetched.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from cdc_bridge.jsoncodec import dumps, loads
from cdc_bridge.mapping.command import Command
from cdc_bridge.source.position import SourcePosition

WATERMARK_HEADER = "cdc-bridge-watermark"


def encode_command(cmd: Command) -> bytes:
    d = {
        "command_type": cmd.command_type, "aggregate": cmd.aggregate, "aggregate_id": cmd.aggregate_id,
        "entity": cmd.entity, "entity_id": cmd.entity_id, "operation": cmd.operation,
        "payload": cmd.payload, "before": cmd.before, "table": cmd.table,
        "position": cmd.position.to_dict(), "txn_id": cmd.txn_id, "commit_ts": cmd.commit_ts, "index": cmd.index,
    }
    if cmd.soft:   # only when set: older logs (without it) read back the same
        d["soft"] = True
    return dumps(d)


def decode_command(raw: bytes) -> Command:
    d = loads(raw)
    d["position"] = SourcePosition.from_dict(d["position"])
    return Command.model_construct(**d)


def command_log_records(topic: str, partitions: int, partition_for: Callable[[str, int], int],
                        commands: Iterable[Command], batch_end: SourcePosition) -> list[tuple]:
    """(topic, key, value, partition, headers) records for the publisher: commands, then one watermark per partition."""
    out: list[tuple[Any, ...]] = []
    for c in commands:
        out.append((topic, c.aggregate_id.encode(), encode_command(c), partition_for(c.aggregate_id, partitions),
                    [("command_type", c.command_type.encode())]))
    mark = dumps({"watermark": batch_end.to_dict()})
    for p in range(partitions):
        out.append((topic, None, mark, p, [(WATERMARK_HEADER, b"1")]))
    return out
