"""Summaries on the real broker and database: the summariser processor, the summaries read
model, and the profile in the call-start briefing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection
from projections.summaries import (
    SummariesProjection,
    SummaryProcessor,
    conversation_summaries,
    conversation_summary,
    latest_profile,
)
from schemas import (
    ConversationEnded,
    Event,
    MemoryAsserted,
    MemoryExtracted,
    Source,
    SummaryGenerated,
    UserForgotten,
    decode_event,
)
from services.briefing import BRIEFING_KEYS, load_briefing
from services.settings import Settings
from streams import EventLog, versions
from streams.projection import LogRecord, Projection, version_schema
from streams.topics import SUMMARIES, Topics
from tests.helpers import BASE_TIME, read_topic
from tests.integration.ingest_fixtures import TENANT as INGEST_TENANT
from tests.integration.ingest_fixtures import deliver, ingest, payload, tenant
from tests.integration.projection_contract import ProjectionContract, project

# The memory events a summary reads, built as the memories read model's tests build them.
from tests.integration.test_memories_projection import reinforced, retracted, superseded

__all__ = ["ingest", "tenant"]  # fixtures used by name below

TENANT = "acme"
SUBJECT = f"{TENANT}/+15550000001"
OTHER = f"{TENANT}/+15550000002"
MEMSTREAM = Source(platform="memstream")
API = Source(platform="api")


def at(days: float = 0, seconds: float = 0) -> datetime:
    return BASE_TIME + timedelta(days=days, seconds=seconds)


def extracted(
    content: str,
    *,
    subject: str = SUBJECT,
    days: float = 0,
    kind: str = "fact",
    sector: str = "semantic",
    salience: float = 0.7,
    key: str | None = None,
    conversation_id: str = "conv-1",
    logged: datetime | None = None,
) -> MemoryExtracted:
    return MemoryExtracted.create(
        tenant=TENANT,
        subject=subject,
        source=MEMSTREAM,
        occurred_at=at(days),
        recorded_at=logged,
        correlation_id=conversation_id,
        data={
            "memory_id": uuid.uuid4(),
            "content": content,
            "sector": sector,
            "salience": salience,
            "kind": kind,
            "key": key,
            "observed_at": at(days),
            "extractor": "rules",
            "extractor_version": "1",
            "provenance": {"conversation_id": conversation_id, "turns": [1]},
        },
    )


def asserted(content: str, *, days: float = 0) -> MemoryAsserted:
    return MemoryAsserted.create(
        tenant=TENANT,
        subject=SUBJECT,
        source=API,
        occurred_at=at(days),
        data={"memory_id": uuid.uuid4(), "content": content, "sector": "procedural"},
    )


def forgotten(*, days: float, subject: str = SUBJECT) -> UserForgotten:
    return UserForgotten.create(
        tenant=TENANT, subject=subject, source=API, occurred_at=at(days), data={}
    )


def ended(
    conversation_id: str,
    *lines: tuple[str, str],
    days: float = 0,
    summary: str | None = None,
    subject: str = SUBJECT,
) -> ConversationEnded:
    return ConversationEnded.create(
        tenant=TENANT,
        subject=subject,
        source=Source(platform="elevenlabs", event_id=conversation_id),
        occurred_at=at(days, seconds=300),
        correlation_id=conversation_id,
        data={
            "conversation_id": conversation_id,
            "started_at": at(days),
            "status": "done",
            "turns": [
                {"role": role, "text": text, "offset_ms": i * 2000}
                for i, (role, text) in enumerate(lines)
            ],
            "analysis": {"summary": summary} if summary is not None else None,
        },
    )


async def summaries(settings: Settings) -> list[SummaryGenerated]:
    topic = Topics(settings.topic_prefix).name(SUMMARIES)
    events = [decode_event(r.value) for r in await read_topic(settings, topic)]
    assert all(isinstance(e, SummaryGenerated) for e in events)
    return [e for e in events if isinstance(e, SummaryGenerated)]


def profiles(events: Sequence[SummaryGenerated], subject: str = SUBJECT) -> list[SummaryGenerated]:
    return [e for e in events if e.data.kind == "profile" and e.subject == subject]


async def summarise(settings: Settings, *, version: int = 1) -> None:
    """The processor (debounce 0: a profile per batch that changes a user), then the
    read model, each until caught up."""
    await project(settings, SummaryProcessor(debounce=timedelta(0)), version=version)
    await project(settings, SummariesProjection())


class OneBatch:
    """The processor fed hand-made batches in the runtime's own way (one transaction per
    batch, in the version's schema, appending through a real producer), so a test decides
    exactly which events share a batch."""

    def __init__(self, settings: Settings, processor: SummaryProcessor, version: int = 1) -> None:
        self.settings = settings
        self.processor = processor
        self.version = version
        self.offset = 0

    async def __aenter__(self) -> OneBatch:
        url = self.settings.require_database()
        self.conn = await AsyncConnection.connect(
            url,
            options=f"-c search_path={version_schema(self.processor.name, self.version)},public",
        )
        await versions.register(self.conn, self.processor, self.version)
        await self.conn.commit()
        self.log = EventLog(self.settings)
        await self.log.start()
        await self.processor.open(self.log)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.log.stop()
        await self.conn.close()

    async def apply(self, events: Sequence[Event], *, commit: bool = True) -> None:
        records = []
        for event in events:
            records.append(LogRecord("test", 0, self.offset, 0, event))
            self.offset += 1
        async with self.conn.transaction(force_rollback=not commit):
            await self.processor.apply(self.conn, self.processor.prepare(records))


# -- the processor: profiles --------------------------------------------------------------


async def test_the_memory_events_of_a_user_in_one_batch_give_one_profile(
    topics: Settings, db: Any
) -> None:
    city = extracted("Lives in Denver", key="home_city")
    moved = extracted("Lives in Boulder", key="home_city", days=1)
    allergy = extracted("Allergic to penicillin", salience=0.9)
    batch: list[Event] = [
        city,
        allergy,
        extracted("Prefers morning appointments", kind="preference", salience=0.6),
        reinforced(allergy, days=1),
        moved,
        superseded(city, moved),
        extracted("Has a cat", subject=OTHER),
    ]
    async with OneBatch(topics, SummaryProcessor(debounce=timedelta(hours=1))) as runner:
        await runner.apply(batch)

    events = await summaries(topics)
    [profile] = profiles(events)
    [other] = profiles(events, OTHER)
    assert profile.data.sequence == 1 and other.data.sequence == 1
    assert profile.data.generator == "extractive"
    assert profile.data.text == (
        "Facts: Allergic to penicillin; Lives in Boulder."
        " Preferences: Prefers morning appointments."
    )
    assert other.data.text == "Facts: Has a cat."
    # Traceable: the memories it was built from, strongest first, and the last event in it.
    assert profile.data.inputs.memory_ids[0] == allergy.data.memory_id
    assert city.data.memory_id not in profile.data.inputs.memory_ids
    assert profile.data.inputs.memory_count == 3
    assert profile.data.inputs.last_event_id == batch[5].id == profile.causation_id
    assert profile.data.inputs.as_of == at(1)


async def test_a_profile_held_back_by_the_debounce_is_flushed_by_a_later_batch(
    topics: Settings, db: Any
) -> None:
    start = at(30)
    async with OneBatch(topics, SummaryProcessor(debounce=timedelta(seconds=60))) as runner:
        await runner.apply([extracted("Lives in Denver", logged=start)])
        [first] = profiles(await summaries(topics))

        # 10 s later: within the debounce, the user's profile waits.
        await runner.apply(
            [extracted("Has a dog called Rex", logged=start + timedelta(seconds=10))]
        )
        assert profiles(await summaries(topics)) == [first]

        # 30 s later, another user: still within the user's 60 s.
        await runner.apply(
            [extracted("Has a cat", subject=OTHER, logged=start + timedelta(seconds=30))]
        )
        assert profiles(await summaries(topics)) == [first]

        # 70 s after the first profile, a batch with only someone else's event flushes it.
        later = start + timedelta(seconds=70)
        await runner.apply([extracted("Plays tennis", subject=OTHER, logged=later)])
    events = await summaries(topics)
    assert [p.data.sequence for p in profiles(events)] == [1, 2]
    assert "Has a dog called Rex" in profiles(events)[1].data.text
    # The other user's first profile was immediate; their second change waits its turn.
    assert [p.data.text for p in profiles(events, OTHER)] == ["Facts: Has a cat."]


async def test_superseded_and_retracted_content_is_never_in_a_profile(
    topics: Settings, db: Any
) -> None:
    city = extracted("Lives in Denver", key="home_city")
    moved = extracted("Lives in Boulder", key="home_city", days=2)
    allergy = extracted("Allergic to penicillin", salience=0.9)
    wrong = asserted("Prefers to be called Bob", days=1)
    jazz = asserted("Likes jazz", days=1)
    async with EventLog(topics) as log:
        # The retraction is appended before the memory it retracts (an operator fixed it
        # before the assertion's retry landed): no profile may ever show it.
        await log.append(retracted(wrong.data.memory_id, days=3))
        await log.append_many([city, allergy, wrong, jazz])
        await log.append_many([moved, superseded(city, moved)])
        await log.append(retracted(allergy.data.memory_id, days=4))
    await summarise(topics)

    events = profiles(await summaries(topics))
    assert events and not any("Bob" in p.data.text for p in events)
    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None
    assert profile["text"] == "Facts: Lives in Boulder. Noted: Likes jazz."
    assert profile["sequence"] == max(p.data.sequence or 0 for p in events)
    assert profile["memory_ids"] == [moved.data.memory_id, jazz.data.memory_id]


async def test_a_user_with_every_memory_retracted_gets_an_empty_profile(
    topics: Settings, db: Any
) -> None:
    memory = extracted("Has a dog called Rex")
    async with OneBatch(topics, SummaryProcessor(debounce=timedelta(0))) as runner:
        await runner.apply([memory])
        await runner.apply([retracted(memory.data.memory_id, days=1)])
    await project(topics, SummariesProjection())
    assert [p.data.text for p in profiles(await summaries(topics))] == [
        "Facts: Has a dog called Rex.",
        "",
    ]
    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None and profile["text"] == "" and profile["memory_count"] == 0


# -- the processor: conversation summaries ------------------------------------------------


async def test_the_platforms_summary_is_used_when_it_sent_one_and_an_extractive_one_otherwise(
    topics: Settings, db: Any
) -> None:
    with_summary = ended(
        "conv-platform",
        ("agent", "Bayview Dental, how can I help?"),
        ("user", "I'd like to book a cleaning next week."),
        summary="The caller booked a cleaning for next Tuesday.",
    )
    without = ended(
        "conv-rules",
        ("agent", "Bayview Dental, how can I help?"),
        ("user", "I live in Denver and I'm allergic to penicillin."),
        days=1,
    )
    chatter = ended("conv-chatter", ("user", "Hello?"), ("agent", "Hi!"), days=2)
    async with EventLog(topics) as log:
        await log.append_many([with_summary, without, chatter])
    await summarise(topics)

    platform = await conversation_summary(db, TENANT, "conv-platform")
    assert platform is not None
    assert platform["text"] == "The caller booked a cleaning for next Tuesday."
    assert (platform["generator"], platform["generator_version"]) == ("platform", "elevenlabs")
    assert platform["last_event_id"] == with_summary.id

    extractive = await conversation_summary(db, TENANT, "conv-rules")
    assert extractive is not None
    assert extractive["generator"] == "extractive"
    assert "Allergic to penicillin" in extractive["text"] and "Denver" in extractive["text"]
    # A call in which the caller said nothing worth keeping has no summary.
    assert await conversation_summary(db, TENANT, "conv-chatter") is None
    assert [s["conversation_id"] for s in await conversation_summaries(db, TENANT, SUBJECT)] == [
        "conv-rules",
        "conv-platform",
    ]


async def test_a_later_platform_summary_replaces_an_extractive_one_in_any_order(
    topics: Settings, db: Any
) -> None:
    # Retell sends call_ended (no analysis) then call_analyzed (with the summary): two
    # conversation.ended events for one conversation.
    lines = (("user", "I need to reschedule my root canal appointment please."),)
    first = ended("conv-retell", *lines)
    analysed = ended("conv-retell", *lines, summary="Wants to move the root canal.")
    async with EventLog(topics) as log:
        await log.append_many([first, analysed])
    await project(topics, SummaryProcessor(debounce=timedelta(0)))
    written = await summaries(topics)
    assert [e.data.generator for e in written] == ["extractive", "platform"]

    async with EventLog(topics) as log:
        await log.append_many([written[1], written[0]])  # replayed in the other order
    await project(topics, SummariesProjection())
    row = await conversation_summary(db, TENANT, "conv-retell")
    assert row is not None
    assert (row["generator"], row["text"]) == ("platform", "Wants to move the root canal.")


async def test_a_finished_call_becomes_a_profile_through_extraction(
    topics: Settings, db: Any
) -> None:
    first = ended(
        "conv-a",
        ("agent", "Bayview Dental, how can I help?"),
        ("user", "Hi, I live in Denver and I'm allergic to penicillin."),
        ("agent", "Thanks, I've noted that."),
    )
    second = ended(
        "conv-b",
        ("agent", "Bayview Dental, how can I help?"),
        ("user", "I just moved to Boulder. I prefer morning appointments."),
        days=30,
    )
    async with EventLog(topics) as log:
        await log.append_many([first, second])
    await project(topics, ExtractionProcessor())
    await summarise(topics)

    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None
    assert "Allergic to penicillin" in profile["text"] and "Boulder" in profile["text"]
    assert "Denver" not in profile["text"]  # superseded by the move
    assert "morning appointments" in profile["text"]
    for conversation_id in ("conv-a", "conv-b"):
        summary = await conversation_summary(db, TENANT, conversation_id)
        assert summary is not None and summary["generator"] == "extractive"
    row = await conversation_summary(db, TENANT, "conv-a")
    assert row is not None and "Denver" in row["text"]


# -- idempotency ----------------------------------------------------------------------------


async def test_redelivered_memory_events_give_no_new_summary(topics: Settings, db: Any) -> None:
    allergy = extracted("Allergic to penicillin")
    events: list[Event] = [
        allergy,
        extracted("Works at the hospital", days=1),
        reinforced(allergy, days=2),
        ended("conv-9", ("user", "I am allergic to penicillin, remember that."), days=2),
    ]
    async with EventLog(topics) as log:
        await log.append_many(events)
    await summarise(topics)
    first = await summaries(topics)
    before = await latest_profile(db, TENANT, SUBJECT)

    async with EventLog(topics) as log:
        await log.append_many(events)  # every event delivered again, same ids
    await summarise(topics)
    again = await summaries(topics)
    # Nothing changed the user's memories: no new profile. The conversation summary is
    # appended again with the same id, which the read model applies once.
    assert profiles(again) == profiles(first)
    assert {e.id for e in again} == {e.id for e in first}
    assert await latest_profile(db, TENANT, SUBJECT) == before
    assert before is not None and before["memory_count"] == 2


async def test_a_batch_replayed_after_a_crash_appends_the_same_events(
    topics: Settings, db: Any
) -> None:
    batch: list[Event] = [
        extracted("Lives in Denver"),
        extracted("Prefers texts to calls", kind="preference", subject=OTHER),
        ended("conv-3", ("user", "My daughter is getting married in June."), days=1),
    ]
    async with OneBatch(topics, SummaryProcessor()) as runner:
        # The events are appended, then the transaction does not commit (the process
        # died before the checkpoint): the runtime delivers the batch again.
        await runner.apply(batch, commit=False)
        crashed = await summaries(topics)
        await runner.apply(batch)
    replayed = await summaries(topics)
    assert len(crashed) == 3 and len(replayed) == 6
    assert sorted(e.id for e in replayed) == sorted(e.id for e in crashed * 2)

    # Reprocessing the same batch from fresh state (a new processor version) decides the
    # same way, with the same ids.
    async with OneBatch(topics, SummaryProcessor(), version=2) as runner:
        await runner.apply(batch)
    assert {e.id for e in await summaries(topics)} == {e.id for e in crashed}

    await project(topics, SummariesProjection())
    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None and profile["text"] == "Facts: Lives in Denver."


# -- erasure --------------------------------------------------------------------------------


async def test_a_forgotten_users_summaries_are_deleted_even_those_arriving_later(
    topics: Settings, db: Any
) -> None:
    async with EventLog(topics) as log:
        await log.append_many(
            [
                extracted("Works at the hospital"),
                extracted("Has a cat", subject=OTHER),
                ended(
                    "conv-1", ("user", "I work at the hospital night shifts."), summary="Shifts."
                ),
            ]
        )
    await summarise(topics)
    written = await summaries(topics)
    assert await latest_profile(db, TENANT, SUBJECT) is not None
    assert await conversation_summary(db, TENANT, "conv-1") is not None

    async with EventLog(topics) as log:
        await log.append(forgotten(days=5))
    await project(topics, SummariesProjection())
    assert await latest_profile(db, TENANT, SUBJECT) is None
    assert await conversation_summary(db, TENANT, "conv-1") is None
    assert await latest_profile(db, TENANT, OTHER) is not None

    # The user's old summaries arrive again after the erasure (a replayed processor
    # batch): dropped. A memory from after the erasure makes a fresh profile of it alone.
    async with EventLog(topics) as log:
        await log.append_many([e for e in written if e.subject == SUBJECT])
        await log.append_many(
            [
                extracted("Works at the hospital", days=1),  # said before the erasure
                extracted("Moved to Boulder", days=9),
            ]
        )
    await summarise(topics)
    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None and profile["text"] == "Facts: Moved to Boulder."
    assert profile["as_of"] == at(9)
    assert await conversation_summary(db, TENANT, "conv-1") is None


async def test_a_version_from_before_the_watermark_drops_the_rows_of_users_forgotten_on_start(
    db: Any,
) -> None:
    schema = version_schema(SummaryProcessor.name, 1)
    await db.execute(f"CREATE SCHEMA {schema}")
    async with db.transaction():
        await db.execute(f"SET LOCAL search_path TO {schema}")
        await db.execute(SummaryProcessor().schema_sql())
        # As an earlier release kept it: each erasure in the user's row, which named them.
        await db.execute("ALTER TABLE profiles ADD COLUMN forgotten_at timestamptz")
        back, never = f"{TENANT}/+15550000003", f"{TENANT}/+15550000004"
        await db.execute(
            "INSERT INTO profiles (tenant, subject, forgotten_at) VALUES"
            " (%(t)s, %(gone)s, %(at)s), (%(t)s, %(back)s, %(at)s), (%(t)s, %(never)s, NULL)",
            {"t": TENANT, "gone": SUBJECT, "back": back, "never": never, "at": at(5)},
        )
        # The user who called again after their erasure has memories since.
        await db.execute(
            "INSERT INTO memories (tenant, memory_id, subject, state, updated_at)"
            " VALUES (%s, %s, %s, 'active', %s)",
            [TENANT, uuid.uuid4(), back, at(9)],
        )

    for _ in range(2):  # the next start, and any after it
        await versions.register(db, SummaryProcessor(), 1)
        cursor = await db.execute(f"SELECT subject FROM {schema}.profiles ORDER BY subject")
        assert [row[0] for row in await cursor.fetchall()] == [back, never]


# -- the call-start briefing ----------------------------------------------------------------

CALLER = f"{INGEST_TENANT}/+14155550123"  # the caller in every payload of ingest_payloads


def caller_memory(content: str, said_at: datetime, salience: float) -> MemoryExtracted:
    return MemoryExtracted.create(
        tenant=INGEST_TENANT,
        subject=CALLER,
        source=MEMSTREAM,
        occurred_at=said_at,
        data={
            "memory_id": uuid.uuid4(),
            "content": content,
            "sector": "semantic",
            "salience": salience,
            "kind": "fact",
            "observed_at": said_at,
            "extractor": "rules",
            "extractor_version": "1",
            "provenance": {"conversation_id": "conv-earlier"},
        },
    )


async def a_known_caller(topics: Settings, ingest: httpx.AsyncClient) -> None:
    said_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    call = payload("elevenlabs_post_call_transcription")
    call["data"]["metadata"]["start_time_unix_secs"] = int(said_at.timestamp())
    assert (await deliver(ingest, "elevenlabs", call)).status_code == 200
    async with EventLog(topics) as log:
        await log.append_many(
            [
                caller_memory("Allergic to penicillin", said_at, 0.9),
                caller_memory("Lives in Boulder", said_at, 0.7),
            ]
        )
    await project(topics, ConversationsProjection())
    await project(topics, MemoriesProjection())


async def test_the_briefing_gives_the_agent_the_callers_profile(
    topics: Settings, db: Any, ingest: httpx.AsyncClient, tenant: str
) -> None:
    await a_known_caller(topics, ingest)
    await summarise(topics)

    response = await deliver(ingest, "elevenlabs-init", payload("elevenlabs_initiation"))
    assert response.status_code == 200, response.text
    variables = response.json()["dynamic_variables"]
    assert set(variables) == set(BRIEFING_KEYS)
    assert variables["user_profile"] == "Facts: Allergic to penicillin; Lives in Boulder."
    assert variables["memory_context"].splitlines()[:2] == [
        "- Allergic to penicillin",
        "- Lives in Boulder",
    ]
    briefing = await load_briefing(db, INGEST_TENANT, CALLER)
    assert briefing.user_profile == variables["user_profile"]


async def test_a_missing_summaries_read_model_leaves_the_profile_empty_not_the_call(
    topics: Settings, ingest: httpx.AsyncClient, tenant: str
) -> None:
    await a_known_caller(topics, ingest)  # the summaries projection has never run

    response = await deliver(ingest, "elevenlabs-init", payload("elevenlabs_initiation"))
    assert response.status_code == 200, response.text
    variables = response.json()["dynamic_variables"]
    assert variables["user_profile"] == ""
    assert variables["memory_context"].startswith("- Allergic to penicillin")


# -- the read model's contract ---------------------------------------------------------------


def summary_event(
    kind: str,
    text: str,
    *,
    subject: str = SUBJECT,
    days: float = 0,
    sequence: int | None = None,
    generator: str = "extractive",
    conversation_id: str | None = None,
) -> SummaryGenerated:
    last = uuid.uuid4()
    return SummaryGenerated.create(
        tenant=TENANT,
        subject=subject,
        source=Source(platform="memstream", event_id=str(last)),
        occurred_at=at(days),
        causation_id=last,
        correlation_id=conversation_id,
        data={
            "kind": kind,
            "text": text,
            "generator": generator,
            "generator_version": "1",
            "conversation_id": conversation_id,
            "sequence": sequence,
            "inputs": {"memory_count": 0, "last_event_id": last, "as_of": at(days)},
        },
    )


class TestSummariesContract(ProjectionContract):
    projection: ClassVar[type[Projection]] = SummariesProjection

    def events(self) -> list[Event]:
        return [
            summary_event("profile", "Facts: Lives in Denver.", sequence=1),
            summary_event("profile", "Facts: Lives in Boulder.", sequence=2, days=1),
            # An older profile seen late: it does not replace the newer one.
            summary_event("profile", "Facts: Lives in Denver.", sequence=1),
            summary_event("conversation", "Booked a cleaning.", conversation_id="c-1"),
            summary_event(
                "conversation", "Caller: booked.", conversation_id="c-1", generator="platform"
            ),
            *(
                summary_event(
                    "profile", f"Facts: Fact {i}.", subject=f"{TENANT}/+1555100{i:04d}", sequence=1
                )
                for i in range(30)
            ),
            forgotten(days=2, subject=f"{TENANT}/+15551000000"),
        ]


async def test_the_read_model_keeps_the_highest_ranking_summaries(
    topics: Settings, db: Any
) -> None:
    events = TestSummariesContract().events()
    async with EventLog(topics) as log:
        await log.append_many(events)
    await project(topics, SummariesProjection())
    profile = await latest_profile(db, TENANT, SUBJECT)
    assert profile is not None and profile["text"] == "Facts: Lives in Boulder."
    conversation = await conversation_summary(db, TENANT, "c-1")
    assert conversation is not None and conversation["generator"] == "platform"
    assert await latest_profile(db, TENANT, f"{TENANT}/+15551000000") is None
    assert await latest_profile(db, TENANT, f"{TENANT}/+15551000001") is not None
