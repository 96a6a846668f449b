"""Retry with exponential backoff, for calls that fail while Kafka is unreachable.

The daemon's default is to retry forever (max_attempts=None, max_elapsed_s=None) and
report every attempt; `check`-style commands and tests pass a bounded policy, which
ends in KafkaUnavailableError.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class RetryPolicy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1                   # +-10 % so a fleet does not retry in lockstep
    max_attempts: int | None = None       # None: no limit on attempts
    max_elapsed_s: float | None = None    # None: no time limit

    @classmethod
    def forever(cls) -> "RetryPolicy":
        return cls()

    @classmethod
    def bounded(cls, attempts: int, initial_backoff_s: float = 0.2, max_backoff_s: float = 2.0) -> "RetryPolicy":
        return cls(initial_backoff_s=initial_backoff_s, max_backoff_s=max_backoff_s, max_attempts=attempts)

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt number `attempt` (1-based)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def tracker(self, clock: Callable[[], float] = time.monotonic) -> "RetryTracker":
        return RetryTracker(self, clock)


class RetryTracker:
    """One retry loop's bookkeeping: `if not tracker.failed(): raise ...; sleep(tracker.delay)`."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._started = clock()
        self.attempts = 0
        self.delay = 0.0

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def failed(self) -> bool:
        """Record a failed attempt; True if another attempt is allowed (then `delay` is set)."""
        self.attempts += 1
        p = self.policy
        if p.max_attempts is not None and self.attempts >= p.max_attempts:
            return False
        self.delay = p.backoff(self.attempts)
        if p.max_elapsed_s is not None and self.elapsed + self.delay > p.max_elapsed_s:
            return False
        return True
