"""Platform webhooks through the real ingest app, the real log and the conversations read model."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from projections.conversations import ConversationsProjection, get_conversation, get_user
from projections.memories import MemoriesProjection
from schemas import ConversationEnded, ConversationStarted, MemoryExtracted, Source, decode_event
from services.briefing import BRIEFING_KEYS
from services.settings import Settings
from streams import EventLog
from streams.topics import Topics
from tests.helpers import read_topic
from tests.integration.ingest_fixtures import (
    TENANT,
    deliver,
    ingest,
    payload,
    tenant,
)
from tests.integration.projection_contract import project

__all__ = ["ingest", "tenant"]  # fixtures used by name below

CALLER = "+14155550123"  # the caller in every payload of tests/unit/ingest_payloads


async def appended(settings: Settings) -> list[Any]:
    topic = Topics(settings.topic_prefix).conversations
    return [decode_event(r.value) for r in await read_topic(settings, topic)]


def vapi_end_of_call(call_id: str) -> dict[str, Any]:
    body = payload("vapi_end_of_call_report")
    body["message"]["call"]["id"] = call_id
    return body


async def test_an_elevenlabs_transcription_becomes_a_conversation_in_the_read_model(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    body = payload("elevenlabs_post_call_transcription")
    response = await deliver(ingest, "elevenlabs", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["kind"] == "elevenlabs.post_call_transcription"
    assert [e["type"] for e in answer["events"]] == ["conversation.ended"]
    assert answer["events"][0]["position"] is not None

    await project(topics, ConversationsProjection())
    conversation = await get_conversation(db, TENANT, body["data"]["conversation_id"])
    assert conversation is not None
    assert conversation["status"] == "ended"
    assert conversation["platform"] == "elevenlabs"
    assert conversation["subject"] == f"{TENANT}/{CALLER}"
    assert conversation["turn_count"] == len(body["data"]["transcript"])
    assert conversation["turns"][1]["text"] == body["data"]["transcript"][1]["message"]
    assert conversation["summary"] == body["data"]["analysis"]["transcript_summary"]
    user = await get_user(db, TENANT, f"{TENANT}/{CALLER}")
    assert user is not None and user["conversation_count"] == 1


async def test_a_vapi_end_of_call_report_becomes_a_conversation_in_the_read_model(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    body = payload("vapi_end_of_call_report")
    response = await deliver(ingest, "vapi", body)
    assert response.status_code == 200, response.text
    assert response.json()["kind"] == "vapi.end-of-call-report"

    await project(topics, ConversationsProjection())
    conversation = await get_conversation(db, TENANT, body["message"]["call"]["id"])
    assert conversation is not None
    assert conversation["status"] == "ended" and conversation["platform"] == "vapi"
    assert conversation["subject"] == f"{TENANT}/{CALLER}"
    assert conversation["turn_count"] > 0
    assert conversation["summary"] == body["message"]["analysis"]["summary"]


async def test_a_retell_call_analyzed_becomes_a_conversation_in_the_read_model(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    body = payload("retell_call_analyzed")
    response = await deliver(ingest, "retell", body)
    assert response.status_code == 200, response.text
    assert response.json()["kind"] == "retell.call_analyzed"

    await project(topics, ConversationsProjection())
    conversation = await get_conversation(db, TENANT, body["call"]["call_id"])
    assert conversation is not None
    assert conversation["status"] == "ended" and conversation["platform"] == "retell"
    assert conversation["turn_count"] == len(body["call"]["transcript_object"])
    assert conversation["summary"] == body["call"]["call_analysis"]["call_summary"]


async def test_an_elevenlabs_initiation_failure_is_a_failed_conversation(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    body = payload("elevenlabs_call_initiation_failure")
    response = await deliver(ingest, "elevenlabs", body)
    assert response.status_code == 200, response.text
    assert [e["type"] for e in response.json()["events"]] == ["conversation.failed"]
    await project(topics, ConversationsProjection())
    conversation = await get_conversation(db, TENANT, body["data"]["conversation_id"])
    assert conversation is not None and conversation["status"] == "failed"
    assert conversation["failure_reason"] == body["data"]["failure_reason"]


@pytest.mark.parametrize(
    ("platform", "name"),
    [
        ("elevenlabs", "elevenlabs_post_call_audio"),
        ("vapi", "vapi_status_update"),
    ],
)
async def test_webhooks_without_a_fact_to_keep_are_acknowledged_and_append_nothing(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, platform: str, name: str
) -> None:
    body = payload(name)
    if name == "vapi_status_update":
        # A partial transcript: acknowledged and dropped (only final turns are live events).
        body["message"].update(type="transcript", role="user", transcriptType="partial")
        body["message"]["transcript"] = "I'd like to"
    response = await deliver(ingest, platform, body)
    assert response.status_code == 200, response.text
    assert response.json()["events"] == []
    assert await appended(topics) == []


async def test_the_same_webhook_delivered_five_times_is_one_conversation(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    body = payload("elevenlabs_post_call_transcription")
    ids = set()
    for _ in range(5):
        response = await deliver(ingest, "elevenlabs", body)
        assert response.status_code == 200, response.text
        ids.update(e["id"] for e in response.json()["events"])
    assert len(ids) == 1
    assert response.json()["duplicates"] == 1
    # This process appended it once; a redelivery reaching another ingest process
    # would append the same event id again, which the projection applies once.
    assert [str(e.id) for e in await appended(topics)] == list(ids)

    await project(topics, ConversationsProjection())
    user = await get_user(db, TENANT, f"{TENANT}/{CALLER}")
    assert user is not None and user["conversation_count"] == 1


async def test_copies_of_a_webhook_delivered_at_once_are_appended_once(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    body = payload("elevenlabs_post_call_transcription")
    responses = await asyncio.gather(*(deliver(ingest, "elevenlabs", body) for _ in range(20)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    # One of them appended it; each of the others waited for that append, a duplicate.
    assert sorted(r.json()["duplicates"] for r in responses) == [0] + [1] * 19
    [event] = await appended(topics)
    assert {e["id"] for r in responses for e in r.json()["events"]} == {str(event.id)}


async def test_redelivery_through_two_ingest_processes_still_counts_once(
    topics: Settings, db: Any, tenant: str
) -> None:
    from services.ingest.app import create_app

    body = vapi_end_of_call("call-two-processes")
    for _ in range(2):  # two apps: no shared in-process dedupe, so the log holds it twice
        app = create_app(topics)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://i") as client:
                assert (await deliver(client, "vapi", body)).status_code == 200
    events = await appended(topics)
    assert len(events) == 2 and events[0].id == events[1].id

    await project(topics, ConversationsProjection())
    user = await get_user(db, TENANT, f"{TENANT}/{CALLER}")
    assert user is not None and user["conversation_count"] == 1


async def test_initiation_for_an_unknown_caller_sends_every_variable_empty(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    someone_else = vapi_end_of_call("call-someone-else")
    someone_else["message"]["call"]["customer"]["number"] = "+14155550999"
    someone_else["message"]["customer"] = {"number": "+14155550999"}
    assert (await deliver(ingest, "vapi", someone_else)).status_code == 200
    await project(topics, ConversationsProjection())

    response = await deliver(ingest, "elevenlabs-init", payload("elevenlabs_initiation"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "type": "conversation_initiation_client_data",
        "dynamic_variables": dict.fromkeys(BRIEFING_KEYS, ""),
    }
    # Records are read partition by partition: the two callers' keys decide which comes last.
    [started] = [e for e in await appended(topics) if isinstance(e, ConversationStarted)]
    assert started.subject == f"{TENANT}/{CALLER}"


async def test_initiation_answers_an_empty_briefing_when_the_read_model_is_unavailable(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    # No projection has run: the conversations views do not exist yet.
    failures = (
        REGISTRY.get_sample_value(
            "memstream_ingest_briefing_failures_total", {"reason": "UndefinedTable"}
        )
        or 0.0
    )
    response = await deliver(ingest, "elevenlabs-init", payload("elevenlabs_initiation"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "type": "conversation_initiation_client_data",
        "dynamic_variables": dict.fromkeys(BRIEFING_KEYS, ""),
    }
    [started] = await appended(topics)
    assert isinstance(started, ConversationStarted)
    assert (
        REGISTRY.get_sample_value(
            "memstream_ingest_briefing_failures_total", {"reason": "UndefinedTable"}
        )
        == failures + 1
    )


async def test_initiation_for_a_known_caller_briefs_the_agent_from_the_read_model(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    first = payload("elevenlabs_post_call_transcription")
    first["data"]["conversation_initiation_client_data"]["dynamic_variables"]["user_name"] = "Maria"
    second = copy.deepcopy(first)
    second["data"]["conversation_id"] = "conv_second"
    second["data"]["metadata"]["start_time_unix_secs"] += 86_400
    second["data"]["analysis"]["transcript_summary"] = "Asked about whitening prices."
    second["data"]["analysis"]["call_summary_title"] = "Whitening prices"
    for body in (first, second):
        assert (await deliver(ingest, "elevenlabs", body)).status_code == 200
    await project(topics, ConversationsProjection())

    response = await deliver(
        ingest, "elevenlabs-init", payload("elevenlabs_initiation"), query="?first_message=true"
    )
    assert response.status_code == 200, response.text
    variables = response.json()["dynamic_variables"]
    assert set(variables) == set(BRIEFING_KEYS)
    assert variables["user_name"] == "Maria"
    assert variables["recent_topics"].startswith("Whitening prices")
    # The most recent call comes first in the context.
    context = variables["memory_context"].splitlines()
    assert context[0].endswith("Asked about whitening prices.")
    assert first["data"]["analysis"]["transcript_summary"].split()[0] in context[1]
    started = second["data"]["metadata"]["start_time_unix_secs"]
    assert variables["last_interaction"] == datetime.fromtimestamp(started, UTC).date().isoformat()
    override = response.json()["conversation_config_override"]["agent"]["first_message"]
    assert "Maria" in override


async def test_vapi_assistant_request_is_answered_with_the_briefing(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    assert (await deliver(ingest, "vapi", vapi_end_of_call("call-earlier"))).status_code == 200
    await project(topics, ConversationsProjection())

    response = await deliver(
        ingest, "vapi", payload("vapi_assistant_request"), query="?assistant_id=asst_front_desk"
    )
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["assistantId"] == "asst_front_desk"
    variables = reply["assistantOverrides"]["variableValues"]
    assert set(variables) == set(BRIEFING_KEYS)
    assert variables["last_interaction"] != ""
    assert variables["memory_context"] != ""
    types = [type(e) for e in await appended(topics)]
    assert types == [ConversationEnded, ConversationStarted]


async def test_vapi_assistant_request_without_an_assistant_is_refused_and_appends_nothing(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    response = await deliver(ingest, "vapi", payload("vapi_assistant_request"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "assistant_not_configured"
    assert await appended(topics) == []


async def test_initiation_briefs_the_agent_with_the_callers_strongest_memories(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    # Yesterday's call: memories decay from when they were said.
    said_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    call = payload("elevenlabs_post_call_transcription")
    call["data"]["metadata"]["start_time_unix_secs"] = int(said_at.timestamp())
    assert (await deliver(ingest, "elevenlabs", call)).status_code == 200

    def memory(content: str, sector: str, salience: float) -> MemoryExtracted:
        return MemoryExtracted.create(
            tenant=TENANT,
            subject=f"{TENANT}/{CALLER}",
            source=Source(platform="memstream"),
            occurred_at=said_at,
            data={
                "memory_id": uuid.uuid4(),
                "content": content,
                "sector": sector,
                "salience": salience,
                "kind": "fact",
                "observed_at": said_at,
                "extractor": "rules",
                "extractor_version": "1",
                "provenance": {"conversation_id": call["data"]["conversation_id"]},
            },
        )

    async with EventLog(topics) as log:
        await log.append_many(
            [
                memory("Allergic to penicillin", "semantic", 0.9),
                memory("Moved the cleaning appointment to Friday", "episodic", 0.7),
                memory("Likes the radio station in the waiting room", "semantic", 0.1),
            ]
        )
    await project(topics, ConversationsProjection())
    await project(topics, MemoriesProjection())

    response = await deliver(ingest, "elevenlabs-init", payload("elevenlabs_initiation"))
    assert response.status_code == 200, response.text
    lines = response.json()["dynamic_variables"]["memory_context"].splitlines()
    day = said_at.date().isoformat()
    assert lines[:3] == [
        "- Allergic to penicillin",
        f"- Moved the cleaning appointment to Friday ({day})",
        "- Likes the radio station in the waiting room",
    ]
    assert lines[3].startswith(f"Last call {day}: ")
