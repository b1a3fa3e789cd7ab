"""Per-API-key rate limits: a token bucket per key, in the process that serves it.

Each key may spend ``rate`` requests a second on average and ``burst`` at once. A
refused request learns how long until a token is back (the ``Retry-After`` header).
The buckets live in one process: with N query processes behind a balancer a key gets
up to N times its rate (documented in docs/query.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key; ``clock`` is injectable so tests need not sleep."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    def acquire(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when allowed, else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                # Keys are authenticated, so this bounds memory, not an attack surface;
                # a full bucket after a reset is at most one extra burst.
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """``Retry-After`` takes whole seconds; round up so a client that obeys succeeds."""
        return str(max(1, math.ceil(wait_s)))
