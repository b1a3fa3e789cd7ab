"""Read queries of the conversations read model, through its live views (``conversations.*``)."""

from __future__ import annotations

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
