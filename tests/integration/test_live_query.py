"""The query service during a live call: the agent tools answer from what the live
processor prefetched for the call when it covers the question, and
``GET /v1/calls/{call_id}/context`` streams the call's context tier by tier
(docs/query.md, "Live calls").

Against the query tests' golden corpus (tests/integration/query/corpus.py: SUBJECT, with
the call ``call-q1``, and OTHER, who "Prefers Thai food"), with prefetch rows written as the
live processor writes them (``projections.live.record_prefetch``). Each prefetched hit's
text is worded unlike anything in the corpus, so an answer shows where it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from prometheus_client import REGISTRY
from psycopg import AsyncConnection

from projections.live import record_prefetch
from schemas import ContextPrefetched, PrefetchedHit, Source
from services import tenants
from services.query import routes as query_routes
from services.query.app import create_app
from services.settings import Settings
from streams.audit import decode_entry, subject_hash
from streams.topics import Topics
from tests.helpers import eventually, free_port, read_topic
from tests.integration.query.conftest import corpus_database, settings
from tests.integration.query.corpus import EMBEDDER, OTHER, SUBJECT, TENANT, serving

__all__ = ["corpus_database", "settings"]  # the query tests' corpus fixtures, used by name

CALLER = SUBJECT.partition("/")[2]  # +14155550123
OTHER_CALLER = OTHER.partition("/")[2]  # +14155550124
CALL = "call-q1"  # SUBJECT's call in the corpus: the conversation binds the caller
ROUTE = "/v1/calls/{call_id}/context"

PENICILLIN = PrefetchedHit(
    kind="memory",
    id=str(uuid.UUID(int=1)),
    text="Allergic to penicillin since the 2019 rash",
    score=0.031,
    said_at=datetime(2026, 3, 4, 10, 0, tzinfo=UTC),
    conversation_id="conv-2",
    turns=(1,),
)
RASH = PrefetchedHit(
    kind="passage",
    id="call-q0#3",
    text="The rash from\npenicillin was bad",
    score=0.016,
    said_at=datetime(2026, 3, 2, 15, 4, tzinfo=UTC),
    conversation_id="call-q0",
    turns=(3,),
)
CURRY = PrefetchedHit(kind="memory", id=str(uuid.UUID(int=2)), text="Loves Thai green curry",
                      score=0.05, said_at=datetime(2026, 3, 3, tzinfo=UTC))  # fmt: skip
BISCUIT = PrefetchedHit(kind="memory", id=str(uuid.UUID(int=3)), score=0.04,
                        text="Biscuit the retriever is twelve years old")  # fmt: skip
KNEE = PrefetchedHit(kind="memory", id=str(uuid.UUID(int=4)), score=0.03,
                     text="Knee surgery booked with Dr Okafor")  # fmt: skip


def prefetched(
    subject: str, call: str, topic: str, *hits: PrefetchedHit, seq: int = 1
) -> ContextPrefetched:
    return ContextPrefetched.create(
        tenant=TENANT,
        subject=subject,
        source=Source(platform="memstream", event_id=f"{call}#{seq}"),
        occurred_at=datetime(2026, 3, 30, 9, 0, seq, tzinfo=UTC),
        data={"conversation_id": call, "topic": topic, "hits": hits},
    )


async def prefetch(
    db: AsyncConnection[Any],
    subject: str,
    call: str,
    topic: str,
    *hits: PrefetchedHit,
    seq: int = 1,
) -> ContextPrefetched:
    event = prefetched(subject, call, topic, *hits, seq=seq)
    await record_prefetch(db, event, seq)
    return event


def answers(source: str) -> float:
    return REGISTRY.get_sample_value("memstream_tool_answers_total", {"source": source}) or 0.0


async def streams_ended() -> float:
    """Context streams that have ended (counted when the app returns)."""
    labels = {"route": ROUTE, "status": "200"}
    return REGISTRY.get_sample_value("memstream_query_requests_total", labels) or 0.0


@pytest.fixture
async def keys(db: AsyncConnection[Any]) -> dict[str, tenants.IssuedKey]:
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    return {
        "agent": await tenants.issue_api_key(db, TENANT, "agent", ["agent"]),
        "read": await tenants.issue_api_key(db, TENANT, "reader", ["read"]),
        "write": await tenants.issue_api_key(db, TENANT, "writer", ["write"]),
    }


def auth(key: tenants.IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.token}"}


@pytest.fixture
async def query(topics: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(topics) as client:
        yield client


class _Server(uvicorn.Server):
    """uvicorn in the test's event loop, leaving the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture
async def served(topics: Settings) -> AsyncIterator[str]:
    """The query app on a real HTTP server (ASGITransport answers only when a response is
    complete: a stream must be read as it is sent)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(topics, embedder=EMBEDDER),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())

    async def up() -> bool:
        return server.started or task.done()

    await eventually(up, bool, timeout=30)
    if task.done():
        task.result()  # its error
        raise AssertionError("the server stopped before it started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def vapi(query: str, *, call: str = CALL, number: str = CALLER) -> dict[str, Any]:
    return {
        "message": {
            "type": "tool-calls",
            "call": {"id": call, "customer": {"number": number}},
            "toolCallList": [{"id": "t1", "name": "memory_search", "arguments": {"query": query}}],
        }
    }


async def tool_result(
    client: httpx.AsyncClient, key: tenants.IssuedKey, query: str, **bound: str
) -> str:
    response = await client.post("/v1/tools/vapi", json=vapi(query, **bound), headers=auth(key))
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert "result" in result, result
    answer: str = result["result"]
    return answer


# --- the agent tools ---------------------------------------------------------------


async def test_a_covered_question_is_answered_from_the_calls_prefetches(
    topics: Settings, db: AsyncConnection[Any], keys: dict[str, tenants.IssuedKey]
) -> None:
    await prefetch(db, SUBJECT, CALL, "I'm allergic to penicillin, you know", PENICILLIN, RASH)
    prefetched_before, searched_before = answers("prefetched"), answers("search")
    async with serving(topics) as client:
        vapi_answer = await tool_result(
            client, keys["agent"], "Is the caller allergic to penicillin?"
        )
        eleven = await client.post(
            "/v1/tools/elevenlabs/memory-search",
            json={"query": "any penicillin allergy?", "conversation_id": CALL},
            headers=auth(keys["agent"]),
        )
    expected = (
        "Known about this caller: Allergic to penicillin since the 2019 rash (2026-03-04);"
        ' (2026-03-02; they said "The rash from penicillin was bad").'
    )
    assert vapi_answer == expected
    assert eleven.status_code == 200, eleven.text
    assert eleven.json() == {"result": expected}
    assert answers("prefetched") == prefetched_before + 2
    assert answers("search") == searched_before
    # Audited exactly as a search is: one entry per tool call, its hits counted.
    entries = [
        decode_entry(r.value) for r in await read_topic(topics, Topics(topics.topic_prefix).audit)
    ]
    assert sorted((e.route, e.results, e.conversation_id) for e in entries) == [
        ("POST /v1/tools/elevenlabs/memory-search", 2, CALL),
        ("POST /v1/tools/vapi", 2, CALL),
    ]
    assert {e.subject_hash for e in entries} == {subject_hash(SUBJECT)}


async def test_a_question_the_prefetches_do_not_cover_is_searched(
    query: httpx.AsyncClient, db: AsyncConnection[Any], keys: dict[str, tenants.IssuedKey]
) -> None:
    await prefetch(db, SUBJECT, CALL, "I'm allergic to penicillin, you know", PENICILLIN, RASH)
    prefetched_before, searched_before = answers("prefetched"), answers("search")
    where = await tool_result(query, keys["agent"], "Where does the caller live these days?")
    assert "Lives in Manchester" in where  # the corpus's memory, found by the search
    assert "2019 rash" not in where
    # No content word at all: nothing is covered, the search answers.
    vague = await tool_result(query, keys["agent"], "What do you know?")
    assert "2019 rash" not in vague
    # A call without prefetches, or no call at all: the search.
    other_call = await tool_result(query, keys["agent"], "penicillin?", call="call-unknown")
    assert "2019 rash" not in other_call and "Allergic to penicillin" in other_call
    assert answers("search") == searched_before + 3
    assert answers("prefetched") == prefetched_before


async def test_another_callers_prefetches_for_the_call_are_never_used(
    query: httpx.AsyncClient, db: AsyncConnection[Any], keys: dict[str, tenants.IssuedKey]
) -> None:
    # One call id, two callers' rows (a platform's id reused, or a forged one): each
    # caller's tool calls see their own only.
    shared = "call-shared"
    await prefetch(db, OTHER, shared, "I could go for Thai food tonight", CURRY)
    await prefetch(db, SUBJECT, shared, "my dog Biscuit is getting old", BISCUIT, seq=2)
    searched_before = answers("search")
    thai = await tool_result(query, keys["agent"], "Does the caller like Thai curry?", call=shared)
    assert "curry" not in thai.lower() and "Thai" not in thai
    assert answers("search") == searched_before + 1  # searched, over SUBJECT's memories
    dog = await tool_result(query, keys["agent"], "How old is the dog?", call=shared)
    assert "Biscuit the retriever is twelve years old" in dog
    # The same question from the other caller's line reads their row: it is there.
    theirs = await tool_result(
        query, keys["agent"], "Does the caller like Thai curry?", call=shared, number=OTHER_CALLER
    )
    assert theirs == "Known about this caller: Loves Thai green curry (2026-03-03)."
    # On SUBJECT's call, the caller memstream recorded for it wins over the number given:
    # the other caller's row for that call id is not theirs to read.
    await prefetch(db, OTHER, CALL, "I could go for Thai food tonight", CURRY)
    recorded = await tool_result(
        query, keys["agent"], "Does the caller like Thai curry?", number=OTHER_CALLER
    )
    assert "curry" not in recorded.lower() and "Thai" not in recorded
    assert answers("search") == searched_before + 2


# --- the call's context stream -----------------------------------------------------


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) of each Server-Sent Event; (":", text) of each comment."""
    event: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield ":", line[1:].strip()
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif not line and event is not None:
            yield event, orjson.loads("\n".join(data))
            event, data = None, []


class Reader:
    """The events of one stream, each awaited at most `wait` seconds."""

    def __init__(self, response: httpx.Response, wait: float = 20.0) -> None:
        self.events = sse_events(response)
        self.wait = wait

    async def next(self) -> tuple[str, Any]:
        return await asyncio.wait_for(anext(self.events), self.wait)

    async def data(self) -> tuple[str, Any]:
        """The next event, past keep-alive comments."""

        async def past_comments() -> tuple[str, Any]:
            async for event, data in self.events:
                if event != ":":
                    return event, data
            raise AssertionError("the stream ended")

        return await asyncio.wait_for(past_comments(), self.wait)


async def test_the_stream_sends_the_briefing_then_each_prefetch_then_the_deep_search(
    served: str,
    db: AsyncConnection[Any],
    keys: dict[str, tenants.IssuedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(query_routes, "KEEP_ALIVE_S", 0.5)
    ended_before = await streams_ended()
    async with httpx.AsyncClient(base_url=served, timeout=30) as client:
        briefing = await client.get(f"/v1/users/{CALLER}/briefing", headers=auth(keys["read"]))
        assert briefing.status_code == 200, briefing.text
        params = {"deep": "true", "timeout": "120"}
        async with client.stream(
            "GET", f"/v1/calls/{CALL}/context", params=params, headers=auth(keys["agent"])
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = Reader(response)
            assert await reader.next() == ("context", {"tier": 0, "briefing": briefing.json()})

            # Written after the stream started: the other caller's row first, never sent.
            await prefetch(db, OTHER, CALL, "I could go for Thai food tonight", CURRY)
            first = await prefetch(db, SUBJECT, CALL, "about my knee surgery next week", KNEE)
            event, tier1 = await reader.data()
            assert (event, tier1) == (
                "context",
                {
                    "tier": 1,
                    "seq": 1,
                    "topic": first.data.topic,
                    "hits": [KNEE.model_dump(mode="json")],
                },
            )
            event, tier2 = await reader.data()
            assert event == "context"
            assert (tier2["tier"], tier2["seq"], tier2["topic"]) == (2, 1, first.data.topic)
            contents = [h["content"] for h in tier2["hits"]]
            # The search's own results, shaped as POST /v1/memories/search answers them.
            assert "Feels anxious about the knee surgery" in contents
            assert {h["type"] for h in tier2["hits"]} == {"memory", "passage"}
            assert all("Thai" not in c for c in contents)
            search = await client.post(
                "/v1/memories/search",
                json={"user": CALLER, "query": first.data.topic, "limit": 20},
                headers=auth(keys["read"]),
            )
            results = search.json()["results"]
            assert contents == [h["content"] for h in results]
            assert [set(h) for h in tier2["hits"]] == [set(h) for h in results]

            second = await prefetch(db, SUBJECT, CALL, "and my penicillin allergy", RASH, seq=2)
            _, tier1 = await reader.data()
            assert (tier1["tier"], tier1["seq"], tier1["topic"]) == (1, 2, second.data.topic)
            # Then nothing but keep-alives: no prefetch sent twice, no second deep search.
            quiet = [await reader.next() for _ in range(3)]
            assert quiet == [(":", "keep-alive")] * 3
    # The client left: the stream ended then, not at its timeout.
    await eventually(streams_ended, lambda ended: ended == ended_before + 1, timeout=10)


async def test_the_stream_ends_at_its_timeout(
    served: str, keys: dict[str, tenants.IssuedKey]
) -> None:
    # A call memstream has not recorded: the caller's number the platform bound names them.
    async with (
        httpx.AsyncClient(base_url=served, timeout=30) as client,
        client.stream(
            "GET",
            "/v1/calls/live-1/context",
            params={"caller_id": CALLER, "timeout": "1"},
            headers=auth(keys["agent"]),
        ) as response,
    ):
        assert response.status_code == 200

        async def to_the_end() -> list[tuple[str, Any]]:
            return [item async for item in sse_events(response)]

        # A second for the stream, the rest for a loaded machine: not its 900 s default.
        received = await asyncio.wait_for(to_the_end(), 15)
    [(event, data)] = received  # then the stream closed
    assert event == "context" and data["tier"] == 0
    assert data["briefing"]["user"] == CALLER
    assert "Allergic to penicillin" in data["briefing"]["memory_context"]


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"timeout": "0"}, "timeout"),
        ({"timeout": "3601"}, "timeout"),
        ({"timeout": "1.5"}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": ""}, "timeout"),
        ({"deep": "maybe"}, "deep"),
        ({"caller_id": "+1415\x00"}, "caller_id"),
    ],
)
async def test_a_bad_parameter_is_a_json_422(
    query: httpx.AsyncClient,
    keys: dict[str, tenants.IssuedKey],
    params: dict[str, str],
    path: str,
) -> None:
    response = await query.get(
        f"/v1/calls/{CALL}/context", params=params, headers=auth(keys["agent"])
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["path"] == path


async def test_the_stream_is_refused_before_it_starts(
    query: httpx.AsyncClient, keys: dict[str, tenants.IssuedKey]
) -> None:
    url = f"/v1/calls/{CALL}/context"
    assert (await query.get(url, params={"timeout": "0"})).status_code == 401  # the key first
    written = await query.get(url, headers=auth(keys["write"]))
    assert written.status_code == 403
    assert written.json()["error"]["code"] == "insufficient_scope"
    # Neither recorded nor numbered: no caller is bound to the call.
    unknown = await query.get("/v1/calls/live-2/context", headers=auth(keys["agent"]))
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_caller"
    named = await query.get(
        "/v1/calls/live-2/context", params={"user": OTHER_CALLER}, headers=auth(keys["agent"])
    )
    assert named.status_code == 403
    assert named.json()["error"]["code"] == "user_argument_not_allowed"
