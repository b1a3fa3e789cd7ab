"""The services while their database or broker is down: answered quickly, or served from
what they already know.

The suite's PostgreSQL and Kafka are shared (and other sessions use them), so the
servers stopped here are this module's own: a PostgreSQL (infra/postgres.py) and a Kafka
broker (infra/kafka, reusing the jars already resolved) under a temporary directory, on
free ports.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from prometheus_client import REGISTRY

from infra.kafka import LocalKafka
from infra.migrate import migrate
from infra.postgres import DATABASE, LocalPostgres
from projections.conversations import ConversationsProjection
from schemas import ConversationEnded, decode_event
from services import tenants
from services.briefing import BRIEFING_KEYS
from services.database import RETRY_AFTER_S
from services.ingest.app import create_app as create_ingest
from services.query.app import create_app as create_query
from services.settings import Settings
from streams.topics import Topics, ensure_topics
from tests.helpers import eventually, free_port, read_topic
from tests.integration.ingest_fixtures import ROUTES, SECRETS, TENANT, deliver, payload, signed
from tests.integration.projection_contract import project
from tests.integration.query.corpus import EMBEDDER

CALLER = "+14155550123"  # the caller in every payload of tests/unit/ingest_payloads
#: psycopg_pool's default checkout timeout, which a request used to wait out: anything
#: well under it shows the configured one (2 s) applied.
OLD_CHECKOUT_TIMEOUT_S = 30


@pytest.fixture(scope="module")
async def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalPostgres]:
    """A migrated PostgreSQL of this module's own, which its tests may stop."""
    server = LocalPostgres(root=tmp_path_factory.mktemp("postgres"), port=free_port())
    await asyncio.to_thread(server.ensure_running)
    try:
        await asyncio.to_thread(migrate, server.url())
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def outage(own_postgres: LocalPostgres, topics: Settings) -> Settings:
    """`topics` (on the suite's broker) with a database of its own on `own_postgres`
    (started again if a test before stopped it), and caches that expire quickly."""
    await asyncio.to_thread(own_postgres.ensure_running)
    name = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(
        own_postgres.url("postgres"), autocommit=True
    ) as admin:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{DATABASE}"')
    return topics.replace(database_url=own_postgres.url(name), cache_ttl_s=0.1)


@pytest.fixture(scope="module")
async def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalKafka]:
    """A Kafka broker of this module's own, which its tests may stop."""
    root = tmp_path_factory.mktemp("kafka")
    shared = LocalKafka.from_settings(Settings.from_env())
    if shared.lib.exists():  # the jars infra/kafka already resolved: no Maven run
        (root / "lib").symlink_to(shared.lib)
    # The broker's controller listens on the next port.
    broker = LocalKafka(root=root, port=free_port(2), heap="256m")
    await asyncio.to_thread(broker.ensure_running)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


async def _client(app: Any, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60) as client:
            yield client


async def setup_tenant(settings: Settings, tenant: str) -> str:
    """A tenant with every platform's test secret, and an API key (returned)."""
    async with await psycopg.AsyncConnection.connect(
        settings.require_database(), autocommit=True
    ) as db:
        await tenants.create_tenant(db, tenant, tenant.title(), default_region="US")
        for platform, secret in SECRETS.items():
            await tenants.add_webhook_secret(db, tenant, platform, secret)
        return (await tenants.issue_api_key(db, tenant)).token


def assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)


async def test_the_query_service_answers_503_soon_when_the_database_is_down(
    outage: Settings, own_postgres: LocalPostgres
) -> None:
    token = await setup_tenant(outage, "acme")
    async for client in _client(create_query(outage, embedder=EMBEDDER), "http://query"):
        await asyncio.to_thread(own_postgres.stop)
        # Pooled connections the server closed, then no connection at all: each is a 503.
        for _ in range(3):
            began = time.monotonic()
            response = await client.get(
                f"/v1/users/{CALLER}/briefing", headers={"Authorization": f"Bearer {token}"}
            )
            assert_database_unavailable(response)
            assert time.monotonic() - began < OLD_CHECKOUT_TIMEOUT_S / 2


def elevenlabs_call(conversation_id: str) -> dict[str, Any]:
    body = payload("elevenlabs_post_call_transcription")
    body["data"]["conversation_id"] = conversation_id
    return body


async def test_cached_credentials_verify_webhooks_appended_while_the_database_is_down(
    outage: Settings, own_postgres: LocalPostgres
) -> None:
    await setup_tenant(outage, TENANT)
    await setup_tenant(outage, "harbor")
    async for client in _client(create_ingest(outage), "http://ingest"):
        before = await deliver(client, "elevenlabs", elevenlabs_call("conv_before"))
        assert before.status_code == 200, before.text  # the tenant and its secret are cached
        await asyncio.to_thread(own_postgres.stop)
        await asyncio.sleep(0.2)  # past the cache's TTL: the database is asked, and is down

        during = await deliver(client, "elevenlabs", elevenlabs_call("conv_during"))
        assert during.status_code == 200, during.text
        [event] = during.json()["events"]
        assert event["position"] is not None
        topic = Topics(outage.topic_prefix).conversations
        appended = [decode_event(r.value) for r in await read_topic(outage, topic)]
        ended = [e for e in appended if isinstance(e, ConversationEnded)]
        assert [e.data.conversation_id for e in ended] == ["conv_before", "conv_during"]

        # A tenant this process never read cannot be verified: 503, nothing appended.
        unknown = await deliver(client, "elevenlabs", elevenlabs_call("conv_x"), tenant="harbor")
        assert_database_unavailable(unknown)
        assert len(await read_topic(outage, topic)) == len(appended)


def initiation_failures(platform: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "memstream_ingest_initiation_append_failures_total",
            {"platform": platform, "code": "log_unavailable"},
        )
        or 0.0
    )


async def counted(platform: str, expected: float) -> None:
    """Until the platform's failed call-start appends reach ``expected``."""

    async def probe() -> float:
        return initiation_failures(platform)

    await eventually(probe, lambda count: count == expected, timeout=60)


async def test_call_start_webhooks_answer_the_briefing_while_the_broker_is_unreachable(
    settings: Settings, db: Any, own_kafka: LocalKafka
) -> None:
    own = settings.replace(kafka_bootstrap=own_kafka.bootstrap)
    await ensure_topics(own)
    await setup_tenant(own, TENANT)
    earlier = elevenlabs_call("conv_earlier")
    earlier["data"]["conversation_initiation_client_data"]["dynamic_variables"]["user_name"] = (
        "Maria"
    )
    async for client in _client(create_ingest(own), "http://ingest"):
        assert (await deliver(client, "elevenlabs", earlier)).status_code == 200
        await project(own, ConversationsProjection())
        failed = {p: initiation_failures(p) for p in ("elevenlabs", "vapi")}
        await asyncio.to_thread(own_kafka.stop)
        try:
            await answered_while_unreachable(client, failed)
        finally:
            # The producer keeps what it could not send and flushes it when it stops: the
            # broker comes back so that the app can stop.
            await asyncio.to_thread(own_kafka.ensure_running)


async def answered_while_unreachable(client: httpx.AsyncClient, failed: dict[str, float]) -> None:
    """Both call-start webhooks answer the briefing; their failed appends are counted."""
    initiation = await deliver(client, "elevenlabs-init", payload("elevenlabs_initiation"))
    assert initiation.status_code == 200, initiation.text
    variables = initiation.json()["dynamic_variables"]
    assert set(variables) == set(BRIEFING_KEYS) and variables["user_name"] == "Maria"

    body = orjson.dumps(payload("vapi_assistant_request"))
    assistant = await client.post(
        ROUTES["vapi"].format(tenant=TENANT) + "?assistant_id=asst_front_desk",
        content=body,
        headers=signed("vapi", body),
    )
    assert assistant.status_code == 200, assistant.text
    reply = assistant.json()
    assert reply["assistantId"] == "asst_front_desk"
    assert reply["assistantOverrides"]["variableValues"]["user_name"] == "Maria"

    # Neither answer claimed the append: it fails when the producer gives up (its
    # timeout), and is counted and logged.
    for platform in ("elevenlabs", "vapi"):
        await counted(platform, failed[platform] + 1)
