"""Read queries of the conversations read model, through its live views (``conversations.*``)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from projections.text_search import ANY_TERM_QUERY


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


async def search_turns(
    conn: AsyncConnection[Any], tenant: str, subject: str, text: str, *, limit: int = 5
) -> list[dict[str, Any]]:
    """The caller's own past turns matching any term of ``text`` (index ``turns_search``),
    best first: full-text rank, then the most recent call."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        f"""
        WITH terms AS (SELECT {ANY_TERM_QUERY} AS q)
        SELECT t.conversation_id, t.seq, t.text, c.started_at,
               ts_rank(to_tsvector('english', t.text), terms.q, 1) AS lexical
          FROM terms, conversations.turns t
          JOIN conversations.conversations c
            ON c.tenant = t.tenant AND c.conversation_id = t.conversation_id
         WHERE t.tenant = %(tenant)s AND t.subject = %(subject)s AND t.role = 'user'
           AND to_tsvector('english', t.text) @@ terms.q
         ORDER BY lexical DESC, c.started_at DESC NULLS LAST, t.conversation_id, t.seq
         LIMIT %(limit)s
        """,
        {"tenant": tenant, "subject": subject, "text": text, "limit": limit},
    )
    return await cursor.fetchall()
