"""The extraction processor: finished conversations in, memory events out.

It runs on the projection runtime like a read model, reading ``conversations``, but
its product is events: for each ``conversation.ended`` the extractor's candidates
become ``memory.extracted``, ``memory.reinforced`` (the caller said a known fact
again, or only part of the value known for its slot: "Name: Maria" after "Name: Maria
Lopez") or ``memory.extracted`` + ``memory.superseded`` (a new fact for a slot that
held another, e.g. a new home city), appended to the ``memories`` topic.

Its own tables are the state those decisions need, kept in the same transaction as
its checkpoints:

- ``facts``: the user's known memories (normalised content, slot, state, when first
  said), from earlier extractions and from ``memory.asserted``; ``memory.retracted`` and
  ``user.forgotten`` take facts out of play, and memory retention (services/retention.py)
  deletes the facts whose memory expired, so that a fact said again afterwards is
  extracted as a new memory (an assertion whose content decodes as erased, past the
  retention, is no fact);
- ``processed``: the conversation events already extracted, so a conversation
  appended twice (a redelivered webhook) is not extracted twice;
- ``forgotten``: each forgotten user's latest erasure, by pseudonym (projections/
  erasures.py): a conversation or memory event about what began at or before it is
  neither extracted nor kept, so no fact of the user comes back.

The batch sequence, as in every projection, is one transaction:

1. ``prepare`` (fetch stage, a worker thread): run the extractor over the batch's
   conversations (an LLM extractor calls its model for them concurrently);
2. ``apply``: for a non-deterministic extractor, reuse the answers journaled by an
   interrupted earlier attempt and journal the new ones (committed on their own
   connection, see ``answers`` in schema.sql); read the batch's users' facts, decide
   per candidate, update ``facts`` and ``processed``, delete the batch's journal rows,
   and append the memory events — waiting for the broker's acknowledgement — before
   the runtime commits the checkpoint.

A crash after the append and before the commit replays the batch: the decisions are
made again from the same state and the same answers, so the events have the same ids
(derived from the conversation event's id and the memory's content) and every
projection downstream applies them once. Each memory records the path that produced
it (``rules``, or ``llm:<model>``), per conversation: an LLM extractor that fell back
to the rules says so.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
from psycopg import AsyncConnection, sql

from projections import settings as projection_settings
from projections.erasures import (
    FORGOTTEN_SQL,
    Erasure,
    Erasures,
    covering,
    earliest,
    record_erasures,
)
from projections.extraction.candidates import (
    Candidate,
    Extraction,
    Extractor,
    is_partial,
    normalise_content,
)
from projections.extraction.rules import RuleExtractor
from schemas import (
    ERASED,
    ConversationEnded,
    Event,
    MemoryAsserted,
    MemoryExtracted,
    MemoryReinforced,
    MemoryRetracted,
    MemorySuperseded,
    Source,
    UserForgotten,
    derived_event_id,
)
from streams import database
from streams.producer import EventLog
from streams.projection import LogRecord, Projection
from streams.settings import StreamsSettings
from streams.topics import CONVERSATIONS, MEMORIES

__all__ = ["ExtractionProcessor"]

logger = logging.getLogger(__name__)

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()


@dataclass
class _Fact:
    memory_id: uuid.UUID
    normalised: str
    key: str | None
    state: str = "active"
    observed_at: datetime | None = None
    """When the memory was first said (None: loaded, not changed; or from before 0011)."""


@dataclass
class _Extraction:
    event: ConversationEnded
    # Replaced by the journaled answer when an earlier attempt of the batch left one.
    result: Extraction


@dataclass
class PreparedBatch:
    """The batch in log order: conversations with their candidates, and fact changes."""

    items: list[_Extraction | MemoryAsserted | MemoryRetracted | UserForgotten] = field(
        default_factory=list
    )

    @property
    def subjects(self) -> list[tuple[str, str]]:
        return sorted({(i.event.tenant, i.event.subject) if isinstance(i, _Extraction)
                       else (i.tenant, i.subject) for i in self.items})  # fmt: skip


class ExtractionProcessor(Projection):
    name: ClassVar[str] = "extraction"
    topics: ClassVar[tuple[str, ...]] = (CONVERSATIONS,)
    tables: ClassVar[tuple[str, ...]] = ("facts", "processed", "forgotten")
    produces: ClassVar[tuple[str, ...]] = (MEMORIES,)

    def __init__(self, extractor: Extractor | None = None) -> None:
        self.extractor: Extractor = extractor or RuleExtractor()
        self._log: EventLog | None = None
        # The answer journal's own autocommit connection (opened on first use).
        self._journal: AsyncConnection[Any] | None = None

    @classmethod
    def from_settings(cls, streams_settings: StreamsSettings) -> ExtractionProcessor:
        """The LLM extractor when ``MEMSTREAM_LLM_MODEL`` is set, the rules otherwise."""
        settings = projection_settings.section(streams_settings)
        if not settings.llm_model:
            return cls()
        from projections.extraction.llm import LLMExtractor

        return cls(LLMExtractor.from_settings(settings))

    def schema_sql(self) -> str:
        return SCHEMA_SQL + FORGOTTEN_SQL

    async def open(self, log: EventLog) -> None:
        self._log = log

    def prepare(self, records: Sequence[LogRecord]) -> PreparedBatch:
        # A conversation appended twice (a redelivered webhook) is extracted once: with an
        # LLM, every extraction is a paid call.
        conversations = {
            (r.event.tenant, r.event.id): r.event
            for r in records
            if isinstance(r.event, ConversationEnded)
        }
        results = dict(
            zip(
                conversations,
                self.extractor.extract_many([c.data for c in conversations.values()]),
                strict=True,
            )
        )
        batch = PreparedBatch()
        for record in records:
            event = record.event
            if isinstance(event, ConversationEnded):
                batch.items.append(_Extraction(event, results[(event.tenant, event.id)]))
            elif isinstance(event, MemoryAsserted | MemoryRetracted | UserForgotten):
                batch.items.append(event)
        return batch

    async def apply(self, conn: AsyncConnection[Any], prepared: PreparedBatch) -> None:
        if not prepared.items:
            return
        if self._log is None:
            raise RuntimeError("the extraction processor appends events: open() it first")
        done = await self._processed(conn, prepared)
        erased, covered = await self._erasures(conn, prepared)
        journaled: list[_Extraction] = []
        if not self.extractor.deterministic:
            journaled = [
                i
                for n, i in enumerate(prepared.items)
                if isinstance(i, _Extraction)
                and (i.event.tenant, i.event.id) not in done
                and n not in covered
            ]
            await self._journal_answers(conn, journaled)
        facts = await self._load_facts(conn, prepared.subjects)
        output: list[Event] = []
        changed: dict[tuple[str, uuid.UUID], tuple[str, _Fact]] = {}
        forgotten: list[tuple[str, str]] = []
        processed: list[tuple[str, uuid.UUID]] = []
        for index, item in enumerate(prepared.items):
            if index in covered:
                continue  # about what began at or before its user's erasure
            if isinstance(item, _Extraction):
                event = item.event
                if (event.tenant, event.id) in done:
                    continue  # the same conversation appended twice
                done.add((event.tenant, event.id))
                processed.append((event.tenant, event.id))
                known = facts[(event.tenant, event.subject)]
                output.extend(self._decide(event, item.result, known, changed))
            elif isinstance(item, MemoryAsserted):
                if item.data.content == ERASED:
                    continue  # past the tenant's memory retention: no memory to know
                fact = _Fact(
                    item.data.memory_id,
                    normalise_content(str(item.data.content)),
                    None,
                    observed_at=item.began,
                )
                facts[(item.tenant, item.subject)].append(fact)
                changed[(item.tenant, fact.memory_id)] = (item.subject, fact)
            elif isinstance(item, MemoryRetracted):
                for fact in facts[(item.tenant, item.subject)]:
                    if fact.memory_id == item.data.memory_id:
                        fact.state = "retracted"
                        changed[(item.tenant, fact.memory_id)] = (item.subject, fact)
            else:
                for fact in facts.pop((item.tenant, item.subject), []):
                    changed.pop((item.tenant, fact.memory_id), None)
                forgotten.append((item.tenant, item.subject))
        # Write the new state, then append: both are undone together if the append fails
        # (the transaction rolls back and the runtime retries the batch).
        await record_erasures(conn, erased)
        await self._save(conn, changed, forgotten, processed)
        if journaled or forgotten:
            await self._forget_answers(conn, journaled, forgotten)
        if output:
            await self._log.append_many(output)

    @staticmethod
    async def _erasures(
        conn: AsyncConnection[Any], prepared: PreparedBatch
    ) -> tuple[list[Erasure], set[int]]:
        """The batch's erasures, and the indexes of its items an erasure covers: one
        recorded earlier, or one before the item in the batch. An erasure already carried
        out (a redelivery: one as late is recorded) is covered too: forgetting the user's
        facts again would forget those said since."""
        about = [i.event if isinstance(i, _Extraction) else i for i in prepared.items]
        erasures = Erasures(await covering(conn, earliest(about)))
        erased: list[Erasure] = []
        covered: set[int] = set()
        for index, event in enumerate(about):
            if isinstance(event, UserForgotten):
                if erasures.carried_out(event):
                    covered.add(index)
                erased.append(erasures.erase(event))
            elif erasures.covers(event):
                covered.add(index)
        return erased, covered

    # -- decisions --------------------------------------------------------------------

    def _decide(
        self,
        event: ConversationEnded,
        result: Extraction,
        known: list[_Fact],
        changed: dict[tuple[str, uuid.UUID], tuple[str, _Fact]],
    ) -> list[Event]:
        data = event.data
        said_at = data.started_at
        source = Source(
            platform="memstream", event_id=str(event.id), agent_id=event.source.agent_id
        )
        envelope: dict[str, Any] = {
            "tenant": event.tenant,
            "subject": event.subject,
            "source": source,
            "occurred_at": said_at,
            "correlation_id": data.conversation_id,
            "causation_id": event.id,
        }
        out: list[Event] = []
        for candidate in result.candidates:
            normalised = normalise_content(candidate.content)
            provenance = {"conversation_id": data.conversation_id, "turns": candidate.turns}
            same = next(
                (f for f in known if f.state == "active" and f.normalised == normalised), None
            )
            if same is None and candidate.key is not None:
                # Only part of what is known for the slot ("Name: Maria" after "Name: Maria
                # Lopez"): the caller said it again, in short; it replaces nothing.
                same = next(
                    (
                        f
                        for f in known
                        if f.state == "active"
                        and f.key == candidate.key
                        and is_partial(normalised, f.normalised)
                    ),
                    None,
                )
            if same is not None:
                out.append(
                    MemoryReinforced.create(
                        id=derived_event_id(
                            "memory.reinforced", str(event.id), str(same.memory_id)
                        ),
                        data={
                            "memory_id": same.memory_id,
                            "observed_at": said_at,
                            "provenance": provenance,
                        },
                        **envelope,
                    )
                )
                continue
            memory_id = derived_event_id("memory", str(event.id), normalised)
            out.append(
                MemoryExtracted.create(
                    id=memory_id,
                    data={
                        "memory_id": memory_id,
                        "content": candidate.content,
                        "sector": candidate.sector,
                        "salience": candidate.salience,
                        "kind": candidate.kind,
                        "key": candidate.key,
                        "observed_at": said_at,
                        "extractor": result.extractor,
                        "extractor_version": result.extractor_version,
                        "provenance": provenance,
                    },
                    **envelope,
                )
            )
            if candidate.key is not None:
                for old in known:
                    if old.state == "active" and old.key == candidate.key:
                        old.state = "superseded"
                        changed[(event.tenant, old.memory_id)] = (event.subject, old)
                        out.append(
                            MemorySuperseded.create(
                                id=derived_event_id(
                                    "memory.superseded", str(event.id), str(old.memory_id)
                                ),
                                data={
                                    "memory_id": old.memory_id,
                                    "superseded_by": memory_id,
                                    "observed_at": said_at,
                                },
                                **envelope,
                            )
                        )
            fact = _Fact(memory_id, normalised, candidate.key, observed_at=said_at)
            known.append(fact)
            changed[(event.tenant, memory_id)] = (event.subject, fact)
        return out

    # -- the answer journal -----------------------------------------------------------

    async def _journal_answers(self, conn: AsyncConnection[Any], items: list[_Extraction]) -> None:
        """Make the batch's answers durable before anything derived from them is appended.

        1. An answer journaled by an earlier, interrupted attempt at this batch wins over
           the fresh one: memory events derived from it may already be in the log.
        2. The other answers are inserted and committed on a connection of their own, so
           they survive a crash of the batch's transaction (which deletes them on commit).
        """
        if not items:
            return
        cursor = await conn.execute(
            "SELECT tenant, event_id, extraction FROM answers"
            " WHERE (tenant, event_id) IN (SELECT * FROM unnest(%s::text[], %s::uuid[]))",
            [[i.event.tenant for i in items], [i.event.id for i in items]],
        )
        earlier = {(t, e): x for t, e, x in await cursor.fetchall()}
        fresh: list[_Extraction] = []
        for item in items:
            found = earlier.get((item.event.tenant, item.event.id))
            if found is None:
                fresh.append(item)
            else:
                item.result = _extraction_from_json(found)
        if not fresh:
            return
        cursor = await conn.execute("SELECT current_schema()")
        row = await cursor.fetchone()
        assert row is not None
        # The runtime's connection is inside the batch's transaction: a second one commits
        # independently of it. Opened per batch: one connect is nothing next to LLM calls.
        async with await database.connect_beside(conn) as journal:
            await journal.execute(
                sql.SQL(
                    "INSERT INTO {}.answers (tenant, event_id, subject, extraction)"
                    " SELECT t, e, s, x::jsonb"
                    " FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::text[]) AS u(t, e, s, x)"
                    " ON CONFLICT DO NOTHING"
                ).format(sql.Identifier(row[0])),
                [
                    [i.event.tenant for i in fresh],
                    [i.event.id for i in fresh],
                    [i.event.subject for i in fresh],
                    [orjson.dumps(_extraction_to_json(i.result)).decode() for i in fresh],
                ],
            )

    async def _forget_answers(
        self,
        conn: AsyncConnection[Any],
        items: list[_Extraction],
        forgotten: list[tuple[str, str]],
    ) -> None:
        """Delete the batch's journaled answers (and a forgotten user's), in its transaction."""
        if items:
            await conn.execute(
                "DELETE FROM answers WHERE (tenant, event_id) IN"
                " (SELECT * FROM unnest(%s::text[], %s::uuid[]))",
                [[i.event.tenant for i in items], [i.event.id for i in items]],
            )
        if forgotten:
            await conn.execute(
                "DELETE FROM answers WHERE (tenant, subject) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                [[t for t, _ in forgotten], [s for _, s in forgotten]],
            )

    # -- state ------------------------------------------------------------------------

    async def _load_facts(
        self, conn: AsyncConnection[Any], subjects: list[tuple[str, str]]
    ) -> defaultdict[tuple[str, str], list[_Fact]]:
        facts: defaultdict[tuple[str, str], list[_Fact]] = defaultdict(list)
        cursor = await conn.execute(
            "SELECT f.tenant, f.subject, f.memory_id, f.normalised, f.key, f.state"
            " FROM facts f JOIN unnest(%s::text[], %s::text[]) AS s(tenant, subject)"
            " ON f.tenant = s.tenant AND f.subject = s.subject"
            " ORDER BY f.tenant, f.subject, f.seq",
            [[t for t, _ in subjects], [s for _, s in subjects]],
        )
        for tenant, subject, memory_id, normalised, key, state in await cursor.fetchall():
            facts[(tenant, subject)].append(_Fact(memory_id, normalised, key, state))
        return facts

    async def _processed(
        self, conn: AsyncConnection[Any], prepared: PreparedBatch
    ) -> set[tuple[str, uuid.UUID]]:
        ids = [(i.event.tenant, i.event.id) for i in prepared.items if isinstance(i, _Extraction)]
        if not ids:
            return set()
        cursor = await conn.execute(
            "SELECT tenant, event_id FROM processed"
            " WHERE (tenant, event_id) IN (SELECT * FROM unnest(%s::text[], %s::uuid[]))",
            [[t for t, _ in ids], [e for _, e in ids]],
        )
        return {(tenant, event_id) for tenant, event_id in await cursor.fetchall()}

    async def _save(
        self,
        conn: AsyncConnection[Any],
        changed: dict[tuple[str, uuid.UUID], tuple[str, _Fact]],
        forgotten: list[tuple[str, str]],
        processed: list[tuple[str, uuid.UUID]],
    ) -> None:
        if forgotten:
            await conn.execute(
                "DELETE FROM facts WHERE (tenant, subject) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                [[t for t, _ in forgotten], [s for _, s in forgotten]],
            )
        rows = [
            (tenant, subject, fact.memory_id, fact.normalised, fact.key, fact.state,
             fact.observed_at)
            for (tenant, _), (subject, fact) in changed.items()
        ]  # fmt: skip
        if rows:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO facts"
                    " (tenant, subject, memory_id, normalised, key, state, observed_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (tenant, memory_id) DO UPDATE SET state = EXCLUDED.state",
                    rows,
                )
        if processed:
            await conn.execute(
                "INSERT INTO processed (tenant, event_id)"
                " SELECT * FROM unnest(%s::text[], %s::uuid[]) ON CONFLICT DO NOTHING",
                [[t for t, _ in processed], [e for _, e in processed]],
            )


def _extraction_to_json(result: Extraction) -> dict[str, Any]:
    return {
        "extractor": result.extractor,
        "extractor_version": result.extractor_version,
        "candidates": [
            {
                "content": c.content,
                "sector": c.sector,
                "salience": c.salience,
                "kind": c.kind,
                "key": c.key,
                "turns": list(c.turns),
            }
            for c in result.candidates
        ],
    }


def _extraction_from_json(document: dict[str, Any]) -> Extraction:
    return Extraction(
        candidates=tuple(
            Candidate(
                content=c["content"],
                sector=c["sector"],
                salience=float(c["salience"]),
                kind=c["kind"],
                key=c["key"],
                turns=tuple(c["turns"]),
            )
            for c in document["candidates"]
        ),
        extractor=document["extractor"],
        extractor_version=document["extractor_version"],
    )
