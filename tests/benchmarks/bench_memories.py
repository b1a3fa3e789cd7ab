"""The memory pipeline rebuilding from the log: extraction and the memories projection.

- **memories rebuild**: 100,000 memory events (70% `memory.extracted`, 20%
  `memory.reinforced`, 10% `memory.superseded`, over 20,000 users, 6 partitions) are
  appended before any clock starts. Then one `ProjectionRunner(MemoriesProjection())`
  starts from an empty read model; throughput is events divided by the time from the
  first partition assignment until every partition's position reached the log end
  (the database is checked afterwards: lag 0, every memory a row).
- **local embedding**: `LocalEmbedder` (the default local model, all-MiniLM-L6-v2 dq8 on
  onnxruntime, one session per core) embedding 2,000 spoken turns of 5-40 words
  (generated, varied lengths, about 30 tokens on average) in calls of 500, as the
  embedder processor calls it (one call per batch of records); then 200 context windows
  of 80-120 words (three turns or so).
  Target: 1,000 turns/s, what embedding every conversation turn needs. The time to load
  the model is reported too.
- **embeddings rebuild**: 100,000 `embedding.computed` events (384 dimensions) are
  appended; then `ProjectionRunner(EmbeddingsProjection())` catches up from an empty
  read model, inserting every vector and linking it (exact search: each new vector is
  compared with every earlier vector of its user; the pairs compared are counted).
  The vectors are synthetic (the rebuild calls no model; the local model makes about
  450 a second): float32 unit vectors as the embedder records them, each user's around
  a few topics (one per 20 memories) so that memories of one topic have cosines of
  about 0.78-0.88 (some linked, some not) and of different topics about 0. Memories
  per user are heavy-tailed between 10 and 2,000 (density 1/k²: most users have
  tens, a few have thousands), interleaved in time. Two figures: until every
  partition is at the log end (rows and links), and until the model's HNSW index,
  which the projection builds once caught up, exists as well.
- **extraction**: 10,000 `conversation.ended` events whose transcripts are the 7
  realistic ones of tests/unit/extraction_golden (rotated, 12 turns on average, 2,000
  callers, so a caller's later calls repeat facts: reinforcements) are appended; then
  `ProjectionRunner(ExtractionProcessor())` (the rule-based extractor) catches up,
  deciding against its facts table and appending every memory event (acks=all) inside
  its transactions. Throughput is conversations per second, timed like the rebuild;
  the memory events it appended are counted.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from psycopg import AsyncConnection

from projections.embeddings.local import LocalEmbedder
from projections.embeddings.processor import float32_values
from projections.embeddings.projection import EmbeddingsProjection, hnsw_index_name
from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection
from schemas import (
    ConversationEnded,
    EmbeddingComputed,
    Event,
    MemoryExtracted,
    MemoryReinforced,
    MemorySuperseded,
    Source,
)
from services.settings import Settings
from streams import versions
from streams.offsets import log_extent
from streams.producer import EventLog
from streams.projection import Projection
from streams.runtime import ProjectionRunner, tune_gc_for_projecting
from streams.topics import MEMORIES, Topics, ensure_topics
from tests.benchmarks.bench_projection import _until
from tests.benchmarks.harness import BenchmarkContext, Figure, at_least
from tests.helpers import BASE_TIME

logger = logging.getLogger(__name__)

MEMORY_EVENTS = 100_000
USERS = 20_000
CONVERSATIONS = 10_000
CALLERS = 2_000
APPEND_CHUNK = 5_000
EMBED_TEXTS = 2_000
EMBED_WINDOWS = 200
EMBED_CALL = 500
EMBED_TARGET = 1_000.0
EMBEDDING_EVENTS = 100_000
MEMORIES_PER_USER = (10, 2_000)
EMBED_DIMENSION = 384
REBUILD_TARGET = 10_000.0
TENANT = "bench"
GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "extraction_golden"
CONTENTS = (
    "Allergic to penicillin",
    "Prefers morning appointments",
    "Has a cleaning booked for Thursday at 2 PM",
    "Nervous about the root canal",
    "Lives in Sacramento",
    "Usually drinks three cups of coffee every morning",
    "Works as a nurse at Mercy General",
)

Partition = tuple[str, int]


async def run(ctx: BenchmarkContext) -> list[Figure]:
    await ensure_topics(ctx.settings)
    return [
        *await _memories_rebuild(ctx),
        *await _extraction(ctx),
        *_local_embedding(ctx),
        *await _embeddings_rebuild(ctx),
    ]


def _memory_events(total: int) -> list[Event]:
    events: list[Event] = []
    extracted: list[MemoryExtracted] = []
    source = Source(platform="memstream")
    for i in range(total):
        subject = f"{TENANT}/+1555{i % USERS:07d}"
        at = BASE_TIME + timedelta(minutes=i)
        kind = i % 10
        if kind < 7 or not extracted:
            memory_id = uuid.uuid4()
            memory = MemoryExtracted.create(
                id=memory_id,
                tenant=TENANT,
                subject=subject,
                source=source,
                occurred_at=at,
                data={
                    "memory_id": memory_id,
                    "content": CONTENTS[i % len(CONTENTS)],
                    "sector": ("semantic", "episodic", "procedural")[i % 3],
                    "salience": 0.5,
                    "kind": "fact",
                    "key": "home_city" if i % 7 == 4 else None,
                    "observed_at": at,
                    "extractor": "rules",
                    "extractor_version": "1",
                    "provenance": {"conversation_id": f"conv-{i}", "turns": [1, 2]},
                },
            )
            extracted.append(memory)
            event: Event = memory
        else:
            old = extracted[(i * 7919) % len(extracted)]
            if kind < 9:
                event = MemoryReinforced.create(
                    tenant=TENANT,
                    subject=old.subject,
                    source=source,
                    occurred_at=at,
                    data={
                        "memory_id": old.data.memory_id,
                        "observed_at": at,
                        "provenance": {"conversation_id": f"conv-{i}", "turns": [3]},
                    },
                )
            else:
                event = MemorySuperseded.create(
                    tenant=TENANT,
                    subject=old.subject,
                    source=source,
                    occurred_at=at,
                    data={
                        "memory_id": old.data.memory_id,
                        "superseded_by": extracted[-1].data.memory_id,
                        "observed_at": at,
                    },
                )
        events.append(event)
    return events


def _conversations(total: int) -> list[Event]:
    transcripts = [
        orjson.loads(path.read_bytes())["turns"]
        for path in sorted(GOLDEN.glob("*.transcript.json"))
    ]
    events: list[Event] = []
    for i in range(total):
        turns = transcripts[i % len(transcripts)]
        started = BASE_TIME + timedelta(hours=i)
        events.append(
            ConversationEnded.create(
                tenant=TENANT,
                subject=f"{TENANT}/+1555{i % CALLERS:07d}",
                source=Source(platform="elevenlabs", event_id=f"conv-{i}"),
                occurred_at=started + timedelta(minutes=5),
                data={
                    "conversation_id": f"conv-{i}",
                    "started_at": started,
                    "status": "done",
                    "turns": [
                        {"role": t["role"], "text": t["text"], "offset_ms": n * 3000}
                        for n, t in enumerate(turns)
                    ],
                },
            )
        )
    return events


async def _append(settings: Settings, events: list[Event]) -> dict[Partition, int]:
    ends: dict[Partition, int] = {}
    async with EventLog(settings, linger_ms=5) as log:
        for start in range(0, len(events), APPEND_CHUNK):
            for p in await log.append_many(events[start : start + APPEND_CHUNK]):
                key = (p.topic, p.partition)
                ends[key] = max(ends.get(key, 0), p.offset + 1)
    return ends


async def _catch_up(
    settings: Settings,
    projection: Projection,
    ends: dict[Partition, int],
    settled: Callable[[], Awaitable[bool]] | None = None,
    version: int = 1,
) -> tuple[float, float]:
    """Run a fresh runner of ``version`` until it is at ``ends``, then (if given) until
    ``settled()`` holds; seconds from first assignment to each (the same twice without
    ``settled``)."""
    runner = ProjectionRunner(projection, settings, version=version)
    await runner.start()
    tune_gc_for_projecting()
    task = asyncio.create_task(runner.run())
    try:

        async def assigned() -> bool:
            return bool(runner.positions) or task.done()

        async def caught_up() -> bool:
            done = all(runner.positions.get(tp, -1) >= end for tp, end in ends.items())
            return done or task.done()

        first = await _until(assigned, "first assignment")
        finished = await _until(caught_up, "catch-up")
        done = finished if settled is None else await _until(settled, "settled after catch-up")
        if task.done():
            await task
            raise RuntimeError("the runner stopped before catching up")
        return finished - first, done - first
    finally:
        runner.stop()
        await task
        async with await AsyncConnection.connect(
            settings.require_database(), autocommit=True
        ) as conn:
            behind = sum((await versions.lag(settings, conn, projection, version)).values())
        if behind:
            raise RuntimeError(f"{projection.name}: {behind} events behind after catch-up")


async def _rebuild(
    ctx: BenchmarkContext,
    projection: Projection,
    events: list[Event],
    table: str,
    rows: int,
    metric: str,
    params: dict[str, Any],
    settled: tuple[str, Callable[[], Awaitable[bool]]] | None = None,
) -> list[Figure]:
    """Append ``events``, time a fresh runner's catch-up, check ``table`` has ``rows``.

    With ``settled`` (what, condition), a second figure times the rebuild until the
    condition holds after catch-up (e.g. the index the projection builds once caught up).
    """
    total = len(events)
    ends = await _append(ctx.settings, events)
    events.clear()  # a projector process does not hold the backlog in memory
    gc.collect()
    seconds, settled_seconds = await _catch_up(
        ctx.settings, projection, ends, None if settled is None else settled[1]
    )
    async with await AsyncConnection.connect(
        ctx.settings.require_database(), autocommit=True
    ) as conn:
        cursor = await conn.execute(f"SELECT count(*) FROM {table}")
        row = await cursor.fetchone()
    if row is None or row[0] != rows:
        raise RuntimeError(f"{row} rows in {table}, expected {rows}")
    logger.info("%s rebuild: %.0f events/s", projection.name, total / seconds)
    params = {"events": total, **params, "seconds": round(seconds, 2)}
    figures = [
        ctx.figure(
            metric,
            total / seconds,
            "events/s",
            at_least(REBUILD_TARGET),
            params={**params, "timed": "first assignment until every partition is at the log end"},
        )
    ]
    if settled is not None:
        logger.info(
            "%s rebuild, %s: %.0f events/s", projection.name, settled[0], total / settled_seconds
        )
        figures.append(
            ctx.figure(
                f"{metric}, {settled[0]}",
                total / settled_seconds,
                "events/s",
                at_least(REBUILD_TARGET),
                params={
                    **params,
                    "seconds": round(settled_seconds, 2),
                    "timed": f"first assignment until at the log end and {settled[0]}",
                },
            )
        )
    return figures


async def _memories_rebuild(ctx: BenchmarkContext) -> list[Figure]:
    events = _memory_events(ctx.scaled(MEMORY_EVENTS))
    extracted = sum(isinstance(e, MemoryExtracted) for e in events)
    params: dict[str, Any] = {
        "users": USERS,
        "mix": "70% extracted, 20% reinforced, 10% superseded",
        "partitions": ctx.settings.partitions,
    }
    return await _rebuild(
        ctx, MemoriesProjection(), events, "memories.memories", extracted,
        "memories projection rebuild throughput", params,
    )  # fmt: skip


async def _extraction(ctx: BenchmarkContext) -> list[Figure]:
    total = ctx.scaled(CONVERSATIONS)
    events = _conversations(total)
    turns = sum(len(e.data.turns) for e in events if isinstance(e, ConversationEnded))
    ends = await _append(ctx.settings, events)
    ends = {tp: end for tp, end in ends.items() if tp[0].endswith(".conversations")}
    del events
    gc.collect()
    memories_topic = Topics(ctx.settings.topic_prefix).name(MEMORIES)
    before = await _records(ctx.settings, memories_topic)
    seconds, _ = await _catch_up(ctx.settings, ExtractionProcessor(), ends)
    emitted = await _records(ctx.settings, memories_topic) - before
    logger.info("extraction: %.0f conversations/s, %d memory events", total / seconds, emitted)
    params: dict[str, Any] = {
        "conversations": total,
        "turns": turns,
        "callers": CALLERS,
        "extractor": "rules 1",
        "memory_events_appended": emitted,
        "seconds": round(seconds, 2),
        "timed": "first assignment until every partition is at the log end",
    }
    return [
        ctx.figure(
            "extraction throughput (rule-based, appends included)",
            total / seconds,
            "conversations/s",
            None,
            params=params,
        )
    ]


async def _records(settings: Settings, topic: str) -> int:
    extent = await log_extent(settings.require_kafka(), [topic])
    return sum(end - start for start, end in extent.values())


def _local_embedding(ctx: BenchmarkContext) -> list[Figure]:
    began = time.perf_counter()
    embedder = LocalEmbedder()
    loaded = time.perf_counter() - began
    turns = _spoken_turns(ctx.scaled(EMBED_TEXTS), seed=1)
    windows = _context_windows(ctx.scaled(EMBED_WINDOWS), seed=2)
    embedder.embed(turns[:64])  # warm-up
    figures: list[Figure] = []
    for metric, texts, target in (
        ("local embedding throughput", turns, at_least(EMBED_TARGET)),
        ("local embedding throughput, ~100-word windows", windows, None),
    ):
        began = time.perf_counter()
        for start in range(0, len(texts), EMBED_CALL):
            embedder.embed(texts[start : start + EMBED_CALL])
        seconds = time.perf_counter() - began
        logger.info("%s: %.0f texts/s", metric, len(texts) / seconds)
        words = [len(text.split()) for text in texts]
        params: dict[str, Any] = {
            "model": embedder.name,
            "texts": len(texts),
            "words": f"{min(words)}-{max(words)}, mean {statistics.fmean(words):.1f}",
            "texts_per_call": EMBED_CALL,
            "load_seconds": round(loaded, 2),
            "seconds": round(seconds, 2),
        }
        figures.append(ctx.figure(metric, len(texts) / seconds, "texts/s", target, params=params))
    return figures


_OPENERS = ("Yeah,", "Um,", "So,", "Okay,", "Well,", "Right,", "Oh,", "Hi,", "Honestly,",
            "Actually,", "I mean,", "You know,", "Hmm,", "Sorry,", "Anyway,", "Look,")  # fmt: skip
_SUBJECTS = ("I", "my husband", "my wife", "my daughter Emma", "my son", "the doctor",
             "my mom", "the landlord", "my neighbor", "the pharmacist", "our dog Max",
             "my boss", "the nurse", "my brother", "the insurance company")  # fmt: skip
_VERBS = ("needs to reschedule", "is worried about", "forgot about", "can't make",
          "was asking about", "just booked", "keeps calling about", "wants to cancel",
          "is allergic to", "really prefers", "has been dealing with", "finally sorted out",
          "is nervous about", "paid for", "is looking forward to")  # fmt: skip
_OBJECTS = ("the appointment on Tuesday", "penicillin", "the root canal", "morning slots",
            "the bill from last month", "the new medication", "physical therapy",
            "the dental cleaning", "the flight to Denver", "the refill for metformin",
            "the lease renewal", "the surgery next week", "gluten", "text messages",
            "the birthday party on Saturday", "the blood test results", "a follow-up call",
            "the move to Sacramento", "the night shift schedule")  # fmt: skip
_TAILS = ("", "", "if that's okay", "because of work", "but I'm not totally sure yet",
          "so could you check that for me", "and I really need it sorted before Friday",
          "since the last time didn't go so well", "and she said to call back after three",
          "which is kind of stressing me out honestly", "and we already paid the deposit",
          "uh, sometime next week would be best for us",
          "and my insurance card should be on file under my maiden name")  # fmt: skip
_FILLERS = ("like", "um", "you know", "I guess", "basically", "kind of", "uh")
_QUESTIONS = ("Can you tell me when my next appointment is?",
              "Do you have anything open on Thursday afternoon?",
              "Is it possible to get a refill without coming in?",
              "What time do you close on Saturdays?",
              "Did you get the forms I faxed over this morning?",
              "How much is the copay for a regular visit?",
              "Could someone call me back on my cell instead?",
              "No, that's fine, thank you so much.",
              "Sorry, could you repeat that last part?")  # fmt: skip


def _spoken_turns(count: int, *, seed: int) -> list[str]:
    """``count`` caller turns of 5-40 words: a stock question or one to three clauses."""
    rng = random.Random(seed)
    turns: list[str] = []
    while len(turns) < count:
        if rng.random() < 0.15:
            question = rng.choice(_QUESTIONS)
            words = f"{rng.choice(_OPENERS)} {question[0].lower()}{question[1:]}".split()
        else:
            words = []
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
                clause = [rng.choice(_OPENERS), rng.choice(_SUBJECTS)]
                if rng.random() < 0.4:
                    clause.append(rng.choice(_FILLERS))
                clause += [rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_TAILS)]
                words += " ".join(clause).split()
                words[-1] += rng.choice((".", ".", "?", "!", "..."))
        if len(words) >= 5:
            turns.append(" ".join(words[:40]))
    return turns


def _context_windows(count: int, *, seed: int) -> list[str]:
    """``count`` texts of 80-120 words: consecutive turns, as a context window is."""
    rng = random.Random(seed)
    turns = _spoken_turns(4 * count, seed=seed)
    windows: list[str] = []
    for _ in range(count):
        words: list[str] = []
        target = rng.randint(80, 120)
        while len(words) < target:
            words += turns[rng.randrange(len(turns))].split()
        windows.append(" ".join(words[:target]))
    return windows


def _memories_per_user(rng: np.random.Generator, total: int) -> list[int]:
    """Memories per user for ``total`` events: heavy-tailed between 10 and 2,000
    (density proportional to 1/k², as callers go: most have tens, a few thousands)."""
    low, high = MEMORIES_PER_USER
    counts: list[int] = []
    while sum(counts) < total:
        # Inverse of the CDF of 1/k² on [low, high].
        u = rng.uniform()
        counts.append(int(1 / (1 / low - u * (1 / low - 1 / high))))
    counts[-1] -= sum(counts) - total
    if counts[-1] < low and len(counts) > 1:  # the remainder joins the previous user
        remainder = counts.pop()
        counts[-1] += remainder
    return counts


def _embedding_events(total: int) -> tuple[list[Event], list[int]]:
    """Synthetic recorded vectors (the rebuild calls no model): each user's memories lie
    around a few topics (one per 20 memories, at least 2), scattered so that two memories
    of one topic have cosines of about 0.78-0.88 (some linked, some not) and memories of
    different topics about 0. Events are interleaved across users in time, as a log is.
    Returns the events and the memories per user."""
    rng = np.random.default_rng(20_261_121)
    counts = _memories_per_user(rng, total)
    owners = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(owners)
    topics = [rng.standard_normal((max(2, k // 20), EMBED_DIMENSION)) for k in counts]
    for centres in topics:
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Two points around one unit centre, with per-coordinate spread s in d dimensions,
    # have a cosine of about 1 / (1 + d * s^2): 0.78-0.88 for this range of s.
    spread = rng.uniform(0.019, 0.027, size=len(counts))
    events: list[Event] = []
    source = Source(platform="memstream")
    for i, user in enumerate(owners.tolist()):
        centre = topics[user][rng.integers(len(topics[user]))]
        point = centre + rng.standard_normal(EMBED_DIMENSION) * spread[user]
        # float32 in shortest decimal form, as the embedder records it (pgvector stores
        # float32)
        [vector] = float32_values([(point / np.linalg.norm(point)).tolist()])
        events.append(
            EmbeddingComputed.create(
                tenant=TENANT,
                subject=f"{TENANT}/+1555{user:07d}",
                source=source,
                occurred_at=BASE_TIME + timedelta(seconds=i),
                data={
                    "memory_id": uuid.UUID(bytes=rng.bytes(16), version=4),
                    "model": "bench/clustered-384",
                    "dimension": EMBED_DIMENSION,
                    "vector": vector,
                },
            )
        )
    return events, counts


async def _embeddings_rebuild(ctx: BenchmarkContext) -> list[Figure]:
    total = ctx.scaled(EMBEDDING_EVENTS)
    events, counts = _embedding_events(total)
    params: dict[str, Any] = {
        "users": len(counts),
        "memories_per_user": f"{min(counts)}-{max(counts)}, median {statistics.median(counts)}",
        "vectors": "synthetic, clustered per user (see bench_memories)",
        "dimension": EMBED_DIMENSION,
        # Exact search: each new vector is compared with all its user's earlier ones.
        "pairs_compared": sum(k * (k - 1) // 2 for k in counts),
        "partitions": ctx.settings.partitions,
    }
    database = ctx.settings.require_database()
    index = hnsw_index_name("bench/clustered-384", EMBED_DIMENSION)

    async def indexed() -> bool:
        async with await AsyncConnection.connect(database, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = 'embeddings_v1' AND indexname = %s",
                [index],
            )
            return await cursor.fetchone() is not None

    figures = await _rebuild(
        ctx, EmbeddingsProjection(), events, "embeddings.embeddings", total,
        "embeddings projection rebuild throughput (links included)", params,
        settled=("HNSW index built", indexed),
    )  # fmt: skip
    async with await AsyncConnection.connect(database, autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM embeddings.links")
        row = await cursor.fetchone()
    links = 0 if row is None else int(row[0])
    logger.info("embeddings rebuild: %d links", links)
    return [
        ctx.figure(f.metric, f.value, f.unit, f.target, params={**f.params, "links": links})
        for f in figures
    ]
