"""memstream's configuration: every ``MEMSTREAM_*`` environment variable is read here, once.

The other packages receive a :class:`Settings` value instead of reading the
environment themselves, so a test can build one by hand and two components in
one process can be pointed at different brokers or databases.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.exceptions import ConfigurationError

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Settings:
    """Where memstream's log and read models live, and how its processors behave."""

    # Endpoints. None means "not configured": the local launcher (infra/) starts a
    # broker / database under `home` and fills these in.
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    # How the Kafka clients connect: PLAINTEXT (the local broker), SSL, SASL_PLAINTEXT or
    # SASL_SSL (managed Kafka), with a SASL mechanism (PLAIN, SCRAM-SHA-256,
    # SCRAM-SHA-512) and credentials; `kafka_ssl_cafile` trusts a private CA (the system's
    # CAs otherwise).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_cafile: str | None = None

    # The log.
    topic_prefix: str = "memstream"
    partitions: int = 6
    replication_factor: int = 1

    # Local infrastructure (used only when the endpoint above is None).
    home: Path = field(default_factory=lambda: Path(".memstream").resolve())
    local_kafka_port: int = 19092
    local_postgres_port: int = 15432
    local_kafka_heap: str = "768m"

    # Projection runtime.
    batch_max_records: int = 2000
    batch_timeout_ms: int = 200
    poison_retries: int = 3
    retry_backoff_ms: int = 200
    # Processes started by the `memstream` command serve Prometheus /metrics here
    # (0 disables it), unauthenticated: loopback unless a scraper elsewhere needs it.
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    # "json" (one object a line, for log shippers) or "text" (for a terminal).
    log_format: str = "json"
    # Keys the hash that log lines carry instead of a caller's subject (services/logs.py).
    # Unset: a built-in key, so the hash is only a pseudonym. Same value in every process.
    log_hash_key: str | None = field(default=None, repr=False)

    # Personal data (streams/subject_keys.py): every subject's data key is wrapped by the
    # master key, base64 of 32 bytes, given itself or as a file; neither: the file
    # `home/master.key`, created on first use (a developer's machine). During a rotation
    # the keys being retired (comma-separated) still unwrap. A process stops using a
    # destroyed subject key within `key_cache_s`. Encryption off: benchmarks only.
    master_key: str | None = field(default=None, repr=False)
    master_key_file: Path | None = None
    previous_master_keys: str | None = field(default=None, repr=False)
    key_cache_s: float = 5.0
    personal_data_encryption: bool = True
    # How often `memstream run` carries out the tenants' transcript and memory retention
    # (services/retention.py); 0: never (run `memstream retention run` from a scheduler).
    retention_interval_s: float = 3600.0
    # Live calls (services/live): how long the live topic keeps mid-call events (set when
    # the topic is created; the post-call report stays the call's record), how long after
    # a call's last live event without a report it is reconstructed, how long a call's
    # state outlives its end, and whether `memstream run` starts the live processor.
    live_retention_s: float = 7 * 86400.0
    live_reconstruct_after_s: float = 900.0
    live_grace_s: float = 300.0
    live_processor: bool = True

    # Services.
    ingest_port: int = 8080
    # 127.0.0.1 keeps a development machine's service private; containers need 0.0.0.0.
    ingest_host: str = "127.0.0.1"
    max_body_bytes: int = 10 * 1024 * 1024
    # The query service: where it listens, and each API key's request rate (a token
    # bucket: `query_rate_limit` requests a second, bursts up to `query_rate_burst`).
    query_port: int = 8081
    query_host: str = "127.0.0.1"
    query_rate_limit: float = 50.0
    query_rate_burst: int = 100
    # Read-your-writes waits one API key may have in progress at once (429 beyond).
    query_max_waits: int = 4
    # The ingest service: each tenant's request rate over webhooks and /v1/events (a
    # token bucket, like the query service's per key).
    ingest_rate_limit: float = 100.0
    ingest_rate_burst: int = 200
    # A client address failing authentication `auth_failure_limit` times within
    # `auth_failure_window_s` is refused with 429 for that long (services/ratelimit.py).
    auth_failure_limit: int = 10
    auth_failure_window_s: float = 60.0
    # How long a request waits for a pooled database connection before it is answered
    # 503 database_unavailable (services/database.py).
    database_checkout_timeout_s: float = 2.0
    # Tenants, API keys and webhook secrets are re-read at most every `cache_ttl_s` (a
    # revoked one stops working within it); while the database is unavailable the last
    # ones read are used for up to `cache_stale_s` more (0: not at all).
    cache_ttl_s: float = 5.0
    cache_stale_s: float = 300.0
    # The audit trail (streams/audit.py): reads of personal data and erasures, recorded
    # on the audit topic. Entries wait in a buffer of `audit_buffer`, appended in batches
    # at least every `audit_flush_ms`; a request that finds it full waits up to
    # `audit_wait_ms` for room, then is refused (503 audit_unavailable). Off: benchmarks.
    audit_trail: bool = True
    audit_buffer: int = 10_000
    audit_flush_ms: int = 100
    audit_wait_ms: int = 500

    # Providers (projections/providers): an OpenAI-compatible endpoint for the LLM
    # extractor and for embeddings. An empty model name keeps the offline path (the
    # rule-based extractor, the local embedding model), so nothing here is required.
    # None means OpenAI's own endpoint; any OpenAI-compatible URL works (vLLM, Ollama...).
    openai_base_url: str | None = None
    # Kept out of repr so a logged Settings never shows it.
    openai_api_key: str | None = field(default=None, repr=False)
    llm_model: str = ""
    embedding_model: str = ""
    # One attempt's time limit, and attempts after the first (with backoff and jitter).
    provider_timeout_s: float = 10.0
    provider_retries: int = 3
    # Conversations of one batch sent to the LLM at the same time.
    provider_concurrency: int = 4
    # Consecutive failed calls that open a provider's circuit breaker, and how long it
    # stays open before one trial call is let through.
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0

    # Summaries: the minimum log time between two profile summaries of one user
    # (projections/summaries/processor.py: the debounce).
    summary_debounce_s: float = 30.0

    def __post_init__(self) -> None:
        if self.kafka_security_protocol not in _SECURITY_PROTOCOLS:
            raise ConfigurationError(
                "MEMSTREAM_KAFKA_SECURITY_PROTOCOL must be one of " + ", ".join(_SECURITY_PROTOCOLS)
            )
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_mechanism in _SASL_MECHANISMS
            and self.kafka_sasl_username
            and self.kafka_sasl_password
        ):
            raise ConfigurationError(
                "MEMSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_* needs MEMSTREAM_KAFKA_SASL_MECHANISM"
                f" ({', '.join(_SASL_MECHANISMS)}), MEMSTREAM_KAFKA_SASL_USERNAME and"
                " MEMSTREAM_KAFKA_SASL_PASSWORD"
            )
        if self.partitions < 1:
            raise ConfigurationError("MEMSTREAM_PARTITIONS must be >= 1")
        if self.replication_factor < 1:
            raise ConfigurationError("MEMSTREAM_REPLICATION_FACTOR must be >= 1")
        if not self.topic_prefix or not all(c.isalnum() or c in "._-" for c in self.topic_prefix):
            raise ConfigurationError(
                "MEMSTREAM_TOPIC_PREFIX must be non-empty and use only letters, digits, "
                "'.', '_', '-'"
            )
        if self.batch_max_records < 1:
            raise ConfigurationError("MEMSTREAM_BATCH_MAX_RECORDS must be >= 1")
        if self.log_format not in ("json", "text"):
            raise ConfigurationError("MEMSTREAM_LOG_FORMAT must be 'json' or 'text'")
        if self.poison_retries < 0:
            raise ConfigurationError("MEMSTREAM_POISON_RETRIES must be >= 0")
        if not self.query_rate_limit > 0 or self.query_rate_burst < 1:
            raise ConfigurationError(
                "MEMSTREAM_QUERY_RATE_LIMIT must be > 0 and MEMSTREAM_QUERY_RATE_BURST >= 1"
            )
        if self.query_max_waits < 1:
            raise ConfigurationError("MEMSTREAM_QUERY_MAX_WAITS must be >= 1")
        if not self.ingest_rate_limit > 0 or self.ingest_rate_burst < 1:
            raise ConfigurationError(
                "MEMSTREAM_INGEST_RATE_LIMIT must be > 0 and MEMSTREAM_INGEST_RATE_BURST >= 1"
            )
        if self.auth_failure_limit < 1 or not self.auth_failure_window_s > 0:
            raise ConfigurationError(
                "MEMSTREAM_AUTH_FAILURE_LIMIT must be >= 1 and MEMSTREAM_AUTH_FAILURE_WINDOW_S"
                " > 0 (seconds)"
            )
        if not self.database_checkout_timeout_s > 0:
            raise ConfigurationError("MEMSTREAM_DATABASE_CHECKOUT_TIMEOUT_S must be > 0 (seconds)")
        if not self.cache_ttl_s >= 0 or not self.cache_stale_s >= 0:
            raise ConfigurationError(
                "MEMSTREAM_CACHE_TTL_S and MEMSTREAM_CACHE_STALE_S must be >= 0 (seconds)"
            )
        if self.audit_buffer < 1 or self.audit_flush_ms < 1 or self.audit_wait_ms < 0:
            raise ConfigurationError(
                "MEMSTREAM_AUDIT_BUFFER and MEMSTREAM_AUDIT_FLUSH_MS must be >= 1,"
                " MEMSTREAM_AUDIT_WAIT_MS >= 0"
            )
        if not self.retention_interval_s >= 0:
            raise ConfigurationError("MEMSTREAM_RETENTION_INTERVAL_S must be >= 0 (seconds)")
        if not (
            self.live_retention_s >= 3600
            and self.live_reconstruct_after_s > 0
            and self.live_grace_s >= 0
        ):
            raise ConfigurationError(
                "MEMSTREAM_LIVE_RETENTION_S must be >= 3600, MEMSTREAM_LIVE_RECONSTRUCT_AFTER_S"
                " > 0 and MEMSTREAM_LIVE_GRACE_S >= 0 (seconds)"
            )
        if not self.key_cache_s > 0:
            raise ConfigurationError("MEMSTREAM_KEY_CACHE_S must be > 0 (seconds)")
        if not self.provider_timeout_s > 0:
            raise ConfigurationError("MEMSTREAM_PROVIDER_TIMEOUT_S must be > 0 (seconds)")
        if self.provider_retries < 0:
            raise ConfigurationError("MEMSTREAM_PROVIDER_RETRIES must be >= 0")
        if self.provider_concurrency < 1:
            raise ConfigurationError("MEMSTREAM_PROVIDER_CONCURRENCY must be >= 1")
        if self.breaker_failures < 1:
            raise ConfigurationError("MEMSTREAM_BREAKER_FAILURES must be >= 1")
        if not self.summary_debounce_s >= 0:
            raise ConfigurationError("MEMSTREAM_SUMMARY_DEBOUNCE_S must be >= 0 (seconds)")
        if not self.breaker_reset_s > 0:
            raise ConfigurationError("MEMSTREAM_BREAKER_RESET_S must be > 0 (seconds)")
        if self.openai_base_url is not None and not self.openai_base_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigurationError(
                "MEMSTREAM_OPENAI_BASE_URL must be an http:// or https:// URL"
                " (e.g. https://api.openai.com/v1)"
            )
        if (self.llm_model or self.embedding_model) and not (
            self.openai_api_key or self.openai_base_url
        ):
            raise ConfigurationError(
                "MEMSTREAM_LLM_MODEL / MEMSTREAM_EMBEDDING_MODEL name a remote model but"
                " MEMSTREAM_OPENAI_API_KEY is not set: OpenAI's endpoint needs a key (set"
                " MEMSTREAM_OPENAI_BASE_URL for a compatible server that needs none)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the ``MEMSTREAM_*`` variables (or the given mapping), with defaults for the rest."""
        env = os.environ if env is None else env
        defaults = cls()

        def text(name: str, default: str | None) -> str | None:
            value = env.get(f"MEMSTREAM_{name}", "").strip()
            return value or default

        def integer(name: str, default: int) -> int:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                raise ConfigurationError(
                    f"MEMSTREAM_{name} must be an integer, got {raw!r}"
                ) from None

        def number(name: str, default: float) -> float:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                return float(raw)
            except ValueError:
                raise ConfigurationError(
                    f"MEMSTREAM_{name} must be a number, got {raw!r}"
                ) from None

        def switch(name: str, default: bool) -> bool:
            raw = text(name, None)
            if raw is None:
                return default
            if raw.lower() in ("on", "true", "1", "yes"):
                return True
            if raw.lower() in ("off", "false", "0", "no"):
                return False
            raise ConfigurationError(f"MEMSTREAM_{name} must be 'on' or 'off', got {raw!r}")

        home = text("HOME", None)
        key_file = text("MASTER_KEY_FILE", None)
        return cls(
            kafka_bootstrap=text("KAFKA_BOOTSTRAP", None),
            database_url=text("DATABASE_URL", None),
            kafka_security_protocol=(
                text("KAFKA_SECURITY_PROTOCOL", None) or defaults.kafka_security_protocol
            ).upper(),
            kafka_sasl_mechanism=(text("KAFKA_SASL_MECHANISM", "") or "").upper() or None,
            kafka_sasl_username=text("KAFKA_SASL_USERNAME", None),
            kafka_sasl_password=text("KAFKA_SASL_PASSWORD", None),
            kafka_ssl_cafile=text("KAFKA_SSL_CAFILE", None),
            topic_prefix=text("TOPIC_PREFIX", defaults.topic_prefix) or defaults.topic_prefix,
            partitions=integer("PARTITIONS", defaults.partitions),
            replication_factor=integer("REPLICATION_FACTOR", defaults.replication_factor),
            home=Path(home).resolve() if home else defaults.home,
            local_kafka_port=integer("LOCAL_KAFKA_PORT", defaults.local_kafka_port),
            local_postgres_port=integer("LOCAL_POSTGRES_PORT", defaults.local_postgres_port),
            local_kafka_heap=text("KAFKA_HEAP", None) or defaults.local_kafka_heap,
            batch_max_records=integer("BATCH_MAX_RECORDS", defaults.batch_max_records),
            batch_timeout_ms=integer("BATCH_TIMEOUT_MS", defaults.batch_timeout_ms),
            poison_retries=integer("POISON_RETRIES", defaults.poison_retries),
            retry_backoff_ms=integer("RETRY_BACKOFF_MS", defaults.retry_backoff_ms),
            metrics_port=integer("METRICS_PORT", defaults.metrics_port),
            metrics_host=text("METRICS_HOST", defaults.metrics_host) or defaults.metrics_host,
            log_level=(text("LOG_LEVEL", defaults.log_level) or defaults.log_level).upper(),
            log_format=(text("LOG_FORMAT", defaults.log_format) or defaults.log_format).lower(),
            log_hash_key=text("LOG_HASH_KEY", None),
            master_key=text("MASTER_KEY", None),
            master_key_file=Path(key_file).resolve() if key_file else None,
            previous_master_keys=text("PREVIOUS_MASTER_KEYS", None),
            key_cache_s=number("KEY_CACHE_S", defaults.key_cache_s),
            personal_data_encryption=switch(
                "PERSONAL_DATA_ENCRYPTION", defaults.personal_data_encryption
            ),
            retention_interval_s=number("RETENTION_INTERVAL_S", defaults.retention_interval_s),
            live_retention_s=number("LIVE_RETENTION_S", defaults.live_retention_s),
            live_reconstruct_after_s=number(
                "LIVE_RECONSTRUCT_AFTER_S", defaults.live_reconstruct_after_s
            ),
            live_grace_s=number("LIVE_GRACE_S", defaults.live_grace_s),
            live_processor=switch("LIVE_PROCESSOR", defaults.live_processor),
            ingest_port=integer("INGEST_PORT", defaults.ingest_port),
            ingest_host=text("INGEST_HOST", defaults.ingest_host) or defaults.ingest_host,
            max_body_bytes=integer("MAX_BODY_BYTES", defaults.max_body_bytes),
            query_port=integer("QUERY_PORT", defaults.query_port),
            query_host=text("QUERY_HOST", defaults.query_host) or defaults.query_host,
            query_rate_limit=number("QUERY_RATE_LIMIT", defaults.query_rate_limit),
            query_rate_burst=integer("QUERY_RATE_BURST", defaults.query_rate_burst),
            query_max_waits=integer("QUERY_MAX_WAITS", defaults.query_max_waits),
            ingest_rate_limit=number("INGEST_RATE_LIMIT", defaults.ingest_rate_limit),
            ingest_rate_burst=integer("INGEST_RATE_BURST", defaults.ingest_rate_burst),
            auth_failure_limit=integer("AUTH_FAILURE_LIMIT", defaults.auth_failure_limit),
            auth_failure_window_s=number("AUTH_FAILURE_WINDOW_S", defaults.auth_failure_window_s),
            database_checkout_timeout_s=number(
                "DATABASE_CHECKOUT_TIMEOUT_S", defaults.database_checkout_timeout_s
            ),
            cache_ttl_s=number("CACHE_TTL_S", defaults.cache_ttl_s),
            cache_stale_s=number("CACHE_STALE_S", defaults.cache_stale_s),
            audit_trail=switch("AUDIT_TRAIL", defaults.audit_trail),
            audit_buffer=integer("AUDIT_BUFFER", defaults.audit_buffer),
            audit_flush_ms=integer("AUDIT_FLUSH_MS", defaults.audit_flush_ms),
            audit_wait_ms=integer("AUDIT_WAIT_MS", defaults.audit_wait_ms),
            openai_base_url=text("OPENAI_BASE_URL", None),
            openai_api_key=text("OPENAI_API_KEY", None),
            llm_model=text("LLM_MODEL", "") or "",
            embedding_model=text("EMBEDDING_MODEL", "") or "",
            provider_timeout_s=number("PROVIDER_TIMEOUT_S", defaults.provider_timeout_s),
            provider_retries=integer("PROVIDER_RETRIES", defaults.provider_retries),
            provider_concurrency=integer("PROVIDER_CONCURRENCY", defaults.provider_concurrency),
            breaker_failures=integer("BREAKER_FAILURES", defaults.breaker_failures),
            breaker_reset_s=number("BREAKER_RESET_S", defaults.breaker_reset_s),
            summary_debounce_s=number("SUMMARY_DEBOUNCE_S", defaults.summary_debounce_s),
        )

    def to_env(self) -> dict[str, str]:
        """The ``MEMSTREAM_*`` variables that make `from_env` give back these settings
        (to hand them to a child process)."""
        values = {
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            "KAFKA_SECURITY_PROTOCOL": self.kafka_security_protocol,
            "KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            # Like the API key: for a child process's environment only.
            "KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "TOPIC_PREFIX": self.topic_prefix,
            "PARTITIONS": self.partitions,
            "REPLICATION_FACTOR": self.replication_factor,
            "HOME": self.home,
            "LOCAL_KAFKA_PORT": self.local_kafka_port,
            "LOCAL_POSTGRES_PORT": self.local_postgres_port,
            "KAFKA_HEAP": self.local_kafka_heap,
            "BATCH_MAX_RECORDS": self.batch_max_records,
            "BATCH_TIMEOUT_MS": self.batch_timeout_ms,
            "POISON_RETRIES": self.poison_retries,
            "RETRY_BACKOFF_MS": self.retry_backoff_ms,
            "METRICS_PORT": self.metrics_port,
            "METRICS_HOST": self.metrics_host,
            "LOG_LEVEL": self.log_level,
            "LOG_FORMAT": self.log_format,
            # A child process hashes subjects in its log lines with the same key.
            "LOG_HASH_KEY": self.log_hash_key,
            # A child process reads and writes the same personal data.
            "MASTER_KEY": self.master_key,
            "MASTER_KEY_FILE": self.master_key_file,
            "PREVIOUS_MASTER_KEYS": self.previous_master_keys,
            "KEY_CACHE_S": self.key_cache_s,
            "PERSONAL_DATA_ENCRYPTION": "on" if self.personal_data_encryption else "off",
            "RETENTION_INTERVAL_S": self.retention_interval_s,
            "LIVE_RETENTION_S": self.live_retention_s,
            "LIVE_RECONSTRUCT_AFTER_S": self.live_reconstruct_after_s,
            "LIVE_GRACE_S": self.live_grace_s,
            "LIVE_PROCESSOR": "on" if self.live_processor else "off",
            "INGEST_PORT": self.ingest_port,
            "INGEST_HOST": self.ingest_host,
            "MAX_BODY_BYTES": self.max_body_bytes,
            "QUERY_PORT": self.query_port,
            "QUERY_HOST": self.query_host,
            "QUERY_RATE_LIMIT": self.query_rate_limit,
            "QUERY_RATE_BURST": self.query_rate_burst,
            "QUERY_MAX_WAITS": self.query_max_waits,
            "INGEST_RATE_LIMIT": self.ingest_rate_limit,
            "INGEST_RATE_BURST": self.ingest_rate_burst,
            "AUTH_FAILURE_LIMIT": self.auth_failure_limit,
            "AUTH_FAILURE_WINDOW_S": self.auth_failure_window_s,
            "DATABASE_CHECKOUT_TIMEOUT_S": self.database_checkout_timeout_s,
            "CACHE_TTL_S": self.cache_ttl_s,
            "CACHE_STALE_S": self.cache_stale_s,
            "AUDIT_TRAIL": "on" if self.audit_trail else "off",
            "AUDIT_BUFFER": self.audit_buffer,
            "AUDIT_FLUSH_MS": self.audit_flush_ms,
            "AUDIT_WAIT_MS": self.audit_wait_ms,
            "OPENAI_BASE_URL": self.openai_base_url,
            # A child process needs the key to call the provider; the mapping is for its
            # environment only, never for a log line.
            "OPENAI_API_KEY": self.openai_api_key,
            "LLM_MODEL": self.llm_model or None,
            "EMBEDDING_MODEL": self.embedding_model or None,
            "PROVIDER_TIMEOUT_S": self.provider_timeout_s,
            "PROVIDER_RETRIES": self.provider_retries,
            "PROVIDER_CONCURRENCY": self.provider_concurrency,
            "BREAKER_FAILURES": self.breaker_failures,
            "BREAKER_RESET_S": self.breaker_reset_s,
            "SUMMARY_DEBOUNCE_S": self.summary_debounce_s,
        }
        return {f"MEMSTREAM_{k}": str(v) for k, v in values.items() if v is not None}

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (e.g. the endpoints the launcher resolved)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def kafka_options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client of memstream gets: how to connect."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=self.kafka_ssl_cafile)
        if self.kafka_security_protocol.startswith("SASL_"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password
        return options

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap:
            raise ConfigurationError(
                "no Kafka configured: set MEMSTREAM_KAFKA_BOOTSTRAP or start the local broker "
                "with `make infra-up`"
            )
        return self.kafka_bootstrap

    def require_database(self) -> str:
        if not self.database_url:
            raise ConfigurationError(
                "no PostgreSQL configured: set MEMSTREAM_DATABASE_URL or start the local "
                "database with `make infra-up`"
            )
        return self.database_url
