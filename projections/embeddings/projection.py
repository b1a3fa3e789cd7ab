"""Projects ``embedding.computed`` into pgvector, and links each new vector to its neighbours.

Semantics, event by event in log order: insert the vector (a redelivered event inserts
nothing and links nothing); then link it, both ways and weighted by the cosine, to the
same user's 5 nearest vectors of the same model with cosine >= ``LINK_THRESHOLD`` among
those that came *before it in the log*. A user's events are on one partition, in order,
so a rebuild meets the vectors in the same order and computes the same links. The search
is exact, never the approximate HNSW index: links must not depend on an index.

The batch is applied set-based, with the same result as event by event whatever the
batch boundaries. ``prepare`` cuts the batch at each ``user.forgotten`` into runs of
vectors (an erasure is applied exactly where it stands in the batch) and renders each
run as a binary ``COPY`` payload numbered in batch order (``seq``): vectors in pgvector's
binary form, so neither Python prints 384 floats per vector nor PostgreSQL parses them.
``apply`` then, per run:

1. COPY the run into a temporary staging table (``embeddings_incoming``);
2. ONE statement takes the staging rows out, inserts those whose key is new and whose
   user was not erased after them, and links every inserted vector: its candidates are
   the user's vectors stored before the statement (all earlier in the log: batches are
   applied in log order) plus the run's inserted vectors with a smaller ``seq``. The
   user's stored vectors are read once per run, not once per new vector.

HNSW: each model gets a partial HNSW index over ``embedding::vector(dimension)`` so two
models coexist while one is rebuilt. It is built in :meth:`caught_up`, once the runner
has caught up with the log, not when the model's first vector arrives: maintaining it on
every insert made a rebuild several times slower than building it once over the loaded
rows (figures in docs/memory.md). Until it exists, a query on that model is an exact
scan: slower, the same answers. After that, new vectors maintain it.

A memory's vector is sealed like its content, with the key of the day the memory was
said: past the tenant's memory retention it decodes empty and is skipped (its memory is
skipped by the memories projection alike), so a rebuild links nothing to it.

Passages (``passages.embedded``) go to ``passage_vectors`` the same way, staged by
binary COPY and inserted in one statement per run, without links; a conversation whose
transcript was replaced gets the newer vectors.

``user.forgotten`` deletes the user's vectors (of what was said at or before it: a
memory's observation, a passage's call start) and links, records the erasure (by the
user's pseudonym: projections/erasures.py) and, as in the memories projection, drops
vectors about them from before it that arrive later. ``apply`` reads the watermarks of the
batch's users in one query and, only when one covers a vector of the batch, prepares the
batch again without it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from psycopg import AsyncConnection, sql

from projections.erasures import (
    FORGOTTEN_SQL,
    Erasure,
    Erasures,
    earliest,
    record_erasures,
    refolded,
)
from schemas import EmbeddingComputed, Event, PassagesEmbedded, UserForgotten
from streams.copy import (
    BINARY_HEADER,
    BINARY_TRAILER,
    binary_bytes,
    binary_int4,
    binary_row_start,
    binary_timestamptz,
)
from streams.projection import LogRecord, Projection
from streams.topics import CONVERSATIONS, EMBEDDINGS

__all__ = ["LINKS_PER_MEMORY", "LINK_THRESHOLD", "EmbeddingsProjection", "hnsw_index_name"]

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()

LINK_THRESHOLD = 0.8
LINKS_PER_MEMORY = 5

# pgvector's HNSW indexes `vector` values of at most this many dimensions; a model with
# more is searched exactly (rows never depend on the index).
HNSW_MAX_DIMENSION = 2000

# The graph of a rebuilt model (~2 KB per 384-dimension vector) is built in memory when it
# fits: past maintenance_work_mem pgvector inserts into the on-disk graph, much slower.
_INDEX_BUILD_MEMORY = "1GB"

# A run's candidates (every stored vector of its users, ~1.6 KB each at 384 dimensions)
# are hashed or sorted to compare the pairs: beyond work_mem that spills to disk. With
# this much, a batch of 2,000 vectors stays in memory (measured: 10-17% faster rebuild).
_LINK_WORK_MEM = "256MB"

# Per run of vectors: the staging table (temporary, this connection's own) takes the COPY.
_STAGING_SQL = """
CREATE TEMP TABLE IF NOT EXISTS embeddings_incoming (
    seq          integer     NOT NULL,
    tenant       text        NOT NULL,
    memory_id    uuid        NOT NULL,
    model        text        NOT NULL,
    subject      text        NOT NULL,
    dimension    integer     NOT NULL,
    embedding    vector      NOT NULL,
    observed_at  timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY_SQL = (
    "COPY pg_temp.embeddings_incoming"
    " (seq, tenant, memory_id, model, subject, dimension, embedding, observed_at)"
    " FROM STDIN (FORMAT BINARY)"
)

# One statement per run: staging rows out, new vectors in, their links computed. Every
# sub-statement sees the table as it was before the statement, so the candidates are the
# stored vectors (seq 0: all earlier in the log) plus the run's own earlier ones.
_INSERT_AND_LINK_SQL = """
WITH run AS (
    DELETE FROM pg_temp.embeddings_incoming RETURNING *
), inserted AS (
    INSERT INTO embeddings (tenant, memory_id, model, subject, dimension, embedding, observed_at)
    SELECT r.tenant, r.memory_id, r.model, r.subject, r.dimension, r.embedding, r.observed_at
      FROM run r
    ON CONFLICT DO NOTHING
    RETURNING tenant, memory_id, model
), new AS MATERIALIZED (
    -- grp numbers the run's (user, model) pairs: one integer to join pairs on. (A semi
    -- join, not a join: estimated at one row, a join made the planner compare the pairs
    -- by nested loops, re-reading the candidates once per new vector.)
    SELECT r.seq, r.tenant, r.subject, r.model, r.memory_id, r.embedding,
           dense_rank() OVER (ORDER BY r.tenant, r.subject, r.model) AS grp
      FROM run r
     WHERE EXISTS (SELECT 1 FROM inserted i WHERE i.tenant = r.tenant
                     AND i.memory_id = r.memory_id AND i.model = r.model)
), candidates AS MATERIALIZED (
    -- The stored ones, read once per user and model of the run (embeddings_by_subject);
    -- materialized, so that whatever join compares the pairs never reads them again.
    SELECT u.grp, 0 AS seq, e.memory_id, e.embedding
      FROM (SELECT DISTINCT grp, tenant, subject, model FROM new) u
      CROSS JOIN LATERAL (
          SELECT memory_id, embedding FROM embeddings e
           WHERE e.tenant = u.tenant AND e.subject = u.subject AND e.model = u.model
      ) e
    UNION ALL
    SELECT grp, seq, memory_id, embedding FROM new
), scored AS MATERIALIZED (
    -- Narrow rows (no vectors) for the ranking below.
    SELECT n.seq, c.memory_id AS linked_id, c.embedding <=> n.embedding AS distance
      FROM new n JOIN candidates c ON c.grp = n.grp AND c.seq < n.seq
     WHERE 1 - (c.embedding <=> n.embedding) >= %(threshold)s
), nearest AS (
    -- Threshold first, then the top 5: the same pairs as the top 5 then the threshold.
    SELECT seq, linked_id, 1 - distance AS weight,
           row_number() OVER (PARTITION BY seq ORDER BY distance, linked_id) AS rank
      FROM scored
)
-- No ON CONFLICT (it made this statement a fifth slower): every pair is inserted once,
-- by the search of its later vector, which is new in this statement, so no link can name
-- it yet (an erasure deletes every link whose vector it deletes); its earlier vector
-- never searched for it. Were that ever wrong, the batch would fail and the runtime
-- would isolate the event, not drop it.
INSERT INTO links (tenant, model, memory_id, linked_id, subject, weight)
SELECT n.tenant, n.model, pair.a, pair.b, n.subject, x.weight
  FROM nearest x
  JOIN new n USING (seq),
       LATERAL (VALUES (n.memory_id, x.linked_id), (x.linked_id, n.memory_id)) AS pair(a, b)
 WHERE x.rank <= %(limit)s
"""

# Passage vectors: staged like memory vectors (as `vector`, the binary form packed for
# both), then one statement per run; the insert converts them to the table's halfvec (an
# implicit cast: pgvector rounds each value to nearest and rejects one beyond its range;
# a version created with a `vector` column takes them as they are).
_PASSAGE_STAGING_SQL = """
CREATE TEMP TABLE IF NOT EXISTS passage_vectors_incoming (
    tenant           text        NOT NULL,
    conversation_id  text        NOT NULL,
    seq              integer     NOT NULL,
    model            text        NOT NULL,
    subject          text        NOT NULL,
    dimension        integer     NOT NULL,
    embedding        vector      NOT NULL,
    observed_at      timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""
_PASSAGE_COPY_SQL = (
    "COPY pg_temp.passage_vectors_incoming"
    " (tenant, conversation_id, seq, model, subject, dimension, embedding, observed_at)"
    " FROM STDIN (FORMAT BINARY)"
)
_PASSAGE_INSERT_SQL = """
WITH run AS (
    DELETE FROM pg_temp.passage_vectors_incoming RETURNING *
)
INSERT INTO passage_vectors AS p
       (tenant, conversation_id, seq, model, subject, dimension, embedding, observed_at)
SELECT r.tenant, r.conversation_id, r.seq, r.model, r.subject, r.dimension, r.embedding,
       r.observed_at
  FROM run r
ON CONFLICT (tenant, conversation_id, seq, model) DO UPDATE
    SET dimension = EXCLUDED.dimension, embedding = EXCLUDED.embedding,
        observed_at = EXCLUDED.observed_at
  WHERE p.observed_at <= EXCLUDED.observed_at
"""
_PASSAGE_ROW_START = binary_row_start(8)

# An erasure (recorded in `forgotten` first): the user's vectors of what was said at or
# before it go, with their links.
_FORGET_SQL = [
    """
    DELETE FROM embeddings
     WHERE tenant = %(tenant)s AND subject = %(subject)s AND observed_at <= %(at)s
    """,
    """
    DELETE FROM passage_vectors
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


@dataclass(frozen=True, slots=True)
class VectorRun:
    """Consecutive vectors of a batch as a COPY payload for the staging table."""

    payload: bytes | None
    """Memory vectors; None when the run has none."""
    models: frozenset[tuple[str, int]]
    passages: bytes | None = None
    """Passage vectors; None when the run has none."""


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """Runs of vectors, and each erasure where it stands between them."""

    steps: tuple[VectorRun | Erasure, ...]
    # Per user, the earliest time the batch's vectors are about (projections.erasures.
    # earliest): what an erasure recorded earlier may cover.
    began: str
    # The batch itself: prepared again, rarely, without what an earlier erasure covers.
    records: Sequence[LogRecord]


@dataclass(slots=True)
class _RunBuilder:
    rows: list[bytes] = field(default_factory=list)
    keys: set[tuple[str, Any, str]] = field(default_factory=set)
    models: set[tuple[str, int]] = field(default_factory=set)
    # Passage vectors by key: a later event for the same passage replaces an earlier one.
    passages: dict[tuple[str, str, int, str], bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rows or self.passages)

    def add_passages(self, event: PassagesEmbedded) -> None:
        data = event.data
        head = (
            binary_bytes(event.tenant.encode()),
            binary_bytes(data.conversation_id.encode()),
        )
        tail = (
            binary_bytes(data.model.encode()),
            binary_bytes(event.subject.encode()),
            binary_int4(data.dimension),
        )
        observed_at = binary_timestamptz(event.began)  # when its call began
        for passage in data.passages:
            key = (event.tenant, data.conversation_id, passage.seq, data.model)
            self.passages.pop(key, None)  # keep log order: the replacement goes last
            self.passages[key] = b"".join(
                (
                    _PASSAGE_ROW_START,
                    *head,
                    binary_int4(passage.seq),
                    *tail,
                    _binary_vector(passage.vector),
                    observed_at,
                )
            )

    def add(self, event: EmbeddingComputed) -> None:
        data = event.data
        if not data.vector:
            return  # past its tenant's memory retention: the vector no longer opens
        key = (event.tenant, data.memory_id, data.model)
        if key in self.keys:  # the same event twice in the run: the first one counts
            return
        self.keys.add(key)
        self.models.add((data.model, data.dimension))
        # seq numbers the run in log order. The vector goes in pgvector's binary form
        # (vector_recv): packing 384 floats is about 4 µs, printing them as text about
        # 25 µs and PostgreSQL's parsing them back (strtof each) more again. Packing
        # rounds each value to float32 as parsing its text does, to the same float32 (both
        # round to nearest; checked on 20 million float32 values and by
        # tests/integration/test_embeddings.py).
        self.rows.append(
            b"".join(
                (
                    _ROW_START,
                    binary_int4(len(self.rows) + 1),
                    binary_bytes(event.tenant.encode()),
                    binary_bytes(data.memory_id.bytes),
                    binary_bytes(data.model.encode()),
                    binary_bytes(event.subject.encode()),
                    binary_int4(data.dimension),
                    _binary_vector(data.vector),
                    binary_timestamptz(event.began),
                )
            )
        )

    def build(self) -> VectorRun:
        return VectorRun(
            b"".join((BINARY_HEADER, *self.rows, BINARY_TRAILER)) if self.rows else None,
            frozenset(self.models),
            b"".join((BINARY_HEADER, *self.passages.values(), BINARY_TRAILER))
            if self.passages
            else None,
        )


_ROW_START = binary_row_start(8)  # the staging table's columns
_VECTOR_FORMATS: dict[int, struct.Struct] = {}


def _binary_vector(values: Sequence[float]) -> bytes:
    """A ``vector`` field in pgvector's binary form: int16 dimension, int16 unused (0),
    then the values as float32, big-endian; the field's int32 length in front."""
    dimension = len(values)
    packer = _VECTOR_FORMATS.get(dimension)
    if packer is None:
        packer = _VECTOR_FORMATS[dimension] = struct.Struct(f"!ihh{dimension}f")
    # A value beyond float32's range (not a unit vector) raises OverflowError here, as
    # pgvector would reject its text: the event goes the way of any failing one.
    return packer.pack(4 + 4 * dimension, dimension, 0, *values)


class EmbeddingsProjection(Projection):
    name: ClassVar[str] = "embeddings"
    topics: ClassVar[tuple[str, ...]] = (EMBEDDINGS, CONVERSATIONS)
    tables: ClassVar[tuple[str, ...]] = ("embeddings", "links", "forgotten", "passage_vectors")

    def __init__(self) -> None:
        # Models whose vectors this runner has applied (None: not looked up yet), and
        # those whose HNSW index the catalog showed. Only hints for `caught_up`: the index
        # is created IF NOT EXISTS, and rows never depend on it.
        self._models: set[tuple[str, int]] | None = None
        self._applied_models: set[tuple[str, int]] = set()
        self._indexed: set[tuple[str, int]] = set()

    def schema_sql(self) -> str:
        return SCHEMA_SQL + FORGOTTEN_SQL

    def prepare(self, records: Sequence[LogRecord]) -> PreparedBatch:
        return self._prepare(records, Erasures())

    def _prepare(self, records: Sequence[LogRecord], erasures: Erasures) -> PreparedBatch:
        """Cut `records` into runs at each erasure; a vector about what was said at or
        before its user's erasure (recorded earlier, in `erasures`, or one before it in
        the batch) is left out."""
        steps: list[VectorRun | Erasure] = []
        about: list[Event] = []
        run = _RunBuilder()
        for record in records:
            event = record.event
            if isinstance(event, EmbeddingComputed | PassagesEmbedded):
                about.append(event)
                if erasures.covers(event):
                    continue
                if isinstance(event, EmbeddingComputed):
                    run.add(event)
                else:
                    run.add_passages(event)
            elif isinstance(event, UserForgotten):
                if run:
                    steps.append(run.build())
                    run = _RunBuilder()
                steps.append(erasures.erase(event))
        if run:
            steps.append(run.build())
        return PreparedBatch(tuple(steps), earliest(about), records)

    async def apply(self, conn: AsyncConnection[Any], prepared: PreparedBatch) -> None:
        # Erasures recorded by earlier batches that cover a vector of this one: prepared
        # again without those vectors.
        prepared = await refolded(conn, prepared, self._prepare)
        for step in prepared.steps:
            if isinstance(step, Erasure):
                await record_erasures(conn, [step])
                erased = {"tenant": step.tenant, "subject": step.subject, "at": step.at}
                for statement in _FORGET_SQL:
                    await conn.execute(statement, erased)
                continue
            if step.passages is not None:
                await conn.execute(_PASSAGE_STAGING_SQL)
                async with conn.cursor().copy(_PASSAGE_COPY_SQL) as copy:
                    await copy.write(step.passages)
                await conn.execute(_PASSAGE_INSERT_SQL)
            if step.payload is None:
                continue
            await conn.execute(_STAGING_SQL)
            await conn.execute(f"SET LOCAL work_mem = '{_LINK_WORK_MEM}'")
            async with conn.cursor().copy(_COPY_SQL) as copy:
                await copy.write(step.payload)
            await conn.execute(
                _INSERT_AND_LINK_SQL, {"threshold": LINK_THRESHOLD, "limit": LINKS_PER_MEMORY}
            )
            self._applied_models |= step.models

    async def caught_up(self, conn: AsyncConnection[Any]) -> None:
        """Build the HNSW index of every model that has vectors and no index yet."""
        if self._models is None:  # first call of this runner: what is stored already
            cursor = await conn.execute("SELECT DISTINCT model, dimension FROM embeddings")
            self._models = {(str(m), int(d)) for m, d in await cursor.fetchall()}
        self._models |= self._applied_models
        self._applied_models.clear()
        missing = {m for m in self._models - self._indexed if m[1] <= HNSW_MAX_DIMENSION}
        if not missing:
            return
        cursor = await conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
        existing = {str(name) for (name,) in await cursor.fetchall()}
        for model, dimension in sorted(missing):
            if hnsw_index_name(model, dimension) in existing:
                self._indexed.add((model, dimension))
                continue
            await conn.execute(f"SET LOCAL maintenance_work_mem = '{_INDEX_BUILD_MEMORY}'")
            await conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON embeddings USING hnsw"
                    " ((embedding::vector({})) vector_cosine_ops) WHERE model = {}"
                ).format(
                    sql.Identifier(hnsw_index_name(model, dimension)),
                    sql.Literal(dimension),
                    sql.Literal(model),
                )
            )
            # Not marked indexed until the catalog shows it (this transaction may roll back).


def hnsw_index_name(model: str, dimension: int) -> str:
    """The name of a model's partial HNSW index (in the version's schema)."""
    digest = hashlib.sha1(f"{model}/{dimension}".encode()).hexdigest()[:12]
    return f"embeddings_hnsw_{digest}"
