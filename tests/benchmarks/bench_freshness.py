"""Freshness: from a post-call webhook's acknowledgement to its memories and passages being
searchable.

`memstream run` runs as its own process with the offline defaults (ingest, every
projection and processor: the rule-based extractor, the local embedding model) against
the benchmark's topics and database. 200 ElevenLabs
`post_call_transcription` webhooks (the realistic body of
tests/unit/ingest_payloads, each a new conversation from a new caller, so each yields
new memories rather than reinforcements) are sent one at a time, 5 per second. A
webhook's freshness runs from its 200 (the event is in the log) until:

- *lexical*: a memory with its conversation id is a row of `memories.memories`, full-text
  searchable through its `search` vector;
- *hybrid* (the target): every memory of the conversation also has its vector in
  `embeddings.embeddings`, so the search's dense leg finds them too;
- *passages* (target 1 s too): every passage of the conversation (each turn of the
  caller or the agent with text: as many as ``projections.conversations.passages``
  makes of the parsed webhook) is a row of `conversations.passages`, full-text
  searchable, and has its vector in `embeddings.passage_vectors`; *passages lexical*
  stops at the rows.

A poller checks every 10 ms, so figures are up to 10 ms late.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from psycopg import AsyncConnection

from projections.conversations.passages import passages
from schemas import ConversationEnded
from services import tenants
from services.ingest.platforms.elevenlabs import parse_post_call
from services.ingest.signatures import sign_elevenlabs
from streams.topics import ensure_topics
from tests.benchmarks.bench_ingest import PAYLOADS, POST_CALL_SECRET, TENANT, _ingest_service
from tests.benchmarks.harness import BenchmarkContext, Figure, at_most, percentile

logger = logging.getLogger(__name__)

CALLS = 200
RATE = 5.0
WARMUP_CALLS = 5
POLL_S = 0.01
TIMEOUT_S = 60.0
P95_TARGET_MS = 1000.0


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    await ensure_topics(settings)
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as conn:
        await tenants.create_tenant(conn, TENANT, "Bench", default_region="US")
        await tenants.add_webhook_secret(conn, TENANT, "elevenlabs", POST_CALL_SECRET)
    calls = ctx.scaled(CALLS)
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as scratch:
        async with _ingest_service(settings, Path(scratch), command=("run",)) as service:
            base = f"http://127.0.0.1:{service.port}"
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as client,
                await AsyncConnection.connect(settings.require_database(), autocommit=True) as db,
            ):
                await _until_views(db)
                await _measure(client, db, "warmup", WARMUP_CALLS)
                lexical, hybrid, said, spoken = await _measure(client, db, "measured", calls)
    ms = sorted(hybrid)
    lexical_ms = sorted(lexical)
    passages_ms = sorted(spoken)
    passages_lexical_ms = sorted(said)
    params: dict[str, Any] = {
        "calls": calls,
        "rate_per_s": RATE,
        "extractor": "rules",
        "poll_ms": POLL_S * 1000,
        "max_ms": round(ms[-1], 1),
        "timed": "the webhook's 200 until every memory of its conversation has its vector",
    }
    lexical_params = {
        **params,
        "max_ms": round(lexical_ms[-1], 1),
        "timed": "the webhook's 200 until a memory of its conversation is a row",
    }
    passages_params = {
        **params,
        "passages_per_call": _passages_per_call(),
        "max_ms": round(passages_ms[-1], 1),
        "timed": "the webhook's 200 until every passage of its conversation has its vector",
    }
    passages_lexical_params = {
        **passages_params,
        "max_ms": round(passages_lexical_ms[-1], 1),
        "timed": "the webhook's 200 until every passage of its conversation is a row",
    }
    logger.info("freshness p50 %.0f ms, p95 %.0f ms", percentile(ms, 50), percentile(ms, 95))
    logger.info(
        "passages freshness p50 %.0f ms, p95 %.0f ms",
        percentile(passages_ms, 50),
        percentile(passages_ms, 95),
    )
    return [
        ctx.figure("freshness p50", percentile(ms, 50), "ms", None, params=params),
        ctx.figure(
            "freshness p95", percentile(ms, 95), "ms", at_most(P95_TARGET_MS), params=params
        ),
        ctx.figure(
            "freshness lexical p50", percentile(lexical_ms, 50), "ms", None, params=lexical_params
        ),
        ctx.figure(
            "freshness lexical p95", percentile(lexical_ms, 95), "ms", None, params=lexical_params
        ),
        ctx.figure(
            "passages freshness p50",
            percentile(passages_ms, 50),
            "ms",
            None,
            params=passages_params,
        ),
        ctx.figure(
            "passages freshness p95",
            percentile(passages_ms, 95),
            "ms",
            at_most(P95_TARGET_MS),
            params=passages_params,
        ),
        ctx.figure(
            "passages freshness lexical p50",
            percentile(passages_lexical_ms, 50),
            "ms",
            None,
            params=passages_lexical_params,
        ),
        ctx.figure(
            "passages freshness lexical p95",
            percentile(passages_lexical_ms, 95),
            "ms",
            None,
            params=passages_lexical_params,
        ),
    ]


async def _until_views(db: AsyncConnection[Any]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        cursor = await db.execute(
            "SELECT to_regclass('memories.memories') IS NOT NULL"
            " AND to_regclass('embeddings.embeddings') IS NOT NULL"
            " AND to_regclass('conversations.passages') IS NOT NULL"
            " AND to_regclass('embeddings.passage_vectors') IS NOT NULL"
        )
        row = await cursor.fetchone()
        if row and row[0]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                "the memories, embeddings and conversations read models did not appear"
            )
        await asyncio.sleep(0.1)


def _passages_per_call() -> int:
    """The passages of the webhook's transcript, as ingest parses it and the projections
    cut it (every webhook of a run has the same transcript)."""
    document = orjson.loads((PAYLOADS / "elevenlabs_post_call_transcription.json").read_bytes())
    [ended] = parse_post_call(TENANT, document, received_at=datetime.now(UTC)).events
    assert isinstance(ended, ConversationEnded)
    return len(passages(ended.data.turns))


def _webhook(run: str, i: int) -> tuple[str, bytes, dict[str, str]]:
    document: dict[str, Any] = orjson.loads(
        (PAYLOADS / "elevenlabs_post_call_transcription.json").read_bytes()
    )
    data = document["data"]
    variables = data["conversation_initiation_client_data"]["dynamic_variables"]
    conversation_id = f"conv_{run}_{i:05d}"
    data["conversation_id"] = variables["system__conversation_id"] = conversation_id
    caller = f"+1415{5_590_000 + i + (0 if run == 'measured' else 50_000):07d}"
    data["metadata"]["phone_call"]["external_number"] = variables["system__caller_id"] = caller
    body = orjson.dumps(document)
    headers = {
        "Content-Type": "application/json",
        "ElevenLabs-Signature": sign_elevenlabs(POST_CALL_SECRET, body, int(time.time())),
    }
    return conversation_id, body, headers


async def _measure(
    client: httpx.AsyncClient, db: AsyncConnection[Any], run: str, calls: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Send ``calls`` webhooks at RATE; return each one's lexical and hybrid freshness in
    ms, of its memories and of its passages."""
    expected = _passages_per_call()
    acked: dict[str, float] = {}
    lexical: dict[str, float] = {}
    seen: dict[str, float] = {}
    said: dict[str, float] = {}  # every passage a row
    spoken: dict[str, float] = {}  # every passage with its vector
    sending_done = asyncio.Event()

    async def poll() -> None:
        deadline = None
        while len(seen) < calls or len(spoken) < calls:
            pending = [c for c in acked if c not in seen]
            if pending:
                # Per conversation: its memories, and how many of them have a vector.
                cursor = await db.execute(
                    "SELECT m.conversation_id, count(*), count(e.memory_id)"
                    "  FROM memories.memories m"
                    "  LEFT JOIN embeddings.embeddings e"
                    "    ON e.tenant = m.tenant AND e.memory_id = m.memory_id"
                    " WHERE m.tenant = %s AND m.conversation_id = ANY(%s)"
                    "   AND m.content IS NOT NULL"
                    " GROUP BY m.conversation_id",
                    [TENANT, pending],
                )
                now = time.perf_counter()
                for conversation_id, memories, vectors in await cursor.fetchall():
                    lexical.setdefault(conversation_id, now)
                    if vectors == memories:
                        seen.setdefault(conversation_id, now)
            pending = [c for c in acked if c not in spoken]
            if pending:
                # Per conversation: its passages, and how many passages have a vector.
                cursor = await db.execute(
                    "SELECT c,"
                    "       (SELECT count(*) FROM conversations.passages p"
                    "         WHERE p.tenant = %(tenant)s AND p.conversation_id = c),"
                    "       (SELECT count(*) FROM embeddings.passage_vectors v"
                    "         WHERE v.tenant = %(tenant)s AND v.conversation_id = c)"
                    "  FROM unnest(%(pending)s::text[]) AS c",
                    {"tenant": TENANT, "pending": pending},
                )
                now = time.perf_counter()
                for conversation_id, rows, vectors in await cursor.fetchall():
                    if rows >= expected:
                        said.setdefault(conversation_id, now)
                        if vectors >= expected:
                            spoken.setdefault(conversation_id, now)
            if sending_done.is_set():
                deadline = deadline or time.monotonic() + TIMEOUT_S
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{calls - len(seen)} calls never became memories,"
                        f" {calls - len(spoken)} never searchable passages"
                    )
            await asyncio.sleep(POLL_S)

    poller = asyncio.create_task(poll())
    began = time.perf_counter()
    for i in range(calls):
        await asyncio.sleep(max(0.0, began + i / RATE - time.perf_counter()))
        conversation_id, body, headers = _webhook(run, i)
        response = await client.post(
            f"/v1/webhooks/{TENANT}/elevenlabs", content=body, headers=headers
        )
        if response.status_code != 200:
            raise RuntimeError(f"webhook answered {response.status_code}: {response.text}")
        acked[conversation_id] = time.perf_counter()
    sending_done.set()
    await poller
    return (
        [(lexical[c] - acked[c]) * 1000 for c in acked],
        [(seen[c] - acked[c]) * 1000 for c in acked],
        [(said[c] - acked[c]) * 1000 for c in acked],
        [(spoken[c] - acked[c]) * 1000 for c in acked],
    )
