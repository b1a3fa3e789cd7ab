"""The embedding processor: memories in, ``embedding.computed`` events out.

It reads ``memory.extracted`` (``memories`` topic) and ``memory.asserted``
(``conversations``), embeds their content in batches with the configured model and
appends one ``embedding.computed`` per memory and model, its id derived from both:
a replay appends the same events, which the embeddings projection applies once.
Rebuilding the vector read model replays those events and calls no model.

The model runs in ``prepare`` (the runtime's fetch stage, a worker thread), so the
CPU spent embedding overlaps the previous batch's transaction; ``apply`` only
appends. The local model is deterministic, which ``prepare`` requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from psycopg import AsyncConnection

from schemas import (
    EmbeddingComputed,
    Event,
    MemoryAsserted,
    MemoryExtracted,
    Source,
    derived_event_id,
)
from streams.producer import EventLog
from streams.projection import LogRecord, Projection
from streams.topics import CONVERSATIONS, MEMORIES

__all__ = ["Embedder", "EmbeddingProcessor"]


class Embedder(Protocol):
    """A model that turns texts into unit vectors."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class EmbeddingProcessor(Projection):
    name: ClassVar[str] = "embedder"
    topics: ClassVar[tuple[str, ...]] = (MEMORIES, CONVERSATIONS)
    tables: ClassVar[tuple[str, ...]] = ()

    def __init__(self, embedder: Embedder | None = None) -> None:
        if embedder is None:
            from projections.embeddings.local import LocalEmbedder

            embedder = LocalEmbedder()
        self.embedder = embedder
        self._log: EventLog | None = None

    def schema_sql(self) -> str:
        return "-- the embedder keeps no state: its output is events"

    async def open(self, log: EventLog) -> None:
        self._log = log

    def prepare(self, records: Sequence[LogRecord]) -> list[Event]:
        memories = [
            r.event for r in records if isinstance(r.event, MemoryExtracted | MemoryAsserted)
        ]
        if not memories:
            return []
        vectors = self.embedder.embed([str(m.data.content) for m in memories])
        model = self.embedder.name
        out: list[Event] = []
        for memory, vector in zip(memories, vectors, strict=True):
            memory_id = memory.data.memory_id
            out.append(
                EmbeddingComputed.create(
                    id=derived_event_id("embedding.computed", str(memory_id), model),
                    tenant=memory.tenant,
                    subject=memory.subject,
                    source=Source(platform="memstream", event_id=str(memory.id)),
                    occurred_at=memory.occurred_at,
                    correlation_id=memory.correlation_id,
                    causation_id=memory.id,
                    data={
                        "memory_id": memory_id,
                        "model": model,
                        "dimension": self.embedder.dimension,
                        "vector": vector,
                    },
                )
            )
        return out

    async def apply(self, conn: AsyncConnection[Any], prepared: list[Event]) -> None:
        if not prepared:
            return
        if self._log is None:
            raise RuntimeError("the embedding processor appends events: open() it first")
        await self._log.append_many(prepared)
