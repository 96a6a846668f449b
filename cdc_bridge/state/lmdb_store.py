"""Aggregate state in LMDB: one environment, one named database per partition.

Layout of the environment (a directory, `state_dir`):

    p0000 … p{P-1}   one named DB per partition: b"<aggregate>\\x00<aggregate_id>" -> record JSON
    held             index of held children, all partitions, ordered by partition then age:
                     b"p0007\\x00<since µs, 20 digits>\\x00<aggregate>\\x00<id>\\x00<entity>\\x00<entity id>"
                     -> JSON [since, aggregate, aggregate_id, entity, entity_id]
    meta             b"<name>" -> JSON: format, partitions, batch, applied_position, the
                     caller's extra keys, and held_count:p0007 counters (internal)

One environment makes a whole batch, across all partitions, one LMDB write
transaction: the records, the held index, the applied position and the batch counter
commit together or not at all. Partitions stay first-class: each has its own key space
(its own DB, its own prefix in `held`), so a partition can later be copied out, moved
to another machine or rebuilt from a changelog without touching the others.

Writes go to an in-memory write-back cache (the current batch); reads see the cache
first, then the last commit. `commit()` writes the cache in one transaction;
`rollback()` drops it (the batch is redone after a Kafka transaction abort).

One writer: the store takes an exclusive lock file in the directory; a second writer
fails fast instead of interleaving batches. Read-only opens (inspect) take no lock.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import heapq
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import lmdb
import structlog

from cdc_bridge.jsoncodec import dumps as _dumps, loads as _loads
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.state.exceptions import (
    PartitionCountMismatchError,
    StateStoreError,
    StateStoreFullError,
    StateStoreLockedError,
    StateStoreReadOnlyError,
)
from cdc_bridge.state.record import AggregateRecord

log = structlog.get_logger(__name__)

# Crash tests only, never in production: hold every write of a sealed batch this long (ms), so that
# LMDB falls behind the Kafka commits and a kill leaves it there (the restart re-applies without
# publishing, or a worker restores from the changelog). A batch marked committed stays unwritten that
# long while the main loop goes on (a slow disk); a direct write() sleeps.
FAULT_DELAY_ENV = "CDC_BRIDGE_FAULT_DELAY_LMDB_WRITE_MS"

FORMAT_VERSION = 1
RESERVED_META = frozenset({"format", "partitions", "applied_position"})
_HELD_COUNT = "held_count:"
PROGRESS = "progress:"
_LOCK_FILE = "writer.lock"
_MAX_KEY = 511  # LMDB's default maximum key size (checked against the environment at open)


def partition_db_name(partition: int) -> bytes:
    return b"p%04d" % partition


def progress_key(partition: int) -> str:
    """Meta key of an aggregate worker's progress on a partition."""
    return PROGRESS + partition_db_name(partition).decode()


def _may_hold(record_json: bytes) -> bool:
    """False when the record surely holds no children (checked without parsing the JSON)."""
    return b'"held_since":null' not in record_json


def _held_refs(partition: int, record: dict[str, Any]) -> list["HeldRef"]:
    state = record.get("state") or {}
    return [HeldRef(partition, entry["since"], record["aggregate"], record["aggregate_id"], entity, entity_id)
            for entity, held in (state.get("held") or {}).items() for entity_id, entry in held.items()]


def _bounded(key: bytes, limit: int) -> bytes:
    """Keys longer than LMDB allows keep their (ordering) head and end with a digest of the whole."""
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key).hexdigest()[:32].encode()
    return key[: limit - len(digest) - 1] + b"#" + digest


class HeldRef(NamedTuple):
    """One entry of the held-children index: a child waiting in an aggregate's state for its parent."""

    partition: int
    since: float
    aggregate: str
    aggregate_id: str
    entity: str
    entity_id: str


class _HeldBatch:
    """The current batch's changes to one partition's held index.

    changes: key -> value (added) or None (removed); added: the added keys, sorted;
    skip: committed keys below it are all removed in this batch (where a scan may start).
    """

    __slots__ = ("changes", "added", "skip")

    def __init__(self) -> None:
        self.changes: dict[bytes, bytes | None] = {}
        self.added: list[bytes] = []
        self.skip = b""

    def add(self, key: bytes, value: bytes) -> None:
        if self.changes.get(key) is None:
            bisect.insort(self.added, key)
        self.changes[key] = value

    def remove(self, key: bytes) -> None:
        if self.changes.get(key) is not None:
            i = bisect.bisect_left(self.added, key)
            del self.added[i]
        self.changes[key] = None


class _Sealed:
    """A batch's changes, fixed for writing (seal) while the next batch is applied on top of them.

    Reads see: the open batch, then sealed batches newest first, then LMDB. `writes` is what the
    write transaction puts (records already encoded, so later in-place changes cannot leak in).
    """

    __slots__ = ("records", "held", "held_counts", "writes", "given_batch", "state", "batch", "seq",
                 "encoded", "owner", "not_before")

    def __init__(self, records: dict[int, dict[bytes, Any]], held: dict[int, _HeldBatch],
                 held_counts: dict[int, int], writes: list[tuple[Any, bytes, bytes | None]],
                 given_batch: int | None, encoded: dict[int, list[tuple[bytes, bytes | None]]]) -> None:
        self.records = records
        # partition -> the batch's records as written (key, JSON value; None: deleted): an aggregate
        # worker sends the same bytes to its changelog topic
        self.encoded = encoded
        self.held = held
        self.held_counts = held_counts
        self.writes = writes
        self.given_batch = given_batch
        # None: not written yet; "written"; "deferred": write() could not write it (LMDB map full,
        # or an earlier batch not written yet): release_written() writes it, growing the map if needed
        self.state: str | None = None
        self.batch = 0
        self.seq = 0                    # sealing order: batch n is written only right after n - 1
        self.owner = False              # marked committed: written by the owning thread at its next release_written()
        self.not_before = 0.0           # ... not before this time.monotonic() (fault injection)


class LmdbStateStore:
    """Aggregate records per partition, the held-children index and the applied position, in one LMDB env.

    Changes collect in the open batch; commit() writes them in ONE LMDB transaction. The pipeline
    splits that up: seal() fixes the batch (the next one is applied on top of it), mark_committed()
    says it may be written (after its Kafka commit), and release_written() (the owning thread)
    writes it and drops what is written (write() writes one on the calling thread). Sealed batches are written in
    sealing order, one at a time; wait_written() bounds how many may be pending.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        partitions: int,
        map_size: int = 1 << 30,
        *,
        max_map_size: int = 1 << 40,
        sync: bool = True,
        readonly: bool = False,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.path = Path(path)
        self.partitions = partitions
        self.readonly = readonly
        self._max_map_size = max_map_size
        self._lock_fd: int | None = None
        self._rtxn: lmdb.Transaction | None = None
        self._records: dict[int, dict[bytes, AggregateRecord | None]] = {}
        self._held: dict[int, _HeldBatch] = {}
        self._held_counts: dict[int, int] = {}
        self._held_floor: dict[int, float] = {}  # per partition: lower bound of every held `since` (absent: unknown)
        self._sealed: list[_Sealed] = []   # oldest first
        self._sealed_seq = 0               # seq of the newest sealed batch
        self._written_seq = 0              # seq of the last batch written
        self._write_lock = threading.Lock()   # one write transaction at a time (write() may run on any thread)
        self._closed = False
        self._fault_delay = float(os.environ.get(FAULT_DELAY_ENV, "0") or 0) / 1000
        self._fault_disk_free = 0.0     # (fault injection: when the slow "disk" has written what it holds)

        if readonly:
            if not (self.path / "data.mdb").exists():
                raise StateStoreError(f"no state store at {self.path} (nothing to open read-only)")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._take_writer_lock()
        try:
            self._env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=partitions + 4,
                subdir=True,
                sync=sync,
                # 1 fsync per commit, not 2: an OS crash may undo the last commit (re-applied up to Kafka's checkpoint)
                metasync=False,
                readonly=readonly,
                create=not readonly,
                readahead=False,
            )
            self._max_key = min(_MAX_KEY, self._env.max_key_size())
            self._meta_db = self._env.open_db(b"meta", create=not readonly)
            self._check_partitions()
            self._pdb = [self._env.open_db(partition_db_name(p), create=not readonly) for p in range(partitions)]
            self._held_db = self._env.open_db(b"held", create=not readonly)
        except BaseException as e:
            if hasattr(self, "_env"):
                self._env.close()
            self._release_writer_lock()
            if isinstance(e, lmdb.Error):
                raise StateStoreError(f"cannot open state store {self.path}: {e}") from e
            raise

    # ------------------------------------------------------------------ opening

    def _take_writer_lock(self) -> None:
        fd = os.open(self.path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateStoreLockedError(
                f"state store {self.path} is open for writing by another process; "
                "one bridge per state directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_writer_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _check_partitions(self) -> None:
        with self._env.begin(db=self._meta_db) as txn:
            raw = txn.get(b"partitions")
            fmt = txn.get(b"format")
        if raw is None:
            if self.readonly:
                raise StateStoreError(f"state store {self.path} was never initialized")
            with self._env.begin(write=True, db=self._meta_db) as txn:
                txn.put(b"format", _dumps(FORMAT_VERSION))
                txn.put(b"partitions", _dumps(self.partitions))
                txn.put(b"batch", _dumps(0))
            log.info("state_store_created", path=str(self.path), partitions=self.partitions)
            return
        stored = _loads(raw)
        if stored != self.partitions:
            raise PartitionCountMismatchError(
                f"state store {self.path} holds {stored} partitions but was opened with {self.partitions}: "
                f"aggregate ids are routed by murmur2(id) mod partitions, so changing the count moves them; "
                f"keep partitions: {stored}, or re-partition with `cdc-bridge rebuild`"
            )
        if fmt is not None and _loads(fmt) != FORMAT_VERSION:
            raise StateStoreError(
                f"state store {self.path} has format {_loads(fmt)}, this version reads {FORMAT_VERSION}; "
                "rebuild it with `cdc-bridge rebuild`"
            )

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise StateStoreError(f"state store {self.path} is closed")

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} out of range 0..{self.partitions - 1}")

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise StateStoreReadOnlyError(f"state store {self.path} is open read-only")

    def _read(self) -> lmdb.Transaction:
        """The read snapshot of the last commit; the current batch lives in the cache on top of it."""
        if self._rtxn is None:
            self._rtxn = self._env.begin(write=False)
        return self._rtxn

    def _end_read(self) -> None:
        if self._rtxn is not None:
            self._rtxn.abort()
            self._rtxn = None

    def record_key(self, aggregate: str, aggregate_id: str) -> bytes:
        key = f"{aggregate}\x00{aggregate_id}".encode("utf-8")
        return key if len(key) <= self._max_key else _bounded(key, self._max_key)

    def _held_key(self, ref: HeldRef) -> bytes:
        micros = max(0, round(ref.since * 1_000_000))
        raw = "%s\x00%020d\x00%s\x00%s\x00%s\x00%s" % (
            partition_db_name(ref.partition).decode(), micros, ref.aggregate, ref.aggregate_id, ref.entity, ref.entity_id,
        )
        return _bounded(raw.encode("utf-8"), self._max_key)

    @staticmethod
    def _held_prefix(partition: int) -> bytes:
        return partition_db_name(partition) + b"\x00"

    # ------------------------------------------------------------------ records

    def get(self, partition: int, aggregate: str, aggregate_id: str) -> AggregateRecord | None:
        """The record as of the current batch (cache first, then the last commit), or None.

        Records are values: after changing one, put() it back.
        """
        # the hot path (once per aggregate instance and transaction): the checks inlined, same errors
        if self._closed:
            self._check_open()
        if not 0 <= partition < self.partitions:
            self._check_partition(partition)
        key = f"{aggregate}\x00{aggregate_id}".encode("utf-8")
        if len(key) > self._max_key:
            key = _bounded(key, self._max_key)
        cached = self._records.get(partition)
        if cached is not None and key in cached:
            return cached[key]
        if self._sealed:
            for layer in reversed(self._sealed):
                cached = layer.records.get(partition)
                if cached is not None and key in cached:
                    return cached[key]
        raw = (self._rtxn or self._read()).get(key, db=self._pdb[partition])
        return AggregateRecord.from_json(raw) if raw is not None else None

    def put(self, partition: int, record: AggregateRecord) -> None:
        if self._closed or self.readonly:
            self._check_writable()
        if not 0 <= partition < self.partitions:
            self._check_partition(partition)
        key = f"{record.aggregate}\x00{record.aggregate_id}".encode("utf-8")
        if len(key) > self._max_key:
            key = _bounded(key, self._max_key)
        cached = self._records.get(partition)
        if cached is None:
            cached = self._records[partition] = {}
        cached[key] = record

    def delete(self, partition: int, aggregate: str, aggregate_id: str) -> None:
        self._check_writable()
        self._check_partition(partition)
        self._records.setdefault(partition, {})[self.record_key(aggregate, aggregate_id)] = None

    def records(self, partition: int) -> Iterator[AggregateRecord]:
        """Committed records of one partition in key order (inspect, rebuild, changelog)."""
        self._check_open()
        self._check_partition(partition)
        with self._env.begin(db=self._pdb[partition]) as txn:
            for _, raw in txn.cursor():
                yield AggregateRecord.from_json(raw)

    def raw_records(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Committed records of one partition as stored: (record key, record JSON), in key order
        (the changelog's form: handover to aggregate workers)."""
        self._check_open()
        self._check_partition(partition)
        with self._env.begin(db=self._pdb[partition]) as txn:
            for key, raw in txn.cursor():
                yield bytes(key), bytes(raw)

    # ------------------------------------------------------------------ held index

    def held_add(self, ref: HeldRef) -> None:
        self._check_writable()
        self._check_partition(ref.partition)
        key = self._held_key(ref)
        batch = self._held_batch(ref.partition)
        if self._held_exists(key, ref.partition, batch):
            return
        batch.add(key, _dumps([ref.since, ref.aggregate, ref.aggregate_id, ref.entity, ref.entity_id]))
        self._held_counts[ref.partition] = self.held_count(ref.partition) + 1
        floor = self._held_floor.get(ref.partition)
        if floor is not None and ref.since < floor:
            self._held_floor[ref.partition] = ref.since

    def held_remove(self, ref: HeldRef) -> None:
        self._check_writable()
        self._check_partition(ref.partition)
        key = self._held_key(ref)
        batch = self._held_batch(ref.partition)
        if not self._held_exists(key, ref.partition, batch):
            return
        batch.remove(key)
        self._held_counts[ref.partition] = self.held_count(ref.partition) - 1

    def _held_batch(self, partition: int) -> "_HeldBatch":
        batch = self._held.get(partition)
        if batch is None:
            batch = self._held[partition] = _HeldBatch()
        return batch

    def _held_exists(self, key: bytes, partition: int, batch: "_HeldBatch") -> bool:
        if key in batch.changes:
            return batch.changes[key] is not None
        for layer in reversed(self._sealed):
            b = layer.held.get(partition)   # the key names its partition: no other batch can hold it
            if b is not None and key in b.changes:
                return b.changes[key] is not None
        return self._read().get(key, db=self._held_db) is not None

    def held_count(self, partition: int) -> int:
        """Held children in one partition, including the current batch."""
        self._check_partition(partition)
        if partition in self._held_counts:
            return self._held_counts[partition]
        for layer in reversed(self._sealed):
            if partition in layer.held_counts:
                return layer.held_counts[partition]
        raw = self._read().get((_HELD_COUNT + partition_db_name(partition).decode()).encode(), db=self._meta_db)
        return _loads(raw) if raw is not None else 0

    def held_oldest(self, partition: int, limit: int | None = None, before: float | None = None) -> list[HeldRef]:
        """Held entries of one partition, oldest first (ties in key order), including the current batch.

        limit: at most this many; before: only those with since < before.
        """
        self._check_open()
        self._check_partition(partition)
        out: list[HeldRef] = []
        for ref in self._iter_held(partition):
            if (limit is not None and len(out) >= limit) or (before is not None and ref.since >= before):
                break
            out.append(ref)
        return out

    def _iter_held(self, partition: int) -> Iterator[HeldRef]:
        prefix = self._held_prefix(partition)
        batch = self._held.get(partition) or _HeldBatch()
        below = [layer.held[partition] for layer in self._sealed if partition in layer.held]
        if below:
            # sealed batches under the open one: one merged view (rare, small: held entries of two batches)
            merged = _HeldBatch()
            for b in below + [batch]:
                for k, v in b.changes.items():
                    if v is None:
                        merged.remove(k)
                    else:
                        merged.add(k, v)
            batch = merged
        changes = batch.changes

        def committed() -> Iterator[tuple[bytes, bytes]]:
            cur = self._read().cursor(db=self._held_db)
            if not cur.set_range(max(prefix, batch.skip)):
                return
            leading = True
            for k, v in cur:
                if not k.startswith(prefix):
                    return
                if k in changes:          # removed (or re-added) in the current batch
                    if leading and changes[k] is None:
                        # the oldest entries are the ones removed first: never walk past them again
                        batch.skip = k + b"\x00"
                    continue
                leading = False
                yield k, v

        added = ((k, changes[k]) for k in batch.added)
        for _, raw in heapq.merge(committed(), added, key=lambda kv: kv[0]):
            since, aggregate, aggregate_id, entity, entity_id = _loads(raw)
            yield HeldRef(partition, since, aggregate, aggregate_id, entity, entity_id)

    def held_due(self, before: float, partitions: Iterable[int] | None = None) -> list[HeldRef]:
        """Every held entry of `partitions` (default: all) with since < before, oldest first.

        Cheap when nothing is due: a lower bound of `since` per partition is kept in memory.
        The caller is expected to remove what it gets.
        """
        self._check_open()
        due: list[HeldRef] = []
        for p in (range(self.partitions) if partitions is None else partitions):
            floor = self._held_floor.get(p)
            if floor is not None and floor >= before:
                continue
            first_due = len(due)
            rest = float("inf")
            for ref in self._iter_held(p):
                if ref.since < before:
                    due.append(ref)
                else:
                    rest = ref.since
                    break
            # until a later scan confirms their removal, the bound stays at the oldest due entry
            self._held_floor[p] = due[first_due].since if len(due) > first_due else rest
        due.sort(key=lambda r: (r.since, r.partition, self._held_key(r)))
        return due

    def held_stats(self, partitions: Iterable[int] | None = None) -> tuple[int, float | None]:
        """(held children in `partitions` (default all), since of the oldest or None), including the current batch."""
        self._check_open()
        count = 0
        oldest: float | None = None
        for p in (range(self.partitions) if partitions is None else partitions):
            n = self.held_count(p)
            count += n
            if n:
                first = self.held_oldest(p, limit=1)
                if first and (oldest is None or first[0].since < oldest):
                    oldest = first[0].since
        return count, oldest

    # ------------------------------------------------------------------ batch

    @property
    def dirty(self) -> int:
        layers = [(self._records, self._held)] + [(x.records, x.held) for x in self._sealed]
        return sum(sum(len(c) for c in r.values()) + sum(len(b.changes) for b in h.values()) for r, h in layers)

    def commit(self, position: SourcePosition, extra_meta: dict[str, Any] | None = None) -> int:
        """Write the batch: dirty records, held index, applied position, batch counter, in ONE write txn.

        extra_meta: more meta keys (JSON values) written in the same transaction. The batch
        counter is extra_meta["batch"] when given (the pipeline passes its Kafka batch
        number, so meta and checkpoint agree), else the previous one + 1. Returns it.
        Grows the map (x2) and retries when LMDB is full.
        """
        if any(x.state is None and not x.owner for x in self._sealed):
            raise StateStoreError("commit() while a sealed batch is still being written; write it first")
        self.wait_written(0)
        layer = self.seal(position, extra_meta)
        self._end_read()
        try:
            self._write_now(layer)
        except BaseException:
            # not written: the batch is open again, as if never sealed (the caller may roll it back)
            self._sealed.pop()
            self._sealed_seq -= 1
            self._records, self._held, self._held_counts = layer.records, layer.held, layer.held_counts
            raise
        self.release_written()
        return layer.batch

    def seal(self, position: SourcePosition | None, extra_meta: dict[str, Any] | None = None) -> _Sealed:
        """Fix the open batch for writing (see commit() for extra_meta); a new open batch starts on top of it.
        position None: the applied position stays (a worker's progress is per partition, in extra_meta)."""
        self._check_writable()
        extra = dict(extra_meta or {})
        for k in extra:
            if k in RESERVED_META or k.startswith(_HELD_COUNT):
                raise ValueError(f"extra_meta key {k!r} is reserved by the state store")
        given_batch = extra.pop("batch", None)
        if given_batch is not None and (not isinstance(given_batch, int) or isinstance(given_batch, bool)):
            raise ValueError(f"extra_meta['batch'] must be an int, got {given_batch!r}")
        writes: list[tuple[Any, bytes, bytes | None]] = []
        encoded: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for p, cache in self._records.items():
            db = self._pdb[p]
            kv = encoded[p] = [(k, r.to_json() if r is not None else None) for k, r in cache.items()]
            writes.extend((db, k, v) for k, v in kv)
        for batch in self._held.values():
            writes.extend((self._held_db, k, v) for k, v in batch.changes.items())
        for p, n in self._held_counts.items():
            writes.append((self._meta_db, (_HELD_COUNT + partition_db_name(p).decode()).encode(), _dumps(n)))
        if position is not None:
            writes.append((self._meta_db, b"applied_position", _dumps(position.to_dict())))
        writes.extend((self._meta_db, k.encode("utf-8"), _dumps(v)) for k, v in extra.items())
        layer = _Sealed(self._records, self._held, self._held_counts, writes, given_batch, encoded)
        self._sealed_seq += 1
        layer.seq = self._sealed_seq
        self._records, self._held, self._held_counts = {}, {}, {}
        self._sealed.append(layer)
        return layer

    def amend(self, layer: _Sealed, extra_meta: dict[str, Any]) -> None:
        """More meta keys for a sealed batch not written yet (what is known only after its Kafka commit:
        an aggregate worker's changelog offsets)."""
        if layer.state is not None or layer.owner:
            raise StateStoreError("amend: the batch is already being written")
        for k in extra_meta:
            if k in RESERVED_META or k.startswith(_HELD_COUNT):
                raise ValueError(f"extra_meta key {k!r} is reserved by the state store")
        layer.writes.extend((self._meta_db, k.encode("utf-8"), _dumps(v)) for k, v in extra_meta.items())

    def write(self, layer: _Sealed) -> None:
        """The LMDB write transaction of a sealed batch, on the calling thread (any thread; it touches
        no other state of the store). Only right after the batch sealed before it: out of order, or
        with the map full, the batch is left "deferred" for release_written() (growing the map needs
        every transaction of the process closed, which only the owning thread can arrange)."""
        if self._fault_delay and not layer.owner:   # (a marked batch was held by release_written)
            log.warning("fault injection: LMDB write held", hold_ms=self._fault_delay * 1000)
            time.sleep(self._fault_delay)
        with self._write_lock:
            if layer.state is not None:
                return
            if layer.seq != self._written_seq + 1:
                layer.state = "deferred"
                return
            try:
                self._write_txn(layer)
            except lmdb.MapFullError:
                layer.state = "deferred"

    def mark_committed(self, layer: _Sealed) -> None:
        """The sealed batch may be written now (its Kafka transaction committed; any thread): the owning
        thread writes it at its next release_written(), bound_pending() or wait_written().

        Not on a writer thread of its own: py-lmdb releases the GIL around every put (putmulti too)
        and every read, so a writer thread and the main loop handed the GIL back and forth once per
        record, and the main loop's reads waited for it each time. Measured end to end (bench/run.py,
        500k rows): the writer thread cost 3.2 µs of CPU per row; the same writes on the main loop add
        about 1 µs to it, and throughput and the p99 commit latency at 5,000 rows/s improved."""
        layer.owner = True
        if self._fault_delay:
            # crash tests: a slow disk that writes one batch per hold, in order. The batch waits, the main
            # loop does not, so LMDB falls behind Kafka by as many batches as bound_pending() allows (a
            # hold per batch from its own commit would keep LMDB at most one hold behind: a test that kills
            # while a batch is in Kafka and not in LMDB could find it written already)
            log.warning("fault injection: LMDB write held", hold_ms=self._fault_delay * 1000)
            layer.not_before = max(time.monotonic(), self._fault_disk_free) + self._fault_delay
            self._fault_disk_free = layer.not_before

    def _write_txn(self, layer: _Sealed) -> None:
        with self._env.begin(write=True) as txn:
            if layer.given_batch is not None:
                batch = layer.given_batch
            else:
                raw = txn.get(b"batch", db=self._meta_db)
                batch = (_loads(raw) if raw is not None else 0) + 1
            # runs of puts into one database go in one putmulti call: each single put releases and
            # retakes the GIL, and under a busy main thread every retake waits (see cdc_bridge/tuning.py)
            run_db, run = None, []
            for db, k, v in layer.writes:
                if v is None or db is not run_db:
                    if run:
                        txn.cursor(db=run_db).putmulti(run)
                    run_db, run = db, []
                if v is None:
                    txn.delete(k, db=db)
                else:
                    run.append((k, v))
            if run:
                txn.cursor(db=run_db).putmulti(run)
            txn.put(b"batch", _dumps(batch), db=self._meta_db)
        layer.batch = batch
        layer.state = "written"
        self._written_seq = layer.seq

    def _write_now(self, layer: _Sealed) -> None:
        """Write a batch whose predecessors are written, on this (the owning) thread, growing the map
        when full. The lock keeps other threads' write() out of LMDB meanwhile, so growing is safe."""
        with self._write_lock:
            self._end_read()
            while layer.state != "written":
                try:
                    self._write_txn(layer)
                except lmdb.MapFullError:
                    self._grow()

    def release_written(self, *, wait: bool = False) -> None:
        """Drop the sealed batches that are written (oldest first); write the deferred ones and those
        marked committed (mark_committed). wait: the oldest, if held back by fault injection, is waited for
        (else it and the ones after it stay for a later call; so do the ones after it in any case)."""
        while self._sealed and (self._sealed[0].state is not None or self._sealed[0].owner):
            layer = self._sealed[0]
            if layer.state is None:
                hold = layer.not_before - time.monotonic()
                if hold > 0:
                    if not wait:
                        return
                    time.sleep(hold)
                wait = False   # (bound_pending() waits for one batch, not for every held one)
                self.write(layer)
            if layer.state == "deferred":
                self._write_now(layer)
            self._sealed.pop(0)
            self._end_read()  # the next read sees what was just written

    def bound_pending(self, max_batches: int, max_entries: int) -> None:
        """Wait for the oldest pending writes until at most max_batches sealed batches and max_entries
        records + index entries wait for LMDB (memory), and release what is written. Writes nothing
        below the bounds: the pipeline writes a committed batch after handing over the next one."""
        while self._sealed and (len(self._sealed) > max_batches or self._pending_entries() > max_entries):
            self.wait_written(len(self._sealed) - 1)

    def _pending_entries(self) -> int:
        return sum(len(x.writes) for x in self._sealed)

    def wait_written(self, keep: int = 0) -> None:
        """Wait until at most `keep` sealed batches are not written yet (oldest first), releasing them."""
        while len(self._sealed) > keep:
            head = self._sealed[0]
            if head.state is None and not head.owner:
                raise StateStoreError("a sealed batch was never handed to write() or mark_committed()")
            self.release_written(wait=True)

    def discard_sealed(self, layer: _Sealed) -> None:
        """Forget a sealed batch that will not be written (its Kafka transaction aborted). Only the newest,
        and only with nothing applied on top of it (rollback() first)."""
        if not self._sealed or self._sealed[-1] is not layer or layer.state is not None or layer.owner:
            raise StateStoreError("discard_sealed: only the newest sealed batch, before it is written")
        if self._records or self._held or self._held_counts:
            raise StateStoreError("discard_sealed: roll back the open batch first")
        self._sealed.pop()
        self._sealed_seq -= 1
        self._held_floor.clear()
        self._end_read()

    def rollback(self) -> None:
        """Drop the open batch (records, held index); the store is as of the last seal or commit again."""
        self._check_open()
        self._records.clear()
        self._held.clear()
        self._held_counts.clear()
        self._held_floor.clear()
        self._end_read()

    def _grow(self) -> None:
        self._end_read()
        current = self._env.info()["map_size"]
        new = current * 2
        if new > self._max_map_size:
            raise StateStoreFullError(
                f"state store {self.path} is full at map_size {current} bytes and may not grow past "
                f"max_map_size {self._max_map_size}; raise the limit or free disk space"
            )
        self._env.set_mapsize(new)
        log.warning("state_store_map_grown", path=str(self.path), map_size=new)

    # ------------------------------------------------------------------ partitions of a worker

    def partition_progress(self, partition: int) -> dict[str, Any] | None:
        """An aggregate worker's committed progress on a partition ({"commands_offset", "changelog_offset"}),
        or None when this store never held the partition."""
        self._check_open()
        self._check_partition(partition)
        with self._env.begin(db=self._meta_db) as txn:
            raw = txn.get(progress_key(partition).encode())
        return _loads(raw) if raw is not None else None

    def restore_partition(self, partition: int, entries: list[tuple[bytes, bytes | None]],
                          progress: dict[str, Any] | None = None, *, wipe: bool = False) -> None:
        """Write records read from a changelog as they are (key, record JSON; None deletes), keeping the
        held-children index in step, in ONE write transaction; progress (when given) is written with them.
        wipe: forget the partition first (records, index, progress). Only between batches: nothing open."""
        self._check_writable()
        self._check_partition(partition)
        if self._records or self._held or self._held_counts or self._sealed:
            raise StateStoreError("restore_partition with a batch open or being written; commit it first")
        db = self._pdb[partition]
        prefix = self._held_prefix(partition)
        count_key = (_HELD_COUNT + partition_db_name(partition).decode()).encode()
        with self._write_lock:
            self._end_read()
            while True:
                try:
                    with self._env.begin(write=True) as txn:
                        if wipe:
                            txn.drop(db, delete=False)
                            cur = txn.cursor(db=self._held_db)
                            if cur.set_range(prefix):
                                while cur.key().startswith(prefix):
                                    if not cur.delete():
                                        break
                            txn.delete(progress_key(partition).encode(), db=self._meta_db)
                            held = 0
                        else:
                            raw = txn.get(count_key, db=self._meta_db)
                            held = _loads(raw) if raw is not None else 0
                        for key, value in entries:
                            old = txn.get(key, db=db)
                            if old is not None and _may_hold(old):
                                for ref in _held_refs(partition, _loads(old)):
                                    if txn.delete(self._held_key(ref), db=self._held_db):
                                        held -= 1
                            if value is None:
                                txn.delete(key, db=db)
                                continue
                            txn.put(key, value, db=db)
                            if _may_hold(value):
                                for ref in _held_refs(partition, _loads(value)):
                                    if txn.put(self._held_key(ref), _dumps([ref.since, ref.aggregate, ref.aggregate_id,
                                                                             ref.entity, ref.entity_id]),
                                               db=self._held_db, overwrite=False):
                                        held += 1
                        txn.put(count_key, _dumps(max(0, held)), db=self._meta_db)
                        if progress is not None:
                            txn.put(progress_key(partition).encode(), _dumps(progress), db=self._meta_db)
                    break
                except lmdb.MapFullError:
                    self._grow()
        self._held_floor.pop(partition, None)

    # ------------------------------------------------------------------ meta, stats

    def applied_position(self) -> SourcePosition | None:
        """The position of the last committed batch, or None for a fresh store."""
        self._check_open()
        with self._env.begin(db=self._meta_db) as txn:
            raw = txn.get(b"applied_position")
        return SourcePosition.from_dict(_loads(raw)) if raw is not None else None

    def meta(self) -> dict[str, Any]:
        """Committed meta: format, partitions, batch, applied_position (as a dict) and the extra keys."""
        self._check_open()
        out: dict[str, Any] = {}
        with self._env.begin(db=self._meta_db) as txn:
            for k, v in txn.cursor():
                name = k.decode("utf-8")
                if not name.startswith(_HELD_COUNT):
                    out[name] = _loads(v)
        return out

    @property
    def map_size(self) -> int:
        return self._env.info()["map_size"]

    def stats(self) -> dict[str, Any]:
        """For metrics and inspect.

        size_bytes:     bytes of the pages in use (the data file may be sparse up to map_size)
        map_size:       current LMDB map size (grows x2 when full)
        map_used_ratio: size_bytes / map_size
        entries:        aggregate records in all partitions, as of the last commit
        held:           held children in all partitions, including the current batch
        dirty:          records and index entries waiting in the current batch
        """
        self._check_open()
        info = self._env.info()
        psize = self._env.stat()["psize"]
        used = (info["last_pgno"] + 1) * psize
        with self._env.begin() as txn:
            entries = sum(txn.stat(db)["entries"] for db in self._pdb)
        return {
            "size_bytes": used,
            "map_size": info["map_size"],
            "map_used_ratio": used / info["map_size"],
            "entries": entries,
            "held": self.held_stats()[0],
            "dirty": self.dirty,
        }

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the environment. An uncommitted batch is dropped."""
        if self._closed:
            return
        # batches marked committed are written (they are committed in Kafka); others are dropped
        try:
            self.release_written(wait=True)
        except Exception as e:  # noqa: BLE001 - closing: report, do not mask the caller's error
            log.error("state_store_write_failed", path=str(self.path), error=str(e))
        self._end_read()
        self._records.clear()
        self._held.clear()
        self._held_counts.clear()
        self._sealed.clear()
        self._env.close()
        self._release_writer_lock()
        self._closed = True

    def __enter__(self) -> "LmdbStateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
