"""The read-model queries of the memory search, which span the memories, embeddings and
conversations read models (through their live views: ``memories.*``, ``embeddings.*``,
``conversations.*``).

Each function builds one statement from plain parameters, runs it and returns its rows:
the lexical and dense candidate lists, the candidates' memories and their links, the
candidate passages with the memories citing them, and the passages' neighbouring turns.
services/query/search.py fuses, ranks and merges what they return (its module docstring
says how).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from projections.conversations.passages import WINDOW
from projections.memories.queries import DECAYED_SALIENCE, REINFORCEMENT_BOOST
from projections.text_search import ANY_TERM_QUERY

__all__ = [
    "candidate_passages",
    "dense_candidates",
    "lexical_candidates",
    "linked_memories",
    "memories_by_id",
    "passage_neighbours",
]

# Lexical: BM25 over the user's documents (memories and/or passages). Term frequency is
# read from the tsvector's positions, weighted by their label: A (a memory, or a passage's
# own turn) counts 1, B (a passage's context) counts context_weight. Only the documents
# that contain a word of the question are read ({docs}); what BM25 needs of all of them,
# their count and mean length per kind, comes from {kinds}: for passages, the user's row
# of conversations.passage_stats (kept by triggers) where it exists.
_LEXICAL_SQL = """
WITH q AS (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(text)s))),
terms AS (SELECT {any_term} AS tq),
docs AS ({docs}),
kinds AS ({kinds}),
-- Document frequency over all the user's documents; length normalised within each kind
-- (a five-word memory is not "short" beside thirty-word passages: it is a memory).
stats AS (SELECT passage, sum(docs) OVER () AS n, avgdl FROM kinds WHERE docs > 0),
matches AS (
    -- Each document's vector is cut down to the question's lexemes before it is unnested
    -- (drop the question's lexemes, then drop every lexeme left from the whole vector):
    -- unnesting whole vectors took most of the statement for a user with 12,000 passages.
    SELECT memory_id, conversation_id, seq, dl, ts_rank, (u).lexeme,
           (cardinality(array_positions((u).weights, 'A'))
            + %(context_weight)s
              * (cardinality((u).weights) - cardinality(array_positions((u).weights, 'A')))
           )::float8 AS tf
      FROM (SELECT d.memory_id, d.conversation_id, d.seq, length(d.search)::float8 AS dl,
                   {ts_rank} AS ts_rank,
                   unnest(ts_delete(d.search,
                                    tsvector_to_array(ts_delete(d.search, q.lexemes)))) AS u
              FROM docs d CROSS JOIN terms
             CROSS JOIN (SELECT array_agg(lexeme) AS lexemes FROM q) q) x
),
df AS (SELECT lexeme, count(*)::float8 AS df FROM matches GROUP BY lexeme),
scored AS (
    SELECT m.memory_id, m.conversation_id, m.seq,
           sum(ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5)) * m.tf * (%(k1)s + 1)
               / (m.tf + %(k1)s * (1 - %(b)s + %(b)s * m.dl / s.avgdl))) AS bm25,
           max(m.ts_rank) AS ts_rank
      FROM matches m JOIN df USING (lexeme)
      JOIN stats s ON s.passage = (m.memory_id IS NULL)
     GROUP BY m.memory_id, m.conversation_id, m.seq
)
SELECT memory_id, conversation_id, seq, {ranking} AS lexical FROM scored
 ORDER BY lexical DESC, memory_id, conversation_id, seq
 LIMIT %(depth)s
"""

_MEMORIES_OF_USER = """
  FROM memories.memories m
 WHERE m.tenant = %(tenant)s AND m.subject = %(subject)s
   AND m.state = 'active' AND m.content IS NOT NULL
   AND (%(sectors)s::text[] IS NULL OR m.sector = ANY(%(sectors)s::text[]))
"""
_MEMORY_DOCS = f"""
SELECT m.memory_id, NULL::text AS conversation_id, NULL::integer AS seq,
       setweight(m.search, 'A') AS search
{_MEMORIES_OF_USER}   AND m.search @@ (SELECT tq FROM terms)
"""
_MEMORY_KINDS = f"""
SELECT false AS passage, count(*)::float8 AS docs,
       GREATEST(avg(length(m.search)), 1)::float8 AS avgdl
{_MEMORIES_OF_USER}"""

_PASSAGE_DOCS = """
SELECT NULL::uuid AS memory_id, p.conversation_id, p.seq, p.search
  FROM conversations.passages p
 WHERE p.tenant = %(tenant)s AND p.subject = %(subject)s AND p.search @@ (SELECT tq FROM terms)
"""
_PASSAGE_KINDS = """
SELECT true AS passage, s.passages::float8 AS docs,
       GREATEST(s.lexemes::float8 / GREATEST(s.passages, 1), 1) AS avgdl
  FROM conversations.passage_stats s
 WHERE s.tenant = %(tenant)s AND s.subject = %(subject)s
"""
# A conversations version built before passage_stats: every passage of the user is read.
_PASSAGE_KINDS_SCANNED = """
SELECT true AS passage, count(*)::float8 AS docs,
       GREATEST(avg(length(p.search)), 1)::float8 AS avgdl
  FROM conversations.passages p
 WHERE p.tenant = %(tenant)s AND p.subject = %(subject)s
"""

# Dense: {dimension} and {model} are literals so the model's partial HNSW index
# (embeddings projection) can serve the memories' ORDER BY.
_MEMORY_DENSE = """
SELECT e.memory_id, NULL::text AS conversation_id, NULL::integer AS seq,
       e.embedding::vector({dimension}) <=> %(vector)s::vector({dimension}) AS distance
  FROM embeddings.embeddings e
  JOIN memories.memories m ON m.tenant = e.tenant AND m.memory_id = e.memory_id
 WHERE e.tenant = %(tenant)s AND e.subject = %(subject)s AND e.model = {model}
   AND (e.embedding::vector({dimension}) <=> %(vector)s::vector({dimension}))
       <= %(max_distance)s
   AND m.state = 'active' AND m.content IS NOT NULL
   AND (%(sectors)s::text[] IS NULL OR m.sector = ANY(%(sectors)s::text[]))
 ORDER BY e.embedding::vector({dimension}) <=> %(vector)s::vector({dimension}), e.memory_id
 LIMIT %(depth)s
"""

# Passages: an exact scan of the user's vectors, compared at half precision (their
# storage since halfvec; a version created before stores `vector`, converted here).
_PASSAGE_DENSE = """
SELECT NULL::uuid AS memory_id, v.conversation_id, v.seq,
       v.embedding::halfvec({dimension}) <=> %(vector)s::halfvec({dimension}) AS distance
  FROM embeddings.passage_vectors v
 WHERE v.tenant = %(tenant)s AND v.subject = %(subject)s AND v.model = {model}
   AND (v.embedding::halfvec({dimension}) <=> %(vector)s::halfvec({dimension}))
       <= %(max_distance)s
 ORDER BY distance, v.conversation_id, v.seq
 LIMIT %(depth)s
"""

_MEMORY_COLUMNS = f"""
m.memory_id, m.content, m.sector, m.kind, m.observed_at, m.last_seen_at,
m.reinforcement_count, m.provenance, {DECAYED_SALIENCE} AS salience
"""

_MEMORIES_SQL = f"""
SELECT {_MEMORY_COLUMNS}
  FROM memories.memories m
 WHERE m.tenant = %(tenant)s AND m.memory_id = ANY(%(ids)s)
"""

# One hop from the seeds along the links of the same model, to active memories only.
_NEIGHBOURS_SQL = f"""
SELECT l.memory_id AS seed, l.weight, {_MEMORY_COLUMNS}
  FROM embeddings.links l
  JOIN memories.memories m ON m.tenant = l.tenant AND m.memory_id = l.linked_id
 WHERE l.tenant = %(tenant)s AND l.model = {{model}} AND l.memory_id = ANY(%(seeds)s)
   AND m.state = 'active' AND m.content IS NOT NULL
   AND (%(sectors)s::text[] IS NULL OR m.sector = ANY(%(sectors)s::text[]))
"""

# The candidate passages (their moment, for recency), and which memories cite them: the
# active ones fold them, superseded or retracted ones make them stale.
_PASSAGES_SQL = """
WITH wanted AS (
    SELECT * FROM unnest(%(conversations)s::text[], %(seqs)s::integer[])
             AS w(conversation_id, seq)
), cited AS MATERIALIZED (
    -- The user's citations of the candidates' conversations, read once per search:
    -- active memories through memories_by_subject, the others through
    -- memories_inactive_by_subject (never a scan of the tenant's memories).
    SELECT c->>'conversation_id' AS conversation_id, t.seq::integer AS seq,
           m.memory_id, m.state, m.content IS NOT NULL AS said
      FROM (SELECT memory_id, state, content, provenance FROM memories.memories
             WHERE tenant = %(tenant)s AND subject = %(subject)s AND state = 'active'
            UNION ALL
            SELECT memory_id, state, content, provenance FROM memories.memories
             WHERE tenant = %(tenant)s AND subject = %(subject)s AND state <> 'active') m
      CROSS JOIN LATERAL jsonb_array_elements(m.provenance) AS c
      CROSS JOIN LATERAL jsonb_array_elements_text(c->'turns') AS t(seq)
     WHERE c->>'conversation_id' = ANY(%(conversations)s::text[])
)
SELECT p.conversation_id, p.seq, p.role, p.text, p.spoken_at,
       (SELECT array_agg(x.memory_id ORDER BY x.memory_id) FROM cited x
         WHERE x.conversation_id = p.conversation_id AND x.seq = p.seq
           AND x.state = 'active' AND x.said) AS active,
       -- Stale: what was said around it (its window) is cited by superseded or retracted
       -- memories only.
       (SELECT bool_or(x.state <> 'active') AND NOT bool_or(x.state = 'active') FROM cited x
         WHERE x.conversation_id = p.conversation_id
           AND x.seq BETWEEN p.seq - %(window)s AND p.seq + %(window)s) AS stale
  FROM wanted w
  JOIN conversations.passages p
    ON p.tenant = %(tenant)s AND p.subject = %(subject)s
   AND p.conversation_id = w.conversation_id AND p.seq = w.seq
"""

# The neighbours of the returned passages (WINDOW on each side, passages only).
_CONTEXT_SQL = """
WITH wanted AS (
    SELECT * FROM unnest(%(conversations)s::text[], %(seqs)s::integer[])
             AS w(conversation_id, seq)
)
SELECT w.conversation_id, w.seq AS around, n.seq, n.role, n.text
  FROM wanted w
  CROSS JOIN LATERAL (
      (SELECT seq, role, text FROM conversations.passages p
        WHERE p.tenant = %(tenant)s AND p.conversation_id = w.conversation_id
          AND p.seq < w.seq ORDER BY p.seq DESC LIMIT %(window)s)
      UNION ALL
      (SELECT seq, role, text FROM conversations.passages p
        WHERE p.tenant = %(tenant)s AND p.conversation_id = w.conversation_id
          AND p.seq >= w.seq ORDER BY p.seq LIMIT %(window)s + 1)
  ) n
 ORDER BY w.conversation_id, w.seq, n.seq
"""


async def lexical_candidates(
    conn: AsyncConnection[Any],
    *,
    tenant: str,
    subject: str,
    text: str,
    sectors: Sequence[str] | None,
    memories: bool,
    passages: bool,
    depth: int,
    k1: float,
    b: float,
    context_weight: float,
    ranking: Literal["bm25", "ts_rank"] = "bm25",
    passage_stats: bool | None = None,
) -> list[dict[str, Any]]:
    """The lexical list: the user's documents that contain a word of ``text`` (active
    memories of ``sectors`` with ``memories``, passages with ``passages``), ranked by BM25
    (``k1``, ``b``; a term in a passage's context counts ``context_weight``) or
    ``ts_rank``, best first, at most ``depth``. A row is a memory's ``memory_id`` or a
    passage's ``conversation_id`` and ``seq`` (the others NULL), and its ``lexical`` score.
    `passage_stats`: whether ``conversations.passage_stats`` exists (None: ask the
    database); without it every passage of the user is read for their count and length."""
    if passages and passage_stats is None:
        cursor = await conn.execute("SELECT to_regclass('conversations.passage_stats') IS NOT NULL")
        found = await cursor.fetchone()
        passage_stats = bool(found and found[0])
    passage_kinds = _PASSAGE_KINDS if passage_stats else _PASSAGE_KINDS_SCANNED
    parts = [
        texts
        for texts, wanted in (
            ((_MEMORY_DOCS, _MEMORY_KINDS), memories),
            ((_PASSAGE_DOCS, passage_kinds), passages),
        )
        if wanted
    ]
    if not parts:
        return []
    statement = sql.SQL(_LEXICAL_SQL).format(
        docs=sql.SQL(" UNION ALL ".join(docs for docs, _ in parts)),
        kinds=sql.SQL(" UNION ALL ".join(kinds for _, kinds in parts)),
        any_term=sql.SQL(ANY_TERM_QUERY),
        ranking=sql.SQL("bm25" if ranking == "bm25" else "ts_rank"),
        # ts_rank is computed only when it is the ranking.
        ts_rank=sql.SQL("NULL::real" if ranking == "bm25" else "ts_rank(d.search, terms.tq, 1)"),
    )
    params = {
        "tenant": tenant,
        "subject": subject,
        "text": text,
        "sectors": _sectors(sectors),
        "depth": depth,
        "k1": k1,
        "b": b,
        "context_weight": context_weight,
    }
    cursor = conn.cursor(row_factory=dict_row)
    # Never prepared: a prepared statement's generic plan, which PostgreSQL may settle on
    # after five runs, does not know the question's lexemes nor the user, and was 4x
    # slower for a user with 20,000 passages (140 ms against 34, median).
    await cursor.execute(statement, params, prepare=False)
    return await cursor.fetchall()


async def dense_candidates(
    conn: AsyncConnection[Any],
    *,
    tenant: str,
    subject: str,
    sectors: Sequence[str] | None,
    memories: bool,
    passages: bool,
    vector: Sequence[float],
    model: str,
    depth: int,
    min_cosine: float,
) -> list[dict[str, Any]]:
    """The dense list: the user's vectors of ``model`` (of active memories of ``sectors``
    with ``memories``, of passages with ``passages``) nearest ``vector``, at least
    ``min_cosine``, nearest first (at most ``depth`` of each kind). A row is a memory's
    ``memory_id`` or a passage's ``conversation_id`` and ``seq`` (the others NULL), and
    its cosine ``distance``."""
    dense = [
        text for text, wanted in ((_MEMORY_DENSE, memories), (_PASSAGE_DENSE, passages)) if wanted
    ]
    if not dense:
        return []
    statement = sql.SQL(" UNION ALL ".join(f"({part})" for part in dense)).format(
        dimension=sql.Literal(len(vector)), model=sql.Literal(model)
    )
    params = {
        "tenant": tenant,
        "subject": subject,
        "sectors": _sectors(sectors),
        "depth": depth,
        "max_distance": 1.0 - min_cosine,
        "vector": "[" + ",".join(repr(float(x)) for x in vector) + "]",
    }
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(statement, params)
    return sorted(await cursor.fetchall(), key=lambda r: float(r["distance"]))


async def memories_by_id(
    conn: AsyncConnection[Any], *, tenant: str, ids: Sequence[uuid.UUID], now: datetime
) -> list[dict[str, Any]]:
    """The memories ``ids`` (any state), with their decayed salience at ``now``."""
    cursor = conn.cursor(row_factory=dict_row)
    params = {"tenant": tenant, "ids": list(ids), "now": now, "boost": REINFORCEMENT_BOOST}
    await cursor.execute(sql.SQL(_MEMORIES_SQL), params)
    return await cursor.fetchall()


async def linked_memories(
    conn: AsyncConnection[Any],
    *,
    tenant: str,
    seeds: Sequence[uuid.UUID],
    model: str,
    sectors: Sequence[str] | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The active memories (of ``sectors``) linked to the ``seeds`` by vectors of
    ``model``, one row per link: ``seed``, the link's ``weight``, and the memory with its
    decayed salience at ``now``."""
    cursor = conn.cursor(row_factory=dict_row)
    params = {
        "tenant": tenant,
        "seeds": list(seeds),
        "sectors": _sectors(sectors),
        "now": now,
        "boost": REINFORCEMENT_BOOST,
    }
    await cursor.execute(sql.SQL(_NEIGHBOURS_SQL).format(model=sql.Literal(model)), params)
    return await cursor.fetchall()


async def candidate_passages(
    conn: AsyncConnection[Any], *, tenant: str, subject: str, keys: Sequence[tuple[str, int]]
) -> list[dict[str, Any]]:
    """The user's passages ``keys`` (conversation id, turn index): their turn (``role``,
    ``text``, ``spoken_at``), ``active`` (the ids of the active memories with content that
    cite it) and ``stale`` (its window is cited by superseded or retracted memories
    only)."""
    cursor = conn.cursor(row_factory=dict_row)
    params = {
        "tenant": tenant,
        "subject": subject,
        "conversations": [c for c, _ in keys],
        "seqs": [s for _, s in keys],
        "window": WINDOW,
    }
    await cursor.execute(_PASSAGES_SQL, params)
    return await cursor.fetchall()


async def passage_neighbours(
    conn: AsyncConnection[Any], *, tenant: str, keys: Sequence[tuple[str, int]]
) -> list[dict[str, Any]]:
    """The passages around each of ``keys`` (conversation id, turn index), in order: the
    ``WINDOW`` before its turn, then from its turn on ``WINDOW`` + 1 (the turn itself,
    when it is a passage, and ``WINDOW`` after it); each row with ``around``, the key's
    turn."""
    cursor = conn.cursor(row_factory=dict_row)
    params = {
        "tenant": tenant,
        "conversations": [c for c, _ in keys],
        "seqs": [s for _, s in keys],
        "window": WINDOW,
    }
    await cursor.execute(_CONTEXT_SQL, params)
    return await cursor.fetchall()


def _sectors(sectors: Sequence[str] | None) -> list[str] | None:
    return list(sectors) if sectors else None
