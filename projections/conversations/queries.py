"""Read queries of the conversations read model, through its live views (``conversations.*``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row


async def get_user(conn: AsyncConnection[Any], tenant: str, subject: str) -> dict[str, Any] | None:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT * FROM conversations.users WHERE tenant = %s AND subject = %s", [tenant, subject]
    )
    return await cursor.fetchone()


async def get_conversation(
    conn: AsyncConnection[Any], tenant: str, conversation_id: str, *, with_turns: bool = True
) -> dict[str, Any] | None:
    """A conversation with its turns in order (``turns`` key), or None."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT * FROM conversations.conversations WHERE tenant = %s AND conversation_id = %s",
        [tenant, conversation_id],
    )
    conversation = await cursor.fetchone()
    if conversation is None or not with_turns:
        return conversation
    await cursor.execute(
        "SELECT seq, role, text, offset_ms, tool_calls FROM conversations.turns"
        " WHERE tenant = %s AND conversation_id = %s ORDER BY seq",
        [tenant, conversation_id],
    )
    conversation["turns"] = await cursor.fetchall()
    return conversation


async def list_conversations(
    conn: AsyncConnection[Any], tenant: str, subject: str, *, limit: int = 20
) -> list[dict[str, Any]]:
    """A user's conversations, most recent first, without turns."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT * FROM conversations.conversations WHERE tenant = %s AND subject = %s"
        " ORDER BY started_at DESC NULLS LAST LIMIT %s",
        [tenant, subject, limit],
    )
    return await cursor.fetchall()


async def users_page(
    conn: AsyncConnection[Any], tenant: str, *, after: str | None, limit: int
) -> list[dict[str, Any]]:
    """A keyset page of the tenant's users, by subject: up to ``limit`` after the subject
    ``after`` (None: from the first)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        """
        SELECT subject, display_name, first_seen, last_seen, conversation_count
          FROM conversations.users
         WHERE tenant = %(tenant)s AND (%(after)s::text IS NULL OR subject > %(after)s)
         ORDER BY subject LIMIT %(limit)s
        """,
        {"tenant": tenant, "after": after, "limit": limit},
    )
    return await cursor.fetchall()


async def conversations_page(
    conn: AsyncConnection[Any],
    tenant: str,
    subject: str,
    *,
    after: Sequence[Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A keyset page of a user's conversations, without turns, newest first (a
    conversation without a start last): up to ``limit`` after ``after``, the (start or
    ``-infinity``, conversation id) of the previous page's last (None: from the newest)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        """
        SELECT * FROM conversations.conversations
         WHERE tenant = %(tenant)s AND subject = %(subject)s
           AND (%(at)s::timestamptz IS NULL
                OR (coalesce(started_at, '-infinity'), conversation_id)
                   < (%(at)s::timestamptz, %(id)s::text))
         ORDER BY coalesce(started_at, '-infinity') DESC, conversation_id DESC
         LIMIT %(limit)s
        """,
        {
            "tenant": tenant,
            "subject": subject,
            "at": after[0] if after else None,
            "id": after[1] if after else None,
            "limit": limit,
        },
    )
    return await cursor.fetchall()


async def latest_turns(
    conn: AsyncConnection[Any], tenant: str, subject: str, *, limit: int
) -> list[dict[str, Any]]:
    """The user's latest turns with text (``conversation_id``, ``seq``, ``role``,
    ``text``, ``started_at``) from their three latest ended conversations, newest first."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        """
        SELECT t.conversation_id, t.seq, t.role, t.text, c.started_at
          FROM (SELECT conversation_id, started_at FROM conversations.conversations
                 WHERE tenant = %(tenant)s AND subject = %(subject)s AND status = 'ended'
                 ORDER BY started_at DESC NULLS LAST LIMIT 3) c
          JOIN conversations.turns t
            ON t.tenant = %(tenant)s AND t.conversation_id = c.conversation_id
         WHERE t.text <> ''
         ORDER BY c.started_at DESC NULLS LAST, t.seq DESC
         LIMIT %(limit)s
        """,
        {"tenant": tenant, "subject": subject, "limit": limit},
    )
    return await cursor.fetchall()


async def user_with_recent_conversations(
    conn: AsyncConnection[Any], tenant: str, subject: str, *, limit: int
) -> list[dict[str, Any]]:
    """The user's ``display_name`` with each of their ``limit`` latest ended conversations
    (``ended_at``, ``started_at``, ``title``, ``summary``), newest first: one row each,
    one row of nulls but the name when they have none, no row for an unknown user (one
    indexed query, index conversations_by_subject)."""
    cursor = conn.cursor(row_factory=dict_row)
    # A LEFT JOIN so a caller with no ended conversation still gets a row.
    await cursor.execute(
        """
        SELECT u.display_name, c.ended_at, c.started_at, c.title, c.summary
        FROM conversations.users u
        LEFT JOIN LATERAL (
            SELECT ended_at, started_at, title, summary
            FROM conversations.conversations
            WHERE tenant = u.tenant AND subject = u.subject AND status = 'ended'
            ORDER BY started_at DESC NULLS LAST
            LIMIT %(recent)s
        ) c ON true
        WHERE u.tenant = %(tenant)s AND u.subject = %(subject)s
        """,
        {"tenant": tenant, "subject": subject, "recent": limit},
    )
    return await cursor.fetchall()


# -- a user's personal data (services/personal_data.py: the export) ------------------------

_USER_RECORD_SQL = """
SELECT user_id, phone, display_name, first_seen, last_seen, conversation_count
  FROM conversations.users WHERE tenant = %(tenant)s AND subject = %(subject)s
"""
_CONVERSATIONS_OLDEST_FIRST_SQL = """
SELECT conversation_id, platform, agent_id, channel, status, platform_status, started_at,
       ended_at, duration_secs, turn_count, summary, title, successful, analysis, metadata,
       dynamic_variables, failure_reason
  FROM conversations.conversations
 WHERE tenant = %(tenant)s AND subject = %(subject)s
   AND (coalesce(started_at, '-infinity'), conversation_id)
       > (%(at)s::timestamptz, %(id)s::text)
 ORDER BY coalesce(started_at, '-infinity'), conversation_id
 LIMIT %(limit)s
"""
_TURNS_SQL = """
SELECT conversation_id, seq, role, text, offset_ms, tool_calls FROM conversations.turns
 WHERE tenant = %(tenant)s AND conversation_id = ANY(%(ids)s) ORDER BY conversation_id, seq
"""
_PASSAGES_SQL = """
SELECT conversation_id, seq, role, spoken_at, text, context FROM conversations.passages
 WHERE tenant = %(tenant)s AND conversation_id = ANY(%(ids)s) ORDER BY conversation_id, seq
"""


async def user_record(
    conn: AsyncConnection[Any], tenant: str, subject: str
) -> dict[str, Any] | None:
    """The user as an export shows them (``user_id``, ``phone``, ``display_name``,
    ``first_seen``, ``last_seen``, ``conversation_count``), or None."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(_USER_RECORD_SQL, {"tenant": tenant, "subject": subject})
    return await cursor.fetchone()


async def conversations_oldest_first(
    conn: AsyncConnection[Any],
    tenant: str,
    subject: str,
    *,
    after: tuple[datetime | str, str],
    limit: int,
) -> list[dict[str, Any]]:
    """A keyset page of a user's conversations as an export shows them, without turns,
    oldest first (a conversation without a start first): up to ``limit`` after ``after``,
    the (start or ``"-infinity"``, conversation id) of the previous page's last
    (``("-infinity", "")``: from the oldest, since a conversation id is never empty)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        _CONVERSATIONS_OLDEST_FIRST_SQL,
        {"tenant": tenant, "subject": subject, "at": after[0], "id": after[1], "limit": limit},
    )
    return await cursor.fetchall()


async def turns_by_conversation(
    conn: AsyncConnection[Any], tenant: str, conversation_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The turns of each of the conversations in order (``seq``, ``role``, ``text``,
    ``offset_ms``, ``tool_calls``), by conversation id (one without turns left out)."""
    return await _by_conversation(conn, _TURNS_SQL, tenant, conversation_ids)


async def passages_by_conversation(
    conn: AsyncConnection[Any], tenant: str, conversation_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The passages of each of the conversations in order (``seq``, ``role``,
    ``spoken_at``, ``text``, ``context``), by conversation id (one without passages left
    out)."""
    return await _by_conversation(conn, _PASSAGES_SQL, tenant, conversation_ids)


async def _by_conversation(
    conn: AsyncConnection[Any], query: str, tenant: str, conversation_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Rows of `query` grouped by their conversation id (taken out of each row)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query, {"tenant": tenant, "ids": list(conversation_ids)})
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in await cursor.fetchall():
        grouped.setdefault(row.pop("conversation_id"), []).append(row)
    return grouped


async def platform_status(
    conn: AsyncConnection[Any], tenant: str, conversation_id: str, subject: str
) -> str | None:
    """The ``platform_status`` of `subject`'s conversation: None while it is not a row, or
    until the platform's own report of the call has been projected."""
    cursor = await conn.execute(
        "SELECT platform_status FROM conversations.conversations"
        " WHERE tenant = %s AND conversation_id = %s AND subject = %s",
        [tenant, conversation_id, subject],
    )
    row = await cursor.fetchone()
    return None if row is None else row[0]
