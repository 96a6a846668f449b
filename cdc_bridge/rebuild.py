"""`cdc-bridge rebuild`: replay the command log into new, versioned events topics with fresh state.

The running bridge keeps serving the current topics. The rebuild is a second bridge
(`<name>-v<N>`, its own state directory, checkpoint and transactional id) whose source
is the command log instead of the binlog: commands are merged back into their original
global order (the per-partition watermarks make that safe, see sink/command_log.py),
applied with the *current* aggregate rules, and published exactly once to
`<events topic>.v<N>`. It reports when it has caught up and keeps following the log
until stopped. docs/operations.md explains how consumers and the bridge switch over.
"""

from __future__ import annotations

import heapq
import threading
from pathlib import Path
from typing import Any, Iterator

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cdc_bridge.config import BridgeConfig, CommandLogSettings
from cdc_bridge.mapping.loader import MappingSet
from cdc_bridge.ingest.commands_topic import decode_record
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.transaction import SourceTransaction

log = structlog.get_logger(__name__)

LOG_START = SourcePosition(gtid=None, binlog_file="", binlog_pos=0)  # before every real position


def versioned(config: BridgeConfig, mappings: MappingSet, version: int) -> tuple[BridgeConfig, MappingSet]:
    """The rebuild's identity: name, state directory and events topics suffixed with the version."""
    if version < 2:
        raise ValueError("--version must be 2 or more (the running bridge's topics are version 1)")
    suffix = f"v{version}"
    state = config.state.model_copy(update={"dir": config.state.dir.parent / f"{config.state.dir.name}-{suffix}"})
    kafka = config.kafka.model_copy(update={"checkpoint_topic": None, "dead_letter_topic": None})
    cfg = config.model_copy(update={
        "name": f"{config.name}-{suffix}", "state": state, "kafka": kafka, "start": "earliest",
        "command_log": CommandLogSettings(enabled=False),
    })
    aggs = [a.model_copy(update={"topic": f"{a.events_topic}.{suffix}"}) for a in mappings.aggregates]
    return cfg, MappingSet(aggs)


class CommandLogSource:
    """Reads a bridge's command log (read_committed) and yields its source transactions in order."""

    def __init__(self, config: BridgeConfig, topic: str, partitions: int, start: SourcePosition | None) -> None:
        self.topic, self.partitions = topic, partitions
        self.start = start or LOG_START
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        conf = config.kafka.librdkafka_config()
        conf.update({"group.id": f"{config.name}-reader", "isolation.level": "read_committed",
                     "enable.auto.commit": False, "enable.partition.eof": False})
        self._consumer = Consumer(conf)

    def stop(self) -> None:
        self._stop.set()

    def _end_offsets(self) -> dict[int, int]:
        ends = {}
        for p in range(self.partitions):
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            ends[p] = high
        return ends

    def transactions(self) -> Iterator[SourceTransaction | None]:
        c = self._consumer
        md = c.list_topics(self.topic, timeout=10)
        if self.topic not in md.topics or md.topics[self.topic].error is not None:
            raise RuntimeError(f"command log topic {self.topic} does not exist: enable command_log in the "
                               "bridge's config first; a rebuild replays only what was logged")
        found = len(md.topics[self.topic].partitions)
        if found != self.partitions:
            raise RuntimeError(f"{self.topic} has {found} partitions, state.partitions is {self.partitions}")
        ends = self._end_offsets()
        c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
        marks: dict[int, tuple[int, int]] = {}
        # (order key, 0 = commands | 1 = sweep, partition, offset, record): a sweep follows the chunks it ends
        heap: list[tuple[tuple[int, int], int, int, int, Any]] = []
        try:
            while not self._stop.is_set():
                for msg in c.consume(5000, 0.2):
                    if msg.error():
                        continue
                    rec = decode_record(msg.value(), msg.headers())
                    if rec.kind == "watermark":
                        marks[msg.partition()] = rec.order_key
                        continue
                    heapq.heappush(heap, (rec.order_key, 1 if rec.kind == "sweep" else 0, msg.partition(),
                                          msg.offset(), rec))
                yielded = False
                if len(marks) == self.partitions:
                    # everything at or below the lowest watermark has arrived from every partition
                    low = min(marks.values())
                    while heap and heap[0][0] <= low:
                        key, kind = heap[0][0], heap[0][1]
                        entries = []
                        while heap and heap[0][0] == key and heap[0][1] == kind:
                            entries.append(heapq.heappop(heap))
                        if key <= self.start.order_key:
                            continue
                        if not self.caught_up.is_set() and all(off >= ends[part] for _, _, part, off, _ in entries):
                            self._check_caught_up(ends, heap)   # before the first transaction logged after the start
                        yield _transaction(entries)
                        yielded = True
                if not self.caught_up.is_set():
                    self._check_caught_up(ends, heap)
                if not yielded:
                    yield None
        finally:
            c.close()

    def _check_caught_up(self, ends: dict[int, int], heap: list[tuple[Any, ...]]) -> None:
        """Caught up: read past the log's end at start, and every command from before that end yielded;
        newer commands still waiting for watermarks do not count (the log keeps growing)."""
        if self._at(ends) and not any(off < ends[part] for _, _, part, off, _ in heap):
            self.caught_up.set()
            log.info("rebuild caught up with the command log", topic=self.topic)

    def _at(self, ends: dict[int, int]) -> bool:
        positions = self._consumer.position([TopicPartition(self.topic, p) for p in range(self.partitions)])
        return all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions)


def _transaction(entries: list[tuple[Any, ...]]) -> SourceTransaction:
    """The records of one source transaction (its parts on several partitions) as one transaction again."""
    first = entries[0][4]
    if first.kind == "sweep":
        return SourceTransaction(gtid=None, commit_ts=first.commit_ts, position=first.position, changes=[],
                                 sweep_from=first.stream_from)
    wire = [w for e in entries for w in e[4].wire]
    wire.sort(key=lambda w: w[9])   # index: binlog order
    return SourceTransaction(gtid=first.gtid, commit_ts=first.commit_ts, position=first.position, changes=[],
                             wire=wire, full_image=any(e[4].full_image for e in entries))


def run_rebuild(config: BridgeConfig, mappings: MappingSet, version: int, until_caught_up: bool,
                metrics: Any = None) -> int:
    """Runs the rebuild bridge; with until_caught_up it stops (cleanly) once it has caught up."""
    return rebuild_bridge(config, mappings, version, until_caught_up, metrics).run()


def rebuild_bridge(config: BridgeConfig, mappings: MappingSet, version: int, until_caught_up: bool = False,
                   metrics: Any = None):
    from cdc_bridge.pipeline import Bridge

    source_topic = config.command_log.topic or f"{config.name}.commands"
    cfg, maps = versioned(config, mappings, version)
    Path(cfg.state.dir).mkdir(parents=True, exist_ok=True)
    caught_up = threading.Event()

    def factory(bridge: Bridge, start: SourcePosition | None) -> CommandLogSource:
        src = CommandLogSource(cfg, source_topic, cfg.state.partitions, start)
        src.caught_up = caught_up
        return src

    bridge = Bridge(cfg, maps, metrics, source_factory=factory, fresh_start=LOG_START)
    bridge.caught_up = caught_up
    log.info("rebuild prepared", name=cfg.name, state=str(cfg.state.dir), command_log=source_topic,
             topics=[a.events_topic for a in maps.aggregates])
    if until_caught_up:
        def watch() -> None:
            caught_up.wait()
            bridge.stop()  # the open batch is flushed before run() returns

        threading.Thread(target=watch, daemon=True).start()
    return bridge
