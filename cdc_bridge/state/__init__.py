"""Aggregate state: LMDB store with one named DB per partition, held-children index, applied position."""

from cdc_bridge.state.exceptions import (
    PartitionCountMismatchError,
    StateStoreError,
    StateStoreFullError,
    StateStoreLockedError,
    StateStoreReadOnlyError,
)
from cdc_bridge.state.lmdb_store import HeldRef, LmdbStateStore
from cdc_bridge.state.record import AggregateRecord

__all__ = [
    "AggregateRecord",
    "HeldRef",
    "LmdbStateStore",
    "PartitionCountMismatchError",
    "StateStoreError",
    "StateStoreFullError",
    "StateStoreLockedError",
    "StateStoreReadOnlyError",
]
