"""Projects ``summary.generated`` into the summaries read model (``profiles``,
``conversation_summaries``), and ``user.forgotten`` out of it.

From the ``summaries`` topic: profiles and conversation summaries; from
``conversations``: erasures. The two topics have no order between them, and the
processor may append one summary twice (a batch replayed after a crash), so every
write is a merge that gives the same rows whatever the order:

- a user's profile row holds the profile that ranks highest by ``(as_of, sequence,
  event_id)``: the newest inputs, then the later profile of the same inputs (a
  retraction leaves ``as_of`` as it was and raises ``sequence``);
- a conversation's row holds the summary that ranks highest by ``(rank, as_of,
  event_id)``, where rank is ``platform`` 2, ``llm:<model>`` 1, any other generator 0:
  the platform's own summary wins over one memstream wrote;
- ``user.forgotten`` deletes the user's summaries whose ``as_of`` is at or before the
  erasure, records the erasure time, and any summary about them from before that time
  is dropped when it arrives later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson
from psycopg import AsyncConnection

from schemas import SummaryGenerated, UserForgotten
from streams.projection import LogRecord, Projection
from streams.topics import CONVERSATIONS, SUMMARIES

__all__ = ["SummariesProjection", "generator_rank"]

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()

_COMMON = (
    "event_id, text, generator, generator_version, memory_count, memory_ids, last_event_id,"
    " as_of, generated_at"
)
_PROFILE_COLUMNS = f"tenant, subject, sequence, {_COMMON}"
_CONVERSATION_COLUMNS = f"tenant, conversation_id, subject, rank, {_COMMON}"
_NOT_FORGOTTEN = """NOT EXISTS (
    SELECT 1 FROM forgotten f
     WHERE f.tenant = s.tenant AND f.subject = s.subject AND f.forgotten_at >= s.as_of)"""


def _set(columns: str) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in (c.strip() for c in columns.split(",")))


_FORGET_SQL = [
    """
    INSERT INTO forgotten AS f (tenant, subject, forgotten_at)
    SELECT tenant, subject, forgotten_at FROM json_populate_recordset(NULL::forgotten, %s::json)
    ON CONFLICT (tenant, subject) DO UPDATE
        SET forgotten_at = GREATEST(f.forgotten_at, EXCLUDED.forgotten_at)
    """,
    *(
        f"""
        DELETE FROM {table} t USING forgotten f
         WHERE f.tenant = t.tenant AND f.subject = t.subject AND t.as_of <= f.forgotten_at
           AND (f.tenant, f.subject) IN (SELECT tenant, subject
                                           FROM json_populate_recordset(NULL::forgotten, %s::json))
        """
        for table in ("profiles", "conversation_summaries")
    ),
]

_UPSERT_PROFILES_SQL = f"""
INSERT INTO profiles AS p ({_PROFILE_COLUMNS})
SELECT {_PROFILE_COLUMNS} FROM json_populate_recordset(NULL::profiles, %s::json) AS s
 WHERE {_NOT_FORGOTTEN}
ON CONFLICT (tenant, subject) DO UPDATE SET {_set(_PROFILE_COLUMNS)}
 WHERE (EXCLUDED.as_of, EXCLUDED.sequence, EXCLUDED.event_id)
     > (p.as_of, p.sequence, p.event_id)
"""

_UPSERT_CONVERSATIONS_SQL = f"""
INSERT INTO conversation_summaries AS c ({_CONVERSATION_COLUMNS})
SELECT {_CONVERSATION_COLUMNS}
  FROM json_populate_recordset(NULL::conversation_summaries, %s::json) AS s
 WHERE {_NOT_FORGOTTEN}
ON CONFLICT (tenant, conversation_id) DO UPDATE SET {_set(_CONVERSATION_COLUMNS)}
 WHERE (EXCLUDED.rank, EXCLUDED.as_of, EXCLUDED.event_id) > (c.rank, c.as_of, c.event_id)
"""


def generator_rank(generator: str) -> int:
    """How much a conversation summary's generator is trusted: the platform's own summary
    over a model's, a model's over an extractive one."""
    if generator == "platform":
        return 2
    return 1 if generator.startswith("llm:") else 0


@dataclass(frozen=True)
class PreparedBatch:
    """A batch folded into JSON documents (None: nothing of that kind in the batch)."""

    forgotten: str | None
    profiles: str | None
    conversations: str | None


class SummariesProjection(Projection):
    name: ClassVar[str] = "summaries"
    topics: ClassVar[tuple[str, ...]] = (SUMMARIES, CONVERSATIONS)
    tables: ClassVar[tuple[str, ...]] = ("profiles", "conversation_summaries", "forgotten")

    def schema_sql(self) -> str:
        return SCHEMA_SQL

    def prepare(self, records: Sequence[LogRecord]) -> PreparedBatch:
        # Folded per row key with the same ranking as the SQL merge: one statement
        # cannot touch a row twice. Times stay datetimes (compared as instants; orjson
        # writes them as RFC 3339).
        forgotten: dict[tuple[str, str], dict[str, Any]] = {}
        profiles: dict[tuple[str, str], dict[str, Any]] = {}
        conversations: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:
            event = record.event
            if isinstance(event, UserForgotten):
                row = {
                    "tenant": event.tenant,
                    "subject": event.subject,
                    "forgotten_at": event.occurred_at,
                }
                _keep_highest(forgotten, (event.tenant, event.subject), row, _erasure_rank)
            elif isinstance(event, SummaryGenerated):
                data = event.data
                row = {
                    "tenant": event.tenant,
                    "subject": event.subject,
                    "event_id": str(event.id),
                    "text": str(data.text),
                    "generator": data.generator,
                    "generator_version": data.generator_version,
                    "memory_count": data.inputs.memory_count,
                    "memory_ids": [str(m) for m in data.inputs.memory_ids],
                    "last_event_id": str(data.inputs.last_event_id),
                    "as_of": data.inputs.as_of,
                    "generated_at": event.recorded_at,
                }
                if data.kind == "profile":
                    row["sequence"] = data.sequence
                    _keep_highest(profiles, (event.tenant, event.subject), row, _profile_rank)
                else:
                    assert data.conversation_id is not None  # the schema requires it
                    row["conversation_id"] = data.conversation_id
                    row["rank"] = generator_rank(data.generator)
                    key = (event.tenant, data.conversation_id)
                    _keep_highest(conversations, key, row, _conversation_rank)
        return PreparedBatch(
            forgotten=_json(forgotten.values()),
            profiles=_json(profiles.values()),
            conversations=_json(conversations.values()),
        )

    async def apply(self, conn: AsyncConnection[Any], prepared: PreparedBatch) -> None:
        # 1. Erasures first: rows already here go, and the upserts below drop anything
        #    about the erased users from before the erasure.
        if prepared.forgotten is not None:
            for statement in _FORGET_SQL:
                await conn.execute(statement, [prepared.forgotten])
        # 2. Summaries, each an order-independent merge.
        if prepared.profiles is not None:
            await conn.execute(_UPSERT_PROFILES_SQL, [prepared.profiles])
        if prepared.conversations is not None:
            await conn.execute(_UPSERT_CONVERSATIONS_SQL, [prepared.conversations])


def _profile_rank(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["as_of"], row["sequence"], row["event_id"])


def _conversation_rank(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["rank"], row["as_of"], row["event_id"])


def _erasure_rank(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["forgotten_at"],)


def _keep_highest(
    rows: dict[tuple[str, str], dict[str, Any]],
    key: tuple[str, str],
    row: dict[str, Any],
    rank: Callable[[dict[str, Any]], tuple[Any, ...]],
) -> None:
    current = rows.get(key)
    if current is None or rank(row) > rank(current):
        rows[key] = row


def _json(rows: Any) -> str | None:
    listed = list(rows)
    return orjson.dumps(listed).decode() if listed else None
