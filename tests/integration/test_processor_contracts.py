"""The processor contract (tests/integration/projection_contract.py, ProcessorContract)
for each processor that appends derived events: extraction, embedder, summarizer.

What each one's redelivery and rebuild legitimately do differs, and each subclass says
which, from its processor's code:

- extraction: a redelivered conversation is not extracted again (its ``processed``
  table); a rebuild extracts every conversation again and appends the same memory events
  (ids derived from the conversation event and the memory's content) under its lineage;
- embedder: keeps no state, so a redelivered memory or transcript is embedded and
  appended again, with the same ids (derived from the memory or transcript and the
  model) and the same vectors; a rebuild appends the same events;
- summarizer: a redelivered memory event changes no memory, so it makes no profile, but
  a redelivered ``conversation.ended`` is summarised again under the same id; a rebuild
  makes the same conversation summaries, while its profiles follow the batches it
  happens to fetch (one per batch that changes a user: its sequence, and so its id,
  depend on them), so what it keeps is each user's last profile's content.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np
from psycopg import AsyncConnection, sql

from projections.embeddings.processor import EmbeddingProcessor
from projections.embeddings.projection import EmbeddingsProjection
from projections.extraction.processor import ExtractionProcessor
from projections.memories import MemoriesProjection
from projections.summaries import SummaryProcessor
from schemas import EmbeddingComputed, Event, PassagesEmbedded, SummaryGenerated
from services.settings import Settings
from streams.projection import Projection
from tests.integration.projection_contract import ProcessorContract, comparable, snapshot
from tests.integration.query.corpus import EMBEDDER
from tests.integration.test_memories_projection import reinforced, superseded
from tests.integration.test_passages import DENTAL, call, memory
from tests.integration.test_summaries import OTHER, ended, extracted, forgotten

GREETING = ("agent", "Bayview Dental, how can I help?")


def calls() -> list[Event]:
    """Three finished calls of two callers stating facts: a home city, an allergy said
    twice (a reinforcement), a move (a supersession), a preference, a family event."""
    return [
        ended(
            "conv-a",
            GREETING,
            ("user", "Hi, I live in Denver and I'm allergic to penicillin."),
            ("agent", "Thanks, I've noted that."),
        ),
        ended(
            "conv-b",
            GREETING,
            ("user", "I prefer morning appointments. My daughter is getting married in June."),
            ("agent", "Congratulations! Mornings it is."),
            subject=OTHER,
            days=2,
        ),
        ended(
            "conv-c",
            GREETING,
            ("user", "I just moved to Boulder. Also, I'm allergic to penicillin."),
            ("agent", "Got it, I've updated your file."),
            days=30,
            summary="The caller moved to Boulder and reminded us of the allergy.",
        ),
    ]


class TestExtractionProcessorContract(ProcessorContract):
    """Redelivery: nothing new in the log (``processed`` remembers each conversation
    event). Rebuild: the same memory events, ids and all, under ``extraction.v2``; the
    memories read model, reading both lineages, applies them as the events it has."""

    processor: ClassVar[type[Projection]] = ExtractionProcessor
    downstream: ClassVar[type[Projection] | None] = MemoriesProjection

    def events(self) -> list[Event]:
        return calls()

    async def state(self, conn: AsyncConnection[Any], schema: str) -> dict[str, list[Any]]:
        tables = await snapshot(conn, schema, ExtractionProcessor.tables)
        # ``seq`` numbers facts in the order they became known; two versions agree on
        # that order per user, not on numbers interleaved across users by batching: each
        # row's seq becomes its rank among its user's facts.
        cursor = await conn.execute(
            sql.SQL("SELECT * FROM {}.facts LIMIT 0").format(sql.Identifier(schema))
        )
        assert cursor.description is not None
        columns = [c.name for c in cursor.description]
        tenant, subject, seq = (columns.index(c) for c in ("tenant", "subject", "seq"))
        ranked: list[Any] = []
        rank: dict[tuple[str, str], int] = {}
        for row in sorted(tables["facts"], key=lambda r: r[seq]):
            user = (row[tenant], row[subject])
            rank[user] = rank.get(user, 0) + 1
            ranked.append((*row[:seq], rank[user], *row[seq + 1 :]))
        tables["facts"] = sorted(ranked)
        return tables


def same_vectors(first: Event, again: Event) -> bool:
    """Two embeddings of one input: everything equal but the vectors, which may differ by
    float rounding with the batch the text was embedded in (``LocalEmbedder.embed``)."""

    def vectors(event: Event) -> list[list[float]]:
        if isinstance(event, EmbeddingComputed):
            return [event.data.vector]
        assert isinstance(event, PassagesEmbedded)
        return [p.vector for p in event.data.passages]

    def rest(event: Event) -> dict[str, Any]:
        said = comparable(event)
        said["data"].pop("vector", None)
        for passage in said["data"].get("passages", ()):
            passage.pop("vector")
        return said

    a, b = vectors(first), vectors(again)
    return (
        rest(first) == rest(again)
        and len(a) == len(b)
        and all(np.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(a, b, strict=True))
    )


class TestEmbeddingProcessorContract(ProcessorContract):
    """Redelivery: the processor keeps no state, so it appends each redelivered input's
    events again, same ids, same vectors (to float rounding). Rebuild: the same events
    under ``embedder.v2``; the embeddings read model, reading both lineages, applies
    them as the events it has."""

    processor: ClassVar[type[Projection]] = EmbeddingProcessor
    reappends_redelivered: ClassVar[bool] = True
    downstream: ClassVar[type[Projection] | None] = EmbeddingsProjection

    def build(self, settings: Settings) -> Projection:
        return EmbeddingProcessor(EMBEDDER)  # the tests' one loaded model

    def events(self) -> list[Event]:
        return [
            memory("Has a cleaning booked for Friday the 7th", "conv-1", [3]),
            memory("Lives in Boulder", "conv-2", [1], days=3, key="home_city"),
            call("conv-1", DENTAL),
            call(
                "conv-2",
                [
                    GREETING,
                    ("user", "I just moved to Boulder, can you update my address?"),
                    ("agent", "Done. Anything else?"),
                    ("user", "No, that's all, thanks."),
                ],
                days=3,
            ),
        ]

    def same(self, first: Event, again: Event) -> bool:
        return same_vectors(first, again)


class TestSummaryProcessorContract(ProcessorContract):
    """With debounce 0 (a profile per batch that changes a user, as the summaries tests
    run it; the clock is each batch's newest ``recorded_at``).

    Redelivery: memory events seen before change no memory, so no profile; each
    redelivered ``conversation.ended`` is summarised again, appended with the same id
    and text. Rebuild: the same state of each user's memories and reinforcements, the
    same conversation summaries (same ids), and for each user a last profile with the
    same content; its sequence and id (and the ``profiles`` row's bookkeeping of them)
    depend on the batch boundaries, which a rebuild does not reproduce (processor.py,
    "A rebuild with other batch boundaries may emit its profiles at other points").
    The summaries read model keeps the highest-ranking profile, (as_of, sequence, id),
    which is a last one of either version: one with that content.
    """

    processor: ClassVar[type[Projection]] = SummaryProcessor
    reappends_redelivered: ClassVar[bool] = True
    rebuild_derives_same_events: ClassVar[bool] = False

    def build(self, settings: Settings) -> Projection:
        return SummaryProcessor(debounce=timedelta(0))

    def events(self) -> list[Event]:
        city = extracted("Lives in Denver", key="home_city")
        allergy = extracted("Allergic to penicillin", salience=0.9)
        moved = extracted("Lives in Boulder", key="home_city", days=30)
        return [
            city,
            allergy,
            extracted("Prefers morning appointments", kind="preference", subject=OTHER, days=2),
            *calls(),
            reinforced(allergy, days=30),
            moved,
            superseded(city, moved),
        ]

    async def state(self, conn: AsyncConnection[Any], schema: str) -> dict[str, list[Any]]:
        tables = await snapshot(conn, schema, ("memories", "reinforcements", "forgotten"))
        cursor = await conn.execute(
            sql.SQL("SELECT tenant, subject, pending FROM {}.profiles ORDER BY 1, 2").format(
                sql.Identifier(schema)
            )
        )
        tables["profiles"] = await cursor.fetchall()
        return tables

    def rebuild_key(self, event: Event) -> Hashable:
        assert isinstance(event, SummaryGenerated)
        if event.data.kind == "profile":
            return ("profile", event.tenant, event.subject)
        return event.id

    def same(self, first: Event, again: Event) -> bool:
        assert isinstance(first, SummaryGenerated) and isinstance(again, SummaryGenerated)
        if first.data.kind != "profile" or first.id == again.id:
            return comparable(first) == comparable(again)
        a, b = first.data, again.data
        return (a.text, a.generator, a.generator_version, a.inputs.memory_ids, a.inputs.as_of) == (
            b.text,
            b.generator,
            b.generator_version,
            b.inputs.memory_ids,
            b.inputs.as_of,
        )


# -- across an erasure -------------------------------------------------------------------------
#
# The same contracts with a caller's erasure among the inputs: a redelivered user.forgotten
# is carried out once (Erasures.carried_out), so the facts said after it stay known and
# the profile is not built again.


def erased_then_called() -> list[Event]:
    """A call, the caller's erasure ten days later, and a call after it."""
    return [
        ended(
            "conv-e1", GREETING, ("user", "Hi, I live in Denver and I'm allergic to penicillin.")
        ),
        forgotten(days=10),
        ended("conv-e2", GREETING, ("user", "I'm allergic to penicillin, by the way."), days=20),
    ]


class TestExtractionProcessorContractAcrossAnErasure(TestExtractionProcessorContract):
    def events(self) -> list[Event]:
        return erased_then_called()


class TestSummaryProcessorContractAcrossAnErasure(TestSummaryProcessorContract):
    def events(self) -> list[Event]:
        return [
            extracted("Lives in Denver"),
            forgotten(days=10),
            extracted("Allergic to penicillin", days=20),
            *erased_then_called()[::2],
        ]
