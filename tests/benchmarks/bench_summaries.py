"""Summaries: the summariser processor and the summaries read model catching up on a log.

- **summariser catch-up**: the memories benchmark's 100,000 memory events (70%
  `memory.extracted`, 20% `memory.reinforced`, 10% `memory.superseded`, 6 partitions; 14,000
  users have memories, each user's events spread over the whole log) are appended before
  any clock starts. Then one `ProjectionRunner(SummaryProcessor(debounce=0))` starts from
  empty state: every batch that changes a user emits their profile (the most profiles the
  debounce can let through; here the user's events fall in different batches, so nearly
  one profile per event), built by the extractive summariser from the user's active
  memories and appended (acks=all) inside the batch's transaction. Throughput is memory
  events per second, timed from the first partition assignment until every partition is at
  the log end; the profiles appended are counted.
- **summaries rebuild**: the `summary.generated` events that run appended are projected
  by a fresh `ProjectionRunner(SummariesProjection())`; throughput is summary events per
  second, timed the same way, and the read model must then hold one profile per user the
  processor profiled.
"""

from __future__ import annotations

import gc
import logging
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from projections.summaries import SummariesProjection, SummaryProcessor
from schemas import MemoryExtracted
from streams.offsets import log_extent
from streams.topics import MEMORIES, SUMMARIES, Topics, ensure_topics
from tests.benchmarks.bench_memories import _append, _catch_up, _memory_events
from tests.benchmarks.harness import BenchmarkContext, Figure

logger = logging.getLogger(__name__)

MEMORY_EVENTS = 100_000


async def run(ctx: BenchmarkContext) -> list[Figure]:
    await ensure_topics(ctx.settings)
    settings = ctx.settings
    events = _memory_events(ctx.scaled(MEMORY_EVENTS))
    total = len(events)
    users = len({e.subject for e in events if isinstance(e, MemoryExtracted)})
    ends = await _append(settings, events)
    ends = {tp: end for tp, end in ends.items() if tp[0].endswith(f".{MEMORIES}")}
    events.clear()
    gc.collect()

    seconds, _ = await _catch_up(settings, SummaryProcessor(debounce=timedelta(0)), ends)
    summaries_topic = Topics(settings.topic_prefix).name(SUMMARIES)
    extent = await log_extent(settings.require_kafka(), [summaries_topic])
    profiles = sum(end - start for start, end in extent.values())
    logger.info("summariser: %.0f memory events/s, %d profiles", total / seconds, profiles)
    params: dict[str, Any] = {
        "events": total,
        "users": users,
        "profiles appended": profiles,
        "mix": "70% extracted, 20% reinforced, 10% superseded",
        "partitions": settings.partitions,
        "batch_max_records": settings.batch_max_records,
        "seconds": round(seconds, 2),
        "timed": "first assignment until every partition is at the log end",
    }
    figures = [
        ctx.figure("summariser catch-up (debounce 0)", total / seconds, "events/s", params=params)
    ]

    summary_ends = {tp: end for tp, (_, end) in extent.items()}
    rebuild, _ = await _catch_up(settings, SummariesProjection(), summary_ends)
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT (SELECT count(*) FROM summaries.profiles),"
            " (SELECT count(*) FROM summarizer_v1.profiles WHERE sequence > 0)"
        )
        row = await cursor.fetchone()
    # One profile row per user the processor profiled (a user whose only memories were
    # superseded before their first profile has none: nothing to say).
    if row is None or row[0] != row[1] or not row[0]:
        raise RuntimeError(f"profiles in the read model / profiled users: {row}")
    logger.info("summaries rebuild: %.0f events/s", profiles / rebuild)
    figures.append(
        ctx.figure(
            "summaries read model rebuild",
            profiles / rebuild,
            "events/s",
            params={
                "events": profiles,
                "users": users,
                "seconds": round(rebuild, 2),
                "timed": "first assignment until every partition is at the log end",
            },
        )
    )
    return figures
