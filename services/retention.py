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

from projections.retention import MEMORY_PURGES, TRANSCRIPT_PURGES, purge
from schemas import get_personal_codec
from schemas.codec import MEMORY_PERIODS, TRANSCRIPT_PERIODS
from services.settings import Settings
from services.tenants import list_tenants
from streams import database
from streams.exceptions import DatabaseUnavailable
from streams.subject_keys import SubjectKeyCodec, destroy_periods_before, period_owner

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
    tenants = [
        t
        for t in await list_tenants(conn)
        if (t.transcript_retention or t.memory_retention) and tenant in (None, t.tenant)
    ]
    done: list[Expiry] = []
    for t in tenants:
        name = t.tenant
        expiries: list[Expiry] = []
        owners: list[str] = []
        async with conn.transaction():
            for family, retention, purges in (
                (TRANSCRIPT_PERIODS, t.transcript_retention, TRANSCRIPT_PURGES),
                (MEMORY_PERIODS, t.memory_retention, MEMORY_PURGES),
            ):
                if retention is None:
                    continue
                before = expired_before(now, retention)
                destroyed = await destroy_periods_before(conn, name, period_owner(before, family))
                rows = await purge(conn, purges, name, before)
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
