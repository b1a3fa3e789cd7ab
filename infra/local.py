"""Resolve memstream's endpoints: configured ones as they are, local infrastructure otherwise."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from infra.kafka import LocalKafka
from infra.postgres import LocalPostgres
from infra.settings import InfraSettings

logger = logging.getLogger(__name__)

#: The caller's settings type (the CLI's whole `Settings`), handed back resolved.
S = TypeVar("S", bound=InfraSettings)


@dataclass
class Infrastructure(Generic[S]):
    """What `up` started, so that `down` stops only that."""

    settings: S
    started: list[str] = field(default_factory=list)

    def down(self) -> None:
        if "kafka" in self.started:
            LocalKafka.from_settings(self.settings).stop()
        if "postgres" in self.started:
            LocalPostgres.from_settings(self.settings).stop()
        self.started.clear()


def up(settings: S) -> Infrastructure[S]:
    """Start what is not configured; return settings with both endpoints filled in."""
    started: list[str] = []
    if settings.kafka_bootstrap is None:
        kafka = LocalKafka.from_settings(settings)
        if kafka.ensure_running():
            started.append("kafka")
        settings = settings.replace(kafka_bootstrap=kafka.bootstrap)
    if settings.database_url is None:
        postgres = LocalPostgres.from_settings(settings)
        if postgres.ensure_running():
            started.append("postgres")
        settings = settings.replace(database_url=postgres.url())
    return Infrastructure(settings=settings, started=started)


def down(settings: InfraSettings) -> list[str]:
    """Stop the local broker and database if they run (never configured endpoints)."""
    stopped = []
    if settings.kafka_bootstrap is None and LocalKafka.from_settings(settings).stop():
        stopped.append("kafka")
    if settings.database_url is None and LocalPostgres.from_settings(settings).stop():
        stopped.append("postgres")
    return stopped


def status(settings: InfraSettings) -> dict[str, dict[str, object]]:
    kafka = LocalKafka.from_settings(settings)
    postgres = LocalPostgres.from_settings(settings)
    return {
        "kafka": {"endpoint": settings.kafka_bootstrap, "mode": "external"}
        if settings.kafka_bootstrap
        else {
            "endpoint": kafka.bootstrap,
            "mode": "local",
            "running": kafka.answering(),
            "pid": kafka.pid(),
        },
        "postgres": {"endpoint": settings.database_url, "mode": "external"}
        if settings.database_url
        else {
            "endpoint": postgres.url(),
            "mode": "local",
            "running": postgres.pid() is not None,
            "pid": postgres.pid(),
        },
    }
