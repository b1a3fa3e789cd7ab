"""Full rebuild: every read model rebuilt as a new version from a 1,000,000-event log.

The log is synthetic calls with their recorded derived events, appended (in chunks, each
chunk's event objects dropped once appended) before any clock starts. A call is, in log
order:

- `conversation.started` and `conversation.ended` (the 7 realistic transcripts of
  tests/unit/extraction_golden, rotated, 12 turns on average);
- two `memory.extracted` (as the rule-based extractor writes them), a `memory.reinforced`
  of one of the caller's earlier memories every second call of theirs, and a
  `memory.superseded` of an earlier one by this call's first memory every fifth call;
- one `embedding.computed` per extracted memory: 384 dimensions as the local model's,
  recorded as the embedder records vectors (float32 in shortest decimal form); vectors
  clustered around a few topics per caller as in bench_memories, so that links form;
- two `summary.generated`: the call's summary and the caller's new profile.

Callers have heavy-tailed numbers of calls (memories per caller between 10 and 2,000 with
density 1/k², as in bench_memories), their calls interleaved in time.

A full rebuild here is what `memstream projections rebuild NAME` does for every read
model: beside the live version 1 (registered and live, with empty tables: it serves, it
does not project), a `ProjectionRunner(version=2)` builds the read model from offset 0
into its own schema, one read model after the other, each alone (no other runner of
this benchmark on the cores). A projection's events/s is the events of the topics it
reads (all of them: the runtime decodes every record of its topics, also the types it
ignores) divided by the time from its first partition assignment until every partition
is at the log end; for embeddings also until the model's HNSW index, and for
conversations until the transcript-search index, both built once caught up, exist (until
then a query on the new version gives the same answers, slower). The total wall time
runs from the first runner's construction to the last one having caught up, indexes
included. Each version 2 is then checked against the log: one row per
call, memory, vector and conversation summary; no lag. `batches` / `seconds inside
batches` is the runtime's transaction stage (apply and commit); the rest of a
projection's time the runner waited for its fetch stage (Kafka and decoding in Python).

The processors (extraction, embedder, summarizer) are not part of a full rebuild. Their
versions re-derive events: a new one reads the log again and calls the models (the
local embedding model makes about 450 vectors a second, an LLM costs money) to append
events that the log already holds. Rebuilding a read model replays those recorded
events and calls no model: that is the point of recording them. Re-deriving is
`memstream reprocess`, a deliberate, separate operation.

The embeddings rebuild, made cheaper for this benchmark (same rows and links; the tests
compare the stored vectors with pgvector's own parse of the recorded text):

- vectors recorded as float32 in shortest decimal form: 5.1 KB an event instead of
  8.5 KB to store and fetch (decoding is barely faster: orjson reads a short number about
  as fast as a long one, 21 against 23 µs for the JSON); older events decode as before;
- no per-value finiteness loop in Python when decoding an `embedding.computed` (pydantic
  already rejects NaN and infinity): 11 µs of the about 40-55 µs the event took;
- COPY in binary format, each vector in pgvector's binary form: in Python 2.3 times
  cheaper to render than the JSON text (interleaved runs), and PostgreSQL no longer
  parses 384 numbers per vector: the COPY itself went from about 165 to 9-17 µs an event
  (20,000 and 60,000 vectors applied without Kafka, load average 5-7);
- the links insert without ON CONFLICT (each pair is inserted once, by its later
  vector): the insert-and-link statement about a fifth faster, same links.

What remains, from EXPLAIN ANALYZE of a batch of 2,000 vectors after 56,000 (one
statement, about 1 s on the loaded cores): inserting the vectors 5%, reading the
users' stored vectors (index scans) and sorting them 21%, the exact comparisons 25%
(about 500,000 pairs, 0.5 µs each), ranking 5%, inserting about 18,000 link rows 27%.
The exact search is what makes links identical on every rebuild; the HNSW build after
catch-up is parallel and suffers most from other work on the cores.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import orjson
from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from projections.embeddings.models import MODEL_NAME
from projections.embeddings.processor import float32_values
from projections.embeddings.projection import EmbeddingsProjection, hnsw_index_name
from projections.memories import MemoriesProjection
from projections.summaries import SummariesProjection
from schemas import (
    ConversationEnded,
    ConversationStarted,
    EmbeddingComputed,
    Event,
    MemoryExtracted,
    MemoryReinforced,
    MemorySuperseded,
    Source,
    SummaryGenerated,
)
from streams import versions
from streams.projection import Projection
from streams.topics import Topics, ensure_topics
from tests.benchmarks.bench_memories import (
    CONTENTS,
    EMBED_DIMENSION,
    GOLDEN,
    _append,
    _catch_up,
    _memories_per_user,
)
from tests.benchmarks.bench_projection import _batch_stats
from tests.benchmarks.harness import BenchmarkContext, Figure, at_least, at_most
from tests.helpers import BASE_TIME

logger = logging.getLogger(__name__)

EVENTS = 1_000_000
MEMORIES_PER_CALL = 2
REINFORCE_EVERY = 2  # a caller's every second call reinforces an earlier memory
SUPERSEDE_EVERY = 5  # and every fifth supersedes one
CALLS_PER_CHUNK = 2_000  # calls generated, appended and dropped at a time
PROJECTION_TARGET = 10_000.0
TOTAL_TARGET_S = 600.0
TENANT = "bench"
MODEL = MODEL_NAME
EVENTS_PER_CALL = 2 + MEMORIES_PER_CALL * 2 + 2 + 1 / REINFORCE_EVERY + 1 / SUPERSEDE_EVERY
READ_MODELS: tuple[type[Projection], ...] = (
    ConversationsProjection,
    MemoriesProjection,
    EmbeddingsProjection,
    SummariesProjection,
)

Partition = tuple[str, int]


@dataclass
class _Caller:
    """What the generator remembers of a caller: their memories and their topics."""

    subject: str
    memories: list[uuid.UUID] = field(default_factory=list)
    calls: int = 0
    centres: np.ndarray[Any, np.dtype[np.float64]] | None = None
    spread: float = 0.0


@dataclass
class _Mix:
    """Events generated, by type; and what the read models must hold afterwards."""

    by_type: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    callers: set[str] = field(default_factory=set)

    def count(self, events: list[Event]) -> None:
        for event in events:
            self.by_type[event.type] = self.by_type.get(event.type, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.by_type.values())

    def describe(self) -> str:
        return ", ".join(
            f"{n:,} {t} ({100 * n / self.total:.1f}%)" for t, n in sorted(self.by_type.items())
        )


def _log(total: int, mix: _Mix) -> Iterator[list[Event]]:
    """The log's events in order, ``CALLS_PER_CHUNK`` calls at a time, ``total`` in all
    (the last call may be cut short); counted into ``mix`` as they are made."""
    rng = np.random.default_rng(20_261_121)
    transcripts = [
        orjson.loads(path.read_bytes())["turns"]
        for path in sorted(GOLDEN.glob("*.transcript.json"))
    ]
    calls = int(total / EVENTS_PER_CALL * 1.05) + 10
    per_caller = [
        max(1, k // MEMORIES_PER_CALL) for k in _memories_per_user(rng, calls * MEMORIES_PER_CALL)
    ]
    owners = np.repeat(np.arange(len(per_caller)), per_caller)
    rng.shuffle(owners)
    callers: dict[int, _Caller] = {}
    emitted = 0
    chunk: list[Event] = []
    for i, owner in enumerate(owners.tolist()):
        caller = callers.get(owner)
        if caller is None:
            caller = callers[owner] = _Caller(f"{TENANT}/+1555{owner:07d}")
            # Topics as in bench_memories: one per 20 memories, at least 2.
            centres = rng.standard_normal(
                (max(2, per_caller[owner] * MEMORIES_PER_CALL // 20), EMBED_DIMENSION)
            )
            caller.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
            caller.spread = float(rng.uniform(0.019, 0.027))
        events = _call(i, caller, transcripts, rng)[: total - emitted]
        emitted += len(events)
        mix.count(events)
        mix.calls += 1
        mix.callers.add(caller.subject)
        chunk += events
        if emitted >= total:
            break
        if len(chunk) >= CALLS_PER_CHUNK * EVENTS_PER_CALL:
            yield chunk
            chunk = []
    if emitted < total:
        raise RuntimeError(f"the generator made {emitted} events, not {total}")
    yield chunk


def _call(i: int, caller: _Caller, transcripts: list[Any], rng: np.random.Generator) -> list[Event]:
    """Call number ``i`` of the log (the caller's ``caller.calls``-th) and what it derived."""
    n = caller.calls
    caller.calls += 1
    subject = caller.subject
    conversation_id = f"conv-{i}"
    started_at = BASE_TIME + timedelta(minutes=10 * i)
    ended_at = started_at + timedelta(minutes=5)
    platform = Source(platform="elevenlabs", event_id=conversation_id)
    started = ConversationStarted.create(
        tenant=TENANT,
        subject=subject,
        source=platform,
        occurred_at=started_at,
        correlation_id=conversation_id,
        data={
            "conversation_id": conversation_id,
            "caller_phone": subject.split("/")[1],
            "channel": "phone",
        },
    )
    ended = ConversationEnded.create(
        tenant=TENANT,
        subject=subject,
        source=platform,
        occurred_at=ended_at,
        correlation_id=conversation_id,
        data={
            "conversation_id": conversation_id,
            "started_at": started_at,
            "ended_at": ended_at,
            "status": "done",
            "turns": [
                {"role": t["role"], "text": t["text"], "offset_ms": k * 3000}
                for k, t in enumerate(transcripts[i % len(transcripts)])
            ],
        },
    )
    events: list[Event] = [started, ended]
    derived = Source(platform="memstream", event_id=str(ended.id))
    new: list[MemoryExtracted] = []
    for j in range(MEMORIES_PER_CALL):
        memory_id = uuid.UUID(bytes=rng.bytes(16), version=4)
        k = (MEMORIES_PER_CALL * i + j) % len(CONTENTS)
        new.append(
            MemoryExtracted.create(
                tenant=TENANT,
                subject=subject,
                source=derived,
                occurred_at=ended_at,
                correlation_id=conversation_id,
                causation_id=ended.id,
                data={
                    "memory_id": memory_id,
                    "content": CONTENTS[k],
                    "sector": ("semantic", "episodic", "procedural")[k % 3],
                    "salience": 0.5,
                    "kind": "fact",
                    "key": "home_city" if k == 4 else None,
                    "observed_at": ended_at,
                    "extractor": "rules",
                    "extractor_version": "1",
                    "provenance": {"conversation_id": conversation_id, "turns": [1, 2]},
                },
            )
        )
    events += new
    earlier = caller.memories
    if n % REINFORCE_EVERY == 1 and earlier:
        events.append(
            MemoryReinforced.create(
                tenant=TENANT,
                subject=subject,
                source=derived,
                occurred_at=ended_at,
                correlation_id=conversation_id,
                causation_id=ended.id,
                data={
                    "memory_id": earlier[(n * 7919) % len(earlier)],
                    "observed_at": ended_at,
                    "provenance": {"conversation_id": conversation_id, "turns": [3]},
                },
            )
        )
    if n % SUPERSEDE_EVERY == SUPERSEDE_EVERY - 1 and earlier:
        events.append(
            MemorySuperseded.create(
                tenant=TENANT,
                subject=subject,
                source=derived,
                occurred_at=ended_at,
                correlation_id=conversation_id,
                causation_id=ended.id,
                data={
                    "memory_id": earlier[(n * 104_729) % len(earlier)],
                    "superseded_by": new[0].data.memory_id,
                    "observed_at": ended_at,
                },
            )
        )
    caller.memories += [m.data.memory_id for m in new]
    last_memory_event = events[-1]
    events += _embeddings(new, caller, rng)
    events += _summaries(new, caller, ended, last_memory_event, n)
    return events


def _embeddings(
    memories: list[MemoryExtracted], caller: _Caller, rng: np.random.Generator
) -> list[Event]:
    """One recorded vector per memory, near one of the caller's topics, recorded as the
    embedder records vectors (:func:`float32_values`)."""
    assert caller.centres is not None
    centres = caller.centres[rng.integers(len(caller.centres), size=len(memories))]
    points = centres + rng.standard_normal(centres.shape) * caller.spread
    units = points / np.linalg.norm(points, axis=1, keepdims=True)
    return [
        EmbeddingComputed.create(
            id=uuid.uuid5(memory.id, MODEL),
            tenant=TENANT,
            subject=memory.subject,
            source=Source(platform="memstream", event_id=str(memory.id)),
            occurred_at=memory.occurred_at,
            correlation_id=memory.correlation_id,
            causation_id=memory.id,
            data={
                "memory_id": memory.data.memory_id,
                "model": MODEL,
                "dimension": EMBED_DIMENSION,
                "vector": vector,
            },
        )
        for memory, vector in zip(memories, float32_values(units.tolist()), strict=True)
    ]


def _summaries(
    memories: list[MemoryExtracted], caller: _Caller, ended: Event, last: Event, n: int
) -> list[Event]:
    """The call's summary and the caller's profile after it, as the extractive
    summariser writes them."""
    conversation_id = str(ended.correlation_id)
    derived = Source(platform="memstream", event_id=str(ended.id))
    strongest = caller.memories[-12:][::-1]
    return [
        SummaryGenerated.create(
            tenant=TENANT,
            subject=caller.subject,
            source=derived,
            occurred_at=ended.occurred_at,
            correlation_id=conversation_id,
            causation_id=ended.id,
            data={
                "kind": "conversation",
                "generator": "extractive",
                "generator_version": "1",
                "text": "Caller: " + "; ".join(str(m.data.content) for m in memories) + ".",
                "conversation_id": conversation_id,
                "inputs": {
                    "memory_count": len(memories),
                    "memory_ids": [m.data.memory_id for m in memories],
                    "last_event_id": ended.id,
                    "as_of": ended.occurred_at,
                },
            },
        ),
        SummaryGenerated.create(
            tenant=TENANT,
            subject=caller.subject,
            source=derived,
            occurred_at=ended.occurred_at,
            correlation_id=conversation_id,
            causation_id=last.id,
            data={
                "kind": "profile",
                "generator": "extractive",
                "generator_version": "1",
                "text": "Facts: " + "; ".join(CONTENTS[: 1 + n % len(CONTENTS)]) + ".",
                "sequence": n + 1,
                "inputs": {
                    "memory_count": len(strongest),
                    "memory_ids": strongest,
                    "last_event_id": last.id,
                    "as_of": ended.occurred_at,
                },
            },
        ),
    ]


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    await ensure_topics(settings)
    total = ctx.scaled(EVENTS)
    mix = _Mix()
    began = time.perf_counter()
    ends: dict[Partition, int] = {}
    for chunk in _log(total, mix):
        for tp, end in (await _append(settings, chunk)).items():
            ends[tp] = max(ends.get(tp, 0), end)
        chunk.clear()
    gc.collect()  # a rebuilding process does not hold the log in memory
    logger.info(
        "appended %d events in %.0f s: %s", total, time.perf_counter() - began, mix.describe()
    )

    database = settings.require_database()
    async with await AsyncConnection.connect(database, autocommit=True) as conn:
        for read_model in READ_MODELS:
            await versions.register(conn, read_model(), 1)  # the live version, serving
    topics = Topics(settings.topic_prefix)
    figures: list[Figure] = []
    common: dict[str, Any] = {"events in the log": total, "version": "2 beside a live 1"}
    rebuild_began = time.perf_counter()
    for read_model in READ_MODELS:
        projection = read_model()
        names = {topics.name(t) for t in projection.topics}
        mine = {tp: end for tp, end in ends.items() if tp[0] in names}
        events = sum(mine.values())
        settled = None
        index = ""
        if isinstance(projection, EmbeddingsProjection):
            index = "HNSW index"
            settled = _index_built(
                database, "embeddings_v2", hnsw_index_name(MODEL, EMBED_DIMENSION)
            )
        elif isinstance(projection, ConversationsProjection):
            index = "passages index"
            settled = _index_built(database, "conversations_v2", "passages_by_subject")
        batches_before, inside_before = _batch_stats(projection.name, 2)
        construct = time.perf_counter()
        seconds, settled_seconds = await _catch_up(settings, projection, mine, settled, 2)
        finished = time.perf_counter()
        batches, inside = (
            after - before
            for after, before in zip(
                _batch_stats(projection.name, 2), (batches_before, inside_before), strict=True
            )
        )
        await _check(database, projection, mix)
        logger.info(
            "%s v2: %d events in %.1f s (%.1f s with what follows catch-up): %.0f/s",
            projection.name,
            events,
            seconds,
            settled_seconds,
            events / seconds,
        )
        params = {
            **common,
            "events read": events,
            "topics": ", ".join(projection.topics),
            "seconds": round(seconds, 2),
            "construction to done": round(finished - construct, 2),
            # The transaction stage's share: the rest of the time the runner waited for
            # its fetch stage (fetching and decoding in Python) or for `caught_up`.
            "batches": int(batches),
            "seconds inside batches": round(inside, 2),
            # Other work on the 2 cores lowers the figures: the load while this one ran.
            "load average": _load(),
            "timed": "first assignment until every partition is at the log end",
        }
        figures.append(
            ctx.figure(
                f"{projection.name} rebuild",
                events / seconds,
                "events/s",
                at_least(PROJECTION_TARGET),
                params=params,
            )
        )
        if settled is not None:
            figures.append(
                ctx.figure(
                    f"{projection.name} rebuild, {index} built",
                    events / settled_seconds,
                    "events/s",
                    at_least(PROJECTION_TARGET),
                    params={
                        **params,
                        "seconds": round(settled_seconds, 2),
                        "timed": f"first assignment until at the log end and its {index}"
                        " (built once caught up) exists",
                    },
                )
            )
    wall = time.perf_counter() - rebuild_began
    logger.info("full rebuild: %.0f s", wall)
    figures.append(
        ctx.figure(
            "full rebuild wall time",
            wall,
            "s",
            at_most(TOTAL_TARGET_S),
            params={
                **common,
                "mix": mix.describe(),
                "calls": mix.calls,
                "callers": len(mix.callers),
                "read models": ", ".join(m.name for m in READ_MODELS),
                "load average": _load(),
                "timed": "first runner's construction until the last one caught up"
                " (indexes built after catch-up included), one read model after the other",
            },
        )
    )
    return figures


def _load() -> str:
    """The 1, 5 and 15-minute load averages, as `uptime` shows them."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _index_built(database: str, schema: str, index: str) -> Any:
    async def built() -> bool:
        async with await AsyncConnection.connect(database, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                [schema, index],
            )
            return await cursor.fetchone() is not None

    return built


async def _check(database: str, projection: Projection, mix: _Mix) -> None:
    """Version 2 holds what the log says: one row per call, memory, vector, summary."""
    by_type = mix.by_type
    expected = {
        "conversations": ("conversations_v2.conversations", mix.calls),
        "memories": ("memories_v2.memories", by_type.get("memory.extracted", 0)),
        "embeddings": ("embeddings_v2.embeddings", by_type.get("embedding.computed", 0)),
        "summaries": (
            "summaries_v2.conversation_summaries",
            by_type.get("summary.generated", 0) // 2,
        ),
    }
    table, rows = expected[projection.name]
    async with await AsyncConnection.connect(database, autocommit=True) as conn:
        cursor = await conn.execute(f"SELECT count(*) FROM {table}")
        row = await cursor.fetchone()
    if row is None or row[0] != rows:
        raise RuntimeError(f"{row} rows in {table}, expected {rows}")
