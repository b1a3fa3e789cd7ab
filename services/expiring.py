"""A small time-to-live cache for what services look up on every request (tenants,
credentials, whether a read model exists): loaded at most once per TTL per key."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Expiring"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """Values loaded at most once per ``ttl_s`` per key. Bounded: keys can come from
    URLs and headers (client input), so past ``max_keys`` the cache starts over."""

    def __init__(self, ttl_s: float = 5.0, max_keys: int = 10_000) -> None:
        self._values: dict[K, tuple[float, V]] = {}
        self._ttl_s = ttl_s
        self._max_keys = max_keys

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        cached = self._values.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        value = await load()
        if len(self._values) >= self._max_keys:
            self._values.clear()
        self._values[key] = (time.monotonic(), value)
        return value
