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
- ``user.forgotten`` deletes the user's summaries whose ``as_of`` (when what they
  summarise began: a conversation's call, the newest memory) is at or before the erasure,
  records the erasure time (by the user's pseudonym: projections/erasures.py), and any
  summary about them from before that time is dropped, whether it arrives before or after
  the erasure. ``apply`` reads the watermarks of the batch's users in one query and, only
  when one covers a summary of the batch, folds the batch again without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson
from psycopg import AsyncConnection

from projections.erasures import (
    FORGOTTEN_SQL,
    Erasure,
    Erasures,
    earliest,
    record_erasures,
    refolded,
)
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


def _set(columns: str) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in (c.strip() for c in columns.split(",")))


# The batch's erasures (JSON of tenant, subject, at; recorded in `forgotten` first): the
# user's summaries of what began at or before each go.
_FORGET_SQL = [
    f"""
    DELETE FROM {table} t
     USING json_to_recordset(%s::json) AS e(tenant text, subject text, at timestamptz)
     WHERE t.tenant = e.tenant AND t.subject = e.subject AND t.as_of <= e.at
    """
    for table in ("profiles", "conversation_summaries")
]

_UPSERT_PROFILES_SQL = f"""
INSERT INTO profiles AS p ({_PROFILE_COLUMNS})
SELECT {_PROFILE_COLUMNS} FROM json_populate_recordset(NULL::profiles, %s::json) AS s
ON CONFLICT (tenant, subject) DO UPDATE SET {_set(_PROFILE_COLUMNS)}
 WHERE (EXCLUDED.as_of, EXCLUDED.sequence, EXCLUDED.event_id)
     > (p.as_of, p.sequence, p.event_id)
"""

_UPSERT_CONVERSATIONS_SQL = f"""
INSERT INTO conversation_summaries AS c ({_CONVERSATION_COLUMNS})
SELECT {_CONVERSATION_COLUMNS}
  FROM json_populate_recordset(NULL::conversation_summaries, %s::json) AS s
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

    erasures: tuple[Erasure, ...]
    profiles: str | None
    conversations: str | None
    # Per user, the earliest time the batch's summaries are about (projections.erasures.
    # earliest): what an erasure recorded earlier may cover.
    began: str
    # The batch itself: folded again, rarely, without what an earlier erasure covers.
    records: Sequence[LogRecord]


class SummariesProjection(Projection):
    name: ClassVar[str] = "summaries"
    topics: ClassVar[tuple[str, ...]] = (SUMMARIES, CONVERSATIONS)
    tables: ClassVar[tuple[str, ...]] = ("profiles", "conversation_summaries", "forgotten")

    def schema_sql(self) -> str:
        return SCHEMA_SQL + FORGOTTEN_SQL

    def prepare(self, records: Sequence[LogRecord]) -> PreparedBatch:
        return self._prepare(records, Erasures())

    def _prepare(self, records: Sequence[LogRecord], erasures: Erasures) -> PreparedBatch:
        """Fold `records`, leaving out every summary an erasure covers: one recorded
        earlier (in `erasures`) or one of the batch, wherever it stands (the two topics
        have no order between them)."""
        # Folded per row key with the same ranking as the SQL merge: one statement
        # cannot touch a row twice. Times stay datetimes (compared as instants; orjson
        # writes them as RFC 3339).
        erased = tuple(
            erasures.erase(r.event) for r in records if isinstance(r.event, UserForgotten)
        )
        about: list[SummaryGenerated] = []
        profiles: dict[tuple[str, str], dict[str, Any]] = {}
        conversations: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:
            event = record.event
            if isinstance(event, SummaryGenerated):
                about.append(event)
                if erasures.covers(event):
                    continue
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
            erasures=erased,
            profiles=_json(profiles.values()),
            conversations=_json(conversations.values()),
            began=earliest(about),
            records=records,
        )

    async def apply(self, conn: AsyncConnection[Any], prepared: PreparedBatch) -> None:
        # 1. Erasures recorded by earlier batches that cover a summary of this one: folded
        #    again without those summaries.
        prepared = await refolded(conn, prepared, self._prepare)
        # 2. The batch's erasures: recorded, and the summaries already here that they
        #    cover go (those below, folded without what they cover, stay).
        if prepared.erasures:
            await record_erasures(conn, prepared.erasures)
            erased = _json(
                {"tenant": e.tenant, "subject": e.subject, "at": e.at} for e in prepared.erasures
            )
            for statement in _FORGET_SQL:
                await conn.execute(statement, [erased])
        # 3. Summaries, each an order-independent merge.
        if prepared.profiles is not None:
            await conn.execute(_UPSERT_PROFILES_SQL, [prepared.profiles])
        if prepared.conversations is not None:
            await conn.execute(_UPSERT_CONVERSATIONS_SQL, [prepared.conversations])


def _profile_rank(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["as_of"], row["sequence"], row["event_id"])


def _conversation_rank(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["rank"], row["as_of"], row["event_id"])


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
