"""Errors of the aggregate stage; each says what happened and what to do about it."""

from __future__ import annotations


class AggregateError(Exception):
    """Base class of aggregate stage errors."""


class DeciderLoadError(AggregateError):
    """A mapping's `decider:` cannot be imported or constructed."""


class MappingRuleError(AggregateError, ValueError):
    """A mapping's event rules are inconsistent (found when building its declarative decider)."""


class UnknownAggregateError(AggregateError):
    """A command names an aggregate type the runtime has no decider for."""


class DeciderError(AggregateError):
    """A decider raised while deciding or evolving; names the aggregate instance and the transaction."""
