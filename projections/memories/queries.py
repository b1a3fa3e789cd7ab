"""Read queries of the memories read model, through its live views (``memories.*``)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = [
    "DECAYED_SALIENCE",
    "REINFORCEMENT_BOOST",
    "decayed_salience",
    "every_memory",
    "get_memory",
    "list_memories",
    "memories_page",
    "reinforcements_of",
    "top_memories",
]

#: Salience gained per reinforcement (capped at 1): a fact said on several calls matters.
REINFORCEMENT_BOOST = 0.05


def decayed_salience(
    salience: float, reinforcements: int, decay_rate: float, days_since_said: float
) -> float:
    """A memory's strength: its salience plus :data:`REINFORCEMENT_BOOST` per reinforcement
    (at most 1), decayed by ``exp(-decay_rate * days)`` since it was last said (the rate
    is its sector's, ``projections.memories.projection.DECAY_PER_DAY``). The one
    definition: :data:`DECAYED_SALIENCE` is it in SQL, and a test holds the two equal."""
    boosted = min(1.0, salience + REINFORCEMENT_BOOST * reinforcements)
    return boosted * math.exp(-decay_rate * max(0.0, days_since_said))


#: :func:`decayed_salience` in SQL, over a memories row at ``%(now)s`` (``%(boost)s`` is
#: REINFORCEMENT_BOOST). Computed at read time, so rows stay a pure function of the log.
DECAYED_SALIENCE = """
LEAST(1.0, salience + %(boost)s * reinforcement_count)
  * exp(-decay_rate * GREATEST(0, extract(epoch FROM %(now)s - last_seen_at) / 86400.0))
"""


async def top_memories(
    conn: AsyncConnection[Any], tenant: str, subject: str, *, now: datetime, limit: int = 8
) -> list[dict[str, Any]]:
    """The user's active memories by decayed salience (recency and salience), best first."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        f"""
        SELECT memory_id, content, sector, kind, observed_at, last_seen_at,
               reinforcement_count, {DECAYED_SALIENCE} AS score
          FROM memories.memories
         WHERE tenant = %(tenant)s AND subject = %(subject)s
           AND state = 'active' AND content IS NOT NULL
         ORDER BY score DESC, memory_id
         LIMIT %(limit)s
        """,
        {
            "tenant": tenant,
            "subject": subject,
            "now": now,
            "limit": limit,
            "boost": REINFORCEMENT_BOOST,
        },
    )
    return await cursor.fetchall()


async def get_memory(
    conn: AsyncConnection[Any], tenant: str, memory_id: uuid.UUID
) -> dict[str, Any] | None:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT * FROM memories.memories WHERE tenant = %s AND memory_id = %s",
        [tenant, memory_id],
    )
    return await cursor.fetchone()


async def list_memories(
    conn: AsyncConnection[Any], tenant: str, subject: str, *, state: str | None = "active"
) -> list[dict[str, Any]]:
    """A user's memories (with content), oldest first; every state when ``state`` is None."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        "SELECT * FROM memories.memories WHERE tenant = %s AND subject = %s"
        " AND content IS NOT NULL AND (%s::text IS NULL OR state = %s)"
        " ORDER BY observed_at, memory_id",
        [tenant, subject, state, state],
    )
    return await cursor.fetchall()


async def memories_page(
    conn: AsyncConnection[Any],
    tenant: str,
    subject: str,
    *,
    state: str = "active",
    sector: str | None = None,
    after: Sequence[Any] | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    """A keyset page of a user's memories (with content), newest first: those in
    ``state`` (``all``: every state) and ``sector`` (None: every sector), up to ``limit``
    after ``after``, the (``observed_at``, ``memory_id``) of the previous page's last
    (None: from the newest)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        """
        SELECT * FROM memories.memories
         WHERE tenant = %(tenant)s AND subject = %(subject)s AND content IS NOT NULL
           AND (%(state)s = 'all' OR state = %(state)s)
           AND (%(sector)s::text IS NULL OR sector = %(sector)s)
           AND (%(at)s::timestamptz IS NULL
                OR (observed_at, memory_id) < (%(at)s::timestamptz, %(id)s::uuid))
         ORDER BY observed_at DESC, memory_id DESC
         LIMIT %(limit)s
        """,
        {
            "tenant": tenant,
            "subject": subject,
            "state": state,
            "sector": sector,
            "at": after[0] if after else None,
            "id": after[1] if after else None,
            "limit": limit,
        },
    )
    return await cursor.fetchall()


# -- a user's personal data (services/personal_data.py: the export) ------------------------

_EVERY_MEMORY_COLUMNS = (
    "memory_id, content, sector, kind, key, salience, state, superseded_by, origin, extractor,"
    " extractor_version, conversation_id, provenance, reinforcement_count, observed_at,"
    " last_seen_at, updated_at"
)
# Every state, each half on its partial index by subject.
_EVERY_MEMORY_SQL = (
    " UNION ALL ".join(
        f"(SELECT {_EVERY_MEMORY_COLUMNS} FROM memories.memories"
        f" WHERE tenant = %(tenant)s AND subject = %(subject)s AND {state})"
        for state in ("state = 'active'", "state <> 'active'")
    )
    + " ORDER BY observed_at NULLS FIRST, memory_id"
)
_REINFORCEMENTS_OF_SQL = """
SELECT r.memory_id, r.observed_at, r.provenance
  FROM memories.memories m
  JOIN memories.reinforcements r ON r.tenant = m.tenant AND r.memory_id = m.memory_id
 WHERE m.tenant = %(tenant)s AND m.subject = %(subject)s
 ORDER BY r.observed_at, r.event_id
"""


async def every_memory(
    conn: AsyncConnection[Any], tenant: str, subject: str
) -> list[dict[str, Any]]:
    """Every memory of the user as an export shows it, in every state, with or without
    content, oldest first (one without ``observed_at`` first)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(_EVERY_MEMORY_SQL, {"tenant": tenant, "subject": subject})
    return await cursor.fetchall()


async def reinforcements_of(
    conn: AsyncConnection[Any], tenant: str, subject: str
) -> list[dict[str, Any]]:
    """The reinforcements of every memory of the user (``memory_id``, ``observed_at``,
    ``provenance``), oldest first."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(_REINFORCEMENTS_OF_SQL, {"tenant": tenant, "subject": subject})
    return await cursor.fetchall()
