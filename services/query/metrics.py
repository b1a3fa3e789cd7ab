"""Prometheus metrics of the query service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "memstream_query_requests_total", "HTTP requests by route and status.", ["route", "status"]
)
REQUEST_SECONDS = Histogram(
    "memstream_query_request_seconds",
    "Time from request to response, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5),
)
REJECTED = Counter(
    "memstream_query_rejected_total",
    "Requests refused with a 4xx/5xx. By route and error code.",
    ["route", "code"],
)
# No tenant label, nor any other: /metrics is unauthenticated, and tenant names are
# customers' names.
RATE_LIMITED = Counter("memstream_query_rate_limited_total", "Requests refused with 429.")
SEARCH_SECONDS = Histogram(
    "memstream_query_search_seconds",
    "Memory search by stage: embed (the query text), rank (the whole search: both lists,"
    " the lexical one while the text is embedded, and the ranking).",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25),
)
TOOL_ANSWERS = Counter(
    "memstream_tool_answers_total",
    "Agent tool calls answered, by source: prefetched (the live processor's prefetches for"
    " the call covered the question) or search (a search answered it).",
    ["source"],
)
for _source in ("prefetched", "search"):
    TOOL_ANSWERS.labels(_source)  # both series exist from the start, at 0
