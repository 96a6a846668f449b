"""Errors of the state store; each says what happened and what to do about it."""

from __future__ import annotations


class StateStoreError(Exception):
    """Base class of state store errors."""


class PartitionCountMismatchError(StateStoreError):
    """The store was created with another partition count than the one it is opened with."""


class StateStoreLockedError(StateStoreError):
    """Another process holds the store's writer lock (one writer per state directory)."""


class StateStoreFullError(StateStoreError):
    """The LMDB map cannot grow any further (max_map_size reached)."""


class StateStoreReadOnlyError(StateStoreError):
    """A write was attempted on a store opened read-only."""
