"""Personal data on the log: sealed with the subject's own key, shredded with it, and
never in a record's bytes (streams/subject_keys.py; docs/architecture.md, "Personal data
and erasure"). Real Kafka and PostgreSQL; the `settings` fixture installs the encrypting
codec on the test's database, as every memstream process does."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from psycopg import AsyncConnection

from projections.conversations import ConversationsProjection
from projections.embeddings.processor import EmbeddingProcessor
from projections.extraction.processor import ExtractionProcessor
from projections.summaries import SummaryProcessor
from schemas import (
    ERASED,
    LOGICAL_TOPICS,
    ConversationEnded,
    ConversationStarted,
    Event,
    InvalidEvent,
    MemoryAsserted,
    MemoryExtracted,
    Source,
    SubjectErased,
    SummaryGenerated,
    UserForgotten,
    decode_event,
    encode_event,
    event_class,
    event_key,
    get_personal_codec,
)
from schemas.codec import PERSONAL_JSON_SCHEMA_KEY, TRANSCRIPT_JSON_SCHEMA_KEY
from services.settings import Settings
from streams import EventLog, ProjectionRunner, versions
from streams.dlq import StoredLetter
from streams.exceptions import ConfigurationError
from streams.projection import LogRecord, Projection
from streams.subject_keys import (
    SEALED,
    SEALED_TRANSCRIPT,
    MasterKey,
    MasterKeys,
    SubjectKeyCodec,
    SubjectKeyStore,
    destroy_subject_key,
    prefetch_keys,
    rotate_master_key,
)
from streams.topics import Topics
from tests.helpers import BASE_TIME, read_topic, scalar
from tests.integration.projection_contract import project, snapshot

SEALED_PREFIXES = (SEALED, SEALED_TRANSCRIPT)
EXAMPLES = Path(__file__).parent.parent / "unit" / "schemas_examples"

PHONE = "+15550001234"
SUBJECT = f"acme/{PHONE}"
OTHER = "acme/+15550009876"
SENTENCES = (
    "Hi, I live in Denver and I'm allergic to penicillin.",
    "Could you move my cleaning to Thursday morning?",
    "Of course Maria, Thursday at nine works.",
)
MEMORY_TEXT = "Prefers to be called Mia"
SUMMARY_TEXT = "Maria Lopez moved her cleaning"


def codec() -> SubjectKeyCodec:
    installed = get_personal_codec()
    assert isinstance(installed, SubjectKeyCodec)
    return installed


def a_call(
    subject: str = SUBJECT, *, days: float = 0, conversation_id: str = "conv-1"
) -> list[Event]:
    at = BASE_TIME + timedelta(days=days)
    source = Source(platform="elevenlabs", event_id=conversation_id, agent_id="agent-1")
    tenant, phone = subject.split("/")
    started = ConversationStarted.create(
        tenant=tenant,
        subject=subject,
        source=source,
        occurred_at=at,
        correlation_id=conversation_id,
        data={
            "conversation_id": conversation_id,
            "caller_phone": phone,
            "user_id": "crm-4471",
            "channel": "phone",
            "dynamic_variables": {"user_name": "Maria Lopez", "phone": phone},
        },
    )
    ended = ConversationEnded.create(
        tenant=tenant,
        subject=subject,
        source=source,
        occurred_at=at + timedelta(minutes=4),
        correlation_id=conversation_id,
        data={
            "conversation_id": conversation_id,
            "started_at": at,
            "ended_at": at + timedelta(minutes=4),
            "status": "done",
            "turns": [
                {"role": "agent", "text": "Bayview Dental, how can I help?", "offset_ms": 0},
                {"role": "user", "text": SENTENCES[0], "offset_ms": 2000},
                {"role": "user", "text": SENTENCES[1], "offset_ms": 5000},
                {
                    "role": "agent",
                    "text": SENTENCES[2],
                    "offset_ms": 8000,
                    "tool_calls": [
                        {
                            "name": "reschedule",
                            "arguments": {"caller": phone, "day": "Thursday"},
                            "result": "Rescheduled Maria Lopez to Thursday 9:00",
                        }
                    ],
                },
            ],
            "metadata": {"phone_call": {"external_number": phone}},
            "analysis": {
                "summary": SUMMARY_TEXT,
                "title": "Maria Lopez reschedules",
                "data_collected": {"patient_name": "Maria Lopez"},
            },
        },
    )
    return [started, ended]


def memory(subject: str = SUBJECT, *, days: float = 0) -> MemoryAsserted:
    return MemoryAsserted.create(
        tenant="acme",
        subject=subject,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(days=days),
        data={"memory_id": uuid.uuid4(), "content": MEMORY_TEXT, "sector": "semantic"},
    )


def forget(subject: str = SUBJECT, *, days: float) -> UserForgotten:
    return UserForgotten.create(
        tenant="acme",
        subject=subject,
        source=Source(platform="api"),
        occurred_at=BASE_TIME + timedelta(days=days),
        data={"reason": f"erasure request from {subject.split('/')[1]}", "requested_by": "dpo"},
    )


def personal_values(
    schema: dict[str, Any], value: Any, defs: dict[str, Any], mark: str = PERSONAL_JSON_SCHEMA_KEY
) -> list[Any]:
    """The values of `value` that sit in fields its JSON Schema marks as personal (`mark`:
    or as transcripts)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    if schema.get(mark):
        return [value]
    found: list[Any] = []
    for option in schema.get("anyOf", ()):
        found += personal_values(option, value, defs, mark)
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found += personal_values(sub, value[name], defs, mark)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            found += personal_values(schema["items"], item, defs, mark)
    return found


def strings(value: Any) -> list[str]:
    """The strings in a JSON value (not the keys of its objects)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


async def every_record(settings: Settings) -> list[Any]:
    """Every record on every topic, the DLQ included."""
    topics = Topics(settings.topic_prefix)
    records: list[Any] = []
    for name in (*(topics.name(t) for t in sorted(LOGICAL_TOPICS)), topics.dlq):
        records += await read_topic(settings, name)
    return records


def raw_bytes(record: Any) -> bytes:
    headers = b"".join(k.encode() + v for k, v in record.headers or ())
    return (record.key or b"") + (record.value or b"") + headers


# -- every event type -----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_event_type_round_trips_sealed(settings: Settings, path: Path) -> None:
    # A record written before encryption decodes as it was...
    plain = decode_event(path.read_bytes())
    raw = encode_event(plain)
    # ...and sealed, it decodes to the same event.
    assert decode_event(raw) == plain

    record = orjson.loads(raw)
    schema = event_class(plain.type).model_json_schema(mode="validation")
    personal = personal_values(schema, plain.model_dump(mode="json"), schema.get("$defs", {}))
    sealed = personal_values(schema, record, schema.get("$defs", {}))
    for before, after in zip(personal, sealed, strict=True):
        # Every personal value is sealed (an empty or absent one has nothing to hide)...
        assert not before or (isinstance(after, str) and after.startswith(SEALED_PREFIXES))
    # ...a transcript with the key of the day its call began too.
    transcripts = personal_values(
        schema, record, schema.get("$defs", {}), TRANSCRIPT_JSON_SCHEMA_KEY
    )
    for after in transcripts:
        assert not after or after.startswith(SEALED_TRANSCRIPT)
    assert bool(transcripts) == plain.has_transcript
    assert record["subject"].startswith(f"{plain.tenant}/{SEALED}")
    # Nor is the user's id, nor any sentence of theirs anywhere in the bytes.
    sentences = [s for v in personal for s in strings(v) if " " in s]
    for text in [plain.subject.split("/", 1)[1], *sentences]:
        assert text.encode() not in raw, text


def test_a_record_written_before_encryption_decodes_as_itself(settings: Settings) -> None:
    started, ended = a_call()
    for event in (started, ended):
        old = orjson.dumps(event.model_dump(mode="json"))  # the wire form before sealing
        assert PHONE.encode() in old
        assert decode_event(old) == event


# -- a call on every topic ---------------------------------------------------------------------


async def test_no_topic_holds_the_callers_number_or_words_in_any_record(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    call = a_call()
    async with EventLog(topics) as log:
        await log.append_many([*call, memory()])
    await project(topics, ExtractionProcessor())
    await project(topics, EmbeddingProcessor())
    await project(topics, SummaryProcessor(debounce=timedelta(0)))

    records = await every_record(topics)
    names = Topics(topics.topic_prefix)
    by_topic = {names.logical(r.topic) for r in records if r.topic != names.dlq}
    assert by_topic == {"conversations", "memories", "embeddings", "summaries"}
    events = [decode_event(r.value) for r in records]
    assert {e.subject for e in events} == {SUBJECT}
    extracted = [e.data.content for e in events if isinstance(e, MemoryExtracted)]
    assert any("penicillin" in content for content in extracted)
    summaries = [e.data.text for e in events if isinstance(e, SummaryGenerated)]
    assert summaries

    secrets = [
        PHONE,
        PHONE[2:],  # the digits without the country code
        "Maria Lopez",
        "crm-4471",
        *SENTENCES,
        MEMORY_TEXT,
        SUMMARY_TEXT,
        *extracted,
        *summaries,
        "penicillin",
    ]
    for record in records:
        seen = raw_bytes(record)
        for secret in secrets:
            assert secret.encode() not in seen, (names.logical(record.topic), secret)
        # One subject, one pseudonymous key: its events share a partition on every topic.
        assert record.key == event_key(call[0])


# -- erasure ----------------------------------------------------------------------------------


async def test_after_erasure_the_users_events_do_not_decode_and_a_rebuild_keeps_no_trace(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    projection = ConversationsProjection()
    async with EventLog(topics) as log:
        await log.append_many([*a_call(), *a_call(OTHER, conversation_id="conv-2")])
        await project(topics, projection)
        assert await scalar(db, "SELECT count(*) FROM conversations.turns") == 8

        erasure = forget(days=10)
        await log.append(erasure)  # destroys the key first
        await project(topics, projection)

    keys = await (
        await db.execute(
            "SELECT version, wrapped_key IS NULL, master_key_id IS NULL, erased_at"
            " FROM memstream.subject_keys WHERE subject_hash = %s ORDER BY version",
            [codec().store.subject_hash(SUBJECT)],
        )
    ).fetchall()
    # The key of everything before the erasure: a tombstone, no key material. The
    # erasure's own reason was sealed with the subject's next key.
    assert keys == [(1, True, True, erasure.occurred_at), (2, False, False, None)]

    conversations = await read_topic(topics, Topics(topics.topic_prefix).conversations)
    decoded: list[Event] = []
    erased = 0
    for record in conversations:
        try:
            decoded.append(decode_event(record.value))
        except SubjectErased:
            erased += 1
    assert erased == 2  # the user's call; the erasure itself still decodes
    assert [(e.type, e.subject) for e in decoded if e.subject == SUBJECT] == [
        ("user.forgotten", SUBJECT)
    ]
    forgotten = next(e for e in decoded if isinstance(e, UserForgotten))
    assert forgotten.data.reason == f"erasure request from {PHONE}"  # sealed with a new key

    # The live version purged the user; version 2, rebuilt from offset 0 after the erasure,
    # never saw them, and is row for row the same.
    await project(topics, ConversationsProjection(), version=2)
    live = await snapshot(db, "conversations_v1", projection.tables)
    rebuilt = await snapshot(db, "conversations_v2", projection.tables)
    assert rebuilt == live
    every_value = orjson.dumps(rebuilt, default=str)
    for trace in (PHONE, "conv-1", ERASED):  # the caller's number, call and any marker
        assert trace.encode() not in every_value
    assert await scalar(db, "SELECT count(*) FROM conversations_v2.users") == 1  # OTHER

    for record in await every_record(topics):
        assert PHONE[2:].encode() not in raw_bytes(record)


async def test_a_late_event_from_before_the_erasure_is_erased_and_a_later_call_is_not(
    topics: Settings,
) -> None:
    conversations = Topics(topics.topic_prefix).conversations
    # A platform redelivering an old webhook, and the end of a call under way at the
    # erasure (it began before it, ended after it).
    late = a_call(conversation_id="conv-1")[1]
    under_way = a_call(days=9.999, conversation_id="conv-5")[1]
    comeback = a_call(days=20, conversation_id="conv-9")
    async with EventLog(topics) as log:
        await log.append_many([*a_call(), forget(days=10)])
        # The log refuses them; the call that begins after the erasure is appended.
        positions = await log.append_many([late, under_way, *comeback])
        assert positions[:2] == [None, None] and all(positions[2:])
        # Appended anyway, as by a process that has not learnt of the erasure yet (or has
        # derived them late from what the user said before it): sealed with the
        # subject's new key, and still erased.
        for event in (late, under_way):
            await log.append_raw(conversations, event_key(event), encode_event(event), [])
    records = await read_topic(topics, conversations)
    outcomes: list[str] = []
    for record in records:
        try:
            outcomes.append(decode_event(record.value).type)
        except SubjectErased:
            outcomes.append("erased")
    assert outcomes == [
        "erased",
        "erased",
        "user.forgotten",
        "conversation.started",
        "conversation.ended",
        "erased",
        "erased",
    ]
    # The call after, and the late ones, were sealed with the user's second key.
    assert await scalar_keys(topics) == [(1, False), (2, True)]


async def scalar_keys(settings: Settings) -> list[tuple[int, bool]]:
    async with await AsyncConnection.connect(settings.require_database()) as conn:
        cursor = await conn.execute(
            "SELECT version, wrapped_key IS NOT NULL FROM memstream.subject_keys"
            " WHERE subject_hash !~ '/' ORDER BY version"  # subjects' keys, not periods
        )
        return [(v, live) for v, live in await cursor.fetchall()]


async def test_events_written_before_encryption_are_erased_by_their_date(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    old = a_call()
    async with EventLog(topics) as log:
        for event in old:  # plain, as a release before encryption appended them
            await log.append_raw(
                Topics(topics.topic_prefix).conversations,
                event.subject.encode(),
                orjson.dumps(event.model_dump(mode="json")),
                [],
            )
        assert await destroy_subject_key(db, "acme", SUBJECT, erased_at=BASE_TIME + timedelta(1))
        # A second erasure at the same time is a no-op (a replayed user.forgotten).
        assert not await destroy_subject_key(db, "acme", SUBJECT, erased_at=BASE_TIME)
    for record in await read_topic(topics, Topics(topics.topic_prefix).conversations):
        with pytest.raises(SubjectErased):
            decode_event(record.value)
    await project(topics, ConversationsProjection())
    assert await scalar(db, "SELECT count(*) FROM conversations.users") == 0


async def test_a_batch_of_records_written_before_encryption_learns_its_subjects_at_once(
    settings: Settings, db: AsyncConnection[Any]
) -> None:
    # A rebuild of a log from before encryption: each record's subject is looked up for
    # its erasures. The batch's prefetch learns them all in one query, erased or not, so
    # decoding asks the database nothing per subject.
    erased, kept = "acme/+14155550101", "acme/+14155550102"
    plain = [
        orjson.dumps(event.model_dump(mode="json"))
        for subject in (erased, kept)
        for event in a_call(subject)
    ]
    assert await destroy_subject_key(db, "acme", erased, erased_at=BASE_TIME + timedelta(1))
    codec = get_personal_codec()
    assert isinstance(codec, SubjectKeyCodec)
    store = codec.store
    hashes = [("acme", store.subject_hash(s)) for s in (erased, kept)]
    for subject in hashes:
        store.forget(*subject)
    prefetch_keys(plain)
    assert all(subject in store._subjects for subject in hashes)
    assert store._subjects[hashes[0]].erased_at == BASE_TIME + timedelta(1)
    assert store._subjects[hashes[1]].erased_at is None
    outcomes = []
    for record in plain:
        try:
            outcomes.append(decode_event(record).subject)
        except SubjectErased:
            outcomes.append("erased")
    assert outcomes == ["erased", "erased", kept, kept]


async def test_another_process_stops_using_a_destroyed_key_within_the_cache_bound(
    settings: Settings, db: AsyncConnection[Any]
) -> None:
    started = a_call()[0]
    raw = encode_event(started)  # sealed by this process's store
    other = SubjectKeyStore(settings.require_database(), codec().store.master, cache_s=0.2)
    try:
        elsewhere = SubjectKeyCodec(other)
        text = orjson.loads(raw)["data"]["user_id"]
        assert elsewhere.decode(SUBJECT, text) == "crm-4471"  # cached from now on

        assert await destroy_subject_key(db, "acme", SUBJECT)
        await asyncio.sleep(0.3)
        assert elsewhere.decode(SUBJECT, text) == ERASED
        assert elsewhere.open_subject(orjson.loads(raw)["subject"]) is None
    finally:
        other.close()


async def test_a_value_sealed_for_one_subject_does_not_open_in_another_s_event(
    settings: Settings,
) -> None:
    record = orjson.loads(encode_event(memory()))
    record["data"]["content"] = orjson.loads(encode_event(memory(OTHER)))["data"]["content"]
    with pytest.raises(InvalidEvent, match="another subject"):
        decode_event(record)


# -- dead letters ---------------------------------------------------------------------------


class RejectsTheCaller(Projection):
    """Fails on every event of SUBJECT: they go to the DLQ."""

    name: ClassVar[str] = "rejects"
    topics: ClassVar[tuple[str, ...]] = ("conversations",)
    tables: ClassVar[tuple[str, ...]] = ()

    def schema_sql(self) -> str:
        return "SELECT 1"

    async def apply(self, conn: AsyncConnection[Any], prepared: Sequence[LogRecord]) -> None:
        if any(r.event.subject == SUBJECT for r in prepared):
            raise ValueError("rejected by the test")


async def test_a_dead_letter_carries_the_sealed_record_and_is_shredded_with_it(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    settings = topics.replace(poison_retries=0, retry_backoff_ms=1)
    call = a_call()
    async with EventLog(settings) as log:
        await log.append_many(call)
    runner = ProjectionRunner(RejectsTheCaller(), settings)
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        await versions.wait_caught_up(settings, db, RejectsTheCaller(), 1, timeout=60)
    finally:
        runner.stop()
        await task

    letters = await read_topic(settings, Topics(settings.topic_prefix).dlq)
    assert len(letters) == 2
    for record in letters:
        for secret in (PHONE, PHONE[2:], "Maria Lopez", *SENTENCES):
            assert secret.encode() not in raw_bytes(record)
        assert record.key == event_key(call[0])
    stored = [StoredLetter.from_record(r.value, r.partition, r.offset) for r in letters]
    assert sorted(letter.event().type for letter in stored) == sorted(e.type for e in call)

    async with EventLog(settings) as log:
        await log.append(forget(days=10))
    for letter in stored:
        with pytest.raises(SubjectErased):
            letter.event()


# -- the master key ---------------------------------------------------------------------------


async def test_rotating_the_master_key_rewraps_every_key_and_changes_no_record(
    settings: Settings, db: AsyncConnection[Any]
) -> None:
    raw = encode_event(a_call()[1])
    codec().store.check()  # both deployment keys exist, as in a started process
    old = codec().store.master.current
    new = MasterKey(os.urandom(32))

    # The subject's key, the key of the call's day, the two deployment keys.
    assert await rotate_master_key(db, MasterKeys(new, (old,))) == 4
    assert await rotate_master_key(db, MasterKeys(new, (old,))) == 0
    assert (
        await scalar(
            db, "SELECT count(*) FROM memstream.subject_keys WHERE master_key_id = %s", new.id
        )
        == 2
    )

    fresh = SubjectKeyStore(settings.require_database(), MasterKeys(new))
    try:
        fresh.check()
        opened = SubjectKeyCodec(fresh).open_subject(orjson.loads(raw)["subject"])
        assert opened is not None and opened[0] == SUBJECT
        transcript = SubjectKeyCodec(fresh).decode(SUBJECT, orjson.loads(raw)["data"]["turns"])
        assert SENTENCES[0] in transcript
    finally:
        fresh.close()
    stale = SubjectKeyStore(settings.require_database(), MasterKeys(old))
    try:
        with pytest.raises(ConfigurationError, match="not configured"):
            stale.check()
    finally:
        stale.close()


def test_a_master_key_is_base64_of_32_bytes(settings: Settings) -> None:
    from streams.subject_keys import load_master_keys

    with pytest.raises(ConfigurationError, match="MEMSTREAM_MASTER_KEY"):
        load_master_keys(settings.replace(master_key=base64.b64encode(b"short").decode()))
