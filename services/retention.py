"""Transcript retention: after a tenant's period, a call's transcript is unreadable
everywhere (docs/architecture.md, "Retention").

A tenant's ``transcript_retention`` (migration 0009; ``memstream tenants update TENANT
--transcript-retention 90d``) is carried out by :func:`expire_transcripts`, which
:class:`RetentionWorker` runs every ``MEMSTREAM_RETENTION_INTERVAL_S`` in ``memstream
run``, and ``memstream retention run`` once (for a scheduler). For each tenant with a
retention, the calls that began before :func:`expired_before` — the UTC midnight at or
before ``now - retention`` — are expired:

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
the memories extracted from the calls, their vectors and the summaries: retention is of
transcripts. A call is kept for at least the retention and at most a day more (a day's
key goes when its last call is past the retention). Running it again changes nothing
but what was appended or projected since; its own clock is an argument, so a test moves
it forward.
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
from streams import Settings
from streams.exceptions import DatabaseUnavailable
from streams.subject_keys import SubjectKeyCodec, period_owner

__all__ = ["Expiry", "RetentionWorker", "expire_transcripts", "expired_before"]

logger = logging.getLogger(__name__)

EXPIRED = Counter(
    "memstream_retention_expired_total",
    "What transcript retention made unreadable: period keys destroyed, read-model rows deleted.",
    ["what"],
)
LAST_RUN = Gauge(
    "memstream_retention_last_run_timestamp_seconds",
    "When transcript retention last ran to the end (Unix time).",
)

_TENANTS_SQL = (
    "SELECT tenant, transcript_retention FROM memstream.tenants"
    " WHERE transcript_retention IS NOT NULL AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)"
    " ORDER BY tenant"
)
# Period owners sort as their days do (transcripts/YYYY-MM-DD).
_DESTROY_SQL = """
UPDATE memstream.subject_keys
   SET wrapped_key = NULL, master_key_id = NULL, destroyed_at = now(), erased_at = now()
 WHERE tenant = %(tenant)s AND subject_hash LIKE 'transcripts/%%'
   AND subject_hash < %(owner)s AND destroyed_at IS NULL
RETURNING subject_hash
"""
# What each read view holds of an expired call (name, view, delete), the conversations'
# turn counts last; a view is missing until its projection has run.
_PURGES: tuple[tuple[str, str, str], ...] = (
    (
        "turns",
        "conversations.turns",
        "DELETE FROM conversations.turns t USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND t.tenant = c.tenant AND t.conversation_id = c.conversation_id",
    ),
    (
        "passages",
        "conversations.passages",
        "DELETE FROM conversations.passages p USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND p.tenant = c.tenant AND p.conversation_id = c.conversation_id",
    ),
    # Dated when their call began (observed_at; older ones at its end, so the
    # conversations read model is asked too, when it is there).
    (
        "passage_vectors",
        "embeddings.passage_vectors",
        "DELETE FROM embeddings.passage_vectors"
        " WHERE tenant = %(tenant)s AND observed_at < %(before)s",
    ),
    (
        "passage_vectors",
        "embeddings.passage_vectors",
        "DELETE FROM embeddings.passage_vectors v USING conversations.conversations c"
        " WHERE c.tenant = %(tenant)s AND c.started_at < %(before)s"
        " AND v.tenant = c.tenant AND v.conversation_id = c.conversation_id",
    ),
    (
        "conversations",
        "conversations.conversations",
        "UPDATE conversations.conversations SET turn_count = 0"
        " WHERE tenant = %(tenant)s AND started_at < %(before)s AND turn_count <> 0",
    ),
)


@dataclass(frozen=True)
class Expiry:
    """What one run did for one tenant: calls that began before `before` are expired."""

    tenant: str
    retention: timedelta
    before: datetime
    period_keys: int
    """Keys of days destroyed by this run."""
    rows: dict[str, int]
    """Read-model rows this run deleted (turns, passages, passage_vectors) or emptied
    (conversations: turn counts set to 0)."""


def expired_before(now: datetime, retention: timedelta) -> datetime:
    """The start of the first day whose calls are kept: the UTC midnight at or before
    ``now - retention``. Every call of an earlier day began more than `retention` ago."""
    cutoff = (now - retention).astimezone(UTC)
    return cutoff.replace(hour=0, minute=0, second=0, microsecond=0)


async def expire_transcripts(
    conn: AsyncConnection[Any], *, now: datetime | None = None, tenant: str | None = None
) -> list[Expiry]:
    """Carry out transcript retention for every tenant that has one (or for `tenant`) as
    of `now` (default: the current time); `conn` in autocommit mode, one transaction per
    tenant. See the module docstring."""
    now = now or datetime.now(UTC)
    cursor = await conn.execute(_TENANTS_SQL, {"tenant": tenant})
    tenants = await cursor.fetchall()
    views = await _views(conn)
    done: list[Expiry] = []
    for name, retention in tenants:
        before = expired_before(now, retention)
        params = {"tenant": name, "before": before, "owner": period_owner(before)}
        async with conn.transaction():
            cursor = await conn.execute(_DESTROY_SQL, params)
            owners = [row[0] for row in await cursor.fetchall()]
            rows: dict[str, int] = {}
            for what, view, statement in _PURGES:
                if view in views:
                    changed = (await conn.execute(statement, params)).rowcount
                    rows[what] = rows.get(what, 0) + changed
        # This process stops using them at once (others within MEMSTREAM_KEY_CACHE_S).
        codec = get_personal_codec()
        if isinstance(codec, SubjectKeyCodec):
            for owner in owners:
                codec.store.forget(name, owner)
        destroyed = len(owners)
        EXPIRED.labels("period_keys").inc(destroyed)
        for what, count in rows.items():
            EXPIRED.labels(what).inc(count)
        expiry = Expiry(name, retention, before, destroyed, rows)
        if destroyed or any(rows.values()):
            logger.info(
                "transcript retention: tenant %s, calls before %s expired: %d period keys"
                " destroyed, %s",
                name,
                before.date().isoformat(),
                destroyed,
                ", ".join(f"{count} {what}" for what, count in rows.items()) or "no read models",
            )
        done.append(expiry)
    LAST_RUN.set(now.timestamp())
    return done


async def _views(conn: AsyncConnection[Any]) -> set[str]:
    """The read views of `_PURGES` that exist."""
    wanted = sorted({view for _, view, _ in _PURGES})
    cursor = await conn.execute(
        "SELECT v FROM unnest(%s::text[]) v WHERE to_regclass(v) IS NOT NULL", [wanted]
    )
    return {row[0] for row in await cursor.fetchall()}


class RetentionWorker:
    """Runs :func:`expire_transcripts` every ``retention_interval_s`` (first at start) in
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
                logger.warning("transcript retention did not run: %s", str(exc).strip())
            except Exception:  # a failed run must not stop the services beside it
                logger.exception("transcript retention failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout=interval)

    async def run_once(self) -> list[Expiry]:
        url = self.settings.require_database()
        async with await AsyncConnection.connect(url, autocommit=True) as conn:
            return await expire_transcripts(conn)

    def stop(self) -> None:
        self._stopped.set()
