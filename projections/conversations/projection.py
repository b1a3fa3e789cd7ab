"""Projects ``conversation.*`` and ``user.forgotten`` events into users, conversations, turns
and passages (each turn with its neighbours as context, full-text searchable: passages.py).

``prepare`` (pure Python, run by the runtime in its fetch stage, overlapping the previous
batch's transaction) folds a batch: events in log order per subject become one row per
conversation and per user, and the turns of each finished conversation. The batch is cut
at each ``user.forgotten`` into runs, folded apart, so an erasure is applied exactly where
it stands in the log whatever the batch boundaries. It also renders the rows for
transport: conversations and users as one JSON document each (orjson), turns and
passages as ``COPY`` payloads.

Erasure, as in every read model (projections/erasures.py): ``user.forgotten`` records its
time in ``forgotten`` (by the user's pseudonym) and deletes the user's conversations that
began at or before it; a conversation event arriving later about a call that began at or
before it (a platform redelivering an old webhook, ``memstream log import``, ``memstream
dlq replay``) is dropped, so it never brings the user back. A call that begins after the
erasure is a new relationship: it is projected, and the user comes back with it alone.
``apply`` reads the watermarks of the batch's users in one query and, only when one
covers an event of the batch, folds the batch again without the events it covers.

``apply`` — inside the transaction, on the runtime's critical path — then only ships
those bytes: one statement expands the JSON server-side (``json_populate_recordset``)
and upserts conversations and users, one deletes the transcripts (turns and passages)
being replaced, two COPYs write the turns and the passages. (Measured: psycopg adapting
``unnest`` array parameters cost ~1.4 µs per value in Python, a per-row ``await
write_row`` ~2 µs per turn.)

Every write is idempotent per event (upserts with order-independent merges, turns
replaced as a whole, a user's conversation count grown only by conversations that were
not there before), because the log can hold the same event twice when a platform
redelivers a webhook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import orjson
from psycopg import AsyncConnection

from projections.conversations.passages import passages
from projections.erasures import (
    FORGOTTEN_SQL,
    Erasure,
    Erasures,
    earliest,
    record_erasures,
    refolded,
)
from schemas import (
    ConversationEnded,
    ConversationFailed,
    ConversationStarted,
    Turn,
    UserForgotten,
)
from streams.copy import COPY_NULL, copy_escape
from streams.projection import LogRecord, Projection
from streams.topics import CONVERSATIONS

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()

#: When a conversation row's call began, for erasure: its start, or (a failed call the
#: platform reported without one) when the row was last written.
_BEGAN = "COALESCE(c.started_at, c.updated_at)"

_CONVERSATION_COLUMNS = (
    "tenant, conversation_id, subject, platform, agent_id, channel, status, platform_status,"
    " started_at, ended_at, duration_secs, turn_count, summary, title, successful, analysis,"
    " metadata, dynamic_variables, failure_reason, updated_at"
)
_USER_COLUMNS = "tenant, subject, user_id, phone, display_name, first_seen, last_seen"

# One statement: the batch's conversations (JSON, parameter 1) upserted; then its users
# (JSON, parameter 2), each counting the conversations that were new.
_UPSERT_SQL = f"""
WITH upserted AS (
    INSERT INTO conversations AS c ({_CONVERSATION_COLUMNS})
    SELECT {_CONVERSATION_COLUMNS} FROM json_populate_recordset(NULL::conversations, %s::json)
    ON CONFLICT (tenant, conversation_id) DO UPDATE SET
        agent_id = COALESCE(EXCLUDED.agent_id, c.agent_id),
        channel = COALESCE(EXCLUDED.channel, c.channel),
        -- Final states outrank "started": a late status update never reopens a call.
        status = CASE WHEN EXCLUDED.status <> 'started' OR c.status = 'started'
                      THEN EXCLUDED.status ELSE c.status END,
        platform_status = COALESCE(EXCLUDED.platform_status, c.platform_status),
        started_at = COALESCE(EXCLUDED.started_at, c.started_at),
        ended_at = COALESCE(EXCLUDED.ended_at, c.ended_at),
        duration_secs = COALESCE(EXCLUDED.duration_secs, c.duration_secs),
        -- Only conversation.ended carries the transcript (and a platform status).
        turn_count = CASE WHEN EXCLUDED.platform_status IS NULL THEN c.turn_count
                          ELSE EXCLUDED.turn_count END,
        summary = COALESCE(EXCLUDED.summary, c.summary),
        title = COALESCE(EXCLUDED.title, c.title),
        successful = COALESCE(EXCLUDED.successful, c.successful),
        analysis = COALESCE(EXCLUDED.analysis, c.analysis),
        metadata = c.metadata || EXCLUDED.metadata,
        dynamic_variables = c.dynamic_variables || EXCLUDED.dynamic_variables,
        failure_reason = COALESCE(EXCLUDED.failure_reason, c.failure_reason),
        updated_at = GREATEST(c.updated_at, EXCLUDED.updated_at)
    -- xmax is 0 on a freshly inserted row version: the conversation is new.
    RETURNING c.tenant, c.subject, (c.xmax = 0) AS inserted
), new_conversations AS (
    SELECT tenant, subject, (count(*) FILTER (WHERE inserted))::int AS n
      FROM upserted GROUP BY tenant, subject
)
INSERT INTO users AS u ({_USER_COLUMNS}, conversation_count)
SELECT {", ".join(f"s.{c.strip()}" for c in _USER_COLUMNS.split(","))}, COALESCE(n.n, 0)
  FROM json_populate_recordset(NULL::users, %s::json) AS s
  LEFT JOIN new_conversations n ON n.tenant = s.tenant AND n.subject = s.subject
ON CONFLICT (tenant, subject) DO UPDATE SET
    user_id = COALESCE(EXCLUDED.user_id, u.user_id),
    phone = COALESCE(EXCLUDED.phone, u.phone),
    display_name = COALESCE(EXCLUDED.display_name, u.display_name),
    first_seen = LEAST(u.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(u.last_seen, EXCLUDED.last_seen),
    -- Grows only by conversations that were new: a redelivered event adds nothing.
    conversation_count = u.conversation_count + EXCLUDED.conversation_count
"""

# The transcripts of the conversations that ended in this batch are replaced whole.
_DELETE_TRANSCRIPT_SQL = [
    f"""
    DELETE FROM {table} WHERE (tenant, conversation_id) IN
        (SELECT tenant, conversation_id FROM json_to_recordset(%s::json)
                                          AS k(tenant text, conversation_id text))
    """
    for table in ("turns", "passages")
]

# An erasure (recorded in `forgotten` first): the user's conversations that began at or
# before it go with their transcripts, then the user's row unless it holds only what came
# after (a user.forgotten seen again must not delete a later relationship).
_FORGET_SQL = [
    *(
        f"""
        DELETE FROM {table} t USING conversations c
         WHERE t.tenant = c.tenant AND t.conversation_id = c.conversation_id
           AND c.tenant = %(tenant)s AND c.subject = %(subject)s
           AND {_BEGAN} <= %(at)s
        """
        for table in ("turns", "passages")
    ),
    f"""
    DELETE FROM conversations c
     WHERE c.tenant = %(tenant)s AND c.subject = %(subject)s AND {_BEGAN} <= %(at)s
    """,
    """
    DELETE FROM users u
     WHERE u.tenant = %(tenant)s AND u.subject = %(subject)s
       AND (u.first_seen <= %(at)s
            OR NOT EXISTS (SELECT 1 FROM conversations c
                            WHERE c.tenant = u.tenant AND c.subject = u.subject))
    """,
]
_PASSAGES_INDEX_SQL = "CREATE INDEX IF NOT EXISTS passages_by_subject ON passages (tenant, subject)"
# GIN over (subject, search): needs btree_gin (migration 0012) for the text column.
_PASSAGES_SEARCH_INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS passages_by_subject_search ON passages USING gin (subject, search)"
)
_INDEX_BUILD_MEMORY = "256MB"

_COPY_TURNS_SQL = (
    "COPY turns (tenant, conversation_id, seq, subject, role, text, offset_ms, tool_calls)"
    " FROM STDIN"
)
_COPY_PASSAGES_SQL = (
    "COPY passages (tenant, conversation_id, seq, subject, role, spoken_at, text, context)"
    " FROM STDIN"
)


@dataclass
class _Conversation:
    tenant: str
    conversation_id: str
    subject: str
    platform: str
    updated_at: datetime
    agent_id: str | None = None
    channel: str | None = None
    status: str = "started"
    platform_status: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_secs: float | None = None
    # The transcript as COPY lines; None: this batch says nothing about the transcript.
    turns: list[str] | None = None
    # Its passages as COPY lines (with the transcript).
    passages: list[str] = field(default_factory=list)
    summary: str | None = None
    title: str | None = None
    successful: bool | None = None
    analysis: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    dynamic_variables: dict[str, Any] = field(default_factory=dict)
    failure_reason: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "conversation_id": self.conversation_id,
            "subject": self.subject,
            "platform": self.platform,
            "agent_id": self.agent_id,
            "channel": self.channel,
            "status": self.status,
            "platform_status": self.platform_status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_secs": self.duration_secs,
            "turn_count": len(self.turns) if self.turns is not None else 0,
            "summary": self.summary,
            "title": self.title,
            "successful": self.successful,
            "analysis": self.analysis,
            "metadata": self.metadata,
            "dynamic_variables": self.dynamic_variables,
            "failure_reason": self.failure_reason,
            "updated_at": self.updated_at,
        }


@dataclass
class _User:
    tenant: str
    subject: str
    first_seen: datetime
    last_seen: datetime
    user_id: str | None = None
    phone: str | None = None
    display_name: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "subject": self.subject,
            "user_id": self.user_id,
            "phone": self.phone,
            "display_name": self.display_name,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


@dataclass(frozen=True)
class Rows:
    """The conversation events of a run (between erasures) folded and rendered."""

    conversations: str  # JSON array of conversation rows
    users: str  # JSON array of user rows
    ended: str  # JSON array of {tenant, conversation_id} whose transcript is replaced
    turns: bytes  # COPY text payload
    passages: bytes  # COPY text payload


@dataclass(frozen=True)
class PreparedBatch:
    """A batch folded and rendered for transport, ready for `apply`."""

    steps: tuple[Rows | Erasure, ...]  # each erasure applied where it stands between runs
    # Per user, the earliest call the batch's events are about (projections.erasures.
    # earliest): what an erasure recorded earlier may cover.
    began: str
    # The batch itself: folded again, rarely, without what an earlier erasure covers.
    records: Sequence[LogRecord]


class ConversationsProjection(Projection):
    name: ClassVar[str] = "conversations"
    topics: ClassVar[tuple[str, ...]] = (CONVERSATIONS,)
    tables: ClassVar[tuple[str, ...]] = (
        "users",
        "conversations",
        "turns",
        "passages",
        "passage_stats",
        "forgotten",
    )

    def __init__(self) -> None:
        self._search_indexed = False

    def schema_sql(self) -> str:
        return SCHEMA_SQL + FORGOTTEN_SQL

    async def caught_up(self, conn: AsyncConnection[Any]) -> None:
        """Build the indexes that find one user's passages once the version has caught up:
        ``passages_by_subject`` (all of them) and, where btree_gin is installed (migration
        0012), ``passages_by_subject_search`` (those containing a word of a question).

        An index maintained row by row slows a rebuild that writes millions of passages
        (the transcript index this replaced, measured on 120,000 turns written by COPY in
        batches: 0.7 s without it, 2.1 s with it); built in one pass it is far cheaper.
        Until they exist, search on this version scans the passages: the same answers,
        slower. A live version catches up right after its runner starts, so it has the
        indexes from then on."""
        if self._search_indexed:
            return
        cursor = await conn.execute(
            "SELECT to_regclass('passages_by_subject') IS NOT NULL,"
            " to_regclass('passages_by_subject_search') IS NOT NULL,"
            " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gin')"
        )
        row = await cursor.fetchone()
        assert row is not None
        listed, searchable, btree_gin = row
        if listed and (searchable or not btree_gin):
            self._search_indexed = True  # in the catalog: committed
            return
        await conn.execute(f"SET LOCAL maintenance_work_mem = '{_INDEX_BUILD_MEMORY}'")
        await conn.execute(_PASSAGES_INDEX_SQL)
        if btree_gin:
            await conn.execute(_PASSAGES_SEARCH_INDEX_SQL)

    def prepare(self, records: Sequence[LogRecord]) -> PreparedBatch:
        return self._prepare(records, Erasures())

    def _prepare(self, records: Sequence[LogRecord], erasures: Erasures) -> PreparedBatch:
        """Fold `records` into runs cut at each erasure; an event about a call that began
        at or before its user's erasure (recorded earlier, in `erasures`, or one before it
        in the batch) is left out."""
        steps: list[Rows | Erasure] = []
        about: list[ConversationStarted | ConversationEnded | ConversationFailed] = []
        conversations: dict[tuple[str, str], _Conversation] = {}
        users: dict[tuple[str, str], _User] = {}
        for record in records:
            event = record.event
            if isinstance(event, UserForgotten):
                if conversations:
                    steps.append(_rows(conversations, users))
                    conversations, users = {}, {}
                steps.append(erasures.erase(event))
            elif isinstance(event, ConversationStarted | ConversationEnded | ConversationFailed):
                about.append(event)
                if not erasures.covers(event):
                    self._fold(event, conversations, users)
        if conversations:
            steps.append(_rows(conversations, users))
        return PreparedBatch(steps=tuple(steps), began=earliest(about), records=records)

    async def apply(self, conn: AsyncConnection[Any], prepared: PreparedBatch) -> None:
        # 1. Erasures recorded by earlier batches that cover an event of this one: folded
        #    again without those events.
        prepared = await refolded(conn, prepared, self._prepare)
        # 2. Runs and erasures in log order.
        for step in prepared.steps:
            if isinstance(step, Erasure):
                async with conn.pipeline():
                    await record_erasures(conn, [step])
                    for statement in _FORGET_SQL:
                        await conn.execute(
                            statement,
                            {"tenant": step.tenant, "subject": step.subject, "at": step.at},
                        )
            else:
                await self._write(conn, step)

    @staticmethod
    async def _write(conn: AsyncConnection[Any], prepared: Rows) -> None:
        async with conn.pipeline():  # both statements in one round trip
            await conn.execute(_UPSERT_SQL, [prepared.conversations, prepared.users])
            if prepared.turns:
                for statement in _DELETE_TRANSCRIPT_SQL:
                    await conn.execute(statement, [prepared.ended])
        if prepared.turns:
            async with conn.cursor().copy(_COPY_TURNS_SQL) as copy:
                await copy.write(prepared.turns)
        if prepared.passages:
            async with conn.cursor().copy(_COPY_PASSAGES_SQL) as copy:
                await copy.write(prepared.passages)

    # -- folding ----------------------------------------------------------------------

    @staticmethod
    def _fold(
        event: ConversationStarted | ConversationEnded | ConversationFailed,
        conversations: dict[tuple[str, str], _Conversation],
        users: dict[tuple[str, str], _User],
    ) -> None:
        data = event.data
        key = (event.tenant, data.conversation_id)
        conv = conversations.get(key)
        if conv is None:
            conv = conversations[key] = _Conversation(
                tenant=event.tenant,
                conversation_id=data.conversation_id,
                subject=event.subject,
                platform=event.source.platform,
                updated_at=event.recorded_at,
            )
        conv.updated_at = max(conv.updated_at, event.recorded_at)
        conv.agent_id = event.source.agent_id or conv.agent_id
        user = users.get((event.tenant, event.subject))
        if user is None:
            user = users[(event.tenant, event.subject)] = _User(
                event.tenant, event.subject, event.occurred_at, event.occurred_at
            )
        user.first_seen = min(user.first_seen, event.occurred_at)
        user.last_seen = max(user.last_seen, event.occurred_at)

        if isinstance(event, ConversationStarted):
            started = event.data
            conv.agent_id = started.agent_id or conv.agent_id
            conv.channel = started.channel
            conv.started_at = conv.started_at or event.occurred_at
            conv.dynamic_variables = {**started.dynamic_variables, **conv.dynamic_variables}
            user.user_id = started.user_id or user.user_id
            user.phone = started.caller_phone or user.phone
            name = started.dynamic_variables.get("user_name")
            user.display_name = name if isinstance(name, str) and name else user.display_name
        elif isinstance(event, ConversationEnded):
            ended = event.data
            conv.status = "ended"
            conv.platform_status = ended.status
            conv.started_at = ended.started_at
            conv.ended_at = ended.ended_at
            conv.duration_secs = ended.duration_secs
            conv.metadata = {**conv.metadata, **ended.metadata}
            conv.dynamic_variables = {**conv.dynamic_variables, **ended.dynamic_variables}
            # COPY lines: tenant, conversation_id, seq, subject, role, text, offset_ms,
            # tool_calls. Built here, per turn only the text needs escaping.
            head = f"{copy_escape(event.tenant)}\t{copy_escape(ended.conversation_id)}\t"
            subject = copy_escape(event.subject)
            conv.turns = [
                f"{head}{seq}\t{subject}\t{turn.role}\t{copy_escape(turn.text)}\t"
                f"{turn.offset_ms}\t{_tool_calls(turn)}\n"
                for seq, turn in enumerate(ended.turns)
            ]
            # tenant, conversation_id, seq, subject, role, spoken_at, text, context
            start = ended.started_at
            conv.passages = [
                f"{head}{p.seq}\t{subject}\t{p.role}\t"
                f"{(start + timedelta(milliseconds=ended.turns[p.seq].offset_ms)).isoformat()}"
                f"\t{copy_escape(p.text)}\t{copy_escape(p.context)}\n"
                for p in passages(ended.turns)
            ]
            if ended.analysis is not None:
                conv.summary = ended.analysis.summary
                conv.title = ended.analysis.title
                conv.successful = ended.analysis.successful
                conv.analysis = ended.analysis.model_dump(mode="json")
            name = ended.dynamic_variables.get("user_name")
            user.display_name = name if isinstance(name, str) and name else user.display_name
        else:
            conv.status = "failed"
            conv.failure_reason = event.data.reason
            conv.metadata = {**conv.metadata, **event.data.metadata}


def _rows(
    conversations: dict[tuple[str, str], _Conversation], users: dict[tuple[str, str], _User]
) -> Rows:
    ended = [c for c in conversations.values() if c.turns is not None]
    return Rows(
        conversations=_json([c.row() for c in conversations.values()]),
        users=_json([u.row() for u in users.values()]),
        ended=_json([{"tenant": c.tenant, "conversation_id": c.conversation_id} for c in ended]),
        turns="".join([line for c in ended for line in c.turns or ()]).encode(),
        passages="".join([line for c in ended for line in c.passages]).encode(),
    )


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _tool_calls(turn: Turn) -> str:
    if not turn.tool_calls:
        return COPY_NULL
    return copy_escape(_json([call.model_dump(mode="json") for call in turn.tool_calls]))
