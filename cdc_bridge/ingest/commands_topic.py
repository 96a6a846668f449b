"""The commands topic: the contract between ingest and the aggregate workers (and the command log).

Topic `<bridge>.commands` (command_log.topic), `state.partitions` partitions. Partition p holds
exactly the commands of state partition p, p = murmur2(aggregate id) mod P (aggregate/router.py),
so a partition of commands is a partition of state: whoever consumes partition p owns p's state.

Records (header `cdc-bridge-record` says which; values are compact JSON):

- txn:        the commands of ONE source transaction for ONE partition, in binlog order:
              {"gtid", "position", "txn_id", "commit_ts", "commands": [[command_type, aggregate,
              aggregate_id, entity, entity_id, operation, payload, before, table, index, soft], ...]}
              plus "full_image": true for a snapshot chunk read over existing state (each root comes
              with ALL its children: the apply stage removes the children the state knows but the chunk
              lacks). A transaction touching k partitions is k records, one per partition.
- watermark:  one per partition at the end of every Kafka transaction of ingest:
              {"watermark": <position of the batch's end>, "commit_ts": <its source commit time>}.
              It tells a reader of partition p that everything up to that position has arrived (the
              rebuild merges partitions back into binlog order with it), and carries the source clock
              to partitions the batch did not touch: held children there expire on time.
- sweep:      one per partition at the end of a snapshot taken over existing state:
              {"sweep": {"stream_from": <position>, "view": <position>, "ts": <epoch s>}}: aggregates
              of the partition that the snapshot did not see no longer exist (their deleted event).

All records of one ingest batch, its dead letters and its checkpoint are ONE Kafka transaction:
a read_committed consumer sees whole batches, and a source transaction never spans two batches.

Command logs written before this format (one record per command, header `command_type`, and
watermarks with the header `cdc-bridge-watermark`) are still read (`decode_record`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal

from cdc_bridge.config import BridgeConfig
from cdc_bridge.jsoncodec import dumps, loads
from cdc_bridge.mapping.command import Command
from cdc_bridge.mapping.lookups import LOOKUP_AGGREGATE
from cdc_bridge.mapping.translate import command_to_wire, commands_from_wire
from cdc_bridge.sink.topics import TopicRole, TopicSpec
from cdc_bridge.source.position import SourcePosition

RECORD_HEADER = "cdc-bridge-record"
WATERMARK_HEADER = "cdc-bridge-watermark"   # the watermark of the first format (still read)

TXN, WATERMARK, SWEEP = b"txn", b"watermark", b"sweep"

Partitioner = Callable[[str, int], int]
Record = tuple  # (topic, key, value, partition, headers), as the publisher takes them


@dataclass(slots=True)
class CommandsRecord:
    """One decoded record of the commands topic."""

    kind: Literal["txn", "watermark", "sweep"]
    position: SourcePosition            # txn: the source transaction's end; watermark: the batch's end; sweep: view
    commit_ts: float = 0.0
    gtid: str | None = None
    txn_id: str = ""
    wire: list[tuple] = field(default_factory=list)   # txn: its commands (command_to_wire's tuples)
    full_image: bool = False
    stream_from: SourcePosition | None = None   # sweep only

    @property
    def commands(self) -> list[Command]:
        """The txn's commands as Command objects (made on demand: the apply stage takes the wire form)."""
        return commands_from_wire(self.wire, self.position, self.txn_id, self.commit_ts)

    @property
    def order_key(self) -> tuple[int, int]:
        return self.position.order_key


def commands_topic_name(config: BridgeConfig) -> str:
    return config.command_log.topic or f"{config.name}.commands"


def commands_topic_spec(config: BridgeConfig) -> TopicSpec:
    # verified like an events topic (its partition count is the contract): one partition per state partition
    return TopicSpec(commands_topic_name(config), TopicRole.EVENTS, config.state.partitions,
                     config.kafka.replication_factor, {"retention.ms": str(config.command_log.retention_ms),
                                                       "max.message.bytes": str(config.kafka.max_message_bytes)})


# --------------------------------------------------------------------------- encoding


def txn_records(topic: str, partitions: int, partition_for: Partitioner, commands: list[tuple],
                gtid: str | None, position: SourcePosition, txn_id: str, commit_ts: float,
                *, full_image: bool = False) -> list[Record]:
    """The txn records of one source transaction: one per partition its commands touch. commands: in
    their wire form (mapping/translate.py command_to_wire), as they travel."""
    if not commands:
        return []
    by_partition: dict[int, list[tuple]] = {}
    for w in commands:
        if w[1] == LOOKUP_AGGREGATE:   # reference rows: every partition keeps them
            for p in range(partitions):
                by_partition.setdefault(p, []).append(w)
            continue
        by_partition.setdefault(partition_for(w[2], partitions), []).append(w)
    head: dict[str, Any] = {"gtid": gtid, "position": position.to_dict(), "txn_id": txn_id, "commit_ts": commit_ts}
    if full_image:
        head["full_image"] = True
    headers = [(RECORD_HEADER, TXN)]
    return [(topic, None, dumps({**head, "commands": wire}), p, headers) for p, wire in sorted(by_partition.items())]


def watermark_records(topic: str, partitions: int, batch_end: SourcePosition, commit_ts: float) -> list[Record]:
    mark = dumps({"watermark": batch_end.to_dict(), "commit_ts": commit_ts})
    headers = [(RECORD_HEADER, WATERMARK), (WATERMARK_HEADER, b"1")]
    return [(topic, None, mark, p, headers) for p in range(partitions)]


def sweep_records(topic: str, partitions: int, stream_from: SourcePosition, view: SourcePosition,
                  ts: float) -> list[Record]:
    value = dumps({"sweep": {"stream_from": stream_from.to_dict(), "view": view.to_dict(), "ts": ts}})
    return [(topic, None, value, p, [(RECORD_HEADER, SWEEP)]) for p in range(partitions)]


# --------------------------------------------------------------------------- decoding


def record_kind(headers: list[tuple[str, bytes]] | None) -> bytes | None:
    """txn / watermark / sweep for this format, b"legacy-watermark" or None (a legacy command) for the first."""
    legacy_mark = False
    for k, v in headers or ():
        if k == RECORD_HEADER:
            return v
        if k == WATERMARK_HEADER:
            legacy_mark = True
    return b"legacy-watermark" if legacy_mark else None


def decode_record(value: bytes, headers: list[tuple[str, bytes]] | None) -> CommandsRecord:
    """A record of the commands topic, in this format or the first one."""
    kind = record_kind(headers)
    d = loads(value)
    if kind == TXN:
        pos = SourcePosition.from_dict(d["position"])
        txn_id, ts = d["txn_id"], d["commit_ts"]
        # JSON gives lists; the compiled apply takes tuples, as the reader process sends them
        return CommandsRecord("txn", pos, ts, d.get("gtid"), txn_id, [tuple(w) for w in d["commands"]],
                              bool(d.get("full_image")))
    if kind in (WATERMARK, b"legacy-watermark"):
        return CommandsRecord("watermark", SourcePosition.from_dict(d["watermark"]), float(d.get("commit_ts") or 0.0))
    if kind == SWEEP:
        s = d["sweep"]
        return CommandsRecord("sweep", SourcePosition.from_dict(s["view"]), float(s["ts"]),
                              stream_from=SourcePosition.from_dict(s["stream_from"]))
    # the first format: one command per record
    cmd = decode_command(value)
    own_gtid = None if cmd.txn_id == f"{cmd.position.binlog_file}:{cmd.position.binlog_pos}" else cmd.txn_id
    return CommandsRecord("txn", cmd.position, cmd.commit_ts, own_gtid, cmd.txn_id, [command_to_wire(cmd)])


def encode_command(cmd: Command) -> bytes:
    """One command as a record of the first format (kept for tests of logs written by older versions)."""
    d = {
        "command_type": cmd.command_type, "aggregate": cmd.aggregate, "aggregate_id": cmd.aggregate_id,
        "entity": cmd.entity, "entity_id": cmd.entity_id, "operation": cmd.operation,
        "payload": cmd.payload, "before": cmd.before, "table": cmd.table,
        "position": cmd.position.to_dict(), "txn_id": cmd.txn_id, "commit_ts": cmd.commit_ts, "index": cmd.index,
    }
    if cmd.soft:
        d["soft"] = True
    return dumps(d)


def decode_command(raw: bytes) -> Command:
    d = loads(raw)
    d.setdefault("soft", False)
    d["position"] = SourcePosition.from_dict(d["position"])
    return Command.model_construct(**d)


def batch_records(topic: str, partitions: int, partition_for: Partitioner,
                  txns: Iterable[tuple[list[Command], Any]], batch_end: SourcePosition,
                  commit_ts: float) -> list[Record]:
    """Every record of one batch: the txn records of its transactions, then the watermarks (tests, tools)."""
    out: list[Record] = []
    for commands, t in txns:
        out.extend(txn_records(topic, partitions, partition_for, [command_to_wire(c) for c in commands], t.gtid,
                               t.position, t.txn_id, t.commit_ts))
    out.extend(watermark_records(topic, partitions, batch_end, commit_ts))
    return out
