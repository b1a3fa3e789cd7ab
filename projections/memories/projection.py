"""Projects memory events into the memories read model (``memories``, ``reinforcements``).

From the ``memories`` topic: ``memory.extracted`` (a new memory), ``memory.reinforced``
(said again), ``memory.superseded`` (replaced by a newer fact for the same slot). From
``conversations``: ``memory.asserted`` / ``memory.retracted`` (the API) and
``user.forgotten`` (erasure).

The two topics are consumed with no order between them, so every write is a merge
that gives the same rows whatever the order and however often an event is seen:

- a memory row is upserted from its ``extracted``/``asserted`` event (same id, same
  values), keeping any state already recorded;
- states only move towards ``retracted`` (active → superseded → retracted); a
  retraction that arrives first leaves a row without content, filled in later (a
  supersession never arrives first: the extractor appends it after its memory, on the
  same partition);
- a memory whose content decodes as erased — past its tenant's memory retention
  (services/retention.py), its day's key destroyed — is skipped, and so is a supersession
  of it; its reinforcements are kept but count for no memory: a rebuild yields no
  expired memory;
- the reinforcement count is the number of other calls (distinct conversations but the
  memory's own) whose ``memory.reinforced`` events (kept in ``reinforcements``) said it
  again, recomputed for the memories a batch touches;
- ``user.forgotten`` deletes the user's rows and records the erasure time (by their
  pseudonym: projections/erasures.py), and any memory event about what they said before
  that time is dropped, whether it arrives before or after the erasure.

``prepare`` folds a batch into JSON documents (pure Python, in the runtime's fetch
stage); ``apply`` ships them in a few statements, the rows expanded server-side with
``json_populate_recordset`` as in the conversations projection. It reads the watermarks
of the batch's users in one query and, only when one covers an event of the batch,
folds the batch again without the events it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
from schemas import (
    ERASED,
    Event,
    MemoryAsserted,
    MemoryExtracted,
    MemoryReinforced,
    MemoryRetracted,
    MemorySuperseded,
    UserForgotten,
)
from streams.projection import LogRecord, Projection
from streams.topics import CONVERSATIONS, MEMORIES

__all__ = ["DECAY_PER_DAY", "MemoriesProjection", "PreparedBatch"]

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()

#: Exponential decay of salience per day since the memory was last said, by sector.
#: Half-lives: semantic ~139 days, procedural ~87, episodic ~46, emotional ~35,
#: reflective ~2 years. Facts about a person fade slowly; what happened on one call
#: and how they felt about it fade fast.
DECAY_PER_DAY: dict[str, float] = {
    "semantic": 0.005,
    "procedural": 0.008,
    "episodic": 0.015,
    "emotional": 0.02,
    "reflective": 0.001,
}

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_STATE_RANK = {"active": 0, "superseded": 1, "retracted": 2}

_MEMORY_EVENTS = (
    MemoryExtracted,
    MemoryAsserted,
    MemoryReinforced,
    MemorySuperseded,
    MemoryRetracted,
)

_MEMORY_COLUMNS = (
    "tenant, memory_id, subject, content, sector, salience, decay_rate, kind, key, origin,"
    " extractor, extractor_version, conversation_id, provenance, observed_at, last_seen_at,"
    " observed_on, updated_at"
)

# The batch's erasures (JSON of tenant, subject, at; recorded in `forgotten` first): the
# user's rows about what was said at or before each go.
_ERASED = "json_to_recordset(%s::json) AS e(tenant text, subject text, at timestamptz)"
_FORGET_SQL = [
    f"""
    DELETE FROM memories m USING {_ERASED}
     WHERE m.tenant = e.tenant AND m.subject = e.subject
       AND COALESCE(m.observed_at, m.updated_at) <= e.at
    """,
    f"""
    DELETE FROM reinforcements r USING {_ERASED}
     WHERE r.tenant = e.tenant AND r.subject = e.subject AND r.observed_at <= e.at
    """,
]

_UPSERT_MEMORIES_SQL = f"""
INSERT INTO memories AS m ({_MEMORY_COLUMNS})
SELECT {_MEMORY_COLUMNS} FROM json_populate_recordset(NULL::memories, %s::json) AS s
ON CONFLICT (tenant, memory_id) DO UPDATE SET
    subject = EXCLUDED.subject,
    content = EXCLUDED.content,
    sector = EXCLUDED.sector,
    salience = EXCLUDED.salience,
    decay_rate = EXCLUDED.decay_rate,
    kind = EXCLUDED.kind,
    key = EXCLUDED.key,
    origin = EXCLUDED.origin,
    extractor = EXCLUDED.extractor,
    extractor_version = EXCLUDED.extractor_version,
    conversation_id = EXCLUDED.conversation_id,
    provenance = EXCLUDED.provenance,
    observed_at = EXCLUDED.observed_at,
    observed_on = EXCLUDED.observed_on,
    last_seen_at = GREATEST(m.last_seen_at, EXCLUDED.last_seen_at),
    updated_at = GREATEST(m.updated_at, EXCLUDED.updated_at)
    -- state and superseded_by are left as they are: a row created by an earlier
    -- retraction or supersession keeps it.
"""

_INSERT_REINFORCEMENTS_SQL = """
INSERT INTO reinforcements (tenant, event_id, memory_id, subject, observed_at, provenance)
SELECT tenant, event_id, memory_id, subject, observed_at, provenance
  FROM json_populate_recordset(NULL::reinforcements, %s::json) AS s
ON CONFLICT (tenant, event_id) DO NOTHING
"""

# A retraction (from the API, on the conversations topic) may arrive before the memory it
# retracts and leaves a row without content; a supersession (the extractor's, on the
# memories topic) always follows its memory in the log, so one about a memory that is not
# here is about one that was skipped (past retention) and changes nothing.
_UPSERT_STATES_SQL = """
INSERT INTO memories AS m (tenant, memory_id, subject, state, superseded_by, updated_at)
SELECT tenant, memory_id, subject, state, superseded_by, updated_at
  FROM json_populate_recordset(NULL::memories, %s::json) AS s
 WHERE s.state = 'retracted'
    OR EXISTS (SELECT 1 FROM memories k WHERE k.tenant = s.tenant AND k.memory_id = s.memory_id)
ON CONFLICT (tenant, memory_id) DO UPDATE SET
    state = CASE WHEN 'retracted' IN (m.state, EXCLUDED.state) THEN 'retracted'
                 WHEN 'superseded' IN (m.state, EXCLUDED.state) THEN 'superseded'
                 ELSE 'active' END,
    superseded_by = COALESCE(m.superseded_by, EXCLUDED.superseded_by),
    updated_at = GREATEST(m.updated_at, EXCLUDED.updated_at)
"""

# For the memories a batch touched: the number of other calls that said the memory again
# (one call's reports count once: Retell's call_ended and call_analyzed, a live call's
# reconstruction and its late report, are several reports of one call), and the last
# time it was said.
_RECOUNT_SQL = """
UPDATE memories m
   SET reinforcement_count = r.n,
       last_seen_at = GREATEST(m.observed_at, r.last_seen_at)
  FROM (SELECT t.tenant, t.memory_id,
               (count(DISTINCT r.provenance->>'conversation_id')
                  FILTER (WHERE r.provenance->>'conversation_id'
                                IS DISTINCT FROM mm.conversation_id))::int AS n,
               max(r.observed_at) AS last_seen_at
          FROM json_to_recordset(%s::json) AS t(tenant text, memory_id uuid)
          JOIN memories mm ON mm.tenant = t.tenant AND mm.memory_id = t.memory_id
          LEFT JOIN reinforcements r ON r.tenant = t.tenant AND r.memory_id = t.memory_id
         GROUP BY t.tenant, t.memory_id, mm.conversation_id) r
 WHERE m.tenant = r.tenant AND m.memory_id = r.memory_id
"""


@dataclass(frozen=True)
class PreparedBatch:
    """A batch folded into JSON documents (None: nothing of that kind in the batch)."""

    erasures: tuple[Erasure, ...]
    memories: str | None
    reinforcements: str | None
    states: str | None
    touched: str | None
    # Per user, the earliest time the batch's memory events are about (projections.
    # erasures.earliest): what an erasure recorded earlier may cover.
    began: str
    # The batch itself: folded again, rarely, without what an earlier erasure covers.
    records: Sequence[LogRecord]


class MemoriesProjection(Projection):
    name: ClassVar[str] = "memories"
    topics: ClassVar[tuple[str, ...]] = (MEMORIES, CONVERSATIONS)
    tables: ClassVar[tuple[str, ...]] = ("memories", "reinforcements", "forgotten")

    def schema_sql(self) -> str:
        return SCHEMA_SQL + FORGOTTEN_SQL

    def prepare(self, records: Sequence[LogRecord]) -> PreparedBatch:
        return self._prepare(records, Erasures())

    def _prepare(self, records: Sequence[LogRecord], erasures: Erasures) -> PreparedBatch:
        """Fold `records`, leaving out every memory event an erasure covers: one recorded
        earlier (in `erasures`) or one of the batch, wherever it stands (the two topics
        have no order between them)."""
        erased = tuple(
            erasures.erase(r.event) for r in records if isinstance(r.event, UserForgotten)
        )
        about: list[Event] = []
        memories: dict[tuple[str, str], dict[str, Any]] = {}
        reinforcements: dict[tuple[str, str], dict[str, Any]] = {}
        states: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:
            event = record.event
            if not isinstance(event, _MEMORY_EVENTS):
                continue  # conversation events are another projection's business
            about.append(event)
            if erasures.covers(event):
                continue
            if isinstance(event, MemoryExtracted | MemoryAsserted) and event.data.content == ERASED:
                continue  # past its tenant's memory retention: not a memory any more
            if isinstance(event, MemoryExtracted):
                data = event.data
                memories[(event.tenant, str(data.memory_id))] = _memory_row(
                    event.tenant,
                    event.subject,
                    str(data.memory_id),
                    content=str(data.content),
                    sector=data.sector,
                    salience=data.salience,
                    kind=data.kind,
                    key=data.key,
                    origin="extracted",
                    extractor=data.extractor,
                    extractor_version=data.extractor_version,
                    conversation_id=data.provenance.conversation_id,
                    provenance=[data.provenance.model_dump(mode="json")],
                    observed_at=data.observed_at,
                    updated_at=event.occurred_at.isoformat(),
                )
            elif isinstance(event, MemoryAsserted):
                data_a = event.data
                memories[(event.tenant, str(data_a.memory_id))] = _memory_row(
                    event.tenant,
                    event.subject,
                    str(data_a.memory_id),
                    content=str(data_a.content),
                    sector=data_a.sector,
                    salience=data_a.salience,
                    kind="asserted",
                    key=None,
                    origin="asserted",
                    extractor=data_a.asserted_by,
                    extractor_version=None,
                    conversation_id=event.correlation_id,
                    provenance=[],
                    observed_at=event.occurred_at,
                    updated_at=event.occurred_at.isoformat(),
                )
            elif isinstance(event, MemoryReinforced):
                reinforcements[(event.tenant, str(event.id))] = {
                    "tenant": event.tenant,
                    "event_id": str(event.id),
                    "memory_id": str(event.data.memory_id),
                    "subject": event.subject,
                    "observed_at": event.data.observed_at.isoformat(),
                    "provenance": event.data.provenance.model_dump(mode="json"),
                }
            elif isinstance(event, MemorySuperseded | MemoryRetracted):
                superseded = isinstance(event, MemorySuperseded)
                state = "superseded" if superseded else "retracted"
                key = (event.tenant, str(event.data.memory_id))
                previous = states.get(key)
                if previous is None or _STATE_RANK[state] > _STATE_RANK[previous["state"]]:
                    states[key] = {
                        "tenant": event.tenant,
                        "memory_id": key[1],
                        "subject": event.subject,
                        "state": state,
                        "superseded_by": (
                            str(event.data.superseded_by)
                            if isinstance(event, MemorySuperseded)
                            else (previous or {}).get("superseded_by")
                        ),
                        "updated_at": event.occurred_at.isoformat(),
                    }
        touched = {(r["tenant"], r["memory_id"]) for r in reinforcements.values()} | set(memories)
        return PreparedBatch(
            erasures=erased,
            memories=_json(memories.values()),
            reinforcements=_json(reinforcements.values()),
            states=_json(states.values()),
            touched=_json({"tenant": t, "memory_id": m} for t, m in sorted(touched)),
            began=earliest(about),
            records=records,
        )

    async def apply(self, conn: AsyncConnection[Any], prepared: PreparedBatch) -> None:
        # 1. Erasures recorded by earlier batches that cover an event of this one: folded
        #    again without those events.
        prepared = await refolded(conn, prepared, self._prepare)
        # 2. The batch's erasures: recorded, and the rows already here that they cover go
        #    (the rows below, folded without what they cover, stay).
        if prepared.erasures:
            await record_erasures(conn, prepared.erasures)
            erased = _json(
                {"tenant": e.tenant, "subject": e.subject, "at": e.at} for e in prepared.erasures
            )
            for statement in _FORGET_SQL:
                await conn.execute(statement, [erased])
        # 3. Memories, reinforcements and state changes, each an order-independent merge.
        if prepared.memories is not None:
            await conn.execute(_UPSERT_MEMORIES_SQL, [prepared.memories])
        if prepared.reinforcements is not None:
            await conn.execute(_INSERT_REINFORCEMENTS_SQL, [prepared.reinforcements])
        if prepared.states is not None:
            await conn.execute(_UPSERT_STATES_SQL, [prepared.states])
        # 4. Counts and last-seen times of what this batch touched.
        if prepared.touched is not None:
            await conn.execute(_RECOUNT_SQL, [prepared.touched])


def _memory_row(
    tenant: str, subject: str, memory_id: str, *, sector: str, observed_at: datetime, **values: Any
) -> dict[str, Any]:
    day = observed_at.astimezone(UTC)
    return {
        "tenant": tenant,
        "subject": subject,
        "memory_id": memory_id,
        "sector": sector,
        "decay_rate": DECAY_PER_DAY[sector],
        "observed_at": observed_at.isoformat(),
        "last_seen_at": observed_at.isoformat(),
        # English names whatever the server's locale.
        "observed_on": f"{day:%Y-%m-%d} {_MONTHS[day.month - 1]} {day.year} {_DAYS[day.weekday()]}",
        **values,
    }


def _json(rows: Any) -> str | None:
    listed = list(rows)
    return orjson.dumps(listed).decode() if listed else None
