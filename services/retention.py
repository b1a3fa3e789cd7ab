"""Retention: after a tenant's period, a call's transcript, and a memory, are unreadable
everywhere (docs/architecture.md, "Retention").

A tenant's ``transcript_retention`` (migration 0009; ``memstream tenants update TENANT
--transcript-retention 90d``) and ``memory_retention`` (migration 0011;
``--memory-retention 1y``) are carried out by :func:`carry_out_retention`, which
:class:`RetentionWorker` runs every ``MEMSTREAM_RETENTION_INTERVAL_S`` in ``memstream
run``, and ``memstream retention run`` once (for a scheduler). Both use one boundary,
:func:`expired_before`: the UTC midnight at or before ``now - retention``.

Transcripts: the calls that began before the boundary are expired:

- the log: the tenant's period keys of those days (``transcripts/<day>`` in
  ``memstream.subject_keys``, ``streams/subject_keys.py``) are destroyed, so the turns of
  ``conversation.ended`` and the vectors of ``passages.embedded`` of those calls no longer
  open, in the log, the dead letters and any rebuild: they decode as empty. Every process
  stops using a destroyed key within ``MEMSTREAM_KEY_CACHE_S``; a call of an expired day
  that is appended later (a platform redelivering it, an import) is stored without its
  transcript, since no key is ever made for an expired day;
- the read models: the turns and passages of those conversations
  (``conversations.turns``, ``conversations.passages``) and their passage vectors
  (``embeddings.passage_vectors``) are deleted, and the conversations' ``turn_count`` is 0,
  as a rebuild from the log would now give.

What stays: the conversation rows (times, status, the platform's analysis and summary),
and, unless the tenant has a memory retention too, the memories extracted from the
calls, their vectors and the summaries.

Memories: the memories first said (``memory.extracted``'s ``observed_at``: the start of
the call; a ``memory.asserted``'s time) before the boundary are expired, however often
they were said again since (reinforcement does not extend a memory: the log holds its
content only in the event that first recorded it):

- the log: the tenant's ``memories/<day>`` keys of those days are destroyed: the content
  of ``memory.extracted`` and ``memory.asserted`` and the vector of ``embedding.computed``
  no longer open and decode as erased (the content as ``ERASED``, the vector empty); the
  projections skip them, and the reinforcements and supersessions of a memory skipped
  change nothing, so a rebuild yields no expired memory;
- the read models: the memories (``memories.memories``) and their reinforcements, their
  vectors (``embeddings.embeddings``) and every link to or from them
  (``embeddings.links``), the summariser's copy of them (``summarizer.memories``, whose
  profiles are then due again: the next profile leaves them out) and the live calls'
  prefetches that quote one (``live.prefetches``) are deleted;
- the extractor's state: its facts of those memories (``extraction.facts``) are deleted,
  so a fact said again afterwards is extracted as a new memory, sealed with its own day's
  key.

What stays of an expired memory: the profiles and conversation summaries written before
(their text is sealed with the subject's key only) until a newer profile replaces them,
and whatever was appended before this scheme sealed memories with a day key (older
``memory.*`` and ``embedding.computed`` events stay readable in the log, as transcripts
sealed before transcript retention do).

A call (a memory) is kept for at least the retention and at most a day more (a day's key
goes when its last call is past the retention). Running it again changes nothing but
what was appended or projected since; its own clock is an argument, so a test moves it
forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge
from psycopg import AsyncConnection

from schemas import get_personal_codec
from schemas.codec import MEMORY_PERIODS, TRANSCRIPT_PERIODS
from services.settings import Settings
from streams import database
from streams.exceptions import DatabaseUnavailable
from streams.subject_keys import SubjectKeyCodec, period_owner

__all__ = ["Expiry", "RetentionWorker", "carry_out_retention", "expired_before"]

logger = logging.getLogger(__name__)

EXPIRED = Counter(
    "memstream_retention_expired_total",
    "What retention made unreadable: period keys destroyed (period_keys: transcripts',"
    " memory_period_keys: memories'), read-model rows deleted.",
    ["what"],
)
LAST_RUN = Gauge(
    "memstream_retention_last_run_timestamp_seconds",
    "When retention (transcripts and memories) last ran to the end (Unix time).",
)

_TENANTS_SQL = (
    "SELECT tenant, transcript_retention, memory_retention FROM memstream.tenants"
    " WHERE (transcript_retention IS NOT NULL OR memory_retention IS NOT NULL)"
    " AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)"
    " ORDER BY tenant"
)
# Period owners sort as their days do (<family>/YYYY-MM-DD).
_DESTROY_SQL = """
UPDATE memstream.subject_keys
   SET wrapped_key = NULL, master_key_id = NULL, destroyed_at = now(), erased_at = now()
 WHERE tenant = %(tenant)s AND subject_hash LIKE %(family)s || '/%%'
   AND subject_hash < %(owner)s AND destroyed_at IS NULL
RETURNING subject_hash
"""


@dataclass(frozen=True)
class _Purge:
    """A statement on read views: `what` it deletes, the `views` (and `columns` of them,
    as ``view.column``) it needs; skipped when one is missing (its projection has not run,
    or its live version predates the column)."""

    what: str
    sql: str
    views: tuple[str, ...]
    columns: tuple[str, ...] = ()


# What each read view holds of an expired call, the conversations' turn counts last.
_TRANSCRIPT_PURGES: tuple[_Purge, ...] = (
    _Purge(
        "turns",
        "DELETE FROM conversations.turns t USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND t.tenant = c.tenant AND t.conversation_id = c.conversation_id",
        ("conversations.turns", "conversations.conversations"),
    ),
    _Purge(
        "passages",
        "DELETE FROM conversations.passages p USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND p.tenant = c.tenant AND p.conversation_id = c.conversation_id",
        ("conversations.passages", "conversations.conversations"),
    ),
    # Dated when their call began (observed_at; older ones at its end, so the
    # conversations read model is asked too, when it is there).
    _Purge(
        "passage_vectors",
        "DELETE FROM embeddings.passage_vectors"
        " WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("embeddings.passage_vectors",),
    ),
    _Purge(
        "passage_vectors",
        "DELETE FROM embeddings.passage_vectors v USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND v.tenant = c.tenant AND v.conversation_id = c.conversation_id",
        ("embeddings.passage_vectors", "conversations.conversations"),
    ),
    _Purge(
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
_MEMORY_PURGES: tuple[_Purge, ...] = (
    _Purge(
        "facts",
        "DELETE FROM extraction.facts"
        f" WHERE tenant = %(tenant)s AND memory_id IN ({_EXPIRED_MEMORIES})",
        ("extraction.facts", "memories.memories"),
    ),
    _Purge(
        "facts",  # those the memories read model does not have (yet)
        "DELETE FROM extraction.facts WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("extraction.facts",),
        ("extraction.facts.observed_at",),
    ),
    _Purge(
        "prefetches",
        "DELETE FROM live.prefetches p WHERE p.tenant = %(tenant)s AND EXISTS ("
        " SELECT 1 FROM jsonb_array_elements(p.hits) h WHERE h->>'kind' = 'memory'"
        f" AND h->>'id' IN (SELECT memory_id::text FROM ({_EXPIRED_MEMORIES}) e))",
        ("live.prefetches", "memories.memories"),
    ),
    _Purge(
        "links",
        "DELETE FROM embeddings.links l USING embeddings.embeddings e"
        " WHERE e.tenant = %(tenant)s AND e.observed_at < %(before)s AND l.tenant = e.tenant"
        " AND l.model = e.model AND e.memory_id IN (l.memory_id, l.linked_id)",
        ("embeddings.links", "embeddings.embeddings"),
    ),
    _Purge(
        "memory_vectors",
        "DELETE FROM embeddings.embeddings WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("embeddings.embeddings",),
    ),
    # The summariser's copy: the users' profiles are due again, without them.
    _Purge(
        "profiles_due",
        "UPDATE summarizer.profiles p SET pending = true WHERE p.tenant = %(tenant)s"
        " AND NOT p.pending AND EXISTS (SELECT 1 FROM summarizer.memories m"
        " WHERE m.tenant = p.tenant AND m.subject = p.subject AND m.observed_at < %(before)s)",
        ("summarizer.memories", "summarizer.profiles"),
    ),
    _Purge(
        "summary_memories",
        "DELETE FROM summarizer.memories WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("summarizer.memories",),
    ),
    _Purge(
        "reinforcements",
        "DELETE FROM memories.reinforcements"
        f" WHERE tenant = %(tenant)s AND memory_id IN ({_EXPIRED_MEMORIES})",
        ("memories.reinforcements", "memories.memories"),
    ),
    _Purge(
        "memories",
        "DELETE FROM memories.memories WHERE tenant = %(tenant)s AND observed_at < %(before)s",
        ("memories.memories",),
    ),
)


@dataclass(frozen=True)
class Expiry:
    """What one run did for one tenant and one retention (`what`: ``transcripts`` or
    ``memories``): calls that began (memories first said) before `before` are expired."""

    tenant: str
    retention: timedelta
    before: datetime
    period_keys: int
    """Keys of days destroyed by this run."""
    rows: dict[str, int]
    """Read-model rows this run deleted (turns, passages, passage_vectors; memories,
    memory_vectors, links, ...) or emptied (conversations: turn counts set to 0)."""
    what: str = TRANSCRIPT_PERIODS


def expired_before(now: datetime, retention: timedelta) -> datetime:
    """The start of the first day whose calls are kept: the UTC midnight at or before
    ``now - retention``. Every call of an earlier day began more than `retention` ago."""
    cutoff = (now - retention).astimezone(UTC)
    return cutoff.replace(hour=0, minute=0, second=0, microsecond=0)


async def carry_out_retention(
    conn: AsyncConnection[Any], *, now: datetime | None = None, tenant: str | None = None
) -> list[Expiry]:
    """Carry out transcript and memory retention for every tenant that has one (or for
    `tenant`) as of `now` (default: the current time); `conn` in autocommit mode, one
    transaction per tenant. One :class:`Expiry` per tenant and retention it has (the
    transcripts' first). See the module docstring."""
    now = now or datetime.now(UTC)
    cursor = await conn.execute(_TENANTS_SQL, {"tenant": tenant})
    tenants = await cursor.fetchall()
    present = await _present(conn)
    done: list[Expiry] = []
    for name, transcript_retention, memory_retention in tenants:
        expiries: list[Expiry] = []
        owners: list[str] = []
        async with conn.transaction():
            for family, retention, purges in (
                (TRANSCRIPT_PERIODS, transcript_retention, _TRANSCRIPT_PURGES),
                (MEMORY_PERIODS, memory_retention, _MEMORY_PURGES),
            ):
                if retention is None:
                    continue
                before = expired_before(now, retention)
                params = {
                    "tenant": name,
                    "before": before,
                    "family": family,
                    "owner": period_owner(before, family),
                }
                cursor = await conn.execute(_DESTROY_SQL, params)
                destroyed = [row[0] for row in await cursor.fetchall()]
                rows: dict[str, int] = {}
                for purge in purges:
                    if set(purge.views) <= present and set(purge.columns) <= present:
                        changed = (await conn.execute(purge.sql, params)).rowcount
                        rows[purge.what] = rows.get(purge.what, 0) + changed
                owners += destroyed
                expiries.append(Expiry(name, retention, before, len(destroyed), rows, family))
        # This process stops using them at once (others within MEMSTREAM_KEY_CACHE_S).
        codec = get_personal_codec()
        if isinstance(codec, SubjectKeyCodec):
            for owner in owners:
                codec.store.forget(name, owner)
        for expiry in expiries:
            keys = "period_keys" if expiry.what == TRANSCRIPT_PERIODS else "memory_period_keys"
            EXPIRED.labels(keys).inc(expiry.period_keys)
            for what, count in expiry.rows.items():
                EXPIRED.labels(what).inc(count)
            if expiry.period_keys or any(expiry.rows.values()):
                logger.info(
                    "%s retention: tenant %s, %s before %s expired: %d period keys destroyed, %s",
                    "transcript" if expiry.what == TRANSCRIPT_PERIODS else "memory",
                    name,
                    "calls" if expiry.what == TRANSCRIPT_PERIODS else "memories first said",
                    expiry.before.date().isoformat(),
                    expiry.period_keys,
                    ", ".join(f"{count} {what}" for what, count in expiry.rows.items())
                    or "no read models",
                )
        done += expiries
    LAST_RUN.set(now.timestamp())
    return done


async def _present(conn: AsyncConnection[Any]) -> set[str]:
    """The read views (``schema.view``) and columns (``schema.view.column``) the purges
    need that exist."""
    purges = (*_TRANSCRIPT_PURGES, *_MEMORY_PURGES)
    views = sorted({view for purge in purges for view in purge.views})
    cursor = await conn.execute(
        "SELECT v FROM unnest(%s::text[]) v WHERE to_regclass(v) IS NOT NULL", [views]
    )
    found = {row[0] for row in await cursor.fetchall()}
    columns = sorted({column for purge in purges for column in purge.columns})
    cursor = await conn.execute(
        "SELECT c FROM unnest(%s::text[]) c JOIN information_schema.columns i"
        " ON i.table_schema = split_part(c, '.', 1) AND i.table_name = split_part(c, '.', 2)"
        " AND i.column_name = split_part(c, '.', 3)",
        [columns],
    )
    return found | {row[0] for row in await cursor.fetchall()}


class RetentionWorker:
    """Runs :func:`carry_out_retention` every ``retention_interval_s`` (first at start) in
    ``memstream run``, beside the projection runners; a run that fails (the database
    away) is logged and tried again at the next interval."""

    name = "retention"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        return None

    async def run(self) -> None:
        interval = self.settings.retention_interval_s
        if not interval:
            return
        while not self._stopped.is_set():
            try:
                await self.run_once()
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                logger.warning("retention did not run: %s", str(exc).strip())
            except Exception:  # a failed run must not stop the services beside it
                logger.exception("retention failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=interval)

    async def run_once(self) -> list[Expiry]:
        url = self.settings.require_database()
        async with await database.connect(url, connect_timeout=None) as conn:
            return await carry_out_retention(conn)

    def stop(self) -> None:
        self._stopped.set()
