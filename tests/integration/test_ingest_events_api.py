"""POST /v1/events: memstream events from any producer, authenticated by a tenant API key."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from schemas import (
    MemoryAsserted,
    MemoryRetracted,
    Source,
    UserForgotten,
    decode_event,
)
from services import tenants
from services.settings import Settings
from streams.topics import Topics
from tests.helpers import call_events, read_topic
from tests.integration.ingest_fixtures import api_key, ingest
from tests.integration.test_memories_projection import extracted

__all__ = ["api_key", "ingest"]  # fixtures used by name below


def wire(event: Any) -> dict[str, Any]:
    """The event as a client sends it: the wire form, its personal data plain (memstream
    seals it when it appends)."""
    return dict(event.model_dump(mode="json"))


async def appended(settings: Settings) -> list[Any]:
    return [
        decode_event(r.value)
        for r in await read_topic(settings, Topics(settings.topic_prefix).conversations)
    ]


async def test_events_are_appended_and_answered_with_their_positions(
    topics: Settings, ingest: httpx.AsyncClient, api_key: str
) -> None:
    events = call_events("acme", 2)
    response = await ingest.post(
        "/v1/events",
        json={"events": [wire(e) for e in events]},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [e["id"] for e in body["events"]] == [str(e.id) for e in events]
    assert all(
        e["position"].startswith(f"{topics.topic_prefix}.conversations:") for e in body["events"]
    )
    assert sorted(e.id for e in await appended(topics)) == sorted(e.id for e in events)


async def test_the_same_events_sent_twice_are_appended_once(
    topics: Settings, ingest: httpx.AsyncClient, api_key: str
) -> None:
    event = call_events("acme", 1)[0]
    for _ in range(3):
        response = await ingest.post(
            "/v1/events", json=wire(event), headers={"Authorization": f"Bearer {api_key}"}
        )
        assert response.status_code == 200
    assert response.json()["duplicates"] == 1
    assert [e.id for e in await appended(topics)] == [event.id]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{}", {}, 401, "missing_credentials"),
        (b"{}", {"Authorization": "Bearer msk_nope"}, 401, "bad_credentials"),
        (b"{not json", None, 400, "malformed_json"),
        (b"[]", None, 422, "no_events"),
        (b'["x"]', None, 422, "invalid_event"),
        (b'{"type": "conversation.started"}', None, 422, "missing_version"),
        (b'{"type": "nope", "v": 1}', None, 422, "unknown_type"),
    ],
)
async def test_bad_requests_are_refused_and_append_nothing(
    topics: Settings,
    ingest: httpx.AsyncClient,
    api_key: str,
    body: bytes,
    headers: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    sent = headers if headers is not None else {"Authorization": f"Bearer {api_key}"}
    response = await ingest.post("/v1/events", content=body, headers=sent)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await appended(topics) == []


async def test_a_field_of_the_wrong_type_is_refused_with_its_path(
    topics: Settings, ingest: httpx.AsyncClient, api_key: str
) -> None:
    document = wire(call_events("acme", 1)[1])
    document["data"]["turns"][2]["offset_ms"] = "soon"
    response = await ingest.post(
        "/v1/events", json=[document], headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["path"] == "events[0].data.turns.2.offset_ms"
    assert await appended(topics) == []


def _with_nul_in_a_metadata_key(document: dict[str, Any]) -> None:
    document["data"]["metadata"]["no\x00te"] = "x"


def _with_offset_true(document: dict[str, Any]) -> None:
    document["data"]["turns"][2]["offset_ms"] = True


def _with_offset_beyond_a_week(document: dict[str, Any]) -> None:
    document["data"]["turns"][2]["offset_ms"] = 2**62


def _with_an_endless_duration(document: dict[str, Any]) -> None:
    document["data"]["duration_secs"] = 1e308


def _with_a_start_after_9999_in_utc(document: dict[str, Any]) -> None:
    document["data"]["started_at"] = "9999-12-31T23:59:59-14:00"


def _with_a_start_before_1970(document: dict[str, Any]) -> None:
    document["data"]["started_at"] = "1969-12-31T23:59:59Z"


def _with_a_long_conversation_id(document: dict[str, Any]) -> None:
    document["data"]["conversation_id"] = "c" * 257


def _with_a_long_source_event_id(document: dict[str, Any]) -> None:
    document["source"]["event_id"] = "c" * 257


def _with_a_long_user(document: dict[str, Any]) -> None:
    document["subject"] = "acme/" + "u" * 257


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (_with_nul_in_a_metadata_key, "events[0]"),
        (_with_offset_true, "events[0].data.turns.2.offset_ms"),
        (_with_offset_beyond_a_week, "events[0].data.turns.2.offset_ms"),
        (_with_an_endless_duration, "events[0].data.duration_secs"),
        (_with_a_start_after_9999_in_utc, "events[0].data.started_at"),
        (_with_a_start_before_1970, "events[0].data.started_at"),
        (_with_a_long_conversation_id, "events[0].data.conversation_id"),
        (_with_a_long_source_event_id, "events[0].source.event_id"),
        (_with_a_long_user, "events[0].subject"),
    ],
    ids=lambda value: value.__name__.removeprefix("_with_") if callable(value) else None,
)
async def test_what_no_read_model_can_store_is_refused(
    topics: Settings, ingest: httpx.AsyncClient, api_key: str, change: Any, path: str
) -> None:
    """A NUL character (PostgreSQL text holds none), an id too long to index, a time
    outside 1970..2200 or an offset beyond any call: 422 invalid_event, nothing appended,
    rather than an event every projection fails on."""
    document = wire(call_events("acme", 1)[1])
    change(document)
    response = await ingest.post(
        "/v1/events", json=[document], headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["path"]) == ("invalid_event", path)
    if change is _with_nul_in_a_metadata_key:
        assert "a key of data.metadata holds a NUL character" in error["message"]
    assert await appended(topics) == []


async def test_a_key_cannot_write_another_tenants_events(
    topics: Settings, ingest: httpx.AsyncClient, api_key: str
) -> None:
    response = await ingest.post(
        "/v1/events",
        json=wire(call_events("beta", 1)[0]),
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_mismatch"
    assert await appended(topics) == []


async def test_a_body_over_the_limit_is_refused(topics: Settings, db: Any, api_key: str) -> None:
    from services.ingest.app import create_app

    small = topics.replace(max_body_bytes=1024)
    app = create_app(small)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            events = [wire(e) for e in call_events("acme", 5)]
            response = await client.post(
                "/v1/events", json=events, headers={"Authorization": f"Bearer {api_key}"}
            )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert await appended(topics) == []


def _fact_of_every_kind(tenant: str) -> dict[str, Any]:
    """One event of each type a client might send, by type."""
    started, ended = call_events(tenant, 1)
    subject = started.subject
    asserted = MemoryAsserted.create(
        tenant=tenant,
        subject=subject,
        source=Source(platform="api", event_id="assert-1"),
        occurred_at=ended.occurred_at,
        data={"memory_id": uuid.uuid4(), "content": "Likes tea", "sector": "semantic"},
    )
    return {
        "conversation.started": started,
        "conversation.ended": ended,
        "memory.asserted": asserted,
        "memory.retracted": MemoryRetracted.create(
            tenant=tenant,
            subject=subject,
            source=Source(platform="api", event_id="retract-1"),
            occurred_at=ended.occurred_at,
            data={"memory_id": asserted.data.memory_id},
        ),
        # Another caller: an erasure of this one would make its later events refused
        # (subject_erased) before their type is looked at.
        "user.forgotten": UserForgotten.create(
            tenant=tenant,
            subject=f"{tenant}/+15559990000",
            source=Source(platform="api", event_id="forget-1"),
            occurred_at=ended.occurred_at,
            data={},
        ),
        "memory.extracted": extracted("Likes tea", subject=subject),
    }


#: Who may append what through /v1/events (admin: everything a client may send).
MAY_APPEND = {
    "agent": set(),
    "read": set(),
    "ingest": {"conversation.started", "conversation.ended"},
    "write": {"memory.asserted", "memory.retracted"},
    "admin": {
        "conversation.started",
        "conversation.ended",
        "memory.asserted",
        "memory.retracted",
        "user.forgotten",
    },
}


@pytest.mark.parametrize("scope", sorted(MAY_APPEND))
async def test_each_scope_appends_only_its_event_types(
    topics: Settings, ingest: httpx.AsyncClient, db: Any, scope: str
) -> None:
    await tenants.create_tenant(db, "acme", "Acme Dental")
    key = await tenants.issue_api_key(db, "acme", scope, [scope])
    headers = {"Authorization": f"Bearer {key.token}"}
    accepted = []
    for event_type, event in _fact_of_every_kind("acme").items():
        response = await ingest.post("/v1/events", json=wire(event), headers=headers)
        if event_type in MAY_APPEND[scope]:
            assert response.status_code == 200, (event_type, response.text)
            accepted.append(event.id)
        else:
            assert response.status_code == 403, (event_type, response.text)
            code = response.json()["error"]["code"]
            # What the processors derive is refused whatever the key.
            assert code == (
                "derived_event_type"
                if event_type == "memory.extracted" and scope in ("ingest", "write", "admin")
                else "insufficient_scope"
            )
    # Nothing refused was appended, on any topic (of events: the audit topic records the
    # erasure, streams/audit.py).
    names = Topics(topics.topic_prefix)
    found = [
        decode_event(r.value).id
        for topic in names.all()
        if topic != names.audit
        for r in await read_topic(topics, topic)
    ]
    assert sorted(found) == sorted(accepted)
