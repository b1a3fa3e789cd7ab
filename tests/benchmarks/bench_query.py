"""Query service: memory-search latency and throughput, briefing latency, HNSW recall.

The tenant's read models are loaded directly (``COPY`` into the live versions of the
memories, embeddings and conversations read models; this benchmark measures reads, and
the projections' own rebuild speed is bench_memories'), growing through 10,000, 100,000
and 1,000,000 memories. Users hold 10-2,000 memories each (heavy-tailed, as in
bench_memories). Memory texts come from a bank of realistic sentences (facts,
preferences, plans, problems, habits, events, each with varied slots) embedded by the
real local model; each memory's vector is its sentence's plus small noise (cosine about
0.95), so near-duplicates and links exist as in real data. The model's HNSW index is
built the way the embeddings projection builds it (``caught_up``).

At each size, against `memstream query` running as its own process (HTTP, API key):

- *search latency*: 300 sequential ``POST /v1/memories/search`` for random users and
  questions; the local model embeds each question inside the timed request;
- *sustained search*: 8 concurrent clients for 15 s, requests/s;
- *briefing latency*: 300 sequential ``GET /v1/users/{user}/briefing``;
- *recall@10 of the HNSW index*: 200 questions (50 at a million) searched tenant-wide
  through the HNSW index (the planner's choice for an unfiltered ORDER BY ... LIMIT) against exact
  search (index scans off) on the same rows. A per-user search itself is exact: the
  planner scans the user's own vectors through ``embeddings_by_subject`` (see
  docs/query.md), so its recall is 1 by construction.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from psycopg import AsyncConnection, sql

from projections.conversations import ConversationsProjection
from projections.embeddings.local import LocalEmbedder
from projections.embeddings.projection import EmbeddingsProjection, hnsw_index_name
from projections.memories import MemoriesProjection
from projections.memories.projection import DECAY_PER_DAY
from services import tenants
from streams import versions
from streams.projection import version_schema
from streams.settings import Settings
from tests.benchmarks.bench_memories import _memories_per_user
from tests.benchmarks.harness import BenchmarkContext, Figure, at_least, at_most, percentile
from tests.helpers import BASE_TIME, closed_port

logger = logging.getLogger(__name__)

TENANT = "bench"
SIZES = (10_000, 100_000, 1_000_000)
REQUESTS = 300
CONCURRENCY = 8
SUSTAIN_S = 15.0
RECALL_QUERIES = 200
# An exact search scans every vector: at a million, 50 questions keep it to minutes.
RECALL_QUERIES_LARGE = 50
NOISE = 0.012  # per dimension: |noise| ~ 0.23, cosine to the sentence ~ 0.97
SEARCH_P95_TARGETS = {100_000: 20.0, 1_000_000: 60.0}
BRIEFING_P95_TARGET = 5.0
RECALL_TARGET = 0.95

_FACTS: list[tuple[Any, ...]] = [
    ("Lives in {}", ["Leeds", "Manchester", "Austin", "Denver", "Lyon", "Porto", "Osaka"]),
    ("Works as a {}", ["nurse", "teacher", "plumber", "software engineer", "chef", "pilot"]),
    ("Has a {} named {}", ["dog", "cat", "parrot"], ["Biscuit", "Max", "Luna", "Pepper"]),
    ("Allergic to {}", ["penicillin", "peanuts", "latex", "shellfish", "pollen"]),
    ("Prefers {} appointments", ["morning", "afternoon", "evening", "weekend"]),
    ("Prefers to be contacted by {}", ["email", "text message", "phone"]),
    ("Likes {} food", ["Italian", "Thai", "Mexican", "Japanese", "Indian"]),
    (
        "Plans to {} next {}",
        ["move house", "travel to Spain", "start a new job", "renovate the kitchen"],
        ["month", "week", "spring"],
    ),
    (
        "Has trouble with {}",
        [
            "the billing portal",
            "the mobile app",
            "a late delivery",
            "a broken heater",
            "their insurance claim",
        ],
    ),
    (
        "Feels {} about {}",
        ["anxious", "excited", "frustrated"],
        ["the surgery", "the move", "the new job", "the refund"],
    ),
    ("Goes {} every {}", ["running", "swimming", "to the gym"], ["morning", "weekend"]),
    (
        "Booked a {} for {}",
        ["dentist appointment", "boiler service", "car repair"],
        ["Tuesday", "Friday", "the 14th", "next Monday"],
    ),
    ("Daughter {} is {} years old", ["Emma", "Sofia", "Mia"], ["4", "9", "15"]),
    ("Drives a {}", ["Toyota Corolla", "Ford Focus", "Tesla Model 3", "bicycle"]),
]
_QUESTIONS = [
    "where does the caller live",
    "what pets do they have",
    "any allergies",
    "when do they like appointments",
    "how should we contact them",
    "what food do they like",
    "what are they planning",
    "what problems did they report",
    "how are they feeling",
    "what exercise do they do",
    "what did they book",
    "tell me about their family",
    "what car do they drive",
    "what is their job",
]


def _bank() -> list[tuple[str, str, str]]:
    """Every sentence of the templates: (content, sector, kind)."""
    sectors = {
        "Feels": ("emotional", "feeling"),
        "Booked": ("episodic", "event"),
        "Goes": ("procedural", "habit"),
        "Plans": ("episodic", "plan"),
        "Prefers": ("semantic", "preference"),
        "Likes": ("semantic", "preference"),
        "Has trouble": ("episodic", "problem"),
    }
    out = []
    for template, *slots in _FACTS:
        assert isinstance(template, str)
        sector, kind = next(
            (v for k, v in sectors.items() if template.startswith(k)), ("semantic", "fact")
        )
        combos: list[tuple[str, ...]] = [()]
        for values in slots:
            combos = [(*c, v) for c in combos for v in values]
        out += [(template.format(*c), sector, kind) for c in combos]
    return out


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    sizes = [ctx.scaled(n) for n in SIZES]
    limit = os.environ.get("MEMSTREAM_BENCH_QUERY_MAX")
    if limit:
        sizes = [n for n in sizes if n <= int(limit)]
    embedder = LocalEmbedder()
    bank = _bank()
    bank_vectors = np.asarray(embedder.embed([text for text, _, _ in bank]), dtype=np.float32)
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as db:
        await tenants.create_tenant(db, TENANT, "Bench", default_region="US")
        token = (await tenants.issue_api_key(db, TENANT)).token
        for projection in (MemoriesProjection(), EmbeddingsProjection(), ConversationsProjection()):
            await versions.register(db, projection, 1)
    rng = np.random.default_rng(7)
    users: list[str] = []
    loaded = 0
    figures: list[Figure] = []
    for size in sizes:
        began = time.perf_counter()
        async with await AsyncConnection.connect(settings.require_database()) as conn:
            # Loading into a maintained HNSW index is the slow path the projection avoids
            # too: drop it, load, build it again (as a rebuild does).
            await _drop_index(conn)
            users += await _load(conn, rng, bank, bank_vectors, size - loaded, len(users))
            await _build_index(conn)
        loaded = size
        logger.info(
            "loaded %d memories, %d users in %.0f s", size, len(users), time.perf_counter() - began
        )
        async with _query_service(settings) as base:
            figures += await _measure(ctx, base, token, users, size)
        figures += await _recall(ctx, settings, embedder, size)
    return figures


async def _load(
    conn: AsyncConnection[Any],
    rng: np.random.Generator,
    bank: list[tuple[str, str, str]],
    vectors: np.ndarray,
    total: int,
    first_user: int,
) -> list[str]:
    """``total`` more memories over new users, with their vectors, users and calls."""
    counts = _memories_per_user(rng, total)
    subjects = [f"{TENANT}/+1415{5_000_000 + first_user + i:07d}" for i in range(len(counts))]
    model, dimension = LocalEmbedder.name, LocalEmbedder.dimension
    memories, embeddings, users, calls = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
    buffered = 0
    for subject, count in zip(subjects, counts, strict=True):
        if buffered >= _COPY_CHUNK:  # bounded memory at a million rows
            await _flush(conn, memories, embeddings, users, calls)
            memories, embeddings, users, calls = (io.StringIO() for _ in range(4))
            buffered = 0
        buffered += count
        picks = rng.integers(0, len(bank), count)
        noisy = vectors[picks] + rng.normal(0, NOISE, (count, vectors.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        days = rng.uniform(0, 365, count)
        for pick, vector, day in zip(picks, noisy, days, strict=True):
            content, sector, kind = bank[pick]
            memory_id = uuid.uuid4()
            at = (BASE_TIME + timedelta(days=float(day))).isoformat()
            salience = round(float(rng.uniform(0.3, 0.95)), 3)
            memories.write(
                f"{TENANT}\t{memory_id}\t{subject}\t{content}\t{sector}\t{salience}\t"
                f"{DECAY_PER_DAY[sector]}\tactive\t{kind}\textracted\trules\t1\tconv\t"
                f'[{{"conversation_id": "conv", "turns": [1]}}]\t0\t{at}\t{at}\t{at}\t{at[:10]}\n'
            )
            text = "[" + ",".join(f"{x:.6f}" for x in vector) + "]"
            embeddings.write(
                f"{TENANT}\t{memory_id}\t{model}\t{subject}\t{dimension}\t{text}\t{at}\n"
            )
        last = (BASE_TIME + timedelta(days=365)).isoformat()
        phone = subject[len(TENANT) + 1 :]
        users.write(
            f"{TENANT}\t{subject}\t\\N\t{phone}\tCaller {subject[-4:]}\t"
            f"{BASE_TIME.isoformat()}\t{last}\t3\n"
        )
        for c in range(3):
            at = (BASE_TIME + timedelta(days=120 * c + 1)).isoformat()
            calls.write(
                f"{TENANT}\t{subject}-call-{c}\t{subject}\tvapi\tended\t{at}\t{at}\t"
                f"Called about an appointment ({c}).\t{at}\n"
            )
    await _flush(conn, memories, embeddings, users, calls)
    for projection, table in _TABLES:
        target = sql.Identifier(version_schema(projection, 1), table)
        await conn.execute(sql.SQL("ANALYZE {}").format(target))
    await conn.commit()
    return [s[len(TENANT) + 1 :] for s in subjects]


_TABLES = (
    ("memories", "memories"),
    ("embeddings", "embeddings"),
    ("conversations", "users"),
    ("conversations", "conversations"),
)
_COPY_CHUNK = 50_000


async def _flush(
    conn: AsyncConnection[Any],
    memories: io.StringIO,
    embeddings: io.StringIO,
    users: io.StringIO,
    calls: io.StringIO,
) -> None:
    await _copy(
        conn,
        "memories",
        "memories",
        "tenant, memory_id, subject, content, sector, salience, decay_rate, state, kind,"
        " origin, extractor, extractor_version, conversation_id, provenance,"
        " reinforcement_count, observed_at, last_seen_at, updated_at, observed_on",
        memories,
    )
    await _copy(
        conn,
        "embeddings",
        "embeddings",
        "tenant, memory_id, model, subject, dimension, embedding, observed_at",
        embeddings,
    )
    await _copy(
        conn,
        "conversations",
        "users",
        "tenant, subject, user_id, phone, display_name, first_seen, last_seen, conversation_count",
        users,
    )
    await _copy(
        conn,
        "conversations",
        "conversations",
        "tenant, conversation_id, subject, platform, status, started_at, ended_at,"
        " summary, updated_at",
        calls,
    )


async def _copy(
    conn: AsyncConnection[Any], projection: str, table: str, columns: str, rows: io.StringIO
) -> None:
    target = sql.Identifier(version_schema(projection, 1), table)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(columns))
    async with conn.cursor().copy(statement) as copy:
        await copy.write(rows.getvalue())


async def _drop_index(conn: AsyncConnection[Any]) -> None:
    name = hnsw_index_name(LocalEmbedder.name, LocalEmbedder.dimension)
    schema = version_schema(EmbeddingsProjection.name, 1)
    await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, name)))
    await conn.commit()


async def _build_index(conn: AsyncConnection[Any]) -> None:
    """The model's HNSW index, by the embeddings projection's own code path."""
    schema = version_schema(EmbeddingsProjection.name, 1)
    async with conn.transaction():
        await conn.execute(
            sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
        )
        await EmbeddingsProjection().caught_up(conn)


@asynccontextmanager
async def _query_service(settings: Settings) -> AsyncIterator[str]:
    """`memstream query` on a free port, ready; SIGTERM after."""
    port = closed_port()
    env = {
        **os.environ,
        **settings.to_env(),
        "MEMSTREAM_QUERY_PORT": str(port),
        "MEMSTREAM_METRICS_PORT": "0",
        "MEMSTREAM_LOG_LEVEL": "WARNING",
        # One key sends everything here: no rate limit in the way.
        "MEMSTREAM_QUERY_RATE_LIMIT": "100000",
        "MEMSTREAM_QUERY_RATE_BURST": "100000",
    }
    with tempfile.TemporaryDirectory(prefix="bench-query-") as scratch:
        log = Path(scratch) / "query.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli", "query", env=env, stdout=out, stderr=out
            )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                for _ in range(600):
                    if process.returncode is not None:
                        raise RuntimeError(f"memstream query exited: {log.read_text()[-2000:]}")
                    try:
                        if (await client.get("/health/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def _measure(
    ctx: BenchmarkContext, base: str, token: str, users: list[str], size: int
) -> list[Figure]:
    rnd = random.Random(size)
    headers = {"Authorization": f"Bearer {token}"}
    params: dict[str, Any] = {
        "memories": size,
        "users": len(users),
        "limit": 10,
        "timed": "HTTP request to response, query embedded inside",
    }

    def search_body() -> dict[str, Any]:
        return {"user": rnd.choice(users), "query": rnd.choice(_QUESTIONS), "limit": 10}

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(20):  # warm the pool, the model, the caches
            (await client.post("/v1/memories/search", json=search_body())).raise_for_status()
        search_ms = []
        for _ in range(REQUESTS):
            began = time.perf_counter()
            response = await client.post("/v1/memories/search", json=search_body())
            search_ms.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
        briefing_ms = []
        for _ in range(REQUESTS):
            began = time.perf_counter()
            response = await client.get(f"/v1/users/{rnd.choice(users)}/briefing")
            briefing_ms.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
        done = 0
        deadline = time.perf_counter() + SUSTAIN_S

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                (await client.post("/v1/memories/search", json=search_body())).raise_for_status()
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        rate = done / (time.perf_counter() - began)
    label = f"{size:,}"
    target = SEARCH_P95_TARGETS.get(size)
    return [
        ctx.figure(
            f"search p50 @ {label}", percentile(sorted(search_ms), 50), "ms", None, params=params
        ),
        ctx.figure(
            f"search p95 @ {label}",
            percentile(sorted(search_ms), 95),
            "ms",
            at_most(target) if target else None,
            params=params,
        ),
        ctx.figure(
            f"search sustained @ {label}",
            rate,
            "req/s",
            None,
            params={**params, "concurrency": CONCURRENCY, "seconds": SUSTAIN_S},
        ),
        ctx.figure(
            f"briefing p95 @ {label}",
            percentile(sorted(briefing_ms), 95),
            "ms",
            at_most(BRIEFING_P95_TARGET),
            params={**params, "timed": "HTTP request to response"},
        ),
    ]


async def _recall(
    ctx: BenchmarkContext, settings: Settings, embedder: LocalEmbedder, size: int
) -> list[Figure]:
    rnd = random.Random(size + 1)
    questions = [
        rnd.choice(_QUESTIONS) + " " + rnd.choice(_bank())[0]
        for _ in range(RECALL_QUERIES if size <= 100_000 else RECALL_QUERIES_LARGE)
    ]
    vectors = embedder.embed(questions)
    model, dimension = LocalEmbedder.name, LocalEmbedder.dimension
    query = sql.SQL(
        "SELECT memory_id FROM embeddings.embeddings WHERE model = {model}"
        " ORDER BY embedding::vector({d}) <=> %s::vector({d}) LIMIT 10"
    ).format(model=sql.Literal(model), d=sql.Literal(dimension))
    hits = 0
    async with await AsyncConnection.connect(settings.require_database()) as conn:
        plan = await (
            await conn.execute(
                sql.SQL("EXPLAIN ") + query, ["[" + ",".join(map(str, vectors[0])) + "]"]
            )
        ).fetchall()
        uses_hnsw = any("hnsw" in str(row[0]) for row in plan)
        for vector in vectors:
            text = "[" + ",".join(map(str, vector)) + "]"
            approximate = {r[0] for r in await (await conn.execute(query, [text])).fetchall()}
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off")
                exact = {r[0] for r in await (await conn.execute(query, [text])).fetchall()}
            hits += len(approximate & exact)
        await conn.rollback()
    recall = hits / (10 * len(vectors))
    return [
        ctx.figure(
            f"HNSW recall@10 @ {size:,}",
            recall,
            "",
            at_least(RECALL_TARGET),
            params={
                "queries": len(vectors),
                "planner_uses_hnsw": uses_hnsw,
                "ef_search": "40 (pgvector default)",
                "compared_with": "exact search, index scans off",
            },
        ),
    ]
