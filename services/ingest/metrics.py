"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "memstream_ingest_requests_total", "HTTP requests by route and status.", ["route", "status"]
)
REQUEST_SECONDS = Histogram(
    "memstream_ingest_request_seconds",
    "Time from request to response, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REJECTED = Counter(
    "memstream_ingest_rejected_total",
    "Requests refused with a 4xx/5xx; nothing appended. By route and error code.",
    ["route", "code"],
)
SIGNATURE_FAILURES = Counter(
    "memstream_ingest_signature_failures_total",
    "Webhooks whose signature or credentials did not verify.",
    ["platform", "code"],
)
DEDUPE_HITS = Counter(
    "memstream_ingest_dedupe_hits_total",
    "Webhooks whose event ids this process appended before (platform redeliveries).",
    ["platform"],
)
ERASED_DROPPED = Counter(
    "memstream_ingest_erased_events_total",
    "Events not appended: about a call that began at or before their user's erasure"
    " (an old webhook redelivered after the user was forgotten).",
    ["platform"],
)
BRIEFING_FAILURES = Counter(
    "memstream_ingest_briefing_failures_total",
    "Call-start briefings answered empty because the read models failed or were too slow.",
    ["reason"],
)
# No tenant label: /metrics is unauthenticated, and tenant names are customers' names.
RATE_LIMITED = Counter(
    "memstream_ingest_rate_limited_total",
    "Requests refused with 429 because their tenant was over MEMSTREAM_INGEST_RATE_LIMIT.",
)
INITIATION_APPEND_FAILURES = Counter(
    "memstream_ingest_initiation_append_failures_total",
    "Call-start webhooks answered with the briefing although the log did not acknowledge"
    " their events (not known to be appended), by platform and error code.",
    ["platform", "code"],
)
