"""The embedding processor: memories and transcripts in, ``embedding.computed`` and
``passages.embedded`` events out.

It reads ``memory.extracted`` (``memories`` topic) and ``memory.asserted``
(``conversations``), embeds their content in batches with the configured model and
appends one ``embedding.computed`` per memory and model, its id derived from both:
a replay appends the same events, which the embeddings projection applies once.
It also embeds every passage of a ``conversation.ended`` (each turn after the turn it
replies to, ``projections.conversations.passages``) and appends them as
``passages.embedded`` events of at most :data:`PASSAGES_PER_EVENT` vectors, ids derived
from the transcript's event, the model and the first passage. Rebuilding the vector
read model replays those events and calls no model.

The model runs in ``prepare`` (the runtime's fetch stage, a worker thread), so the
CPU spent embedding overlaps the previous batch's transaction; ``apply`` only
appends. The local model is the default and is deterministic. With
``MEMSTREAM_EMBEDDING_MODEL`` set, an OpenAI-compatible model embeds instead
(``openai_embedder.py``); when it is unavailable (breaker open, retries exhausted) the
batch is embedded by the local model, and its events say so: each vector is recorded
with the model that made it.

Vectors are recorded as float32 values written in their shortest decimal form
(:func:`float32_values`): pgvector stores float32, so the doubles a model returns carry
digits no reader keeps. An event is then 5.1 KB instead of 8.5 KB (less to store, ship
and fetch on every rebuild); decoding it is barely faster (orjson reads a short number
about as fast as a long one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import orjson
from psycopg import AsyncConnection

from projections import settings as projection_settings
from projections.conversations.passages import WINDOW, passages
from projections.embeddings.models import MODEL_NAME, is_local
from projections.providers.exceptions import ProviderUnavailable
from projections.providers.resilience import fell_back
from schemas import (
    ERASED,
    ConversationEnded,
    EmbeddingComputed,
    Event,
    MemoryAsserted,
    MemoryExtracted,
    PassagesEmbedded,
    Source,
    derived_event_id,
)
from streams.producer import EventLog
from streams.projection import LogRecord, Projection
from streams.settings import StreamsSettings
from streams.topics import CONVERSATIONS, EMBEDDINGS, MEMORIES

__all__ = ["PASSAGES_PER_EVENT", "Embedder", "EmbeddingProcessor", "float32_values"]

#: Vectors per ``passages.embedded`` event: 32 vectors of 384 dimensions make an event of
#: about 130 KB, far below the broker's 1 MB message limit even for larger models.
PASSAGES_PER_EVENT = 32

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """A model that turns texts into unit vectors."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def float32_values(vectors: Sequence[Sequence[float]]) -> list[list[float]]:
    """``vectors`` (of one dimension) rounded to float32, as pgvector stores them, each
    value the double nearest its shortest float32 decimal (``0.03737794``, not
    ``0.03737793862819672``), so that the event carries that short text.

    pgvector reads the short text back to the same float32 (it is the shortest decimal
    that rounds to it), so the read model holds what it held with the long form.
    """
    if not vectors:
        return []
    # orjson writes a float32 array's values in their shortest float32 form; reading the
    # text back gives the doubles that print as that form again.
    text = orjson.dumps(np.asarray(vectors, dtype=np.float32), option=orjson.OPT_SERIALIZE_NUMPY)
    values: list[list[float]] = orjson.loads(text)
    return values


class EmbeddingProcessor(Projection):
    name: ClassVar[str] = "embedder"
    topics: ClassVar[tuple[str, ...]] = (MEMORIES, CONVERSATIONS)
    tables: ClassVar[tuple[str, ...]] = ()
    produces: ClassVar[tuple[str, ...]] = (EMBEDDINGS,)

    def __init__(self, embedder: Embedder | None = None, fallback: Embedder | None = None) -> None:
        """``embedder`` (the local model by default) embeds; ``fallback``, when given,
        embeds a batch the embedder could not (it raised ``ProviderUnavailable``)."""
        if embedder is None:
            from projections.embeddings.local import LocalEmbedder

            embedder = LocalEmbedder()
        self.embedder = embedder
        self.fallback = fallback
        self._log: EventLog | None = None

    @classmethod
    def from_settings(cls, streams_settings: StreamsSettings) -> EmbeddingProcessor:
        """The OpenAI-compatible model (the default local one as fallback) when
        ``MEMSTREAM_EMBEDDING_MODEL`` names a remote model; the local model it names, or
        the default local model when it is empty, otherwise."""
        settings = projection_settings.section(streams_settings)
        from projections.embeddings.local import LocalEmbedder

        if is_local(settings.embedding_model):
            return cls(LocalEmbedder(model=settings.embedding_model or MODEL_NAME))
        from projections.embeddings.openai_embedder import OpenAIEmbedder

        return cls(OpenAIEmbedder.from_settings(settings), fallback=LocalEmbedder())

    def schema_sql(self) -> str:
        return "-- the embedder keeps no state: its output is events"

    async def open(self, log: EventLog) -> None:
        self._log = log

    def prepare(self, records: Sequence[LogRecord]) -> list[Event]:
        # A memory past its tenant's memory retention reads ERASED: nothing to embed.
        memories = [
            r.event
            for r in records
            if isinstance(r.event, MemoryExtracted | MemoryAsserted)
            and r.event.data.content != ERASED
        ]
        transcripts = [
            (r.event, found)
            for r in records
            if isinstance(r.event, ConversationEnded) and (found := passages(r.event.data.turns))
        ]
        if not memories and not transcripts:
            return []
        # One call for the batch: the model runs fuller batches of similar lengths.
        texts = [str(m.data.content) for m in memories]
        texts += [p.embedded for _, found in transcripts for p in found]
        embedder = self.embedder
        try:
            vectors = embedder.embed(texts)
        except ProviderUnavailable as exc:
            if self.fallback is None:
                raise
            fell_back(exc)
            logger.warning("%s unavailable (%s); embedding with %s", embedder.name, exc,
                           self.fallback.name)  # fmt: skip
            embedder = self.fallback
            vectors = embedder.embed(texts)
        model = embedder.name
        vectors = float32_values(vectors)
        out: list[Event] = []
        for memory, vector in zip(memories, vectors[: len(memories)], strict=True):
            memory_id = memory.data.memory_id
            out.append(
                EmbeddingComputed.create(
                    id=derived_event_id("embedding.computed", str(memory_id), model),
                    **_caused_by(memory),
                    data={
                        "memory_id": memory_id,
                        "model": model,
                        "dimension": embedder.dimension,
                        "vector": vector,
                    },
                )
            )
        position = len(memories)
        for ended, found in transcripts:
            for start in range(0, len(found), PASSAGES_PER_EVENT):
                chunk = found[start : start + PASSAGES_PER_EVENT]
                out.append(
                    PassagesEmbedded.create(
                        id=derived_event_id(
                            "passages.embedded", str(ended.id), model, str(chunk[0].seq)
                        ),
                        **_caused_by(ended),
                        data={
                            "conversation_id": ended.data.conversation_id,
                            "model": model,
                            "dimension": embedder.dimension,
                            "window": WINDOW,
                            "passages": [
                                {"seq": p.seq, "vector": vectors[position + i]}
                                for i, p in enumerate(chunk)
                            ],
                        },
                    )
                )
            position += len(found)
        return out

    async def apply(self, conn: AsyncConnection[Any], prepared: list[Event]) -> None:
        if not prepared:
            return
        if self._log is None:
            raise RuntimeError("the embedding processor appends events: open() it first")
        await self._log.append_many(prepared)


def _caused_by(event: Event) -> dict[str, Any]:
    """The envelope of an event this processor derives from ``event``: same tenant,
    subject and conversation, caused by it, dated when what it is about began (a memory's
    observation, the start of a call: ``Event.began``), which an erasure is compared with."""
    return {
        "tenant": event.tenant,
        "subject": event.subject,
        "source": Source(platform="memstream", event_id=str(event.id)),
        "occurred_at": event.began,
        "correlation_id": event.correlation_id,
        "causation_id": event.id,
    }
