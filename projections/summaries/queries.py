"""Read queries of the summaries read model, through its live views (``summaries.*``)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["conversation_summaries", "conversation_summary", "latest_profile"]


async def latest_profile(
    conn: AsyncConnection[Any], tenant: str, subject: str
) -> dict[str, Any] | None:
    """The user's latest profile (``text`` may be empty: nothing active is known), or None."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT * FROM summaries.profiles WHERE tenant = %s AND subject = %s", [tenant, subject]
    )
    return await cursor.fetchone()


async def conversation_summary(
    conn: AsyncConnection[Any], tenant: str, conversation_id: str
) -> dict[str, Any] | None:
    """A conversation's summary (the platform's when it sent one), or None."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT * FROM summaries.conversation_summaries WHERE tenant = %s AND conversation_id = %s",
        [tenant, conversation_id],
    )
    return await cursor.fetchone()


async def conversation_summaries(
    conn: AsyncConnection[Any], tenant: str, subject: str, *, limit: int = 20
) -> list[dict[str, Any]]:
    """A user's conversation summaries, newest first."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT * FROM summaries.conversation_summaries WHERE tenant = %s AND subject = %s"
        " ORDER BY as_of DESC, conversation_id LIMIT %s",
        [tenant, subject, limit],
    )
    return await cursor.fetchall()
