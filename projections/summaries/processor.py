"""The summariser processor (name ``summarizer``): memory and conversation events in,
``summary.generated`` out.

It runs on the projection runtime like the extraction processor, reading ``memories``
(``memory.extracted`` / ``reinforced`` / ``superseded``) and ``conversations``
(``conversation.ended``, ``memory.asserted`` / ``retracted``, ``user.forgotten``), and
appends two kinds of summary to the ``summaries`` topic:

- **profile** — who the user is, from their active memories (never superseded or
  retracted ones), written by the :class:`~projections.summaries.summariser.Summariser`
  (extractive by default, ``llm:<model>`` when ``MEMSTREAM_LLM_MODEL`` is set).
  Refreshed when the user's memories change, debounced;
- **conversation** — for each ``conversation.ended``: the platform's own summary when
  it sent one (generator ``platform``, version = the platform's name), otherwise the
  summariser's (extractive: what the rule extractor finds in the transcript, else the
  caller's own words).

Its tables (``state.sql``) are its own view of each user's memories, merged
order-independently from the two topics as the memories read model does, and the
per-user profile bookkeeping, all written in the runtime's transaction with the
checkpoints. It reads no other projection's tables.

**The debounce.** A user's profile is *pending* once an event changes their memories
(a redelivered event changes nothing). At the end of each batch, with the batch's log
clock ``T`` = the newest ``recorded_at`` among all its records, a pending profile is
emitted when the user has never had one, or when ``T >= profiled_at + debounce``, where
``profiled_at`` is the clock of the batch that emitted their previous one. So:

- all the memory events of one user in one batch give at most one profile;
- two profiles of one user are at least ``debounce`` apart in log time;
- a profile left pending is flushed by the first later batch (of any user, on any
  partition this member holds) whose clock has passed the user's deadline; on a log
  that receives nothing more it stays pending until the next record arrives.

``debounce`` is ``MEMSTREAM_SUMMARY_DEBOUNCE_S`` (default 30 s; 0 gives one profile per
batch that changes the user). Every decision depends only on the log and the
processor's own tables, so a batch replayed after a crash (same records, same state)
appends the same events with the same ids. A rebuild with other batch boundaries may
emit its profiles at other points; each one is still a correct profile of the log up
to that point.

The batch sequence, in the runtime's one transaction:

1. lock the ``profiles`` rows of the batch's users (sorted: no deadlock between two
   members during a rebalance); load their memories;
2. apply the events in log order; summarise each ``conversation.ended``;
3. lock the other users whose pending profile is now due (``SKIP LOCKED``: a user
   another member is working on is that member's to flush);
4. build the due profiles; write the state; append the events (acks=all) before the
   runtime commits the checkpoint.

Each event records the generator of its own summary (an LLM summariser that fell back to
the extractive one says so), and its id is derived from the inputs and that generator,
never from the text. A replayed batch whose model answers differently therefore appends
the same ids with another text; the summaries read model applies an id once (the first in
the log stays), so no answer journal is kept (``docs/memory.md``, Summaries, says why).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from psycopg import AsyncConnection

from projections import settings as projection_settings
from projections.erasures import (
    FORGOTTEN_SQL,
    Erasure,
    Erasures,
    covering,
    earliest,
    record_erasures,
)
from projections.summaries.summariser import (
    ExtractiveSummariser,
    ProfileMemory,
    Summariser,
    Summary,
)
from schemas import (
    ERASED,
    ConversationEnded,
    Event,
    MemoryAsserted,
    MemoryExtracted,
    MemoryReinforced,
    MemoryRetracted,
    MemorySuperseded,
    Source,
    SummaryGenerated,
    UserForgotten,
    derived_event_id,
)
from streams.producer import EventLog
from streams.projection import LogRecord, Projection
from streams.settings import StreamsSettings
from streams.topics import CONVERSATIONS, MEMORIES, SUMMARIES

__all__ = ["DEFAULT_DEBOUNCE", "SummaryProcessor"]

logger = logging.getLogger(__name__)

SCHEMA_SQL = (Path(__file__).parent / "state.sql").read_text()

#: Minimum log time between two profiles of one user (see the module docstring).
DEFAULT_DEBOUNCE = timedelta(seconds=30)

_STATE_RANK = {"active": 0, "superseded": 1, "retracted": 2}

_MemoryEvent = MemoryExtracted | MemoryAsserted | MemoryReinforced | MemorySuperseded
_Item = _MemoryEvent | MemoryRetracted | UserForgotten | ConversationEnded
_ITEM_TYPES = (
    MemoryExtracted,
    MemoryAsserted,
    MemoryReinforced,
    MemorySuperseded,
    MemoryRetracted,
    UserForgotten,
    ConversationEnded,
)

Key = tuple[str, str]


@dataclass
class _Memory:
    """One memory of a user, as far as the processor has seen it."""

    memory_id: uuid.UUID
    subject: str
    updated_at: datetime
    content: str | None = None
    sector: str | None = None
    kind: str | None = None
    salience: float | None = None
    state: str = "active"
    reinforcements: int = 0
    observed_at: datetime | None = None
    last_seen_at: datetime | None = None


@dataclass
class _User:
    """A user's ``profiles`` row and, once loaded, their memories."""

    tenant: str
    subject: str
    last_event_id: uuid.UUID | None
    pending: bool
    profiled_at: datetime | None
    sequence: int
    # The user's latest erasure, from the watermark (`forgotten`) and the batch.
    forgotten_at: datetime | None = None
    memories: dict[uuid.UUID, _Memory] = field(default_factory=dict)
    changed: set[uuid.UUID] = field(default_factory=set)
    deleted: set[uuid.UUID] = field(default_factory=set)
    forget: datetime | None = None

    @property
    def key(self) -> Key:
        return (self.tenant, self.subject)

    def erased(self, at: datetime) -> bool:
        """Whether an event about what began at ``at`` (``Event.began``) is covered by an
        erasure of the user."""
        return self.forgotten_at is not None and at <= self.forgotten_at

    @property
    def vanished(self) -> bool:
        """Erased, and nothing of the user since: their row goes (it names them)."""
        erased = self.forget is not None or self.forgotten_at is not None
        return erased and not self.memories and not self.pending


@dataclass(frozen=True)
class PreparedBatch:
    """The batch's relevant events in log order, and its log clock (None: empty batch)."""

    items: list[_Item]
    clock: datetime | None

    @property
    def subjects(self) -> list[Key]:
        return sorted({(item.tenant, item.subject) for item in self.items})


class SummaryProcessor(Projection):
    name: ClassVar[str] = "summarizer"
    topics: ClassVar[tuple[str, ...]] = (MEMORIES, CONVERSATIONS)
    tables: ClassVar[tuple[str, ...]] = ("memories", "reinforcements", "profiles", "forgotten")
    produces: ClassVar[tuple[str, ...]] = (SUMMARIES,)

    def __init__(
        self, summariser: Summariser | None = None, *, debounce: timedelta = DEFAULT_DEBOUNCE
    ) -> None:
        if debounce < timedelta(0):
            raise ValueError("the profile debounce cannot be negative")
        self.summariser: Summariser = summariser or ExtractiveSummariser()
        self.debounce = debounce
        self._log: EventLog | None = None

    @classmethod
    def from_settings(cls, streams_settings: StreamsSettings) -> SummaryProcessor:
        """The LLM summariser when ``MEMSTREAM_LLM_MODEL`` is set, the extractive one
        otherwise; debounced by ``MEMSTREAM_SUMMARY_DEBOUNCE_S``."""
        settings = projection_settings.section(streams_settings)
        debounce = timedelta(seconds=settings.summary_debounce_s)
        if not settings.llm_model:
            return cls(debounce=debounce)
        from projections.summaries.llm import LLMSummariser

        return cls(LLMSummariser.from_settings(settings), debounce=debounce)

    def schema_sql(self) -> str:
        return SCHEMA_SQL + FORGOTTEN_SQL + _UPGRADE_SQL

    async def open(self, log: EventLog) -> None:
        self._log = log

    def prepare(self, records: Sequence[LogRecord]) -> PreparedBatch:
        items: list[_Item] = [r.event for r in records if isinstance(r.event, _ITEM_TYPES)]
        # Every record moves the clock, relevant or not: it is what flushes pending
        # profiles of users who have gone quiet.
        clock = max((r.event.recorded_at for r in records), default=None)
        return PreparedBatch(items, clock)

    async def apply(self, conn: AsyncConnection[Any], prepared: PreparedBatch) -> None:
        if prepared.clock is None:
            return
        if self._log is None:
            raise RuntimeError("the summariser appends events: open() it first")
        clock = prepared.clock
        # 1. The batch's users, locked, with their memories and the erasures recorded
        #    earlier that cover one of the batch's events.
        users = await _lock_users(conn, prepared.subjects)
        await _load_memories(conn, users)
        erasures = Erasures(await covering(conn, earliest(prepared.items)))
        for user in users.values():
            user.forgotten_at = erasures.latest(user.tenant, user.subject)
        erased: list[Erasure] = []
        known = await _known_reinforcements(conn, prepared.items)
        output: list[Event] = []
        reinforcements: list[tuple[str, uuid.UUID, str, datetime]] = []
        calls: list[Coroutine[Any, Any, list[Event]]] = []
        # 2. The events, in log order; the calls' summaries are asked for together after
        # (a remote summariser serves them concurrently), kept in log order.
        for item in prepared.items:
            user = users[(item.tenant, item.subject)]
            if isinstance(item, ConversationEnded):
                if not user.erased(item.began):
                    calls.append(self._conversation_summary(item))
            elif isinstance(item, UserForgotten):
                # One already carried out (a redelivery) changes nothing: forgetting
                # again would only reset the profile of what was said since.
                if not erasures.carried_out(item):
                    _forget(user, item)
                erased.append(erasures.erase(item))
            elif isinstance(item, MemoryReinforced):
                if (item.tenant, item.id) in known or user.erased(item.began):
                    continue
                known.add((item.tenant, item.id))
                reinforcements.append((item.tenant, item.id, item.subject, item.data.observed_at))
                _changed(user, item, _reinforce(user, item))
            elif not user.erased(item.began):
                _changed(user, item, _merge(user, item))
        for events in await asyncio.gather(*calls):
            output.extend(events)
        # 3. Profiles due: the batch's users, and users left pending by earlier batches.
        # Each touches only its own user, so they are built together, in a fixed order.
        due = [u for u in users.values() if u.pending and self._is_due(u, clock)]
        flushed = await _lock_due(conn, clock - self.debounce, exclude=list(users))
        await _load_memories(conn, flushed)
        built = [self._profile(user, clock) for user in [*due, *flushed.values()]]
        for events in await asyncio.gather(*built):
            output.extend(events)
        # 4. State, then the events: both are undone together if the append fails.
        await record_erasures(conn, erased)
        await _save(conn, [*users.values(), *flushed.values()], reinforcements)
        if output:
            await self._log.append_many(output)

    def _is_due(self, user: _User, clock: datetime) -> bool:
        return user.profiled_at is None or clock >= user.profiled_at + self.debounce

    # -- summaries --------------------------------------------------------------------

    def _generator(self, summary: Summary) -> tuple[str, str]:
        """The path that wrote ``summary``: the summariser's, or its fallback's when the
        summariser says so. Part of the event id, so each path's summary is its own event."""
        return (
            summary.generator or self.summariser.name,
            summary.generator_version or self.summariser.version,
        )

    async def _profile(self, user: _User, clock: datetime) -> list[Event]:
        user.pending = False
        if not user.memories or user.last_event_id is None:
            return []  # erased and nothing since: the read model dropped the profile itself
        active = [_profile_memory(m) for m in user.memories.values()]
        known = [m for m in active if m is not None]
        if not known and user.sequence == 0:
            return []  # nothing to say yet (e.g. a retraction that came before its memory)
        # The newest event time among the inputs: the profile's time, which decay is
        # measured at and which an erasure is compared with.
        as_of = max(m.updated_at for m in user.memories.values())
        summary = await self.summariser.profile(known, as_of)
        user.sequence += 1
        user.profiled_at = clock
        generator, version = self._generator(summary)
        last = user.last_event_id
        return [
            SummaryGenerated.create(
                id=derived_event_id(
                    "summary.generated",
                    "profile",
                    user.tenant,
                    user.subject,
                    str(user.sequence),
                    str(last),
                    generator,
                    version,
                ),
                tenant=user.tenant,
                subject=user.subject,
                source=Source(platform="memstream", event_id=str(last)),
                occurred_at=as_of,
                causation_id=last,
                data={
                    "kind": "profile",
                    "text": summary.text,
                    "generator": generator,
                    "generator_version": version,
                    "sequence": user.sequence,
                    "inputs": {
                        "memory_count": len(summary.memory_ids),
                        "memory_ids": summary.memory_ids,
                        "last_event_id": last,
                        "as_of": as_of,
                    },
                },
            )
        ]

    async def _conversation_summary(self, event: ConversationEnded) -> list[Event]:
        """The conversation's summary, dated when its call began (``as_of`` too): an
        erasure at or after that covers it, as it covers the memories found in the call."""
        data = event.data
        platform = data.analysis.summary if data.analysis is not None else None
        memory_ids: tuple[uuid.UUID, ...] = ()
        if platform is not None and platform.strip():
            text, generator, version = platform.strip(), "platform", event.source.platform
        else:
            summary = await self.summariser.conversation(data)
            if summary is None:
                return []  # nothing was said worth a summary
            text, (generator, version) = summary.text, self._generator(summary)
            memory_ids = summary.memory_ids
        return [
            SummaryGenerated.create(
                id=derived_event_id(
                    "summary.generated", "conversation", str(event.id), generator, version
                ),
                tenant=event.tenant,
                subject=event.subject,
                source=Source(
                    platform="memstream", event_id=str(event.id), agent_id=event.source.agent_id
                ),
                occurred_at=event.began,
                correlation_id=data.conversation_id,
                causation_id=event.id,
                data={
                    "kind": "conversation",
                    "text": text,
                    "generator": generator,
                    "generator_version": version,
                    "conversation_id": data.conversation_id,
                    "inputs": {
                        "memory_count": len(memory_ids),
                        "memory_ids": memory_ids,
                        "last_event_id": event.id,
                        "as_of": event.began,
                    },
                },
            )
        ]


# -- applying events to a user's memories ------------------------------------------------


def _row(user: _User, memory_id: uuid.UUID, at: datetime) -> _Memory:
    memory = user.memories.get(memory_id)
    if memory is None:
        memory = user.memories[memory_id] = _Memory(memory_id, user.subject, at)
    return memory


def _merge(user: _User, event: _MemoryEvent | MemoryRetracted) -> bool:
    """Merge a memory event into the user's memories; whether anything changed."""
    if isinstance(event, MemoryExtracted | MemoryAsserted) and event.data.content == ERASED:
        return False  # past its tenant's memory retention: not a memory any more
    at = event.began
    known = event.data.memory_id in user.memories
    memory = _row(user, event.data.memory_id, at)
    before = replace(memory)
    if isinstance(event, MemoryExtracted | MemoryAsserted):
        memory.content = str(event.data.content)
        memory.sector = event.data.sector
        memory.salience = event.data.salience
        # An asserted memory has no kind of its own; the profile lists it as "Noted".
        memory.kind = event.data.kind if isinstance(event, MemoryExtracted) else "asserted"
        memory.observed_at = at
        memory.last_seen_at = max(memory.last_seen_at or at, at)
    elif isinstance(event, MemorySuperseded | MemoryRetracted):
        state = "superseded" if isinstance(event, MemorySuperseded) else "retracted"
        if _STATE_RANK[state] > _STATE_RANK[memory.state]:
            memory.state = state
    memory.updated_at = max(memory.updated_at, at)
    return not known or memory != before


def _reinforce(user: _User, event: MemoryReinforced) -> bool:
    """Count a reinforcement not counted before (the caller checked its id)."""
    at = event.data.observed_at
    memory = _row(user, event.data.memory_id, at)
    memory.reinforcements += 1
    memory.last_seen_at = max(memory.last_seen_at or at, at)
    memory.updated_at = max(memory.updated_at, at)
    return True


def _changed(user: _User, event: _MemoryEvent | MemoryRetracted, changed: bool) -> None:
    if changed:
        user.changed.add(event.data.memory_id)
        user.deleted.discard(event.data.memory_id)
        user.pending = True
        user.last_event_id = event.id


def _forget(user: _User, event: UserForgotten) -> None:
    """Erasure: the user's memories from before it go; what came after it stays (and the
    row with it; without anything, the row goes: `_User.vanished`)."""
    at = event.occurred_at
    user.forgotten_at = max(user.forgotten_at or at, at)
    user.forget = max(user.forget or at, at)
    for memory_id, memory in list(user.memories.items()):
        if memory.updated_at <= at:
            del user.memories[memory_id]
            user.changed.discard(memory_id)
            user.deleted.add(memory_id)
    # A fresh start: the next profile (of what came after the erasure) is not held back.
    user.profiled_at = None
    user.last_event_id = event.id
    user.pending = bool(user.memories)


def _profile_memory(memory: _Memory) -> ProfileMemory | None:
    """The memory as a summariser input, if it is active and its content has arrived."""
    if (
        memory.state != "active"
        or memory.content is None
        or memory.sector is None
        or memory.kind is None
        or memory.salience is None
        or memory.observed_at is None
        or memory.last_seen_at is None
    ):
        return None
    return ProfileMemory(
        memory_id=memory.memory_id,
        content=memory.content,
        sector=memory.sector,
        kind=memory.kind,
        salience=memory.salience,
        reinforcements=memory.reinforcements,
        observed_at=memory.observed_at,
        last_seen_at=memory.last_seen_at,
    )


# -- state ---------------------------------------------------------------------------------

_USER_COLUMNS = "tenant, subject, last_event_id, pending, profiled_at, sequence"
_MEMORY_COLUMNS = (
    "memory_id, subject, updated_at, content, sector, kind, salience, state, reinforcements,"
    " observed_at, last_seen_at"
)


# A version created before the erasure watermark kept each user's erasure in
# profiles.forgotten_at, and with it the row of a user forgotten with nothing since, which
# names them: on its next start those rows go. (The column stays, unused, for processes of
# the previous release still running; a version created now has none.)
_UPGRADE_SQL = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'profiles'
                  AND column_name = 'forgotten_at') THEN
        DELETE FROM profiles p
         WHERE p.forgotten_at IS NOT NULL AND NOT p.pending
           AND NOT EXISTS (SELECT 1 FROM memories m
                            WHERE m.tenant = p.tenant AND m.subject = p.subject);
    END IF;
END
$$;
"""


def _arrays(keys: Sequence[Key]) -> list[list[str]]:
    return [[t for t, _ in keys], [s for _, s in keys]]


def _users(rows: Sequence[tuple[Any, ...]]) -> dict[Key, _User]:
    return {(row[0], row[1]): _User(*row) for row in rows}


async def _lock_users(conn: AsyncConnection[Any], subjects: list[Key]) -> dict[Key, _User]:
    """The ``profiles`` rows of ``subjects`` (created if new), locked in key order."""
    if not subjects:
        return {}
    await conn.execute(
        "INSERT INTO profiles (tenant, subject)"
        " SELECT * FROM unnest(%s::text[], %s::text[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING",
        _arrays(subjects),
    )
    cursor = await conn.execute(
        f"SELECT {_USER_COLUMNS} FROM profiles"
        " WHERE (tenant, subject) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        " ORDER BY tenant, subject FOR UPDATE",
        _arrays(subjects),
    )
    return _users(await cursor.fetchall())


async def _lock_due(
    conn: AsyncConnection[Any], deadline: datetime, *, exclude: list[Key]
) -> dict[Key, _User]:
    """Users (not in ``exclude``) whose pending profile was held back by a profile at or
    before ``deadline``; a row another transaction holds is left to it."""
    cursor = await conn.execute(
        f"SELECT {_USER_COLUMNS} FROM profiles"
        " WHERE pending AND (profiled_at IS NULL OR profiled_at <= %s)"
        "   AND (tenant, subject) NOT IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        " ORDER BY tenant, subject FOR UPDATE SKIP LOCKED",
        [deadline, *_arrays(exclude)],
    )
    return _users(await cursor.fetchall())


async def _load_memories(conn: AsyncConnection[Any], users: dict[Key, _User]) -> None:
    if not users:
        return
    cursor = await conn.execute(
        f"SELECT m.tenant, {', '.join('m.' + c.strip() for c in _MEMORY_COLUMNS.split(','))}"
        " FROM memories m JOIN unnest(%s::text[], %s::text[]) AS s(tenant, subject)"
        " ON m.tenant = s.tenant AND m.subject = s.subject",
        _arrays(list(users)),
    )
    for tenant, *values in await cursor.fetchall():
        memory = _Memory(*values)
        users[(tenant, memory.subject)].memories[memory.memory_id] = memory


async def _known_reinforcements(
    conn: AsyncConnection[Any], items: Sequence[_Item]
) -> set[tuple[str, uuid.UUID]]:
    ids = [(i.tenant, i.id) for i in items if isinstance(i, MemoryReinforced)]
    if not ids:
        return set()
    cursor = await conn.execute(
        "SELECT tenant, event_id FROM reinforcements"
        " WHERE (tenant, event_id) IN (SELECT * FROM unnest(%s::text[], %s::uuid[]))",
        [[t for t, _ in ids], [e for _, e in ids]],
    )
    return {(tenant, event_id) for tenant, event_id in await cursor.fetchall()}


async def _save(
    conn: AsyncConnection[Any],
    users: Sequence[_User],
    reinforcements: list[tuple[str, uuid.UUID, str, datetime]],
) -> None:
    deleted = [(u.tenant, m) for u in users for m in sorted(u.deleted)]
    if deleted:
        await conn.execute(
            "DELETE FROM memories WHERE (tenant, memory_id) IN"
            " (SELECT * FROM unnest(%s::text[], %s::uuid[]))",
            [[t for t, _ in deleted], [m for _, m in deleted]],
        )
    erased = {u.key: u.forget for u in users if u.forget is not None}
    async with conn.cursor() as cursor:
        if erased:
            await cursor.executemany(
                "DELETE FROM reinforcements"
                " WHERE tenant = %s AND subject = %s AND observed_at <= %s",
                [(t, s, at) for (t, s), at in erased.items()],
            )
        rows = [
            (u.tenant, m.memory_id, m.subject, m.updated_at, m.content, m.sector, m.kind,
             m.salience, m.state, m.reinforcements, m.observed_at, m.last_seen_at)
            for u in users for m in (u.memories[i] for i in sorted(u.changed))
        ]  # fmt: skip
        if rows:
            await cursor.executemany(
                f"INSERT INTO memories (tenant, {_MEMORY_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (tenant, memory_id) DO UPDATE SET"
                " updated_at = EXCLUDED.updated_at, content = EXCLUDED.content,"
                " sector = EXCLUDED.sector, kind = EXCLUDED.kind, salience = EXCLUDED.salience,"
                " state = EXCLUDED.state, reinforcements = EXCLUDED.reinforcements,"
                " observed_at = EXCLUDED.observed_at, last_seen_at = EXCLUDED.last_seen_at",
                rows,
            )
        # A reinforcement from before an erasure in the same batch is not kept.
        kept = [
            r
            for r in reinforcements
            if not ((r[0], r[2]) in erased and r[3] <= erased[(r[0], r[2])])
        ]
        if kept:
            await cursor.executemany(
                "INSERT INTO reinforcements (tenant, event_id, subject, observed_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                kept,
            )
        kept_users = [u for u in users if not u.vanished]
        if kept_users:
            await cursor.executemany(
                "UPDATE profiles SET last_event_id = %s, pending = %s, profiled_at = %s,"
                " sequence = %s WHERE tenant = %s AND subject = %s",
                [
                    (u.last_event_id, u.pending, u.profiled_at, u.sequence, u.tenant, u.subject)
                    for u in kept_users
                ],
            )
        # The row of a user erased with nothing since named them; the erasure is in
        # `forgotten` (by pseudonym), and a later call starts a row afresh.
        vanished = [(u.tenant, u.subject) for u in users if u.vanished]
        if vanished:
            await cursor.execute(
                "DELETE FROM profiles WHERE (tenant, subject) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                _arrays(vanished),
            )
