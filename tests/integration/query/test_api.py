"""The query service over HTTP: search, briefing, agent tools, auth, rate limits and tenant
isolation, against the real read models (the golden corpus of corpus.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from services import tenants
from services.query.app import create_app
from services.query.context import count_tokens
from services.settings import Settings
from tests.fakes.openai_server import EMBEDDINGS, FakeOpenAI
from tests.integration.query.corpus import (
    EMBEDDER,
    SUBJECT,
    TENANT,
    serving,
)

USER = SUBJECT.partition("/")[2]
OTHER_TENANT = "globex"


@pytest.fixture
async def keys(db: Any) -> dict[str, str]:
    await tenants.create_tenant(db, TENANT, "Acme Clinics", default_region="US")
    await tenants.create_tenant(db, OTHER_TENANT, "Globex", default_region="US")
    return {
        TENANT: (await tenants.issue_api_key(db, TENANT)).token,
        OTHER_TENANT: (await tenants.issue_api_key(db, OTHER_TENANT)).token,
    }


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings) as client:
        yield client


@pytest.fixture
async def query(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(settings):
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_search_answers_ranked_memories_with_breakdown_and_provenance(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await query.post(
        "/v1/memories/search",
        json={"user": USER, "query": "what food do they like", "limit": 3},
        headers=auth(keys[TENANT]),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == EMBEDDER.name
    assert len(body["results"]) == 3
    top = body["results"][0]
    assert top["content"] == "Prefers Italian food"
    assert set(top["score_breakdown"]) >= {"relevance", "salience", "recency", "link"}
    assert top["provenance"] == [{"conversation_id": "conv-1", "turns": [1]}]


async def test_search_answers_passages_and_memories_in_one_shape(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await query.post(
        "/v1/memories/search",
        json={"user": USER, "query": "knee surgery on Tuesday", "limit": 10},
        headers=auth(keys[TENANT]),
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    kinds = {r["type"] for r in results}
    assert kinds == {"memory", "passage"}
    for result in results:
        assert set(result) == set(results[0])  # one shape for both
        [cited] = result["provenance"][:1]
        assert set(cited) == {"conversation_id", "turns"}
    passage = next(r for r in results if r["type"] == "passage")
    assert passage["memory_id"] is None and passage["sector"] is None
    assert passage["speaker"] in {"caller", "agent"} and passage["said_at"].startswith("2026-03")
    assert passage["provenance"][0]["conversation_id"] == "call-q1"
    assert all(set(c) == {"seq", "speaker", "text"} for c in passage["context"])
    memories_only = await query.post(
        "/v1/memories/search",
        json={"user": USER, "query": "knee surgery on Tuesday", "sources": ["memories"]},
        headers=auth(keys[TENANT]),
    )
    assert {r["type"] for r in memories_only.json()["results"]} == {"memory"}
    passages_only = await query.post(
        "/v1/memories/search",
        json={"user": USER, "query": "knee surgery on Tuesday", "sources": ["passages"]},
        headers=auth(keys[TENANT]),
    )
    assert {r["type"] for r in passages_only.json()["results"]} == {"passage"}


async def test_a_key_never_reads_another_tenants_users(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    # The same user name under the other tenant's key is the other tenant's user: none.
    response = await query.post(
        "/v1/memories/search",
        json={"user": USER, "query": "food"},
        headers=auth(keys[OTHER_TENANT]),
    )
    assert response.status_code == 200
    assert response.json()["results"] == []
    briefing = await query.get(f"/v1/users/{USER}/briefing", headers=auth(keys[OTHER_TENANT]))
    assert briefing.status_code == 200
    assert briefing.json()["memory_context"] == ""
    # Naming the tenant in the user does not escape the key's tenant.
    escaped = await query.post(
        "/v1/memories/search",
        json={"user": SUBJECT, "query": "food"},
        headers=auth(keys[OTHER_TENANT]),
    )
    assert escaped.status_code == 200 and escaped.json()["results"] == []


async def test_briefing_lists_the_callers_memories(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await query.get(f"/v1/users/{USER}/briefing", headers=auth(keys[TENANT]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "Allergic to penicillin" in body["memory_context"]
    assert "Lives in Leeds" not in body["memory_context"]  # superseded
    assert body["last_interaction"] == "2026-03-28"
    assert "Asked about the knee surgery" in body["memory_context"]  # the last call's summary


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credentials"),
        ({"Authorization": "Basic abc"}, "missing_credentials"),
        ({"Authorization": "Bearer msk_aaaaaaaaaaaa_" + "x" * 43}, "bad_credentials"),
        ({"Authorization": "Bearer not-a-key"}, "bad_credentials"),
    ],
)
async def test_requests_without_a_valid_key_are_refused(
    query: httpx.AsyncClient, headers: dict[str, str], code: str
) -> None:
    for response in (
        await query.post("/v1/memories/search", json={"user": USER, "query": "x"}, headers=headers),
        await query.get(f"/v1/users/{USER}/briefing", headers=headers),
        await query.post("/v1/tools/vapi", json={}, headers=headers),
        await query.post("/v1/tools/elevenlabs/memory-search", json={}, headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == code


async def test_a_revoked_key_stops_working(
    settings: Settings, db: Any, keys: dict[str, str]
) -> None:
    token = keys[TENANT]
    await tenants.revoke_api_key(db, token.split("_")[1])
    async for client in _client(settings):  # a fresh process: nothing cached
        response = await client.get(f"/v1/users/{USER}/briefing", headers=auth(token))
        assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"query": "x"}, "user"),
        ({"user": USER}, "query"),
        ({"user": USER, "query": "   "}, "query"),
        ({"user": USER, "query": "x", "limit": 0}, "limit"),
        ({"user": USER, "query": "x", "limit": 51}, "limit"),
        ({"user": USER, "query": "x", "limit": "5"}, "limit"),
        ({"user": USER, "query": "x", "limit": True}, "limit"),
        ({"user": USER, "query": "x", "sectors": ["gossip"]}, "sectors[0]"),
        ({"user": USER, "query": "x", "sectors": []}, "sectors"),
        ({"user": USER, "query": "x", "min_score": 2}, "min_score"),
        ({"user": USER, "query": "x", "extra": 1}, "extra"),
        ({"user": "a\nb", "query": "x"}, "user"),
        ({"user": USER, "query": "knee\u0000surgery"}, "query"),
        ({"user": USER, "query": "x", "sources": []}, "sources"),
        ({"user": USER, "query": "x", "sources": ["turns"]}, "sources[0]"),
        ({"user": USER, "query": "x", "sources": "memories"}, "sources"),
        ([1, 2], "$"),
    ],
)
async def test_invalid_search_requests_are_422_naming_the_field(
    query: httpx.AsyncClient, keys: dict[str, str], body: Any, path: str
) -> None:
    response = await query.post("/v1/memories/search", json=body, headers=auth(keys[TENANT]))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["path"] == path


async def test_malformed_and_oversized_bodies_are_refused(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    malformed = await query.post(
        "/v1/memories/search", content=b"{not json", headers=auth(keys[TENANT])
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    huge = await query.post(
        "/v1/memories/search",
        json={"user": USER, "query": "x" * 70_000},
        headers=auth(keys[TENANT]),
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "body_too_large"


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    settings: Settings, keys: dict[str, str]
) -> None:
    async for client in _client(settings.replace(query_rate_limit=0.5, query_rate_burst=2)):
        statuses = []
        for _ in range(3):
            response = await client.get(f"/v1/users/{USER}/briefing", headers=auth(keys[TENANT]))
            statuses.append(response.status_code)
        assert statuses == [200, 200, 429]
        assert response.json()["error"]["code"] == "rate_limited"
        assert response.headers["retry-after"] == "2"
        # Another key has its own bucket.
        other = await client.get(f"/v1/users/{USER}/briefing", headers=auth(keys[OTHER_TENANT]))
        assert other.status_code == 200


async def test_elevenlabs_tool_binds_the_caller_from_its_caller_id(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await query.post(
        "/v1/tools/elevenlabs/memory-search",
        # As dialled: a national number is placed with the tenant's default region.
        json={"query": "allergies", "caller_id": "(415) 555-0123"},
        headers=auth(keys[TENANT]),
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert isinstance(result, str) and "\n" not in result
    assert "Allergic to penicillin" in result
    unknown = await query.post(
        "/v1/tools/elevenlabs/memory-search",
        json={"query": "allergies", "caller_id": "anonymous"},
        headers=auth(keys[TENANT]),
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_caller"


async def test_vapi_tool_calls_are_answered_in_call_order_one_line_each(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    message = {
        "message": {
            "type": "tool-calls",
            "call": {"id": "call-1", "customer": {"number": USER}},
            "toolCallList": [
                {"id": "t1", "name": "memory_search", "arguments": {"query": "dog"}},
                {"id": "t2", "name": "memory_search", "arguments": '{"query": "allergy"}'},
                {"id": "t3", "name": "memory_search", "arguments": {}},
            ],
            "toolWithToolCallList": [
                {"toolCall": {"id": "t2", "function": {"name": "memory_search"}}},
                {
                    "toolCall": {
                        "id": "t4",
                        "function": {"name": "memory_search", "parameters": {"query": "zebra"}},
                    }
                },
            ],
        }
    }
    response = await query.post("/v1/tools/vapi", json=message, headers=auth(keys[TENANT]))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["toolCallId"] for r in results] == ["t1", "t2", "t3", "t4"]
    assert "Biscuit" in results[0]["result"]
    assert "penicillin" in results[1]["result"]
    assert "error" in results[2] and "result" not in results[2]
    assert all("\n" not in (r.get("result") or r["error"]) for r in results)


@pytest.mark.parametrize("budget", [32, 60, 120, 400, 4000])
@pytest.mark.parametrize("tokenizer", ["o200k_base", "cl100k_base"])
async def test_context_never_exceeds_its_budget(
    query: httpx.AsyncClient, keys: dict[str, str], budget: int, tokenizer: str
) -> None:
    response = await query.post(
        "/v1/context",
        json={"user": USER, "query": "surgery", "token_budget": budget, "tokenizer": tokenizer},
        headers=auth(keys[TENANT]),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tokens"] == count_tokens(body["context"], tokenizer) <= budget
    if budget >= 400:  # everything fits: every memory and turn, nothing dropped
        assert body["dropped"] == 0
        sections = [p["section"] for p in body["included"]]
        assert sections.count("memories") == 8 and sections.count("turns") == 4
    else:
        assert body["dropped"] > 0


async def test_context_puts_memories_first_and_the_last_turns_verbatim_in_order(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await query.post(
        "/v1/context",
        json={"user": USER, "query": "knee surgery", "token_budget": 4000},
        headers=auth(keys[TENANT]),
    )
    text = response.json()["context"]
    memories, _, turns = text.partition("## Their last conversation, verbatim")
    assert memories.index("Feels anxious about the knee surgery") < memories.index(
        "Prefers Italian food"
    )
    assert "Lives in Leeds" not in text
    assert turns.strip().splitlines() == [
        "Agent: Bayview Clinic, how can I help?",
        "Caller: About my knee surgery next week.",
        "Agent: It is on Tuesday at 9am.",
        "Caller: Thanks, see you then.",
    ]
    # A tight budget keeps the newest turns and drops the oldest.
    tight = await query.post(
        "/v1/context",
        json={"user": USER, "token_budget": 32},
        headers=auth(keys[TENANT]),
    )
    included = tight.json()["included"]
    assert included and included[0]["section"] == "memories"


async def test_context_streams_briefing_then_memories_then_context(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await query.post(
        "/v1/context",
        json={"user": USER, "query": "dog", "token_budget": 300, "stream": True},
        headers=auth(keys[TENANT]),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    assert [e[0] for e in events] == ["event: briefing", "event: memories", "event: context"]
    memories = orjson.loads(events[1][1].removeprefix("data: "))
    assert memories["results"][0]["content"] in {
        "Has a dog named Biscuit",
        "Biscuit the dog is a golden retriever",
    }
    context = orjson.loads(events[2][1].removeprefix("data: "))
    assert context["tokens"] <= 300


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"user": USER}, "token_budget"),
        ({"user": USER, "token_budget": 10}, "token_budget"),
        ({"user": USER, "token_budget": 100, "tokenizer": "gpt2"}, "tokenizer"),
        ({"user": USER, "token_budget": 100, "stream": "yes"}, "stream"),
    ],
)
async def test_invalid_context_requests_are_422(
    query: httpx.AsyncClient, keys: dict[str, str], body: Any, path: str
) -> None:
    response = await query.post("/v1/context", json=body, headers=auth(keys[TENANT]))
    assert response.status_code == 422 and response.json()["error"]["path"] == path


async def test_queries_are_embedded_by_the_configured_model_and_fall_back_to_local(
    settings: Settings, keys: dict[str, str]
) -> None:
    """With MEMSTREAM_EMBEDDING_MODEL set, queries go to that model (through the fake
    OpenAI server); while it fails, the local model embeds them and the search reads the
    local model's vectors, as the embedding processor's fallback wrote them."""
    with FakeOpenAI(dimension=16) as fake:
        remote = settings.replace(
            openai_base_url=fake.base_url,
            openai_api_key="sk-test",
            embedding_model="fake-embedder",
            provider_timeout_s=1.0,
            provider_retries=0,
        )
        app = create_app(remote)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
                body = {"user": USER, "query": "penicillin", "limit": 3}
                answer = await client.post(
                    "/v1/memories/search", json=body, headers=auth(keys[TENANT])
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["model"] == "openai/fake-embedder"
                assert fake.calls(EMBEDDINGS) == 1
                # The corpus has no vectors of that model: only the lexical list answers.
                [hit] = answer.json()["results"]
                assert hit["content"] == "Allergic to penicillin" and hit["via"] == ["lexical"]

                fake.fail("500")
                fallback = await client.post(
                    "/v1/memories/search", json=body, headers=auth(keys[TENANT])
                )
                assert fallback.status_code == 200, fallback.text
                assert fallback.json()["model"] == EMBEDDER.name
                assert "dense" in fallback.json()["results"][0]["via"]


async def test_queries_follow_the_model_of_the_live_embedder_version(
    settings: Settings, keys: dict[str, str]
) -> None:
    """After `memstream reprocess embeddings --model M --swap`, the live embedder version
    is recorded with model M: the query service embeds questions with M, whatever
    MEMSTREAM_EMBEDDING_MODEL says, so they meet the vectors being served."""
    with FakeOpenAI(dimension=16) as fake:
        provider = settings.replace(
            openai_base_url=fake.base_url, openai_api_key="sk-test", embedding_model=""
        )
        app = create_app(provider)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
                body = {"user": USER, "query": "penicillin", "limit": 3}
                headers = auth(keys[TENANT])
                before = await client.post("/v1/memories/search", json=body, headers=headers)
                assert before.status_code == 200, before.text
                assert before.json()["model"] == EMBEDDER.name and fake.calls(EMBEDDINGS) == 0

        async with await psycopg.AsyncConnection.connect(
            provider.require_database(), autocommit=True
        ) as conn:
            switched = await conn.execute(
                "UPDATE memstream.projection_versions SET config = config ||"
                """ '{"settings": {"embedding_model": "fake-embedder"}}'::jsonb"""
                " WHERE projection = 'embedder' AND state = 'live'"
            )
            assert switched.rowcount == 1
        app = create_app(provider)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
                after = await client.post("/v1/memories/search", json=body, headers=headers)
                assert after.status_code == 200, after.text
                assert after.json()["model"] == "openai/fake-embedder"
                assert fake.calls(EMBEDDINGS) == 1


async def test_transcript_search_finds_what_was_said_turn_by_turn(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await query.post(
        "/v1/transcripts/search",
        json={"user": USER, "query": "knee next week", "limit": 2},
        headers=auth(keys[TENANT]),
    )
    assert response.status_code == 200, response.text
    top = response.json()["results"][0]
    assert top["text"] == "About my knee surgery next week." and top["seq"] == 1
    assert top["speaker"] == "caller" and top["conversation_id"] == "call-q1"
    assert [c["seq"] for c in top["context"]] == [0, 2]
    # Both speakers' words are searchable.
    agent = await query.post(
        "/v1/transcripts/search",
        json={"user": USER, "query": "Bayview Clinic"},
        headers=auth(keys[TENANT]),
    )
    [first, *_] = agent.json()["results"]
    assert first["speaker"] == "agent" and first["text"] == "Bayview Clinic, how can I help?"


async def test_tools_quote_what_was_said_when_no_memory_matches(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await query.post(
        "/v1/tools/elevenlabs/memory-search",
        json={"query": "see you then", "caller_id": USER},
        headers=auth(keys[TENANT]),
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    # The caller's turn, quoted with the agent's words it answered; no memory says it.
    assert result.startswith(
        'Known about this caller: on 2026-03-28 asked "It is on Tuesday at 9am.", they said'
        ' "Thanks, see you then."'
    ), result


async def test_readiness_reports_database_log_and_projection_lag(
    query: httpx.AsyncClient,
) -> None:
    response = await query.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["checks"] == {"database": "ok", "log": "ok"}
    # The corpus's read models are live; this test's topics are empty: nothing to apply.
    assert body["lag"] == {
        "conversations": 0, "memories": 0, "embedder": 0, "embeddings": 0, "audit": 0
    }  # fmt: skip
    assert (await query.get("/health/live")).json() == {"status": "live"}


async def test_context_transcripts_and_tools_see_nothing_of_another_tenant(
    query: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    other = auth(keys[OTHER_TENANT])
    context = await query.post(
        "/v1/context", json={"user": USER, "query": "surgery", "token_budget": 4000}, headers=other
    )
    assert context.status_code == 200
    assert context.json()["context"] == "" and context.json()["included"] == []
    turns = await query.post(
        "/v1/transcripts/search", json={"user": USER, "query": "knee"}, headers=other
    )
    assert turns.json()["results"] == []
    tool = await query.post(
        "/v1/tools/elevenlabs/memory-search",
        json={"query": "allergies", "caller_id": USER},
        headers=other,
    )
    assert tool.json()["result"].startswith("No memories of this caller match")
    vapi = await query.post(
        "/v1/tools/vapi",
        json={
            "message": {
                "type": "tool-calls",
                "customer": {"number": USER},
                "toolCallList": [{"id": "t1", "arguments": {"query": "allergies"}}],
            }
        },
        headers=other,
    )
    assert vapi.json()["results"][0]["result"].startswith("No memories of this caller match")
