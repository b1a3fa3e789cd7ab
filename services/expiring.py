"""A small time-to-live cache for what services look up on every request (tenants,
credentials, whether a read model exists): loaded at most once per TTL per key, and,
for the caches that allow it, served a while longer while the database is unavailable."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import psycopg

__all__ = ["Expiring"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Cached(Generic[V]):
    value: V
    loaded: float  # when `value` was loaded
    retry: float = 0.0  # after a failed load: no other attempt before this


class Expiring(Generic[K, V]):
    """Values loaded at most once per ``ttl_s`` per key. Bounded: keys can come from
    URLs and headers (client input), so past ``max_keys`` the cache starts over.

    With ``stale_s`` > 0, a load that fails because the database is unavailable
    (``psycopg.OperationalError``, which includes the pool's ``PoolTimeout``) returns
    the last value loaded for the key instead, as long as it is at most ``ttl_s +
    stale_s`` old, and the load is not tried again for ``ttl_s`` (one slow failure per
    TTL, not one per request); without such a value the error is raised. While the
    database answers, a value is never served past ``ttl_s``: a revoked credential
    stops working within the TTL.
    """

    def __init__(
        self,
        ttl_s: float = 5.0,
        max_keys: int = 10_000,
        *,
        stale_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._values: dict[K, _Cached[V]] = {}
        self._ttl_s = ttl_s
        self._stale_s = stale_s
        self._max_keys = max_keys
        self._clock = clock

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        now = self._clock()
        cached = self._values.get(key)
        if cached is not None and (
            now - cached.loaded < self._ttl_s or (now < cached.retry and self._servable(cached))
        ):
            return cached.value
        try:
            value = await load()
        except psycopg.OperationalError as exc:
            if cached is None or not self._servable(cached):
                raise
            cached.retry = self._clock() + self._ttl_s
            logger.warning(
                "the database is unavailable (%s): serving a value loaded %.0f s ago",
                type(exc).__name__,
                self._clock() - cached.loaded,
            )
            return cached.value
        if len(self._values) >= self._max_keys:
            self._values.clear()
        self._values[key] = _Cached(value, self._clock())
        return value

    def _servable(self, cached: _Cached[V]) -> bool:
        """Whether a value is recent enough to stand in for one the database cannot give."""
        return self._clock() - cached.loaded < self._ttl_s + self._stale_s
