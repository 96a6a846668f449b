"""The aggregate runtime: source transaction of commands -> deciders over LMDB state -> domain events.

    runtime.apply(commands_of_one_source_txn, txn) -> ApplyResult(events, dead_letters)

For each source transaction, in binlog order:

1. Source time advances to the transaction's commit_ts: held children older than
   held_max_age_seconds (in source time) leave their aggregate as `orphan` dead letters.
2. Commands are grouped by (aggregate, aggregate_id), keeping their order; each group is
   routed to partition murmur2(aggregate_id) mod P, its record loaded (or the decider's
   initial state), commands at or before the record's last_position dropped (already
   applied), and the rest decided at once (the source transaction is the unit).
3. Every draft is evolved into the state; published drafts get sequence numbers
   record.sequence + 1, ... and become DomainEvents; the record is put back with the
   transaction's position and the held-children index is updated.
4. Partitions that now hold more than held_max_count children drop the oldest ones as
   `orphan` dead letters.

Everything is a function of the state and the transaction: no wall clock, no
randomness. Re-applying transactions the state has already seen changes nothing and
emits nothing; re-applying them to an older state (recovery after a Kafka commit that
LMDB missed) produces the very same events, ids and sequences again.

Nothing is durable until the caller commits: `commit(position)` after the Kafka
transaction committed, `rollback()` after it aborted (then redo the batch).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from cdc_bridge.aggregate.decider import HELD, Decider, held_entries, load_decider, reject, without_held
from cdc_bridge.aggregate.event import TOMBSTONE_HEADER, DomainEvent, rfc3339
from cdc_bridge.aggregate.exceptions import DeciderError, UnknownAggregateError
from cdc_bridge.aggregate.native import core_for
from cdc_bridge.aggregate.router import _partition_of, partition_for
from cdc_bridge.jsoncodec import dumps
from cdc_bridge.mapping.command import Command, DeadLetter
from cdc_bridge.mapping.packed import unpack_wire
from cdc_bridge.mapping.translate import command_to_wire, commands_from_wire
from cdc_bridge.mapping.schema import AggregateMapping
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.state.lmdb_store import HeldRef, LmdbStateStore
from cdc_bridge.state.record import AggregateRecord

log = structlog.get_logger(__name__)

ORPHAN = "orphan"


class TxnInfo(Protocol):
    """What apply() needs of a source transaction (SourceTransaction fits)."""

    @property
    def gtid(self) -> str | None: ...
    @property
    def commit_ts(self) -> float: ...
    @property
    def position(self) -> SourcePosition: ...
    @property
    def txn_id(self) -> str: ...


@dataclass(slots=True)
class ApplyResult:
    """events: to publish, in order (per aggregate instance: sequence order).
    dead_letters: orphans expired by age, rejections, then orphans expired by count.
    skipped: commands ignored because their aggregate had already applied their transaction.
    """

    events: list[DomainEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0


class AggregateRuntime:
    """Applies source transactions of commands to aggregates whose state lives in an LmdbStateStore."""

    def __init__(
        self,
        deciders: Mapping[str, Decider],
        mappings: Mapping[str, AggregateMapping] | Iterable[AggregateMapping],
        store: LmdbStateStore,
        partitions: int,
        held_max_age_seconds: float | None,
        held_max_count: int | None,
        schema_versions: Mapping[str, int] | None = None,
    ) -> None:
        if store.partitions != partitions:
            raise ValueError(f"runtime partitions {partitions} != state store partitions {store.partitions}")
        if held_max_age_seconds is not None and held_max_age_seconds <= 0:
            raise ValueError("held_max_age_seconds must be > 0 (or None for no age bound)")
        if held_max_count is not None and held_max_count < 0:
            raise ValueError("held_max_count must be >= 0 (or None for no count bound)")
        self.deciders = dict(deciders)
        by_name = dict(mappings) if isinstance(mappings, Mapping) else {m.aggregate: m for m in mappings}
        missing = sorted(set(self.deciders) - set(by_name))
        if missing:
            raise ValueError(f"no mapping for aggregate(s) {', '.join(missing)}")
        self.mappings = by_name
        self.store = store
        self.partitions = partitions
        self.held_max_age_seconds = held_max_age_seconds
        self.held_max_count = held_max_count
        versions = dict(schema_versions or {})
        self.schema_versions = {a: versions.get(a, by_name[a].schema_version) for a in self.deciders}
        self.topics = {a: by_name[a].events_topic for a in self.deciders}
        # the compiled apply of declarative aggregates (aggregate/native.py): aggregate -> (decider, core or
        # None for the decider in Python), rebuilt when a decider is replaced (a mapping reload)
        self._cores: dict[str, tuple[Decider, Any]] = {}

    @classmethod
    def from_mappings(
        cls,
        mappings: Iterable[AggregateMapping],
        store: LmdbStateStore,
        *,
        held_max_age_seconds: float | None,
        held_max_count: int | None,
    ) -> "AggregateRuntime":
        """A runtime with each mapping's decider (its Python class, else the declarative one)."""
        ms = list(mappings)
        return cls(
            {m.aggregate: load_decider(m) for m in ms},
            ms,
            store,
            store.partitions,
            held_max_age_seconds,
            held_max_count,
        )

    # ------------------------------------------------------------------ apply

    def apply(self, commands: list[Command], txn: TxnInfo, partitions: Collection[int] | None = None) -> ApplyResult:
        """Apply the commands of ONE source transaction (binlog order). Deterministic; see the module doc.

        partitions: where held children may expire at this transaction's time (default: all). An
        aggregate worker passes the one partition the commands came from: each partition's expiry then
        depends on that partition's own records only, whichever worker owns it.
        """
        pos, txn_id, commit_ts = txn.position, txn.txn_id, txn.commit_ts
        if all((c.position is pos or c.position == pos) and c.txn_id == txn_id and c.commit_ts == commit_ts
               for c in commands):   # always, but for hand-made commands: the wire form says the same
            return self.apply_wire([command_to_wire(c) for c in commands], txn, partitions)
        return self._apply_mixed(commands, txn, partitions)

    def apply_wire(self, wire: list[tuple], txn: TxnInfo, partitions: Collection[int] | None = None) -> ApplyResult:
        """apply() of commands in their wire form (mapping/translate.py command_to_wire; what the reader
        process sends), all of this transaction: their position, txn_id and commit_ts are txn's. A
        declarative aggregate's commands go to its compiled core as they are; Command objects are built
        only for a Python decider and for rejections."""
        groups: dict[tuple[str, str], list[tuple]] = {}
        for w in wire:
            key = (w[1], w[2])
            group = groups.get(key)
            if group is None:
                groups[key] = [w]
            else:
                group.append(w)
        for ws in groups.values():
            if len(ws) > 1:
                ws.sort(key=_wire_index)   # stable: binlog order within the transaction
        return self._apply_groups([(a, i, len(ws), ws, None) for (a, i), ws in groups.items()], txn, partitions)

    def apply_packed(self, groups: list[tuple[str, str, int, bytes]], txn: TxnInfo,
                     partitions: Collection[int] | None = None) -> ApplyResult:
        """apply_wire() of commands in their packed form (mapping/packed.py PackedCommands.groups: per
        aggregate instance, in the order apply_wire groups them). A declarative aggregate's compiled
        core reads the bytes; a Python decider gets the tuples back. Same result as apply_wire."""
        return self._apply_groups([(a, i, n, None, raw) for a, i, n, raw in groups], txn, partitions)

    def _apply_groups(self, groups: list[tuple[str, str, int, list[tuple] | None, bytes | None]], txn: TxnInfo,
                      partitions: Collection[int] | None) -> ApplyResult:
        """The commands of one transaction per aggregate instance, each group (aggregate, aggregate_id,
        number of commands, wire tuples in binlog order or None, their packed bytes or None)."""
        result = ApplyResult()
        result.dead_letters.extend(self.expire_held(txn.commit_ts, partitions))
        grown: set[int] = set()
        n_partitions = self.partitions   # >= 1 (the store checked it): partition_for's check skipped
        partition_of = _partition_of
        get = self.store.get
        order_key = txn.position.order_key
        encoded: _TxnEncoding | None = None   # built at the first group the compiled core applies
        for aggregate, aggregate_id, n, ws, packed in groups:
            decider = self._decider(aggregate)
            partition = partition_of(aggregate_id, n_partitions)
            record = get(partition, aggregate, aggregate_id)
            if record is not None and record.last_position is not None and order_key <= record.last_position.order_key:
                result.skipped += n   # already applied to this instance
                continue
            core = self._core(aggregate, decider)
            if core is not None:   # a new instance: the core starts from the initial state itself
                if encoded is None:
                    encoded = _TxnEncoding(txn)
                grew = self._apply_group_wire(core, partition, record, aggregate, aggregate_id, ws, packed, txn,
                                              result, encoded)
            else:
                grew = self._apply_group(decider, partition,
                                         record or AggregateRecord(aggregate, aggregate_id, decider.initial_state()),
                                         commands_from_wire(ws if ws is not None else unpack_wire(packed),
                                                            txn.position, txn.txn_id, txn.commit_ts), txn, result)
            if grew:
                grown.add(partition)

        for partition in sorted(grown):
            result.dead_letters.extend(self._expire_over_count(partition))
        return result

    def _apply_mixed(self, commands: list[Command], txn: TxnInfo, partitions: Collection[int] | None) -> ApplyResult:
        """apply() of commands that do not all carry the transaction's position, txn_id and commit_ts (made
        by hand): each is skipped or applied by its own position, by the deciders in Python."""
        result = ApplyResult()
        result.dead_letters.extend(self.expire_held(txn.commit_ts, partitions))
        groups: dict[tuple[str, str], list[Command]] = {}
        for cmd in commands:
            groups.setdefault((cmd.aggregate, cmd.aggregate_id), []).append(cmd)
        grown: set[int] = set()
        for (aggregate, aggregate_id), cmds in groups.items():
            decider = self._decider(aggregate)
            cmds.sort(key=_by_index)
            partition = partition_for(aggregate_id, self.partitions)
            record = self.store.get(partition, aggregate, aggregate_id)
            if record is not None and record.last_position is not None:
                fresh = [c for c in cmds if c.position.order_key > record.last_position.order_key]
                result.skipped += len(cmds) - len(fresh)
                if not fresh:
                    continue
                cmds = fresh
            if self._apply_group(decider, partition,
                                 record or AggregateRecord(aggregate, aggregate_id, decider.initial_state()),
                                 cmds, txn, result):
                grown.add(partition)
        for partition in sorted(grown):
            result.dead_letters.extend(self._expire_over_count(partition))
        return result

    def _decider(self, aggregate: str) -> Decider:
        decider = self.deciders.get(aggregate)
        if decider is None:
            raise UnknownAggregateError(
                f"command for aggregate {aggregate!r}, which has no mapping loaded "
                f"(known: {', '.join(sorted(self.deciders)) or 'none'}); with aggregate workers: ingest runs "
                "newer mappings than this worker, restart every worker with the mapping files ingest reads"
            )
        return decider

    def _apply_group(
        self,
        decider: Decider,
        partition: int,
        record: AggregateRecord,
        cmds: list[Command],
        txn: TxnInfo,
        result: ApplyResult,
    ) -> bool:
        """Decide and evolve one aggregate instance; True if it holds children it did not hold before."""
        aggregate, aggregate_id = record.aggregate, record.aggregate_id
        pos = txn.position
        try:
            decision = decider.decide(record.state, cmds)
            state = record.state
            for draft in decision.events:
                state = decider.evolve(state, draft)
        except Exception as e:
            raise DeciderError(
                f"{type(decider).__name__} failed on {aggregate} {aggregate_id} in source transaction "
                f"{txn.txn_id} ({pos}): {type(e).__name__}: {e}"
            ) from e
        sequence = record.sequence
        topic = self.topics[aggregate]
        version = self.schema_versions[aggregate]
        events = result.events
        txn_id = None
        for draft in decision.events:
            if draft.internal:
                continue
            if txn_id is None:
                txn_id = txn.txn_id
            sequence += 1
            events.append(
                DomainEvent(
                    event_type=draft.event_type,
                    aggregate=aggregate,
                    aggregate_id=aggregate_id,
                    sequence=sequence,
                    schema_version=version,
                    occurred_at=txn.commit_ts,
                    source={
                        "table": draft.table,
                        "gtid": txn.gtid,
                        "binlog_file": pos.binlog_file,
                        "binlog_pos": pos.binlog_pos,
                        "txn_id": txn_id,
                    },
                    data=draft.data,
                    topic=topic,
                    extra_headers={TOMBSTONE_HEADER: "1"} if draft.meta.get("tombstone") else {},
                )
            )
        if decision.rejections:
            result.dead_letters.extend(decision.rejections)

        before = record.state
        if before.get(HELD) or state.get(HELD):
            grew = self._reindex_held(partition, aggregate, aggregate_id, before, state)
            held_since = _oldest_held(state)
        else:   # nothing held before or after (the common case): the index is untouched
            grew = False
            held_since = None
        self.store.put(
            partition,
            AggregateRecord(
                aggregate=aggregate,
                aggregate_id=aggregate_id,
                state=state,
                sequence=sequence,
                last_position=pos,
                held_since=held_since,
            ),
        )
        return grew

    def _core(self, aggregate: str, decider: Decider) -> Any:
        got = self._cores.get(aggregate)
        if got is None or got[0] is not decider:
            got = self._cores[aggregate] = (decider, core_for(decider))
            log.info("apply path", aggregate=aggregate, compiled=got[1] is not None)
        return got[1]

    def _apply_group_wire(self, core: Any, partition: int, record: AggregateRecord | None, aggregate: str,
                          aggregate_id: str, wire: list[tuple] | None, packed: bytes | None, txn: TxnInfo,
                          result: ApplyResult, encoded: "_TxnEncoding") -> bool:
        """_apply_group through the compiled core: the state stays JSON from LMDB to LMDB, the events come
        out numbered, with their record values. Same events, state and dead letters as the Python path
        (tests/unit/aggregate/test_native_core.py). The commands: `wire`, or `packed` (mapping/packed.py)."""
        sequence = record.sequence if record is not None else 0
        version = self.schema_versions[aggregate]
        try:
            state_json, last, drafted, rejections, held = core.apply_wire(
                record.state_json if record is not None else None, packed if packed is not None else wire,
                aggregate_id, txn.commit_ts, encoded.txn_id, encoded.position, sequence, version,
                encoded.occurred_at, encoded.source_tail)
        except Exception as e:
            raise DeciderError(
                f"compiled declarative apply failed on {aggregate} {aggregate_id} in source transaction "
                f"{encoded.txn_id} ({txn.position}): {type(e).__name__}: {e}"
            ) from e
        topic = self.topics[aggregate]
        events = result.events
        commit_ts = txn.commit_ts
        for event_type, table, data_json, tombstone, value in drafted:
            sequence += 1
            events.append(DomainEvent(   # positional: this runs once per event; data decoded when read
                event_type, aggregate, aggregate_id, sequence, version, commit_ts, encoded.source(table),
                None, topic, {TOMBSTONE_HEADER: "1"} if tombstone else {}, value, data_json))
        if rejections:
            cmds = commands_from_wire(wire if wire is not None else unpack_wire(packed), txn.position, encoded.txn_id,
                                      commit_ts)
            result.dead_letters.extend(reject(cmds[i], reason, detail) for i, reason, detail in rejections)
        grew = False
        held_since = None
        if held or (record is not None and record.held_since is not None):
            old = {(e, i): entry["since"] for e, i, entry in held_entries(record.state)} if record is not None else {}
            grew = self._reindex(partition, aggregate, aggregate_id, old, {(e, i): since for e, i, since in held})
            held_since = min(since for _, _, since in held) if held else None
        self.store.put(partition, AggregateRecord(aggregate, aggregate_id, None, last, txn.position, held_since,
                                                  state_json=state_json))
        return grew

    def _reindex_held(
        self, partition: int, aggregate: str, aggregate_id: str, before: dict[str, Any], after: dict[str, Any]
    ) -> bool:
        old = {(e, i): entry["since"] for e, i, entry in held_entries(before)}
        new = {(e, i): entry["since"] for e, i, entry in held_entries(after)}
        return self._reindex(partition, aggregate, aggregate_id, old, new)

    def _reindex(self, partition: int, aggregate: str, aggregate_id: str, old: dict[tuple[str, str], float],
                 new: dict[tuple[str, str], float]) -> bool:
        """The held-children index from `old` to `new` entries ((entity, entity_id) -> since); True if one was added."""
        for (entity, entity_id), since in old.items():
            if new.get((entity, entity_id)) != since:
                self.store.held_remove(HeldRef(partition, since, aggregate, aggregate_id, entity, entity_id))
        grew = False
        for (entity, entity_id), since in new.items():
            if old.get((entity, entity_id)) != since:
                self.store.held_add(HeldRef(partition, since, aggregate, aggregate_id, entity, entity_id))
                grew = True
        return grew

    # ------------------------------------------------------------------ held children bounds

    def expire_held(self, now_source_ts: float, partitions: Collection[int] | None = None) -> list[DeadLetter]:
        """Drop the children held longer than held_max_age_seconds at source time `now_source_ts`.

        Called by apply() with the transaction's commit_ts; age is measured in source time so
        that replaying the binlog expires exactly the same children at the same point.
        """
        if self.held_max_age_seconds is None:
            return []
        due = self.store.held_due(now_source_ts - self.held_max_age_seconds, partitions)
        out: list[DeadLetter] = []
        for ref in due:
            dl = self._expire(
                ref,
                f"held longer than {self.held_max_age_seconds:g}s of source time without its parent "
                f"(held since {rfc3339(ref.since)}, now {rfc3339(now_source_ts)})",
            )
            if dl is not None:
                out.append(dl)
        return out

    def _expire_over_count(self, partition: int) -> list[DeadLetter]:
        if self.held_max_count is None:
            return []
        excess = self.store.held_count(partition) - self.held_max_count
        if excess <= 0:
            return []
        out: list[DeadLetter] = []
        for ref in self.store.held_oldest(partition, limit=excess):
            dl = self._expire(
                ref,
                f"partition {partition} held more than {self.held_max_count} children waiting for their "
                f"parent; the oldest go first (held since {rfc3339(ref.since)})",
            )
            if dl is not None:
                out.append(dl)
        return out

    def _expire(self, ref: HeldRef, why: str) -> DeadLetter | None:
        self.store.held_remove(ref)
        record = self.store.get(ref.partition, ref.aggregate, ref.aggregate_id)
        entry = None
        if record is not None:
            entry = (record.state.get("held") or {}).get(ref.entity, {}).get(ref.entity_id)
        if entry is None or entry.get("since") != ref.since:
            log.warning("held_index_stale_entry", ref=ref._asdict())
            return None
        state = without_held(record.state, ref.entity, ref.entity_id)
        self.store.put(
            ref.partition,
            AggregateRecord(
                aggregate=record.aggregate,
                aggregate_id=record.aggregate_id,
                state=state,
                sequence=record.sequence,
                last_position=record.last_position,
                held_since=_oldest_held(state),
            ),
        )
        pos = entry.get("position")
        return DeadLetter(
            reason=ORPHAN,
            detail=f"{ref.aggregate} {ref.aggregate_id} {ref.entity} {ref.entity_id}: {why}",
            table=entry.get("table"),
            aggregate=ref.aggregate,
            aggregate_id=ref.aggregate_id,
            position=SourcePosition.from_dict(pos) if pos else None,
            txn_id=entry.get("txn_id"),
            record={
                "entity": ref.entity,
                "entity_id": ref.entity_id,
                "payload": entry.get("fields"),
                "held_since": rfc3339(ref.since),
            },
        )

    def held_stats(self, partitions: Collection[int] | None = None) -> tuple[int, float | None]:
        """(held children in these partitions (default all), source commit time of the oldest or None): metrics."""
        return self.store.held_stats(partitions)

    # ------------------------------------------------------------------ batch boundaries

    def commit(self, position: SourcePosition, extra_meta: dict[str, Any] | None = None) -> int:
        """Make the batch durable (after the Kafka transaction committed). Returns the batch number."""
        return self.store.commit(position, extra_meta)

    def rollback(self) -> None:
        """Forget the batch (after the Kafka transaction aborted); then re-apply its transactions."""
        self.store.rollback()


class _TxnEncoding:
    """What the events of one source transaction share, encoded once: occurred_at, its txn_id and position
    (as held entries store it), the source block per table and its JSON after the table (source_tail)."""

    __slots__ = ("txn", "txn_id", "occurred_at", "position", "source_tail", "_sources")

    def __init__(self, txn: TxnInfo) -> None:
        self.txn = txn
        self.txn_id = txn.txn_id
        self.occurred_at = rfc3339(txn.commit_ts)
        pos = txn.position
        self.position = pos.to_dict()
        block = dumps({"table": "", "gtid": txn.gtid, "binlog_file": pos.binlog_file, "binlog_pos": pos.binlog_pos,
                       "txn_id": self.txn_id})
        self.source_tail = block[len(_EMPTY_TABLE):]
        self._sources: dict[str, dict[str, Any]] = {}

    def source(self, table: str) -> dict[str, Any]:
        got = self._sources.get(table)
        if got is None:
            t = self.txn
            pos = t.position
            got = self._sources[table] = {"table": table, "gtid": t.gtid, "binlog_file": pos.binlog_file,
                                          "binlog_pos": pos.binlog_pos, "txn_id": self.txn_id}
        return got


_EMPTY_TABLE = b'{"table":""'


def _by_index(c: Command) -> int:
    return c.index


def _wire_index(w: tuple) -> int:
    return w[9]


def _oldest_held(state: dict[str, Any]) -> float | None:
    sinces = [entry["since"] for _, _, entry in held_entries(state)]
    return min(sinces) if sinces else None
