"""Read-your-writes waits beside searches: what far-future waits cost the other requests.

A read-your-writes wait (``X-Memstream-After``) can be asked for a position no
projection will reach soon, and then lasts its whole ``X-Memstream-Wait-Ms``. The query
service reads through a pool of 10 connections; a wait holds none while it sleeps (each
poll checks one out for one query, docs/query.md), so such waits must not slow the
requests beside them.

The tenant's read models are loaded as bench_query loads them (``COPY``), at 10,000
memories and their passages (10 per memory). Against `memstream query` running as its
own process (HTTP, API key; the local model embeds each question inside the timed
request):

- *search alone*: 300 sequential ``POST /v1/memories/search`` for random users and
  questions (the default request: memories and passages), half before and half after
  the searches beside waits, so that a drift of the machine's load affects both alike;
- *search beside 10 waits*: 300 such searches while 10 clients each wait for a
  far-future position (``X-Memstream-After`` at offset 999,999,999 of the conversations
  topic, ``X-Memstream-Wait-Ms: 10000``) and send the wait again as soon as it is
  answered (409 ``not_yet_consistent`` after 10 s), so that 10 waits are in progress
  throughout. Each waiting client has its own API key (a key may hold 4 waits,
  ``MEMSTREAM_QUERY_MAX_WAITS``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np
from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from projections.embeddings.local import LocalEmbedder
from projections.embeddings.projection import EmbeddingsProjection
from projections.memories import MemoriesProjection
from services import tenants
from streams import versions
from tests.benchmarks.bench_query import (
    _QUESTIONS,
    PASSAGES_PER_MEMORY,
    TENANT,
    _bank,
    _build_index,
    _drop_index,
    _load,
    _passage_bank,
    _query_service,
    _Talk,
    _vacuum,
)
from tests.benchmarks.harness import BenchmarkContext, Figure, percentile

MEMORIES = 10_000
REQUESTS = 300
WAITERS = 10
WAIT_MS = 10_000
FAR_OFFSET = 999_999_999


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    size = ctx.scaled(MEMORIES)
    embedder = LocalEmbedder()
    bank = _bank()
    bank_vectors = np.asarray(embedder.embed([text for text, _, _ in bank]), dtype=np.float32)
    passage_bank = _passage_bank()
    windows = list(dict.fromkeys(passage_bank.windows))
    embedded = np.asarray(embedder.embed(windows), dtype=np.float32)
    passage_vectors = embedded[[windows.index(w) for w in passage_bank.windows]]
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as db:
        await tenants.create_tenant(db, TENANT, "Bench", default_region="US")
        tokens = [(await tenants.issue_api_key(db, TENANT)).token for _ in range(1 + WAITERS)]
        for projection in (MemoriesProjection(), EmbeddingsProjection(), ConversationsProjection()):
            await versions.register(db, projection, 1)
    talk = _Talk(passage_bank, passage_vectors, np.random.default_rng(8), random.Random(9))
    async with await AsyncConnection.connect(settings.require_database()) as conn:
        await _drop_index(conn)
        users, passages, _ = await _load(
            conn,
            np.random.default_rng(7),
            bank,
            bank_vectors,
            talk,
            size,
            0,
            size * PASSAGES_PER_MEMORY,
        )
        await _vacuum(settings)
        await _build_index(conn)

    position = f"{settings.topic_prefix}.conversations:0:{FAR_OFFSET}"
    params: dict[str, Any] = {
        "memories": size,
        "passages": passages,
        "users": len(users),
        "requests": REQUESTS,
        "pool": "10 connections (the query service's)",
        "timed": "HTTP request to response, query embedded inside",
    }
    async with _query_service(settings) as base:
        rnd = random.Random(1)
        alone = await _searches(base, tokens[0], users, rnd, REQUESTS // 2)
        waits: Counter[int] = Counter()
        stop = asyncio.Event()

        async def waiter(token: str) -> None:
            headers = {
                "Authorization": f"Bearer {token}",
                "X-Memstream-After": position,
                "X-Memstream-Wait-Ms": str(WAIT_MS),
            }
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
                while not stop.is_set():
                    response = await client.get(f"/v1/users/{users[0]}")
                    waits[response.status_code] += 1

        running = [asyncio.create_task(waiter(token)) for token in tokens[1:]]
        await asyncio.sleep(1.0)  # every wait sent and polling
        beside = await _searches(base, tokens[0], users, rnd, REQUESTS)
        stop.set()
        await asyncio.gather(*running)
        alone += await _searches(base, tokens[0], users, rnd, REQUESTS - REQUESTS // 2)
    waited = {**params, "waits": WAITERS, "wait_ms": WAIT_MS, "wait_answers": dict(waits)}
    return [
        ctx.figure("search alone p50", percentile(alone, 50), "ms", params=params),
        ctx.figure("search alone p95", percentile(alone, 95), "ms", params=params),
        ctx.figure("search beside 10 waits p50", percentile(beside, 50), "ms", params=waited),
        ctx.figure("search beside 10 waits p95", percentile(beside, 95), "ms", params=waited),
    ]


async def _searches(
    base: str, token: str, users: list[str], rnd: random.Random, count: int
) -> list[float]:
    """Milliseconds of each of ``count`` sequential searches (after 20 to warm up)."""
    headers = {"Authorization": f"Bearer {token}"}
    timings: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for i in range(20 + count):
            body = {
                "user": rnd.choice(users),
                "query": rnd.choice(_QUESTIONS),
                "limit": 10,
            }
            began = time.perf_counter()
            response = await client.post("/v1/memories/search", json=body)
            elapsed = (time.perf_counter() - began) * 1000
            response.raise_for_status()
            if i >= 20:
                timings.append(elapsed)
    return timings
