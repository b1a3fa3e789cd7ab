"""The read models' side of retention: what each holds of an expired call or memory,
and the statements that delete it (services/retention.py decides when, destroys the
period keys and runs these in the tenant's transaction).

A purge is a statement on read views that skips itself when a view it needs is missing
(its projection has not run, or its live version predates the column). The statements
are here, beside the projections whose tables they delete from, so that a read model's
schema and its purges change together; ``tests/integration/test_retention.py`` checks
that after a run the read models hold what a rebuild from the log gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from streams.database import present_views

__all__ = ["MEMORY_PURGES", "TRANSCRIPT_PURGES", "Purge", "purge"]


@dataclass(frozen=True)
class Purge:
    """A statement on read views: `what` it deletes, the `views` (and `columns` of them,
    as ``view.column``) it needs; skipped when one is missing (its projection has not run,
    or its live version predates the column)."""

    what: str
    sql: str
    views: tuple[str, ...]
    columns: tuple[str, ...] = ()


# What each read view holds of an expired call, the conversations' turn counts last.
TRANSCRIPT_PURGES: tuple[Purge, ...] = (
    Purge(
        "turns",
        "DELETE FROM conversations.turns t USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND t.tenant = c.tenant AND t.conversation_id = c.conversation_id",
        ("conversations.turns", "conversations.conversations"),
    ),
    Purge(
        "passages",
        "DELETE FROM conversations.passages p USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND p.tenant = c.tenant AND p.conversation_id = c.conversation_id",
        ("conversations.passages", "conversations.conversations"),
    ),
    # Dated when their call began (observed_at; older ones at its end, so the
    # conversations read model is asked too, when it is there).
    Purge(
        "passage_vectors",
        "DELETE FROM embeddings.passage_vectors"
        " WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("embeddings.passage_vectors",),
    ),
    Purge(
        "passage_vectors",
        "DELETE FROM embeddings.passage_vectors v USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND v.tenant = c.tenant AND v.conversation_id = c.conversation_id",
        ("embeddings.passage_vectors", "conversations.conversations"),
    ),
    Purge(
        "conversations",
        "UPDATE conversations.conversations SET turn_count = 0"
        " WHERE tenant = %(tenant)s AND started_at < %(before)s AND turn_count <> 0",
        ("conversations.conversations",),
    ),
)

# The memories first said before the boundary (memories.memories.observed_at: an
# extraction's observed_at, an assertion's time), as the read model has them.
_EXPIRED_MEMORIES = (
    "SELECT memory_id FROM memories.memories WHERE tenant = %(tenant)s AND observed_at < %(before)s"
)
# What each read view holds of an expired memory: what is found through the memories read
# model first, the memories themselves last. Vectors are dated like their memory.
MEMORY_PURGES: tuple[Purge, ...] = (
    Purge(
        "facts",
        "DELETE FROM extraction.facts"
        f" WHERE tenant = %(tenant)s AND memory_id IN ({_EXPIRED_MEMORIES})",
        ("extraction.facts", "memories.memories"),
    ),
    Purge(
        "facts",  # those the memories read model does not have (yet)
        "DELETE FROM extraction.facts WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("extraction.facts",),
        ("extraction.facts.observed_at",),
    ),
    Purge(
        "prefetches",
        "DELETE FROM live.prefetches p WHERE p.tenant = %(tenant)s AND EXISTS ("
        " SELECT 1 FROM jsonb_array_elements(p.hits) h WHERE h->>'kind' = 'memory'"
        f" AND h->>'id' IN (SELECT memory_id::text FROM ({_EXPIRED_MEMORIES}) e))",
        ("live.prefetches", "memories.memories"),
    ),
    Purge(
        "links",
        "DELETE FROM embeddings.links l USING embeddings.embeddings e"
        " WHERE e.tenant = %(tenant)s AND e.observed_at < %(before)s AND l.tenant = e.tenant"
        " AND l.model = e.model AND e.memory_id IN (l.memory_id, l.linked_id)",
        ("embeddings.links", "embeddings.embeddings"),
    ),
    Purge(
        "memory_vectors",
        "DELETE FROM embeddings.embeddings WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("embeddings.embeddings",),
    ),
    # The summariser's copy: the users' profiles are due again, without them.
    Purge(
        "profiles_due",
        "UPDATE summarizer.profiles p SET pending = true WHERE p.tenant = %(tenant)s"
        " AND NOT p.pending AND EXISTS (SELECT 1 FROM summarizer.memories m"
        " WHERE m.tenant = p.tenant AND m.subject = p.subject AND m.observed_at < %(before)s)",
        ("summarizer.memories", "summarizer.profiles"),
    ),
    Purge(
        "summary_memories",
        "DELETE FROM summarizer.memories WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("summarizer.memories",),
    ),
    Purge(
        "reinforcements",
        "DELETE FROM memories.reinforcements"
        f" WHERE tenant = %(tenant)s AND memory_id IN ({_EXPIRED_MEMORIES})",
        ("memories.reinforcements", "memories.memories"),
    ),
    Purge(
        "memories",
        "DELETE FROM memories.memories WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("memories.memories",),
    ),
)


async def purge(
    conn: AsyncConnection[Any], purges: tuple[Purge, ...], tenant: str, before: datetime
) -> dict[str, int]:
    """Run each of `purges` whose views exist for `tenant`'s rows dated before `before`;
    the rows each kind (``Purge.what``) deleted or emptied."""
    present = await _present(conn, purges)
    params = {"tenant": tenant, "before": before}
    rows: dict[str, int] = {}
    for p in purges:
        if set(p.views) <= present and set(p.columns) <= present:
            changed = (await conn.execute(p.sql, params)).rowcount
            rows[p.what] = rows.get(p.what, 0) + changed
    return rows


async def _present(conn: AsyncConnection[Any], purges: tuple[Purge, ...]) -> set[str]:
    """The read views (``schema.view``) and columns (``schema.view.column``) the purges
    need that exist."""
    found = await present_views(conn, sorted({view for purge in purges for view in purge.views}))
    columns = sorted({column for purge in purges for column in purge.columns})
    cursor = await conn.execute(
        "SELECT c FROM unnest(%s::text[]) c JOIN information_schema.columns i"
        " ON i.table_schema = split_part(c, '.', 1) AND i.table_name = split_part(c, '.', 2)"
        " AND i.column_name = split_part(c, '.', 3)",
        [columns],
    )
    return found | {row[0] for row in await cursor.fetchall()}
