"""Real infrastructure for the test suite.

Session scope: one Kafka broker and one PostgreSQL — the endpoints from
MEMSTREAM_KAFKA_BOOTSTRAP / MEMSTREAM_DATABASE_URL when set, otherwise the local
ones from infra/ (started if needed, stopped at the end only if this session started
them), or testcontainers when MEMSTREAM_TESTCONTAINERS=1 and a Docker engine answers.

Test scope: every test gets its own topic prefix and its own database (a copy of a
migrated template), so tests never see each other's data. Personal data is encrypted as
in production: the test's process has the encrypting codec on the test's database (a
master key made for the session unless MEMSTREAM_MASTER_KEY is set).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from infra import local
from infra.migrate import migrate
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.helpers import delete_retired_topics, personal_data_codec, retire_topics

TEMPLATE_DB = "memstream_test_template"


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


def _testcontainers() -> Iterator[Settings] | None:
    if os.environ.get("MEMSTREAM_TESTCONTAINERS") != "1":
        return None
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    def run() -> Iterator[Settings]:
        with (
            # testcontainers' Kafka module drives Confluent's image (Apache Kafka 3.9);
            # the no-Docker path and docker-compose run Apache Kafka 4.1.1.
            KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as kafka,
            PostgresContainer("pgvector/pgvector:0.8.1-pg17", driver=None) as postgres,
        ):
            yield Settings.from_env().replace(
                kafka_bootstrap=kafka.get_bootstrap_server(),
                database_url=postgres.get_connection_url(),
            )

    return run()


def _with_master_key(settings: Settings) -> Settings:
    if settings.master_key or settings.master_key_file:
        return settings
    return settings.replace(master_key=base64.b64encode(os.urandom(32)).decode())


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[Settings]:
    """Settings pointing at a running broker and database (no prefix/database isolation)."""
    containers = _testcontainers()
    if containers is not None:
        for settings in containers:
            yield _with_master_key(settings)
        return
    started = local.up(Settings.from_env())
    try:
        yield _with_master_key(started.settings)
    finally:
        delete_retired_topics(started.settings)
        started.down()


@pytest.fixture(scope="session")
def template_database(infrastructure: Settings) -> str:
    """A migrated database that each test's database is copied from."""
    admin_url = _with_database(infrastructure.require_database(), "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    migrate(_with_database(admin_url, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
def settings(infrastructure: Settings, template_database: str) -> Iterator[Settings]:
    """Settings of one test: its own topic prefix and its own database."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin_url = _with_database(infrastructure.require_database(), "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    test_settings = infrastructure.replace(
        topic_prefix=name.replace("_", "-"),
        database_url=_with_database(admin_url, name),
        partitions=3,
        batch_timeout_ms=50,
        retry_backoff_ms=20,
    )
    try:
        with personal_data_codec(test_settings):
            yield test_settings
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        retire_topics(test_settings)


@pytest.fixture
async def topics(settings: Settings) -> Settings:
    """`settings` with its topics created."""
    await ensure_topics(settings)
    return settings


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncConnection[Any]]:
    """An autocommit connection to the test's database."""
    conn = await AsyncConnection.connect(settings.require_database(), autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()
