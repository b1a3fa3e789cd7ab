"""The query service's bounded resources over HTTP, against the real read models: read-your-
writes waits that never starve the pool, the caps on positions and concurrent waits, and a
cached key that still stops working within its TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services import tenants
from services.query.app import create_app
from services.query.consistency import MAX_POSITIONS
from services.settings import Settings
from tests.helpers import eventually
from tests.integration.query.corpus import EMBEDDER, SUBJECT, TENANT

USER = SUBJECT.partition("/")[2]
#: Longer than the test needs to search once every wait is in progress.
LONG_WAIT_MS = 6000


@pytest.fixture
async def tokens(db: Any) -> list[str]:
    """Three keys of one tenant."""
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    return [(await tenants.issue_api_key(db, TENANT, f"key {i}")).token for i in range(3)]


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, embedder=EMBEDDER)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://query", timeout=60
        ) as client:
            yield client


@pytest.fixture
async def query(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(settings):
        yield client


def far_future(settings: Settings) -> str:
    """A position of the conversations topic no projection will reach."""
    return f"{settings.topic_prefix}.conversations:0:999999999"


async def read_after(
    client: httpx.AsyncClient, token: str, positions: str, wait_ms: int
) -> httpx.Response:
    return await client.get(
        f"/v1/users/{USER}",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Memstream-After": positions,
            "X-Memstream-Wait-Ms": str(wait_ms),
        },
    )


async def all_slots_taken(client: httpx.AsyncClient, token: str, position: str) -> httpx.Response:
    """Once every wait slot of the key is held, a further (short) wait is refused."""
    return await eventually(
        lambda: read_after(client, token, position, 1), lambda r: r.status_code == 429, timeout=30
    )


async def test_far_future_waits_hold_no_connection_so_a_search_still_answers(
    query: httpx.AsyncClient, tokens: list[str], settings: Settings
) -> None:
    # 12 waits (4 per key, the default cap) against a pool of 10 connections.
    position = far_future(settings)
    waits = [
        asyncio.create_task(read_after(query, token, position, LONG_WAIT_MS))
        for token in tokens
        for _ in range(settings.query_max_waits)
    ]
    assert len(waits) == 12
    for token in tokens:
        await all_slots_taken(query, token, position)

    search = await query.post(
        "/v1/memories/search",
        json={"user": USER, "query": "what food do they like", "limit": 3},
        headers={"Authorization": f"Bearer {tokens[0]}"},
    )
    assert search.status_code == 200, search.text
    assert search.json()["results"][0]["content"] == "Prefers Italian food"
    assert not any(wait.done() for wait in waits)  # answered while all 12 were waiting

    for response in await asyncio.gather(*waits):
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "not_yet_consistent"


async def test_a_key_has_at_most_its_concurrent_waits(
    query: httpx.AsyncClient, tokens: list[str], settings: Settings
) -> None:
    position = far_future(settings)
    mine, other = tokens[0], tokens[1]
    waits = [
        asyncio.create_task(read_after(query, mine, position, LONG_WAIT_MS))
        for _ in range(settings.query_max_waits)
    ]
    refused = await all_slots_taken(query, mine, position)
    error = refused.json()["error"]
    assert error["code"] == "too_many_waits" and error["path"] == "after"
    assert refused.headers["retry-after"] == "1"
    # Another key has its own slots; a position the route's read models need not wait
    # for (users are read from the conversations read model alone) takes none.
    assert (await read_after(query, other, position, 1)).status_code == 409
    unread = f"{settings.topic_prefix}.summaries:0:999999999"
    assert (await read_after(query, mine, unread, LONG_WAIT_MS)).status_code == 200

    assert [r.status_code for r in await asyncio.gather(*waits)] == [409] * len(waits)
    # The slots come back when the waits end.
    assert (await read_after(query, mine, position, 1)).status_code == 409


async def test_more_positions_than_the_cap_are_refused_with_422(
    query: httpx.AsyncClient, tokens: list[str], settings: Settings
) -> None:
    topic = f"{settings.topic_prefix}.conversations"
    positions = ",".join(f"{topic}:{p % 3}:{p}" for p in range(MAX_POSITIONS + 1))
    response = await read_after(query, tokens[0], positions, 1)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "too_many_positions" and error["path"] == "after"
    capped = ",".join(f"{topic}:{p % 3}:0" for p in range(MAX_POSITIONS))
    assert (await read_after(query, tokens[0], capped, 1)).status_code in (200, 409)


async def test_a_cached_key_still_stops_working_within_its_ttl_once_revoked(
    settings: Settings, db: Any, tokens: list[str]
) -> None:
    token = tokens[0]
    headers = {"Authorization": f"Bearer {token}"}
    async for client in _client(settings.replace(cache_ttl_s=0.2)):
        assert (await client.get(f"/v1/users/{USER}", headers=headers)).status_code == 200
        await tenants.revoke_api_key(db, token.split("_")[1])
        await asyncio.sleep(0.3)  # past the TTL: the database answers, so it is asked again
        response = await client.get(f"/v1/users/{USER}", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "bad_credentials"
