"""The query service's resources over HTTP: users, memories (list, assert, retract),
conversations, and read-your-writes with the log positions writes answer with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from projections.memories import MemoriesProjection
from services import tenants
from services.query.app import create_app
from services.settings import Settings
from streams.runtime import ProjectionRunner
from tests.integration.query.corpus import EMBEDDER, OTHER, SUBJECT, TENANT

USER = SUBJECT.partition("/")[2]


@pytest.fixture
async def token(db: Any) -> str:
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    await tenants.create_tenant(db, "globex", "Globex")
    return (await tenants.issue_api_key(db, TENANT)).token


@pytest.fixture
async def client(topics: Settings, token: str) -> AsyncIterator[httpx.AsyncClient]:
    # `topics`: this test's own (empty) topics, for the memories it asserts.
    app = create_app(topics, embedder=EMBEDDER)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://query",
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            yield http


@pytest.fixture
async def memories_running(settings: Settings) -> AsyncIterator[None]:
    """The memories projection, live, as `memstream run` runs it (from the corpus's
    checkpoints: the copied database carries them)."""
    runner = ProjectionRunner(MemoriesProjection(), settings)
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        yield
    finally:
        runner.stop()
        await task


async def test_users_are_listed_page_by_page(client: httpx.AsyncClient) -> None:
    first = (await client.get("/v1/users", params={"limit": 1})).json()
    assert [u["user"] for u in first["users"]] == [USER]
    assert first["next_cursor"] is None  # the corpus has one caller with a conversation
    assert (await client.get(f"/v1/users/{USER}")).json()["conversation_count"] == 1
    missing = await client.get("/v1/users/+14155550999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_memories_are_paginated_newest_first_and_filterable(
    client: httpx.AsyncClient,
) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/v1/users/{USER}/memories", params=params)).json()
        seen += page["memories"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8 and len({m["memory_id"] for m in seen}) == 8
    observed = [m["observed_at"] for m in seen]
    assert observed == sorted(observed, reverse=True)
    assert "Lives in Leeds" not in [m["content"] for m in seen]
    superseded = (await client.get(f"/v1/users/{USER}/memories?state=superseded")).json()
    assert [m["content"] for m in superseded["memories"]] == ["Lives in Leeds"]
    emotional = (await client.get(f"/v1/users/{USER}/memories?sector=emotional")).json()
    assert [m["sector"] for m in emotional["memories"]] == ["emotional"]
    for bad in ("state=gone", "sector=gossip", "limit=0", "limit=x", "cursor=%%%"):
        response = await client.get(f"/v1/users/{USER}/memories?{bad}")
        assert response.status_code == 422, bad


async def test_an_asserted_memory_is_searchable_once_the_projection_passed_its_position(
    client: httpx.AsyncClient, memories_running: None
) -> None:
    created = await client.post(
        f"/v1/users/{USER}/memories",
        json={"content": "Prefers to be called Sam", "sector": "semantic", "salience": 0.8},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    listed = await client.get(
        f"/v1/users/{USER}/memories", headers={"X-Memstream-After": body["position"]}
    )
    assert listed.status_code == 200
    contents = {m["content"]: m for m in listed.json()["memories"]}
    assert contents["Prefers to be called Sam"]["origin"] == "asserted"

    retracted = await client.delete(f"/v1/users/{USER}/memories/{body['memory_id']}")
    assert retracted.status_code == 202
    after = await client.get(
        f"/v1/users/{USER}/memories", params={"after": retracted.json()["position"]}
    )
    assert "Prefers to be called Sam" not in {m["content"] for m in after.json()["memories"]}


async def test_waiting_for_a_position_no_projection_reaches_is_a_409(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # Nothing runs the projections here: an appended memory is never projected.
    created = await client.post(f"/v1/users/{USER}/memories", json={"content": "Has a cat"})
    position = created.json()["position"]
    response = await client.get(
        f"/v1/users/{USER}/memories",
        headers={"X-Memstream-After": position, "X-Memstream-Wait-Ms": "200"},
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "not_yet_consistent"
    topic, partition, _ = position.split(":")
    assert error["positions"]["memories"].startswith(f"{topic}:{partition}:")
    for bad in ("nonsense", "other-prefix.conversations:0:1", f"{topic}:x:1"):
        refused = await client.get(f"/v1/users/{USER}/memories", params={"after": bad})
        assert refused.status_code == 422, bad


async def test_idempotency_key_makes_a_retried_assert_the_same_memory(
    client: httpx.AsyncClient,
) -> None:
    body = {"content": "Has a cat named Miso"}
    headers = {"Idempotency-Key": "import-42"}
    first = await client.post(f"/v1/users/{USER}/memories", json=body, headers=headers)
    again = await client.post(f"/v1/users/{USER}/memories", json=body, headers=headers)
    assert first.json()["memory_id"] == again.json()["memory_id"]
    assert first.json()["event_id"] == again.json()["event_id"]
    other = await client.post(f"/v1/users/{USER}/memories", json=body)
    assert other.json()["memory_id"] != first.json()["memory_id"]


async def test_memory_writes_are_checked(client: httpx.AsyncClient) -> None:
    for body in ({}, {"content": ""}, {"content": "x", "sector": "gossip"},
                 {"content": "x", "salience": 3}, {"content": "x", "extra": 1}):  # fmt: skip
        response = await client.post(f"/v1/users/{USER}/memories", json=body)
        assert response.status_code == 422, body
    # Another caller's memory, or no memory at all, cannot be retracted through this user.
    other = (await client.get(f"/v1/users/{OTHER.partition('/')[2]}/memories")).json()
    memory_id = other["memories"][0]["memory_id"]
    assert (await client.delete(f"/v1/users/{USER}/memories/{memory_id}")).status_code == 404
    assert (await client.delete(f"/v1/users/{USER}/memories/not-a-uuid")).status_code == 422


async def test_conversations_come_with_their_transcript(client: httpx.AsyncClient) -> None:
    listed = (await client.get(f"/v1/users/{USER}/conversations")).json()
    assert [c["conversation_id"] for c in listed["conversations"]] == ["call-q1"]
    assert "turns" not in listed["conversations"][0]
    conversation = (await client.get("/v1/conversations/call-q1")).json()
    assert conversation["user"] == USER
    assert [t["role"] for t in conversation["turns"]] == ["agent", "user", "agent", "user"]
    assert (await client.get("/v1/conversations/nope")).status_code == 404
    assert (await client.get("/v1/conversations/%00")).status_code == 404  # no database error


async def test_another_tenants_key_sees_none_of_it(client: httpx.AsyncClient, db: Any) -> None:
    other = (await tenants.issue_api_key(db, "globex")).token
    headers = {"Authorization": f"Bearer {other}"}
    assert (await client.get("/v1/users", headers=headers)).json()["users"] == []
    assert (await client.get(f"/v1/users/{USER}", headers=headers)).status_code == 404
    memories = await client.get(f"/v1/users/{USER}/memories?state=all", headers=headers)
    assert memories.json()["memories"] == []
    conversations = await client.get(f"/v1/users/{USER}/conversations", headers=headers)
    assert conversations.json()["conversations"] == []
    assert (await client.get("/v1/conversations/call-q1", headers=headers)).status_code == 404
    mine = (await client.get(f"/v1/users/{USER}/memories")).json()["memories"][0]
    deleted = await client.delete(f"/v1/users/{USER}/memories/{mine['memory_id']}", headers=headers)
    assert deleted.status_code == 404
