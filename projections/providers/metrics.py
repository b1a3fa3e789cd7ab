"""Prometheus metrics of provider calls: outcomes, latency, fallbacks, breaker state.

Defined once at import, in the default registry, like ``streams.metrics``: every
process that serves ``/metrics`` and calls a provider exposes them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROVIDER_CALLS = Counter(
    "memstream_provider_calls_total",
    "Attempts to call a remote provider, by outcome (ok, retryable, error).",
    ["provider", "operation", "outcome"],
)
PROVIDER_SECONDS = Histogram(
    "memstream_provider_call_seconds",
    "Time of one attempt to call a remote provider, whatever its outcome.",
    ["provider", "operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
PROVIDER_FALLBACKS = Counter(
    "memstream_provider_fallbacks_total",
    "Results produced by the local path because the provider was unavailable, by reason.",
    ["provider", "operation", "reason"],
)
BREAKER_STATE = Gauge(
    "memstream_provider_breaker_state",
    "Circuit breaker state of a provider: 0 closed, 1 half-open, 2 open.",
    ["provider", "operation"],
)
INVALID_ITEMS = Counter(
    "memstream_provider_invalid_items_total",
    "Items of a provider's answer dropped by validation (e.g. a memory with no content).",
    ["provider", "operation"],
)
