"""Prometheus metrics of the log layer: appends, projection batches, lag, DLQ.

Defined once at import, in the default registry, so every process that serves
``/metrics`` (services, processors) exposes them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

APPEND_SECONDS = Histogram(
    "memstream_append_seconds",
    "Time from append call to broker acknowledgement (acks=all).",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
APPENDED_EVENTS = Counter(
    "memstream_appended_events_total", "Events acknowledged by the broker.", ["topic", "type"]
)
APPEND_FAILURES = Counter(
    "memstream_append_failures_total", "Appends that failed (nothing acknowledged).", ["topic"]
)
APPEND_ERASED = Counter(
    "memstream_append_erased_events_total",
    "Events not appended: about a call that began at or before their subject's latest "
    "erasure (an old call of a forgotten user).",
    ["topic", "type"],
)

PROJECTED_EVENTS = Counter(
    "memstream_projection_events_total",
    "Events a projection committed (applied, ignored or sent to the DLQ).",
    ["projection", "version", "outcome"],
)
PROJECTION_BATCH_SECONDS = Histogram(
    "memstream_projection_batch_seconds",
    "Time to apply one batch and commit it with its checkpoints.",
    ["projection", "version"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROJECTION_LAG = Gauge(
    "memstream_projection_lag_events",
    "Events in the partition not yet projected (high watermark minus checkpoint).",
    ["projection", "version", "topic", "partition"],
)
PROJECTION_RETRIES = Counter(
    "memstream_projection_retries_total",
    "Batch or event retries after an error, by kind of error.",
    ["projection", "version", "kind"],
)
DLQ_EVENTS = Counter(
    "memstream_dlq_events_total",
    "Events a projection could not handle and wrote to the DLQ topic.",
    ["projection", "version", "reason"],
)
PROJECTION_VERSION_INFO = Gauge(
    "memstream_projection_version_info",
    "1 for each projection version a process runs, labelled with its state when it started "
    "(live, building or retired).",
    ["projection", "version", "state"],
)
PROJECTION_LAST_ERROR = Gauge(
    "memstream_projection_last_error_timestamp_seconds",
    "When a projection version last hit an error (a failing batch or a dead letter).",
    ["projection", "version"],
)
REBUILD_PROGRESS = Gauge(
    "memstream_rebuild_progress_ratio",
    "Share of the log a version being built or caught up by `memstream projections "
    "rebuild|swap` or `memstream reprocess` has projected (1 once caught up).",
    ["projection", "version"],
)

AUDIT_BUFFERED = Gauge(
    "memstream_audit_buffered_entries",
    "Audit entries recorded and not yet appended to the audit topic (streams/audit.py).",
)
AUDIT_WAITS = Counter(
    "memstream_audit_waits_total",
    "Requests that found the audit buffer full and waited for room (backpressure).",
)
AUDIT_REFUSED = Counter(
    "memstream_audit_refused_total",
    "Requests refused (503 audit_unavailable) because the audit buffer stayed full.",
)
AUDIT_LOST = Counter(
    "memstream_audit_lost_entries_total",
    "Audit entries still unappended when their process stopped (the broker was down).",
)
