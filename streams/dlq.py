"""Dead letters: events a projection could not handle, kept on the DLQ topic with why;
and the tooling that reads them back, replays them and records how each was resolved.

A dead letter (:class:`DeadLetter`, written by the projection runtime) carries the error
and the original record's coordinates and bytes, so it can be inspected and replayed once
the cause is fixed. Its id derives from the projection, version and coordinates: a runner
that crashes after writing it and before committing writes the same dead letter again on
restart, recognisably (:func:`scan` lists it once).

Letters stay on the topic forever. How one was resolved lives in PostgreSQL
(``memstream.dead_letter_resolutions``, one row per letter id): none means pending;
``replayed`` means its event was projected by :class:`Replayer`, in the same transaction
that wrote the row, so it is projected exactly once; ``purged`` means an operator decided
it is not to be projected (:func:`purge`), with a reason.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection, sql

from schemas import Event, EventDecodeError, decode_event, derived_event_id, utc_now
from streams import lineage, versions
from streams.exceptions import BrokerUnavailable, DatabaseUnavailable, StreamsError
from streams.producer import EventLog
from streams.projection import LogRecord, Projection, version_schema
from streams.reader import LogReader
from streams.settings import StreamsSettings
from streams.topics import Topics

logger = logging.getLogger(__name__)

PENDING, REPLAYED, PURGED = "pending", "replayed", "purged"


@dataclass(frozen=True)
class DeadLetter:
    projection: str
    version: int
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    stage: str  # "decode" or "apply"
    error: BaseException
    attempts: int

    def encode(self) -> bytes:
        try:
            payload, encoding = self.value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(self.value).decode(), "base64"
        document: dict[str, Any] = {
            "id": str(
                derived_event_id(
                    "dlq",
                    self.projection,
                    str(self.version),
                    self.topic,
                    str(self.partition),
                    str(self.offset),
                )
            ),
            "projection": self.projection,
            "version": self.version,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "stage": self.stage,
            "error": {
                "type": type(self.error).__name__,
                "code": getattr(self.error, "code", None),
                "message": str(self.error),
                "traceback": "".join(traceback.format_exception(self.error, limit=8))[-4000:],
            },
            "attempts": self.attempts,
            "failed_at": utc_now().isoformat(),
            "payload": payload,
            "payload_encoding": encoding,
        }
        return orjson.dumps(document)


def decode(value: bytes) -> dict[str, Any]:
    """A dead letter as a dict (the DLQ tooling reads it back with this)."""
    document: dict[str, Any] = orjson.loads(value)
    return document


# -- reading dead letters back ---------------------------------------------------------


class DeadLetterError(StreamsError):
    """Base class of the DLQ tooling's errors."""


class UnknownDeadLetter(DeadLetterError):
    """No dead letter has this id (or id prefix)."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no dead letter {ref!r}")
        self.ref = ref


class AmbiguousDeadLetter(DeadLetterError):
    """An id prefix matches more than one dead letter."""

    def __init__(self, ref: str, matches: Sequence[str]) -> None:
        super().__init__(f"{ref!r} matches {len(matches)} dead letters: {', '.join(matches[:5])}")
        self.ref = ref
        self.matches = list(matches)


@dataclass(frozen=True)
class Resolution:
    """How a dead letter was resolved (a row of ``memstream.dead_letter_resolutions``)."""

    resolution: str  # REPLAYED or PURGED
    into_version: int | None  # the version a replay projected into
    reason: str | None
    resolved_by: str | None
    resolved_at: datetime

    def document(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "into_version": self.into_version,
            "reason": self.reason,
            "resolved_by": self.resolved_by,
            "resolved_at": self.resolved_at.isoformat(),
        }


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter as read back from the DLQ topic, with its resolution (if any)."""

    id: str
    projection: str
    version: int
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    stage: str
    error: Mapping[str, Any]  # type, code, message, traceback
    attempts: int
    failed_at: datetime
    value: bytes  # the original record's bytes, as they were in the log
    dlq_partition: int
    dlq_offset: int
    #: How many times the letter is on the topic (a runner that crashed after writing it
    #: and before committing wrote it again); the first copy is the one kept.
    copies: int = 1
    resolution: Resolution | None = None

    @classmethod
    def from_record(cls, value: bytes, dlq_partition: int, dlq_offset: int) -> StoredLetter:
        """Parse a DLQ record (raises ValueError if it is not a dead letter)."""
        try:
            document = decode(value)
            payload = document["payload"]
            encoding = document.get("payload_encoding", "utf-8")
            if encoding == "base64":
                original = base64.b64decode(payload, validate=True)
            elif encoding == "utf-8":
                original = str(payload).encode("utf-8")
            else:
                raise ValueError(f"unknown payload_encoding {encoding!r}")
            error = document["error"]
            if not isinstance(error, dict):
                raise ValueError("error is not an object")
            return cls(
                id=str(uuid.UUID(str(document["id"]))),
                projection=str(document["projection"]),
                version=int(document["version"]),
                topic=str(document["topic"]),
                partition=int(document["partition"]),
                offset=int(document["offset"]),
                timestamp_ms=int(document.get("timestamp_ms") or 0),
                key=document.get("key"),
                stage=str(document["stage"]),
                error=error,
                attempts=int(document.get("attempts") or 0),
                failed_at=datetime.fromisoformat(str(document["failed_at"])),
                value=original,
                dlq_partition=dlq_partition,
                dlq_offset=dlq_offset,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a dead letter: {type(exc).__name__}: {exc}") from exc

    @property
    def status(self) -> str:
        return self.resolution.resolution if self.resolution else PENDING

    @property
    def pending(self) -> bool:
        return self.resolution is None

    def event(self) -> Event:
        """The original event, decoded again (raises EventDecodeError if it still fails)."""
        return decode_event(self.value)

    def summary(self) -> dict[str, Any]:
        """What `dlq list` shows: where it failed, why, and what happened to it since."""
        event_type, event_id = self._event_identity()
        return {
            "id": self.id,
            "status": self.status,
            "projection": self.projection,
            "version": self.version,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "event_type": event_type,
            "event_id": event_id,
            "stage": self.stage,
            "error": {k: self.error.get(k) for k in ("type", "code", "message")},
            "failed_at": self.failed_at.isoformat(),
            "attempts": self.attempts,
            "copies": self.copies,
            "resolution": self.resolution.document() if self.resolution else None,
        }

    def details(self) -> dict[str, Any]:
        """What `dlq show` shows: the summary, the traceback and the payload, decoded."""
        document = self.summary()
        document["error"] = dict(self.error)
        document["timestamp_ms"] = self.timestamp_ms
        document["dlq"] = {"partition": self.dlq_partition, "offset": self.dlq_offset}
        try:
            event = self.event()
        except EventDecodeError as exc:
            document["decodes"] = False
            document["decode_error"] = {"type": type(exc).__name__, "message": str(exc)}
            try:
                document["payload"] = orjson.loads(self.value)
            except orjson.JSONDecodeError:
                # Not JSON: shown as text (undecodable bytes escaped), never dropped.
                document["payload"] = self.value.decode("utf-8", "backslashreplace")
        else:
            document["decodes"] = True
            document["payload"] = event.model_dump(mode="json")
        return document

    def _event_identity(self) -> tuple[str | None, str | None]:
        """(type, id) of the original event when it decodes, else (None, None)."""
        try:
            event = self.event()
        except EventDecodeError:
            return None, None
        return event.type, str(event.id)


@dataclass(frozen=True)
class UnreadableRecord:
    """A record on the DLQ topic that is not a dead letter (reported, never skipped silently)."""

    partition: int
    offset: int
    reason: str


@dataclass(frozen=True)
class DeadLetters:
    """The DLQ as read at one moment: each letter once, oldest failure first."""

    letters: list[StoredLetter]
    unreadable: list[UnreadableRecord] = field(default_factory=list)

    def find(self, ref: str) -> StoredLetter:
        """The letter with this id, or the only one whose id starts with `ref`."""
        ref = ref.strip().lower()
        exact = [letter for letter in self.letters if letter.id == ref]
        if exact:
            return exact[0]
        matches = [letter for letter in self.letters if ref and letter.id.startswith(ref)]
        if not matches:
            raise UnknownDeadLetter(ref)
        if len(matches) > 1:
            raise AmbiguousDeadLetter(ref, [letter.id for letter in matches])
        return matches[0]

    def select(
        self, *, projection: str | None = None, include_resolved: bool = False
    ) -> list[StoredLetter]:
        return [
            letter
            for letter in self.letters
            if (projection is None or letter.projection == projection)
            and (include_resolved or letter.pending)
        ]


async def scan(settings: StreamsSettings, conn: AsyncConnection[Any]) -> DeadLetters:
    """Every dead letter on the DLQ topic, once each, with its resolution."""
    records = await _read_dlq_topic(settings)
    letters: dict[str, StoredLetter] = {}
    unreadable: list[UnreadableRecord] = []
    for partition, offset, value in records:
        try:
            letter = StoredLetter.from_record(value, partition, offset)
        except ValueError as exc:
            logger.warning("DLQ record %d:%d is not a dead letter: %s", partition, offset, exc)
            unreadable.append(UnreadableRecord(partition, offset, str(exc)))
            continue
        first = letters.get(letter.id)
        letters[letter.id] = replace(first, copies=first.copies + 1) if first else letter
    resolved = await resolutions(conn, letters)
    ordered = sorted(letters.values(), key=lambda letter: (letter.failed_at, letter.id))
    return DeadLetters(
        [replace(letter, resolution=resolved.get(letter.id)) for letter in ordered], unreadable
    )


async def resolutions(conn: AsyncConnection[Any], ids: Iterable[str]) -> dict[str, Resolution]:
    """The resolutions recorded for these letter ids (pending ones have none)."""
    cursor = await conn.execute(
        "SELECT letter_id::text, resolution, into_version, reason, resolved_by, resolved_at"
        " FROM memstream.dead_letter_resolutions WHERE letter_id = ANY(%s::uuid[])",
        [list(ids)],
    )
    return {row[0]: Resolution(*row[1:]) async for row in cursor}


async def _read_dlq_topic(settings: StreamsSettings) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record on the DLQ topic up to its current end,
    read outside any consumer group (reading commits nothing)."""
    records: list[tuple[int, int, bytes]] = []
    topic = Topics(settings.topic_prefix).dlq
    async with LogReader(settings, [topic]) as reader:
        async for record in reader:
            records.append((record.partition, record.offset, record.value or b""))
    return records


# -- resolving dead letters -------------------------------------------------------------

# What happened to one letter in a replay or a purge, besides REPLAYED / PURGED (done now):
ALREADY_RESOLVED = "already_resolved"  # replayed or purged before: nothing done
FAILED = "failed"  # still fails: rolled back, stays pending
VERSION_MISSING = "version_missing"  # the version it failed in is gone (or never existed)

#: Builds a projection as one of its versions runs it, from the version's recorded config
#: (``projections.build``; the services pass it in, since streams imports no projection).
ProjectionFactory = Callable[[str, Mapping[str, Any]], Projection[Any]]

_CLAIM_SQL = (
    "INSERT INTO memstream.dead_letter_resolutions"
    " (letter_id, projection, version, resolution, into_version, reason, resolved_by)"
    " VALUES (%s, %s, %s, %s, %s, NULL, %s)"
    " ON CONFLICT (letter_id) DO NOTHING RETURNING letter_id"
)
_PURGE_SQL = (
    "INSERT INTO memstream.dead_letter_resolutions"
    " (letter_id, projection, version, resolution, reason, resolved_by)"
    " SELECT u.id, u.projection, u.version, 'purged', %s, %s"
    " FROM unnest(%s::uuid[], %s::text[], %s::int[]) AS u(id, projection, version)"
    " ON CONFLICT (letter_id) DO NOTHING RETURNING letter_id::text"
)


@dataclass(frozen=True)
class Outcome:
    """What a replay or a purge did to one letter."""

    letter: StoredLetter
    status: str  # REPLAYED or PURGED (done now), ALREADY_RESOLVED, FAILED, VERSION_MISSING
    into_version: int | None = None
    error: str | None = None
    #: The earlier resolution, when ALREADY_RESOLVED.
    resolution: Resolution | None = None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.letter.id,
            "projection": self.letter.projection,
            "version": self.letter.version,
            "status": self.status,
            "into_version": self.into_version,
            "error": self.error,
            "resolution": self.resolution.document() if self.resolution else None,
        }


async def purge(
    conn: AsyncConnection[Any],
    letters: Sequence[StoredLetter],
    *,
    reason: str | None,
    resolved_by: str | None,
) -> list[Outcome]:
    """Record that these letters are not to be projected (all in one transaction).

    Nothing is deleted: the letters stay on the DLQ topic and `scan` shows them as purged.
    A letter resolved before keeps its resolution (ALREADY_RESOLVED).
    """
    async with conn.transaction():
        cursor = await conn.execute(
            _PURGE_SQL,
            [
                reason,
                resolved_by,
                [letter.id for letter in letters],
                [letter.projection for letter in letters],
                [letter.version for letter in letters],
            ],
        )
        purged = {row[0] async for row in cursor}
    earlier = await resolutions(conn, [x.id for x in letters if x.id not in purged])
    return [
        Outcome(letter, PURGED)
        if letter.id in purged
        else Outcome(letter, ALREADY_RESOLVED, resolution=earlier.get(letter.id))
        for letter in letters
    ]


class Replayer:
    """Projects dead letters into the projection versions they failed in, each exactly once.

    For one letter, in this order:

    1. the target: the version the letter failed in, if it is still registered (and was
       registered before the failure: a version number dropped and registered again is
       another version); else, with `to_live`, the projection's live version; else
       VERSION_MISSING;
    2. decode the original bytes again and ``prepare`` them, outside the transaction
       (``prepare`` may call a remote model); an error here is FAILED;
    3. BEGIN; claim the letter: insert its ``replayed`` resolution unless it has one. A
       letter replayed or purged before projects nothing; a concurrent replay of the same
       letter waits on the row's key until this transaction ends, then finds it resolved;
    4. ``SET LOCAL search_path`` to the version's schema (projection SQL is unqualified);
       ``apply``;
    5. COMMIT: the effect and the resolution land together. Anything raised before rolls
       both back and the letter stays pending (FAILED, with the error).

    The event lands out of its original order, after events that followed it in the log;
    projections tolerate that because their effects are idempotent and their merges
    order-independent (docs/architecture.md).
    """

    def __init__(
        self,
        settings: StreamsSettings,
        conn: AsyncConnection[Any],
        build: ProjectionFactory,
        *,
        to_live: bool = False,
        resolved_by: str | None = None,
    ) -> None:
        self._settings = settings
        self._conn = conn
        self._build = build
        self._to_live = to_live
        self._resolved_by = resolved_by
        self._projections: dict[tuple[str, int], Projection[Any]] = {}
        # Processors append their derived events from `apply`, stamped with the lineage of
        # the version that derived them (as its runner does): one producer per stamp.
        self._logs: dict[tuple[tuple[str, bytes], ...], EventLog] = {}

    async def __aenter__(self) -> Replayer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        logs, self._logs = list(self._logs.values()), {}
        for log in logs:
            await log.stop()

    async def replay(self, letter: StoredLetter) -> Outcome:
        """Replay one letter (see the class docstring for the sequence)."""
        conn = self._conn
        # Resolved before (the scan may be stale): nothing to do, nor to fail at. The claim
        # in step 3 is what rules out doing it twice.
        earlier = (await resolutions(conn, [letter.id])).get(letter.id)
        if earlier is not None:
            return Outcome(letter, ALREADY_RESOLVED, resolution=earlier)
        # 1. Where to.
        target = await self._target(letter)
        if target is None:
            return Outcome(
                letter,
                VERSION_MISSING,
                error=f"{letter.projection} v{letter.version} no longer exists"
                " (replay into the live version with --to-live)",
            )
        try:
            projection = await self._projection(letter.projection, target)
        except KeyError:
            return Outcome(letter, VERSION_MISSING, error=f"no projection {letter.projection!r}")
        # 2. Decode and prepare again.
        try:
            # As the runtime decodes it: the audit projection's records are not events.
            event = projection.decode(letter.value)
            record = LogRecord(
                letter.topic, letter.partition, letter.offset, letter.timestamp_ms, event
            )
            prepared = await asyncio.to_thread(projection.prepare, [record])
        except Exception as exc:
            return Outcome(letter, FAILED, into_version=target, error=_describe(exc))
        try:
            async with conn.transaction():
                # 3. Claim the letter; a resolved one rolls back having done nothing.
                cursor = await conn.execute(
                    _CLAIM_SQL,
                    [
                        letter.id,
                        letter.projection,
                        letter.version,
                        REPLAYED,
                        target,
                        self._resolved_by,
                    ],
                )
                if await cursor.fetchone() is None:
                    raise _AlreadyResolved
                # 4. Apply in the version's schema.
                await conn.execute(
                    sql.SQL("SET LOCAL search_path TO {}, public").format(
                        sql.Identifier(version_schema(letter.projection, target))
                    )
                )
                await projection.apply(conn, prepared)
            # 5. Committed: projected once, recorded as replayed.
        except _AlreadyResolved:
            earlier = (await resolutions(conn, [letter.id])).get(letter.id)
            return Outcome(letter, ALREADY_RESOLVED, resolution=earlier)
        except BrokerUnavailable:
            raise  # a processor could not append its output; nothing was committed
        except Exception as exc:
            if conn.broken or conn.closed:
                raise DatabaseUnavailable(
                    self._settings.require_database(), _describe(exc)
                ) from exc
            logger.warning("replay of dead letter %s failed: %s", letter.id, _describe(exc))
            return Outcome(letter, FAILED, into_version=target, error=_describe(exc))
        logger.info("dead letter %s replayed into %s v%d", letter.id, letter.projection, target)
        return Outcome(letter, REPLAYED, into_version=target)

    async def _target(self, letter: StoredLetter) -> int | None:
        cursor = await self._conn.execute(
            "SELECT created_at FROM memstream.projection_versions"
            " WHERE projection = %s AND version = %s",
            [letter.projection, letter.version],
        )
        row = await cursor.fetchone()
        if row is not None and row[0] <= letter.failed_at:
            return letter.version
        if self._to_live:
            return await versions.live_version(self._conn, letter.projection)
        return None

    async def _projection(self, name: str, version: int) -> Projection[Any]:
        """The projection as `version` runs it (built once per version; KeyError if unknown)."""
        built = self._projections.get((name, version))
        if built is None:
            built = self._build(name, await versions.config(self._conn, name, version))
            stamp = tuple(lineage.stamp(name, version, built.produces))
            log = self._logs.get(stamp)
            if log is None:
                log = EventLog(self._settings, headers=stamp)
                await log.start()
                self._logs[stamp] = log
            await built.open(log)
            self._projections[(name, version)] = built
        return built


class _AlreadyResolved(Exception):
    """Raised inside a replay's transaction to roll it back: the letter is resolved."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip()}"
