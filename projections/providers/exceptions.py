"""Errors raised by the providers package, each saying what the caller can do about it."""

from __future__ import annotations


class ProviderError(Exception):
    """Base class of the errors raised by ``projections.providers``."""


class InvalidAnswer(ProviderError):
    """The provider answered, but not with what was asked for (unparseable JSON, a vector
    of the wrong length...). Retryable: a second answer may be well-formed."""


class ProviderUnavailable(ProviderError):
    """No result from the provider: the caller takes its local path instead.

    ``provider`` and ``operation`` name the call (``openai``, ``chat``); ``reason`` is
    ``breaker_open`` (not attempted), ``retries_exhausted`` or ``not_retryable``.
    """

    def __init__(self, provider: str, operation: str, reason: str, detail: str) -> None:
        super().__init__(f"{provider} {operation} unavailable ({reason}): {detail}")
        self.provider = provider
        self.operation = operation
        self.reason = reason
        self.detail = detail


class CircuitOpen(ProviderUnavailable):
    """The provider's circuit breaker is open: the call was not attempted."""

    def __init__(self, provider: str, operation: str, retry_in_s: float) -> None:
        super().__init__(
            provider, operation, "breaker_open", f"circuit open for another {retry_in_s:.1f} s"
        )
        self.retry_in_s = retry_in_s
