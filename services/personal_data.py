"""One user's personal data as a whole: erasure and export (docs/security.md, "Erasure and
export").

What ``DELETE /v1/users/{user}`` and ``GET /v1/users/{user}/export``
(services/query/resources.py) and ``memstream users forget|export`` (services/cli/users.py)
share, so the API and the command do one thing one way:

- :func:`erasure` is the ``user.forgotten`` of a request. Appending it through ``EventLog``
  destroys the subject's data key first (``streams.subject_keys.carry_out_erasure``); each
  projection deletes the user's rows when it applies it;
- :func:`wait_purged` waits, bounded, until every live projection that consumes its topic
  is past its position (the read-your-writes machinery, services/query/consistency.py):
  then no read model holds the user;
- :func:`held` counts what the read models hold of a user, which the erasure's log line
  records (:func:`record_erasure`: the subject's hash, never the subject);
- :class:`Export` is everything held about a user as one JSON document, written as it is
  read: the read models page by page, then the user's events from the log, opened with
  their key.

Events about a forgotten user's calls from before their erasure are refused by the log
itself (``streams.producer.EventLog.append_many``), whatever appends them.

**The log scan.** Every record of a subject is keyed with its pseudonym
(``schemas.event_key``), so all of them are on one partition of each topic (Kafka's
default partitioner). The export reads only that partition of each event topic and of the
DLQ — and, for records written before encryption (keyed with the subject itself), the
subject's own partition — compares each record's key with the subject's, and decodes
only the records that match. Its cost is reading 1/partitions of the log (2/partitions
with records from before encryption), bytes compared, not decrypted: figures in
docs/benchmarks.md (``bench_personal_data``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from projections import PROJECTIONS
from schemas import (
    EmbeddingComputed,
    Event,
    EventDecodeError,
    PassagesEmbedded,
    Source,
    SubjectErased,
    UserForgotten,
    decode_event,
    subject_sealing_codec,
    utc_now,
)
from services.errors import ApiError
from services.logs import call_fields
from services.query.consistency import parse_positions, wait_until_past
from services.settings import Settings
from streams import BrokerUnavailable
from streams.dlq import StoredLetter
from streams.offsets import partitions_of
from streams.reader import LogReader
from streams.topics import CONVERSATIONS, DLQ, EMBEDDINGS, MEMORIES, SUMMARIES, Topics

__all__ = [
    "Export",
    "erasure",
    "held",
    "live_readers",
    "record_erasure",
    "wait_purged",
]

logger = logging.getLogger(__name__)

#: The topics an export scans: every event topic, and the dead letters of their records.
EXPORT_TOPICS = (CONVERSATIONS, MEMORIES, EMBEDDINGS, SUMMARIES, DLQ)
#: Conversations a page of the export reads (one connection checkout, briefly).
_PAGE = 200
#: The export is written in pieces of about this size.
_CHUNK_BYTES = 64 * 1024
#: How long the export waits for the broker to answer before anything is written.
_BROKER_CHECK_S = 10.0

# -- erasure -------------------------------------------------------------------------------


def erasure(
    tenant: str, subject: str, *, requested_by: str, reason: str | None = None
) -> UserForgotten:
    """The ``user.forgotten`` of an erasure requested now."""
    return UserForgotten.create(
        tenant=tenant,
        subject=subject,
        source=Source(platform="memstream"),
        occurred_at=utc_now(),
        data={"reason": reason, "requested_by": requested_by},
    )


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


async def _views(conn: AsyncConnection[Any], views: Sequence[str]) -> set[str]:
    """The read views among `views` that exist (a deployment may not run every read model)."""
    cursor = await conn.execute(
        "SELECT v FROM unnest(%s::text[]) AS v WHERE to_regclass(v) IS NOT NULL", [list(views)]
    )
    return {row[0] for row in await cursor.fetchall()}


async def held(conn: AsyncConnection[Any], tenant: str, subject: str) -> dict[str, int]:
    """How many rows each read model holds of the user (read models not built are left
    out); all zero for a user memstream does not know, or has forgotten."""
    present = await _views(conn, [view for _, view, _ in _HELD])
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


async def live_readers(pool: AsyncConnectionPool[Any]) -> dict[str, tuple[str, ...]]:
    """The projections this deployment runs (those with a live version) and the topics
    each consumes: what an erasure waits for."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT projection FROM memstream.projection_versions WHERE state = 'live'"
        )
        live = sorted(row[0] for row in await cursor.fetchall())
    return {name: PROJECTIONS[name].topics for name in live if name in PROJECTIONS}


async def wait_purged(
    pool: AsyncConnectionPool[Any],
    position: str,
    *,
    topic_prefix: str,
    wait_ms: int,
    readers: dict[str, tuple[str, ...]] | None = None,
    slot: AbstractContextManager[None] | None = None,
) -> dict[str, str]:
    """Wait up to `wait_ms` until every live projection that consumes the topic of
    `position` (a ``user.forgotten``'s) is past it; return those that are not yet, each
    with where it is (empty: every read model has purged the user).

    `slot` is the caller's wait slot (services/query/consistency.py); when it has none
    left, the state is read once, without waiting: the erasure is done either way."""
    positions = parse_positions(position, topic_prefix)
    if readers is None:
        readers = await live_readers(pool)
    for wait, held_slot in ((wait_ms, slot or nullcontext()), (0, nullcontext())):
        try:
            await wait_until_past(
                pool, readers, positions, topic_prefix=topic_prefix, wait_ms=wait, slot=held_slot
            )
            return {}
        except ApiError as exc:
            if exc.code == "not_yet_consistent":
                return dict(exc.details["positions"])
            if exc.code != "too_many_waits":
                raise
    raise AssertionError("unreachable: a wait of 0 ms takes no slot")


def record_erasure(
    event: UserForgotten, position: str, counts: dict[str, int], behind: dict[str, str]
) -> None:
    """The erasure's log line: who asked, where it is in the log, what the read models
    held, and whether they have all purged it yet — the subject only as its hash."""
    logger.info(
        "user forgotten",
        extra={
            **call_fields([event]),
            "type": event.type,
            "position": position,
            "requested_by": event.data.requested_by,
            "held": counts,
            "purged": not behind,
            "waiting_for": behind,
        },
    )


# -- export --------------------------------------------------------------------------------


@dataclass
class ScanCounts:
    """What the export's log scan read and found."""

    topics: tuple[str, ...]
    partitions: int = 0
    records_read: int = 0
    events: int = 0
    dead_letters: int = 0
    erased: int = 0
    """Records of the subject that no longer open: sealed before an erasure."""
    undecodable: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


_USER_SQL = """
SELECT user_id, phone, display_name, first_seen, last_seen, conversation_count
  FROM conversations.users WHERE tenant = %(tenant)s AND subject = %(subject)s
"""
_PROFILE_SQL = """
SELECT text, generator, generator_version, sequence, memory_count, memory_ids, as_of,
       generated_at
  FROM summaries.profiles WHERE tenant = %(tenant)s AND subject = %(subject)s
"""
_MEMORY_COLUMNS = (
    "memory_id, content, sector, kind, key, salience, state, superseded_by, origin, extractor,"
    " extractor_version, conversation_id, provenance, reinforcement_count, observed_at,"
    " last_seen_at, updated_at"
)
# Every state, each half on its partial index by subject.
_MEMORIES_SQL = (
    " UNION ALL ".join(
        f"(SELECT {_MEMORY_COLUMNS} FROM memories.memories"
        f" WHERE tenant = %(tenant)s AND subject = %(subject)s AND {state})"
        for state in ("state = 'active'", "state <> 'active'")
    )
    + " ORDER BY observed_at NULLS FIRST, memory_id"
)
_REINFORCEMENTS_SQL = """
SELECT r.memory_id, r.observed_at, r.provenance
  FROM memories.memories m
  JOIN memories.reinforcements r ON r.tenant = m.tenant AND r.memory_id = m.memory_id
 WHERE m.tenant = %(tenant)s AND m.subject = %(subject)s
 ORDER BY r.observed_at, r.event_id
"""
_VECTORS_SQL = {
    "memories": "SELECT model, count(*) FROM embeddings.embeddings"
    " WHERE tenant = %(tenant)s AND subject = %(subject)s GROUP BY model ORDER BY model",
    "passages": "SELECT model, count(*) FROM embeddings.passage_vectors"
    " WHERE tenant = %(tenant)s AND subject = %(subject)s GROUP BY model ORDER BY model",
}
_CONVERSATIONS_SQL = """
SELECT conversation_id, platform, agent_id, channel, status, platform_status, started_at,
       ended_at, duration_secs, turn_count, summary, title, successful, analysis, metadata,
       dynamic_variables, failure_reason
  FROM conversations.conversations
 WHERE tenant = %(tenant)s AND subject = %(subject)s
   AND (coalesce(started_at, '-infinity'), conversation_id)
       > (%(at)s::timestamptz, %(id)s::text)
 ORDER BY coalesce(started_at, '-infinity'), conversation_id
 LIMIT %(limit)s
"""
_TURNS_SQL = """
SELECT conversation_id, seq, role, text, offset_ms, tool_calls FROM conversations.turns
 WHERE tenant = %(tenant)s AND conversation_id = ANY(%(ids)s) ORDER BY conversation_id, seq
"""
_PASSAGES_SQL = """
SELECT conversation_id, seq, role, spoken_at, text, context FROM conversations.passages
 WHERE tenant = %(tenant)s AND conversation_id = ANY(%(ids)s) ORDER BY conversation_id, seq
"""
_SUMMARIES_SQL = """
SELECT conversation_id, text, generator, generator_version, memory_count, memory_ids, as_of,
       generated_at
  FROM summaries.conversation_summaries
 WHERE tenant = %(tenant)s AND conversation_id = ANY(%(ids)s)
"""
_OPTIONAL_VIEWS = (
    "summaries.profiles",
    "summaries.conversation_summaries",
    "memories.memories",
    "memories.reinforcements",
    "embeddings.embeddings",
    "embeddings.passage_vectors",
    "conversations.users",
    "conversations.conversations",
    "conversations.passages",
)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


class Export:
    """Everything memstream holds about one user, as one JSON document written as it is
    read (docs/security.md, "Erasure and export"):

    ``{"tenant", "user", "exported_at", "held", "user_record", "profile", "memories",
    "vectors", "conversations", "events", "log_scan"}`` — the read models (the user, their
    profile, every memory in every state with its provenance and reinforcements, the
    number of vectors, each conversation with its turns, passages and summary), then the
    user's events in the log, decrypted, in time order (embedding vectors left out:
    ``vectors`` counts them), with dead letters of their records by coordinates, and
    what the scan read.

    :meth:`open` first: None when no read model holds anything of the user (the log is
    then not scanned); raises ``BrokerUnavailable`` when the broker does not answer, so a
    caller refuses before writing anything. Then :meth:`chunks` writes the document. It
    holds a database connection only while it reads one page, none during the scan.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        settings: Settings,
        tenant: str,
        subject: str,
        counts: dict[str, int],
        views: set[str],
    ) -> None:
        self._pool = pool
        self._settings = settings
        self.tenant = tenant
        self.subject = subject
        self.counts = counts
        self._views = views
        self.scan = ScanCounts(tuple(EXPORT_TOPICS))
        self._params = {"tenant": tenant, "subject": subject}

    @classmethod
    async def open(
        cls, pool: AsyncConnectionPool[Any], settings: Settings, tenant: str, subject: str
    ) -> Export | None:
        async with pool.connection() as conn:
            counts = await held(conn, tenant, subject)
            views = await _views(conn, _OPTIONAL_VIEWS)
        if not any(counts.values()):
            return None
        topics = Topics(settings.topic_prefix)
        try:
            async with asyncio.timeout(_BROKER_CHECK_S):
                await partitions_of(settings, [topics.name(t) for t in EXPORT_TOPICS])
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(
                settings.require_kafka(), f"{type(exc).__name__}: {exc}"
            ) from exc
        return cls(pool, settings, tenant, subject, counts, views)

    async def chunks(
        self, on_scan: Callable[[int, int], None] | None = None
    ) -> AsyncIterator[bytes]:
        """The document in pieces of about 64 KiB. `on_scan(records read, records to read)`
        reports the log scan's progress."""
        buffer = bytearray()
        async for piece in self._pieces(on_scan):
            buffer += piece
            if len(buffer) >= _CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)
        logger.info(
            "user exported",
            extra={
                **call_fields(tenant=self.tenant, subject=self.subject),
                "held": self.counts,
                "log_scan": self.scan.as_dict(),
            },
        )

    async def _pieces(self, on_scan: Callable[[int, int], None] | None) -> AsyncIterator[bytes]:
        head = {
            "tenant": self.tenant,
            "user": self.subject.partition("/")[2],
            "exported_at": utc_now(),
            "held": self.counts,
        }
        yield _dumps(head)[:-1]
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            user = profile = None
            if "conversations.users" in self._views:
                await cursor.execute(_USER_SQL, self._params)
                user = await cursor.fetchone()
            if "summaries.profiles" in self._views:
                await cursor.execute(_PROFILE_SQL, self._params)
                profile = await cursor.fetchone()
            memories = await self._memories(cursor)
            vectors: dict[str, dict[str, int]] = {}
            for kind, query in _VECTORS_SQL.items():
                view = (
                    "embeddings.embeddings" if kind == "memories" else "embeddings.passage_vectors"
                )
                if view in self._views:
                    await cursor.execute(query, self._params)
                    vectors[kind] = {row["model"]: row["count"] for row in await cursor.fetchall()}
        yield b',"user_record":' + _dumps(user) + b',"profile":' + _dumps(profile)
        yield b',"memories":['
        for index, memory in enumerate(memories):
            yield (b"," if index else b"") + _dumps(memory)
        yield b'],"vectors":' + _dumps(vectors) + b',"conversations":['
        first = True
        async for conversation in self._conversations():
            yield (b"" if first else b",") + _dumps(conversation)
            first = False
        yield b'],"events":['
        first = True
        async for entry in self._events(on_scan):
            yield (b"" if first else b",") + _dumps(entry)
            first = False
        yield b'],"log_scan":' + _dumps(self.scan.as_dict()) + b"}"

    async def _memories(self, cursor: Any) -> list[dict[str, Any]]:
        if "memories.memories" not in self._views:
            return []
        await cursor.execute(_MEMORIES_SQL, self._params)
        memories: list[dict[str, Any]] = await cursor.fetchall()
        by_id: dict[Any, list[dict[str, Any]]] = {m["memory_id"]: [] for m in memories}
        if "memories.reinforcements" in self._views:
            await cursor.execute(_REINFORCEMENTS_SQL, self._params)
            for row in await cursor.fetchall():
                by_id[row.pop("memory_id")].append(row)
        return [{**memory, "reinforcements": by_id[memory["memory_id"]]} for memory in memories]

    async def _conversations(self) -> AsyncIterator[dict[str, Any]]:
        """The user's conversations, oldest first, a page at a time (each page's queries
        on one connection, returned before the page is written)."""
        if "conversations.conversations" not in self._views:
            return
        # Keyset: (start, id), from before the first (a conversation id is never empty).
        at: datetime | str = "-infinity"
        last_id = ""
        while True:
            async with self._pool.connection() as conn:
                cursor = conn.cursor(row_factory=dict_row)
                await cursor.execute(
                    _CONVERSATIONS_SQL, {**self._params, "at": at, "id": last_id, "limit": _PAGE}
                )
                page = await cursor.fetchall()
                if not page:
                    return
                ids = {"tenant": self.tenant, "ids": [c["conversation_id"] for c in page]}
                turns = await _by_conversation(cursor, _TURNS_SQL, ids)
                passages = (
                    await _by_conversation(cursor, _PASSAGES_SQL, ids)
                    if "conversations.passages" in self._views
                    else {}
                )
                summaries: dict[str, dict[str, Any]] = {}
                if "summaries.conversation_summaries" in self._views:
                    await cursor.execute(_SUMMARIES_SQL, ids)
                    summaries = {row.pop("conversation_id"): row for row in await cursor.fetchall()}
            for conversation in page:
                at = conversation["started_at"] or "-infinity"
                last_id = conversation["conversation_id"]
                yield {
                    **conversation,
                    "turns": turns.get(last_id, []),
                    "passages": passages.get(last_id, []),
                    "generated_summary": summaries.get(last_id),
                }
            if len(page) < _PAGE:
                return

    async def _events(
        self, on_scan: Callable[[int, int], None] | None
    ) -> AsyncIterator[dict[str, Any]]:
        """The subject's records on every scanned topic, in time order: decoded events,
        and dead letters by the coordinates of their record."""
        sealing = subject_sealing_codec()
        # Its pseudonym; and the subject itself, the key of records from before encryption.
        keys = {self.subject.encode()}
        if sealing is not None:
            keys.add(sealing.pseudonym(self.subject).encode())
        topics = Topics(self._settings.topic_prefix)
        names = [topics.name(t) for t in EXPORT_TOPICS]
        scan = self.scan
        async with LogReader(self._settings, names, keys=keys) as reader:
            total = reader.total
            scan.partitions = len(reader.ends)
            if on_scan is not None:
                on_scan(0, total)
            async for record in reader:
                scan.records_read += 1
                if on_scan is not None and scan.records_read % 1000 == 0:
                    on_scan(scan.records_read, total)
                if record.key not in keys:
                    continue  # another subject's record on the same partition: not opened
                logical = topics.logical(record.topic)
                where = {
                    "topic": logical,
                    "partition": record.partition,
                    "offset": record.offset,
                    "timestamp_ms": record.timestamp,
                }
                if logical == DLQ:
                    entry = self._dead_letter(record, where)
                else:
                    entry = self._event(record, where)
                if entry is not None:
                    yield entry
            if on_scan is not None:
                on_scan(scan.records_read, total)

    def _event(self, record: Any, where: dict[str, Any]) -> dict[str, Any] | None:
        try:
            event = decode_event(record.value or b"")
        except SubjectErased:
            self.scan.erased += 1
            return None
        except EventDecodeError:
            self.scan.undecodable += 1
            return None
        if event.subject != self.subject:
            return None  # a pseudonym shared by two subjects: 2^-128
        self.scan.events += 1
        return {"log": where, "event": _without_vectors(event)}

    def _dead_letter(self, record: Any, where: dict[str, Any]) -> dict[str, Any] | None:
        """A dead letter of one of the subject's records: where that record is (already
        among the events when it still opens) and why a projection could not apply it."""
        try:
            letter = StoredLetter.from_record(record.value or b"", record.partition, record.offset)
        except ValueError:
            self.scan.undecodable += 1
            return None
        self.scan.dead_letters += 1
        of = {"topic": letter.topic, "partition": letter.partition, "offset": letter.offset}
        return {
            "log": where,
            "dead_letter": {
                "projection": letter.projection,
                "version": letter.version,
                "of": of,
                "stage": letter.stage,
                "error": letter.error.get("type"),
                "failed_at": letter.failed_at,
            },
        }


async def _by_conversation(
    cursor: Any, query: str, params: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """Rows of `query` grouped by their conversation id."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    await cursor.execute(query, params)
    for row in await cursor.fetchall():
        grouped.setdefault(row.pop("conversation_id"), []).append(row)
    return grouped


def _without_vectors(event: Event) -> dict[str, Any]:
    """The event as JSON, embedding vectors left out (their model and dimension stay):
    numbers that mean something only to the model, and most of an export's size."""
    document = event.model_dump(mode="json")
    if isinstance(event, EmbeddingComputed):
        document["data"].pop("vector", None)
    elif isinstance(event, PassagesEmbedded):
        for passage in document["data"]["passages"]:
            passage.pop("vector", None)
    return document
