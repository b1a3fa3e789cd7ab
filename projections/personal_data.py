"""The read models' side of erasure and export, where a statement spans them all: what
each holds of a user (:func:`held`; read views a deployment does not have are left out,
``streams.database.present_views``). services/personal_data.py runs it; each read
model's own reads of a user are in its ``queries.py``.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from streams.database import present_views

__all__ = ["held"]

#: What `held` counts: (name, the read view, the conditions of the counts that add up to
#: the user's rows in it).
_HELD: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("user", "conversations.users", ("",)),
    ("conversations", "conversations.conversations", ("",)),
    # Every state: two counts, each on one of the partial indexes by subject.
    ("memories", "memories.memories", (" AND state = 'active'", " AND state <> 'active'")),
    ("summaries", "summaries.conversation_summaries", ("",)),
    ("profile", "summaries.profiles", ("",)),
    ("memory_vectors", "embeddings.embeddings", ("",)),
    ("passage_vectors", "embeddings.passage_vectors", ("",)),
)


def _count(view: str, conditions: tuple[str, ...]) -> str:
    return " + ".join(
        f"(SELECT count(*) FROM {view} WHERE tenant = %(tenant)s AND subject = %(subject)s{also})"
        for also in conditions
    )


async def held(conn: AsyncConnection[Any], tenant: str, subject: str) -> dict[str, int]:
    """How many rows each read model holds of the user (read models not built are left
    out); all zero for a user memstream does not know, or has forgotten."""
    present = await present_views(conn, [view for _, view, _ in _HELD])
    counted = [(name, _count(view, also)) for name, view, also in _HELD if view in present]
    if not counted:
        return {}
    cursor = await conn.execute(
        "SELECT " + ", ".join(query for _, query in counted),
        {"tenant": tenant, "subject": subject},
    )
    row = await cursor.fetchone()
    assert row is not None
    return {name: int(value) for (name, _), value in zip(counted, row, strict=True)}
