"""Projects the audit topic's entries (``streams.audit.AuditEntry``) into ``entries``.

The audit topic holds records, not events: this projection reads them with its own
``decode``. One row per entry, by ``(tenant, entry_id)``: an entry appended twice (a
flush retried after a timeout) is one row, whatever the order. Nothing ever deletes a
row: an erasure is one more entry, and the reads before it stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
from psycopg import AsyncConnection

from streams.audit import AuditEntry, decode_entry
from streams.projection import LogRecord, Projection
from streams.topics import AUDIT

__all__ = ["AuditProjection"]

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()

_COLUMNS = (
    "tenant, entry_id, type, subject_hash, key_id, route, at, status, results, conversation_id"
)
_INSERT_SQL = f"""
INSERT INTO entries ({_COLUMNS})
SELECT {_COLUMNS} FROM json_populate_recordset(NULL::entries, %s::json)
ON CONFLICT (tenant, entry_id) DO NOTHING
"""


class AuditProjection(Projection[AuditEntry]):
    name: ClassVar[str] = "audit"
    topics: ClassVar[tuple[str, ...]] = (AUDIT,)
    tables: ClassVar[tuple[str, ...]] = ("entries",)

    def schema_sql(self) -> str:
        return SCHEMA_SQL

    def decode(self, value: bytes) -> AuditEntry:
        return decode_entry(value)

    def prepare(self, records: Sequence[LogRecord[AuditEntry]]) -> str | None:
        # One statement cannot insert a row twice even with DO NOTHING: one per entry id.
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:
            entry = record.event
            rows[(entry.tenant, str(entry.id))] = {
                "tenant": entry.tenant,
                "entry_id": entry.id,
                "type": entry.type,
                "subject_hash": entry.subject_hash,
                "key_id": entry.key_id,
                "route": entry.route,
                "at": entry.at,
                "status": entry.status,
                "results": entry.results,
                "conversation_id": entry.conversation_id,
            }
        return orjson.dumps(list(rows.values())).decode() if rows else None

    async def apply(self, conn: AsyncConnection[Any], prepared: str | None) -> None:
        if prepared is not None:
            await conn.execute(_INSERT_SQL, [prepared])
