"""Erasure watermarks: what every read model and processor keeps of a forgotten user, and
how it keeps their late events out (docs/architecture.md, "Personal data and erasure").

Applying a ``user.forgotten``, a projection deletes the user's rows and records the time
in its ``forgotten`` table (:data:`FORGOTTEN_SQL`: each user's latest erasure). The table
names the user as the log does, by their pseudonym (:func:`logged_as`: the record key of
their events), never by the subject: once the erasure is applied, no table holds the
user's number or id. An event about what began at or before that time (``Event.began``: a
call that began at or before the erasure is the forgotten user's, whenever it ended) is
dropped when it reaches the projection later — a platform redelivering an old webhook, an
import, a replayed dead letter, an event of another topic derived before the erasure — so
it never brings the user back; a call that begins after the erasure is a new relationship.
Decoding refuses most such events already (``schemas.wire``) and ``EventLog`` does not
append them; the watermark is what holds where those cannot: a process that has not yet
learnt of the destroyed key (``MEMSTREAM_KEY_CACHE_S``), and deployments without
encryption.

A batch is folded with :class:`Erasures`: the erasures recorded by earlier batches that
cover one of its events (:func:`covering`, one query per batch, on what :func:`earliest`
computed while the batch was prepared; :func:`refolded` folds a prepared batch again
with them), then the batch's own (:meth:`Erasures.erase`), which :func:`record_erasures`
writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import orjson
from psycopg import AsyncConnection

from schemas import Event, UserForgotten, subject_sealing_codec
from streams.projection import LogRecord

__all__ = [
    "FORGOTTEN_SQL",
    "Erasure",
    "Erasures",
    "User",
    "covering",
    "earliest",
    "logged_as",
    "record_erasures",
    "refolded",
]

#: The watermark table, created unqualified in each projection version's own schema.
FORGOTTEN_SQL = """
-- Erased users (projections/erasures.py): the time of each one's latest erasure
-- (user.forgotten). An event about what began at or before it is dropped, even when it
-- arrives after the erasure. `subject` is the user as the log names them: their pseudonym
-- (tenant/<keyed hash>; the subject itself without encryption), never their number or id.
CREATE TABLE IF NOT EXISTS forgotten (
    tenant        text        NOT NULL,
    subject       text        NOT NULL,
    forgotten_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, subject)
);
"""

#: A user as a watermark names them: (tenant, their pseudonym).
User = tuple[str, str]

# The recorded erasures that cover an event of a batch: each user's, when it is at or
# after the earliest time the batch's events about them are about.
_COVERING_SQL = """
SELECT f.tenant, f.subject, f.forgotten_at
  FROM forgotten f
  JOIN json_to_recordset(%s::json) AS b(tenant text, subject text, began timestamptz)
    ON f.tenant = b.tenant AND f.subject = b.subject
 WHERE f.forgotten_at >= b.began
"""
# The latest erasure of each user counts (a user.forgotten seen again changes nothing).
_RECORD_SQL = """
INSERT INTO forgotten AS f (tenant, subject, forgotten_at)
SELECT tenant, subject, max(at)
  FROM json_to_recordset(%s::json) AS e(tenant text, subject text, at timestamptz)
 GROUP BY tenant, subject
ON CONFLICT (tenant, subject) DO UPDATE
    SET forgotten_at = GREATEST(f.forgotten_at, EXCLUDED.forgotten_at)
"""


def logged_as(subject: str) -> str:
    """A subject as the log names it: its pseudonym (``tenant/<keyed hash>``, the record
    key of its events) when personal data is encrypted, else the subject itself."""
    sealing = subject_sealing_codec()
    return subject if sealing is None else sealing.pseudonym(subject)


@dataclass(frozen=True, slots=True)
class Erasure:
    """A ``user.forgotten`` as a projection applies it."""

    tenant: str
    subject: str
    """The subject, as the user's rows name them: what the erasure deletes."""
    logged_as: str
    """The user's pseudonym: what ``forgotten`` records."""
    at: datetime


class Erasures:
    """The erasures a batch is folded with, by user: those recorded by earlier batches
    (`recorded`, from :func:`covering`), and the batch's own as :meth:`erase` meets them.
    The latest erasure of a user counts."""

    def __init__(self, recorded: Mapping[User, datetime] | None = None) -> None:
        self._at: dict[User, datetime] = dict(recorded or {})
        self._names: dict[str, str] = {}  # subject -> logged_as(subject), once per batch

    def user(self, event: Event) -> User:
        """The user `event` is about, as a watermark names them."""
        return (event.tenant, self._name(event.subject))

    def latest(self, tenant: str, subject: str) -> datetime | None:
        """The latest erasure known so far of the user `subject` (None: none)."""
        return self._at.get((tenant, self._name(subject))) if self._at else None

    def carried_out(self, event: UserForgotten) -> bool:
        """Whether an erasure of `event`'s user at or after `event`'s is known already: a
        redelivery of it, or an older one arriving late. Carrying it out again would
        only reach what was said after the known one (a processor deriving events must
        not: the caller's later facts are not erased)."""
        known = self.latest(event.tenant, event.subject)
        return known is not None and event.occurred_at <= known

    def erase(self, event: UserForgotten) -> Erasure:
        """Take `event`'s erasure into account from now on; it, as the projection applies it."""
        user = self.user(event)
        at = event.occurred_at
        known = self._at.get(user)
        if known is None or at > known:
            self._at[user] = at
        return Erasure(event.tenant, event.subject, user[1], at)

    def covers(self, event: Event) -> bool:
        """Whether an erasure known so far covers `event`: what it is about began at or
        before the latest erasure of its user."""
        if not self._at:
            return False
        at = self._at.get(self.user(event))
        return at is not None and event.began <= at

    def _name(self, subject: str) -> str:
        name = self._names.get(subject)
        if name is None:
            name = self._names[subject] = logged_as(subject)
        return name


def earliest(events: Iterable[Event]) -> str:
    """Per user of `events`, the earliest time they are about (``Event.began``): the JSON
    :func:`covering` takes (computed while a batch is prepared, outside its transaction)."""
    first: dict[User, datetime] = {}
    names: dict[str, str] = {}
    for event in events:
        name = names.get(event.subject)
        if name is None:
            name = names[event.subject] = logged_as(event.subject)
        user = (event.tenant, name)
        at = event.began
        known = first.get(user)
        if known is None or at < known:
            first[user] = at
    return _json([{"tenant": t, "subject": s, "began": at} for (t, s), at in first.items()])


async def covering(conn: AsyncConnection[Any], earliest: str) -> dict[User, datetime]:
    """The erasures recorded in the projection's ``forgotten`` that cover an event of a
    batch (`earliest`: see :func:`earliest`); usually none, in one query."""
    if earliest == "[]":
        return {}
    cursor = await conn.execute(_COVERING_SQL, [earliest])
    return {(tenant, subject): at for tenant, subject, at in await cursor.fetchall()}


class Folded(Protocol):
    """A batch a projection prepared: its records, and :func:`earliest` of its events."""

    @property
    def began(self) -> str: ...

    @property
    def records(self) -> Sequence[LogRecord]: ...


F = TypeVar("F", bound=Folded)


async def refolded(
    conn: AsyncConnection[Any], prepared: F, fold: Callable[[Sequence[LogRecord], Erasures], F]
) -> F:
    """`prepared`, or, when erasures recorded by earlier batches cover one of its events,
    the batch folded again by `fold` without them (rare: one query finds none otherwise;
    the fold runs in a worker thread, as ``prepare`` does)."""
    recorded = await covering(conn, prepared.began)
    if not recorded:
        return prepared
    return await asyncio.to_thread(fold, prepared.records, Erasures(recorded))


async def record_erasures(conn: AsyncConnection[Any], erasures: Iterable[Erasure]) -> None:
    """Record `erasures` in the projection's ``forgotten`` (by the users' pseudonyms)."""
    rows = [{"tenant": e.tenant, "subject": e.logged_as, "at": e.at} for e in erasures]
    if rows:
        await conn.execute(_RECORD_SQL, [_json(rows)])


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
