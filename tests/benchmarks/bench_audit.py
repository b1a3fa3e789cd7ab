"""The audit trail's cost to reads: memory search with the trail on and off.

Every search records an audit entry (streams/audit.py): the subject's pseudonym (one
HMAC, cached), the entry put in an in-process buffer, and a background task appending
the buffer in batches to the audit topic (acks=all) through the service's producer. The
request does not wait for the broker; this measures what is left on its path and what
the background appends take from the two cores the requests also use.

The tenant's read models are loaded as bench_query loads them (``COPY``), at 10,000
memories and their passages (10 per memory). Two `memstream query` processes serve the
same database, one with ``MEMSTREAM_AUDIT_TRAIL=on`` (the default) and one ``off``; only
one runs at a time. Against each (HTTP, API key; the local model embeds each question
inside the timed request):

- *sequential search*: 300 ``POST /v1/memories/search`` per mode for random users and
  questions (the default request: memories and passages), in four rounds on, off, off,
  on, so that a drift of the machine's load affects both alike;
- *sustained search*: then, in the same rounds, 8 concurrent clients for 5 s: requests/s
  over the 10 s of each mode.

Over HTTP on two shared cores, run-to-run noise is about as large as the trail's cost:
over five runs while this was written, p50 with the trail on was 1.5 ms faster to 2.0 ms
slower than off (+0.6 ms on average), p95 4 ms faster to 7 ms slower (+2.4 ms on
average), and the sustained rates differed by -10% to +23%. So the cost is also measured
in process, where it is the only work timed:

- *record, per entry*: 20,000 ``AuditTrail.record`` calls (200 subjects), each what a
  request does before it is answered (the hash, the entry, the buffer), while the
  background task appends;
- *background appends*: entries/s from the first record until ``close`` has every one
  acknowledged (batches of up to 500, acks=all).

After the audited process stops (SIGTERM: a clean shutdown), the audit topic must hold
one entry per search it answered (warm-ups included): *entries lost* is the difference.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx

from services.settings import Settings
from streams import EventLog
from streams.audit import READ, AuditTrail
from streams.topics import Topics, ensure_topics
from tests.benchmarks.bench_query import (
    TENANT,
    _query_service,
    load_search_tenant,
    search_body,
    timed_searches,
)
from tests.benchmarks.harness import BenchmarkContext, Figure, percentile
from tests.helpers import personal_data_codec, read_topic

MEMORIES = 10_000
REQUESTS = 300
WARM_UP = 20
CLIENTS = 8
SUSTAINED_S = 10.0
IN_PROCESS = 20_000


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    size = ctx.scaled(MEMORIES)
    requests = ctx.scaled(REQUESTS)
    await ensure_topics(settings)
    loaded = await load_search_tenant(settings, size)
    [token], users, passages = loaded.tokens, loaded.users, loaded.passages

    modes = {"on": settings, "off": settings.replace(audit_trail=False)}
    timings: dict[str, list[float]] = {"on": [], "off": []}
    answered = 0  # searches the audited process answered (warm-ups included)
    rnd = random.Random(1)
    served = {"on": [0, 0.0], "off": [0, 0.0]}  # sustained: searches, seconds
    for mode in ("on", "off", "off", "on"):
        async with _query_service(modes[mode]) as base:
            timings[mode] += await timed_searches(base, token, users, rnd, requests // 2, WARM_UP)
            count, seconds = await _sustained(base, token, users, rnd, SUSTAINED_S / 2)
        served[mode][0] += count
        served[mode][1] += seconds
        if mode == "on":
            answered += WARM_UP + requests // 2 + count
    sustained = {mode: count / seconds for mode, (count, seconds) in served.items()}
    recorded = len(await read_topic(settings, Topics(settings.topic_prefix).audit))
    per_entry_us, appended_per_s = await _in_process(settings, ctx.scaled(IN_PROCESS))

    params: dict[str, Any] = {
        "memories": size,
        "passages": passages,
        "users": len(users),
        "requests": requests,
        "rounds": "on, off, off, on",
        "timed": "HTTP request to response, query embedded inside",
        "buffer": f"{settings.audit_buffer} entries, flushed every {settings.audit_flush_ms} ms",
    }
    concurrent = {**params, "clients": CLIENTS, "seconds": SUSTAINED_S}
    lost = {"searches answered with the trail on": answered, "entries on the topic": recorded}
    in_process = {"entries": ctx.scaled(IN_PROCESS), "subjects": 200, "batch": "<= 500"}
    return [
        ctx.figure("search p50, audit on", percentile(timings["on"], 50), "ms", params=params),
        ctx.figure("search p50, audit off", percentile(timings["off"], 50), "ms", params=params),
        ctx.figure("search p95, audit on", percentile(timings["on"], 95), "ms", params=params),
        ctx.figure("search p95, audit off", percentile(timings["off"], 95), "ms", params=params),
        ctx.figure("sustained search, audit on", sustained["on"], "req/s", params=concurrent),
        ctx.figure("sustained search, audit off", sustained["off"], "req/s", params=concurrent),
        ctx.figure("audit entries lost at shutdown", answered - recorded, "entries", params=lost),
        ctx.figure("record, per entry (in process)", per_entry_us, "us", params=in_process),
        ctx.figure("background appends", appended_per_s, "entries/s", params=in_process),
    ]


async def _in_process(settings: Settings, count: int) -> tuple[float, float]:
    """Microseconds a request spends in `record`, and entries/s the background appends."""
    topic = Topics(settings.topic_prefix).audit
    before = len(await read_topic(settings, topic))
    subjects = [f"{TENANT}/+1415555{i:04d}" for i in range(200)]
    # The pseudonym's key, as a service has it (then this process's codec as it was).
    with personal_data_codec(settings):
        async with EventLog(settings) as log:
            trail = AuditTrail(log, capacity=count)
            await trail.start()
            in_record = 0.0
            began = time.perf_counter()
            for i in range(count):
                at = time.perf_counter()
                await trail.record(
                    READ,
                    TENANT,
                    subjects[i % 200],
                    key_id="bench",
                    route="POST /v1/memories/search",
                )
                in_record += time.perf_counter() - at
                if i % 100 == 99:
                    await asyncio.sleep(0)  # requests come over time: the flusher runs between
            await trail.close(timeout=120)
            elapsed = time.perf_counter() - began
    appended = len(await read_topic(settings, topic)) - before
    if appended != count:
        raise RuntimeError(f"{count - appended} of {count} audit entries were not appended")
    return in_record / count * 1e6, count / elapsed


async def _sustained(
    base: str, token: str, users: list[str], rnd: random.Random, seconds: float
) -> tuple[int, float]:
    """Searches CLIENTS concurrent clients had answered in about ``seconds``, and the
    seconds it took."""
    headers = {"Authorization": f"Bearer {token}"}
    done = 0
    deadline = time.monotonic() + seconds

    async def client_loop() -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
            while time.monotonic() < deadline:
                response = await client.post("/v1/memories/search", json=search_body(users, rnd))
                response.raise_for_status()
                done += 1

    began = time.monotonic()
    await asyncio.gather(*(client_loop() for _ in range(CLIENTS)))
    return done, time.monotonic() - began
