"""The audit trail of the query service (streams/audit.py): every read of a user's personal
data is one entry on the audit topic — one per agent tool call, one per user listed — with
the key id, the route and the subject's hash, never their number; entries are appended in
the background, and a clean shutdown appends every one.

``AUDITED`` is the table of every /v1 route: a route added without an entry in it fails
``test_the_audit_table_covers_every_route``, and every route that reads someone's personal
data is requested and its entries checked.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest

from services import tenants
from services.query.app import create_app
from services.settings import Settings
from streams import EventLog
from streams.audit import ERASURE, READ, AuditEntry, AuditTrail, decode_entry, subject_hash
from streams.topics import Topics
from tests.helpers import read_topic
from tests.integration.query.corpus import EMBEDDER, OTHER, SUBJECT, TENANT

CALLER = SUBJECT.partition("/")[2]  # +14155550123
CALL = "call-q1"  # CALLER's conversation in the corpus
USER_PATH = f"/v1/users/{CALLER}"
MEMORY_ID = "018f0000-0000-7000-8000-000000000000"
#: What no audit record may hold: the callers' numbers, in any of their forms.
NUMBERS = (b"4155550123", b"4155550124", CALLER.encode(), OTHER.encode())

VAPI_TWO_CALLS = {
    "message": {
        "type": "tool-calls",
        "call": {"id": CALL, "customer": {"number": CALLER}},
        "toolCallList": [
            {"id": "t1", "name": "memory_search", "arguments": {"query": "food"}},
            {"id": "t2", "name": "memory_search", "arguments": {"query": "allergies"}},
            # No query: refused, nothing read, no entry.
            {"id": "t3", "name": "memory_search", "arguments": {}},
        ],
    }
}

#: Every /v1 route of the query app: the entries one request to it records (None: it reads
#: no one's personal data; "each user" : one per user it lists), the entries' type, and
#: the request.
AUDITED: dict[tuple[str, str], tuple[int | str | None, str, dict[str, Any]]] = {
    ("POST", "/v1/memories/search"): (1, READ, {"json": {"user": CALLER, "query": "food"}}),
    ("POST", "/v1/transcripts/search"): (1, READ, {"json": {"user": CALLER, "query": "knee"}}),
    ("POST", "/v1/context"): (1, READ, {"json": {"user": CALLER, "token_budget": 200}}),
    ("GET", "/v1/users/{user}/briefing"): (1, READ, {"url": f"{USER_PATH}/briefing"}),
    ("POST", "/v1/tools/elevenlabs/memory-search"): (
        1,
        READ,
        {"json": {"query": "food", "caller_id": CALLER, "conversation_id": CALL}},
    ),
    ("POST", "/v1/tools/vapi"): (2, READ, {"json": VAPI_TWO_CALLS}),  # one per answered call
    ("GET", "/v1/calls/{call_id}/context"): (
        1,
        READ,
        {"url": f"/v1/calls/{CALL}/context?timeout=1"},  # the client waits for the end
    ),
    ("GET", "/v1/users"): ("each user", READ, {}),
    ("GET", "/v1/users/{user}"): (1, READ, {"url": USER_PATH}),
    ("GET", "/v1/users/{user}/memories"): (1, READ, {"url": f"{USER_PATH}/memories"}),
    ("GET", "/v1/users/{user}/conversations"): (1, READ, {"url": f"{USER_PATH}/conversations"}),
    ("GET", "/v1/conversations/{conversation_id}"): (1, READ, {"url": f"/v1/conversations/{CALL}"}),
    # Erasure (docs/security.md): recorded once the key is destroyed and the event appended.
    ("DELETE", "/v1/users/{user}"): (1, ERASURE, {"url": USER_PATH}),
    # Streamed as it is read: its count is not known when it is recorded.
    ("GET", "/v1/users/{user}/export"): (1, READ, {"url": f"{USER_PATH}/export"}),
    # Writes: what they change is in the log, by whom in the memory's `asserted_by`.
    ("POST", "/v1/users/{user}/memories"): (
        None,
        READ,
        {"url": f"{USER_PATH}/memories", "json": {"content": "Likes tea"}},
    ),
    ("DELETE", "/v1/users/{user}/memories/{memory_id}"): (
        None,
        READ,
        {"url": f"{USER_PATH}/memories/{MEMORY_ID}"},
    ),
    # The trail itself: hashes only.
    ("GET", "/v1/audit"): (None, READ, {"url": "/v1/audit?user=%2B14155550123"}),
}


@pytest.fixture
async def admin(db: Any) -> tenants.IssuedKey:
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    return await tenants.issue_api_key(db, TENANT, "auditor", ["admin"])


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The query app from start to a clean shutdown (its lifespan), over ASGI."""
    app = create_app(settings, embedder=EMBEDDER)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
            yield client


async def audit_records(settings: Settings) -> list[Any]:
    return await read_topic(settings, Topics(settings.topic_prefix).audit)


def by_time(entry: AuditEntry) -> tuple[datetime, uuid.UUID]:
    """Entries in the order recorded (the topic orders them per partition only)."""
    return entry.at, entry.id


def raw_bytes(record: Any) -> bytes:
    headers = b"".join(k.encode() + v for k, v in record.headers or ())
    return (record.key or b"") + (record.value or b"") + headers


def test_the_audit_table_covers_every_route(settings: Settings) -> None:
    app = create_app(settings, embedder=EMBEDDER)
    routes = {
        (method, route.path)
        for route in app.routes
        if getattr(route, "path", "").startswith("/v1/")
        for method in getattr(route, "methods", ())
    }
    assert routes == set(AUDITED), "a /v1 route is missing from AUDITED (or one is gone)"


@pytest.mark.parametrize("route", sorted(r for r, (n, _, _) in AUDITED.items() if n is not None))
async def test_each_read_of_personal_data_is_one_audit_entry_without_the_number(
    topics: Settings, admin: tenants.IssuedKey, route: tuple[str, str]
) -> None:
    method, path = route
    expected, entry_type, request = AUDITED[route]
    async with serving(topics) as query:
        response = await query.request(
            method,
            request.get("url", path),
            json=request.get("json"),
            headers={"Authorization": f"Bearer {admin.token}"},
        )
        assert response.status_code in (200, 202), response.text
    # Shut down: everything recorded is on the topic.
    records = await audit_records(topics)
    entries = [decode_entry(r.value) for r in records]
    if expected == "each user":
        listed = [f"{TENANT}/{u['user']}" for u in response.json()["users"]]
        assert listed
        assert sorted(e.subject_hash for e in entries) == sorted(map(subject_hash, listed))
    else:
        assert len(entries) == expected, entries
        assert {e.subject_hash for e in entries} == {subject_hash(SUBJECT)}
    for entry, record in zip(entries, records, strict=True):
        assert entry.type == entry_type
        assert entry.tenant == TENANT and entry.key_id == admin.key_id
        assert entry.route == f"{method} {path}"
        assert entry.status == 200
        assert (entry.results is None) == path.endswith("/export")
        assert record.key == f"{TENANT}/{entry.subject_hash}".encode()
        assert not any(number in raw_bytes(record) for number in NUMBERS), raw_bytes(record)
    if path.startswith("/v1/tools/"):
        assert {e.conversation_id for e in entries} == {CALL}


async def test_what_a_read_returns_is_recorded_with_its_count_and_status(
    topics: Settings, admin: tenants.IssuedKey
) -> None:
    headers = {"Authorization": f"Bearer {admin.token}"}
    async with serving(topics) as query:
        search = await query.post(
            "/v1/memories/search", json={"user": CALLER, "query": "allergies"}, headers=headers
        )
        unknown = await query.get("/v1/users/+14155550199", headers=headers)
        streamed = await query.post(
            "/v1/context",
            json={"user": CALLER, "token_budget": 200, "stream": True},
            headers=headers,
        )
    assert unknown.status_code == 404 and streamed.status_code == 200
    entries = sorted((decode_entry(r.value) for r in await audit_records(topics)), key=by_time)
    found, missing, stream = entries
    assert found.results == len(search.json()["results"]) > 0
    # Asking about someone who is not there is a look-up of them too.
    assert (missing.status, missing.results) == (404, 0)
    assert missing.subject_hash == subject_hash(f"{TENANT}/+14155550199")
    # A stream is recorded before its first event, when its count is not known.
    assert (stream.route, stream.results) == ("POST /v1/context", None)


async def test_entries_are_buffered_and_every_one_appended_on_a_clean_shutdown(
    topics: Settings, admin: tenants.IssuedKey
) -> None:
    # No timed flush during the test: what reaches the topic is the shutdown's flush.
    slow = topics.replace(audit_flush_ms=600_000)
    headers = {"Authorization": f"Bearer {admin.token}"}
    async with serving(slow) as query:
        for question in ("food", "dog", "allergies", "running", "knee"):
            response = await query.post(
                "/v1/memories/search", json={"user": CALLER, "query": question}, headers=headers
            )
            assert response.status_code == 200
        briefing = await query.get(f"{USER_PATH}/briefing", headers=headers)
        assert briefing.status_code == 200
        assert await audit_records(slow) == []  # answered before anything was appended
    entries = [decode_entry(r.value) for r in await audit_records(slow)]
    assert [e.route for e in entries].count("POST /v1/memories/search") == 5
    assert [e.route for e in entries].count("GET /v1/users/{user}/briefing") == 1


async def test_a_read_the_trail_cannot_record_is_refused_not_answered(
    topics: Settings, admin: tenants.IssuedKey
) -> None:
    headers = {"Authorization": f"Bearer {admin.token}"}
    body = {"user": CALLER, "query": "allergies"}
    app = create_app(topics, embedder=EMBEDDER)
    async with app.router.lifespan_context(app):
        service = app.state.service
        running = service._audit
        # A trail whose broker never answers (a log never started) and holds one entry.
        never_started = EventLog(topics)
        stuck = AuditTrail(never_started, capacity=1, flush_interval_s=0.01, wait_s=0.05)
        await stuck.start()
        service._audit = stuck
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://q") as query:
                first = await query.post("/v1/memories/search", json=body, headers=headers)
                refused = await query.post("/v1/memories/search", json=body, headers=headers)
        finally:
            await stuck.close(timeout=0.1)
            await never_started.stop()
            service._audit = running
    assert first.status_code == 200
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "audit_unavailable"
    assert refused.headers["Retry-After"] == "5"
    assert "penicillin" not in refused.text.lower()


async def test_the_admin_route_reads_a_users_trail(
    topics: Settings, admin: tenants.IssuedKey
) -> None:
    # The trail is written by the query service and read from the audit read model.
    from projections.audit import AuditProjection
    from tests.integration.projection_contract import project

    headers = {"Authorization": f"Bearer {admin.token}"}
    async with serving(topics) as query:
        await query.post(
            "/v1/memories/search", json={"user": CALLER, "query": "dog"}, headers=headers
        )
        await query.get(f"/v1/users/{OTHER.partition('/')[2]}/memories", headers=headers)
    await project(topics, AuditProjection())
    async with serving(topics) as query:
        # A "+" in a query string is a space: the number is URL-encoded.
        response = await query.get("/v1/audit", params={"user": CALLER}, headers=headers)
        by_key = await query.get(f"/v1/audit?key_id={admin.key_id}&limit=10", headers=headers)
        bad = await query.get("/v1/audit?since=yesterday&user=x", headers=headers)
    assert response.status_code == 200, response.text
    [entry] = response.json()["entries"]
    assert entry["route"] == "POST /v1/memories/search"
    assert entry["subject_hash"] == subject_hash(SUBJECT) and entry["key_id"] == admin.key_id
    assert CALLER not in str(response.json()["entries"])
    assert len(by_key.json()["entries"]) == 2
    assert bad.status_code == 422


async def test_a_conversation_id_no_read_model_could_hold_is_left_out_of_the_entry(
    topics: Settings, admin: tenants.IssuedKey
) -> None:
    headers = {"Authorization": f"Bearer {admin.token}"}
    async with serving(topics) as query:
        # A read key's briefing ignores the id; the entry must not carry it into SQL.
        response = await query.get(
            f"{USER_PATH}/briefing", params={"conversation_id": "call\x00-1"}, headers=headers
        )
    assert response.status_code == 200, response.text
    [entry] = [decode_entry(r.value) for r in await audit_records(topics)]
    assert entry.conversation_id is None and entry.route == "GET /v1/users/{user}/briefing"
