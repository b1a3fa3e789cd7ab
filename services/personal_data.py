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

This module writes no SQL against the read models: each one's reads of the user are
beside its projection (``projections/<name>/queries.py``), what spans them all — the
rows held, the read views present — in ``projections/personal_data.py``, and the live
projections in ``streams.versions``.

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
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from projections import PROJECTIONS
from projections.conversations import queries as conversations
from projections.embeddings import queries as embeddings
from projections.memories import queries as memories
from projections.personal_data import held
from projections.summaries import queries as summaries
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
from streams import BrokerUnavailable, versions
from streams.database import present_views
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


async def live_readers(pool: AsyncConnectionPool[Any]) -> dict[str, tuple[str, ...]]:
    """The projections this deployment runs (those with a live version) and the topics
    each consumes: what an erasure waits for."""
    async with pool.connection() as conn:
        live = await versions.live_projections(conn)
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


#: The read views an export reads (a deployment may not run every read model).
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

    @classmethod
    async def open(
        cls, pool: AsyncConnectionPool[Any], settings: Settings, tenant: str, subject: str
    ) -> Export | None:
        async with pool.connection() as conn:
            counts = await held(conn, tenant, subject)
            views = await present_views(conn, _OPTIONAL_VIEWS)
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
        tenant, subject = self.tenant, self.subject
        async with self._pool.connection() as conn:
            user = profile = None
            if "conversations.users" in self._views:
                user = await conversations.user_record(conn, tenant, subject)
            if "summaries.profiles" in self._views:
                profile = await summaries.profile_record(conn, tenant, subject)
            memories = await self._memories(conn)
            vectors: dict[str, dict[str, int]] = {}
            if "embeddings.embeddings" in self._views:
                vectors["memories"] = await embeddings.memory_vector_counts(conn, tenant, subject)
            if "embeddings.passage_vectors" in self._views:
                vectors["passages"] = await embeddings.passage_vector_counts(conn, tenant, subject)
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

    async def _memories(self, conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
        if "memories.memories" not in self._views:
            return []
        every = await memories.every_memory(conn, self.tenant, self.subject)
        by_id: dict[Any, list[dict[str, Any]]] = {m["memory_id"]: [] for m in every}
        if "memories.reinforcements" in self._views:
            for row in await memories.reinforcements_of(conn, self.tenant, self.subject):
                by_id[row.pop("memory_id")].append(row)
        return [{**memory, "reinforcements": by_id[memory["memory_id"]]} for memory in every]

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
                page = await conversations.conversations_oldest_first(
                    conn, self.tenant, self.subject, after=(at, last_id), limit=_PAGE
                )
                if not page:
                    return
                ids = [c["conversation_id"] for c in page]
                turns = await conversations.turns_by_conversation(conn, self.tenant, ids)
                passages = (
                    await conversations.passages_by_conversation(conn, self.tenant, ids)
                    if "conversations.passages" in self._views
                    else {}
                )
                generated: dict[str, dict[str, Any]] = {}
                if "summaries.conversation_summaries" in self._views:
                    generated = await summaries.summaries_by_conversation(conn, self.tenant, ids)
            for conversation in page:
                at = conversation["started_at"] or "-infinity"
                last_id = conversation["conversation_id"]
                yield {
                    **conversation,
                    "turns": turns.get(last_id, []),
                    "passages": passages.get(last_id, []),
                    "generated_summary": generated.get(last_id),
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
