"""The extraction processor: conversations through the log into memory events and memories."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection, list_memories
from schemas import (
    ConversationEnded,
    Event,
    MemoryExtracted,
    MemoryReinforced,
    MemorySuperseded,
    Source,
    UserForgotten,
    decode_event,
)
from services.settings import Settings
from streams import EventLog
from streams.topics import MEMORIES, Topics
from tests.helpers import BASE_TIME, read_topic
from tests.integration.projection_contract import project, snapshot

TENANT = "acme"
SUBJECT = f"{TENANT}/+15550000001"


def call(conversation_id: str, days: float, *lines: tuple[str, str]) -> ConversationEnded:
    started = BASE_TIME + timedelta(days=days)
    return ConversationEnded.create(
        tenant=TENANT,
        subject=SUBJECT,
        source=Source(platform="elevenlabs", event_id=conversation_id),
        occurred_at=started + timedelta(minutes=5),
        correlation_id=conversation_id,
        data={
            "conversation_id": conversation_id,
            "started_at": started,
            "status": "done",
            "turns": [
                {"role": role, "text": text, "offset_ms": i * 2000}
                for i, (role, text) in enumerate(lines)
            ],
        },
    )


FIRST = call(
    "conv-1",
    0,
    ("agent", "Bayview Dental, how can I help?"),
    ("user", "Hi, I live in Denver and I'm allergic to penicillin."),
    ("agent", "Thanks, I've noted that."),
)
SECOND = call(
    "conv-2",
    30,
    ("agent", "Bayview Dental, how can I help?"),
    ("user", "I just moved to Boulder. Also, I'm allergic to penicillin."),
    ("agent", "Got it, I've updated your file."),
)


async def memory_events(settings: Settings) -> list[Event]:
    topic = Topics(settings.topic_prefix).name(MEMORIES)
    return [decode_event(r.value) for r in await read_topic(settings, topic)]


async def extract_and_project(settings: Settings, version: int = 1) -> None:
    await project(settings, ExtractionProcessor(), version=version)
    await project(settings, MemoriesProjection())


async def test_a_finished_call_becomes_memories_about_the_caller(topics: Settings, db: Any) -> None:
    async with EventLog(topics) as log:
        await log.append(FIRST)
    await extract_and_project(topics)

    events = await memory_events(topics)
    assert events and all(isinstance(e, MemoryExtracted) for e in events)
    assert all(e.causation_id == FIRST.id and e.correlation_id == "conv-1" for e in events)
    assert all(e.subject == SUBJECT for e in events)
    memories = await list_memories(db, TENANT, SUBJECT)
    contents = {m["content"] for m in memories}
    assert "Allergic to penicillin" in contents
    assert any("Denver" in c for c in contents)
    for memory in memories:
        assert memory["extractor"] == "rules"
        assert memory["provenance"] == [{"conversation_id": "conv-1", "turns": [1]}]
        assert memory["observed_at"] == FIRST.data.started_at


async def test_a_known_fact_is_reinforced_and_a_replaced_one_superseded(
    topics: Settings, db: Any
) -> None:
    async with EventLog(topics) as log:
        await log.append_many([FIRST, SECOND])
    await extract_and_project(topics)

    events = await memory_events(topics)
    [reinforced] = [e for e in events if isinstance(e, MemoryReinforced)]
    [superseded] = [e for e in events if isinstance(e, MemorySuperseded)]
    extracted = {e.data.memory_id: e for e in events if isinstance(e, MemoryExtracted)}
    assert str(extracted[reinforced.data.memory_id].data.content) == "Allergic to penicillin"
    assert "Denver" in str(extracted[superseded.data.memory_id].data.content)
    assert "Boulder" in str(extracted[superseded.data.superseded_by].data.content)

    active = {m["content"]: m for m in await list_memories(db, TENANT, SUBJECT)}
    assert active["Allergic to penicillin"]["reinforcement_count"] == 1
    assert active["Allergic to penicillin"]["last_seen_at"] == SECOND.data.started_at
    assert not any("Denver" in c for c in active)
    assert any("Boulder" in c for c in active)


async def test_a_conversation_appended_twice_is_extracted_once(topics: Settings, db: Any) -> None:
    async with EventLog(topics) as log:
        await log.append_many([FIRST, FIRST])  # a webhook redelivered to two ingest processes
    await extract_and_project(topics)
    events = await memory_events(topics)
    assert not any(isinstance(e, MemoryReinforced) for e in events)
    assert len({e.id for e in events}) == len(events)


async def test_reprocessing_the_log_appends_the_same_events_and_changes_no_memory(
    topics: Settings, db: Any
) -> None:
    async with EventLog(topics) as log:
        await log.append_many([FIRST, SECOND])
    await extract_and_project(topics)
    first_ids = sorted(e.id for e in await memory_events(topics))
    before = await snapshot(db, "memories_v1", MemoriesProjection.tables)

    # Extraction v2 from offset 0: every decision made again from fresh state.
    await extract_and_project(topics, version=2)
    again = await memory_events(topics)
    assert sorted({e.id for e in again}) == first_ids
    assert len(again) == 2 * len(first_ids)
    assert await snapshot(db, "memories_v1", MemoriesProjection.tables) == before


async def test_a_forgotten_user_starts_afresh(topics: Settings, db: Any) -> None:
    forget = UserForgotten.create(
        tenant=TENANT,
        subject=SUBJECT,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(days=10),
        data={},
    )
    async with EventLog(topics) as log:
        await log.append_many([FIRST, forget, SECOND])
    await extract_and_project(topics)
    events = await memory_events(topics)
    # The second call's allergy is a new memory, not a reinforcement of an erased one.
    assert not any(isinstance(e, MemoryReinforced | MemorySuperseded) for e in events)
    contents = {m["content"] for m in await list_memories(db, TENANT, SUBJECT)}
    assert "Allergic to penicillin" in contents
    assert not any("Denver" in c for c in contents)


async def test_a_partial_value_reinforces_the_fuller_one_and_supersedes_nothing(
    topics: Settings, db: Any
) -> None:
    greeting = ("agent", "Bayview Dental, who am I speaking with?")
    full = call("conv-n1", 0, greeting, ("user", "Hi, my name is Maria Lopez."))
    short = call("conv-n2", 7, greeting, ("user", "Hi, it's Maria."))
    fuller = call("conv-n3", 14, greeting, ("user", "Hi, my name is Maria Lopez Garcia."))
    async with EventLog(topics) as log:
        await log.append_many([full, short])
    await extract_and_project(topics)

    events = await memory_events(topics)
    assert not any(isinstance(e, MemorySuperseded) for e in events)
    [reinforced] = [e for e in events if isinstance(e, MemoryReinforced)]
    extracted = {e.data.memory_id: e for e in events if isinstance(e, MemoryExtracted)}
    assert str(extracted[reinforced.data.memory_id].data.content) == "Name: Maria Lopez"
    assert [m["content"] for m in await list_memories(db, TENANT, SUBJECT)] == ["Name: Maria Lopez"]

    # A fuller value is a new value: it replaces the shorter one.
    async with EventLog(topics) as log:
        await log.append(fuller)
    await extract_and_project(topics)
    [superseded] = [e for e in await memory_events(topics) if isinstance(e, MemorySuperseded)]
    assert superseded.data.memory_id == reinforced.data.memory_id
    active = [m["content"] for m in await list_memories(db, TENANT, SUBJECT)]
    assert active == ["Name: Maria Lopez Garcia"]
