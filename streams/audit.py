"""The audit trail: who read or erased whose personal data, on the audit topic.

An :class:`AuditEntry` records one read of a subject's personal data through the query
service (a search, one agent tool call, a briefing, a context, a resource, an export) or
one erasure (the query service's, ``user.forgotten`` through the ingest service's events
API, ``memstream users forget``): the API key, the route, the subject's hash, the tenant,
the time, and what came of it (the status answered and how many results). The audit
projection (``projections/audit``) builds the read model ``memstream audit`` and ``GET
/v1/audit`` read. A one-shot command appends its entry itself (:func:`append_entry`).

**Records, not events.** An event's subject is sealed with the subject's own key
(``schemas.wire``), so erasure would shred the entries of an erased subject: the reads of
a person's data before they were forgotten are what an audit trail must keep. An entry
names its subject only by its hash and holds nothing else about them, so it is stored in
clear: one JSON object a record, like a dead letter, with a ``type`` and a ``v`` like an
event (and the same two headers). It is not in the event registry (``schemas``): nothing
folds it into a user's data, and ``/v1/events`` cannot forge one. The projection runtime
reads it through ``AuditProjection.decode``.

**The subject hash** is the subject's pseudonym (``streams.subject_keys``): HMAC-SHA256
keyed with the deployment's ``pseudonyms`` key, 32 hex characters, the hash in the record
key of every event of the subject; ``tenant/<hash>`` is an entry's record key too, so it
lands on its subject's partition. Not the log lines' ``subject_hash``
(``services/logs.py``): its key may be left unset (a built-in key, against which phone
numbers can be tried) and rotating it changes every hash, which would cut a trail kept
forever in two. Erasure never destroys the pseudonyms key: an erased subject's trail is
still found by their user id.

**Writing without slowing reads** (:class:`AuditTrail`). A request puts its entry in an
in-process buffer and goes on; a background task appends the buffer in batches (at least
every ``audit_flush_ms``, at once past 500 entries) through the process's ``EventLog``.
The buffer is bounded (``audit_buffer``): a request that finds it full waits for room up
to ``audit_wait_ms`` (backpressure, counted in ``memstream_audit_waits_total``); if it
stays full — the broker has been down for a while — :class:`AuditUnavailable` is raised
and the request answers 503 without disclosing anything (counted in
``memstream_audit_refused_total``). No read is answered without its entry in the buffer;
none is silently dropped. ``close`` (the service's shutdown, before its producer stops)
appends everything buffered: a clean shutdown loses no entry. What a broker down through
the shutdown keeps out is counted in ``memstream_audit_lost_entries_total`` and logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import getpass
import itertools
import logging
import re
import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError

from schemas import InvalidEvent, MalformedEvent, new_event_id, subject_sealing_codec, utc_now
from schemas.envelope import TENANT_PATTERN
from schemas.exceptions import ValidationErrorDetail
from streams.backoff import Backoff
from streams.exceptions import AuditUnavailable, BrokerUnavailable, ConfigurationError
from streams.metrics import AUDIT_BUFFERED, AUDIT_LOST, AUDIT_REFUSED, AUDIT_WAITS
from streams.producer import EventLog
from streams.settings import StreamsSettings

__all__ = [
    "ERASURE",
    "READ",
    "AuditEntry",
    "AuditTrail",
    "append_entry",
    "decode_entry",
    "subject_hash",
]

logger = logging.getLogger(__name__)

#: Entry types: a read of a subject's personal data, and an erasure of the subject.
READ: Final = "audit.read"
ERASURE: Final = "audit.erasure"
EntryType = Literal["audit.read", "audit.erasure"]

#: Entries appended at once by a flush (about 300 bytes each).
_BATCH = 500
#: How long `close` tries to append what is buffered (the producer's append timeout).
_CLOSE_TIMEOUT_S = 10.0
#: Between flushes the broker refused: 0.2 s, doubling, at most 5 s.
_FLUSH_BACKOFF = Backoff(base_s=0.2, cap_s=5.0, jitter="none")
#: A conversation id an entry keeps (the platform's; a client's otherwise): one PostgreSQL
#: text can hold, of a sane length. Another is left out rather than poison the projection.
_PLAIN_ID = r"^[^\x00-\x1f\x7f]{1,256}$"


def subject_hash(subject: str) -> str:
    """The hash an audit entry names ``subject`` by: its pseudonym's 32 hex characters.

    Raises ConfigurationError without personal data encryption (benchmarks only): the
    pseudonym's key is the encryption's, and the subject itself must never be written.
    """
    sealing = subject_sealing_codec()
    if sealing is None:
        raise ConfigurationError(
            "the audit trail names subjects by their pseudonym, which needs personal data"
            " encryption (MEMSTREAM_PERSONAL_DATA_ENCRYPTION=on); turn the trail off with"
            " MEMSTREAM_AUDIT_TRAIL=off (benchmarks only)"
        )
    return sealing.pseudonym(subject).partition("/")[2]


class AuditEntry(BaseModel):
    """One read of a subject's personal data, or one erasure of the subject."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    id: uuid.UUID
    """UUIDv7; the read model keeps an entry appended twice (a retried flush) once."""
    type: EntryType
    v: Literal[1] = 1
    tenant: Annotated[str, StringConstraints(pattern=TENANT_PATTERN)]
    subject_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    """The subject's pseudonym (:func:`subject_hash`), never the subject."""
    key_id: str | None
    """The API key's id (``msk_<key id>_...``), or ``cli:<OS user>`` for the ``memstream``
    command."""
    route: str
    """``METHOD /route/{template}`` (``GET /v1/users/{user}``), or the command."""
    at: AwareDatetime
    status: int
    """The status answered: 200, 202, or 404 for a subject with nothing to show."""
    results: int | None = None
    """How many results it answered with (hits, memories, conversations, turns...); None
    when not known as it was recorded (a streamed context is recorded before it starts)."""
    conversation_id: Annotated[str, StringConstraints(pattern=_PLAIN_ID)] | None = None
    """The platform's conversation when the read was made in a call (the agent tools, a
    briefing with ``?conversation_id=``)."""

    @classmethod
    def about(
        cls,
        entry_type: EntryType,
        tenant: str,
        subject: str,
        *,
        key_id: str | None,
        route: str,
        status: int = 200,
        results: int | None = None,
        conversation_id: str | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """A new entry about ``subject`` (``tenant/user``), named by its hash. A conversation
        id no read model could hold (a client's, with control characters) is left out."""
        if not subject.startswith(f"{tenant}/"):
            raise ValueError("an audit entry's subject must be in its tenant")
        if conversation_id is not None and not re.fullmatch(_PLAIN_ID, conversation_id):
            conversation_id = None
        return cls(
            id=new_event_id(),
            type=entry_type,
            tenant=tenant,
            subject_hash=subject_hash(subject),
            key_id=key_id,
            route=route,
            at=at or utc_now(),
            status=status,
            results=results,
            conversation_id=conversation_id,
        )

    @property
    def correlation_id(self) -> str | None:
        """The conversation, under the envelope's name (the runtime's log lines use it)."""
        return self.conversation_id

    def key(self) -> bytes:
        """The record key: ``tenant/<subject hash>``, the subject's pseudonym."""
        return f"{self.tenant}/{self.subject_hash}".encode()

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    def headers(self) -> list[tuple[str, bytes]]:
        return [("type", self.type.encode()), ("v", str(self.v).encode())]


def decode_entry(value: bytes) -> AuditEntry:
    """An audit record read back; raises ``MalformedEvent`` / ``InvalidEvent`` (the
    runtime dead-letters it) when it is not one."""
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"audit entry is not valid JSON: {exc}", code="not_json") from None
    if not isinstance(document, dict):
        raise MalformedEvent("audit entry must be a JSON object", code="not_an_object")
    try:
        return AuditEntry.model_validate(document)
    except ValidationError as exc:
        errors: list[ValidationErrorDetail] = [
            {"loc": tuple(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        shown = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        raise InvalidEvent(
            f"invalid audit entry: {shown}",
            errors=errors,
            event_type=document.get("type") if isinstance(document.get("type"), str) else None,
            event_id=str(document.get("id")) if document.get("id") is not None else None,
        ) from None


class AuditTrail:
    """A process's writer of audit entries: a bounded buffer appended in batches by a
    background task (see the module docstring). ``start`` after the ``EventLog``,
    ``close`` before it stops."""

    def __init__(
        self,
        log: EventLog,
        *,
        enabled: bool = True,
        capacity: int = 10_000,
        flush_interval_s: float = 0.1,
        wait_s: float = 0.5,
    ) -> None:
        self.enabled = enabled
        self._log = log
        self._topic = log.topics.audit
        self._capacity = capacity
        self._interval = flush_interval_s
        self._wait_s = wait_s
        self._buffer: collections.deque[AuditEntry] = collections.deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: StreamsSettings, log: EventLog) -> AuditTrail:
        return cls(
            log,
            enabled=settings.audit_trail,
            capacity=settings.audit_buffer,
            flush_interval_s=settings.audit_flush_ms / 1000,
            wait_s=settings.audit_wait_ms / 1000,
        )

    @property
    def buffered(self) -> int:
        """Entries recorded and not yet acknowledged by the broker."""
        return len(self._buffer)

    async def start(self) -> None:
        if not self.enabled or self._task is not None:
            return
        # The pseudonyms key is read from the database on first use: here, in a worker
        # thread, rather than on the event loop in the first audited request.
        await asyncio.to_thread(subject_hash, "memstream/audit")
        self._closed = False
        self._task = asyncio.create_task(self._flush_forever(), name="audit-flush")

    async def record(
        self,
        entry_type: EntryType,
        tenant: str,
        subject: str,
        *,
        key_id: str | None,
        route: str,
        status: int = 200,
        results: int | None = None,
        conversation_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Buffer one entry about ``subject`` (``tenant/user``). Returns at once while the
        buffer has room; waits up to ``audit_wait_ms`` for room, then raises
        AuditUnavailable: the caller must not answer the read it records."""
        if not self.enabled:
            return
        entry = AuditEntry.about(
            entry_type,
            tenant,
            subject,
            key_id=key_id,
            route=route,
            status=status,
            results=results,
            conversation_id=conversation_id,
            at=at,
        )
        if len(self._buffer) >= self._capacity:
            await self._wait_for_room()
        if self._closed or self._task is None:
            raise AuditUnavailable("the audit trail is not running (the service is stopping)")
        self._buffer.append(entry)
        AUDIT_BUFFERED.set(len(self._buffer))
        if len(self._buffer) >= _BATCH:
            self._wake.set()

    async def _wait_for_room(self) -> None:
        AUDIT_WAITS.inc()
        self._wake.set()
        try:
            async with asyncio.timeout(self._wait_s):
                while len(self._buffer) >= self._capacity and not self._closed:
                    self._room.clear()
                    await self._room.wait()
        except TimeoutError:
            AUDIT_REFUSED.inc()
            raise AuditUnavailable(
                f"the audit buffer stayed full ({self._capacity} entries) for"
                f" {self._wait_s:g} s: is the broker down?"
            ) from None

    async def close(self, timeout: float = _CLOSE_TIMEOUT_S) -> None:
        """Stop taking entries and append every buffered one (a clean shutdown loses none).
        What the broker has not taken within ``timeout`` is counted lost and logged."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closed = True
        self._wake.set()
        self._room.set()  # requests waiting for room give up now
        try:
            await asyncio.wait_for(task, timeout)
        except TimeoutError:
            pass
        except Exception:
            logger.exception("the audit flush failed while closing")
        if self._buffer:
            AUDIT_LOST.inc(len(self._buffer))
            logger.error(
                "%d audit entries were not appended before the service stopped",
                len(self._buffer),
                extra={"lost": len(self._buffer)},
            )
            self._buffer.clear()
        AUDIT_BUFFERED.set(0)

    async def _flush_forever(self) -> None:
        """Append the buffer in batches until closed and empty; back off while the broker
        refuses (the entries stay buffered, in order)."""
        failures = 0
        while True:
            if not self._closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
            elif not self._buffer:
                return
            while self._buffer:
                try:
                    await self._flush_batch()
                    failures = 0
                except BrokerUnavailable as exc:
                    failures += 1
                    logger.error(
                        "audit entries not appended (%d buffered): %s; retrying",
                        len(self._buffer),
                        exc,
                    )
                    await asyncio.sleep(_FLUSH_BACKOFF.delay(failures))
                    break

    async def _flush_batch(self) -> None:
        # Only this task takes entries off the left; `record` appends on the right. A batch
        # stays in the buffer (and counts against its bound) until the broker took it.
        batch = list(itertools.islice(self._buffer, _BATCH))
        results = await asyncio.gather(
            *(self._log.append_raw(self._topic, e.key(), e.encode(), e.headers()) for e in batch),
            return_exceptions=True,
        )
        for _ in batch:
            self._buffer.popleft()
        retry: list[AuditEntry] = []
        unavailable: BrokerUnavailable | None = None
        for entry, result in zip(batch, results, strict=True):
            if isinstance(result, BrokerUnavailable):
                retry.append(entry)
                unavailable = result
            elif isinstance(result, BaseException):
                # No retry can append it (a record over the topic's limit): never silent.
                AUDIT_LOST.inc()
                logger.error("audit entry %s cannot be appended: %r", entry.id, result)
        self._buffer.extendleft(reversed(retry))
        AUDIT_BUFFERED.set(len(self._buffer))
        if len(retry) < len(batch):
            self._room.set()
        if unavailable is not None:
            raise unavailable


async def append_entry(
    settings: StreamsSettings,
    entry_type: EntryType,
    tenant: str,
    subject: str,
    *,
    route: str,
    key_id: str | None = None,
    results: int | None = None,
) -> None:
    """Append one entry and wait for the broker: for a one-shot command (``memstream users
    forget|export``), which runs no trail. Raises BrokerUnavailable: the command fails
    rather than go unrecorded (an erasure done before it is idempotent to retry)."""
    entry = AuditEntry.about(
        entry_type,
        tenant,
        subject,
        key_id=key_id or f"cli:{getpass.getuser()}",
        route=route,
        results=results,
    )
    async with EventLog(settings) as log:
        await log.append_raw(log.topics.audit, entry.key(), entry.encode(), entry.headers())
