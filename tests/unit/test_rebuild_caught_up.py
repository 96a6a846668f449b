"""CommandLogSource (cdc-bridge rebuild): when it reports 'caught up', and the order it replays in.

No broker: `cdc_bridge.rebuild.Consumer` is replaced by a fake reading an in-memory command
log. The records are built with the real encoder (`command_log_records`, the real murmur2
partitioner), and the log behaves like a read_committed view of a transactional topic:
every Kafka transaction ends with a commit marker that takes an offset on each partition it
wrote to (so the high watermark is past the last record), records of an open transaction
count in the high watermark but cannot be read before the commit, and the reader's position
moves past a commit marker once it has read the records before it.

'Caught up' is checked from the caller's side: for every item the generator hands out (a
SourceTransaction, or None for a pass that yielded nothing) we note whether `caught_up` was
already set when the item arrived. Set "right after the K-th transaction" means: not yet set
when the K-th transaction (or anything before it) arrives, already set when the next item
arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from cdc_bridge import rebuild
from cdc_bridge.aggregate.router import partition_for
from cdc_bridge.config import BridgeConfig
from cdc_bridge.mapping.command import Command
from cdc_bridge.rebuild import CommandLogSource
from cdc_bridge.ingest import commands_topic
from cdc_bridge.ingest.commands_topic import decode_record
from cdc_bridge.mapping.translate import commands_from_wire
from cdc_bridge.sink.settings import KafkaSettings
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.settings import SourceSettings
from cdc_bridge.source.transaction import SourceTransaction

TOPIC = "shop.commands"
OFFSET_INVALID = -1001  # what librdkafka's position() reports for a partition nothing was read from yet
CAUGHT_UP = "rebuild caught up with the command log"


# --------------------------------------------------------------------------- the fake command log


class _Entry:
    __slots__ = ("record", "committed", "marker")

    def __init__(self, record: tuple | None, committed: bool, marker: bool = False) -> None:
        self.record, self.committed, self.marker = record, committed, marker


class FakeLog:
    """The partitions of the command-log topic: records, commit markers, open transactions."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.entries: list[list[_Entry]] = [[] for _ in range(partitions)]

    def begin(self) -> "FakeKafkaTxn":
        return FakeKafkaTxn(self)

    def write(self, records: Iterable[tuple]) -> None:
        """One committed Kafka transaction."""
        txn = self.begin()
        txn.produce(records)
        txn.commit()

    def high(self, p: int) -> int:
        return len(self.entries[p])


class FakeKafkaTxn:
    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.written: list[_Entry] = []
        self.touched: set[int] = set()

    def produce(self, records: Iterable[tuple]) -> None:
        for rec in records:
            topic, _key, _value, partition, _headers = rec
            assert topic == TOPIC
            e = _Entry(rec, committed=False)
            self.log.entries[partition].append(e)
            self.written.append(e)
            self.touched.add(partition)

    def commit(self) -> None:
        for e in self.written:
            e.committed = True
        for p in sorted(self.touched):
            self.log.entries[p].append(_Entry(None, committed=True, marker=True))


class FakeMessage:
    def __init__(self, partition: int, offset: int, rec: tuple) -> None:
        self._partition, self._offset = partition, offset
        _topic, self._key, self._value, _p, self._headers = rec

    def error(self) -> None:
        return None

    def headers(self) -> list | None:
        return list(self._headers) if self._headers else None

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return TOPIC


class FakeConsumer:
    """What CommandLogSource uses of confluent_kafka.Consumer, over a FakeLog.

    Each consume() first runs `before_poll(n)` (n = 1 for the first poll: a writer adding to the
    log), then reads the partitions in `partition_order`, skipping `paused` ones (a partition
    whose fetch lags), at most `max_per_poll` records per poll."""

    def __init__(self, log: FakeLog, conf: dict[str, Any]) -> None:
        self.log, self.conf = log, conf
        self.next: dict[int, int] = {}          # partition -> next offset to read (absent: nothing read yet)
        self.assigned: list[TopicPartition] | None = None
        self.polls = 0
        self.closed = False
        self.before_poll: Callable[[int], None] | None = None
        self.partition_order: list[int] = list(range(log.partitions))
        self.paused: set[int] = set()
        self.max_per_poll = 1_000_000

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        parts = {p: SimpleNamespace(id=p, error=None) for p in range(self.log.partitions)}
        return SimpleNamespace(topics={TOPIC: SimpleNamespace(topic=TOPIC, error=None, partitions=parts)})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = -1, cached: bool = False) -> tuple[int, int]:
        assert tp.topic == TOPIC
        return 0, self.log.high(tp.partition)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)
        for tp in partitions:
            assert tp.topic == TOPIC and tp.offset == OFFSET_BEGINNING

    def _read(self, p: int, budget: int) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        entries = self.log.entries[p]
        off = self.next.get(p, 0)
        while off < len(entries) and entries[off].committed:  # read_committed: stop at an open transaction
            e = entries[off]
            if e.marker:           # control record: never delivered, the position moves past it
                off += 1
                self.next[p] = off
                continue
            if len(out) >= budget:
                break
            out.append(FakeMessage(p, off, e.record))
            off += 1
            self.next[p] = off
        return out

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        assert self.assigned is not None and not self.closed
        self.polls += 1
        if self.before_poll:
            self.before_poll(self.polls)
        budget = min(num_messages, self.max_per_poll)
        out: list[FakeMessage] = []
        for p in self.partition_order:
            if p not in self.paused:
                out += self._read(p, budget - len(out))
        return out

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        msgs = self.consume(1, timeout)
        return msgs[0] if msgs else None

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.next.get(tp.partition, OFFSET_INVALID))
                for tp in partitions]

    def close(self) -> None:
        self.closed = True


class RecordingLog:
    """Stands in for rebuild's structlog logger."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def _add(self, level: str, event: str, **kw: Any) -> None:
        self.lines.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._add("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._add("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._add("error", event, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        self._add("debug", event, **kw)


# --------------------------------------------------------------------------- source transactions


def position(n: int) -> SourcePosition:
    """Source transaction n ends here; binlog files roll over every 4 transactions (order spans files)."""
    file_no = 1 + (n - 1) // 4
    return SourcePosition(gtid=f"0-1-{n}", binlog_file=f"mysql-bin.{file_no:06d}", binlog_pos=1000 + 10 * n)


def ids_on_partitions(partitions: int) -> dict[int, list[str]]:
    """A few aggregate ids per partition (the real murmur2 partitioner decides)."""
    out: dict[int, list[str]] = {p: [] for p in range(partitions)}
    i = 0
    while any(len(v) < 3 for v in out.values()):
        i += 1
        key = f"order-{i}"
        p = partition_for(key, partitions)
        if len(out[p]) < 3:
            out[p].append(key)
    return out


def source_txn(n: int, aggregate_ids: list[str], *, gtid_txn_id: bool = True) -> list[Command]:
    pos = position(n)
    txn_id = pos.gtid if gtid_txn_id else f"{pos.binlog_file}:{pos.binlog_pos}"
    return [
        Command(command_type="PlaceOrder", aggregate="Order", aggregate_id=agg, entity="root", entity_id=agg,
                operation="insert", payload={"txn": n, "row": i, "id": agg}, before=None, table="shop.orders",
                position=pos, txn_id=txn_id, commit_ts=1_700_000_000.0 + n, index=i)
        for i, agg in enumerate(aggregate_ids)
    ]


def batch_records(partitions: int, txns: list[list[Command]]) -> list[tuple]:
    """One Kafka transaction of the bridge: its commands, then a watermark (the batch end) on every partition."""
    end = txns[-1][0]
    return commands_topic.batch_records(TOPIC, partitions, partition_for, [(t, _txn_of(t)) for t in txns],
                                        end.position, end.commit_ts)


def is_mark(rec: tuple) -> bool:
    return commands_topic.record_kind(rec[4]) == commands_topic.WATERMARK


def _txn_of(cmds: list[Command]) -> SourceTransaction:
    c = cmds[0]
    gtid = c.txn_id if c.txn_id == c.position.gtid else None
    return SourceTransaction(gtid=gtid, commit_ts=c.commit_ts, position=c.position)


class Shop:
    """Writes numbered source transactions, spread over the partitions, to the fake log."""

    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.ids = ids_on_partitions(log.partitions)
        self.n = 0
        self.written: dict[int, list[Command]] = {}

    def txn(self) -> list[Command]:
        """The next source transaction: rows of aggregates on two or three different partitions."""
        self.n += 1
        n, parts = self.n, self.log.partitions
        picks = [self.ids[(n + k) % parts][(n + k) % 3] for k in range(2 + n % 2)]
        cmds = source_txn(n, picks, gtid_txn_id=n % 3 != 0)
        self.written[n] = cmds
        return cmds

    def txn_on(self, partition: int) -> list[Command]:
        """The next source transaction, with rows of aggregates on `partition` only."""
        self.n += 1
        cmds = source_txn(self.n, self.ids[partition][:2])
        self.written[self.n] = cmds
        return cmds

    def commit_batch(self, size: int = 1) -> None:
        self.log.write(batch_records(self.log.partitions, [self.txn() for _ in range(size)]))


# --------------------------------------------------------------------------- driving the source


def make_source(monkeypatch: pytest.MonkeyPatch, log: FakeLog,
                start: SourcePosition | None = None) -> tuple[CommandLogSource, FakeConsumer, RecordingLog]:
    consumers: list[FakeConsumer] = []

    def factory(conf: dict[str, Any]) -> FakeConsumer:
        consumers.append(FakeConsumer(log, conf))
        return consumers[-1]

    monkeypatch.setattr(rebuild, "Consumer", factory)
    rec = RecordingLog()
    monkeypatch.setattr(rebuild, "log", rec)
    cfg = BridgeConfig(name="shop", source=SourceSettings(host="db", user="cdc"),
                       kafka=KafkaSettings(bootstrap_servers="kafka:9092"),
                       state={"partitions": log.partitions})
    src = CommandLogSource(cfg, TOPIC, log.partitions, start)
    [consumer] = consumers
    assert consumer.conf["isolation.level"] == "read_committed"
    return src, consumer, rec


def take(src: CommandLogSource, it: Any, transactions: int, max_items: int = 200) -> list[tuple[Any, bool]]:
    """Items until `transactions` transactions came out, each with caught_up as it was when the item arrived."""
    seen: list[tuple[Any, bool]] = []
    while sum(1 for item, _ in seen if item is not None) < transactions:
        assert len(seen) < max_items, f"only {sum(i is not None for i, _ in seen)} transactions in {len(seen)} items"
        item = next(it)
        seen.append((item, src.caught_up.is_set()))
    return seen


def stop(src: CommandLogSource, it: Any, consumer: FakeConsumer) -> None:
    src.stop()
    with pytest.raises(StopIteration):
        next(it)
    assert consumer.closed


def commands_of(txn: Any) -> list[Any]:
    """The rebuild's transaction's commands (it carries them in their wire form) as Command objects."""
    return commands_from_wire(txn.wire, txn.position, txn.txn_id, txn.commit_ts)


def txn_numbers(items: list[tuple[Any, bool]]) -> list[int]:
    return [commands_of(item)[0].payload["txn"] for item, _ in items if item is not None]


def flags_around_kth(items: list[tuple[Any, bool]], k: int) -> tuple[list[bool], bool]:
    """caught_up at the arrival of items up to and including the k-th transaction, and at the next item."""
    count = 0
    for i, (item, _) in enumerate(items):
        if item is not None:
            count += 1
        if count == k:
            return [f for _, f in items[: i + 1]], items[i + 1][1]
    raise AssertionError(f"fewer than {k} transactions")


def assert_replayed(item: SourceTransaction, original: list[Command]) -> None:
    first = original[0]
    assert isinstance(item, SourceTransaction)
    assert item.position == first.position
    assert item.commit_ts == first.commit_ts
    own = first.txn_id if first.txn_id != f"{first.position.binlog_file}:{first.position.binlog_pos}" else None
    assert item.gtid == own
    assert item.changes == []
    assert [c.model_dump() for c in commands_of(item)] == [c.model_dump() for c in original]


# --------------------------------------------------------------------------- 1. steady writes


@pytest.mark.parametrize("partitions,batches", [
    (3, [1, 1, 1, 1, 1]),       # K = 5, one source transaction per Kafka transaction
    (3, [2, 1, 3]),             # K = 6, several source transactions per Kafka transaction
    (1, [1, 1]),                # K = 2, a single partition
    (4, [1]),                   # K = 1
])
def test_steady_writes_caught_up_right_after_the_kth_transaction(monkeypatch, partitions, batches):
    """K transactions in the log at start, a new one committed after every fetch: no pass is idle.
    caught_up is not set up to the K-th transaction and is set before the next item arrives; the
    replay goes on with the new transactions, in order."""
    log = FakeLog(partitions)
    shop = Shop(log)
    for size in batches:
        shop.commit_batch(size)
    k = shop.n
    src, consumer, rec = make_source(monkeypatch, log)
    consumer.partition_order = list(reversed(range(partitions)))  # the last partition is fetched first
    consumer.before_poll = lambda n: shop.commit_batch() if n > 1 else None  # lands after the 1st fetch

    it = src.transactions()
    items = take(src, it, k + 5)

    assert all(item is not None for item, _ in items), "the log never idles: every pass yields"
    assert txn_numbers(items) == list(range(1, k + 6))
    for item, _ in items:
        assert_replayed(item, shop.written[commands_of(item)[0].payload["txn"]])
    before, after = flags_around_kth(items, k)
    assert not any(before), "caught_up set before the K-th transaction was handed out"
    assert after, "caught_up not set right after the K-th transaction"
    assert [line for line in rec.lines if line[1] == CAUGHT_UP] == [("info", CAUGHT_UP, {"topic": TOPIC})]
    assert [tp.partition for tp in consumer.assigned] == list(range(partitions))
    stop(src, it, consumer)


@pytest.mark.parametrize("partitions,per_poll", [
    (3, 5),
    (1, 1),   # a pass often yields a transaction and leaves nothing waiting, mid-log
    (2, 3),
])
def test_steady_writes_backlog_read_in_small_fetches(monkeypatch, partitions, per_poll):
    """The start log is read over many small fetches, then the writer commits a new transaction
    before every fetch; no fetch straddles the end of the start log here. Not set before the K-th
    transaction (even in passes that leave nothing waiting), set right after it, order kept."""
    log = FakeLog(partitions)
    shop = Shop(log)
    for _ in range(8):
        shop.commit_batch()
    k = shop.n
    # the start log's records (commands + watermarks) take `polls` fetches; the writer
    # commits a new transaction before every later fetch
    start_records = sum(1 for p in range(partitions) for e in log.entries[p] if not e.marker)
    polls = -(-start_records // per_poll)
    assert polls >= 5
    src, consumer, rec = make_source(monkeypatch, log)
    consumer.max_per_poll = per_poll
    consumer.before_poll = lambda n: shop.commit_batch() if n > polls else None

    it = src.transactions()
    items = take(src, it, k + 4)

    assert txn_numbers(items) == list(range(1, k + 5))
    before, after = flags_around_kth(items, k)
    assert not any(before) and after
    assert sum(1 for line in rec.lines if line[1] == CAUGHT_UP) == 1
    stop(src, it, consumer)


@pytest.mark.parametrize("k", [0, 1, 4])
def test_steady_writes_kth_and_newer_in_the_same_fetch(monkeypatch, k):
    """As above, but the writer's new transaction is already there at the first fetch (committed
    between the end-offset look-up and the first fetch, then one before every fetch). The K-th
    transaction and the (K+1)-th come out of the same pass; caught_up must still be set before the
    (K+1)-th arrives (for K = 0: before the first transaction arrives)."""
    log = FakeLog(3)
    shop = Shop(log)
    for _ in range(k):
        shop.commit_batch()
    src, consumer, _rec = make_source(monkeypatch, log)
    consumer.before_poll = lambda n: shop.commit_batch()

    it = src.transactions()
    items = take(src, it, k + 3)

    assert txn_numbers(items) == list(range(1, k + 4))
    if k == 0:
        assert items[0][1], "empty log at start: caught up before the first new transaction"
    else:
        before, after = flags_around_kth(items, k)
        assert not any(before)
        assert after, "caught_up set only after newer transactions had been handed out"


# --------------------------------------------------------------------------- 2. waiting for a watermark


def test_not_caught_up_while_a_command_from_before_the_end_waits_for_a_watermark(monkeypatch):
    """A Kafka transaction (T2) was open at start: its commands on partition A and A's watermark
    were already written (inside A's end offset), B's watermark is written after the start (at or
    past B's end). After the commit, A is fetched but B's fetch lags: the reader is past every end
    offset, yet T2's commands still wait for B's watermark, so not caught up (passes yield None).
    Once B's watermark is read, T2 comes out, and caught_up is set."""
    log = FakeLog(2)
    shop = Shop(log)
    shop.commit_batch()                                    # T1, committed
    t2 = shop.txn_on(0)
    rec_t2 = batch_records(2, [t2])
    marks = {r[3]: r for r in rec_t2 if is_mark(r)}
    open_txn = log.begin()
    open_txn.produce([r for r in rec_t2 if not is_mark(r)] + [marks[0]])
    end_a, end_b = log.high(0), log.high(1)

    src, consumer, rec = make_source(monkeypatch, log)
    it = src.transactions()

    # T1 comes out; T2 cannot be read yet (open transaction, read_committed)
    items = take(src, it, 1)
    assert txn_numbers(items) == [1] and not items[0][1]
    assert next(it) is None and not src.caught_up.is_set()

    # B's watermark after the start, the commit; B's fetch lags behind A's; T3 comes after the start
    open_txn.produce([marks[1]])
    open_txn.commit()
    assert log.entries[1].index(next(e for e in log.entries[1] if e.record is marks[1])) >= end_b
    consumer.paused = {1}
    shop.commit_batch()
    for _ in range(3):
        assert next(it) is None, "T2 must wait for B's watermark"
        assert not src.caught_up.is_set(), "a command from before the end offsets still waits"
    # the reader is past every end offset: only the waiting commands keep it from being caught up
    a, b = consumer.position([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
    assert a.offset >= end_a and b.offset >= end_b
    assert not any(line[1] == CAUGHT_UP for line in rec.lines)

    consumer.paused = set()
    items = take(src, it, 2)
    assert txn_numbers(items) == [2, 3]
    assert_replayed(items[0][0], t2)
    assert items[0][1] is False, "caught_up set before T2 came out"
    # (T3, from after the start, comes out of the same pass as T2, before caught_up is set:
    # see test_steady_writes_kth_and_newer_in_the_same_fetch)
    assert next(it) is None and src.caught_up.is_set()
    assert sum(1 for line in rec.lines if line[1] == CAUGHT_UP) == 1
    stop(src, it, consumer)


def test_newer_commands_waiting_for_watermarks_do_not_hold_caught_up(monkeypatch):
    """Every command from before the end offsets has come out; a newer transaction's commands
    wait for a watermark (partition B's fetch lags): caught up all the same."""
    log = FakeLog(2)
    shop = Shop(log)
    shop.commit_batch()
    shop.commit_batch()
    src, consumer, rec = make_source(monkeypatch, log)
    it = src.transactions()
    items = take(src, it, 2)
    assert txn_numbers(items) == [1, 2] and not any(f for _, f in items)

    consumer.paused = {1}
    shop.commit_batch()                                    # T3: read on A, its B watermark lags
    item = next(it)
    assert item is None
    assert src.caught_up.is_set()
    assert sum(1 for line in rec.lines if line[1] == CAUGHT_UP) == 1

    consumer.paused = set()
    items = take(src, it, 1)
    assert txn_numbers(items) == [3]
    stop(src, it, consumer)


# --------------------------------------------------------------------------- 3. empty log


@pytest.mark.parametrize("partitions", [1, 3])
def test_empty_log_is_caught_up_at_once(monkeypatch, partitions):
    log = FakeLog(partitions)
    src, consumer, rec = make_source(monkeypatch, log)
    it = src.transactions()
    assert next(it) is None
    assert src.caught_up.is_set()
    assert consumer.polls == 1
    assert [line for line in rec.lines if line[1] == CAUGHT_UP] == [("info", CAUGHT_UP, {"topic": TOPIC})]

    # the log then grows: followed, and 'caught up' is not reported again
    shop = Shop(log)
    shop.commit_batch(2)
    shop.commit_batch()
    items = take(src, it, 3)
    assert txn_numbers(items) == [1, 2, 3]
    assert sum(1 for line in rec.lines if line[1] == CAUGHT_UP) == 1
    stop(src, it, consumer)


# --------------------------------------------------------------------------- 4. order


@pytest.mark.parametrize("partition_order,max_per_poll", [
    ([0, 1, 2, 3], 1_000_000),   # everything in one pass
    ([3, 2, 1, 0], 3),           # last partition first, tiny fetches
    ([2, 0, 3, 1], 5),
    ([1, 3, 0, 2], 1),           # one record per poll
])
def test_interleaved_partitions_come_out_in_source_order(monkeypatch, partition_order, max_per_poll):
    log = FakeLog(4)
    shop = Shop(log)
    for size in [1, 3, 1, 2, 4, 1, 2]:   # 14 source transactions over several binlog files
        shop.commit_batch(size)
    n = shop.n
    assert {c.position.binlog_file for cmds in shop.written.values() for c in cmds} >= {
        "mysql-bin.000001", "mysql-bin.000002", "mysql-bin.000003", "mysql-bin.000004"}
    # every partition holds commands of several transactions, so the merge really interleaves them
    for p in range(4):
        txns_here = {decode_record(e.record[2], e.record[4]).commands[0].payload["txn"] for e in log.entries[p]
                     if not e.marker and commands_topic.record_kind(e.record[4]) == commands_topic.TXN}
        assert len(txns_here) >= 3, (p, txns_here)

    src, consumer, _rec = make_source(monkeypatch, log)
    consumer.partition_order = partition_order
    consumer.max_per_poll = max_per_poll
    it = src.transactions()
    items = take(src, it, n, max_items=2000)

    got = [item for item, _ in items if item is not None]
    assert [t.position for t in got] == [position(i) for i in range(1, n + 1)]
    assert [t.position.order_key for t in got] == sorted(t.position.order_key for t in got)
    for t in got:
        assert_replayed(t, shop.written[commands_of(t)[0].payload["txn"]])
        assert [c.index for c in commands_of(t)] == list(range(len(t.wire)))
    # nothing new was written: caught up right after the last one came out, not before
    assert not any(f for _, f in items)
    assert next(it) is None and src.caught_up.is_set()
    stop(src, it, consumer)


def test_transactions_at_or_before_the_start_position_are_skipped(monkeypatch):
    """Resuming from the rebuild's checkpoint: what it already applied is not replayed again,
    and 'caught up' still waits for the rest of the start log."""
    log = FakeLog(3)
    shop = Shop(log)
    for size in [2, 1, 2, 1]:
        shop.commit_batch(size)
    src, consumer, _rec = make_source(monkeypatch, log, start=position(3))
    it = src.transactions()
    items = take(src, it, 3)
    assert txn_numbers(items) == [4, 5, 6]
    assert not any(f for _, f in items)
    assert next(it) is None and src.caught_up.is_set()
    stop(src, it, consumer)
