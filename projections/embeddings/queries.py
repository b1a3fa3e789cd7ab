"""Read queries of the embeddings read model, through its live views (``embeddings.*``).

The search reads the vectors themselves (projections/search.py); what is here counts
them."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["memory_vector_counts", "passage_vector_counts"]

_MEMORY_VECTOR_COUNTS_SQL = (
    "SELECT model, count(*) FROM embeddings.embeddings"
    " WHERE tenant = %(tenant)s AND subject = %(subject)s GROUP BY model ORDER BY model"
)
_PASSAGE_VECTOR_COUNTS_SQL = (
    "SELECT model, count(*) FROM embeddings.passage_vectors"
    " WHERE tenant = %(tenant)s AND subject = %(subject)s GROUP BY model ORDER BY model"
)


async def memory_vector_counts(
    conn: AsyncConnection[Any], tenant: str, subject: str
) -> dict[str, int]:
    """How many vectors of the user's memories each model holds, by model."""
    return await _counts(conn, _MEMORY_VECTOR_COUNTS_SQL, tenant, subject)


async def passage_vector_counts(
    conn: AsyncConnection[Any], tenant: str, subject: str
) -> dict[str, int]:
    """How many vectors of the user's passages each model holds, by model."""
    return await _counts(conn, _PASSAGE_VECTOR_COUNTS_SQL, tenant, subject)


async def _counts(
    conn: AsyncConnection[Any], query: str, tenant: str, subject: str
) -> dict[str, int]:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query, {"tenant": tenant, "subject": subject})
    return {row["model"]: row["count"] for row in await cursor.fetchall()}
