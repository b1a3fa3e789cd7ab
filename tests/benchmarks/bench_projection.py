"""The conversations projection catching up on a backlog, and a runner restarting.

- **catch-up**: 100,000 events (50,000 calls: `conversation.started` + `conversation.ended`
  with 6-10 turns, 10,000 callers, 6 partitions) are appended before any clock starts,
  and the process lets go of them. Then one `ProjectionRunner(ConversationsProjection(),
  settings)` starts from an empty read model. Throughput is events divided by the time
  from the first partition assignment until every partition's checkpoint (committed with
  its batch) reached the log end; the runner's positions are polled every 10 ms, and the
  database is checked afterwards (`streams.versions.lag` is 0, every call is a row).
- **restart**: the runner is stopped (it leaves the group), one more event is appended,
  and a fresh runner is constructed and started in the same process; the figure is the
  time from construction until that event's conversation is readable through the view
  `conversations.conversations`, and until the first partition assignment. The local
  broker runs with `group.initial.rebalance.delay.ms=0`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import REGISTRY
from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from schemas import ConversationStarted
from services.settings import Settings
from streams import versions
from streams.producer import EventLog
from streams.runtime import ProjectionRunner, tune_gc_for_projecting
from streams.topics import ensure_topics
from tests.benchmarks.harness import BenchmarkContext, Figure, at_least
from tests.benchmarks.workload import MIX, realistic_events
from tests.helpers import call_events

logger = logging.getLogger(__name__)

BACKLOG_EVENTS = 100_000
APPEND_CHUNK = 5_000
RESTARTS = 3
THROUGHPUT_TARGET = 20_000.0
POLL_SECONDS = 0.01
TIMEOUT_SECONDS = 600.0

Partition = tuple[str, int]


async def run(ctx: BenchmarkContext) -> list[Figure]:
    await ensure_topics(ctx.settings)
    total = ctx.scaled(BACKLOG_EVENTS)
    ends, calls = await _append_backlog(ctx.settings, total)
    # A projector process does not hold the backlog in memory: without this the
    # garbage collector would keep walking 100,000s of live objects while we time.
    gc.collect()
    logger.info("backlog of %d events appended; projecting", total)

    figures, runner, task = await _catch_up(ctx, total, calls, ends)
    return [*figures, *await _restarts(ctx, runner, task)]


async def _append_backlog(settings: Settings, total: int) -> tuple[dict[Partition, int], int]:
    """Append the backlog; return the log end per partition and the number of calls."""
    events = realistic_events(total)
    calls = sum(isinstance(e, ConversationStarted) for e in events)
    ends: dict[Partition, int] = {}
    async with EventLog(settings, linger_ms=5) as log:
        for start in range(0, total, APPEND_CHUNK):
            for p in await log.append_many(events[start : start + APPEND_CHUNK]):
                key = (p.topic, p.partition)
                ends[key] = max(ends.get(key, 0), p.offset + 1)
    return ends, calls


def _batch_stats(
    projection: str = ConversationsProjection.name, version: int = 1
) -> tuple[float, float]:
    """(batches, seconds) the runtime has spent committing batches of a projection version
    (this benchmark's by default)."""
    labels = {"projection": projection, "version": str(version)}
    count = REGISTRY.get_sample_value("memstream_projection_batch_seconds_count", labels)
    total = REGISTRY.get_sample_value("memstream_projection_batch_seconds_sum", labels)
    return count or 0.0, total or 0.0


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> float:
    """Poll `condition()` until it holds; return the perf_counter time it held."""
    deadline = time.perf_counter() + TIMEOUT_SECONDS
    while not await condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} not reached within {TIMEOUT_SECONDS:.0f} s")
        await asyncio.sleep(POLL_SECONDS)
    return time.perf_counter()


async def _catch_up(
    ctx: BenchmarkContext, total: int, calls: int, ends: dict[Partition, int]
) -> tuple[list[Figure], ProjectionRunner, asyncio.Task[None]]:
    settings = ctx.settings
    projection = ConversationsProjection()
    batches_before, busy_before = _batch_stats()
    began = time.perf_counter()
    runner = ProjectionRunner(projection, settings)
    await runner.start()
    # As `memstream run` / `memstream projections run` configure their process.
    tune_gc_for_projecting()
    task = asyncio.create_task(runner.run())

    async def assigned() -> bool:
        return bool(runner.positions) or task.done()

    async def caught_up() -> bool:
        done = all(runner.positions.get(tp, -1) >= end for tp, end in ends.items())
        return done or task.done()

    first_assignment = await _until(assigned, "first assignment")
    finished = await _until(caught_up, "catch-up")
    if task.done():
        await task  # raises what stopped the runner
        raise RuntimeError("the runner stopped before catching up")
    batches_after, busy_after = _batch_stats()
    seconds = finished - first_assignment
    logger.info("caught up: %.0f events/s", total / seconds)

    # Untimed: the database agrees, and the read model holds every call.
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as conn:
        behind = sum((await versions.lag(settings, conn, projection, 1)).values())
        cursor = await conn.execute("SELECT count(*) FROM conversations.conversations")
        row = await cursor.fetchone()
        rows = int(row[0]) if row else 0
    if behind or rows != calls:
        raise RuntimeError(f"not caught up: lag {behind}, {rows} of {calls} conversations")

    batches = int(batches_after - batches_before)
    params: dict[str, Any] = {
        "events": total,
        "calls": calls,
        "mix": MIX,
        "partitions": settings.partitions,
        "batch_max_records": settings.batch_max_records,
        "batches": batches,
        "seconds": round(seconds, 2),
        "seconds_inside_batches": round(busy_after - busy_before, 2),
        "timed": "first assignment until every checkpoint is at the log end",
    }
    figures = [
        ctx.figure(
            "catch-up throughput", total / seconds, "events/s", at_least(THROUGHPUT_TARGET),
            params=params,
        ),
        ctx.figure(
            "catch-up, construction to caught up", finished - began, "s",
            params={"events": total, "timed": "ProjectionRunner() + start() (tables, topics, "
                    "group join) until every checkpoint is at the log end"},
        ),
        ctx.figure(
            "cold start, construction to first assignment", first_assignment - began, "s",
            params={"timed": "ProjectionRunner() + start() on an empty read model until the "
                    "first partitions are assigned and seeked"},
        ),
    ]  # fmt: skip
    return figures, runner, task


async def _restarts(
    ctx: BenchmarkContext, runner: ProjectionRunner, task: asyncio.Task[None]
) -> list[Figure]:
    settings = ctx.settings
    resumed: list[float] = []
    assigned: list[float] = []
    async with (
        EventLog(settings) as log,
        await AsyncConnection.connect(settings.require_database(), autocommit=True) as conn,
    ):
        for attempt in range(RESTARTS):
            runner.stop()
            await task
            event = call_events(f"restart{attempt}", 1)[0]
            assert isinstance(event, ConversationStarted)
            await log.append(event)

            began = time.perf_counter()
            runner = ProjectionRunner(ConversationsProjection(), settings)
            await runner.start()
            task = asyncio.create_task(runner.run())
            first_assignment: float | None = None
            deadline = began + TIMEOUT_SECONDS
            while not await _projected(conn, event):
                if first_assignment is None and runner.positions:
                    first_assignment = time.perf_counter()
                if task.done() or time.perf_counter() > deadline:
                    runner.stop()
                    await task
                    raise RuntimeError("the restarted runner did not project the new event")
                await asyncio.sleep(POLL_SECONDS)
            visible = time.perf_counter()
            resumed.append(visible - began)
            assigned.append((first_assignment or visible) - began)
            logger.info("restart %d: resumed in %.3f s", attempt + 1, resumed[-1])
        runner.stop()
        await task

    params: dict[str, Any] = {
        "restarts": RESTARTS,
        "samples_s": [round(s, 3) for s in resumed],
        "previous_runner": "stopped gracefully (left the group)",
        "timed": "ProjectionRunner() + start() until the new event is readable in "
        "conversations.conversations",
    }
    return [
        ctx.figure("restart, until the new event is projected (median)",
                   statistics.median(resumed), "s", params=params),
        ctx.figure("restart, until the new event is projected (max)",
                   max(resumed), "s", params=params),
        ctx.figure(
            "restart, construction to first assignment (median)", statistics.median(assigned), "s",
            params={"restarts": RESTARTS, "samples_s": [round(s, 3) for s in assigned],
                    "timed": "ProjectionRunner() + start() until the first partitions are "
                    "assigned and seeked"},
        ),
    ]  # fmt: skip


async def _projected(conn: AsyncConnection[Any], event: ConversationStarted) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM conversations.conversations WHERE tenant = %s AND conversation_id = %s",
        [event.tenant, event.data.conversation_id],
    )
    return await cursor.fetchone() is not None
