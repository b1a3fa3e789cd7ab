"""Hostile inputs that got past the services' checks (regressions of an adversarial probe).

Each test sends what a caller, an LLM writing tool arguments, or a signed platform body can
send, and expects a 4xx in memstream's error shape with nothing appended, or, when the
input is accepted, a pipeline and read API that still work:

- a NUL character in a query parameter or tool argument that reaches PostgreSQL (a 500);
- a NUL character in the text of a webhook or an event: accepted, then dead-lettered by
  every projection (the conversation never reaches a read model);
- an id too long for a btree index: accepted, then the projections retry it for ever as
  "database unavailable" (psycopg's ProgramLimitExceeded is an OperationalError), so no
  tenant's events are projected any more;
- points in time at the edges of what a datetime holds: a 500 on the webhook itself
  (date arithmetic overflowing), or accepted and then every read of the user, and of the
  tenant's user list, answers 500 (PostgreSQL holds a time Python cannot load).
- a body that breaks off (the client goes away, a malformed chunked body): an unhandled
  exception, counted as a 500 and logged with its traceback, in both services;
- a memory's retraction reason of any length and any characters, appended as sent;
- a salience too small for the memories read model's 4-byte float (1e-320): accepted,
  then dead-lettered by the memories projection.

The read models of the query folder's golden corpus are used (its ``settings`` fixture,
a copy per test), so the query routes reach SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from projections.memories import MemoriesProjection
from services import tenants
from services.ingest.app import create_app as create_ingest_app
from services.query.app import create_app as create_query_app
from services.settings import Settings
from streams import versions
from streams.exceptions import DatabaseUnavailable
from streams.runtime import Projection, ProjectionRunner
from streams.topics import Topics
from tests.helpers import read_topic
from tests.integration.http_properties import appended, assert_error_body
from tests.integration.ingest_fixtures import ROUTES, SECRETS, deliver, payload, signed, tenant
from tests.integration.query.conftest import corpus_database, settings
from tests.integration.query.corpus import EMBEDDER, SUBJECT, TENANT

__all__ = ["corpus_database", "settings", "tenant"]  # fixtures used by name below

USER = SUBJECT.partition("/")[2]


def auth(key: tenants.IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.token}"}


@contextlib.asynccontextmanager
async def client(app: Any, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app in process; an exception escaping it is answered 500, as a server would."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


@pytest.fixture
async def query(topics: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client(create_query_app(topics, embedder=EMBEDDER), "http://query") as http:
        yield http


@pytest.fixture
async def ingest(topics: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client(create_ingest_app(topics), "http://ingest") as http:
        yield http


@pytest.fixture
async def keys(db: AsyncConnection[Any]) -> dict[str, tenants.IssuedKey]:
    """Keys of the corpus' tenant: admin, agent, agent taking a user argument, ingest."""
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    return {
        "admin": await tenants.issue_api_key(db, TENANT),
        "agent": await tenants.issue_api_key(db, TENANT, "agent", ["agent"]),
        "agent-user": await tenants.issue_api_key(
            db, TENANT, "widget", ["agent"], allow_user_argument=True
        ),
        "ingest": await tenants.issue_api_key(db, TENANT, "backend", ["ingest"]),
    }


def refused(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert_error_body(response)


async def project_conversations(
    settings: Settings, timeout: float = 20, projection: Projection | None = None
) -> None:
    """Run the conversations projection (or ``projection``) over the test's log; fail if it
    cannot catch up (a projection that retries one event for ever stops every tenant's
    reads)."""
    projection = projection or ConversationsProjection()
    runner = ProjectionRunner(projection, settings, version=1)
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        conn = await AsyncConnection.connect(settings.require_database(), autocommit=True)
        try:
            await versions.wait_caught_up(settings, conn, projection, 1, timeout=timeout)
        except TimeoutError:
            pytest.fail(f"the {projection.name} projection did not catch up within {timeout} s")
        finally:
            await conn.close()
    finally:
        runner.stop()
        # A runner stopped while it retries an event as "database unavailable" ends with
        # DatabaseUnavailable: the failure above says what went wrong.
        with contextlib.suppress(DatabaseUnavailable):
            await task


async def dead_letters(settings: Settings) -> list[Any]:
    return await read_topic(settings, Topics(settings.topic_prefix).name("dlq"))


def elevenlabs_body(conversation_id: str) -> dict[str, Any]:
    body = payload("elevenlabs_post_call_transcription")
    body["data"]["conversation_id"] = conversation_id
    return body


# --- NUL reaching PostgreSQL from a request ---------------------------------------


async def test_a_vapi_tool_user_argument_with_a_nul_is_refused_not_a_500(
    topics: Settings, query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    """The ElevenLabs tool refuses a ``user`` with a control character (check_id); the Vapi
    tool passes the LLM's ``user`` argument straight into the search's SQL (routes.py,
    ``vapi_tools`` -> ``bound_subject`` -> ``subject_of``): a 500 for the whole message."""
    message = {
        "message": {
            "type": "tool-calls",
            "toolCallList": [
                {"id": "t1", "name": "memory_search",
                 "arguments": {"query": "allergies", "user": f"{USER}\x00"}},
            ],
        }
    }  # fmt: skip
    response = await query.post("/v1/tools/vapi", json=message, headers=auth(keys["agent-user"]))
    assert response.status_code < 500, response.text[:300]
    [result] = response.json()["results"]
    assert "error" in result, result


async def test_an_agent_keys_briefing_naming_a_nul_conversation_is_refused_not_a_500(
    topics: Settings, query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    """``?conversation_id=`` of an agent key's briefing goes into SQL unchecked (routes.py,
    ``briefing`` -> ``conversation_subject``)."""
    response = await query.get(
        f"/v1/users/{USER}/briefing",
        params={"conversation_id": "call\x00-1"},
        headers=auth(keys["agent"]),
    )
    refused(response)


async def test_the_audit_trail_of_a_nul_key_id_is_refused_not_a_500(
    topics: Settings, query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    """``?key_id=`` of ``GET /v1/audit`` goes into SQL unchecked (routes.py, ``audit``)."""
    response = await query.get(
        "/v1/audit", params={"key_id": "key\x00"}, headers=auth(keys["admin"])
    )
    refused(response)


# --- NUL in what is appended --------------------------------------------------------


async def test_a_nul_in_a_webhook_or_event_is_refused_or_projected_not_dead_lettered(
    topics: Settings,
    ingest: httpx.AsyncClient,
    tenant: str,
    keys: dict[str, tenants.IssuedKey],
) -> None:
    """PostgreSQL text holds no NUL: a turn's text, a metadata value or an event's
    subject with one is acknowledged 200 today, and the conversations projection then
    dead-letters the whole conversation (and the extraction, summariser and memories
    projections their part of it). Refuse it (422, nothing appended) or store it without
    the NUL; never acknowledge what no read model can hold."""
    text = elevenlabs_body("conv-nul-text")
    text["data"]["transcript"][1]["message"] = "I'm allergic to peni\x00cillin"
    metadata = elevenlabs_body("conv-nul-metadata")
    metadata["data"]["metadata"]["note"] = "x\x00y"
    answers = [
        await deliver(ingest, "elevenlabs", text, tenant=tenant),
        await deliver(ingest, "elevenlabs", metadata, tenant=tenant),
    ]
    event = {
        "type": "conversation.ended", "v": 1, "tenant": TENANT,
        "subject": f"{TENANT}/+1415555\x000177", "id": "0193a6f2-7c10-7d3e-8a41-2b9c5d7e1f03",
        "occurred_at": "2026-11-19T10:21:14Z", "recorded_at": "2026-11-19T10:21:14Z",
        "source": {"platform": "gw", "event_id": "call-nul"},
        "data": {"conversation_id": "call-nul", "started_at": "2026-11-19T10:20:00Z",
                 "status": "done", "turns": [{"role": "user", "text": "hi", "offset_ms": 0}]},
    }  # fmt: skip
    answers.append(await ingest.post("/v1/events", json=event, headers=auth(keys["ingest"])))
    assert all(r.status_code < 500 for r in answers), [r.text[:200] for r in answers]
    if any(r.status_code == 200 for r in answers):
        await project_conversations(topics)
        letters = await dead_letters(topics)
        assert letters == [], f"{len(letters)} dead letter(s) of acknowledged requests"
    else:
        assert await appended(topics) == []


# --- ids too long to index -------------------------------------------------------------


async def test_an_id_too_long_to_index_does_not_stall_the_projections(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    """A conversation id of 6,000 random characters is acknowledged, then the
    conversations projection cannot insert it (``index row size ... exceeds btree version
    4 maximum 2704``, SQLSTATE 54000, which psycopg raises as an OperationalError) and
    retries it for ever as "database unavailable": the events after it, any tenant's, are
    never projected. Refuse such an id (422), or dead-letter the event; never stall."""
    long = elevenlabs_body(secrets.token_urlsafe(4500))  # 6,000 characters
    response = await deliver(ingest, "elevenlabs", long, tenant=tenant)
    assert response.status_code < 500, response.text[:300]
    if response.status_code == 200:
        # Another conversation after it must still be projected.
        after = await deliver(ingest, "elevenlabs", elevenlabs_body("conv-after"), tenant=tenant)
        assert after.status_code == 200, after.text
        await project_conversations(topics)
    else:
        assert_error_body(response)
        assert await appended(topics) == []


# --- points in time at the edges -----------------------------------------------------


def _retell_from_start(start_ms: int) -> dict[str, Any]:
    body = payload("retell_call_analyzed")
    call = body["call"]
    call["call_id"] = "retell-late"
    call["start_timestamp"] = start_ms
    call.pop("end_timestamp", None)
    call["duration_ms"] = 60_000
    return body


def _vapi_report(call_id: str, **times: Any) -> dict[str, Any]:
    body = payload("vapi_end_of_call_report")
    message = body["message"]
    message["call"]["id"] = call_id
    for name in ("startedAt", "endedAt", "timestamp"):
        message.pop(name, None)
        message["call"].pop(name, None)
    message.update(times)
    return body


def _elevenlabs_late() -> dict[str, Any]:
    body = elevenlabs_body("conv-late")
    body["data"]["metadata"]["start_time_unix_secs"] = 253_402_300_799  # 9999-12-31T23:59:59Z
    return body


@pytest.mark.parametrize(
    ("platform", "document"),
    [
        # start + duration past 9999-12-31 (elevenlabs.py, _transcription: ended_at)
        ("elevenlabs", _elevenlabs_late()),
        # start + duration past 9999-12-31 (retell.py, _call_ended: ended_at)
        ("retell", _retell_from_start(253_402_300_799_000)),
        # end - duration before year 1 (vapi.py, _end_of_call_report: started_at)
        ("vapi", _vapi_report("vapi-early", endedAt="0001-01-01T00:00:01Z", durationSeconds=100)),
        # a time whose UTC date is before year 1 (subject_keys.period_owner, on append)
        (
            "vapi",
            _vapi_report(
                "vapi-bc",
                startedAt="0001-01-01T00:00:00+14:00",
                endedAt="0001-01-01T00:00:19+14:00",
            ),
        ),
    ],
    ids=["elevenlabs-start-9999", "retell-start-9999", "vapi-end-year-1", "vapi-utc-before-year-1"],
)
async def test_a_signed_webhook_with_a_time_at_the_edge_is_refused_not_a_500(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str, platform: str, document: Any
) -> None:
    response = await deliver(ingest, platform, document, tenant=tenant)
    refused(response)
    assert await appended(topics) == []


async def test_an_event_whose_time_is_before_year_1_in_utc_is_refused_not_a_500(
    topics: Settings, ingest: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    event = {
        "type": "conversation.ended", "v": 1, "tenant": TENANT, "subject": SUBJECT,
        "id": "0193a6f2-7c10-7d3e-8a41-2b9c5d7e1f04",
        "occurred_at": "2026-11-19T10:21:14Z", "recorded_at": "2026-11-19T10:21:14Z",
        "source": {"platform": "gw", "event_id": "call-bc"},
        "data": {"conversation_id": "call-bc", "started_at": "0001-01-01T00:00:00+14:00",
                 "status": "done", "turns": []},
    }  # fmt: skip
    response = await ingest.post("/v1/events", json=event, headers=auth(keys["ingest"]))
    refused(response)
    assert await appended(topics) == []


async def test_a_time_after_year_9999_in_utc_does_not_break_the_tenants_reads(
    topics: Settings,
    db: AsyncConnection[Any],
    ingest: httpx.AsyncClient,
    query: httpx.AsyncClient,
    keys: dict[str, tenants.IssuedKey],
) -> None:
    """A Vapi report ending ``9999-12-31T23:59:59-14:00`` (10000-01-01 in UTC) is
    acknowledged; PostgreSQL stores the time, psycopg cannot load it back ("timestamp too
    large (after year 10K)"), and from then on ``GET /v1/users`` (every user of the
    tenant), the caller's record, conversations and briefing answer 500."""
    await tenants.add_webhook_secret(db, TENANT, "vapi", SECRETS["vapi"])
    document = _vapi_report(
        "vapi-late", startedAt="2025-10-14T17:10:00.512Z", endedAt="9999-12-31T23:59:59-14:00"
    )
    response = await deliver(ingest, "vapi", document, tenant=TENANT)
    assert response.status_code < 500, response.text[:300]
    if response.status_code != 200:
        assert_error_body(response)
        return
    await project_conversations(topics)
    caller = "+14155550123"  # the report's customer
    answers = [
        await query.get(path, headers=auth(keys["admin"]))
        for path in (
            "/v1/users",
            f"/v1/users/{caller}",
            f"/v1/users/{caller}/conversations",
            f"/v1/users/{caller}/briefing",
            "/v1/conversations/vapi-late",
        )
    ]
    assert [r.status_code for r in answers if r.status_code >= 500] == [], [
        (str(r.request.url), r.text[:100]) for r in answers
    ]


async def test_a_memory_asserted_or_retracted_with_a_nul_is_refused(
    topics: Settings, query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    """What the query API appends holds no NUL either: its event could not be made (a 500)
    or, made, stored."""
    memories = f"/v1/users/{USER}/memories"
    answers = [
        await query.post(memories, json={"content": "peni\x00cillin"}, headers=auth(keys["admin"])),
        await query.post(
            memories, json={"content": "ok", "asserted_by": "op\x00"}, headers=auth(keys["admin"])
        ),
        await query.delete(
            f"{memories}/0193a6f2-7c10-7d3e-8a41-2b9c5d7e1f05",
            params={"reason": "x\x00"},
            headers=auth(keys["admin"]),
        ),
    ]
    for response in answers:
        refused(response)
        assert response.status_code == 422
    assert await appended(topics) == []


# --- a body that breaks off ------------------------------------------------------------


async def _broken_off(app: Any, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """POST part of a body to ``app``, then go away (``http.disconnect``), as a client that
    drops the connection, or whose chunked body uvicorn cannot parse, does; what the app
    sends back. An exception escaping the app is what a server logs and counts as a 500."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("test", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    parts: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"user": "+1415', "more_body": True}
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return sent


def _refusal(sent: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    error: dict[str, Any] = orjson.loads(body)["error"]
    return start["status"], error


def _rejected(service: str, route: str, code: str) -> float:
    labels = {"route": route, "code": code}
    return REGISTRY.get_sample_value(f"memstream_{service}_rejected_total", labels) or 0.0


async def test_a_query_body_that_breaks_off_is_refused_not_an_exception(
    topics: Settings, keys: dict[str, tenants.IssuedKey]
) -> None:
    """``read_json`` let Starlette's ClientDisconnect escape (services/query/requests.py):
    "Exception in ASGI application" with a traceback, and a 500 in the request metrics."""
    before = _rejected("query", "/v1/memories/search", "incomplete_body")
    app = create_query_app(topics, embedder=EMBEDDER)
    sent = await _broken_off(
        app, "/v1/memories/search", {**auth(keys["admin"]), "content-type": "application/json"}
    )
    status, error = _refusal(sent)
    assert (status, error["code"]) == (400, "incomplete_body"), error
    assert _rejected("query", "/v1/memories/search", "incomplete_body") == before + 1


async def test_a_webhook_body_that_breaks_off_is_refused_not_an_exception(
    topics: Settings, tenant: str
) -> None:
    """The ingest service's ``read_body`` let it escape as well (services/ingest/app.py)."""
    route = "/v1/webhooks/{tenant}/retell"
    before = _rejected("ingest", route, "incomplete_body")
    app = create_ingest_app(topics)
    sent = await _broken_off(
        app,
        ROUTES["retell"].format(tenant=tenant),
        {"content-type": "application/json", "x-retell-signature": "v=1,d=" + "0" * 64},
    )
    status, error = _refusal(sent)
    assert (status, error["code"]) == (400, "incomplete_body"), error
    assert _rejected("ingest", route, "incomplete_body") == before + 1
    assert await appended(topics) == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", " GZip "])
async def test_a_compressed_body_is_refused_as_such(
    topics: Settings,
    tenant: str,
    query: httpx.AsyncClient,
    ingest: httpx.AsyncClient,
    keys: dict[str, tenants.IssuedKey],
    encoding: str,
) -> None:
    """A compressed body was refused as "not valid JSON ... surrogates not allowed": a 4xx,
    but one that sends its sender looking for a bug in its JSON."""
    body = gzip.compress(orjson.dumps({"user": SUBJECT, "query": "allergies"}))
    headers = {"content-type": "application/json", "content-encoding": encoding}
    searched = await query.post(
        "/v1/memories/search", content=body, headers={**headers, **auth(keys["admin"])}
    )
    webhook = payload("retell_call_analyzed")
    raw = gzip.compress(orjson.dumps(webhook))
    route = ROUTES["retell"].format(tenant=tenant)
    delivered = await ingest.post(route, content=raw, headers={**headers, **signed("retell", raw)})
    for response in (searched, delivered):
        assert response.status_code == 415, response.text
        assert response.json()["error"]["code"] == "unsupported_content_encoding"
    assert await appended(topics) == []
    # Identity is no encoding: read as before.
    plain = orjson.dumps(webhook)
    headers = {"content-encoding": "identity", **signed("retell", plain)}
    assert (await ingest.post(route, content=plain, headers=headers)).status_code == 200


# --- what a memory write appends ---------------------------------------------------------


async def test_a_retraction_reason_is_bounded_and_printable(
    topics: Settings, query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    """``DELETE .../memories/{id}?reason=`` checked only for a NUL (resources.py,
    ``retract_memory``): 60,000 characters, or escape sequences, were sealed into the
    ``memory.retracted`` appended to the log. An erasure's reason is refused beyond 500
    printable characters; a retraction's is the same."""
    listed = await query.get(f"/v1/users/{USER}/memories", headers=auth(keys["admin"]))
    memory_id = listed.json()["memories"][0]["memory_id"]
    path = f"/v1/users/{USER}/memories/{memory_id}"
    for reason in ("x" * 5000, "moved\nout\x1b[2J"):
        response = await query.delete(path, params={"reason": reason}, headers=auth(keys["admin"]))
        refused(response)
        assert (response.status_code, response.json()["error"].get("path")) == (422, "reason")
    # The listing above is audited; nothing else is appended.
    assert [r.topic for r in await appended(topics) if not r.topic.endswith(".audit")] == []
    fine = await query.delete(path, params={"reason": "moved out"}, headers=auth(keys["admin"]))
    assert fine.status_code == 202, fine.text


async def test_a_salience_too_small_for_the_read_model_is_not_dead_lettered(
    topics: Settings,
    db: AsyncConnection[Any],
    ingest: httpx.AsyncClient,
    query: httpx.AsyncClient,
    keys: dict[str, tenants.IssuedKey],
) -> None:
    """1e-320 is a salience within 0..1 (the schemas and the query API take it), but the
    memories read model keeps salience as ``real``, which underflows: PostgreSQL refuses
    ``"1e-320" is out of range for type real`` and the memories projection dead-letters
    the memory, whether asserted through the query API or ``/v1/events`` (or extracted by
    an LLM the caller talked into it). It is stored as what a ``real`` holds: 0."""
    asserted = await query.post(
        f"/v1/users/{USER}/memories",
        json={"content": "Tiny salience", "salience": 1e-320},
        headers=auth(keys["admin"]),
    )
    assert asserted.status_code == 201, asserted.text
    event: dict[str, Any] = {
        "type": "memory.asserted", "v": 1, "tenant": TENANT, "subject": SUBJECT,
        "id": "0193a6f2-7c10-7d3e-8a41-2b9c5d7e1f06",
        "occurred_at": "2026-11-19T10:21:14Z", "recorded_at": "2026-11-19T10:21:14Z",
        "source": {"platform": "gw", "event_id": "tiny"},
        "data": {"memory_id": "0193a6f2-7c10-7d3e-8a41-2b9c5d7e1f07", "content": "Tinier",
                 "sector": "semantic", "salience": 5e-324},
    }  # fmt: skip
    posted = await ingest.post("/v1/events", json=event, headers=auth(keys["admin"]))
    assert posted.status_code == 200, posted.text
    await project_conversations(topics, projection=MemoriesProjection())
    assert await dead_letters(topics) == []
    cursor = await db.execute(
        "SELECT salience FROM memories.memories WHERE memory_id IN (%s, %s)",
        [asserted.json()["memory_id"], event["data"]["memory_id"]],
    )
    assert [row[0] for row in await cursor.fetchall()] == [0.0, 0.0]
