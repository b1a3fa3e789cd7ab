"""Embeddings: memory events through the local model into pgvector, and the links graph."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import Any, ClassVar

from projections.embeddings.processor import EmbeddingProcessor
from projections.embeddings.projection import LINK_THRESHOLD, EmbeddingsProjection
from schemas import (
    EmbeddingComputed,
    Event,
    MemoryExtracted,
    Source,
    UserForgotten,
    decode_event,
)
from streams import EventLog, Settings
from streams.projection import Projection
from streams.topics import EMBEDDINGS, Topics
from tests.helpers import BASE_TIME, read_topic
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
    memory_id: uuid.UUID, angle: float, *, subject: str = SUBJECT, minutes: int = 0
) -> EmbeddingComputed:
    return EmbeddingComputed.create(
        tenant=TENANT,
        subject=subject,
        source=Source(platform="memstream"),
        occurred_at=BASE_TIME + timedelta(minutes=minutes),
        data={"memory_id": memory_id, "model": MODEL, "dimension": 8, "vector": unit(angle)},
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
        return [*others, forget]


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
    assert {e.data.model for e in computed} == {"local/all-minilm-l6-v2-int8"}
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
