"""Backoff between attempts: the one policy every retry loop in memstream uses.

:class:`Backoff` says how long to wait after failed attempt number ``n`` (1-based): a
ceiling that grows from ``base_s`` (doubling, or by ``base_s`` each attempt), never above
``cap_s``, and jitter drawn under it so that callers that failed together do not retry
together:

- ``full``: uniform in ``[0, ceiling]`` (AWS's "full jitter"; the providers' calls);
- ``equal``: uniform in ``[ceiling / 2, ceiling]`` (the projection runtime: never much
  shorter than the ceiling, so a database outage is not hammered);
- ``none``: the ceiling itself.

The waiting itself stays with the caller (a runner's sleep ends early when it is asked
to stop, a provider call sleeps in its worker thread), or :meth:`Backoff.attempts` does
it for a loop of a bounded number of attempts. The randomness (``uniform``) and the sleep
are injectable, so tests need no real waiting.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Backoff", "Growth", "Jitter"]

Jitter = Literal["full", "equal", "none"]
Growth = Literal["exponential", "linear"]

# 2**62 times any sane base is already far above any cap; a larger exponent would overflow.
_MAX_DOUBLINGS = 62


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential (or linear) backoff with jitter and a cap."""

    base_s: float = 0.5
    cap_s: float = 8.0
    jitter: Jitter = "full"
    growth: Growth = "exponential"

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got {self.base_s}, {self.cap_s}")
        if self.jitter not in ("full", "equal", "none"):
            raise ValueError(f"jitter is full, equal or none, got {self.jitter!r}")
        if self.growth not in ("exponential", "linear"):
            raise ValueError(f"growth is exponential or linear, got {self.growth!r}")

    def ceiling(self, attempt: int) -> float:
        """The longest delay after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempts count from 1, got {attempt}")
        if self.growth == "linear":
            return min(self.cap_s, self.base_s * attempt)
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))

    def delay(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        """The delay after failed attempt number ``attempt``; ``uniform`` gives a float in
        [0, 1) (the jitter)."""
        ceiling = self.ceiling(attempt)
        if self.jitter == "full":
            return ceiling * uniform()
        if self.jitter == "equal":
            return ceiling * (0.5 + uniform() / 2)
        return ceiling

    def attempts(
        self,
        limit: int | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        uniform: Callable[[], float] = random.random,
    ) -> AsyncIterator[int]:
        """Attempt numbers 1, 2, ... up to ``limit`` (None: endless), waiting the delay
        between two of them: ``async for attempt in backoff.attempts(5): ...`` and
        ``break`` on success. Nothing is waited before the first attempt or after the
        last."""
        if limit is not None and limit < 1:
            raise ValueError(f"need at least one attempt, got {limit}")
        return _Attempts(self, limit, sleep, uniform)


class _Attempts:
    """The iterator of :meth:`Backoff.attempts` (a class, not an async generator: a loop
    that breaks out of it leaves nothing to finalise)."""

    def __init__(
        self,
        backoff: Backoff,
        limit: int | None,
        sleep: Callable[[float], Awaitable[object]],
        uniform: Callable[[], float],
    ) -> None:
        self._backoff = backoff
        self._limit = limit
        self._sleep = sleep
        self._uniform = uniform
        self._attempt = 0

    def __aiter__(self) -> _Attempts:
        return self

    async def __anext__(self) -> int:
        if self._limit is not None and self._attempt >= self._limit:
            raise StopAsyncIteration
        if self._attempt:
            await self._sleep(self._backoff.delay(self._attempt, self._uniform))
        self._attempt += 1
        return self._attempt
