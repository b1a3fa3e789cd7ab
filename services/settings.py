"""memstream's settings, assembled: every layer's section, and the services' own.

:class:`Settings` is what the ``memstream`` command reads (`Settings.from_env`) and hands
to child processes (`Settings.to_env`); lower layers receive it as their own section
(``streams.settings.StreamsSettings``, ``infra.settings.InfraSettings``,
``projections.settings.ProjectionSettings``), which it extends.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from infra.settings import InfraSettings
from projections.settings import ProjectionSettings
from streams.settings import Lower, Upper


class Settings(InfraSettings, ProjectionSettings):
    """Every ``MEMSTREAM_*`` setting: the lower layers' sections, and the services'."""

    # Processes started by the `memstream` command serve Prometheus /metrics here
    # (0 disables it), unauthenticated: loopback unless a scraper elsewhere needs it.
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    log_level: Annotated[str, Upper] = "INFO"
    # "json" (one object a line, for log shippers) or "text" (for a terminal).
    log_format: Annotated[Literal["json", "text"], Lower] = "json"
    # Keys the hash that log lines carry instead of a caller's subject (services/logs.py).
    # Unset: a built-in key, so the hash is only a pseudonym. Same value in every process.
    log_hash_key: str | None = Field(default=None, repr=False)

    # How often `memstream run` carries out the tenants' transcript and memory retention
    # (services/retention.py); 0: never (run `memstream retention run` from a scheduler).
    retention_interval_s: float = Field(default=3600.0, ge=0)
    # Live calls (services/live): how long after a call's last live event without a
    # report it is reconstructed, how long a call's state outlives its end, and whether
    # `memstream run` starts the live processor.
    live_reconstruct_after_s: float = Field(default=900.0, gt=0)
    live_grace_s: float = Field(default=300.0, ge=0)
    live_processor: bool = True

    # The ingest service. 127.0.0.1 keeps a development machine's service private;
    # containers need 0.0.0.0.
    ingest_port: int = 8080
    ingest_host: str = "127.0.0.1"
    max_body_bytes: int = 10 * 1024 * 1024
    # The query service: where it listens, and each API key's request rate (a token
    # bucket: `query_rate_limit` requests a second, bursts up to `query_rate_burst`).
    query_port: int = 8081
    query_host: str = "127.0.0.1"
    query_rate_limit: float = Field(default=50.0, gt=0)
    query_rate_burst: int = Field(default=100, ge=1)
    # Read-your-writes waits one API key may have in progress at once (429 beyond).
    query_max_waits: int = Field(default=4, ge=1)
    # The ingest service: each tenant's request rate over webhooks and /v1/events (a
    # token bucket, like the query service's per key).
    ingest_rate_limit: float = Field(default=100.0, gt=0)
    ingest_rate_burst: int = Field(default=200, ge=1)
    # A client address failing authentication `auth_failure_limit` times within
    # `auth_failure_window_s` is refused with 429 for that long (services/ratelimit.py).
    auth_failure_limit: int = Field(default=10, ge=1)
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    # How long a request waits for a pooled database connection before it is answered
    # 503 database_unavailable (services/database.py).
    database_checkout_timeout_s: float = Field(default=2.0, gt=0)
    # Tenants, API keys and webhook secrets are re-read at most every `cache_ttl_s` (a
    # revoked one stops working within it); while the database is unavailable the last
    # ones read are used for up to `cache_stale_s` more (0: not at all).
    cache_ttl_s: float = Field(default=5.0, ge=0)
    cache_stale_s: float = Field(default=300.0, ge=0)
