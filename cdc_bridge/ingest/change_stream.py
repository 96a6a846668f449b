"""The Debezium-compatible change stream: one Debezium change event per row change of a streamed table.

Built in the ingest stage, where the column types are known (the reader process builds them next to the
translation; `source.reader: inline` and the snapshot build them in the bridge), as ready Kafka records
(topic, key, value, partition, headers) that the pipeline adds to the batch's Kafka transaction, beside the
domain events and the checkpoint (docs/events.md#debezium-compatible-change-stream):

    topic      <prefix>.<db>.<table>
    key        {"<pk column>": value, ...} in the primary key's order (null without a primary key)
    value      {"before", "after", "source", "transaction", "op", "ts_ms", "ts_us", "ts_ns"}; null: a tombstone
    partition  Kafka's default partitioner on the key bytes (murmur2), as Debezium's producer places it;
               keyless records in partition 0, so a table without primary key keeps its order

and, per source transaction, a BEGIN and an END record on `<prefix>.transaction` (transaction_topic).
Values follow Debezium's JSON converter without schemas (debezium_types.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from cdc_bridge import __version__
from cdc_bridge.config import BridgeConfig, ConfigError
from cdc_bridge.aggregate.router import murmur2, to_positive
from cdc_bridge.ingest.debezium_types import RowEncoder
from cdc_bridge.jsoncodec import dumps
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.transaction import RowChange, SourceTransaction, TableShape

Record = tuple  # (topic, key bytes | None, value bytes | None, partition, headers)

NEW_KEY_HEADER = "__debezium.newkey"   # on the delete (and its tombstone) of an update that changed the key
OLD_KEY_HEADER = "__debezium.oldkey"   # on the create that follows it


@dataclass(frozen=True)
class ChangeStreamSpec:
    """Everything building records needs; plain data, so the reader process gets it pickled.

    partitions: topic -> partition count (as the topics exist); unknown topics: default_partitions
    """

    prefix: str
    connector: str                       # "mariadb" | "mysql": Debezium's source.connector
    tables: frozenset[str]
    tombstones: bool = True
    decimal: str = "string"
    transaction_topic: bool = True
    partitions: dict[str, int] = field(default_factory=dict)
    default_partitions: int = 1
    version: str = f"cdc-bridge-{__version__}"

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{table}"

    @property
    def transaction_topic_name(self) -> str:
        return f"{self.prefix}.transaction"

    def topics(self) -> list[str]:
        names = [self.topic(t) for t in sorted(self.tables)]
        return names + [self.transaction_topic_name] if self.transaction_topic else names


class ChangeStream:
    """Builds the change records of source transactions and snapshot rows (no I/O)."""

    def __init__(self, spec: ChangeStreamSpec) -> None:
        self.spec = spec
        # compiled per table shape (a shape lives as long as its table's version in the source)
        self._encoders: dict[int, tuple[TableShape, RowEncoder]] = {}

    # ------------------------------------------------------------------ streamed transactions

    def records(self, txn: SourceTransaction) -> list[Record]:
        """The records of a binlog transaction whose row events the source described (txn.row_events)."""
        described = txn.row_events
        if described is None or not described.events:
            return []
        spec = self.spec
        out: list[Record] = []
        now_ns = time.time_ns()
        txid = txn.txn_id
        counts: dict[str, int] = {}    # data collection -> records so far (data_collection_order)
        total = 0
        changes = txn.changes
        file = txn.position.binlog_file
        first_ts = 0
        for first, end, shape, pos, ts, server_id in described.events:
            if shape.table not in spec.tables:
                continue
            first_ts = first_ts or ts
            encoder = self._encoder(shape)
            db, _, table = shape.table.partition(".")
            ts_ms = ts * 1000
            for i in range(first, end):
                ch = changes[i]
                source = {"version": spec.version, "connector": spec.connector, "name": spec.prefix, "ts_ms": ts_ms,
                          "snapshot": "false", "db": db, "sequence": None, "ts_us": ts_ms * 1000,
                          "ts_ns": ts_ms * 1_000_000, "table": table, "server_id": server_id, "gtid": txn.gtid,
                          "file": file, "pos": pos, "row": i - first, "thread": described.thread, "query": None}
                for op, before, after, headers in self._ops(ch, encoder, shape):
                    total += 1
                    n = counts[shape.table] = counts.get(shape.table, 0) + 1
                    block = {"id": txid, "total_order": total, "data_collection_order": n}
                    self._emit(out, shape, op, before, after, source, block, now_ns, headers)
        if total and spec.transaction_topic:
            out.insert(0, self._transaction_record(txid, {"status": "BEGIN", "id": txid, "event_count": None,
                                                          "data_collections": None, "ts_ms": first_ts * 1000}))
            out.append(self._transaction_record(txid, {
                "status": "END", "id": txid, "event_count": total,
                "data_collections": [{"data_collection": t, "event_count": n} for t, n in counts.items()],
                "ts_ms": int(txn.commit_ts * 1000)}))
        return out

    def _ops(self, ch: RowChange, encoder: RowEncoder, shape: TableShape
             ) -> Iterable[tuple[str, dict | None, dict | None, list]]:
        """(op, before, after, headers) of one row change: an update that changes the primary key is a
        delete of the old key and a create of the new one, as Debezium writes it."""
        if ch.op == "insert":
            yield "c", None, encoder.encode(ch.after or {}, ch.zero_dates), []
        elif ch.op == "delete":
            yield "d", encoder.encode(ch.before or {}, ch.zero_dates), None, []
        else:
            before = encoder.encode(ch.before or {})
            after = encoder.encode(ch.after or {}, ch.zero_dates)
            old_key, new_key = self._key(shape, before), self._key(shape, after)
            if old_key == new_key:
                yield "u", before, after, []
            else:
                yield "d", before, None, [(NEW_KEY_HEADER, new_key)]
                yield "c", None, after, [(OLD_KEY_HEADER, old_key)]

    # ------------------------------------------------------------------ snapshot rows

    def snapshot_records(self, changes: list[RowChange], shapes: dict[str, TableShape], view: SourcePosition,
                         ts: float, *, first: bool = False, last: bool = False) -> list[Record]:
        """Records (op r) of snapshot rows of the tables in `shapes` (rows of other tables are skipped).
        first/last: these rows begin/end the whole snapshot (source.snapshot "first"/"last", else "true")."""
        spec = self.spec
        rows = [(ch, shapes[ch.table]) for ch in changes if ch.table in shapes and ch.table in spec.tables]
        out: list[Record] = []
        now_ns = time.time_ns()
        ts_ms = int(ts * 1000)
        for i, (ch, shape) in enumerate(rows):
            db, _, table = ch.table.partition(".")
            mark = "last" if last and i == len(rows) - 1 else "first" if first and i == 0 else "true"
            source = {"version": spec.version, "connector": spec.connector, "name": spec.prefix, "ts_ms": ts_ms,
                      "snapshot": mark, "db": db, "sequence": None, "ts_us": ts_ms * 1000, "ts_ns": ts_ms * 1_000_000,
                      "table": table, "server_id": 0, "gtid": None, "file": view.binlog_file, "pos": view.binlog_pos,
                      "row": 0, "thread": None, "query": None}
            after = self._encoder(shape).encode(ch.after or {}, ch.zero_dates)
            self._emit(out, shape, "r", None, after, source, None, now_ns, [])
        return out

    # ------------------------------------------------------------------ records

    def _emit(self, out: list[Record], shape: TableShape, op: str, before: dict | None, after: dict | None,
              source: dict, block: dict | None, now_ns: int, headers: list) -> None:
        spec = self.spec
        key = self._key(shape, after if after is not None else before or {})
        topic = spec.topic(shape.table)
        partition = self._partition(topic, key)
        value = {"before": before, "after": after, "source": source, "transaction": block, "op": op,
                 "ts_ms": now_ns // 1_000_000, "ts_us": now_ns // 1000, "ts_ns": now_ns}
        out.append((topic, key, dumps(value), partition, headers))
        if op == "d" and spec.tombstones:
            # the tombstone carries the delete's key headers (__debezium.newkey), as Debezium's does
            out.append((topic, key, None, partition, headers))

    @staticmethod
    def _key(shape: TableShape, encoded_row: dict) -> bytes | None:
        if not shape.primary_key:
            return None
        return dumps({c: encoded_row.get(c) for c in shape.primary_key})

    def _partition(self, topic: str, key: bytes | None) -> int:
        if key is None:
            return 0
        n = self.spec.partitions.get(topic) or self.spec.default_partitions
        return to_positive(murmur2(key)) % n

    def _transaction_record(self, txid: str, value: dict[str, Any]) -> Record:
        topic = self.spec.transaction_topic_name
        key = dumps({"id": txid})
        return (topic, key, dumps(value), self._partition(topic, key), [])

    def _encoder(self, shape: TableShape) -> RowEncoder:
        entry = self._encoders.get(id(shape))
        if entry is None or entry[0] is not shape:
            if len(self._encoders) > 4096:   # shapes of tables altered many times, or pickled per transaction
                self._encoders.clear()
            entry = self._encoders[id(shape)] = (shape, RowEncoder(shape, self.spec.decimal))
        return entry[1]

    def table_of(self, topic: str) -> str | None:
        """The table of a change topic (None for the transaction topic): the metrics' label."""
        prefix = self.spec.prefix + "."
        if topic == self.spec.transaction_topic_name or not topic.startswith(prefix):
            return None
        return topic[len(prefix):]



def reader_side(spec: ChangeStreamSpec | None) -> tuple[frozenset[str] | None, Any]:
    """For the reader process: (tables the BinlogSource describes, txn -> its change records or None)."""
    if spec is None:
        return None, lambda txn: None
    stream = ChangeStream(spec)
    return spec.tables, stream.records


def streamed_tables(config: BridgeConfig, mappings: Any) -> frozenset[str]:
    """change_stream.tables, or every table of the aggregates' mappings; a listed table must be one the bridge
    reads (a mapped table or a lookup's reference table), else a ConfigError naming the key."""
    wanted = config.change_stream.tables
    if not wanted:
        return frozenset(mappings.by_table)
    readable = set(mappings.tables_and_columns()) - {mappings.signal_table}
    unknown = [t for t in wanted if t not in readable]
    if unknown:
        raise ConfigError(f"change_stream.tables: {', '.join(unknown)} not mapped; the change stream covers tables the "
                          f"bridge reads ({', '.join(sorted(readable)) or 'none'}): map them, or remove them from the "
                          "list (empty: every mapped table)")
    return frozenset(wanted)


def topic_prefix(config: BridgeConfig) -> str:
    return config.change_stream.topic_prefix or config.name
