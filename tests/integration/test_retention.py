"""Transcript and memory retention on the real broker and database, every projection
running (services/retention.py; docs/architecture.md, "Retention"): after the tenant's
period a call's turns and passages are unreadable in the log and gone from the read
models, its memories remain, and nothing brings the transcript back — a rebuild, a
redelivery, a late call of an expired day. The clock of a run is an argument: moved
forward, the calls of today expire too. With a memory retention, the memories first said
before its boundary go the same way (however recently they were said again), those
said since stay, and a fact said again afterwards is a new memory.

The caller, their call and their words are test_personal_data.py's: SUBJECT says
SENTENCES, among them that they live in Denver and are allergic to penicillin (memories
the rule extractor finds).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from projections.memories import MemoriesProjection
from schemas import (
    ConversationEnded,
    EmbeddingComputed,
    Event,
    MemoryAsserted,
    MemoryExtracted,
    PassagesEmbedded,
    decode_event,
)
from services import tenants
from services.retention import RetentionWorker, carry_out_retention, expired_before
from services.settings import Settings
from streams import EventLog
from streams.topics import Topics
from tests.helpers import BASE_TIME, eventually, read_topic, scalar
from tests.integration.projection_contract import project
from tests.integration.test_erasure import pipeline, running, settle
from tests.integration.test_personal_data import SENTENCES, SUBJECT, a_call, raw_bytes
from tests.integration.test_tenants import _cli

OTHER_TENANT_SUBJECT = "beta/+15550004321"


def call_at(began: datetime, conversation_id: str, subject: str = SUBJECT) -> list[Event]:
    """test_personal_data's call (started, ended), begun at `began`."""
    return a_call(
        subject, days=(began - BASE_TIME) / timedelta(days=1), conversation_id=conversation_id
    )


def call_saying(began: datetime, conversation_id: str, *sentences: str) -> list[Event]:
    """`call_at`'s call, the caller's sentences replaced by `sentences`."""
    started, ended = call_at(began, conversation_id)
    assert isinstance(ended, ConversationEnded)
    turns = list(ended.data.turns)
    for index, sentence in enumerate(sentences, start=1):
        turns[index] = turns[index].model_copy(update={"text": sentence})
    data = ended.data.model_copy(update={"turns": tuple(turns)})
    return [started, ended.model_copy(update={"data": data})]


async def held(db: AsyncConnection[Any], conversation_id: str) -> dict[str, int]:
    """What the read models hold of one conversation's transcript, and its memories."""
    counts = {}
    for name, query in (
        ("turns", "SELECT count(*) FROM conversations.turns WHERE conversation_id = %s"),
        ("passages", "SELECT count(*) FROM conversations.passages WHERE conversation_id = %s"),
        (
            "passage_vectors",
            "SELECT count(*) FROM embeddings.passage_vectors WHERE conversation_id = %s",
        ),
        (
            "turn_count",
            "SELECT turn_count FROM conversations.conversations WHERE conversation_id = %s",
        ),
    ):
        counts[name] = await scalar(db, query, conversation_id)
    return counts


async def memories(db: AsyncConnection[Any]) -> list[str]:
    cursor = await db.execute(
        "SELECT content FROM memories.memories WHERE state = 'active' ORDER BY content"
    )
    return [row[0] for row in await cursor.fetchall()]


async def transcripts(settings: Settings) -> dict[str, list[int]]:
    """Per conversation, the number of turns of each conversation.ended and of passages of
    each passages.embedded in the log, as they decode now."""
    topics = Topics(settings.topic_prefix)
    found: dict[str, list[int]] = {}
    for topic in ("conversations", "embeddings"):
        for record in await read_topic(settings, topics.name(topic)):
            event = decode_event(record.value)
            if isinstance(event, ConversationEnded):
                found.setdefault(f"{event.data.conversation_id}/turns", []).append(
                    len(event.data.turns)
                )
            elif isinstance(event, PassagesEmbedded):
                found.setdefault(f"{event.data.conversation_id}/passages", []).append(
                    len(event.data.passages)
                )
    return found


async def transcript_bytes(settings: Settings) -> bytes:
    """Every record's value on the conversations topic and the DLQ."""
    topics = Topics(settings.topic_prefix)
    records: Sequence[Any] = [
        *await read_topic(settings, topics.name("conversations")),
        *await read_topic(settings, topics.dlq),
    ]
    return b"\n".join(record.value or b"" for record in records)


async def test_after_the_retention_old_transcripts_are_unreadable_and_memories_remain(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    now = datetime.now(UTC)
    await tenants.create_tenant(db, "acme", "Acme")
    await tenants.create_tenant(db, "beta", "Beta")  # no retention: nothing of it expires
    old = call_at(now - timedelta(days=3), "old")
    recent = call_at(now - timedelta(hours=1), "recent")
    other = call_at(now - timedelta(days=3), "beta-old", OTHER_TENANT_SUBJECT)
    projections = pipeline()
    async with EventLog(topics) as log, running(topics, projections):
        await log.append_many([*old, *recent, *other])
        await settle(topics, db, projections)

        whole = {"turns": 4, "passages": 4, "passage_vectors": 4, "turn_count": 4}
        for conversation_id in ("old", "recent", "beta-old"):
            assert await held(db, conversation_id) == whole, conversation_id
        remembered = await memories(db)
        assert any("penicillin" in m for m in remembered), remembered
        before = await transcripts(topics)
        assert before["old/turns"] == [4] and before["old/passages"] == [4]

        # A day's retention, carried out now: the call of three days ago expires, with
        # its day's key and the next day's (made ahead of that day's first call).
        await tenants.set_transcript_retention(db, "acme", timedelta(days=1))
        [expiry] = await carry_out_retention(db, now=now)
        assert expiry.tenant == "acme" and expiry.period_keys == 2
        assert expiry.rows == {
            "turns": 4,
            "passages": 4,
            "passage_vectors": 4,
            "conversations": 1,
        }
        gone = {"turns": 0, "passages": 0, "passage_vectors": 0, "turn_count": 0}
        assert await held(db, "old") == gone
        assert await held(db, "recent") == whole
        assert await held(db, "beta-old") == whole
        assert await memories(db) == remembered

        # In the log: the old transcript and its passages no longer open; the others do.
        after = await transcripts(topics)
        assert after["old/turns"] == [0] and after["old/passages"] == [0]
        for conversation_id in ("recent", "beta-old"):
            assert after[f"{conversation_id}/turns"] == [4]
            assert after[f"{conversation_id}/passages"] == [4]

        # A redelivered old call brings nothing back (its day has no key to seal with).
        await log.append(old[1])
        await settle(topics, db, projections)
        assert await held(db, "old") == gone
        assert (await transcripts(topics))["old/turns"] == [0, 0]

        # A second run finds nothing more to do.
        [again] = await carry_out_retention(db, now=now)
        assert again.period_keys == 0 and not any(again.rows.values())

        # The clock moved forward two days: today's call expires too, the memories stay.
        [later] = await carry_out_retention(db, now=now + timedelta(days=2))
        assert later.period_keys == 1
        assert await held(db, "recent") == gone
        assert await memories(db) == remembered
        assert await held(db, "beta-old") == whole

    # A rebuild from the log holds no turn of either, and all of the other tenant's.
    await project(topics, ConversationsProjection(), version=2)
    for conversation_id, expected in (("old", 0), ("recent", 0), ("beta-old", 4)):
        count = await scalar(
            db,
            "SELECT count(*) FROM conversations_v2.turns WHERE conversation_id = %s",
            conversation_id,
        )
        assert count == expected, conversation_id
    # No sentence of theirs is in the bytes, before or after (sealed), of course.
    raw = await transcript_bytes(topics)
    assert not any(sentence.encode() in raw for sentence in SENTENCES)


async def test_a_call_of_a_day_already_past_the_retention_is_kept_without_its_transcript(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    now = datetime.now(UTC)
    await tenants.create_tenant(db, "acme", "Acme")
    await tenants.set_transcript_retention(db, "acme", timedelta(days=1))
    late = call_at(now - timedelta(days=5), "late")
    async with EventLog(topics) as log:
        await log.append_many(late)
    await project(topics, ConversationsProjection())

    # Appended (the call is recorded) but with no transcript: no key is made for its day.
    assert (await transcripts(topics))["late/turns"] == [0]
    assert (
        await scalar(
            db, "SELECT status FROM conversations.conversations WHERE conversation_id = 'late'"
        )
        == "ended"
    )
    assert await scalar(db, "SELECT count(*) FROM conversations.turns") == 0
    assert (
        await scalar(
            db,
            "SELECT count(*) FROM memstream.subject_keys WHERE subject_hash LIKE 'transcripts/%%'",
        )
        == 0
    )


async def test_a_days_first_transcript_has_the_next_days_key_made_ahead(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    # So the first call of each new day does not wait for its key's committed insert.
    began = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    day = began.date()

    async def period_keys() -> dict[str, int]:
        cursor = await db.execute(
            "SELECT subject_hash, key_id FROM memstream.subject_keys"
            " WHERE subject_hash LIKE 'transcripts/%%'"
        )
        return dict(await cursor.fetchall())

    async with EventLog(topics) as log:
        await log.append_many(call_at(began, "today"))
    made = await period_keys()  # EventLog.stop waits for the keys being made ahead
    assert set(made) == {f"transcripts/{day}", f"transcripts/{day + timedelta(days=1)}"}

    async with EventLog(topics) as log:
        await log.append_many(call_at(began + timedelta(days=1), "tomorrow"))
    after = await period_keys()
    # Tomorrow's transcript is sealed with the key made ahead, which makes the next one.
    assert (
        after[f"transcripts/{day + timedelta(days=1)}"]
        == made[f"transcripts/{day + timedelta(days=1)}"]
    )
    assert set(after) == set(made) | {f"transcripts/{day + timedelta(days=2)}"}
    assert await transcripts(topics) == {
        "today/turns": [4],
        "tomorrow/turns": [4],
    }


async def test_the_worker_carries_out_retention_until_stopped(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    now = datetime.now(UTC)
    await tenants.create_tenant(db, "acme", "Acme")
    # A call of three days ago: sealing its transcript made the key of its day, and of the
    # next day ahead.
    async with EventLog(topics) as log:
        await log.append_many(call_at(now - timedelta(days=3), "old"))
    await tenants.set_transcript_retention(db, "acme", timedelta(days=1))

    worker = RetentionWorker(topics.replace(retention_interval_s=0.05))
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        await eventually(
            lambda: scalar(
                db,
                "SELECT count(*) FROM memstream.subject_keys"
                " WHERE subject_hash LIKE 'transcripts/%%' AND destroyed_at IS NOT NULL",
            ),
            lambda destroyed: destroyed == 2,
        )
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=10)


async def test_the_cli_runs_retention_once(topics: Settings, db: AsyncConnection[Any]) -> None:
    now = datetime.now(UTC)
    await tenants.create_tenant(db, "acme", "Acme")
    await tenants.create_tenant(db, "beta", "Beta")
    async with EventLog(topics) as log:
        await log.append_many(call_at(now - timedelta(days=3), "old"))
    await tenants.set_transcript_retention(db, "acme", timedelta(days=1))

    done = _cli(topics, "retention", "run", "--json")
    assert done.returncode == 0, done.stderr
    [acme] = json.loads(done.stdout)  # beta keeps its transcripts: no entry
    assert acme["tenant"] == "acme" and acme["period_keys"] == 2  # its day and the next
    assert acme["expired_before"] == expired_before(now, timedelta(days=1)).isoformat()
    # Another process destroyed the key: this one stops opening it within its cache bound.
    await eventually(lambda: transcripts(topics), lambda found: found["old/turns"] == [0])


# -- memory retention ----------------------------------------------------------------------

OLD_WORDS = ("penicillin", "Denver", "Thursday morning", "Maria Lopez")
RECENT_SENTENCES = (
    "Hi, I live in Boulder and I'm allergic to peanuts.",
    "Could you move my cleaning to Friday morning?",
)


async def memories_of(db: AsyncConnection[Any], table: str = "memories.memories") -> list[Any]:
    """(memory id, conversation, content, state) of every memory row, by content."""
    cursor = await db.execute(
        f"SELECT memory_id, conversation_id, content, state FROM {table} ORDER BY content"
    )
    return list(await cursor.fetchall())


async def memory_log(settings: Settings) -> tuple[str, list[EmbeddingComputed]]:
    """What the log's memory events open to now: the JSON of every memory.extracted and
    memory.asserted as it decodes, and the embedding.computed events."""
    topics = Topics(settings.topic_prefix)
    texts: list[str] = []
    vectors: list[EmbeddingComputed] = []
    for topic in ("memories", "conversations", "embeddings"):
        for record in await read_topic(settings, topics.name(topic)):
            event = decode_event(record.value)
            if isinstance(event, MemoryExtracted | MemoryAsserted):
                texts.append(event.model_dump_json())
            elif isinstance(event, EmbeddingComputed):
                vectors.append(event)
    return "\n".join(texts), vectors


async def memory_rows(db: AsyncConnection[Any], ids: set[Any]) -> dict[str, int]:
    """What the read models and the extractor hold of the memories `ids`."""
    listed = sorted(ids)
    counts = {}
    for name, query in (
        ("memories", "SELECT count(*) FROM memories.memories WHERE memory_id = ANY(%s)"),
        (
            "reinforcements",
            "SELECT count(*) FROM memories.reinforcements WHERE memory_id = ANY(%s)",
        ),
        ("memory_vectors", "SELECT count(*) FROM embeddings.embeddings WHERE memory_id = ANY(%s)"),
        (
            "links",
            "SELECT count(*) FROM embeddings.links"
            " WHERE memory_id = ANY(%s) OR linked_id = ANY(%s)",
        ),
        ("facts", "SELECT count(*) FROM extraction.facts WHERE memory_id = ANY(%s)"),
        ("summary_memories", "SELECT count(*) FROM summarizer.memories WHERE memory_id = ANY(%s)"),
    ):
        counts[name] = await scalar(db, query, *([listed] * query.count("%s")))
    return counts


async def test_after_the_memory_retention_old_memories_are_unreadable_and_forgotten(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    now = datetime.now(UTC)
    await tenants.create_tenant(db, "acme", "Acme")  # no transcript retention
    projections = pipeline()
    async with EventLog(topics) as log, running(topics, projections):
        # Three days ago the caller said they live in Denver, are allergic to penicillin,
        # want their cleaning moved to Thursday; an hour ago, that they live in Boulder
        # (which supersedes Denver), are allergic to peanuts, want their cleaning moved to
        # Friday (a memory linked to Thursday's: their vectors are close), and their name
        # again (a reinforcement).
        await log.append_many(call_at(now - timedelta(days=3), "old"))
        await settle(topics, db, projections)
        await log.append_many(call_saying(now - timedelta(hours=1), "recent", *RECENT_SENTENCES))
        await settle(topics, db, projections)

        rows = await memories_of(db)
        old_ids = {m for m, conversation, _, _ in rows if conversation == "old"}
        recent = {content for _, conversation, content, _ in rows if conversation == "recent"}
        assert len(old_ids) == 4, rows
        assert recent == {
            "Lives in Boulder",
            "Allergic to peanuts",
            "Wants their cleaning moved to Friday morning",
        }, rows
        whole = await memory_rows(db, old_ids)
        assert whole["memories"] == 4 and whole["reinforcements"] == 1, whole
        assert whole["memory_vectors"] == 4 and whole["facts"] == 4, whole
        assert whole["summary_memories"] == 4 and whole["links"] > 0, whole
        # What the log's memory events open to holds the old memories' words, so the scan
        # below is shown to find them; their bytes never do (sealed).
        texts, vectors = await memory_log(topics)
        assert all(word in texts for word in OLD_WORDS), texts
        assert all(v.data.vector for v in vectors)

        # A day's memory retention, carried out now: the memories first said three days
        # ago expire with their day's key and the next day's (made ahead), though one of
        # them was said again an hour ago; the transcripts stay (no transcript retention).
        await tenants.set_memory_retention(db, "acme", timedelta(days=1))
        [expiry] = await carry_out_retention(db, now=now)
        assert (expiry.tenant, expiry.what, expiry.period_keys) == ("acme", "memories", 2)
        assert expiry.before == expired_before(now, timedelta(days=1))
        assert expiry.rows["memories"] == 4 and expiry.rows["memory_vectors"] == 4
        assert expiry.rows["reinforcements"] == 1 and expiry.rows["facts"] == 4
        assert expiry.rows["summary_memories"] == 4 and expiry.rows["links"] == whole["links"]
        assert await memory_rows(db, old_ids) == dict.fromkeys(whole, 0)
        assert {content for _, _, content, state in await memories_of(db)} == recent
        assert await held(db, "old") == {
            "turns": 4,
            "passages": 4,
            "passage_vectors": 4,
            "turn_count": 4,
        }

        # In the log: the old memories' contents and vectors no longer open; the recent do.
        texts, vectors = await memory_log(topics)
        assert not any(word in texts for word in OLD_WORDS), texts
        assert all(word in texts for word in ("Boulder", "peanuts", "Friday morning"))
        assert {v.data.memory_id for v in vectors if not v.data.vector} == old_ids
        raw = b"".join(
            raw_bytes(r)
            for r in await read_topic(topics, Topics(topics.topic_prefix).name("memories"))
        )
        assert not any(word.encode() in raw for word in (*OLD_WORDS, "Boulder", "peanuts"))

        # Said again now, the old facts are new memories (the extractor forgot them).
        await log.append_many(call_at(now, "again"))
        await settle(topics, db, projections)
        again = {
            content: memory_id
            for memory_id, conversation, content, state in await memories_of(db)
            if conversation == "again" and state == "active"
        }
        assert set(again) >= {
            "Allergic to penicillin",
            "Wants their cleaning moved to Thursday morning",
            "Name: Maria Lopez",
        }
        assert not set(again.values()) & old_ids

        # A second run finds nothing more to do.
        [second] = await carry_out_retention(db, now=now)
        assert second.period_keys == 0 and not any(second.rows.values())

    # A rebuild of the memories read model from the log: no expired memory, not even a
    # row for the supersession of Denver or the reinforcements' count.
    await project(topics, MemoriesProjection(), version=2)
    rebuilt = await memories_of(db, "memories_v2.memories")
    assert not {m for m, _, _, _ in rebuilt} & old_ids, rebuilt
    assert {c for _, conversation, c, _ in rebuilt if conversation == "recent"} == recent
    assert all(content for _, _, content, _ in rebuilt), rebuilt
    assert await memories_of(db) == rebuilt


async def test_the_cli_sets_and_shows_a_memory_retention(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    await tenants.create_tenant(db, "acme", "Acme")
    done = _cli(topics, "tenants", "update", "acme", "--memory-retention", "1y", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["memory_retention_s"] == 365 * 86400 and shown["transcript_retention_s"] is None
    both = _cli(
        topics, "tenants", "update", "acme", "--transcript-retention", "90d",
        "--memory-retention", "off",
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert "transcripts kept for 90 days, memories kept for ever" in both.stdout
    [listed] = json.loads(_cli(topics, "tenants", "list", "--json").stdout)
    assert listed["memory_retention_s"] is None and listed["transcript_retention_s"] == 90 * 86400
    refused = _cli(topics, "tenants", "update", "acme", "--memory-retention", "1.5y")
    assert refused.returncode == 2 and "a memory retention is" in refused.stderr
    unknown = _cli(topics, "tenants", "update", "nobody", "--memory-retention", "1y")
    assert unknown.returncode == 4, unknown.stderr
