"""The live processor's metrics (``/metrics`` of ``memstream run``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "LIVE_CALLS",
    "LIVE_EVENTS",
    "PREFETCHES",
    "PREFETCH_SECONDS",
    "RECONSTRUCTED",
    "TURN_SECONDS",
]

LIVE_EVENTS = Counter(
    "memstream_live_events_total",
    "Events the live processor folded, by type (and those it skipped: skipped_<why>).",
    ["type"],
)
PREFETCHES = Counter("memstream_live_prefetches_total", "Topics prefetched for calls in progress.")
PREFETCH_SECONDS = Histogram(
    "memstream_live_prefetch_seconds",
    "From a caller's turn appended (its recorded_at) to its topic's prefetch readable.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0),
)
TURN_SECONDS = Histogram(
    "memstream_live_turn_seconds",
    "Time the live processor spent on one live event (embedding and prefetch included).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
RECONSTRUCTED = Counter(
    "memstream_live_reconstructed_total",
    "Calls whose end-of-call report never came, ended from their live turns.",
)
LIVE_CALLS = Gauge(
    "memstream_live_calls",
    "Callers whose calls in progress the live processor holds state for (its partitions).",
)
