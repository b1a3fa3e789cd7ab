"""Search: one user's memories and passages ranked for a query, with the reasons for each rank.

Two kinds of hit answer a question: **memories** (facts extracted from calls, active
only: superseded and retracted ones are never candidates) and **passages** (what was
said: each turn of the caller or the agent with its neighbours as context, from the
conversations read model). Both are ranked together, by two lists fused by weighted
reciprocal rank:

1. **lexical**: Okapi BM25 over the user's memories and passages, computed in
   PostgreSQL from their ``tsvector`` (term frequency from the lexeme positions, document
   frequency and length over this user's documents; a passage's own turn counts fully,
   its context at ``context_weight``). Names, numbers and dates that small embedding
   models blur. ``ts_rank`` is kept as an alternative (``lexical_ranking``) only to be
   measured against: on the recall corpus BM25 wins (docs/benchmarks.md, bench_recall);
2. **dense**: cosine similarity of the query's vector to the memories' and passages'
   vectors of the same model, at least ``min_cosine``;

and, for memories, **graph**: one hop from the best fused memories along the links graph
(cosine >= 0.8 neighbours), ranked by link weight times the seed's fused score.

The fused score, normalised so a document first in both lists has relevance 1, is the
``similarity`` term of the composite score (docs/query.md, "Ranking"):

    memory:  0.6 * relevance + 0.2 * decayed salience + 0.1 * recency + 0.1 * link weight
    passage: 0.6 * relevance + 0.2 * passage_salience + 0.1 * recency

``passage_salience`` is below any extracted memory's salience, so a fact ranks above a
passage that is as relevant. Three rules join the kinds:

- a passage cited by a candidate memory's provenance is **folded** into that memory: the
  best memory citing it ranks at the better of the two scores, every citing memory quotes
  it, and the passage is not listed again;
- a passage whose window (its turn and its neighbours) is cited only by memories that
  were superseded or retracted said something no longer true (or asked for it): its
  relevance is multiplied by ``stale_factor``;
- a memory hit quotes the turn that says it with that turn's neighbours, and a passage
  it already shows is **merged** into it (the turn joins its provenance), as a passage
  already shown by a better passage is merged into that one.

Each :class:`Hit` carries its breakdown, the lists it came from and its provenance in one
shape for both kinds (conversation id and turn indexes).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from projections.conversations.passages import WINDOW
from projections.memories.queries import DECAYED_SALIENCE, REINFORCEMENT_BOOST
from projections.text_search import ANY_TERM_QUERY
from services.query.answer_types import answer_type, holds_answer

__all__ = ["SECTORS", "SOURCES", "Hit", "SearchQuery", "SearchWeights", "search_memories"]

#: Turns quoted by a memory hit at most: the best of the passages folded into it.
QUOTES = 2

SECTORS = ("semantic", "episodic", "procedural", "emotional", "reflective")
#: What a search can draw on.
SOURCES = ("memories", "passages")

Source = Literal["memories", "passages"]
#: A memory by its id, a passage by (conversation id, turn index).
Key = uuid.UUID | tuple[str, int]


@dataclass(frozen=True)
class SearchWeights:
    """How the lists are fused and the composite score weighted (docs/query.md)."""

    similarity: float = 0.6
    salience: float = 0.2
    recency: float = 0.1
    link: float = 0.1
    # Reciprocal-rank fusion: weight of each list, and k (smaller k separates the first
    # ranks more). Lexical first: see the module docstring.
    lexical: float = 1.0
    dense: float = 0.7
    graph: float = 0.3
    rrf_k: int = 10
    #: Days after which a memory's recency has halved.
    recency_half_life_days: float = 30.0
    #: Recency counted back from the newest candidate rather than from now: of two
    #: answers the later one wins even when the caller last called a year ago.
    relative_recency: bool = True
    #: A passage quoted as context by a better one is merged into it.
    merge_neighbours: bool = True
    #: Relevance gained by a hit that holds the kind of answer the question asks for
    #: (a moment for "when", a number for "how many"...: services/query/answer_types.py).
    answer_type: float = 0.4
    #: Candidates taken from each list (at least; more when the limit is higher).
    depth: int = 50
    #: Below this cosine a vector neighbour is not a candidate: the nearest memory to an
    #: unrelated question is still unrelated (all-MiniLM-L6-v2: unrelated short texts
    #: score under 0.2, related ones 0.4 and more).
    min_cosine: float = 0.2
    #: Best fused candidates whose links are followed.
    seeds: int = 5
    #: BM25's term-frequency saturation and length normalisation.
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    #: What a term in a passage's context counts for, against one in its own turn.
    context_weight: float = 0.5
    #: ``bm25`` or ``ts_rank`` (PostgreSQL's own, kept to be measured against).
    lexical_ranking: Literal["bm25", "ts_rank"] = "bm25"
    #: The salience term of a passage: under every extracted memory's.
    passage_salience: float = 0.3
    #: Relevance kept by a passage whose only memories were superseded or retracted.
    stale_factor: float = 0.5
    #: A folded passage ranks only the best of the memories citing it (the others keep
    #: their own score and still quote it), so one turn does not fill several slots.
    fold_once: bool = True
    #: A memory hit quotes the turn that says it with that turn's neighbours, as a
    #: passage shows its own: its best folded passage, or else its first source turn.
    memory_context: bool = True
    #: A passage whose turn a better memory hit already quotes is merged into that hit
    #: (added to its provenance) and its slot goes to another answer.
    merge_into_memories: bool = True


@dataclass(frozen=True)
class SearchQuery:
    tenant: str
    subject: str
    text: str
    limit: int = 10
    sectors: tuple[str, ...] | None = None
    min_score: float = 0.0
    #: What to draw on; a sector filter applies to memories and leaves passages out.
    sources: tuple[Source, ...] = ("memories", "passages")


@dataclass(frozen=True)
class Hit:
    memory_id: uuid.UUID | None
    """None for a passage."""
    content: str
    """A memory's content, or the passage's own turn as said."""
    sector: str | None
    kind: str | None
    score: float
    breakdown: dict[str, float]
    """relevance, salience, recency, link: the composite's terms before weighting; and
    cosine / lexical when the hit was in those lists."""
    via: tuple[str, ...]
    """The lists it came from: dense, lexical, graph; ``passage`` for a memory that a
    folded passage ranked."""
    observed_at: datetime
    """When it was said: a memory's first call, a passage's moment in its call."""
    last_seen_at: datetime
    reinforcement_count: int
    provenance: list[dict[str, Any]] = field(default_factory=list)
    type: Literal["memory", "passage"] = "memory"
    speaker: str | None = None
    """A passage's speaker: ``caller`` or ``agent``."""
    context: list[dict[str, Any]] = field(default_factory=list)
    """A passage's neighbouring turns, in order: ``seq``, ``speaker``, ``text``. A
    memory's, each with its ``conversation_id`` too: the turn that says it best (the best
    passage folded into it, else its first source turn), that turn's neighbours in
    order, then the other passages folded into it (at most :data:`QUOTES` quotes)."""
    conversation_id: str | None = None
    """A passage's conversation."""
    turn: int | None = None
    """A passage's own turn (``content``); its provenance also lists the neighbours merged
    into it."""


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
    SELECT d.memory_id, d.conversation_id, d.seq, length(d.search)::float8 AS dl,
           ts_rank(d.search, terms.tq, 1) AS ts_rank, u.lexeme,
           (SELECT count(*) FILTER (WHERE w = 'A')
                   + %(context_weight)s * count(*) FILTER (WHERE w <> 'A')
              FROM unnest(u.weights) w)::float8 AS tf
      FROM docs d CROSS JOIN terms CROSS JOIN LATERAL unnest(d.search) u
     WHERE u.lexeme IN (SELECT lexeme FROM q)
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

_PASSAGE_DENSE = """
SELECT NULL::uuid AS memory_id, v.conversation_id, v.seq,
       v.embedding::vector({dimension}) <=> %(vector)s::vector({dimension}) AS distance
  FROM embeddings.passage_vectors v
 WHERE v.tenant = %(tenant)s AND v.subject = %(subject)s AND v.model = {model}
   AND (v.embedding::vector({dimension}) <=> %(vector)s::vector({dimension}))
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

_SPEAKERS = {"user": "caller", "agent": "agent"}


def _key(row: dict[str, Any]) -> Key:
    if row["memory_id"] is not None:
        memory_id: uuid.UUID = row["memory_id"]
        return memory_id
    return (str(row["conversation_id"]), int(row["seq"]))


async def search_memories(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    *,
    vector: Sequence[float],
    model: str,
    now: datetime,
    weights: SearchWeights | None = None,
) -> list[Hit]:
    """The user's memories and passages for ``query.text``, best first (``vector`` is the
    text embedded by ``model``): the two candidate lists one after the other, then
    :func:`rank_candidates`. The query service runs the lists side by side instead."""
    w = weights or SearchWeights()
    lexical_rows = await lexical_candidates(conn, query, w)
    dense_rows = await dense_candidates(conn, query, vector=vector, model=model, weights=w)
    return await rank_candidates(
        conn, query, lexical_rows, dense_rows, model=model, now=now, weights=w
    )


def _sources(query: SearchQuery) -> tuple[bool, bool]:
    """Whether the search draws on memories, and on passages (a sector filter is about
    memories: passages have no sector)."""
    return "memories" in query.sources, "passages" in query.sources and not query.sectors


def _params(query: SearchQuery, w: SearchWeights, **more: Any) -> dict[str, Any]:
    return {
        "tenant": query.tenant,
        "subject": query.subject,
        "text": query.text,
        "sectors": list(query.sectors) if query.sectors else None,
        "depth": max(w.depth, 2 * query.limit),
        "max_distance": 1.0 - w.min_cosine,
        "boost": REINFORCEMENT_BOOST,
        "k1": w.bm25_k1,
        "b": w.bm25_b,
        "context_weight": w.context_weight,
        **more,
    }


async def lexical_candidates(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    weights: SearchWeights | None = None,
    *,
    passage_stats: bool | None = None,
) -> list[dict[str, Any]]:
    """The lexical list: the user's documents ranked by BM25 (or ``ts_rank``), best
    first. It needs no vector, so it can run while the question is embedded.
    `passage_stats`: whether ``conversations.passage_stats`` exists (None: ask the
    database); without it every passage of the user is read for their count and length."""
    w = weights or SearchWeights()
    with_memories, with_passages = _sources(query)
    if with_passages and passage_stats is None:
        cursor = await conn.execute("SELECT to_regclass('conversations.passage_stats') IS NOT NULL")
        found = await cursor.fetchone()
        passage_stats = bool(found and found[0])
    passage_kinds = _PASSAGE_KINDS if passage_stats else _PASSAGE_KINDS_SCANNED
    parts = [
        texts
        for texts, wanted in (
            ((_MEMORY_DOCS, _MEMORY_KINDS), with_memories),
            ((_PASSAGE_DOCS, passage_kinds), with_passages),
        )
        if wanted
    ]
    if not parts:
        return []
    statement = sql.SQL(_LEXICAL_SQL).format(
        docs=sql.SQL(" UNION ALL ".join(docs for docs, _ in parts)),
        kinds=sql.SQL(" UNION ALL ".join(kinds for _, kinds in parts)),
        any_term=sql.SQL(ANY_TERM_QUERY),
        ranking=sql.SQL("bm25" if w.lexical_ranking == "bm25" else "ts_rank"),
    )
    cursor = conn.cursor(row_factory=dict_row)
    # Never prepared: a prepared statement's generic plan, which PostgreSQL may settle on
    # after five runs, does not know the question's lexemes nor the user, and was 4x
    # slower for a user with 20,000 passages (140 ms against 34, median).
    await cursor.execute(statement, _params(query, w), prepare=False)
    return await cursor.fetchall()


async def dense_candidates(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    *,
    vector: Sequence[float],
    model: str,
    weights: SearchWeights | None = None,
) -> list[dict[str, Any]]:
    """The dense list: the user's memories' and passages' vectors of ``model`` nearest
    ``vector``, at least ``min_cosine``, nearest first."""
    w = weights or SearchWeights()
    with_memories, with_passages = _sources(query)
    dense = [
        text
        for text, wanted in ((_MEMORY_DENSE, with_memories), (_PASSAGE_DENSE, with_passages))
        if wanted
    ]
    if not dense:
        return []
    statement = sql.SQL(" UNION ALL ".join(f"({part})" for part in dense)).format(
        dimension=sql.Literal(len(vector)), model=sql.Literal(model)
    )
    params = _params(query, w, vector="[" + ",".join(repr(float(x)) for x in vector) + "]")
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(statement, params)
    return sorted(await cursor.fetchall(), key=lambda r: float(r["distance"]))


async def rank_candidates(
    conn: AsyncConnection[Any],
    query: SearchQuery,
    lexical_rows: Sequence[dict[str, Any]],
    dense_rows: Sequence[dict[str, Any]],
    *,
    model: str,
    now: datetime,
    weights: SearchWeights | None = None,
) -> list[Hit]:
    """The two lists fused and ranked (the module docstring), with what each hit shows."""
    w = weights or SearchWeights()
    with_memories, with_passages = _sources(query)
    if not (with_memories or with_passages):
        return []
    params = _params(query, w, now=now)
    literals = {"model": sql.Literal(model)}
    cursor = conn.cursor(row_factory=dict_row)

    # 1. Fuse the two lists by weighted reciprocal rank.
    fused: dict[Key, float] = {}
    lexical: dict[Key, float] = {}
    cosine: dict[Key, float] = {}
    for rank, row in enumerate(lexical_rows, start=1):
        key = _key(row)
        lexical[key] = float(row["lexical"])
        fused[key] = fused.get(key, 0.0) + w.lexical / (w.rrf_k + rank)
    for rank, row in enumerate(dense_rows[: params["depth"]], start=1):
        key = _key(row)
        cosine[key] = 1.0 - float(row["distance"])
        fused[key] = fused.get(key, 0.0) + w.dense / (w.rrf_k + rank)

    memory_ids = [k for k in fused if isinstance(k, uuid.UUID)]
    passage_keys = [k for k in fused if isinstance(k, tuple)]
    memories: dict[uuid.UUID, dict[str, Any]] = {}
    if memory_ids:
        params["ids"] = memory_ids
        await cursor.execute(sql.SQL(_MEMORIES_SQL), params)
        memories = {row["memory_id"]: row for row in await cursor.fetchall()}

    # 2. One hop of graph expansion from the best fused memories.
    links: dict[uuid.UUID, float] = {}
    graph: dict[uuid.UUID, float] = {}
    seeds = sorted(memories, key=lambda m: (-fused[m], str(m)))[: w.seeds]
    if seeds:
        params["seeds"] = seeds
        await cursor.execute(sql.SQL(_NEIGHBOURS_SQL).format(**literals), params)
        for row in await cursor.fetchall():
            memory_id = row["memory_id"]
            memories.setdefault(memory_id, row)
            links[memory_id] = max(links.get(memory_id, 0.0), float(row["weight"]))
            reach = float(row["weight"]) * fused[row["seed"]]
            graph[memory_id] = max(graph.get(memory_id, 0.0), reach)
        ranked = sorted(graph, key=lambda m: (-graph[m], str(m)))
        for rank, memory_id in enumerate(ranked, start=1):
            fused[memory_id] = fused.get(memory_id, 0.0) + w.graph / (w.rrf_k + rank)

    passages: dict[tuple[str, int], dict[str, Any]] = {}
    if passage_keys:
        params["conversations"] = [c for c, _ in passage_keys]
        params["seqs"] = [s for _, s in passage_keys]
        params["window"] = WINDOW
        await cursor.execute(_PASSAGES_SQL, params)
        passages = {(r["conversation_id"], r["seq"]): r for r in await cursor.fetchall()}

    # 3. The composite score of each candidate. A document first in both lists has
    # relevance 1. Recency is measured back from the newest candidate (``relative``), so
    # of two answers the later one wins even when the caller last called a year ago;
    # or back from now.
    best = (w.dense + w.lexical) / (w.rrf_k + 1)
    anchor = now
    if w.relative_recency:
        moments = [m["last_seen_at"] for m in memories.values()]
        moments += [p["spoken_at"] for p in passages.values()]
        anchor = min(now, max(moments, default=now))

    def recency_of(at: datetime) -> float:
        days = max(0.0, (anchor - at).total_seconds() / 86400.0)
        return math.exp(-math.log(2) * days / w.recency_half_life_days)

    def breakdown(
        key: Key, relevance: float, salience: float, recency: float, link: float
    ) -> dict[str, float]:
        terms = {"relevance": relevance, "salience": salience, "recency": recency, "link": link}
        if key in cosine:
            terms["cosine"] = cosine[key]
        if key in lexical:
            terms["lexical"] = lexical[key]
        return {name: round(value, 6) for name, value in terms.items()}

    def via(key: Key) -> tuple[str, ...]:
        return tuple(
            name
            for name, present in (
                ("dense", key in cosine),
                ("lexical", key in lexical),
                ("graph", key in graph),
            )
            if present
        )

    wanted = answer_type(query.text) if w.answer_type else None

    def typed(relevance: float, text: str) -> float:
        if wanted is not None and holds_answer(wanted, text, query.text):
            return min(1.0, relevance * (1.0 + w.answer_type))
        return relevance

    def composite(relevance: float, salience: float, recency: float, link: float) -> float:
        return (
            w.similarity * relevance + w.salience * salience + w.recency * recency + w.link * link
        )

    hits: dict[Key, Hit] = {}
    for memory_id, row in memories.items():
        relevance = typed(min(1.0, fused[memory_id] / best), row["content"])
        salience = float(row["salience"])
        recency = recency_of(row["last_seen_at"])
        link = links.get(memory_id, 0.0)
        score = composite(relevance, salience, recency, link)
        hits[memory_id] = Hit(
            memory_id=memory_id,
            content=row["content"],
            sector=row["sector"],
            kind=row["kind"],
            score=round(score, 6),
            breakdown=breakdown(memory_id, relevance, salience, recency, link),
            via=via(memory_id),
            observed_at=row["observed_at"],
            last_seen_at=row["last_seen_at"],
            reinforcement_count=row["reinforcement_count"],
            provenance=list(row["provenance"]),
        )
    quotes: dict[uuid.UUID, list[tuple[float, dict[str, Any]]]] = {}
    for key, row in passages.items():
        relevance = typed(min(1.0, fused[key] / best), row["text"])
        citing = [m for m in row["active"] or () if m in hits]
        if row["stale"]:
            relevance *= w.stale_factor
        recency = recency_of(row["spoken_at"])
        score = round(composite(relevance, w.passage_salience, recency, 0.0), 6)
        if citing:
            # Folded: the memory that says it ranks where the passage would have, and
            # quotes it (the caller's own words carry what a short fact leaves out).
            quote = {
                "conversation_id": key[0],
                "seq": key[1],
                "speaker": _SPEAKERS.get(row["role"], row["role"]),
                "text": row["text"],
            }
            for memory_id in citing:
                quotes.setdefault(memory_id, []).append((score, quote))
            ranked_by = (
                [max(citing, key=lambda m: (hits[m].score, str(m)))] if w.fold_once else citing
            )
            for memory_id in ranked_by:
                memory = hits[memory_id]
                if score > memory.score:
                    hits[memory_id] = replace(memory, score=score, via=(*memory.via, "passage"))
            continue
        hits[key] = Hit(
            memory_id=None,
            content=row["text"],
            sector=None,
            kind=None,
            score=score,
            breakdown=breakdown(key, relevance, w.passage_salience, recency, 0.0),
            via=via(key),
            observed_at=row["spoken_at"],
            last_seen_at=row["spoken_at"],
            reinforcement_count=0,
            provenance=[{"conversation_id": key[0], "turns": [key[1]]}],
            type="passage",
            conversation_id=key[0],
            turn=key[1],
            speaker=_SPEAKERS.get(row["role"], row["role"]),
        )

    for memory_id, found in quotes.items():
        found.sort(key=lambda q: (-q[0], q[1]["conversation_id"], q[1]["seq"]))
        hits[memory_id] = replace(hits[memory_id], context=[q for _, q in found[:QUOTES]])
    ranked_hits = sorted(
        (h for h in hits.values() if h.score >= query.min_score),
        key=_rank_order,
    )
    if not w.merge_neighbours:
        return await _with_context(cursor, params, ranked_hits[: query.limit], w.memory_context)
    # Enough candidates that merging neighbours still leaves ``limit`` hits.
    candidates = await _with_context(
        cursor, params, ranked_hits[: 3 * query.limit], w.memory_context
    )
    return _merge_neighbours(candidates, into_memories=w.merge_into_memories)[: query.limit]


def _merge_neighbours(hits: list[Hit], *, into_memories: bool) -> list[Hit]:
    """Each passage that a better hit already shows (a passage's context, or with
    `into_memories` a memory's quotes) is merged into it: the better one cites both
    turns, and the slot goes to another answer."""
    merged: list[Hit] = []
    quoted: dict[tuple[str, int], int] = {}  # a turn shown by a kept passage -> its index
    for hit in hits:
        if hit.type == "memory" and into_memories:
            for q in hit.context:
                quoted.setdefault((q["conversation_id"], q["seq"]), len(merged))
        if hit.type == "passage":
            conversation, seq = _passage(hit)
            holder = quoted.get((conversation, seq))
            if holder is not None and merged[holder].type == "memory":
                kept = merged[holder]
                cited = [*kept.provenance, {"conversation_id": conversation, "turns": [seq]}]
                merged[holder] = replace(kept, provenance=cited)
                continue
            if holder is not None:
                kept = merged[holder]
                turns = sorted({*kept.provenance[0]["turns"], seq})
                cited = [{"conversation_id": conversation, "turns": turns}]
                merged[holder] = replace(kept, provenance=cited)
                continue
            for turn in (seq, *(c["seq"] for c in hit.context)):
                quoted.setdefault((conversation, turn), len(merged))
        merged.append(hit)
    return merged


def _rank_order(hit: Hit) -> tuple[float, str, str, int]:
    """Best first; ties: memories before passages, then a stable order."""
    if hit.type == "memory":
        return (-hit.score, "memory", str(hit.memory_id), 0)
    return (-hit.score, "passage", *_passage(hit))


def _passage(hit: Hit) -> tuple[str, int]:
    """A passage hit's conversation and own turn."""
    if hit.conversation_id is None or hit.turn is None:
        raise ValueError("not a passage")
    return hit.conversation_id, hit.turn


def _sourced(hit: Hit) -> Hit:
    """A memory hit with a placeholder quote of its first source turn (text filled in
    by ``_quoting``)."""
    for cited in hit.provenance:
        if cited.get("turns"):
            quote = {"conversation_id": cited["conversation_id"], "seq": cited["turns"][0]}
            return replace(hit, context=[quote])
    return hit


async def _with_context(
    cursor: Any, params: dict[str, Any], hits: list[Hit], memories: bool
) -> list[Hit]:
    """``hits`` with each passage's neighbouring turns and, with ``memories``, each
    memory's best quote (else its first source turn) with that turn's neighbours."""
    wanted = [_passage(h) for h in hits if h.type == "passage"]
    if memories:
        hits = [_sourced(h) if h.type == "memory" and not h.context else h for h in hits]
        wanted += [
            (h.context[0]["conversation_id"], h.context[0]["seq"])
            for h in hits
            if h.type == "memory" and h.context
        ]
    if not wanted:
        return hits
    params["conversations"] = [c for c, _ in wanted]
    params["seqs"] = [s for _, s in wanted]
    params["window"] = WINDOW
    await cursor.execute(_CONTEXT_SQL, params)
    context: dict[tuple[str, int], list[dict[str, Any]]] = {}
    own: dict[tuple[str, int], dict[str, Any]] = {}
    for row in await cursor.fetchall():
        if row["seq"] == row["around"]:
            own[(row["conversation_id"], row["seq"])] = row
            continue
        context.setdefault((row["conversation_id"], row["around"]), []).append(
            {
                "seq": row["seq"],
                "speaker": _SPEAKERS.get(row["role"], row["role"]),
                "text": row["text"],
            }
        )
    if memories:
        hits = [_quoting(h, context, own) if h.type == "memory" and h.context else h for h in hits]
    return [
        replace(h, context=context.get(_passage(h), [])) if h.type == "passage" else h for h in hits
    ]


def _quoting(
    hit: Hit,
    context: dict[tuple[str, int], list[dict[str, Any]]],
    own: dict[tuple[str, int], dict[str, Any]],
) -> Hit:
    """A memory hit's context: its best quote first, then that turn's neighbours in
    order, then its other quotes."""
    best = hit.context[0]
    conversation = best["conversation_id"]
    if "text" not in best:  # a source turn, not a candidate: its text is read here
        row = own.get((conversation, best["seq"]))
        if row is None:
            return replace(hit, context=[])
        best = {
            "conversation_id": conversation,
            "seq": row["seq"],
            "speaker": _SPEAKERS.get(row["role"], row["role"]),
            "text": row["text"],
        }
    others = hit.context[1:]
    shown = {(q["conversation_id"], q["seq"]) for q in others}
    near = [
        {"conversation_id": conversation, **turn}
        for turn in context.get((conversation, best["seq"]), [])
        if (conversation, turn["seq"]) not in shown
    ]
    return replace(hit, context=[best, *near, *others])
