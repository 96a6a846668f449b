"""The apply stage inside the ingest process (embedded mode, `cdc-bridge run`): no commands topic hop.

Ingest hands each source transaction's commands straight to the applier; the resulting events
travel in ingest's own Kafka transaction (with the checkpoint), and the state of all partitions
lives in one LMDB environment, written after Kafka committed (see ingest/pipeline.py for the
order and the committer thread). This class owns that state: opening it, sealing a batch's
changes, writing them after the Kafka commit, dropping them after an abort, and its gauges.
"""

from __future__ import annotations

from typing import Any

from cdc_bridge.aggregate.decider import load_decider
from cdc_bridge.aggregate.runtime import AggregateRuntime, ApplyResult
from cdc_bridge.apply.applier import TransactionApplier
from cdc_bridge.config import BridgeConfig
from cdc_bridge.mapping.command import Command
from cdc_bridge.mapping.loader import MappingSet
from cdc_bridge.mapping.packed import PackedCommands
from cdc_bridge.observability.metrics import BridgeMetrics
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.transaction import SourceTransaction
from cdc_bridge.state.lmdb_store import LmdbStateStore

# How far LMDB may lag Kafka while batches keep going (sealed batches held in memory until written).
PENDING_LMDB_BATCHES = 16
PENDING_LMDB_ENTRIES = 50_000


def build_runtime(config: BridgeConfig, mappings: MappingSet, store: LmdbStateStore) -> AggregateRuntime:
    return AggregateRuntime(
        deciders={m.aggregate: load_decider(m) for m in mappings.aggregates},
        mappings=mappings.aggregates,
        store=store,
        partitions=config.state.partitions,
        held_max_age_seconds=config.held.max_age_seconds,
        held_max_count=config.held.max_count,
    )


class InProcessApply:
    """All partitions' aggregates in this process, over one LMDB environment."""

    def __init__(self, config: BridgeConfig, mappings: MappingSet, metrics: BridgeMetrics) -> None:
        self.config = config
        self.mappings = mappings
        self.metrics = metrics
        self.store: LmdbStateStore | None = None
        self.applier: TransactionApplier | None = None

    @property
    def runtime(self) -> AggregateRuntime | None:
        return self.applier.runtime if self.applier is not None else None

    def open(self) -> None:
        cfg = self.config
        self.store = LmdbStateStore(cfg.state.dir, partitions=cfg.state.partitions, map_size=cfg.state.map_size_mb << 20)
        self.applier = TransactionApplier(build_runtime(cfg, self.mappings, self.store), self.mappings)

    def reload(self, mappings: MappingSet) -> None:
        """New mappings at a transaction boundary (SIGHUP); raises (keeping the old ones) when they do not load."""
        assert self.store is not None
        applier = TransactionApplier(build_runtime(self.config, mappings, self.store), mappings)
        self.mappings, self.applier = mappings, applier

    # ---------------------------------------------------------------- apply
    def apply(self, txn: SourceTransaction, wire: list[tuple]) -> ApplyResult:
        """wire: the transaction's commands in their wire form (mapping/translate.py command_to_wire)."""
        assert self.applier is not None
        if txn.sweep_from is not None:
            return self.applier.sweep(txn.sweep_from, txn.position, txn.commit_ts)
        return self.applier.apply_wire(txn, wire, full_image=txn.full_image)

    def apply_packed(self, txn: SourceTransaction, packed: PackedCommands) -> ApplyResult:
        """apply() of the commands in their packed form (mapping/packed.py)."""
        assert self.applier is not None
        return self.applier.apply_packed(txn, packed, full_image=txn.full_image)

    def replay(self, txn: SourceTransaction, wire: list[tuple]) -> None:
        """Re-apply an already published transaction to state; its events are dropped (they are in Kafka)."""
        self.apply(txn, wire)

    # ---------------------------------------------------------------- batch boundaries
    def position(self) -> SourcePosition | None:
        assert self.store is not None
        return self.store.applied_position()

    def meta(self) -> dict[str, Any]:
        assert self.store is not None
        return self.store.meta()

    def commit(self, position: SourcePosition, meta: dict[str, Any]) -> None:
        """Write the open batch now (checkpoint-only batches, the end of a replay)."""
        assert self.store is not None
        self.store.commit(position, meta)

    def seal(self, position: SourcePosition, meta: dict[str, Any]) -> Any:
        assert self.store is not None
        # LMDB may fall a few batches behind Kafka (a slow fsync must not hold up the next Kafka
        # transaction), bounded so that the sealed batches waiting for it stay small in memory
        self.store.bound_pending(PENDING_LMDB_BATCHES, PENDING_LMDB_ENTRIES)
        return self.store.seal(position, meta)

    def mark_committed(self, sealed: Any) -> None:
        """After the batch's Kafka commit (committer thread): written by the main thread at its next
        release_written() (LmdbStateStore.mark_committed)."""
        assert self.store is not None
        self.store.mark_committed(sealed)

    def release_written(self) -> None:
        assert self.store is not None
        self.store.release_written()

    def wait_written(self) -> None:
        assert self.store is not None
        self.store.wait_written(0)

    def rollback(self, sealed: Any) -> None:
        """The batch's Kafka transaction aborted: drop the open batch applied on top of it, then it."""
        assert self.store is not None
        self.store.rollback()
        self.store.discard_sealed(sealed)

    def discard(self, sealed: Any) -> None:
        assert self.store is not None
        self.store.discard_sealed(sealed)

    # ---------------------------------------------------------------- gauges, lifecycle
    def record_state(self, last_commit_ts: float) -> None:
        """State gauges (main thread: they read the store)."""
        if self.store is None or self.applier is None:
            return
        m = self.metrics
        st = self.store.stats()
        m.lmdb_size.set(st["size_bytes"])
        m.lmdb_map_used.set(st["map_used_ratio"])
        count, oldest = self.applier.runtime.held_stats()
        m.held_children.set(count)
        m.held_oldest_age.set(max(0.0, last_commit_ts - oldest) if oldest and last_commit_ts else 0.0)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
