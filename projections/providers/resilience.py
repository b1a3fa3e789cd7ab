"""Retries with backoff and jitter, a circuit breaker, and :class:`Resilient`, which combines
them around one provider call.

- :class:`Backoff` (``streams.backoff``, the one backoff policy of memstream): exponential
  backoff with full jitter (AWS's "full jitter": a delay drawn uniformly from
  ``[0, min(cap, base * 2**(attempt-1))]``), so callers that failed together do not retry
  together;
- :func:`is_retryable`: timeouts, connection errors, HTTP 408/409/429 and 5xx, and an
  :class:`~projections.providers.exceptions.InvalidAnswer`; anything else (400, 401,
  404...) would fail the same way again;
- :class:`CircuitBreaker`: closed -> open after ``failures`` consecutive failed calls;
  open -> half-open after ``reset_s`` (one trial call let through); half-open -> closed
  on its success, back to open on its failure. Its clock is injectable, for tests;
- :class:`Resilient`: ``call(operation, fn)`` asks the breaker, tries ``fn`` with
  retries, records metrics, and raises
  :class:`~projections.providers.exceptions.ProviderUnavailable` when there is no
  result, which is the caller's cue to take its local path.

Thread-safe: the LLM extractor calls one :class:`Resilient` from a small thread pool.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

import httpx

from projections.providers.exceptions import CircuitOpen, InvalidAnswer, ProviderUnavailable
from projections.providers.metrics import (
    BREAKER_STATE,
    PROVIDER_CALLS,
    PROVIDER_FALLBACKS,
    PROVIDER_SECONDS,
)
from streams.backoff import Backoff

__all__ = ["Backoff", "BreakerState", "CircuitBreaker", "Resilient", "fell_back", "is_retryable"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]

CLOSED: Final = "closed"
HALF_OPEN: Final = "half_open"
OPEN: Final = "open"
BreakerState = str
_STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

# 408 request timeout, 409 conflict (OpenAI's "try again"), 429 rate limited.
_RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_retryable(error: BaseException) -> bool:
    """Whether the same request may succeed if sent again."""
    # Imported here: `openai` takes a second to import, and every `memstream` command
    # imports this module while only processors that call a provider need it.
    import openai

    if isinstance(error, openai.APIStatusError):
        return error.status_code in _RETRYABLE_STATUS or error.status_code >= 500
    # APITimeoutError is an APIConnectionError: both mean no answer arrived.
    return isinstance(
        error,
        openai.APIConnectionError
        | InvalidAnswer
        | TimeoutError
        | ConnectionError
        | httpx.TransportError,
    )


class CircuitBreaker:
    """Stops calling a provider that keeps failing, and tries it again after a while."""

    def __init__(
        self,
        provider: str,
        operation: str,
        *,
        failures: int = 5,
        reset_s: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError(f"need failures >= 1 and reset_s > 0, got {failures}, {reset_s}")
        self.provider = provider
        self.operation = operation
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._publish()

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half_open`` (an open breaker past its reset time
        reads ``half_open``: the next call is a trial)."""
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.reset_s:
                return HALF_OPEN
            return self._state

    def acquire(self) -> None:
        """Let a call through, or raise :class:`CircuitOpen`.

        Open: refused until ``reset_s`` has passed, then one trial call goes through
        (half-open) while every other call is still refused until the trial reports.
        """
        with self._lock:
            if self._state == CLOSED:
                return
            now = self._clock()
            if self._state == OPEN and now - self._opened_at >= self.reset_s:
                self._state = HALF_OPEN
                self._trial_in_flight = False
                self._publish()
            if self._state == HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            remaining = max(0.0, self._opened_at + self.reset_s - now)
        raise CircuitOpen(self.provider, self.operation, remaining)

    def success(self) -> None:
        """The call that went through succeeded: close."""
        with self._lock:
            if self._state != CLOSED:
                logger.info("%s %s: circuit closed again", self.provider, self.operation)
            self._state = CLOSED
            self._consecutive = 0
            self._trial_in_flight = False
            self._publish()

    def failure(self) -> None:
        """The call that went through failed: open after enough of them, or at once after
        a failed trial."""
        with self._lock:
            self._consecutive += 1
            if self._state == HALF_OPEN or self._consecutive >= self.failures:
                if self._state != OPEN:
                    logger.warning(
                        "%s %s: circuit open for %.1f s after %d failed calls",
                        self.provider,
                        self.operation,
                        self.reset_s,
                        self._consecutive,
                    )
                self._state = OPEN
                self._opened_at = self._clock()
                self._trial_in_flight = False
            self._publish()

    def _publish(self) -> None:
        BREAKER_STATE.labels(self.provider, self.operation).set(_STATE_VALUE[self._state])


class Resilient:
    """One provider operation (e.g. ``openai``/``chat``) behind retries and a breaker."""

    def __init__(
        self,
        provider: str,
        operation: str,
        *,
        retries: int = 3,
        backoff: Backoff | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.provider = provider
        self.operation = operation
        self.retries = retries
        self.backoff = backoff or Backoff()
        self.breaker = breaker or CircuitBreaker(provider, operation)
        self._sleep = sleep
        self._uniform = uniform

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``'s result, after up to ``retries`` retries of retryable errors.

        Raises :class:`ProviderUnavailable` (``breaker_open``, ``retries_exhausted`` or
        ``not_retryable``) with the last error as its cause; the breaker counts one
        failure per call, however many attempts it took.
        """
        self.breaker.acquire()
        attempt = 0
        while True:
            attempt += 1
            began = time.perf_counter()
            try:
                result = fn()
            except Exception as exc:
                PROVIDER_SECONDS.labels(self.provider, self.operation).observe(
                    time.perf_counter() - began
                )
                retryable = is_retryable(exc)
                PROVIDER_CALLS.labels(
                    self.provider, self.operation, "retryable" if retryable else "error"
                ).inc()
                if not retryable or attempt > self.retries:
                    self.breaker.failure()
                    reason = "retries_exhausted" if retryable else "not_retryable"
                    raise ProviderUnavailable(
                        self.provider, self.operation, reason, f"{type(exc).__name__}: {exc}"
                    ) from exc
                delay = self.backoff.delay(attempt, self._uniform)
                logger.info(
                    "%s %s attempt %d failed (%s: %s); retrying in %.2f s",
                    self.provider,
                    self.operation,
                    attempt,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                self._sleep(delay)
                continue
            PROVIDER_SECONDS.labels(self.provider, self.operation).observe(
                time.perf_counter() - began
            )
            PROVIDER_CALLS.labels(self.provider, self.operation, "ok").inc()
            self.breaker.success()
            return result


def fell_back(error: ProviderUnavailable) -> None:
    """Count a result a caller produced on its local path because of ``error``."""
    PROVIDER_FALLBACKS.labels(error.provider, error.operation, error.reason).inc()
