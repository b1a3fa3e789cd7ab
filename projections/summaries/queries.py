"""Read queries of the summaries read model, through its live views (``summaries.*``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = [
    "conversation_summaries",
    "conversation_summary",
    "latest_profile",
    "profile_record",
    "summaries_by_conversation",
]


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


# -- a user's personal data (services/personal_data.py: the export) ------------------------

_PROFILE_RECORD_SQL = """
SELECT text, generator, generator_version, sequence, memory_count, memory_ids, as_of,
       generated_at
  FROM summaries.profiles WHERE tenant = %(tenant)s AND subject = %(subject)s
"""
_SUMMARIES_BY_CONVERSATION_SQL = """
SELECT conversation_id, text, generator, generator_version, memory_count, memory_ids, as_of,
       generated_at
  FROM summaries.conversation_summaries
 WHERE tenant = %(tenant)s AND conversation_id = ANY(%(ids)s)
"""


async def profile_record(
    conn: AsyncConnection[Any], tenant: str, subject: str
) -> dict[str, Any] | None:
    """The user's profile as an export shows it (``text``, ``generator``,
    ``generator_version``, ``sequence``, ``memory_count``, ``memory_ids``, ``as_of``,
    ``generated_at``), or None."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(_PROFILE_RECORD_SQL, {"tenant": tenant, "subject": subject})
    return await cursor.fetchone()


async def summaries_by_conversation(
    conn: AsyncConnection[Any], tenant: str, conversation_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The summary of each of the conversations (``text``, ``generator``,
    ``generator_version``, ``memory_count``, ``memory_ids``, ``as_of``,
    ``generated_at``), by conversation id (one without a summary left out)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        _SUMMARIES_BY_CONVERSATION_SQL, {"tenant": tenant, "ids": list(conversation_ids)}
    )
    return {row.pop("conversation_id"): row for row in await cursor.fetchall()}
