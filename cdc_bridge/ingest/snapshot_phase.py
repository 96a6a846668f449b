"""The snapshot phase: existing rows become state (and `<Aggregate>Snapshotted` events) before streaming.

A snapshot reads the mapped tables in a consistent view tied to a binlog position P
(source/snapshot.py), aggregate by aggregate (a chunk of roots with their children),
and pushes each chunk through the normal pipeline as a pseudo source transaction of
`snapshot` row changes. Streaming then starts at exactly P: nothing lost or doubled.

Crash safety. Every Kafka transaction of the phase carries the checkpoint position P
(the stream start) plus the snapshot's progress (`cursor`, the last finished chunk);
LMDB stores the same. After a crash the snapshot resumes after the last finished
chunk in a NEW consistent view P2 >= P. Aggregates read in that view are stamped with
P2 as their last applied position, so the binlog between P and P2, which streaming
still reads from P, is skipped for them (they already show it) and applied to the
aggregates read before the crash. Known limit: a crash in the instant between a Kafka
commit and its LMDB commit re-reads the one chunk concerned in view P2 without
publishing it again; changes to its aggregates between P and P2 are then not announced.

Children whose parent does not exist are read last (an orphans pass per aggregate) and
applied in one go, so they are held like in streaming.

With the change stream on, each chunk also carries its rows as Debezium read events (op r) of the
streamed tables; a table read for several aggregates gives them once, from the first aggregate that
reads it.

A snapshot over existing state (`cdc-bridge snapshot`, or snapshot.mode when_needed after
the saved binlog position was purged) publishes only differences: unchanged aggregates
emit nothing, changed ones their update events, and aggregates that no longer exist
their deleted event (the sweep at the end); children the state knows but the snapshot
no longer finds get their removed event.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import structlog

from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.snapshot import SnapshotProgress, SnapshotReader
from cdc_bridge.source.transaction import RowChange, SourceTransaction

if TYPE_CHECKING:
    from cdc_bridge.ingest.pipeline import Batch, IngestPipeline as Bridge

log = structlog.get_logger(__name__)

CHUNKS_PER_KAFKA_TRANSACTION = 10


class SnapshotPhase:
    def __init__(self, bridge: "Bridge") -> None:
        self.bridge = bridge
        self.config = bridge.config
        self._shapes: dict[str, dict[str, Any]] = {}   # aggregate -> {table: TableShape} it streams (change stream)
        self._first_record = False

    # ------------------------------------------------------------------ entry points
    def take(self, over_existing_state: bool) -> SourcePosition:
        """A new snapshot; returns the position streaming starts from."""
        return self._run(progress=None, over_existing_state=over_existing_state)

    def resume(self, progress: dict[str, Any], replay_until: dict[str, Any] | None = None) -> SourcePosition:
        """Continues an unfinished snapshot after its last finished chunk (LMDB's).

        replay_until: Kafka's cursor when LMDB is behind it: the chunks up to it are applied
        to state without being published again.
        """
        log.warning("resuming an unfinished snapshot", cursor=progress.get("cursor"), replay_until=replay_until)
        return self._run(progress=progress, over_existing_state=bool(progress.get("over_existing_state")),
                         replay_until=replay_until)

    # ------------------------------------------------------------------ the phase
    def _run(self, progress: dict[str, Any] | None, over_existing_state: bool,
             replay_until: dict[str, Any] | None = None) -> SourcePosition:
        from cdc_bridge.ingest.pipeline import Batch

        b = self.bridge
        stream = b.change_stream
        reader = SnapshotReader(self.config.source, b.mappings.snapshot_aggregates(),
                                chunk_size=self.config.snapshot.chunk_size,
                                describe=stream.spec.tables if stream is not None else ())
        self._first_record = progress is None   # source.snapshot "first" on the first record of a new snapshot
        view = reader.open()
        view_ts = time.time()
        if progress is None:
            progress = {"stream_from": view.to_dict(), "view": view.to_dict(), "cursor": None, "done": False,
                        "rows": 0, "over_existing_state": over_existing_state, "started_at": view_ts}
        else:
            progress = {**progress, "view": view.to_dict()}
        stream_from = SourcePosition.from_dict(progress["stream_from"])
        if b.origin is None:
            b.origin = stream_from
        # the snapshot is now the story of this state: carried in every later checkpoint
        b.checkpoint_extra = {"snapshot": progress}
        b._commit_checkpoint_only(stream_from)
        log.info("snapshot started", view=str(view), stream_from=str(stream_from), over_existing_state=over_existing_state,
                 resumed_after=progress.get("cursor"))
        meter = SnapshotProgress(reader.estimate())
        meter.skip(int(progress.get("rows", 0)))  # read before a restart: counts for progress, not for rows/s
        tty = sys.stderr.isatty()
        batch, chunks_in_batch = Batch(), 0
        orphans: list[RowChange] = []
        orphans_of: str | None = None
        orphans_last = False
        try:
            for chunk in reader.chunks(after=progress.get("cursor")):
                last = bool(chunk.cursor.get("done"))
                if chunk.orphans:
                    # orphans of one aggregate are applied together (one aggregate's held children may
                    # span chunks; applying them in two pseudo-transactions at one position would skip some)
                    if orphans_of not in (None, chunk.aggregate):
                        self._apply_orphans(batch, orphans, view, view_ts, orphans_of, reader)
                        orphans = []
                    orphans_of = chunk.aggregate
                    orphans.extend(chunk.changes)
                    orphans_last = last
                    continue
                if orphans:
                    self._apply_orphans(batch, orphans, view, view_ts, orphans_of, reader)
                    orphans, orphans_of = [], None
                # over existing state the apply stage also removes what the chunk no longer shows
                txn = SourceTransaction(gtid=view.gtid, commit_ts=view_ts, position=view, changes=chunk.changes,
                                        full_image=over_existing_state, snapshot_of=chunk.aggregate)
                if replay_until is not None:
                    # already in Kafka (LMDB missed its commit): state only, nothing published
                    b._replay(txn)
                    progress["cursor"] = chunk.cursor
                    progress["rows"] = int(progress.get("rows", 0)) + chunk.rows
                    if chunk.cursor == replay_until:
                        replay_until = None
                        b.apply.commit(stream_from, {"snapshot": dict(progress), "batch": b.batches_committed})
                    continue
                txn.change_records = self._change_records(reader, chunk.aggregate, chunk.changes, view, view_ts, last)
                b._apply(txn, batch)
                progress["cursor"] = chunk.cursor
                progress["rows"] = int(progress.get("rows", 0)) + chunk.rows
                meter.add(chunk.rows)
                chunks_in_batch += 1
                b.metrics.snapshot_rows.inc(chunk.rows)
                b.metrics.snapshot_progress.set(min(1.0, meter.ratio))
                if tty:
                    print("\r" + meter.render(), end="", file=sys.stderr, flush=True)
                if chunks_in_batch >= CHUNKS_PER_KAFKA_TRANSACTION or len(batch.events) >= self.config.batch.max_events:
                    self._flush(batch, stream_from, progress)
                    batch, chunks_in_batch = Batch(), 0
                if b._stop.is_set():
                    self._flush(batch, stream_from, progress)
                    log.info("stopped during the snapshot; it resumes at the next start", cursor=progress["cursor"])
                    from cdc_bridge.ingest.pipeline import StopRequested

                    raise StopRequested()
            if orphans:
                self._apply_orphans(batch, orphans, view, view_ts, orphans_of, reader, orphans_last)
            if over_existing_state:
                self._flush(batch, stream_from, progress)
                batch = Batch()
                self._sweep(batch, stream_from, view, view_ts)
            progress["done"] = True
            self._flush(batch, stream_from, progress)
            b.metrics.snapshot_progress.set(1.0)
        finally:
            reader.close()
            if tty:
                print(file=sys.stderr)
        log.info("snapshot finished", rows=progress["rows"], seconds=round(time.time() - progress["started_at"], 1),
                 stream_from=str(stream_from))
        return stream_from

    def _flush(self, batch: "Batch", stream_from: SourcePosition, progress: dict[str, Any]) -> None:
        b = self.bridge
        b.checkpoint_extra = {"snapshot": dict(progress)}
        if batch:
            b._flush(batch, position=stream_from)
        else:
            b._commit_checkpoint_only(stream_from)

    def _apply_orphans(self, batch: "Batch", changes: list[RowChange], view: SourcePosition, ts: float,
                       aggregate: str | None, reader: SnapshotReader, last: bool = False) -> None:
        txn = SourceTransaction(gtid=view.gtid, commit_ts=ts, position=view, changes=changes, snapshot_of=aggregate)
        txn.change_records = self._change_records(reader, aggregate, changes, view, ts, last)
        self.bridge._apply(txn, batch)

    def _change_records(self, reader: SnapshotReader, aggregate: str | None, changes: list[RowChange],
                        view: SourcePosition, ts: float, last: bool) -> list[tuple] | None:
        """The chunk's rows as change stream records (op r), for the tables this aggregate is the first to read."""
        stream = self.bridge.change_stream
        if stream is None or aggregate is None:
            return None
        shapes = self._shapes.get(aggregate)
        if shapes is None:
            owner: dict[str, str] = {}
            for agg in self.bridge.mappings.snapshot_aggregates():
                for tm in agg.tables():
                    owner.setdefault(tm.table, agg.aggregate)
            shapes = self._shapes[aggregate] = {
                t: shape for t, a in owner.items()
                if a == aggregate and t in stream.spec.tables and (shape := reader.table_shape(a, t)) is not None}
        records = stream.snapshot_records(changes, shapes, view, ts, first=self._first_record, last=last)
        if records:
            self._first_record = False
        return records

    def _sweep(self, batch: "Batch", stream_from: SourcePosition, view: SourcePosition, ts: float) -> None:
        """Aggregates in state that this snapshot did not see no longer exist: the apply stage deletes
        them (apply/applier.py; with workers, each for its partitions, from the commands topic's sweep)."""
        self.bridge._apply(SourceTransaction(gtid=view.gtid, commit_ts=ts, position=view, changes=[], sweep_from=stream_from),
                           batch)
