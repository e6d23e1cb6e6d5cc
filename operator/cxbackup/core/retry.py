"""Exponential backoff with jitter, shared by the recording API client and the media downloads.

delay(attempt) = d/2 + uniform(0, d/2) with d = min(max_delay, base_delay * 2**attempt) ("equal
jitter": never zero, never more than the cap, spread so that many workers do not retry in step).
A server's Retry-After (seconds) is honoured up to max_delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` retries after the first attempt (so `retries + 1` attempts in all)."""

    retries: int = 6
    base_delay: float = 0.25
    max_delay: float = 20.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        d = min(self.max_delay, self.base_delay * (2.0**attempt))
        wait = d / 2 + rng.uniform(0, d / 2)
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait
