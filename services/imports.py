"""Bulk import of history (``memstream log import``): JSON lines in, events appended once.

A line is one platform payload, in the form the ingest service accepts as a webhook
(ElevenLabs post-call, Vapi server message, Retell webhook; see /v1/webhooks and
``services.ingest.platforms``), or one memstream event envelope as ``memstream log dump
--json`` writes it. Each line is parsed by the same adapters the webhooks use, so an
imported conversation gets the same event ids as if its webhook had arrived.

Idempotency rests on a ledger in PostgreSQL (``memstream.imported_events``, migrations
0004 and 0007) of the (tenant, event id) pairs known to be in the log: two tenants can
hold the same id (ids of before the tenant was part of webhook event ids). A platform
payload gets the id a webhook of the tenant would get, earlier ids included (the
tenant's ``legacy_ids_before``, see ``services.ingest.platforms.webhook``). Per batch of
lines:

1. parse every line (a bad line is rejected with its line number; nothing of it is sent);
2. the first time a batch has events for a topic, the ledger catches up with that topic:
   the ids of every record appended to it since the previous import, whatever appended
   it (webhooks, the events API, an earlier import);
3. drop the events whose (tenant, id) is in the ledger, or was appended earlier in this
   run;
4. append the rest with the project's producer and wait for the broker's acknowledgement
   (the producer refuses an event about a call that began at or before its user's
   erasure: a forgotten user's old call is not imported);
5. write the ids of those appended to the ledger.

A crash between 4 and 5 loses ledger rows, not events: the next import's catch-up scan
finds those events in the log and skips them. Events appended by another writer while an
import runs (a webhook delivering the same conversation) can still be appended twice;
every projection dedupes by tenant and event id, so that costs log space, never a
duplicate memory.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection

from schemas import Event, EventDecodeError, decode_event, encode_event
from services.ingest.platforms import NormalisedWebhook, PayloadError, elevenlabs, retell, vapi
from services.settings import Settings
from streams.producer import EventLog
from streams.reader import LogReader
from streams.topics import CONVERSATIONS, EMBEDDINGS, MEMORIES, SUMMARIES, Topics

logger = logging.getLogger(__name__)

#: What `--platform` accepts; `auto` recognises each line's format on its own.
FORMATS = ("auto", "elevenlabs", "vapi", "retell", "events")
PLATFORMS = ("elevenlabs", "vapi", "retell")
#: The topics that hold events (the DLQ holds failed records, not events).
EVENT_TOPICS = (CONVERSATIONS, MEMORIES, EMBEDDINGS, SUMMARIES)
#: ElevenLabs post-call webhook types (docs/ingest.md).
_ELEVENLABS_TYPES = frozenset(
    {"post_call_transcription", "post_call_audio", "call_initiation_failure"}
)
#: The key `log dump --json` adds to an envelope for the record's coordinates.
COORDINATES_KEY = "log"

_LEDGER_BATCH = 5000
# Session advisory lock of imports (any constant; the same in every importing process).
_IMPORT_LOCK_KEY = 0x6D73696D


class LineRejected(ValueError):
    """A line that cannot be imported; `code` names the reason, the message explains it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def detect_format(document: dict[str, Any]) -> str | None:
    """The format of one parsed line (one of FORMATS but `auto`), or None if unknown."""
    if "v" in document and "subject" in document and "type" in document:
        return "events"
    if isinstance(document.get("message"), dict):
        return "vapi"
    if isinstance(document.get("event"), str) and isinstance(document.get("call"), dict):
        return "retell"
    if document.get("type") in _ELEVENLABS_TYPES and isinstance(document.get("data"), dict):
        return "elevenlabs"
    if "conversation_id" in document and "transcript" in document:
        return "elevenlabs"  # a conversation as ElevenLabs' API returns it (no webhook wrapper)
    return None


def parse_line(
    line: bytes,
    *,
    platform: str,
    tenant: str | None,
    default_region: str | None,
    received_at: datetime,
    legacy_ids_before: datetime | None = None,
) -> list[Event]:
    """The events one line stands for (possibly none); raises LineRejected.

    ``default_region`` and ``legacy_ids_before`` are the tenant's (see
    :class:`services.tenants.Tenant`).
    """
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LineRejected("malformed_json", f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise LineRejected("not_an_object", "a line must be one JSON object")
    found = detect_format(document) if platform == "auto" else platform
    if found is None:
        raise LineRejected(
            "unknown_format",
            "not a platform payload memstream knows (ElevenLabs post-call, Vapi server "
            "message, Retell webhook) nor a memstream event",
        )
    if found == "events":
        return [_event(document, tenant)]
    if tenant is None:
        raise LineRejected("no_tenant", f"a {found} payload names no tenant: pass --tenant")
    try:
        webhook = _parse_platform(
            found, tenant, document, received_at, default_region, legacy_ids_before
        )
    except PayloadError as exc:
        where = f" at {exc.path}" if exc.path else ""
        raise LineRejected(exc.code, f"{found} payload rejected{where}: {exc.message}") from None
    _check_encodable(webhook.events)
    return webhook.events


def _parse_platform(
    platform: str,
    tenant: str,
    document: dict[str, Any],
    received_at: datetime,
    default_region: str | None,
    legacy_ids_before: datetime | None,
) -> NormalisedWebhook:
    if platform == "elevenlabs":
        if "type" not in document and "conversation_id" in document:
            # An export of the conversation itself is the post-call webhook's `data`.
            document = {"type": "post_call_transcription", "data": document}
        return elevenlabs.parse_post_call(
            tenant,
            document,
            received_at=received_at,
            default_region=default_region,
            legacy_ids_before=legacy_ids_before,
        )
    if platform == "vapi":
        return vapi.parse_server_message(
            tenant,
            document,
            received_at=received_at,
            default_region=default_region,
            legacy_ids_before=legacy_ids_before,
        )
    return retell.parse_webhook(
        tenant,
        document,
        received_at=received_at,
        default_region=default_region,
        legacy_ids_before=legacy_ids_before,
    )


def _event(document: dict[str, Any], tenant: str | None) -> Event:
    if COORDINATES_KEY in document:
        if "undecodable" in document:
            raise LineRejected("undecodable", "an undecodable record of a dump, not an event")
        document = {k: v for k, v in document.items() if k != COORDINATES_KEY}
    try:
        event = decode_event(document)
    except EventDecodeError as exc:  # InvalidEvent is one
        raise LineRejected(exc.code, exc.message) from None
    if tenant is not None and event.tenant != tenant:
        raise LineRejected(
            "tenant_mismatch", f"the event belongs to tenant {event.tenant!r}, not {tenant!r}"
        )
    _check_encodable([event])
    return event


def _check_encodable(events: Iterable[Event]) -> None:
    # Valid by the schema but not representable on the wire (e.g. an integer beyond 64
    # bits deep in platform metadata): found here, a line is rejected alone; found by the
    # producer, the whole batch would fail.
    for event in events:
        try:
            encode_event(event)
        except orjson.JSONEncodeError as exc:
            raise LineRejected("unencodable_value", f"a value cannot be stored: {exc}") from None


# -- the ledger ---------------------------------------------------------------------------


async def lock(conn: AsyncConnection[Any], waiting: Callable[[], None] | None = None) -> None:
    """Hold the import lock for the rest of `conn`'s session (waits for another import).

    Two imports at once would both find an id missing from the ledger and both append it;
    one at a time, the second finds what the first recorded.
    """
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", [_IMPORT_LOCK_KEY])
    row = await cursor.fetchone()
    if row is not None and row[0]:
        return
    if waiting is not None:
        waiting()
    await conn.execute("SELECT pg_advisory_lock(%s)", [_IMPORT_LOCK_KEY])


async def known_ids(
    conn: AsyncConnection[Any], keys: Sequence[tuple[str, uuid.UUID]]
) -> set[tuple[str, uuid.UUID]]:
    """The (tenant, event id) pairs among `keys` that the ledger holds."""
    cursor = await conn.execute(
        "SELECT tenant, event_id FROM memstream.imported_events"
        " WHERE (tenant, event_id) IN (SELECT * FROM unnest(%s::text[], %s::uuid[]))",
        [[tenant for tenant, _ in keys], [event_id for _, event_id in keys]],
    )
    return {(tenant, event_id) for tenant, event_id in await cursor.fetchall()}


async def record_ids(
    conn: AsyncConnection[Any], rows: Iterable[tuple[uuid.UUID, str, str]], origin: str
) -> None:
    """Add (event id, tenant, type) rows to the ledger (rows already there are kept)."""
    ids, tenants, types = [], [], []
    for event_id, tenant, event_type in rows:
        ids.append(event_id)
        tenants.append(tenant)
        types.append(event_type)
    if ids:
        await conn.execute(
            "INSERT INTO memstream.imported_events (event_id, tenant, type, origin)"
            " SELECT i, t, y, %s FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS u(i, t, y)"
            " ON CONFLICT (tenant, event_id) DO NOTHING",
            [origin, ids, tenants, types],
        )


async def update_ledger(
    conn: AsyncConnection[Any],
    settings: Settings,
    logical_topics: Sequence[str] = EVENT_TOPICS,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Bring the ledger up to the end of the topics as of now; return the records scanned.

    Reads the topics from where the previous catch-up stopped. Each batch of ids and the
    positions after it are written in one transaction, so an interrupted scan resumes
    where it stopped. `progress(done, total)` is called as records are read.
    """
    topics = Topics(settings.topic_prefix)
    names = [topics.name(logical) for logical in logical_topics]
    cursor = await conn.execute(
        "SELECT topic, partition, next_offset FROM memstream.import_log_positions"
        " WHERE topic = ANY(%s)",
        [names],
    )
    start = {(topic, partition): offset for topic, partition, offset in await cursor.fetchall()}
    scanned = 0
    async with LogReader(settings, names, start=start) as reader:
        total = reader.total
        rows: list[tuple[uuid.UUID, str, str]] = []
        positions: dict[tuple[str, int], int] = {}
        async for record in reader:
            scanned += 1
            positions[(record.topic, record.partition)] = record.offset + 1
            row = _ledger_row(record.value)
            if row is not None:
                rows.append(row)
            if scanned % _LEDGER_BATCH == 0:
                await _save_scan(conn, rows, positions)
                rows, positions = [], {}
                if progress is not None:
                    progress(scanned, total)
        # The ends, not the last offsets read: control records and gaps have no record.
        await _save_scan(conn, rows, dict(reader.ends))
    if progress is not None:
        progress(scanned, total)
    return scanned


def _ledger_row(value: bytes | None) -> tuple[uuid.UUID, str, str] | None:
    """(id, tenant, type) of a record's event, or None for a record that is no event.

    Only the envelope's identity is needed, so the event is not validated: a record a
    projection cannot decode is still in the log, and importing its id again would only
    append the same bad record twice.
    """
    try:
        document = orjson.loads(value or b"")
        return uuid.UUID(document["id"]), str(document["tenant"]), str(document["type"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
        return None


async def _save_scan(
    conn: AsyncConnection[Any],
    rows: list[tuple[uuid.UUID, str, str]],
    positions: dict[tuple[str, int], int],
) -> None:
    async with conn.transaction():
        await record_ids(conn, rows, "log")
        if positions:
            await conn.execute(
                "INSERT INTO memstream.import_log_positions (topic, partition, next_offset)"
                " SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[])"
                " ON CONFLICT (topic, partition) DO UPDATE"
                " SET next_offset = GREATEST(import_log_positions.next_offset,"
                " excluded.next_offset), updated_at = now()",
                [
                    [topic for topic, _ in positions],
                    [partition for _, partition in positions],
                    list(positions.values()),
                ],
            )


# -- importing ----------------------------------------------------------------------------

_BATCH_LINES = 1000
_MAX_REJECTIONS_KEPT = 1000


@dataclass(frozen=True)
class Rejection:
    """A line not imported: its number (from 1), why (a code) and an explanation."""

    line: int
    code: str
    reason: str


@dataclass
class ImportSummary:
    """What an import did, line by line (a line can stand for several events)."""

    dry_run: bool
    lines: int = 0
    imported: int = 0
    """Lines with at least one event appended now (with --dry-run: that would be)."""
    already: int = 0
    """Lines whose events were all in the log already (or earlier in the file)."""
    empty: int = 0
    """Lines that stand for no event (e.g. an audio webhook: acknowledged, not kept)."""
    erased: int = 0
    """Lines about a forgotten user's call that began at or before their erasure: nothing
    of them appended (the log refuses them; a dry run cannot tell, and counts them as
    imported)."""
    rejected: int = 0
    events: int = 0
    """Events appended (with --dry-run: that would be)."""
    rejections: list[Rejection] = field(default_factory=list)
    """The first rejections (up to 1000; `rejected` counts them all)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "lines": self.lines,
            "imported": self.imported,
            "already_imported": self.already,
            "empty": self.empty,
            "erased": self.erased,
            "rejected": self.rejected,
            "events_appended": self.events,
            "rejections": [vars(r) for r in self.rejections],
        }


class Importer:
    """Imports numbered lines in batches (see the module docstring for the sequence).

    `log` None is a dry run: the same parsing and ledger look-ups, nothing appended or
    recorded. `on_rejected` is called for every rejected line as it is found. The ledger
    catches up with a topic just before the first batch with events for it (platform
    payloads only ever need the conversations topic, not the much larger derived ones);
    `on_ledger_scan(logical topic, records read, records to read)` reports that scan.
    """

    def __init__(
        self,
        conn: AsyncConnection[Any],
        log: EventLog | None,
        settings: Settings,
        *,
        platform: str,
        tenant: str | None,
        default_region: str | None,
        received_at: datetime,
        legacy_ids_before: datetime | None = None,
        on_rejected: Callable[[Rejection], None] | None = None,
        on_ledger_scan: Callable[[str, int, int], None] | None = None,
    ) -> None:
        if platform not in FORMATS:
            raise ValueError(f"unknown format {platform!r}; known: {FORMATS}")
        self._conn = conn
        self._log = log
        self._platform = platform
        self._tenant = tenant
        self._default_region = default_region
        self._legacy_ids_before = legacy_ids_before
        self._received_at = received_at
        self._on_rejected = on_rejected
        self._settings = settings
        self._on_ledger_scan = on_ledger_scan
        self._caught_up: set[str] = set()
        self._pending: list[tuple[int, list[Event]]] = []
        self._seen: set[tuple[str, uuid.UUID]] = set()
        self.summary = ImportSummary(dry_run=log is None)

    async def add(self, number: int, line: bytes) -> None:
        """Parse one line (blank lines are skipped); import a batch when one is full."""
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # a byte order mark some editors write
        if not line.strip():
            return
        self.summary.lines += 1
        try:
            events = parse_line(
                line,
                platform=self._platform,
                tenant=self._tenant,
                default_region=self._default_region,
                received_at=self._received_at,
                legacy_ids_before=self._legacy_ids_before,
            )
        except LineRejected as exc:
            self._reject(Rejection(number, exc.code, exc.message))
            return
        self._pending.append((number, events))
        if len(self._pending) >= _BATCH_LINES:
            await self.flush()

    async def flush(self) -> None:
        """Import the lines parsed so far."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        for topic in sorted({e.topic for _, events in batch for e in events} - self._caught_up):
            await self._update_ledger(topic)
        known = await known_ids(
            self._conn, [(e.tenant, e.id) for _, events in batch for e in events]
        )
        fresh: list[Event] = []
        lines: list[int] = []  # how many of `fresh` each line with new events has
        for _, events in batch:
            new = [
                e
                for e in events
                if (e.tenant, e.id) not in known and (e.tenant, e.id) not in self._seen
            ]
            self._seen.update((e.tenant, e.id) for e in new)
            if not events:
                self.summary.empty += 1
            elif new:
                lines.append(len(new))
                fresh.extend(new)
            else:
                self.summary.already += 1
        appended = fresh
        if fresh and self._log is not None:
            # Acknowledged first, recorded second: a crash in between leaves events in
            # the log that the ledger lacks, which the next catch-up scan finds.
            positions = await self._log.append_many(fresh)
            appended = [e for e, p in zip(fresh, positions, strict=True) if p is not None]
            await record_ids(self._conn, ((e.id, e.tenant, e.type) for e in appended), "import")
            start = 0
            for count in lines:
                line = positions[start : start + count]
                start += count
                if all(p is None for p in line):
                    self.summary.erased += 1
                else:
                    self.summary.imported += 1
        else:
            self.summary.imported += len(lines)
        self.summary.events += len(appended)

    async def _update_ledger(self, topic: str) -> None:
        report = self._on_ledger_scan

        def progress(done: int, total: int) -> None:
            if report is not None:
                report(topic, done, total)

        await update_ledger(self._conn, self._settings, [topic], progress)
        self._caught_up.add(topic)

    def _reject(self, rejection: Rejection) -> None:
        self.summary.rejected += 1
        if len(self.summary.rejections) < _MAX_REJECTIONS_KEPT:
            self.summary.rejections.append(rejection)
        if self._on_rejected is not None:
            self._on_rejected(rejection)
