"""Rate limits of the services, in the process that serves the requests.

- :class:`RateLimiter`: a token bucket per key (an API key in the query service, a
  tenant in the ingest service). Each key may spend ``rate`` requests a second on
  average and ``burst`` at once; a refused request learns how long until a token is back
  (the ``Retry-After`` header).
- :class:`FailedAuthentications`: a client address that keeps failing to authenticate
  (401) is refused with 429 for a while, so credentials cannot be guessed at the speed
  of the network.

The state lives in one process: with N processes behind a balancer a key gets up to N
times its rate, and a client N times its failures (documented in docs/query.md and
docs/ingest.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter
from starlette.requests import Request

from services.errors import ApiError

__all__ = ["FailedAuthentications", "RateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key; ``clock`` is injectable so tests need not sleep. ``per``
    names what a key is in refusals ("key", "tenant"); ``refused`` counts them."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        per: str = "key",
        refused: Counter | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._per = per
        self._refused = refused
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    def spend(self, key: str) -> None:
        """Take a token for ``key``, or refuse: 429 ``rate_limited`` with ``Retry-After``."""
        wait = self.acquire(key)
        if wait > 0:
            if self._refused is not None:
                self._refused.inc()
            raise ApiError(
                429,
                "rate_limited",
                f"over {self.rate:g} requests/s for this {self._per}; retry later",
                headers={"Retry-After": self.retry_after(wait)},
            )

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


@dataclass
class _Failures:
    since: float  # the first failure of the current window
    count: int
    blocked_until: float = 0.0


class FailedAuthentications:
    """Clients that keep failing to authenticate, refused for a while.

    A client is the request's address and the tenant its URL names (webhooks; none for
    API-key routes, whose tenant is the key's). After ``limit`` failures within
    ``window_s`` it is refused with ``429 too_many_auth_failures`` for ``window_s``,
    whatever credentials it sends, then starts again with a clean count. The address
    is the TCP peer's, or ``X-Forwarded-For``'s from a proxy uvicorn trusts
    (``FORWARDED_ALLOW_IPS``): behind an untrusted balancer every client shares its
    address, and one guesser would block them all.

    Two calls: :meth:`check` where a request is about to authenticate, and :meth:`failed`
    when it was refused with a 401 (the services' error handlers call it, so every 401
    counts wherever it was raised).
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._clients: dict[tuple[str, str], _Failures] = {}
        self._max_clients = max_clients

    @staticmethod
    def client(request: Request) -> tuple[str, str]:
        """(address, tenant of the URL or "")."""
        address = request.client.host if request.client else ""
        return address, str(request.path_params.get("tenant", ""))

    def check(self, request: Request) -> None:
        """Refuse (429 with ``Retry-After``) a client that failed too often lately."""
        failures = self._clients.get(self.client(request))
        if failures is None:
            return
        left = failures.blocked_until - self._clock()
        if left > 0:
            raise ApiError(
                429,
                "too_many_auth_failures",
                f"{self.limit} failed authentications from this client within"
                f" {self.window_s:g} s; retry later",
                headers={"Retry-After": RateLimiter.retry_after(left)},
            )

    def failed(self, request: Request) -> None:
        """Count one failed authentication of the request's client."""
        now = self._clock()
        client = self.client(request)
        failures = self._clients.get(client)
        if failures is None or now - failures.since >= self.window_s:
            if failures is None and len(self._clients) >= self._max_clients:
                self._forget_expired(now)
            failures = self._clients[client] = _Failures(since=now, count=0)
        if failures.blocked_until > now:
            return
        failures.count += 1
        if failures.count >= self.limit:
            # Blocked for a window; the next one starts when the block ends, from zero.
            failures.blocked_until = failures.since = now + self.window_s
            failures.count = 0

    def _forget_expired(self, now: float) -> None:
        self._clients = {
            client: failures
            for client, failures in self._clients.items()
            if now - failures.since < self.window_s or failures.blocked_until > now
        }
        if len(self._clients) >= self._max_clients:
            # Addresses are TCP peers, so filling this takes as many addresses; a reset
            # gives each of them at most one more window of guesses.
            self._clients.clear()
