"""Webhook event ids include the tenant: one platform call sent to two tenants is two
events; a tenant from before that keeps the earlier ids of its earlier calls.

Real ingest app, broker and database; "before the upgrade" is a tenant whose
``legacy_ids_before`` is set, as migration 0007 sets it for the tenants that exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from projections.conversations import ConversationsProjection, get_conversation, get_user
from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection, list_memories
from schemas import ConversationEnded, Event, decode_event, derived_event_id, tenant_event_id
from services import tenants
from services.ingest.app import create_app
from services.settings import Settings
from streams.projection import version_schema
from streams.topics import MEMORIES, Topics
from tests.helpers import read_topic
from tests.integration.ingest_fixtures import SECRETS, TENANT, deliver, ingest, payload, tenant
from tests.integration.projection_contract import project, snapshot

__all__ = ["ingest", "tenant"]  # fixtures used by name below

STAGING = "bayview-staging"
CALLER = "+14155550123"  # the caller in every payload of tests/unit/ingest_payloads
ELEVENLABS_CALL = "conv_01jz8m2x4y6z8a0b2c4d6e8f0g"
VAPI_CALL = "b6f0c6a2-4e1d-4c8f-9a3b-2d7e5f1a9c04"


def transcription() -> dict[str, Any]:
    """The ElevenLabs post-call transcription, with facts the rules extract."""
    body = payload("elevenlabs_post_call_transcription")
    body["data"]["transcript"][1]["message"] = (
        "Hi Ava, I live in Denver and I'm allergic to penicillin."
    )
    return body


async def add_tenant(db: Any, tenant: str) -> None:
    await tenants.create_tenant(db, tenant, default_region="US")
    for platform, secret in SECRETS.items():
        await tenants.add_webhook_secret(db, tenant, platform, secret)


async def from_before_the_upgrade(db: Any, tenant: str) -> None:
    """What migration 0007 does to a tenant that exists when it runs."""
    await db.execute(
        "UPDATE memstream.tenants SET legacy_ids_before = now() + interval '1 hour'"
        " WHERE tenant = %s",
        [tenant],
    )


@asynccontextmanager
async def ingest_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another ingest process (nothing shared in memory with the `ingest` fixture)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


async def conversation_events(settings: Settings) -> list[Event]:
    topic = Topics(settings.topic_prefix).conversations
    return [decode_event(r.value) for r in await read_topic(settings, topic)]


async def memory_events(settings: Settings) -> list[Event]:
    topic = Topics(settings.topic_prefix).name(MEMORIES)
    return [decode_event(r.value) for r in await read_topic(settings, topic)]


async def extract_and_project(settings: Settings, extraction_version: int = 1) -> None:
    await project(settings, ExtractionProcessor(), version=extraction_version)
    await project(settings, MemoriesProjection())


async def test_one_call_sent_to_two_tenants_is_appended_and_projected_for_both(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    await add_tenant(db, STAGING)
    bodies = {"elevenlabs": transcription(), "vapi": payload("vapi_end_of_call_report")}
    ids: dict[tuple[str, str], str] = {}
    for platform, body in bodies.items():
        for to in (TENANT, STAGING):  # the same ingest process, one after the other
            response = await deliver(ingest, platform, body, tenant=to)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["duplicates"] == 0
            assert [e["position"] is not None for e in answer["events"]] == [True]
            ids[(platform, to)] = answer["events"][0]["id"]
    assert ids[("elevenlabs", TENANT)] == str(
        tenant_event_id(TENANT, "elevenlabs", "post_call_transcription", ELEVENLABS_CALL)
    )
    assert ids[("vapi", STAGING)] == str(
        tenant_event_id(STAGING, "vapi", "end-of-call-report", VAPI_CALL)
    )
    appended = await conversation_events(topics)
    assert sorted(str(e.id) for e in appended) == sorted(ids.values())
    assert len(set(ids.values())) == 4

    await project(topics, ConversationsProjection())
    for to in (TENANT, STAGING):
        for call in (ELEVENLABS_CALL, VAPI_CALL):
            conversation = await get_conversation(db, to, call)
            assert conversation is not None and conversation["status"] == "ended"
            assert conversation["subject"] == f"{to}/{CALLER}"
        user = await get_user(db, to, f"{to}/{CALLER}")
        assert user is not None and user["conversation_count"] == 2

    # The events derived from them are the tenants' own too.
    await extract_and_project(topics)
    extracted = {to: await list_memories(db, to, f"{to}/{CALLER}") for to in (TENANT, STAGING)}
    assert extracted[TENANT] and len(extracted[TENANT]) == len(extracted[STAGING])
    assert {m["content"] for m in extracted[TENANT]} == {m["content"] for m in extracted[STAGING]}
    assert not {m["memory_id"] for m in extracted[TENANT]} & {
        m["memory_id"] for m in extracted[STAGING]
    }

    # Within one tenant, a redelivery is still the same event.
    for platform, body in bodies.items():
        response = await deliver(ingest, platform, body, tenant=STAGING)
        assert response.status_code == 200, response.text
        assert response.json()["duplicates"] == 1
        assert response.json()["events"][0]["id"] == ids[(platform, STAGING)]
    assert len(await conversation_events(topics)) == 4


async def test_a_tenant_from_before_the_upgrade_keeps_the_earlier_ids_of_earlier_calls(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    await from_before_the_upgrade(db, TENANT)
    earlier_id = derived_event_id("elevenlabs", "post_call_transcription", ELEVENLABS_CALL)
    # Before the upgrade: the call came in and was extracted.
    response = await deliver(ingest, "elevenlabs", transcription())
    assert response.status_code == 200, response.text
    assert response.json()["events"][0]["id"] == str(earlier_id)
    await project(topics, ConversationsProjection())
    await extract_and_project(topics)
    memories_before = await memory_events(topics)
    assert memories_before and {e.causation_id for e in memories_before} == {earlier_id}
    read_model_before = await snapshot(db, version_schema("memories", 1), MemoriesProjection.tables)

    # After the upgrade, a new ingest process gets the same webhook again: the same event,
    # which the log now holds twice and every projection applies once.
    async with ingest_process(topics) as upgraded:
        response = await deliver(upgraded, "elevenlabs", transcription())
    assert response.status_code == 200, response.text
    assert response.json()["events"][0]["id"] == str(earlier_id)
    assert [e.id for e in await conversation_events(topics)] == [earlier_id, earlier_id]
    await project(topics, ConversationsProjection())
    conversations = await snapshot(
        db, version_schema("conversations", 1), ConversationsProjection.tables
    )
    await extract_and_project(topics)
    assert await memory_events(topics) == memories_before  # not extracted a second time
    assert (
        await snapshot(db, version_schema("memories", 1), MemoriesProjection.tables)
        == read_model_before
    )

    # Replayed from the start, the log gives the same ids and the same read models: a
    # rebuilt conversations read model and a second extraction version (which appends the
    # memory events again, with the ids the first one gave them).
    await project(topics, ConversationsProjection(), version=2)
    assert (
        await snapshot(db, version_schema("conversations", 2), ConversationsProjection.tables)
        == conversations
    )
    await extract_and_project(topics, extraction_version=2)
    replayed = await memory_events(topics)
    assert len(replayed) == 2 * len(memories_before)
    assert {e.id for e in replayed} == {e.id for e in memories_before}
    assert (
        await snapshot(db, version_schema("memories", 1), MemoriesProjection.tables)
        == read_model_before
    )

    # A tenant created after the upgrade gets an id of its own for the same call.
    await add_tenant(db, STAGING)
    response = await deliver(ingest, "elevenlabs", transcription(), tenant=STAGING)
    assert response.status_code == 200, response.text
    assert response.json()["duplicates"] == 0
    assert response.json()["events"][0]["id"] == str(
        tenant_event_id(STAGING, "elevenlabs", "post_call_transcription", ELEVENLABS_CALL)
    )


async def test_two_tenants_from_before_the_upgrade_both_get_an_earlier_call(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    # Their earlier ids are the same: only the tenant tells the two events apart, and
    # every dedupe key includes it.
    await add_tenant(db, STAGING)
    for to in (TENANT, STAGING):
        await from_before_the_upgrade(db, to)
    for to in (TENANT, STAGING):
        response = await deliver(ingest, "vapi", payload("vapi_end_of_call_report"), tenant=to)
        assert response.status_code == 200, response.text
        assert response.json()["duplicates"] == 0
    appended = await conversation_events(topics)
    assert sorted((e.tenant, e.id) for e in appended) == [
        (to, derived_event_id("vapi", "end-of-call-report", VAPI_CALL)) for to in (TENANT, STAGING)
    ]
    assert all(isinstance(e, ConversationEnded) for e in appended)

    await project(topics, ConversationsProjection())
    for to in (TENANT, STAGING):
        assert await get_conversation(db, to, VAPI_CALL) is not None
