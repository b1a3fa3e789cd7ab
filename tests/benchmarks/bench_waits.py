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
from collections import Counter
from typing import Any

import httpx

from tests.benchmarks.bench_query import _query_service, load_search_tenant, timed_searches
from tests.benchmarks.harness import BenchmarkContext, Figure, percentile

MEMORIES = 10_000
REQUESTS = 300
WAITERS = 10
WAIT_MS = 10_000
WARM_UP = 20
FAR_OFFSET = 999_999_999


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    size = ctx.scaled(MEMORIES)
    loaded = await load_search_tenant(settings, size, keys=1 + WAITERS)
    tokens, users, passages = loaded.tokens, loaded.users, loaded.passages

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
        alone = await timed_searches(base, tokens[0], users, rnd, REQUESTS // 2, WARM_UP)
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
        beside = await timed_searches(base, tokens[0], users, rnd, REQUESTS, WARM_UP)
        stop.set()
        await asyncio.gather(*running)
        alone += await timed_searches(
            base, tokens[0], users, rnd, REQUESTS - REQUESTS // 2, WARM_UP
        )
    waited = {**params, "waits": WAITERS, "wait_ms": WAIT_MS, "wait_answers": dict(waits)}
    return [
        ctx.figure("search alone p50", percentile(alone, 50), "ms", params=params),
        ctx.figure("search alone p95", percentile(alone, 95), "ms", params=params),
        ctx.figure("search beside 10 waits p50", percentile(beside, 50), "ms", params=waited),
        ctx.figure("search beside 10 waits p95", percentile(beside, 95), "ms", params=waited),
    ]
