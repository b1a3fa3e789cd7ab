"""Real infrastructure for the test suite.

Session scope: one Kafka broker and one PostgreSQL — the endpoints from
MEMSTREAM_KAFKA_BOOTSTRAP / MEMSTREAM_DATABASE_URL when set, otherwise the local
ones from infra/ (started if needed, stopped at the end only if this session started
them), or testcontainers when MEMSTREAM_TESTCONTAINERS=1 and a Docker engine answers.

Test scope: every test gets its own topic prefix and its own database (a copy of a
migrated template), so tests never see each other's data. Personal data is encrypted as
in production: the test's process has the encrypting codec on the test's database (a
master key made for the session unless MEMSTREAM_MASTER_KEY is set).

Parallel runs (pytest-xdist, as ``make test`` runs the suite): each worker process is a
session of its own, with a template database of its own and deleting only its own tests'
topics. The local broker and database are started once, by the first worker that needs
them (under a file lock), and stopped by the controller after the last worker is done,
and only if a worker started them. (With testcontainers each worker has containers.)
"""

from __future__ import annotations

import base64
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from infra import local
from infra.migrate import migrate
from services.settings import Settings
from streams.topics import ensure_topics
from tests.helpers import delete_retired_topics, personal_data_codec, retire_topics

TEMPLATE_DB = "memstream_test_template"
#: What a worker started of the local infrastructure (``config.workeroutput``), for the
#: controller to stop once every worker is done.
STARTED_KEY = "memstream_started"
_started_by_workers = pytest.StashKey[set[str]]()


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


@contextmanager
def _infrastructure_lock(settings: Settings) -> Iterator[None]:
    """Held while starting the local infrastructure: parallel workers start it once."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with (settings.home / "test-infra.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def infrastructure(pytestconfig: pytest.Config) -> Iterator[Settings]:
    """Settings pointing at a running broker and database (no prefix/database isolation)."""
    containers = _testcontainers()
    if containers is not None:
        for settings in containers:
            yield _with_master_key(settings)
        return
    with _infrastructure_lock(Settings.from_env()):
        started = local.up(Settings.from_env())
    workeroutput = getattr(pytestconfig, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker: the others may still use what it started; the controller stops
        # it after the last one (pytest_testnodedown / pytest_unconfigure below).
        workeroutput[STARTED_KEY] = list(started.started)
        started.started.clear()
    try:
        yield _with_master_key(started.settings)
    finally:
        delete_retired_topics(started.settings)
        started.down()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: remember what a finished worker started of the infrastructure."""
    started = getattr(node, "workeroutput", {}).get(STARTED_KEY)
    if started:
        node.config.stash.setdefault(_started_by_workers, set()).update(started)


def pytest_unconfigure(config: pytest.Config) -> None:
    """xdist controller: stop what a worker started, now that every worker is done."""
    started = config.stash.get(_started_by_workers, set())
    if started:
        local.Infrastructure(Settings.from_env(), sorted(started)).down()


def _template_name() -> str:
    """This session's template database: one per process (an xdist worker is a session of
    its own), so that sessions running side by side never drop each other's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"{TEMPLATE_DB}_{worker}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def template_database(infrastructure: Settings) -> Iterator[str]:
    """A migrated database that each test's database is copied from (dropped at the end)."""
    template = _template_name()
    admin_url = _with_database(infrastructure.require_database(), "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{template}"')
    try:
        migrate(_with_database(admin_url, template))
        yield template
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


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
