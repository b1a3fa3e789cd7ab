"""Projects ``embedding.computed`` into pgvector, and links each new vector to its neighbours.

For each vector, in log order: insert it (a redelivered event inserts nothing and
links nothing); then find the same user's 5 nearest memories by the same model
with cosine >= ``LINK_THRESHOLD`` and link them both ways, weighted by the cosine.
A user's events are on one partition, in order, so a rebuild meets the vectors in
the same order and computes the same links. The search is exact (the user's own
vectors, by the ``embeddings_by_subject`` index), not the approximate HNSW index:
links must not depend on an index's randomness.

Each model gets a partial HNSW index over ``embedding::vector(dimension)``, created
in the batch that brings its first vector, so two models coexist while one is rebuilt.

``user.forgotten`` deletes the user's vectors and links and, as in the memories
projection, drops vectors about them from before the erasure that arrive later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from psycopg import AsyncConnection, sql

from schemas import EmbeddingComputed, UserForgotten
from streams.projection import LogRecord, Projection
from streams.topics import CONVERSATIONS, EMBEDDINGS

__all__ = ["LINKS_PER_MEMORY", "LINK_THRESHOLD", "EmbeddingsProjection"]

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()

LINK_THRESHOLD = 0.8
LINKS_PER_MEMORY = 5

_INSERT_SQL = """
INSERT INTO embeddings AS e (tenant, memory_id, model, subject, dimension, embedding, observed_at)
SELECT %(tenant)s, %(memory_id)s, %(model)s, %(subject)s, %(dimension)s, %(vector)s::vector,
       %(observed_at)s
 WHERE NOT EXISTS (SELECT 1 FROM forgotten f WHERE f.tenant = %(tenant)s
                     AND f.subject = %(subject)s AND f.forgotten_at >= %(observed_at)s)
ON CONFLICT DO NOTHING
RETURNING 1
"""

# The new vector's nearest among the user's others (exact), linked both ways.
_LINK_SQL = """
WITH nearest AS (
    SELECT memory_id AS linked_id, 1 - (embedding <=> %(vector)s::vector) AS weight
      FROM embeddings
     WHERE tenant = %(tenant)s AND subject = %(subject)s AND model = %(model)s
       AND memory_id <> %(memory_id)s
     ORDER BY embedding <=> %(vector)s::vector, memory_id
     LIMIT %(limit)s
)
INSERT INTO links (tenant, model, memory_id, linked_id, subject, weight)
SELECT %(tenant)s, %(model)s, pair.a, pair.b, %(subject)s, n.weight
  FROM nearest n,
       LATERAL (VALUES (%(memory_id)s::uuid, n.linked_id), (n.linked_id, %(memory_id)s::uuid))
               AS pair(a, b)
 WHERE n.weight >= %(threshold)s
ON CONFLICT DO NOTHING
"""

_FORGET_SQL = [
    """
    INSERT INTO forgotten AS f (tenant, subject, forgotten_at)
    VALUES (%(tenant)s, %(subject)s, %(at)s)
    ON CONFLICT (tenant, subject) DO UPDATE
        SET forgotten_at = GREATEST(f.forgotten_at, EXCLUDED.forgotten_at)
    """,
    """
    DELETE FROM embeddings
     WHERE tenant = %(tenant)s AND subject = %(subject)s AND observed_at <= %(at)s
    """,
    # Links with a vector gone; those between vectors from after the erasure stay (a
    # redelivered user.forgotten must not touch them).
    """
    DELETE FROM links l
     WHERE tenant = %(tenant)s AND subject = %(subject)s
       AND NOT (EXISTS (SELECT 1 FROM embeddings e WHERE e.tenant = l.tenant
                          AND e.memory_id = l.memory_id AND e.model = l.model)
                AND EXISTS (SELECT 1 FROM embeddings e WHERE e.tenant = l.tenant
                              AND e.memory_id = l.linked_id AND e.model = l.model))
    """,
]


class EmbeddingsProjection(Projection):
    name: ClassVar[str] = "embeddings"
    topics: ClassVar[tuple[str, ...]] = (EMBEDDINGS, CONVERSATIONS)
    tables: ClassVar[tuple[str, ...]] = ("embeddings", "links", "forgotten")

    def schema_sql(self) -> str:
        return SCHEMA_SQL

    def prepare(self, records: Sequence[LogRecord]) -> list[EmbeddingComputed | UserForgotten]:
        return [r.event for r in records if isinstance(r.event, EmbeddingComputed | UserForgotten)]

    async def apply(
        self, conn: AsyncConnection[Any], prepared: list[EmbeddingComputed | UserForgotten]
    ) -> None:
        models = {(e.data.model, e.data.dimension) for e in prepared
                  if isinstance(e, EmbeddingComputed)}  # fmt: skip
        for model, dimension in sorted(models):
            await _ensure_index(conn, model, dimension)
        for event in prepared:
            if isinstance(event, UserForgotten):
                erased = {"tenant": event.tenant, "subject": event.subject, "at": event.occurred_at}
                for statement in _FORGET_SQL:
                    await conn.execute(statement, erased)
                continue
            data = event.data
            params = {
                "tenant": event.tenant,
                "memory_id": data.memory_id,
                "model": data.model,
                "subject": event.subject,
                "dimension": data.dimension,
                "vector": "[" + ",".join(repr(x) for x in data.vector) + "]",
                "observed_at": event.occurred_at,
                "limit": LINKS_PER_MEMORY,
                "threshold": LINK_THRESHOLD,
            }
            cursor = await conn.execute(_INSERT_SQL, params)
            if await cursor.fetchone() is not None:
                await conn.execute(_LINK_SQL, params)


async def _ensure_index(conn: AsyncConnection[Any], model: str, dimension: int) -> None:
    """The model's HNSW index (once per batch: a rolled-back batch may have created it
    only to lose it)."""
    digest = hashlib.sha1(f"{model}/{dimension}".encode()).hexdigest()[:12]
    await conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON embeddings USING hnsw"
            " ((embedding::vector({})) vector_cosine_ops) WHERE model = {}"
        ).format(
            sql.Identifier(f"embeddings_hnsw_{digest}"),
            sql.Literal(dimension),
            sql.Literal(model),
        )
    )
