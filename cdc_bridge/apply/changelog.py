"""The changelog topic: the state of every partition, so that any worker can take a partition over.

Topic `<bridge>.changelog` (worker.changelog_topic), compacted, `state.partitions` partitions:
partition p holds state partition p. An aggregate worker writes, in the same Kafka transaction as
the events and the consumed commands offsets:

- one record per aggregate it changed: key = the state store's record key
  (`<aggregate>\\x00<aggregate id>`), value = the record's JSON, exactly as LMDB stores it;
- one progress marker per partition it consumed: key `\\x00progress`, value
  {"commands_offset": <next offset of the commands partition>}, header `cdc-bridge-progress`.

Compaction keeps the latest record per aggregate and the latest marker, so reading a partition of
the changelog from any offset to its end and applying every record over a state that was current
at that offset gives the current state, and the last marker says where in the commands partition
that state stands (the same offset the transaction committed for the consumer group). Aggregate
records are never deleted (a deleted aggregate keeps its record, see state/record.py), so the
changelog carries no tombstones and compaction can never hide a delete from a late reader.
"""

from __future__ import annotations

from typing import Any, Iterable

from cdc_bridge.config import BridgeConfig
from cdc_bridge.jsoncodec import dumps, loads
from cdc_bridge.sink.topics import TopicRole, TopicSpec

MARKER_KEY = b"\x00progress"
MARKER_HEADER = "cdc-bridge-progress"

CHANGELOG_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    # compaction works on closed segments: roll daily so that a busy changelog stays near its live size
    "segment.ms": str(24 * 3600 * 1000),
    "min.cleanable.dirty.ratio": "0.25",
}


def changelog_topic_name(config: BridgeConfig) -> str:
    return config.worker.changelog_topic or f"{config.name}.changelog"


def changelog_topic_spec(config: BridgeConfig) -> TopicSpec:
    # verified like an events topic (partition count); one partition per state partition
    return TopicSpec(changelog_topic_name(config), TopicRole.EVENTS, config.state.partitions,
                     config.kafka.replication_factor,
                     {**CHANGELOG_TOPIC_CONFIG, "max.message.bytes": str(config.kafka.max_message_bytes)})


def changelog_records(topic: str, encoded: dict[int, list[tuple[bytes, bytes | None]]],
                      progress: dict[int, int]) -> list[tuple]:
    """(topic, key, value, partition, headers) records: the changed records, then one marker per consumed partition."""
    out: list[tuple[Any, ...]] = []
    for p, entries in encoded.items():
        out.extend((topic, key, value, p, None) for key, value in entries)
    marker_headers = [(MARKER_HEADER, b"1")]
    for p, offset in sorted(progress.items()):
        out.append((topic, MARKER_KEY, dumps({"commands_offset": offset}), p, marker_headers))
    return out


def is_marker(key: bytes | None) -> bool:
    return key == MARKER_KEY


def marker_offset(value: bytes) -> int:
    return int(loads(value)["commands_offset"])


def progress_meta(progress: Iterable[tuple[int, int, int]]) -> dict[str, Any]:
    """Store meta for (partition, commands offset, changelog offset): see LmdbStateStore.partition_progress."""
    from cdc_bridge.state.lmdb_store import progress_key

    return {progress_key(p): {"commands_offset": c, "changelog_offset": cl} for p, c, cl in progress}
