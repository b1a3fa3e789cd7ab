"""Fixtures of the query tests: the golden corpus (corpus.py) projected once per module into
a database of its own, and a fresh copy of that database for each test.

Projecting takes seconds; copying a database is a file copy (``CREATE DATABASE ...
TEMPLATE``). Each test's ``settings`` (overriding the suite's) points at its own copy, so
tests still never see each other's writes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from projections.audit import AuditProjection
from projections.conversations import ConversationsProjection
from projections.embeddings.processor import EmbeddingProcessor
from projections.embeddings.projection import EmbeddingsProjection
from projections.memories import MemoriesProjection
from services.settings import Settings
from streams import EventLog
from streams.topics import ensure_topics
from tests.helpers import personal_data_codec, retire_topics
from tests.integration.projection_contract import project
from tests.integration.query.corpus import EMBEDDER, corpus_events


def _admin(url: str) -> str:
    return url.rpartition("/")[0] + "/postgres"


@pytest.fixture(scope="module")
async def corpus_database(infrastructure: Settings, template_database: str) -> AsyncIterator[str]:
    """A database holding the corpus's read models, projected from a real log."""
    name = f"q_{uuid.uuid4().hex[:12]}"
    admin = _admin(infrastructure.require_database())
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    settings = infrastructure.replace(
        topic_prefix=name.replace("_", "-"),
        database_url=admin.rpartition("/")[0] + f"/{name}",
        partitions=3,
        batch_timeout_ms=50,
    )
    try:
        # Its keys are in it: each test's copy has them too. No session stays open on it.
        with personal_data_codec(settings):
            await ensure_topics(settings)
            async with EventLog(settings) as log:
                await log.append_many(corpus_events())
            await project(settings, ConversationsProjection())
            await project(settings, MemoriesProjection())
            await project(settings, EmbeddingProcessor(EMBEDDER))
            await project(settings, EmbeddingsProjection())
            await project(settings, AuditProjection())  # empty: its tables, for GET /v1/audit
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        retire_topics(settings)


@pytest.fixture
def settings(infrastructure: Settings, corpus_database: str) -> Iterator[Settings]:
    """Each test's own copy of the corpus database (overrides the conftest fixture)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin(infrastructure.require_database())
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{corpus_database}"')
    copy = infrastructure.replace(
        topic_prefix=name.replace("_", "-"),
        database_url=admin.rpartition("/")[0] + f"/{name}",
        partitions=3,
        batch_timeout_ms=50,
    )
    try:
        with personal_data_codec(copy):
            yield copy
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        retire_topics(copy)
