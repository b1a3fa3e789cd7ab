"""The memories read model, fed through a real log from two topics."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from projections.memories import MemoriesProjection, get_memory, list_memories, top_memories
from projections.memories.queries import DECAYED_SALIENCE, REINFORCEMENT_BOOST, decayed_salience
from schemas import (
    Event,
    MemoryAsserted,
    MemoryExtracted,
    MemoryReinforced,
    MemoryRetracted,
    MemorySuperseded,
    Source,
    UserForgotten,
)
from services.settings import Settings
from streams import EventLog
from streams.projection import Projection
from tests.helpers import BASE_TIME
from tests.integration.projection_contract import ProjectionContract, project

TENANT = "acme"
SUBJECT = f"{TENANT}/+15550000001"
SOURCE = Source(platform="memstream")


def extracted(
    content: str,
    *,
    subject: str = SUBJECT,
    days: float = 0,
    sector: str = "semantic",
    salience: float = 0.6,
    key: str | None = None,
    memory_id: uuid.UUID | None = None,
) -> MemoryExtracted:
    at = BASE_TIME + timedelta(days=days)
    return MemoryExtracted.create(
        tenant=TENANT,
        subject=subject,
        source=SOURCE,
        occurred_at=at,
        data={
            "memory_id": memory_id or uuid.uuid4(),
            "content": content,
            "sector": sector,
            "salience": salience,
            "kind": "fact",
            "key": key,
            "observed_at": at,
            "extractor": "rules",
            "extractor_version": "1",
            "provenance": {"conversation_id": f"conv-{days}", "turns": [1]},
        },
    )


def reinforced(memory: MemoryExtracted, *, days: float) -> MemoryReinforced:
    at = BASE_TIME + timedelta(days=days)
    return MemoryReinforced.create(
        tenant=TENANT,
        subject=memory.subject,
        source=SOURCE,
        occurred_at=at,
        data={
            "memory_id": memory.data.memory_id,
            "observed_at": at,
            "provenance": {"conversation_id": f"conv-{days}", "turns": [2]},
        },
    )


def superseded(old: MemoryExtracted, new: MemoryExtracted) -> MemorySuperseded:
    return MemorySuperseded.create(
        tenant=TENANT,
        subject=old.subject,
        source=SOURCE,
        occurred_at=new.occurred_at,
        data={
            "memory_id": old.data.memory_id,
            "superseded_by": new.data.memory_id,
            "observed_at": new.data.observed_at,
        },
    )


def retracted(memory_id: uuid.UUID, *, days: float = 0) -> MemoryRetracted:
    return MemoryRetracted.create(
        tenant=TENANT,
        subject=SUBJECT,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(days=days),
        data={"memory_id": memory_id, "reason": "wrong"},
    )


def asserted(content: str, *, days: float = 0) -> MemoryAsserted:
    return MemoryAsserted.create(
        tenant=TENANT,
        subject=SUBJECT,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(days=days),
        data={
            "memory_id": uuid.uuid4(),
            "content": content,
            "sector": "procedural",
            "salience": 0.8,
            "asserted_by": "front-desk",
        },
    )


def forgotten(*, days: float, subject: str = SUBJECT) -> UserForgotten:
    return UserForgotten.create(
        tenant=TENANT,
        subject=subject,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(days=days),
        data={"reason": "caller asked"},
    )


class TestMemoriesContract(ProjectionContract):
    projection: ClassVar[type[Projection]] = MemoriesProjection

    def events(self) -> list[Event]:
        city = extracted("Lives in Denver", key="home_city")
        moved = extracted("Lives in Boulder", key="home_city", days=3)
        allergy = extracted("Allergic to penicillin", salience=0.9)
        other = [extracted(f"Fact {i}", subject=f"{TENANT}/+1555000{i:04d}") for i in range(40)]
        return [
            city,
            allergy,
            reinforced(allergy, days=1),
            reinforced(allergy, days=2),
            moved,
            superseded(city, moved),
            asserted("Prefers afternoon appointments"),
            retracted(allergy.data.memory_id, days=4),
            *other,
            forgotten(days=5, subject=other[0].subject),
        ]


async def test_memories_are_projected_with_reinforcement_and_supersession(
    topics: Settings, db: Any
) -> None:
    city = extracted("Lives in Denver", key="home_city")
    moved = extracted("Lives in Boulder", key="home_city", days=3)
    allergy = extracted("Allergic to penicillin", salience=0.9)
    again = reinforced(allergy, days=2)
    async with EventLog(topics) as log:
        # The same reinforcement twice (a reprocessed extraction): it counts once.
        await log.append_many([city, allergy, again, moved, superseded(city, moved), again])
    await project(topics, MemoriesProjection())

    row = await get_memory(db, TENANT, allergy.data.memory_id)
    assert row is not None
    assert row["state"] == "active" and row["reinforcement_count"] == 1
    assert row["last_seen_at"] == again.data.observed_at
    assert row["provenance"] == [{"conversation_id": "conv-0", "turns": [1]}]
    assert row["origin"] == "extracted" and row["extractor"] == "rules"

    old = await get_memory(db, TENANT, city.data.memory_id)
    assert old is not None
    assert old["state"] == "superseded" and old["superseded_by"] == moved.data.memory_id
    active = [m["content"] for m in await list_memories(db, TENANT, SUBJECT)]
    assert active == ["Allergic to penicillin", "Lives in Boulder"]


async def test_a_retraction_arriving_before_its_memory_still_wins(
    topics: Settings, db: Any
) -> None:
    # The retraction is on the conversations topic and the memory on the memories
    # topic: the projection may see them in either order. Appended retraction first.
    memory = extracted("Has a dog called Rex")
    async with EventLog(topics) as log:
        await log.append(retracted(memory.data.memory_id, days=1))
        await log.append(memory)
    await project(topics, MemoriesProjection())
    row = await get_memory(db, TENANT, memory.data.memory_id)
    assert row is not None
    assert row["state"] == "retracted" and row["content"] == "Has a dog called Rex"
    assert await list_memories(db, TENANT, SUBJECT) == []


async def test_an_asserted_memory_is_a_memory_too(topics: Settings, db: Any) -> None:
    async with EventLog(topics) as log:
        await log.append(asserted("Prefers afternoon appointments"))
    await project(topics, MemoriesProjection())
    [row] = await list_memories(db, TENANT, SUBJECT)
    assert row["origin"] == "asserted" and row["extractor"] == "front-desk"
    assert row["sector"] == "procedural" and row["salience"] == 0.8


async def test_forgetting_a_user_drops_their_memories_even_those_arriving_later(
    topics: Settings, db: Any
) -> None:
    before = extracted("Works at the hospital")
    late = extracted("Has two children", days=1)  # said before the erasure, arrives after
    after = extracted("Called again after erasure", days=10)
    keep = extracted("Someone else's fact", subject=f"{TENANT}/+15550000002")
    async with EventLog(topics) as log:
        await log.append_many([before, keep])
        await log.append(forgotten(days=5))
        await log.append_many([late, reinforced(before, days=2), after])
    await project(topics, MemoriesProjection())
    assert [m["content"] for m in await list_memories(db, TENANT, SUBJECT)] == [
        "Called again after erasure"
    ]
    assert len(await list_memories(db, TENANT, keep.subject)) == 1


async def test_top_memories_rank_by_salience_decayed_since_last_said(
    topics: Settings, db: Any
) -> None:
    old_event = extracted("Had a root canal", sector="episodic", salience=0.9)
    recent_event = extracted("Asked about whitening", sector="episodic", salience=0.6, days=90)
    fact = extracted("Allergic to latex", sector="semantic", salience=0.9)
    async with EventLog(topics) as log:
        await log.append_many([old_event, recent_event, fact])
    await project(topics, MemoriesProjection())

    now = BASE_TIME + timedelta(days=91)
    ranked = await top_memories(db, TENANT, SUBJECT, now=now)
    # Episodic memories fade fast: the 90-day-old root canal (0.9 x e^-1.37 = 0.23) is
    # now below the recent question (0.6 x e^-0.015 = 0.59); the semantic fact fades
    # slowly (0.9 x e^-0.455 = 0.57).
    assert [m["content"] for m in ranked] == [
        "Asked about whitening",
        "Allergic to latex",
        "Had a root canal",
    ]
    assert ranked[0]["score"] > ranked[1]["score"] > ranked[2]["score"]
    assert [m["content"] for m in await top_memories(db, TENANT, SUBJECT, now=now, limit=1)] == [
        "Asked about whitening"
    ]


async def test_the_decayed_salience_in_sql_is_the_python_definition(db: Any) -> None:
    # The memories read model ranks in SQL, the summariser in Python: one formula.
    rows = "(VALUES (%(salience)s::float8, %(reinforcements)s::int, %(rate)s::float8,"
    rows += " %(last)s::timestamptz)) AS m(salience, reinforcement_count, decay_rate, last_seen_at)"
    query = f"SELECT {DECAYED_SALIENCE} FROM {rows}"
    for salience, reinforcements, rate, days in (
        (0.5, 0, 0.0, 0.0),
        (0.5, 3, 0.01, 10.0),
        (0.9, 5, 0.05, 400.5),  # capped at 1 before decaying
        (0.2, 0, 0.02, -3.0),  # said "after" now (a clock behind): no growth
    ):
        cursor = await db.execute(
            query,
            {
                "salience": salience,
                "reinforcements": reinforcements,
                "rate": rate,
                "last": BASE_TIME - timedelta(days=days),
                "now": BASE_TIME,
                "boost": REINFORCEMENT_BOOST,
            },
        )
        row = await cursor.fetchone()
        assert row is not None
        expected = decayed_salience(salience, reinforcements, rate, days)
        assert row[0] == pytest.approx(expected, rel=1e-12), (salience, reinforcements, days)
