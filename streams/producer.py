"""Appending events to the log: idempotent producer, ``acks=all``, key = the subject's
pseudonym (``schemas.event_key``: a keyed hash, so one subject's events share a partition
and no record key names a person).

``append`` returns only once the broker has acknowledged the record on all in-sync
replicas; the returned :class:`LogPosition` is where it landed (services hand it to
clients for read-your-writes). Any failure raises :class:`BrokerUnavailable` and means
"not known to be appended": callers answer 503 and the platform retries. Retries can
append an event twice; that is safe because event ids are deterministic where it
matters and projections are idempotent per event id. An event too large for a record of
its topic raises :class:`RecordTooLarge` instead: no retry can append it. Appending a
``user.forgotten`` first destroys the subject's key (``streams.subject_keys``).

Every append refuses an event about a call that began at or before its subject's latest
erasure (``Event.began``; never a ``user.forgotten``): appended, it would be sealed with
the subject's next key and bring a forgotten user's old call back into the log, readable
(a platform redelivering an old webhook, ``memstream log import`` of an old call, a
processor deriving from one). It is not appended, its position is None, and
``memstream_append_erased_events_total`` counts it. The erasures are those this process's
key store knows (``streams.subject_keys.latest_erasures``); without encryption there is
no record of them here, and the read models' erasure watermarks drop such events instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from schemas import Event, UserForgotten, encode_event, event_key
from streams.exceptions import BrokerUnavailable, RecordTooLarge
from streams.metrics import APPEND_ERASED, APPEND_FAILURES, APPEND_SECONDS, APPENDED_EVENTS
from streams.settings import StreamsSettings
from streams.subject_keys import (
    carry_out_erasure,
    keys_created_ahead,
    latest_erasures,
    prepare_keys,
)
from streams.topics import TOPIC_CONFIG, Topics

logger = logging.getLogger(__name__)

# Below this many records an append uses the per-record path; above, record batches.
_BATCH_THRESHOLD = 64
_MAX_BATCH_BYTES = 1024 * 1024
#: The largest record the topics take (their max.message.bytes), batch overhead included.
MAX_RECORD_BYTES = int(TOPIC_CONFIG["max.message.bytes"])


@dataclass(frozen=True, order=True)
class LogPosition:
    """Where a record is in the log."""

    topic: str
    partition: int
    offset: int

    def token(self) -> str:
        """A compact string form, ``topic:partition:offset``."""
        return f"{self.topic}:{self.partition}:{self.offset}"


class EventLog:
    """The write side of the log. One per process; safe to share between tasks."""

    def __init__(
        self,
        settings: StreamsSettings,
        *,
        append_timeout: float = 10.0,
        linger_ms: int = 0,
        headers: Sequence[tuple[str, bytes]] = (),
    ):
        """`headers` go on every event appended (a processor's lineage, streams.lineage);
        not on `append_raw` records."""
        self._headers = list(headers)
        self._bootstrap = settings.require_kafka()
        self._topics = Topics(settings.topic_prefix)
        self._append_timeout = append_timeout
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_request_size=MAX_RECORD_BYTES,
            # Room for many events per record batch in bulk appends (see _send_batches).
            max_batch_size=_MAX_BATCH_BYTES,
            request_timeout_ms=int(append_timeout * 1000),
            client_id="memstream",
            **settings.kafka_options(),
        )
        self._partitioner = DefaultPartitioner()
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    @property
    def topics(self) -> Topics:
        return self._topics

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._producer.start(), self._append_timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._producer.stop()
            raise BrokerUnavailable(self._bootstrap, f"{type(exc).__name__}: {exc}") from exc
        self._started = True

    async def stop(self) -> None:
        # Also when never started: the producer was made in __init__ and holds a client
        # until it is closed (aiokafka warns about it otherwise). Stopping is idempotent.
        self._started = False
        await self._producer.stop()
        await keys_created_ahead()

    async def __aenter__(self) -> EventLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def append(self, event: Event) -> LogPosition | None:
        """Append one event to its topic; return its position once acknowledged (None: not
        appended, its subject was erased after its call began; see `append_many`)."""
        return (await self.append_many([event]))[0]

    async def append_many(self, events: Sequence[Event]) -> list[LogPosition | None]:
        """Append events (in order per subject); return positions once all are acknowledged.

        An event about a call that began at or before its subject's latest erasure, known
        now or from a ``user.forgotten`` earlier in `events`, is not appended: None in its
        place (see the module docstring). If this raises, some of the events may have
        been appended and others not; a retry of the whole call is safe.
        """
        kept = await self._not_erased(events)
        # New subjects' and periods' keys are created (or loaded) in a worker thread, in one go.
        await prepare_keys(events[i] for i in kept)
        records = []
        for index in kept:
            event = events[index]
            if isinstance(event, UserForgotten):
                # Erasure: its subject's key is destroyed before it and what follows it
                # are sealed (what precedes it was sealed with that key). Idempotent, so a
                # retried call does not erase twice.
                await carry_out_erasure(event)
            records.append(_record(self._topics.name(event.topic), event, self._headers))
        appended = await self._send(records)
        positions: list[LogPosition | None] = [None] * len(events)
        for index, position in zip(kept, appended, strict=True):
            positions[index] = position
        return positions

    async def _not_erased(self, events: Sequence[Event]) -> list[int]:
        """The indexes of `events` to append: all but those about a call that began at or
        before their subject's latest erasure (a ``user.forgotten`` among them counts for
        what follows it)."""
        erased = await latest_erasures(
            e.subject for e in events if not isinstance(e, UserForgotten)
        )
        kept: list[int] = []
        refused: list[Event] = []
        for index, event in enumerate(events):
            at = erased.get(event.subject)
            if isinstance(event, UserForgotten):
                erased[event.subject] = (
                    event.occurred_at if at is None else max(at, event.occurred_at)
                )
            elif at is not None and event.began <= at:
                refused.append(event)
                continue
            kept.append(index)
        if refused:
            for event in refused:
                APPEND_ERASED.labels(self._topics.name(event.topic), event.type).inc()
            # Debug: the callers that answer someone for them log them (the ingest service,
            # with the subject's hash); the metric counts them all.
            logger.debug(
                "%d event(s) not appended: their call began at or before the erasure",
                len(refused),
                extra={"event_ids": [str(e.id) for e in refused]},
            )
        return kept

    async def append_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> LogPosition:
        """Append an already-encoded record to a physical topic (the DLQ uses this)."""
        return (await self._send([_Record(topic, key, value, headers, "raw")]))[0]

    async def _send(self, records: Sequence[_Record]) -> list[LogPosition]:
        # Before anything is sent, whether or not the broker is up: a record over the
        # topic's limit fails the whole call with nothing of it appended (the broker
        # would refuse that record alone, after the others were appended).
        for record in records:
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
                record.key, record.value, record.headers
            )
            if size > MAX_RECORD_BYTES:
                raise RecordTooLarge(record.topic, size, MAX_RECORD_BYTES)
        if not self._started:
            raise BrokerUnavailable(self._bootstrap, "the event log is not started")
        if not records:
            return []
        began = time.perf_counter()
        try:
            # One deadline for the whole call: a wait_for per record costs a task each.
            async with asyncio.timeout(self._append_timeout):
                if len(records) < _BATCH_THRESHOLD:
                    positions = await self._send_records(records)
                else:
                    positions = await self._send_batches(records)
        except MessageSizeTooLargeError as exc:
            # A topic created elsewhere with a smaller limit: the broker refused a record
            # (others of the call may be appended, as with BrokerUnavailable).
            APPEND_FAILURES.labels(records[0].topic).inc(len(records))
            largest = max(records, key=lambda r: len(r.value))
            raise RecordTooLarge(largest.topic, len(largest.value), None) from exc
        except (KafkaError, OSError, TimeoutError) as exc:
            APPEND_FAILURES.labels(records[0].topic).inc(len(records))
            raise BrokerUnavailable(self._bootstrap, f"{type(exc).__name__}: {exc}") from exc
        APPEND_SECONDS.labels(records[0].topic).observe(time.perf_counter() - began)
        for record in records:
            APPENDED_EVENTS.labels(record.topic, record.type).inc()
        return positions

    async def _send_records(self, records: Sequence[_Record]) -> list[LogPosition]:
        """Few records: the producer's own per-record path (lowest latency)."""
        futures = [
            await self._producer.send(r.topic, value=r.value, key=r.key, headers=r.headers)
            for r in records
        ]
        metadata = await asyncio.gather(*futures)
        return [
            LogPosition(r.topic, m.partition, m.offset)
            for r, m in zip(records, metadata, strict=True)
        ]

    async def _send_batches(self, records: Sequence[_Record]) -> list[LogPosition]:
        """Many records: one record batch per partition at a time (~3x the per-record path).

        Partitions are chosen with Kafka's default murmur2 partitioner, as the per-record
        path and Java clients do, so a subject's events land on the same partition
        whichever path appended them. Within a partition, records keep their order.
        """
        by_partition: dict[tuple[str, int], list[int]] = {}
        for topic in {r.topic for r in records}:
            partitions = sorted(await self._producer.partitions_for(topic))
            for index, record in enumerate(records):
                if record.topic == topic:
                    partition = self._partitioner(record.key, partitions, partitions)
                    by_partition.setdefault((topic, partition), []).append(index)

        pending: list[tuple[Any, str, int, list[int]]] = []
        for (topic, partition), indexes in by_partition.items():
            chunk: list[int] = []
            batch = self._producer.create_batch()
            for index in indexes:
                record = records[index]
                if (
                    batch.append(
                        key=record.key, value=record.value, timestamp=None, headers=record.headers
                    )
                    is None
                ):
                    # The batch is full: send it, start the next one with this record.
                    pending.append(
                        (
                            await self._producer.send_batch(batch, topic, partition=partition),
                            topic,
                            partition,
                            chunk,
                        )
                    )
                    chunk, batch = [], self._producer.create_batch()
                    if (
                        batch.append(
                            key=record.key,
                            value=record.value,
                            timestamp=None,
                            headers=record.headers,
                        )
                        is None
                    ):
                        raise KafkaError(
                            f"a record of {len(record.value)} bytes exceeds the batch size"
                        )
                chunk.append(index)
            pending.append(
                (
                    await self._producer.send_batch(batch, topic, partition=partition),
                    topic,
                    partition,
                    chunk,
                )
            )

        positions: list[LogPosition | None] = [None] * len(records)
        for future, topic, partition, chunk in pending:
            base = (await future).offset  # records of a batch get consecutive offsets
            for i, index in enumerate(chunk):
                positions[index] = LogPosition(topic, partition, base + i)
        return [p for p in positions if p is not None]


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    type: str


def _record(topic: str, event: Event, extra: list[tuple[str, bytes]]) -> _Record:
    return _Record(
        topic,
        event_key(event),
        encode_event(event),
        [("type", event.type.encode()), ("v", str(event.v).encode()), *extra],
        event.type,
    )
