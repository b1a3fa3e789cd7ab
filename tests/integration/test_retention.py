"""Transcript retention on the real broker and database, every projection running
(services/retention.py; docs/architecture.md, "Retention"): after the tenant's period a
call's turns and passages are unreadable in the log and gone from the read models, its
memories remain, and nothing brings the transcript back — a rebuild, a redelivery, a
late call of an expired day. The clock of a run is an argument: moved forward, the calls
of today expire too.

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
from schemas import ConversationEnded, Event, PassagesEmbedded, decode_event
from services import tenants
from services.retention import RetentionWorker, carry_out_retention, expired_before
from streams import EventLog, Settings
from streams.topics import Topics
from tests.helpers import BASE_TIME, eventually, read_topic, scalar
from tests.integration.projection_contract import project
from tests.integration.test_erasure import pipeline, running, settle
from tests.integration.test_personal_data import SENTENCES, SUBJECT, a_call
from tests.integration.test_tenants import _cli

OTHER_TENANT_SUBJECT = "beta/+15550004321"


def call_at(began: datetime, conversation_id: str, subject: str = SUBJECT) -> list[Event]:
    """test_personal_data's call (started, ended), begun at `began`."""
    return a_call(
        subject, days=(began - BASE_TIME) / timedelta(days=1), conversation_id=conversation_id
    )


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
