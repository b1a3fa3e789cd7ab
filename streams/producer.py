"""Appending events to the log: idempotent producer, ``acks=all``, key = ``subject``.

``append`` returns only once the broker has acknowledged the record on all in-sync
replicas; the returned :class:`LogPosition` is where it landed (services hand it to
clients for read-your-writes). Any failure raises :class:`BrokerUnavailable` and means
"not known to be appended": callers answer 503 and the platform retries. Retries can
append an event twice; that is safe because event ids are deterministic where it
matters and projections are idempotent per event id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas import Event, encode_event
from streams.exceptions import BrokerUnavailable
from streams.metrics import APPEND_FAILURES, APPEND_SECONDS, APPENDED_EVENTS
from streams.settings import Settings
from streams.topics import Topics

logger = logging.getLogger(__name__)


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

    def __init__(self, settings: Settings, *, append_timeout: float = 10.0, linger_ms: int = 0):
        self._bootstrap = settings.require_kafka()
        self._topics = Topics(settings.topic_prefix)
        self._append_timeout = append_timeout
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=int(append_timeout * 1000),
            client_id="memstream",
        )
        self._started = False

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
        if self._started:
            self._started = False
            await self._producer.stop()

    async def __aenter__(self) -> EventLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def append(self, event: Event) -> LogPosition:
        """Append one event to its topic; return its position once acknowledged."""
        return (await self.append_many([event]))[0]

    async def append_many(self, events: Sequence[Event]) -> list[LogPosition]:
        """Append events (in order per subject); return positions once all are acknowledged.

        If this raises, some of the events may have been appended and others not; a
        retry of the whole call is safe (see the module docstring).
        """
        records = [
            (
                self._topics.name(event.topic),
                event.subject.encode(),
                encode_event(event),
                [("type", event.type.encode()), ("v", str(event.v).encode())],
                event.type,
            )
            for event in events
        ]
        return await self._send(records)

    async def append_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> LogPosition:
        """Append an already-encoded record to a physical topic (the DLQ uses this)."""
        return (await self._send([(topic, key, value, headers, "raw")]))[0]

    async def _send(
        self, records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]], str]]
    ) -> list[LogPosition]:
        if not self._started:
            raise BrokerUnavailable(self._bootstrap, "the event log is not started")
        began = time.perf_counter()
        topic_label = records[0][0] if records else ""
        try:
            futures: list[Any] = []
            for topic, key, value, headers, _ in records:
                futures.append(
                    await asyncio.wait_for(
                        self._producer.send(topic, value=value, key=key, headers=headers),
                        self._append_timeout,
                    )
                )
            metadata = await asyncio.wait_for(asyncio.gather(*futures), self._append_timeout)
        except (KafkaConnectionError, KafkaError, OSError, TimeoutError) as exc:
            APPEND_FAILURES.labels(topic_label).inc(len(records))
            raise BrokerUnavailable(self._bootstrap, f"{type(exc).__name__}: {exc}") from exc
        elapsed = time.perf_counter() - began
        positions = []
        for (topic, _, _, _, type_), meta in zip(records, metadata, strict=True):
            APPENDED_EVENTS.labels(topic, type_).inc()
            positions.append(LogPosition(topic, meta.partition, meta.offset))
        APPEND_SECONDS.labels(topic_label).observe(elapsed)
        return positions
