"""Errors of the state store; each says what happened and what to do about it.

Exit codes 90-95 belong to the state (the source has 80-89, Kafka the sysexits 65-78).
"""

from __future__ import annotations


class StateStoreError(Exception):
    """Base class of state store errors."""

    exit_code = 90


class PartitionCountMismatchError(StateStoreError):
    """The store was created with another partition count than the one it is opened with."""

    exit_code = 91


class StateStoreLockedError(StateStoreError):
    """Another process holds the store's writer lock (one writer per state directory)."""

    exit_code = 92


class StateStoreFullError(StateStoreError):
    """The LMDB map cannot grow any further (max_map_size reached)."""

    exit_code = 93


class StateStoreReadOnlyError(StateStoreError):
    """A write was attempted on a store opened read-only."""
