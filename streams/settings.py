"""memstream's configuration: every ``MEMSTREAM_*`` environment variable is a field of a
settings section, read in one place (:meth:`SettingsSection.from_env`).

Each layer owns the section of what it reads: :class:`StreamsSettings` here (the log,
the database, keys, batching), ``infra.settings.InfraSettings`` (the local broker and
database), ``projections.settings.ProjectionSettings`` (providers, breaker, summaries)
and ``services.settings.Settings`` (the services; it combines every section and is what
the ``memstream`` command reads). A layer's section extends the one below it, so a value
handed down to a lower layer is that layer's section too.

A field ``name`` is the variable ``MEMSTREAM_<NAME>``: adding a setting is one line, with
its default and its constraints; `from_env`, `to_env` and `replace` follow the fields.
The other packages receive a section instead of reading the environment themselves, so a
test can build one by hand and two components in one process can be pointed at different
brokers or databases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources import PydanticBaseSettingsSource

from streams.exceptions import ConfigurationError

PREFIX = "MEMSTREAM_"


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _topic_prefix(value: str) -> str:
    if not value or not all(c.isalnum() or c in "._-" for c in value):
        raise ValueError("must be non-empty and use only letters, digits, '.', '_', '-'")
    return value


#: Field types with the rules every section shares: upper- / lower-cased words, a path
#: made absolute, a duration in seconds.
Upper = BeforeValidator(_upper)
Lower = BeforeValidator(_lower)
AbsolutePath = Annotated[Path, AfterValidator(lambda p: p.resolve())]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (``os.environ`` or a
    child's environment); a value of only spaces is unset, like an empty one."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = {k: v.strip() for k, v in env.items() if k.upper().startswith(PREFIX)}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._env.items() if v}


def _describe(error: ValidationError, section: type[BaseSettings]) -> str:
    """One line naming the variable, for the CLI to print (it exits 2); the value too,
    unless it is a secret (a field kept out of repr)."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not first["loc"]:
        return message
    name = str(first["loc"][0])
    message = f"{PREFIX}{name.upper()}: {message[:1].lower()}{message[1:]}"
    field = section.model_fields.get(name)
    return message if field is not None and not field.repr else f"{message}, got {first['input']!r}"


class SettingsSection(BaseSettings):
    """What every section shares: the ``MEMSTREAM_`` names, immutability, and invalid
    values reported as :class:`ConfigurationError` naming the variable."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc, type(self))) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the values given: the environment is read by `from_env`, explicitly, so a
        # section built in code (a test's) never picks up the process's variables.
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read the ``MEMSTREAM_*`` variables (or the given mapping), with defaults for the rest."""
        return cls(**_Environment(cls, os.environ if env is None else env)())

    @classmethod
    def variables(cls) -> list[str]:
        """The names of the variables this section reads."""
        return [PREFIX + name.upper() for name in cls.model_fields]

    def to_env(self) -> dict[str, str]:
        """The ``MEMSTREAM_*`` variables that make `from_env` give back these settings (to
        hand them to a child process). Secrets included: for its environment only."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or value == "":
                continue
            if isinstance(value, bool):
                value = "on" if value else "off"
            env[PREFIX + name.upper()] = str(value)
        return env

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (e.g. the endpoints the launcher resolved),
        validated like the original."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**values, **changes})


class StreamsSettings(SettingsSection):
    """Where memstream's log and read models live, and how its processors behave."""

    # Endpoints. None means "not configured": the local launcher (infra/) starts a
    # broker / database under `home` and fills these in.
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    # How the Kafka clients connect: PLAINTEXT (the local broker), SSL, SASL_PLAINTEXT or
    # SASL_SSL (managed Kafka), with a SASL mechanism and credentials; `kafka_ssl_cafile`
    # trusts a private CA (the system's CAs otherwise).
    kafka_security_protocol: Annotated[SecurityProtocol, Upper] = "PLAINTEXT"
    kafka_sasl_mechanism: Annotated[str | None, Upper] = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(default=None, repr=False)
    kafka_ssl_cafile: str | None = None

    # The log.
    topic_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "memstream"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    # Where the local broker and database keep their files, and the default master key.
    home: AbsolutePath = Field(default_factory=lambda: Path(".memstream").resolve())

    # Projection runtime.
    batch_max_records: int = Field(default=2000, ge=1)
    batch_timeout_ms: int = 200
    poison_retries: int = Field(default=3, ge=0)
    retry_backoff_ms: int = 200

    # Personal data (streams/subject_keys.py): every subject's data key is wrapped by the
    # master key, base64 of 32 bytes, given itself or as a file; neither: the file
    # `home/master.key`, created on first use (a developer's machine). During a rotation
    # the keys being retired (comma-separated) still unwrap. A process stops using a
    # destroyed subject key within `key_cache_s`. Encryption off: benchmarks only.
    master_key: str | None = Field(default=None, repr=False)
    master_key_file: AbsolutePath | None = None
    previous_master_keys: str | None = Field(default=None, repr=False)
    key_cache_s: float = Field(default=5.0, gt=0)
    personal_data_encryption: bool = True

    # How long the live topic keeps mid-call events (set when the topic is created; the
    # post-call report stays the call's record).
    live_retention_s: float = Field(default=7 * 86400.0, ge=3600)

    # The audit trail (streams/audit.py): reads of personal data and erasures, recorded
    # on the audit topic. Entries wait in a buffer of `audit_buffer`, appended in batches
    # at least every `audit_flush_ms`; a request that finds it full waits up to
    # `audit_wait_ms` for room, then is refused (503 audit_unavailable). Off: benchmarks.
    audit_trail: bool = True
    audit_buffer: int = Field(default=10_000, ge=1)
    audit_flush_ms: int = Field(default=100, ge=1)
    audit_wait_ms: int = Field(default=500, ge=0)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_mechanism in SASL_MECHANISMS
            and self.kafka_sasl_username
            and self.kafka_sasl_password
        ):
            raise ConfigurationError(
                "MEMSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_* needs MEMSTREAM_KAFKA_SASL_MECHANISM"
                f" ({', '.join(SASL_MECHANISMS)}), MEMSTREAM_KAFKA_SASL_USERNAME and"
                " MEMSTREAM_KAFKA_SASL_PASSWORD"
            )
        return self

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
