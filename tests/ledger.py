"""A projection for testing the runtime itself: one ledger row per applied event.

It deliberately does NOT dedupe, so a record applied twice shows as two rows and a
record lost shows as a missing offset: the runtime's exactly-once effects are what
keep the ledger exact. Events carrying ``reason == "poison"`` (conversation.failed)
make ``apply`` raise, to exercise retries and the DLQ; ``reason == "unindexable"`` makes
it insert a key PostgreSQL's btree index cannot hold (SQLSTATE 54000, which psycopg
raises as an OperationalError, the class of a lost connection too).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

from psycopg import AsyncConnection

from schemas import ConversationFailed
from streams.projection import LogRecord, Projection
from streams.topics import CONVERSATIONS


class PoisonEvent(Exception):
    """Raised by the ledger for events marked as poison."""


class LedgerProjection(Projection):
    name: ClassVar[str] = "ledger"
    topics: ClassVar[tuple[str, ...]] = (CONVERSATIONS,)
    tables: ClassVar[tuple[str, ...]] = ("ledger",)

    def __init__(self, worker: str | None = None) -> None:
        self.worker = worker or os.environ.get("MEMSTREAM_TEST_WORKER", "main")

    def schema_sql(self) -> str:
        return (
            "CREATE TABLE IF NOT EXISTS ledger ("
            ' topic text NOT NULL, partition int NOT NULL, "offset" bigint NOT NULL,'
            " event_id uuid NOT NULL, worker text NOT NULL);"
            " CREATE TABLE IF NOT EXISTS ledger_keys (key text PRIMARY KEY)"
        )

    async def apply(self, conn: AsyncConnection[Any], records: Sequence[LogRecord]) -> None:
        for record in records:
            event = record.event
            if isinstance(event, ConversationFailed) and event.data.reason == "poison":
                raise PoisonEvent(f"poison event at offset {record.offset}")
            if isinstance(event, ConversationFailed) and event.data.reason == "unindexable":
                # 12,800 characters of hex: over the 2,704 bytes of a btree entry.
                await conn.execute(
                    "INSERT INTO ledger_keys"
                    " SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i"
                )
        async with conn.cursor().copy(
            'COPY ledger (topic, partition, "offset", event_id, worker) FROM STDIN'
        ) as copy:
            for record in records:
                await copy.write_row(
                    (record.topic, record.partition, record.offset, record.event.id, self.worker)
                )
