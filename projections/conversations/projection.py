"""Projects ``conversation.*`` and ``user.forgotten`` events into users, conversations, turns.

A batch is first folded in Python (events in log order per subject), so each
conversation and user is written by one set-based statement per batch: an upsert
from ``unnest`` arrays for conversations and users, ``COPY`` for turns. Folding
also keeps the order of a ``user.forgotten`` relative to the user's other events:
what came before it in the batch is dropped, its deletes run before the upserts,
and what came after it is written afresh.

Every write is idempotent per event (upserts with order-independent merges,
turns replaced as a whole), because the log can hold the same event twice when a
platform redelivers a webhook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
from psycopg import AsyncConnection

from schemas import (
    ConversationEnded,
    ConversationFailed,
    ConversationStarted,
    UserForgotten,
)
from streams.projection import LogRecord, Projection
from streams.topics import CONVERSATIONS

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()

# Final states outrank "started": a late status update never reopens an ended call.
_STATUS_RANK_SQL = "CASE {} WHEN 'started' THEN 1 ELSE 2 END"


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
    turns: list[tuple[Any, ...]] | None = None  # None: this batch says nothing about turns
    summary: str | None = None
    title: str | None = None
    successful: bool | None = None
    analysis: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    dynamic_variables: dict[str, Any] = field(default_factory=dict)
    failure_reason: str | None = None


@dataclass
class _User:
    tenant: str
    subject: str
    first_seen: datetime
    last_seen: datetime
    user_id: str | None = None
    phone: str | None = None
    display_name: str | None = None


def _jsonb(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class ConversationsProjection(Projection):
    name: ClassVar[str] = "conversations"
    topics: ClassVar[tuple[str, ...]] = (CONVERSATIONS,)
    tables: ClassVar[tuple[str, ...]] = ("users", "conversations", "turns")

    def schema_sql(self) -> str:
        return SCHEMA_SQL

    async def apply(self, conn: AsyncConnection[Any], records: Sequence[LogRecord]) -> None:
        conversations: dict[tuple[str, str], _Conversation] = {}
        users: dict[tuple[str, str], _User] = {}
        forgotten: set[tuple[str, str]] = set()
        for record in records:
            event = record.event
            if isinstance(event, UserForgotten):
                key = (event.tenant, event.subject)
                forgotten.add(key)
                users.pop(key, None)
                for conv_key in [k for k, c in conversations.items() if c.subject == event.subject
                                 and c.tenant == event.tenant]:  # fmt: skip
                    del conversations[conv_key]
            elif isinstance(event, ConversationStarted | ConversationEnded | ConversationFailed):
                self._fold(event, conversations, users)

        if forgotten:
            await self._forget(conn, forgotten)
        if conversations:
            await self._upsert_conversations(conn, list(conversations.values()))
            await self._replace_turns(
                conn, [c for c in conversations.values() if c.turns is not None]
            )
        if users or conversations:
            await self._upsert_users(conn, list(users.values()))
            await self._count_conversations(
                conn, {(c.tenant, c.subject) for c in conversations.values()}
            )

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
            conv.turns = [
                (
                    event.tenant,
                    ended.conversation_id,
                    seq,
                    event.subject,
                    turn.role,
                    turn.text,
                    turn.offset_ms,
                    _jsonb([call.model_dump(mode="json") for call in turn.tool_calls])
                    if turn.tool_calls
                    else None,
                )
                for seq, turn in enumerate(ended.turns)
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

    # -- writing ----------------------------------------------------------------------

    @staticmethod
    async def _forget(conn: AsyncConnection[Any], subjects: set[tuple[str, str]]) -> None:
        tenants = [t for t, _ in subjects]
        names = [s for _, s in subjects]
        for table in ("turns", "conversations", "users"):
            await conn.execute(
                f"DELETE FROM {table} WHERE (tenant, subject) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                [tenants, names],
            )

    @staticmethod
    async def _upsert_conversations(conn: AsyncConnection[Any], rows: list[_Conversation]) -> None:
        def column(name: str) -> list[Any]:
            return [getattr(r, name) for r in rows]

        rank_new = _STATUS_RANK_SQL.format("EXCLUDED.status")
        rank_old = _STATUS_RANK_SQL.format("c.status")
        await conn.execute(
            f"""
            INSERT INTO conversations AS c (
                tenant, conversation_id, subject, platform, agent_id, channel, status,
                platform_status, started_at, ended_at, duration_secs, summary, title,
                successful, analysis, metadata, dynamic_variables, failure_reason, updated_at)
            SELECT * FROM unnest(
                %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                %s::text[], %s::timestamptz[], %s::timestamptz[], %s::float8[],
                %s::text[], %s::text[], %s::bool[], %s::jsonb[], %s::jsonb[], %s::jsonb[],
                %s::text[], %s::timestamptz[])
            ON CONFLICT (tenant, conversation_id) DO UPDATE SET
                agent_id = COALESCE(EXCLUDED.agent_id, c.agent_id),
                channel = COALESCE(EXCLUDED.channel, c.channel),
                status = CASE WHEN {rank_new} >= {rank_old} THEN EXCLUDED.status ELSE c.status END,
                platform_status = COALESCE(EXCLUDED.platform_status, c.platform_status),
                started_at = COALESCE(EXCLUDED.started_at, c.started_at),
                ended_at = COALESCE(EXCLUDED.ended_at, c.ended_at),
                duration_secs = COALESCE(EXCLUDED.duration_secs, c.duration_secs),
                summary = COALESCE(EXCLUDED.summary, c.summary),
                title = COALESCE(EXCLUDED.title, c.title),
                successful = COALESCE(EXCLUDED.successful, c.successful),
                analysis = COALESCE(EXCLUDED.analysis, c.analysis),
                metadata = c.metadata || EXCLUDED.metadata,
                dynamic_variables = c.dynamic_variables || EXCLUDED.dynamic_variables,
                failure_reason = COALESCE(EXCLUDED.failure_reason, c.failure_reason),
                updated_at = GREATEST(c.updated_at, EXCLUDED.updated_at)
            """,
            [
                column("tenant"),
                column("conversation_id"),
                column("subject"),
                column("platform"),
                column("agent_id"),
                column("channel"),
                column("status"),
                column("platform_status"),
                column("started_at"),
                column("ended_at"),
                column("duration_secs"),
                column("summary"),
                column("title"),
                column("successful"),
                [_jsonb(r.analysis) for r in rows],
                [_jsonb(r.metadata) for r in rows],
                [_jsonb(r.dynamic_variables) for r in rows],
                column("failure_reason"),
                column("updated_at"),
            ],
        )

    @staticmethod
    async def _replace_turns(conn: AsyncConnection[Any], rows: list[_Conversation]) -> None:
        if not rows:
            return
        await conn.execute(
            "DELETE FROM turns WHERE (tenant, conversation_id) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))",
            [[r.tenant for r in rows], [r.conversation_id for r in rows]],
        )
        async with conn.cursor().copy(
            "COPY turns (tenant, conversation_id, seq, subject, role, text, offset_ms, tool_calls)"
            " FROM STDIN"
        ) as copy:
            for conv in rows:
                assert conv.turns is not None
                for turn in conv.turns:
                    await copy.write_row(turn)
        await conn.execute(
            "UPDATE conversations AS c SET turn_count = u.n"
            " FROM unnest(%s::text[], %s::text[], %s::int[]) AS u(tenant, conversation_id, n)"
            " WHERE c.tenant = u.tenant AND c.conversation_id = u.conversation_id",
            [
                [r.tenant for r in rows],
                [r.conversation_id for r in rows],
                [len(r.turns or ()) for r in rows],
            ],
        )

    @staticmethod
    async def _upsert_users(conn: AsyncConnection[Any], rows: list[_User]) -> None:
        if not rows:
            return
        await conn.execute(
            """
            INSERT INTO users AS u (tenant, subject, user_id, phone, display_name, first_seen,
                                    last_seen)
            SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                                 %s::timestamptz[], %s::timestamptz[])
            ON CONFLICT (tenant, subject) DO UPDATE SET
                user_id = COALESCE(EXCLUDED.user_id, u.user_id),
                phone = COALESCE(EXCLUDED.phone, u.phone),
                display_name = COALESCE(EXCLUDED.display_name, u.display_name),
                first_seen = LEAST(u.first_seen, EXCLUDED.first_seen),
                last_seen = GREATEST(u.last_seen, EXCLUDED.last_seen)
            """,
            [
                [r.tenant for r in rows],
                [r.subject for r in rows],
                [r.user_id for r in rows],
                [r.phone for r in rows],
                [r.display_name for r in rows],
                [r.first_seen for r in rows],
                [r.last_seen for r in rows],
            ],
        )

    @staticmethod
    async def _count_conversations(
        conn: AsyncConnection[Any], subjects: set[tuple[str, str]]
    ) -> None:
        # A count, not an increment: redelivered events cannot inflate it.
        if not subjects:
            return
        await conn.execute(
            """
            UPDATE users AS u SET conversation_count = counted.n
              FROM (SELECT c.tenant, c.subject, count(*)::int AS n
                      FROM conversations c
                      JOIN unnest(%s::text[], %s::text[]) AS s(tenant, subject)
                        ON c.tenant = s.tenant AND c.subject = s.subject
                     GROUP BY c.tenant, c.subject) AS counted
             WHERE u.tenant = counted.tenant AND u.subject = counted.subject
            """,
            [[t for t, _ in subjects], [s for _, s in subjects]],
        )
