"""Appending to the log through `EventLog` (idempotent producer, `acks=all`).

- **single**: one `EventLog.append` at a time, sequentially, each awaited until the
  broker acknowledged it: the latency a webhook pays before it can answer. The events
  alternate `conversation.started` and `conversation.ended` (8 turns), as calls produce.
- **batched**: 100,000 pre-built events (50,000 calls: started + ended with 6-10 turns)
  through `EventLog.append_many(chunk)` with `EventLog(settings, linger_ms=5)`, for
  several chunk sizes: the throughput of a bulk import or a processor emitting events.
  Each size runs 3 times (rounds interleave the sizes); the figure is the median.

Encoding is inside the timed regions (it is part of appending); building the event
objects is not. The pre-built input is frozen out of the garbage collector's walks
(`gc.freeze`), since a real caller holds one request's events, not 100,000.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

from schemas import Event
from streams.producer import EventLog
from streams.topics import ensure_topics
from tests.benchmarks.harness import (
    BenchmarkContext,
    Figure,
    at_least,
    at_most,
    input_outside_gc,
    percentile,
)
from tests.benchmarks.workload import MIX, mean_bytes, realistic_events
from tests.helpers import call_events

logger = logging.getLogger(__name__)

SINGLE_WARMUP = 200
SINGLE_APPENDS = 2_000
BATCHED_EVENTS = 100_000
CHUNK_SIZES = (1_000, 5_000, 10_000)
ROUNDS = 3
LINGER_MS = 5
P99_TARGET_MS = 10.0
THROUGHPUT_TARGET = 20_000.0


async def run(ctx: BenchmarkContext) -> list[Figure]:
    await ensure_topics(ctx.settings)
    return [*await single_appends(ctx), *await batched_appends(ctx)]


async def single_appends(ctx: BenchmarkContext) -> list[Figure]:
    warmup, count = ctx.scaled(SINGLE_WARMUP), ctx.scaled(SINGLE_APPENDS)
    events = call_events("single", (warmup + count + 1) // 2, turns=8, users=500)
    params: dict[str, Any] = {
        "appends": count,
        "warmup": warmup,
        "producer": "EventLog(settings) defaults: acks=all, idempotent, linger_ms=0",
        "partitions": ctx.settings.partitions,
        "mean_event_bytes": mean_bytes(events),
        "timed": "each append() from call to acknowledgement, encoding included",
    }
    latencies_ms: list[float] = []
    with input_outside_gc():
        async with EventLog(ctx.settings) as log:
            # The warm-up also absorbs the new topics' leader elections.
            for event in events[:warmup]:
                await log.append(event)
            for event in events[warmup : warmup + count]:
                began = time.perf_counter()
                await log.append(event)
                latencies_ms.append((time.perf_counter() - began) * 1000)
    p50, p95, p99 = (percentile(latencies_ms, p) for p in (50, 95, 99))
    logger.info("single appends: p50 %.2f ms, p99 %.2f ms", p50, p99)
    return [
        ctx.figure("single append p50", p50, "ms", params=params),
        ctx.figure("single append p95", p95, "ms", params=params),
        ctx.figure("single append p99", p99, "ms", at_most(P99_TARGET_MS), params=params),
        ctx.figure("single append max", max(latencies_ms), "ms", params=params),
    ]


async def batched_appends(ctx: BenchmarkContext) -> list[Figure]:
    events = realistic_events(ctx.scaled(BATCHED_EVENTS))
    with input_outside_gc():
        return await _append_in_chunks(ctx, events)


async def _append_in_chunks(ctx: BenchmarkContext, events: Sequence[Event]) -> list[Figure]:
    total = len(events)
    params: dict[str, Any] = {
        "events": total,
        "producer": f"EventLog(settings, linger_ms={LINGER_MS}): acks=all, idempotent",
        "partitions": ctx.settings.partitions,
        "mean_event_bytes": mean_bytes(events[:2_000]),
        "mix": MIX,
        "timed": "encoding + send + acknowledgement of every chunk",
    }
    seconds: dict[int, list[float]] = {chunk: [] for chunk in CHUNK_SIZES}
    async with EventLog(ctx.settings, linger_ms=LINGER_MS) as log:
        await log.append_many(events[:1_000])  # warm-up: connections, metadata, leaders
        # Rounds interleave the chunk sizes, so a drift of the machine hits them alike.
        for _ in range(ROUNDS):
            for chunk in CHUNK_SIZES:
                began = time.perf_counter()
                for start in range(0, total, chunk):
                    await log.append_many(events[start : start + chunk])
                seconds[chunk].append(time.perf_counter() - began)
                logger.info("append_many(%d): %.0f events/s", chunk, total / seconds[chunk][-1])
    return [
        ctx.figure(
            f"append_many throughput, {chunk:,} per call (median)",
            total / statistics.median(samples),
            "events/s",
            at_least(THROUGHPUT_TARGET),
            params={
                **params,
                "chunk": chunk,
                "rounds": ROUNDS,
                "samples_events_per_s": [round(total / s) for s in samples],
            },
        )
        for chunk, samples in seconds.items()
    ]
