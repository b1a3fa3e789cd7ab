"""Erasure and export of one user with 1,000 conversations (services/personal_data.py:
what ``DELETE /v1/users/{user}``, ``GET /v1/users/{user}/export`` and ``memstream users
forget|export`` run).

The log holds the user's 1,000 calls (``conversation.started`` + ``.ended``, 10 turns
each) and 2,000 ``memory.extracted`` (2 a call), beside 10,000 calls of 2,000 other callers
and 10,000 memories of theirs: the records an export's scan reads past on the user's
partitions. 6 partitions a topic (the default), personal data encrypted (each event
sealed with its caller's key). The conversations and memories read models project it
all before any clock starts; the embedder and the summariser are not run (the local
model would take most of an hour over 11,000 transcripts on this machine), so the
embeddings and summaries read models and topics are empty.

- **export**: ``Export.open`` and every chunk of ``Export.chunks``, in process (the route
  streams the same chunks over HTTP), 3 runs, the median: the whole document, and the
  log scan alone (the user's partition of each event topic and of the DLQ, keys compared,
  the user's records decoded);
- **erasure**: with both projections running, the ``user.forgotten`` appended through
  ``EventLog`` (the key destroyed first), then ``wait_purged`` until both read models are
  past it, i.e. have deleted the user's 1,000 conversations, their 10,000 turns and
  passages and their 2,000 memories.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from projections.memories import MemoriesProjection
from schemas import (
    ConversationEnded,
    ConversationStarted,
    Event,
    MemoryExtracted,
    Source,
)
from services import personal_data
from services.database import connection_pool
from services.settings import Settings
from streams import EventLog, versions
from streams.projection import Projection
from streams.runtime import ProjectionRunner
from streams.subject_keys import install_personal_codec
from streams.topics import ensure_topics
from tests.benchmarks.harness import BenchmarkContext, Figure
from tests.helpers import codec_restored

logger = logging.getLogger(__name__)

TENANT = "bench"
SUBJECT = f"{TENANT}/+15550000000"
CONVERSATIONS = 1_000
TURNS = 10
MEMORIES_PER_CALL = 2
OTHER_CALLERS = 2_000
OTHER_CALLS = 10_000
EXPORT_RUNS = 3
APPEND_CHUNK = 5_000
BASE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SOURCE = Source(platform="elevenlabs", agent_id="agent-1")


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    with codec_restored():
        install_personal_codec(settings, check=True)
        return await _run(ctx, settings)


async def _run(ctx: BenchmarkContext, settings: Settings) -> list[Figure]:
    conversations = ctx.scaled(CONVERSATIONS)
    others = ctx.scaled(OTHER_CALLS)
    events = [
        *_calls(SUBJECT, conversations, "u"),
        *[
            event
            for i in range(others)
            for event in _calls(f"{TENANT}/+1556{i % OTHER_CALLERS:07d}", 1, f"o{i}", offset=i)
        ],
    ]
    await ensure_topics(settings)
    began = time.perf_counter()
    async with EventLog(settings, linger_ms=5) as log:
        for start in range(0, len(events), APPEND_CHUNK):
            await log.append_many(events[start : start + APPEND_CHUNK])
    logger.info("appended %d events in %.1f s", len(events), time.perf_counter() - began)
    projections: list[Projection] = [ConversationsProjection(), MemoriesProjection()]
    params = {
        "conversations": conversations,
        "turns per conversation": TURNS,
        "memories": conversations * MEMORIES_PER_CALL,
        "other callers' calls": others,
        "events in the log": len(events),
        "partitions": settings.partitions,
        "encryption": "on",
    }

    pool = connection_pool(settings, min_size=1, max_size=4)
    await pool.open(wait=True, timeout=10)
    try:
        async with running(settings, projections):
            async with await AsyncConnection.connect(settings.require_database()) as db:
                for projection in projections:
                    await versions.wait_caught_up(settings, db, projection, 1, timeout=900)
            logger.info("projected in %.1f s", time.perf_counter() - began)

            totals: list[float] = []
            scans: list[float] = []
            size = 0
            export: personal_data.Export | None = None
            for _ in range(EXPORT_RUNS):
                scan_began: list[float] = []

                def scanning(done: int, total: int, marks: list[float] = scan_began) -> None:
                    if not marks:
                        marks.append(time.perf_counter())

                started = time.perf_counter()
                export = await personal_data.Export.open(pool, settings, TENANT, SUBJECT)
                assert export is not None
                size = 0
                async for chunk in export.chunks(scanning):
                    size += len(chunk)
                ended = time.perf_counter()
                totals.append(ended - started)
                scans.append(ended - scan_began[0])
            assert export is not None
            scan = export.scan
            assert scan.events == len(events) - others * (2 + MEMORIES_PER_CALL), scan

            held_at = time.perf_counter()
            async with pool.connection() as conn:
                held = await personal_data.held(conn, TENANT, SUBJECT)
            event = personal_data.erasure(TENANT, SUBJECT, requested_by="bench")
            async with EventLog(settings) as log:
                appending = time.perf_counter()
                position = (await log.append(event)).token()
                appended = time.perf_counter()
                behind = await personal_data.wait_purged(
                    pool, position, topic_prefix=settings.topic_prefix, wait_ms=600_000
                )
                purged = time.perf_counter()
            assert not behind, behind
            async with pool.connection() as conn:
                left = await personal_data.held(conn, TENANT, SUBJECT)
            assert not any(left.values()), left
    finally:
        await pool.close()

    export_params = {
        **params,
        "document bytes": size,
        "records read": scan.records_read,
        "partitions read": scan.partitions,
        "user's events exported": scan.events,
        "runs": EXPORT_RUNS,
        "timed": "Export.open + every chunk, in process (median)",
    }
    erase_params = {
        **params,
        "held": held,
        "held counted in s": round(appending - held_at, 3),
        "timed": "EventLog.append of user.forgotten (key destroyed first), then until"
        " conversations and memories are past it",
    }
    scan_seconds = statistics.median(scans)
    return [
        ctx.figure("export, whole document", statistics.median(totals), "s", params=export_params),
        ctx.figure("export, log scan", scan_seconds, "s", params=export_params),
        ctx.figure(
            "export, log scan rate",
            scan.records_read / scan_seconds,
            "records/s",
            params=export_params,
        ),
        ctx.figure(
            "erasure, append (key destroyed)",
            (appended - appending) * 1000,
            "ms",
            params=erase_params,
        ),
        ctx.figure(
            "erasure, until every read model purged", purged - appending, "s", params=erase_params
        ),
    ]


class running:
    """The projections' runners at work for the block."""

    def __init__(self, settings: Settings, projections: Sequence[Projection]) -> None:
        self._runners = [ProjectionRunner(p, settings) for p in projections]
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> None:
        for runner in self._runners:
            await runner.start()
        self._tasks = [asyncio.create_task(runner.run()) for runner in self._runners]

    async def __aexit__(self, *exc: object) -> None:
        for runner in self._runners:
            runner.stop()
        await asyncio.gather(*self._tasks)


def _calls(subject: str, count: int, prefix: str, *, offset: int = 0) -> list[Event]:
    """`count` calls of `subject` (started, ended with TURNS turns, MEMORIES_PER_CALL
    extracted memories), an hour apart from BASE (+ `offset` minutes)."""
    events: list[Event] = []
    phone = subject.partition("/")[2]
    for i in range(count):
        at = BASE + timedelta(hours=i, minutes=offset)
        conversation = f"{prefix}-{i}"
        events.append(
            ConversationStarted.create(
                tenant=TENANT,
                subject=subject,
                source=SOURCE,
                occurred_at=at,
                correlation_id=conversation,
                data={
                    "conversation_id": conversation,
                    "caller_phone": phone,
                    "channel": "phone",
                    "dynamic_variables": {"user_name": "Caller"},
                },
            )
        )
        events.append(
            ConversationEnded.create(
                tenant=TENANT,
                subject=subject,
                source=SOURCE,
                occurred_at=at + timedelta(minutes=5),
                correlation_id=conversation,
                data={
                    "conversation_id": conversation,
                    "started_at": at,
                    "ended_at": at + timedelta(minutes=5),
                    "status": "done",
                    "turns": [
                        {
                            "role": "agent" if t % 2 == 0 else "user",
                            "text": f"Turn {t} of call {i}: could we move the cleaning to"
                            f" Thursday at {9 + t % 8} in the morning, please?",
                            "offset_ms": t * 4000,
                        }
                        for t in range(TURNS)
                    ],
                    "analysis": {"summary": f"Call {i}: rescheduled a cleaning."},
                },
            )
        )
        for m in range(MEMORIES_PER_CALL):
            events.append(
                MemoryExtracted.create(
                    tenant=TENANT,
                    subject=subject,
                    source=Source(platform="memstream"),
                    occurred_at=at + timedelta(minutes=6),
                    correlation_id=conversation,
                    data={
                        "memory_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{conversation}/{m}"),
                        "content": f"Prefers Thursday mornings ({conversation}, fact {m})",
                        "sector": "semantic",
                        "salience": 0.6,
                        "kind": "preference",
                        "observed_at": at,
                        "extractor": "rules",
                        "extractor_version": "1",
                        "provenance": {"conversation_id": conversation, "turns": [1]},
                    },
                )
            )
    return events
