"""The local infrastructure's life cycle: reuse what runs, stop only what was started."""

from __future__ import annotations

import os

import pytest

from infra import local
from infra.kafka import LocalKafka
from infra.migrate import migrate
from infra.postgres import LocalPostgres
from services.settings import Settings

local_only = pytest.mark.skipif(
    bool(os.environ.get("MEMSTREAM_KAFKA_BOOTSTRAP") or os.environ.get("MEMSTREAM_DATABASE_URL"))
    or os.environ.get("MEMSTREAM_TESTCONTAINERS") == "1",
    reason="the suite runs against external endpoints; the local launchers are not in use",
)


@local_only
def test_starting_twice_reuses_the_running_broker_and_database(infrastructure: Settings) -> None:
    again = local.up(Settings.from_env())
    assert again.started == []  # both were running: nothing new started
    assert again.settings.kafka_bootstrap == infrastructure.kafka_bootstrap
    assert again.settings.database_url == infrastructure.database_url


@local_only
def test_stopping_what_a_second_start_started_leaves_the_running_ones_alone(
    infrastructure: Settings,
) -> None:
    again = local.up(Settings.from_env())
    again.down()
    defaults = Settings.from_env()
    assert LocalKafka.from_settings(defaults).answering()
    assert LocalPostgres.from_settings(defaults).pid() is not None


def test_configured_endpoints_start_nothing_local(infrastructure: Settings) -> None:
    started = local.up(
        Settings(kafka_bootstrap="kafka.example:9092", database_url="postgresql://db.example/x")
    )
    assert started.started == []
    assert started.settings.kafka_bootstrap == "kafka.example:9092"
    status = local.status(started.settings)
    assert status["kafka"]["mode"] == "external" and status["postgres"]["mode"] == "external"


def test_migrations_apply_once(settings: Settings) -> None:
    # The test database is a copy of a migrated template: everything is applied already.
    assert migrate(settings.require_database()) == []
