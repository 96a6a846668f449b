"""Aggregates: routing by entity id, deciders (declarative from YAML or Python), the runtime over LMDB state."""

from cdc_bridge.aggregate.decider import Decider, Decision, load_decider
from cdc_bridge.aggregate.declarative import DeclarativeDecider
from cdc_bridge.aggregate.event import DomainEvent, EventDraft
from cdc_bridge.aggregate.router import murmur2, partition_for
from cdc_bridge.aggregate.runtime import AggregateRuntime, ApplyResult

__all__ = [
    "AggregateRuntime",
    "ApplyResult",
    "Decider",
    "Decision",
    "DeclarativeDecider",
    "DomainEvent",
    "EventDraft",
    "load_decider",
    "murmur2",
    "partition_for",
]
