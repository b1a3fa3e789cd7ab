"""Erasure and export of one user, through the query API and `memstream users`, on the real
broker and database with every projection running (services/personal_data.py;
docs/security.md, "Erasure and export"): afterwards no table of the database holds the
user's number, name or words; and late events, which never bring a forgotten user back
(projections/erasures.py, the log's refusal in streams/producer.py).

The caller, their call and their words are test_personal_data.py's: SUBJECT (PHONE) says
SENTENCES and has the asserted memory MEMORY_TEXT; OTHER is another caller of the tenant.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from psycopg import AsyncConnection, sql

from projections.conversations import ConversationsProjection
from projections.embeddings.processor import EmbeddingProcessor
from projections.embeddings.projection import EmbeddingsProjection
from projections.erasures import logged_as
from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection
from projections.summaries import SummariesProjection, SummaryProcessor
from schemas import (
    IdentityCodec,
    SubjectErased,
    UserForgotten,
    decode_event,
    set_personal_codec,
)
from services import tenants
from services.ingest.app import create_app as create_ingest_app
from services.query.app import create_app as create_query_app
from services.settings import Settings
from streams import EventLog, ProjectionRunner, versions
from streams.projection import Projection
from streams.topics import Topics
from tests.helpers import call_events, read_topic, scalar
from tests.integration.ingest_fixtures import deliver, payload, tenant
from tests.integration.projection_contract import project
from tests.integration.query.corpus import EMBEDDER
from tests.integration.test_personal_data import (
    MEMORY_TEXT,
    OTHER,
    PHONE,
    SENTENCES,
    SUBJECT,
    SUMMARY_TEXT,
    a_call,
    forget,
    memory,
    raw_bytes,
)

__all__ = ["tenant"]  # a fixture used by name below

TENANT = "acme"
OTHER_PHONE = OTHER.partition("/")[2]
#: The call's rows and the summaries are the ones test_personal_data.py's call makes.
CALL = "conv-1"

#: Every table of every read model and processor state that holds a user, by subject.
SUBJECT_TABLES = (
    "conversations.users",
    "conversations.conversations",
    "conversations.turns",
    "conversations.passages",
    "memories.memories",
    "memories.reinforcements",
    "embeddings.embeddings",
    "embeddings.passage_vectors",
    "embeddings.links",
    "summaries.profiles",
    "summaries.conversation_summaries",
    "extraction_v1.facts",
    "extraction_v1.answers",
    "summarizer_v1.memories",
    "summarizer_v1.reinforcements",
    "summarizer_v1.profiles",
)
#: Every schema of a read model or processor: each keeps an erasure watermark (forgotten).
WATERMARKED = ("conversations", "memories", "embeddings", "summaries", "extraction", "summarizer")


def pipeline() -> list[Projection]:
    """Every projection memstream runs, in the order their inputs are made."""
    return [
        ConversationsProjection(),
        ExtractionProcessor(),
        MemoriesProjection(),
        EmbeddingProcessor(EMBEDDER),
        EmbeddingsProjection(),
        SummaryProcessor(debounce=timedelta(0)),
        SummariesProjection(),
    ]


@asynccontextmanager
async def running(settings: Settings, projections: Sequence[Projection]) -> AsyncIterator[None]:
    """The projections' runners at work in the background for the block."""
    runners = [ProjectionRunner(p, settings) for p in projections]
    for runner in runners:
        await runner.start()
    tasks = [asyncio.create_task(runner.run()) for runner in runners]
    try:
        yield
    finally:
        for runner in runners:
            runner.stop()
        await asyncio.gather(*tasks)


async def settle(
    settings: Settings, db: AsyncConnection[Any], projections: Sequence[Projection]
) -> None:
    """Until every projection has caught up with the log, including what the processors
    derive on the way (twice over: a processor appends while the next one catches up)."""
    for _ in range(2):
        for projection in projections:
            await versions.wait_caught_up(settings, db, projection, 1, timeout=120)


async def rows_of(db: AsyncConnection[Any], subject: str) -> dict[str, int]:
    """How many rows of `subject` each table holds (tables that do not exist: left out)."""
    found: dict[str, int] = {}
    for table in SUBJECT_TABLES:
        if await scalar(db, "SELECT to_regclass(%s) IS NOT NULL", table):
            found[table] = await scalar(
                db, f"SELECT count(*) FROM {table} WHERE subject = %s", subject
            )
    return found


async def tables_holding(db: AsyncConnection[Any], needles: Sequence[str]) -> dict[str, set[str]]:
    """A raw scan of every table of the database, in every schema but PostgreSQL's own:
    for each column that can hold text (text of any kind, JSON, arrays, tsvector... read as
    text; bytea read as bytes), which of `needles` any of its values holds. Only the
    columns that hold one: ``{"schema.table.column": {needle, ...}}``."""
    cursor = await db.execute(
        "SELECT c.table_schema, c.table_name, c.column_name, c.data_type"
        "  FROM information_schema.columns c"
        "  JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE t.table_type = 'BASE TABLE'"
        "   AND c.table_schema <> 'information_schema' AND c.table_schema NOT LIKE 'pg\\_%'"
        "   AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',"
        "                       'ARRAY', 'USER-DEFINED', 'bytea')"
    )
    columns = await cursor.fetchall()
    assert len(columns) > 50, columns  # every read model's and processor's tables
    found: dict[str, set[str]] = {}
    for schema, table, column, data_type in columns:
        value = sql.Identifier(column)
        holds = (
            sql.SQL("position(convert_to(n, 'UTF8') IN {}) > 0").format(value)
            if data_type == "bytea"
            else sql.SQL("strpos({}::text, n) > 0").format(value)
        )
        cursor = await db.execute(
            sql.SQL(
                "SELECT n FROM unnest(%s::text[]) AS n WHERE EXISTS (SELECT 1 FROM {}.{} WHERE {})"
            ).format(sql.Identifier(schema), sql.Identifier(table), holds),
            [list(needles)],
        )
        held = {row[0] for row in await cursor.fetchall()}
        if held:
            found[f"{schema}.{table}.{column}"] = held
    return found


async def conversations_in(db: AsyncConnection[Any], table: str, subject: str) -> set[str]:
    """The conversations `table` holds rows of `subject` about."""
    cursor = await db.execute(
        f"SELECT DISTINCT conversation_id FROM {table} WHERE subject = %s", [subject]
    )
    return {row[0] for row in await cursor.fetchall()}


@asynccontextmanager
async def query_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_query_app(settings, embedder=EMBEDDER)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://query", timeout=60
        ) as client:
            yield client


@asynccontextmanager
async def ingest_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An ingest service process of its own (what it remembers of earlier deliveries)."""
    app = create_ingest_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client


async def keys(db: AsyncConnection[Any]) -> dict[str, str]:
    """Tenant acme and one key of each scope: scope -> token."""
    await tenants.create_tenant(db, TENANT, "Acme Dental", default_region="US")
    return {
        scope: (await tenants.issue_api_key(db, TENANT, scope, [scope])).token
        for scope in tenants.SCOPES
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def memstream(settings: Settings, *args: str) -> tuple[int, bytes, bytes]:
    """`memstream ARGS` as a process of its own, awaited without blocking the event loop
    (the projections run in this one meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        env={**os.environ, **settings.to_env(), "MEMSTREAM_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return process.returncode, stdout, stderr


async def the_calls(settings: Settings) -> None:
    """SUBJECT's call and asserted memory, and OTHER's call."""
    async with EventLog(settings) as log:
        await log.append_many([*a_call(), memory(), *a_call(OTHER, conversation_id="conv-2")])


def secrets_of(extracted: Sequence[str] = ()) -> list[str]:
    """What no record and no export may hold once SUBJECT is forgotten."""
    return [PHONE, PHONE[2:], "Maria Lopez", "crm-4471", *SENTENCES, MEMORY_TEXT, SUMMARY_TEXT,
            *extracted, "penicillin"]  # fmt: skip


async def assert_no_record_holds(settings: Settings, secrets: Sequence[str]) -> None:
    """No record of any topic (the DLQ and the audit trail included) holds any of
    `secrets` in its bytes, and SUBJECT's records open no more (but user.forgotten)."""
    topics = Topics(settings.topic_prefix)
    for name in topics.all():
        for record in await read_topic(settings, name):
            seen = raw_bytes(record)
            for secret in secrets:
                assert secret.encode() not in seen, (name, secret)
            if name not in (topics.dlq, topics.audit):
                try:
                    event = decode_event(record.value)
                except SubjectErased:
                    continue
                assert event.subject != SUBJECT or isinstance(event, UserForgotten), event.type


# -- erasure -------------------------------------------------------------------------------


async def test_forgetting_through_the_api_purges_every_read_model_and_leaves_no_trace_in_the_log(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    tokens = await keys(db)
    await the_calls(topics)
    projections = pipeline()
    async with running(topics, projections), query_api(topics) as api:
        await settle(topics, db, projections)
        before = await rows_of(db, SUBJECT)
        # Every read model held the caller: their call, their memories, their summary.
        held = ("conversations.turns", "memories.memories", "embeddings.embeddings",
                "embeddings.passage_vectors", "summaries.conversation_summaries")  # fmt: skip
        for table in held:
            assert before[table] > 0, (table, before)
        cursor = await db.execute(
            "SELECT content FROM memories.memories WHERE subject = %s AND origin = 'extracted'",
            [SUBJECT],
        )
        extracted = [row[0] for row in await cursor.fetchall()]
        assert any("penicillin" in text for text in extracted)
        other_before = await rows_of(db, OTHER)

        answer = await api.delete(
            f"/v1/users/{PHONE}?reason=ticket-42",
            headers={**bearer(tokens["admin"]), "X-Memstream-Wait-Ms": "10000"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "forgotten" and body["user"] == PHONE
        assert body["held"]["conversations"] == 1 and body["held"]["memories"] >= 2
        assert answer.headers["X-Memstream-After"] == body["position"]

        # Answered 200: every live projection has applied it; nothing of the caller is left.
        assert set((await rows_of(db, SUBJECT)).values()) == {0}
        assert await rows_of(db, OTHER) == other_before
        assert (
            await scalar(
                db, "SELECT count(*) FROM memstream.subject_keys WHERE erased_at IS NOT NULL"
            )
            == 1
        )

        # An export finds nothing; forgetting again, or someone never seen, answers the same.
        export = await api.get(f"/v1/users/{PHONE}/export", headers=bearer(tokens["admin"]))
        assert export.status_code == 404 and export.json()["error"]["code"] == "not_found"
        for user in (PHONE, "+15550000000"):
            again = await api.delete(f"/v1/users/{user}", headers=bearer(tokens["admin"]))
            assert again.status_code == 200, again.text
            assert set(again.json()["held"].values()) == {0}
    await assert_no_record_holds(topics, secrets_of(extracted))


async def test_after_an_erasure_no_table_of_the_database_holds_the_callers_number_name_or_words(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    tokens = await keys(db)
    # The caller's call and memory, and another caller's call (other number, other words).
    async with EventLog(topics) as log:
        await log.append_many([*a_call(), memory(), *call_events(TENANT, 1)])
    needles = (PHONE[2:], "Maria Lopez", SENTENCES[1])  # digits, name, a sentence of theirs
    projections = pipeline()
    async with running(topics, projections), query_api(topics) as api:
        await settle(topics, db, projections)
        # The scan finds each of them, in the read models and the processors' state.
        before = await tables_holding(db, needles)
        for needle in needles:
            assert any(needle in held for held in before.values()), (needle, before)
        for column in ("conversations_v1.users.phone", "conversations_v1.turns.text",
                       "conversations_v1.users.display_name", "summarizer_v1.profiles.subject",
                       "extraction_v1.facts.subject"):  # fmt: skip
            assert column in before, (column, before)
        other = await rows_of(db, f"{TENANT}/+15550000000")

        answer = await api.delete(
            f"/v1/users/{PHONE}",
            headers={**bearer(tokens["admin"]), "X-Memstream-Wait-Ms": "10000"},
        )
        assert answer.status_code == 200, answer.text
        await settle(topics, db, projections)

        # Not a trace of them in any table of any schema: every watermark names them by
        # their pseudonym.
        assert await tables_holding(db, needles) == {}
        for schema in WATERMARKED:
            cursor = await db.execute(f"SELECT tenant, subject FROM {schema}_v1.forgotten")
            assert await cursor.fetchall() == [(TENANT, logged_as(SUBJECT))], schema
        assert await rows_of(db, f"{TENANT}/+15550000000") == other


async def test_memstream_users_forget_waits_for_every_read_model_then_succeeds(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    await keys(db)
    await the_calls(topics)
    projections = pipeline()
    async with running(topics, projections):
        await settle(topics, db, projections)
        assert (await rows_of(db, SUBJECT))["conversations.turns"] == 4
        code, out, err = await memstream(
            topics, "users", "forget", TENANT, PHONE, "--reason", "ticket-43", "--json"
        )
        assert code == 0, err.decode()
        result = orjson.loads(out)
        assert result["status"] == "forgotten" and result["waiting_for"] == {}
        assert result["held"]["conversations"] == 1
        assert set(result["projections"]) == {p.name for p in projections}
        assert set((await rows_of(db, SUBJECT)).values()) == {0}
        assert (await rows_of(db, OTHER))["conversations.turns"] == 4

        code, _, err = await memstream(topics, "users", "export", TENANT, PHONE)
        assert code == 4, err.decode()  # nothing held any more
        # Forgetting again succeeds and says there was nothing left.
        code, out, err = await memstream(topics, "users", "forget", TENANT, PHONE)
        assert code == 0, err.decode()
        assert f"forgot {SUBJECT}: the read models held nothing" in out.decode()
    await assert_no_record_holds(topics, secrets_of())


async def test_an_erasure_not_yet_applied_everywhere_answers_202_with_the_position_to_wait_on(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    tokens = await keys(db)
    await the_calls(topics)
    projection = ConversationsProjection()
    await project(topics, projection)  # live, and not running now
    async with query_api(topics) as api:
        answer = await api.delete(
            f"/v1/users/{PHONE}", headers={**bearer(tokens["admin"]), "X-Memstream-Wait-Ms": "0"}
        )
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "pending"
        assert set(body["waiting_for"]) == {"conversations"}
        assert answer.headers["X-Memstream-After"] == body["position"]
        # The key is destroyed at once, whatever the read models' progress.
        assert (
            await scalar(
                db, "SELECT count(*) FROM memstream.subject_keys WHERE erased_at IS NOT NULL"
            )
            == 1
        )

        await project(topics, projection)
        after = await api.get(
            f"/v1/users/{PHONE}",
            headers={**bearer(tokens["admin"]), "X-Memstream-After": body["position"]},
        )
        assert after.status_code == 404  # read-your-writes on the position: purged


async def test_only_an_admin_key_may_forget_or_export_a_user(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    tokens = await keys(db)
    await the_calls(topics)
    async with query_api(topics) as api:
        for scope, token in tokens.items():
            if scope == "admin":
                continue
            for method, path in (("DELETE", f"/v1/users/{PHONE}"),
                                 ("GET", f"/v1/users/{PHONE}/export")):  # fmt: skip
                refused = await api.request(method, path, headers=bearer(token))
                assert refused.status_code == 403, (scope, method, refused.text)
                assert refused.json()["error"]["code"] == "insufficient_scope"
    # Nothing was erased.
    assert (
        await scalar(db, "SELECT count(*) FROM memstream.subject_keys WHERE erased_at IS NOT NULL")
        == 0
    )
    records = await read_topic(topics, Topics(topics.topic_prefix).conversations)
    assert not any(isinstance(decode_event(r.value), UserForgotten) for r in records)


# -- export --------------------------------------------------------------------------------


async def test_an_export_holds_the_users_memories_turns_and_events_and_nothing_of_another(
    topics: Settings, db: AsyncConnection[Any], tmp_path: Path
) -> None:
    tokens = await keys(db)
    await the_calls(topics)
    projections = pipeline()
    async with running(topics, projections):
        await settle(topics, db, projections)
    async with query_api(topics) as api:
        answer = await api.get(f"/v1/users/{PHONE}/export", headers=bearer(tokens["admin"]))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()

    assert document["user"] == PHONE and document["tenant"] == TENANT
    assert document["user_record"]["phone"] == PHONE
    assert document["user_record"]["display_name"] == "Maria Lopez"
    memories = {m["content"]: m for m in document["memories"]}
    assert MEMORY_TEXT in memories  # asserted
    assert memories[MEMORY_TEXT]["origin"] == "asserted"
    extracted = [m for m in document["memories"] if m["origin"] == "extracted"]
    assert any("penicillin" in m["content"] for m in extracted)
    assert all(m["provenance"][0]["conversation_id"] == CALL for m in extracted)
    [conversation] = document["conversations"]
    assert conversation["conversation_id"] == CALL
    assert [t["text"] for t in conversation["turns"]][1:] == list(SENTENCES)
    assert conversation["passages"] and conversation["generated_summary"]["text"]
    assert document["vectors"]["memories"] and document["vectors"]["passages"]

    # The log: the caller's events, opened, in time order; vectors left out.
    types = [e["event"]["type"] for e in document["events"]]
    for expected in ("conversation.started", "conversation.ended", "memory.asserted",
                     "memory.extracted", "embedding.computed", "passages.embedded",
                     "summary.generated"):  # fmt: skip
        assert expected in types, types
    ended = next(
        e["event"] for e in document["events"] if e["event"]["type"] == "conversation.ended"
    )
    assert [t["text"] for t in ended["data"]["turns"]][1:] == list(SENTENCES)
    assert all(e["event"]["subject"] == SUBJECT for e in document["events"])
    embedded = next(
        e["event"] for e in document["events"] if e["event"]["type"] == "embedding.computed"
    )
    assert "vector" not in embedded["data"]
    scan = document["log_scan"]
    assert scan["events"] == len(document["events"]) and scan["erased"] == 0
    # Only the caller's partition of each topic was read: fewer records than the log has.
    assert scan["partitions"] < len(Topics(topics.topic_prefix).all()) * topics.partitions

    # Nothing of the other caller.
    for secret in (OTHER_PHONE, OTHER_PHONE[2:], "conv-2"):
        assert secret not in answer.text

    # `memstream users export` writes the same document (the assembly is one).
    path = tmp_path / "export.json"
    code, _, err = await memstream(topics, "users", "export", TENANT, PHONE, "--output", str(path))
    assert code == 0, err.decode()
    written = orjson.loads(path.read_bytes())
    for exported in (written, document):
        exported.pop("exported_at")
    assert written == document


# -- late events ---------------------------------------------------------------------------


@contextmanager
def without_encryption() -> Iterator[None]:
    """Personal data in clear, as a deployment without encryption keeps it: decoding
    then refuses nothing, and the read models' erasure watermarks are all that holds."""
    previous = set_personal_codec(IdentityCodec())
    try:
        yield
    finally:
        set_personal_codec(previous)


async def test_a_late_event_from_before_the_erasure_brings_the_user_back_in_no_read_model(
    topics: Settings, db: AsyncConnection[Any]
) -> None:
    settings = topics.replace(personal_data_encryption=False)
    old = a_call()  # day 0
    # A call under way at the erasure: it began a moment before, and ends after it.
    under_way = a_call(days=9.999, conversation_id="conv-5")
    projections = pipeline()
    with without_encryption():
        async with EventLog(settings) as log:
            await log.append_many([*old, memory(), *a_call(OTHER, conversation_id="conv-2")])
            async with running(settings, projections):
                await settle(settings, db, projections)
                assert (await rows_of(db, SUBJECT))["summaries.conversation_summaries"] == 1
                await log.append_many([under_way[0], forget(days=10)])
                await settle(settings, db, projections)
                assert set((await rows_of(db, SUBJECT)).values()) == {0}

                # The platform redelivers the old call after the erasure (new ingest
                # times, the same events), the call under way ends (never extracted,
                # summarised or embedded before), and then the caller calls again.
                assert under_way[1].occurred_at > forget(days=10).occurred_at
                await log.append_many([old[1], old[0], under_way[1]])
                await settle(settings, db, projections)
                assert set((await rows_of(db, SUBJECT)).values()) == {0}
                again = a_call(days=20, conversation_id="conv-9")
                await log.append_many(again)
                await settle(settings, db, projections)
                await settle(settings, db, projections)

        # The new call is a new relationship: the caller is back with it alone.
        rows = await rows_of(db, SUBJECT)
        assert rows["conversations.users"] == 1 and rows["conversations.conversations"] == 1
        assert await conversations_in(db, "conversations.turns", SUBJECT) == {"conv-9"}
        assert (
            await scalar(
                db, "SELECT conversation_count FROM conversations.users WHERE subject = %s", SUBJECT
            )
            == 1
        )
        memories = await (
            await db.execute(
                "SELECT content, conversation_id FROM memories.memories WHERE subject = %s",
                [SUBJECT],
            )
        ).fetchall()
        assert memories and {c for _, c in memories} == {"conv-9"}
        assert MEMORY_TEXT not in {m for m, _ in memories}
        assert await conversations_in(db, "summaries.conversation_summaries", SUBJECT) == {"conv-9"}
        assert await conversations_in(db, "embeddings.passage_vectors", SUBJECT) == {"conv-9"}
        # Each read model and processor recorded the erasure.
        for schema in WATERMARKED:
            assert await scalar(db, f"SELECT count(*) FROM {schema}_v1.forgotten") == 1


async def test_a_redelivered_webhook_from_before_the_erasure_is_not_appended_and_a_new_call_is(
    topics: Settings, db: AsyncConnection[Any], tenant: str
) -> None:
    admin = (await tenants.issue_api_key(db, tenant, "dpo", ["admin"])).token
    phone = "+14155550123"  # the ElevenLabs payload's caller
    subject = f"{tenant}/{phone}"
    webhook = payload("elevenlabs_post_call_transcription")
    conversations = Topics(topics.topic_prefix).conversations
    projections = [ConversationsProjection(), ExtractionProcessor(), MemoriesProjection()]
    async with running(topics, projections):
        async with ingest_api(topics) as ingest:
            first = await deliver(ingest, "elevenlabs", webhook)
            assert first.status_code == 200 and first.json()["events"][0]["position"]
        await settle(topics, db, projections)
        assert (await rows_of(db, subject))["conversations.users"] == 1

        async with query_api(topics) as api:
            forgotten = await api.delete(
                f"/v1/users/{phone}", headers={**bearer(admin), "X-Memstream-Wait-Ms": "10000"}
            )
        assert forgotten.status_code == 200, forgotten.text
        in_log = len(await read_topic(topics, conversations))

        # Another ingest process (nothing remembered of the first delivery) gets the call's
        # webhook again, and the end of a call that was under way during the erasure.
        late = payload("elevenlabs_post_call_transcription")
        late["data"]["conversation_id"] = "conv_under_way"
        erased_at = datetime.fromisoformat(forgotten.json()["forgotten_at"])
        late["data"]["metadata"]["start_time_unix_secs"] = int(erased_at.timestamp()) - 20
        async with ingest_api(topics) as ingest:
            for body in (webhook, late):
                again = await deliver(ingest, "elevenlabs", body)
                assert again.status_code == 200, again.text
                assert [e["position"] for e in again.json()["events"]] == [None]
            assert len(await read_topic(topics, conversations)) == in_log  # nothing appended

            # A call that begins after the erasure is a new relationship.
            new = payload("elevenlabs_post_call_transcription")
            new["data"]["conversation_id"] = "conv_after"
            new["data"]["metadata"]["start_time_unix_secs"] = int(erased_at.timestamp()) + 1
            appended = await deliver(ingest, "elevenlabs", new)
            assert appended.status_code == 200 and appended.json()["events"][0]["position"]
        await settle(topics, db, projections)
    user = await (
        await db.execute(
            "SELECT conversation_count FROM conversations.users WHERE subject = %s", [subject]
        )
    ).fetchone()
    assert user == (1,)
    assert await conversations_in(db, "conversations.conversations", subject) == {"conv_after"}


async def test_importing_a_call_that_began_before_the_erasure_appends_nothing_and_a_new_one(
    topics: Settings, db: AsyncConnection[Any], tenant: str, tmp_path: Path
) -> None:
    admin = (await tenants.issue_api_key(db, tenant, "dpo", ["admin"])).token
    phone = "+14155550123"  # the ElevenLabs payload's caller
    conversations = Topics(topics.topic_prefix).conversations
    async with ingest_api(topics) as ingest:
        first = await deliver(ingest, "elevenlabs", payload("elevenlabs_post_call_transcription"))
        assert first.status_code == 200 and first.json()["events"][0]["position"]
    async with query_api(topics) as api:
        forgotten = await api.delete(f"/v1/users/{phone}", headers=bearer(admin))
    assert forgotten.status_code in (200, 202), forgotten.text
    erased_at = datetime.fromisoformat(forgotten.json()["forgotten_at"])

    # An export of the platform's history: a call of theirs from before the erasure that
    # memstream never had, and one that began after it.
    lines = []
    for conversation_id, start in (("conv_earlier", erased_at - timedelta(days=3)),
                                   ("conv_after", erased_at + timedelta(seconds=1))):  # fmt: skip
        call = payload("elevenlabs_post_call_transcription")
        call["data"]["conversation_id"] = conversation_id
        call["data"]["metadata"]["start_time_unix_secs"] = int(start.timestamp())
        lines.append(orjson.dumps(call))
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    in_log = await read_topic(topics, conversations)

    code, out, err = await memstream(
        topics, "log", "import", str(path), "--tenant", tenant, "--json"
    )
    assert code == 0, err.decode()
    summary = orjson.loads(out)
    assert (summary["imported"], summary["erased"], summary["events_appended"]) == (1, 1, 1)
    appended = (await read_topic(topics, conversations))[len(in_log) :]
    assert [decode_event(r.value).correlation_id for r in appended] == ["conv_after"]

    # Imported again: the old call is still refused, the new one already there.
    code, out, err = await memstream(
        topics, "log", "import", str(path), "--tenant", tenant, "--json"
    )
    assert code == 0, err.decode()
    again = orjson.loads(out)
    assert (again["already_imported"], again["erased"], again["events_appended"]) == (1, 1, 0)
    assert len(await read_topic(topics, conversations)) == len(in_log) + 1
