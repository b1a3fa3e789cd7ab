"""Read queries of the audit read model, through its live view (``audit.entries``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["audit_trail", "entry_json"]


async def audit_trail(
    conn: AsyncConnection[Any],
    tenant: str,
    *,
    subject_hash: str | None = None,
    key_id: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """A tenant's entries about one subject (by hash) and/or by one API key, newest first,
    at or after ``since``."""
    if subject_hash is None and key_id is None:
        raise ValueError("an audit trail is of a subject or of an API key")
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        """
        SELECT entry_id, type, subject_hash, key_id, route, at, status, results,
               conversation_id
          FROM audit.entries
         WHERE tenant = %(tenant)s
           AND (%(subject_hash)s::text IS NULL OR subject_hash = %(subject_hash)s)
           AND (%(key_id)s::text IS NULL OR key_id = %(key_id)s)
           AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
         ORDER BY at DESC, entry_id DESC
         LIMIT %(limit)s
        """,
        {
            "tenant": tenant,
            "subject_hash": subject_hash,
            "key_id": key_id,
            "since": since,
            "limit": limit,
        },
    )
    return await cursor.fetchall()


def entry_json(row: dict[str, Any]) -> dict[str, Any]:
    """A row of :func:`audit_trail` as ``GET /v1/audit`` and ``memstream audit --json``
    show it."""
    return {
        "entry_id": str(row["entry_id"]),
        "type": row["type"],
        "at": row["at"].isoformat(),
        "route": row["route"],
        "key_id": row["key_id"],
        "subject_hash": row["subject_hash"],
        "status": row["status"],
        "results": row["results"],
        "conversation_id": row["conversation_id"],
    }
