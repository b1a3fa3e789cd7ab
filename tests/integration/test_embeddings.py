"""Embeddings: memory events through the local model into pgvector, and the links graph."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np
import orjson
from psycopg import AsyncConnection

from projections.embeddings.processor import EmbeddingProcessor, float32_values
from projections.embeddings.projection import (
    LINK_THRESHOLD,
    LINKS_PER_MEMORY,
    EmbeddingsProjection,
    hnsw_index_name,
)
from schemas import (
    EmbeddingComputed,
    Event,
    MemoryExtracted,
    PassagesEmbedded,
    Source,
    UserForgotten,
    decode_event,
)
from services.settings import Settings
from streams import EventLog, ProjectionRunner, versions
from streams.dlq import decode as decode_dead_letter
from streams.projection import LogRecord, Projection, version_schema
from streams.topics import EMBEDDINGS, Topics
from tests.helpers import BASE_TIME, eventually, read_topic
from tests.integration.projection_contract import ProjectionContract, project, snapshot

TENANT = "acme"
SUBJECT = f"{TENANT}/+15550000001"
MODEL = "test/plane-8"


def memory(content: str, *, subject: str = SUBJECT, minutes: int = 0) -> MemoryExtracted:
    at = BASE_TIME + timedelta(minutes=minutes)
    memory_id = uuid.uuid4()
    return MemoryExtracted.create(
        id=memory_id,
        tenant=TENANT,
        subject=subject,
        source=Source(platform="memstream"),
        occurred_at=at,
        data={
            "memory_id": memory_id,
            "content": content,
            "sector": "semantic",
            "salience": 0.6,
            "kind": "fact",
            "observed_at": at,
            "extractor": "rules",
            "extractor_version": "1",
            "provenance": {"conversation_id": "conv-1", "turns": [1]},
        },
    )


def unit(angle_degrees: float) -> list[float]:
    """A unit vector in the first plane of 8 dimensions: cosines are known exactly."""
    a = math.radians(angle_degrees)
    return [math.cos(a), math.sin(a), 0, 0, 0, 0, 0, 0]


def embedding(
    memory_id: uuid.UUID,
    angle: float,
    *,
    subject: str = SUBJECT,
    minutes: float = 0,
    vector: list[float] | None = None,
    model: str = MODEL,
) -> EmbeddingComputed:
    values = unit(angle) if vector is None else vector
    return EmbeddingComputed.create(
        tenant=TENANT,
        subject=subject,
        source=Source(platform="memstream"),
        occurred_at=BASE_TIME + timedelta(minutes=minutes),
        data={"memory_id": memory_id, "model": model, "dimension": len(values), "vector": values},
    )


async def rows(db: Any, query: str, *params: Any) -> list[Any]:
    cursor = await db.execute(query, list(params))
    return await cursor.fetchall()


class TestEmbeddingsContract(ProjectionContract):
    projection: ClassVar[type[Projection]] = EmbeddingsProjection

    def events(self) -> list[Event]:
        ids = [uuid.uuid4() for _ in range(30)]
        others = [
            embedding(ids[i], i * 7.0, subject=f"{TENANT}/+1555000{i % 4:04d}", minutes=i)
            for i in range(30)
        ]
        forget = UserForgotten.create(
            tenant=TENANT,
            subject=f"{TENANT}/+15550000003",
            source=Source(platform="api"),
            occurred_at=BASE_TIME + timedelta(minutes=20),
            data={},
        )
        passages = [
            PassagesEmbedded.create(
                tenant=TENANT,
                subject=f"{TENANT}/+1555000{i % 4:04d}",
                source=Source(platform="memstream"),
                occurred_at=BASE_TIME + timedelta(minutes=i * 3),
                data={
                    "conversation_id": f"conv-{i}",
                    "model": MODEL,
                    "dimension": 8,
                    "window": 1,
                    "passages": [{"seq": s, "vector": unit(s * 11.0 + i)} for s in range(4)],
                },
            )
            for i in range(10)
        ]
        # In time order, as they would be appended: the erasure destroys the key of what
        # precedes it in the log, and what is dated after it comes after it.
        return sorted([*others, *passages, forget], key=lambda e: e.occurred_at)


async def test_memories_are_embedded_by_the_local_model_and_linked(
    topics: Settings, db: Any
) -> None:
    allergy = memory("Allergic to penicillin")
    same = memory("Has a penicillin allergy", minutes=1)
    city = memory("Lives in Sacramento", minutes=2)
    async with EventLog(topics) as log:
        await log.append_many([allergy, same, city, allergy])  # one redelivered
    await project(topics, EmbeddingProcessor())
    await project(topics, EmbeddingsProjection())

    topic = Topics(topics.topic_prefix).name(EMBEDDINGS)
    computed = [decode_event(r.value) for r in await read_topic(topics, topic)]
    assert {e.data.memory_id for e in computed} == {m.data.memory_id for m in (allergy, same, city)}
    assert {e.data.model for e in computed} == {"local/all-minilm-l6-v2-dq8"}
    stored = await rows(
        db, "SELECT memory_id, dimension, vector_norm(embedding) FROM embeddings.embeddings"
    )
    assert len(stored) == 3
    assert all(d == 384 and abs(norm - 1) < 1e-3 for _, d, norm in stored)

    links = await rows(db, "SELECT memory_id, linked_id, weight FROM embeddings.links")
    # The two ways of saying the allergy are linked both ways; the city with neither.
    assert sorted((a, b) for a, b, _ in links) == sorted(
        [
            (allergy.data.memory_id, same.data.memory_id),
            (same.data.memory_id, allergy.data.memory_id),
        ]
    )
    assert all(w >= LINK_THRESHOLD for *_, w in links)


async def test_links_are_symmetric_thresholded_and_at_most_five_per_new_vector(
    topics: Settings, db: Any
) -> None:
    ids = [uuid.uuid4() for _ in range(8)]
    # Angles: cos(10°)=0.98, cos(30°)=0.87, cos(40°)=0.77 (below 0.8).
    angles = [0, 10, 20, 30, 40, 5, 15, 25]
    async with EventLog(topics) as log:
        await log.append_many(
            [embedding(i, a, minutes=n) for n, (i, a) in enumerate(zip(ids, angles, strict=True))]
        )
    await project(topics, EmbeddingsProjection())

    links = {(a, b): w for a, b, w in await rows(
        db, "SELECT memory_id, linked_id, weight FROM embeddings.links"
    )}  # fmt: skip
    assert links, "close vectors must be linked"
    for (a, b), weight in links.items():
        assert links[(b, a)] == weight
        assert weight >= LINK_THRESHOLD
    by_angle = dict(zip(ids, angles, strict=True))
    for (a, b), weight in links.items():
        assert abs(weight - math.cos(math.radians(by_angle[a] - by_angle[b]))) < 1e-5
    # 40° is 10° from 30° (linked) and 40° from 0° (not linked).
    assert (ids[4], ids[3]) in links and (ids[4], ids[0]) not in links
    # The last vector (25°) came after 7 others, all within the threshold: its own
    # search links its 5 nearest (20° and 30° at 5°, 15° at 10°, 10° and 40° at 15°) and
    # not the two farthest (5° and 0°); no earlier search could have found it.
    assert sum(1 for a, _ in links if a == ids[7]) == 5
    assert (ids[7], ids[5]) not in links and (ids[7], ids[0]) not in links


async def test_rebuilding_the_vectors_calls_no_model_and_gives_identical_rows(
    topics: Settings, db: Any
) -> None:
    memories = [memory(text, minutes=i) for i, text in enumerate(
        ["Allergic to penicillin", "Has a penicillin allergy", "Lives in Sacramento",
         "Moved to Sacramento last month", "Prefers morning appointments"]
    )]  # fmt: skip
    async with EventLog(topics) as log:
        await log.append_many(memories)
    await project(topics, EmbeddingProcessor())
    await project(topics, EmbeddingsProjection())
    v1 = await snapshot(db, "embeddings_v1", EmbeddingsProjection.tables)

    # Version 2 of the read model from offset 0: the projection has no model at all;
    # it can only replay the recorded vectors.
    await project(topics, EmbeddingsProjection(), version=2)
    assert await snapshot(db, "embeddings_v2", EmbeddingsProjection.tables) == v1


async def test_vectors_are_stored_as_pgvector_parses_their_text_old_and_new_form(
    topics: Settings, db: Any
) -> None:
    """The projection copies vectors in pgvector's binary form: each stored value must be
    the float32 that pgvector's own text parser makes of the recorded text, for events
    recorded with doubles (before the embedder's float32 change) and with the shortest
    float32 text (after), and for a model's doubles that are not float32 values."""
    rng = np.random.default_rng(11)
    matrix = rng.standard_normal((60, 384))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    forms = {
        "doubles": matrix.tolist(),  # a remote model's answer, recorded as it came
        "float32 as doubles": matrix.astype(np.float32).tolist(),  # the local model, before
        "shortest float32": float32_values(matrix.tolist()),  # what the embedder records now
    }
    events = {
        form: [embedding(uuid.uuid4(), 0, vector=v, model=f"test/{i}", minutes=n)
               for n, v in enumerate(vectors)]
        for i, (form, vectors) in enumerate(forms.items())
    }  # fmt: skip
    async with EventLog(topics) as log:
        await log.append_many([e for batch in events.values() for e in batch])
    await project(topics, EmbeddingsProjection())

    for form, batch in events.items():
        for event in batch:
            recorded = orjson.dumps(event.data.vector).decode()  # the text the event carries
            [(same,)] = await rows(
                db,
                "SELECT embedding = %s::vector FROM embeddings.embeddings WHERE memory_id = %s",
                recorded,
                event.data.memory_id,
            )
            assert same, f"{form}: stored vector differs from pgvector's parse of its text"
    # Without a rounding difference between the forms there would be nothing to check.
    assert forms["doubles"] != forms["float32 as doubles"]
    assert forms["float32 as doubles"] != forms["shortest float32"]


async def test_a_vector_beyond_float32_range_is_dead_lettered_and_the_others_stored(
    topics: Settings, db: Any
) -> None:
    """1e39 is a finite double (the schema accepts it) but no float32: packing it for the
    binary COPY fails, as pgvector's parse of its text would. Only that event is set
    aside, in the DLQ with its error; the vectors around it are stored and linked."""
    settings = topics.replace(poison_retries=1)
    ids = [uuid.uuid4() for _ in range(4)]
    good = [embedding(ids[i], 10.0 * i, minutes=i) for i in (0, 1, 3)]
    huge = embedding(ids[2], 0, minutes=2, vector=[1e39, 0, 0, 0, 0, 0, 0, 0])
    async with EventLog(settings) as log:
        await log.append_many([good[0], good[1], huge, good[2]])
    await project(settings, EmbeddingsProjection())

    stored = {m for (m,) in await rows(db, "SELECT memory_id FROM embeddings.embeddings")}
    assert stored == {ids[0], ids[1], ids[3]}
    assert await rows(db, "SELECT 1 FROM embeddings.links WHERE memory_id = %s", ids[2]) == []
    assert await rows(db, "SELECT 1 FROM embeddings.links WHERE memory_id = %s", ids[1])
    dlq = Topics(settings.topic_prefix).dlq
    [letter] = [decode_dead_letter(r.value) for r in await read_topic(settings, dlq)]
    assert letter["projection"] == "embeddings" and letter["stage"] == "apply"
    assert orjson.loads(letter["payload"])["data"]["memory_id"] == str(ids[2])


# -- the set-based batch path ----------------------------------------------------------

Links = dict[tuple[uuid.UUID, uuid.UUID], float]


def clustered(seed: int, users: int, per_user: int, dims: int = 8) -> list[EmbeddingComputed]:
    """Users' vectors scattered around 3 directions each: within a direction most pairs
    are above the threshold and some below; across directions none are."""
    rng = random.Random(seed)
    centres = [[[rng.gauss(0, 1) for _ in range(dims)] for _ in range(3)] for _ in range(users)]
    events: list[EmbeddingComputed] = []
    for i in range(users * per_user):
        user = i % users
        point = [x + rng.gauss(0, 0.35) for x in rng.choice(centres[user])]
        norm = math.sqrt(sum(x * x for x in point))
        memory_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        events.append(
            embedding(
                memory_id,
                0,
                subject=f"{TENANT}/+1555{user:07d}",
                minutes=i,
                vector=[x / norm for x in point],
            )
        )
    return events


def expected_links(events: Sequence[EmbeddingComputed]) -> tuple[Links, int, int]:
    """The links rule worked out event by event in Python, independently of the SQL: each
    new vector's 5 nearest earlier vectors of its user with cosine >= 0.8, both ways.
    Also returns how many new vectors had more than 5 such candidates, and how many
    earlier vectors of their user were below the threshold."""
    stored: dict[tuple[str, str, str], list[tuple[uuid.UUID, Any]]] = {}
    seen: set[tuple[str, uuid.UUID, str]] = set()
    links: Links = {}
    crowded = below = 0
    for event in events:
        data = event.data
        if (event.tenant, data.memory_id, data.model) in seen:
            continue  # redelivered
        seen.add((event.tenant, data.memory_id, data.model))
        vector = np.asarray(data.vector, dtype=np.float32)  # as pgvector stores it
        earlier = stored.setdefault((event.tenant, event.subject, data.model), [])
        scored = []
        for other, w in earlier:
            cosine = float(np.dot(vector, w)) / math.sqrt(
                float(np.dot(vector, vector)) * float(np.dot(w, w))
            )
            if cosine >= LINK_THRESHOLD:
                scored.append((1 - cosine, other))
            else:
                below += 1
        crowded += len(scored) > LINKS_PER_MEMORY
        for distance, other in sorted(scored)[:LINKS_PER_MEMORY]:
            links[(data.memory_id, other)] = links[(other, data.memory_id)] = 1 - distance
        earlier.append((data.memory_id, vector))
    return links, crowded, below


async def stored_links(db: Any, schema: str) -> Links:
    cursor = await db.execute(f"SELECT memory_id, linked_id, weight FROM {schema}.links")
    return {(a, b): w for a, b, w in await cursor.fetchall()}


async def apply_in_batches(
    settings: Settings, version: int, batches: Sequence[Sequence[Event]], *, catch_up: bool = False
) -> None:
    """Feed the projection exactly these batches, each in its own transaction, as the
    runtime does (search_path on the version's schema); Kafka is left out so that the
    batch boundaries are exactly these."""
    projection = EmbeddingsProjection()
    schema = version_schema(projection.name, version)
    conn = await AsyncConnection.connect(
        settings.require_database(), autocommit=True, options=f"-c search_path={schema},public"
    )
    try:
        await versions.register(conn, projection, version)
        offset = 0
        for batch in batches:
            records = [LogRecord("log", 0, offset + i, 0, e) for i, e in enumerate(batch)]
            offset += len(batch)
            async with conn.transaction():
                await projection.apply(conn, projection.prepare(records))
        if catch_up:
            async with conn.transaction():
                await projection.caught_up(conn)
    finally:
        await conn.close()


async def hnsw_indexes(db: Any, schema: str) -> dict[str, str]:
    # The definitions filtered here, not with `indexdef LIKE` in SQL: that condition is
    # checked on every index of the database before the schema's, including the TOAST
    # index of a staging table that a just-closed connection's backend is still dropping
    # ("could not open relation with OID ...").
    cursor = await db.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", [schema]
    )
    return {
        name: definition
        for name, definition in await cursor.fetchall()
        if "USING hnsw" in definition
    }


async def test_links_are_the_same_whatever_the_batch_size_and_match_the_rule(
    topics: Settings, db: Any
) -> None:
    events = clustered(seed=7, users=4, per_user=24)
    expected, crowded, below = expected_links(events)
    # The data exercises both limits: some vectors had more than 5 candidates above the
    # threshold, and some pairs of a user's vectors are below it.
    assert crowded > 0 and below > 0
    async with EventLog(topics) as log:
        await log.append_many(events)
        await log.append_many(events[::5])  # redelivered: insert and link nothing

    await project(topics.replace(batch_max_records=1), EmbeddingsProjection(), version=1)
    await project(topics.replace(batch_max_records=7), EmbeddingsProjection(), version=2)
    await project(topics.replace(batch_max_records=2000), EmbeddingsProjection(), version=3)

    one_by_one = await snapshot(db, "embeddings_v1", EmbeddingsProjection.tables)
    assert len(one_by_one["embeddings"]) == len(events)
    assert await snapshot(db, "embeddings_v2", EmbeddingsProjection.tables) == one_by_one
    assert await snapshot(db, "embeddings_v3", EmbeddingsProjection.tables) == one_by_one
    links = await stored_links(db, "embeddings_v3")
    assert links.keys() == expected.keys()
    assert all(abs(links[pair] - weight) < 1e-5 for pair, weight in expected.items())
    # Once caught up, the runner has the projection build the model's HNSW index.
    runner = ProjectionRunner(EmbeddingsProjection(), topics, version=3)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(
            lambda: hnsw_indexes(db, "embeddings_v3"),
            lambda found: list(found) == [hnsw_index_name(MODEL, 8)],
        )
    finally:
        runner.stop()
        await task


async def test_a_vector_and_its_near_duplicate_in_one_batch_are_linked(
    settings: Settings, db: Any
) -> None:
    first, near, far = (uuid.uuid4() for _ in range(3))
    events = [embedding(first, 0), embedding(near, 3, minutes=1), embedding(far, 90, minutes=2)]
    await apply_in_batches(settings, 1, [events])
    await apply_in_batches(settings, 2, [[e] for e in events])

    links = await stored_links(db, "embeddings_v1")
    assert links.keys() == {(first, near), (near, first)}
    assert abs(links[(first, near)] - math.cos(math.radians(3))) < 1e-6
    assert await snapshot(db, "embeddings_v2", EmbeddingsProjection.tables) == await snapshot(
        db, "embeddings_v1", EmbeddingsProjection.tables
    )


async def test_an_erasure_inside_a_batch_applies_where_it_stands(
    settings: Settings, db: Any
) -> None:
    before, before_too, other_user, after, late, after_too = (uuid.uuid4() for _ in range(6))
    someone_else = f"{TENANT}/+15550000002"
    forget = UserForgotten.create(
        tenant=TENANT,
        subject=SUBJECT,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(minutes=10),
        data={},
    )
    batch: list[Event] = [
        embedding(before, 0, minutes=1),
        embedding(before_too, 4, minutes=2),
        embedding(other_user, 1, subject=someone_else, minutes=3),
        forget,
        embedding(after, 2, minutes=11),
        # Said before the erasure, delivered after it: dropped.
        embedding(late, 1, minutes=5),
        embedding(after_too, 6, minutes=12),
    ]
    await apply_in_batches(settings, 1, [batch])
    await apply_in_batches(settings, 2, [[e] for e in batch])

    cursor = await db.execute("SELECT memory_id FROM embeddings_v1.embeddings")
    assert {m for (m,) in await cursor.fetchall()} == {other_user, after, after_too}
    # Linked only to each other: the erased vectors were gone before they arrived.
    assert (await stored_links(db, "embeddings_v1")).keys() == {
        (after, after_too),
        (after_too, after),
    }
    rows_v1 = await snapshot(db, "embeddings_v1", EmbeddingsProjection.tables)
    assert await snapshot(db, "embeddings_v2", EmbeddingsProjection.tables) == rows_v1
    # The erasure delivered again changes nothing.
    await apply_in_batches(settings, 1, [[forget, embedding(late, 1, minutes=5)]])
    assert await snapshot(db, "embeddings_v1", EmbeddingsProjection.tables) == rows_v1


async def test_each_model_gets_its_hnsw_index_once_caught_up_not_while_loading(
    settings: Settings, db: Any
) -> None:
    events = [embedding(uuid.uuid4(), a, minutes=a) for a in range(0, 40, 4)]
    other_model = [
        embedding(uuid.uuid4(), 0, model="test/other-4", vector=[1.0, 0.1 * a, 0.0, 0.0])
        for a in range(5)
    ]
    await apply_in_batches(settings, 1, [events[:5], other_model, events[5:]])
    assert await hnsw_indexes(db, "embeddings_v1") == {}
    links_before = await stored_links(db, "embeddings_v1")

    await apply_in_batches(settings, 1, [], catch_up=True)
    indexes = await hnsw_indexes(db, "embeddings_v1")
    assert indexes.keys() == {hnsw_index_name(MODEL, 8), hnsw_index_name("test/other-4", 4)}
    assert "vector(8)" in indexes[hnsw_index_name(MODEL, 8)]
    assert f"'{MODEL}'" in indexes[hnsw_index_name(MODEL, 8)]
    # A later vector goes into the index; its links come from the exact search as before:
    # at 3°, its 5 nearest are the vectors at 4°, 0°, 8°, 12° and 16° (all above 0.8).
    late = embedding(uuid.uuid4(), 3, minutes=100)
    await apply_in_batches(settings, 1, [[late]], catch_up=True)
    links = await stored_links(db, "embeddings_v1")
    nearest = {e.data.memory_id for e in events[:5]}
    assert {b for a, b in links if a == late.data.memory_id} == nearest
    assert {a for a, b in links if b == late.data.memory_id} == nearest
    assert links_before.items() <= links.items()
